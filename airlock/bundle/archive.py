"""The bundle's container: a plain POSIX tar, written reproducibly and read without trusting it.

Writing: entries in a fixed order, every header with mtime = the bundle's `created`, uid/gid 0,
uname/gname root, mode 0644 for files and 0755 for folders (PAX headers only where a name or size
needs them), so the same inputs give the same bytes.

Reading: `list_members` reads the headers only (nothing is extracted) and refuses anything an
extraction could be tricked by: absolute names, '..', links, devices, fifos, sparse files,
duplicate names, a file used as a folder, members over the size limits, and a cut-short archive.
"""

from __future__ import annotations

import hashlib
import io
import os
import queue
import tarfile
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

CHUNK = 1 << 20
Advance = Callable[[int], object]
GiB = 1 << 30
DEFAULT_MAX_MEMBER = 64 * GiB
DEFAULT_MAX_TOTAL = 1024 * GiB
KINDS = {
    tarfile.SYMTYPE: "a symbolic link",
    tarfile.LNKTYPE: "a hard link",
    tarfile.CHRTYPE: "a character device",
    tarfile.BLKTYPE: "a block device",
    tarfile.FIFOTYPE: "a fifo",
    tarfile.CONTTYPE: "a contiguous file",
    tarfile.GNUTYPE_SPARSE: "a sparse file",
}


class ParallelSha256:
    """SHA-256 computed on a helper thread (hashlib releases the GIL), so a reader can hash each
    member and the whole archive at once at the speed of one hash."""

    def __init__(self) -> None:
        self._digest = hashlib.sha256()
        self._queue: queue.Queue[bytes | None] = queue.Queue(maxsize=32)
        self._thread = threading.Thread(target=self._run, name="bundle-sha256", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while (chunk := self._queue.get()) is not None:
            self._digest.update(chunk)

    def update(self, chunk: bytes) -> None:
        self._queue.put(chunk)

    def hexdigest(self) -> str:
        self._queue.put(None)
        self._thread.join()
        return self._digest.hexdigest()


def _write_all(fd: int, data: bytes | memoryview) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


class TarWriter:
    """Write entries to an open file descriptor; `close` ends the archive and returns its SHA-256."""

    def __init__(self, fd: int, mtime: int):
        self.fd = fd
        self.mtime = mtime
        self.whole = ParallelSha256()
        self.folders: set[str] = set()
        self.names: set[str] = set()

    def _emit(self, data: bytes) -> None:
        _write_all(self.fd, data)
        self.whole.update(data)

    def _header(self, name: str, kind: bytes, size: int) -> None:
        info = tarfile.TarInfo(name)
        info.type = kind
        info.size = size
        info.mtime = self.mtime
        info.mode = 0o755 if kind == tarfile.DIRTYPE else 0o644
        info.uid = info.gid = 0
        info.uname = info.gname = "root"
        self._emit(info.tobuf(tarfile.PAX_FORMAT, "utf-8", "strict"))

    def _parents(self, name: str) -> None:
        parts = name.split("/")[:-1]
        for i in range(1, len(parts) + 1):
            folder = "/".join(parts[:i])
            if folder not in self.folders:
                self.folders.add(folder)
                self._header(folder, tarfile.DIRTYPE, 0)

    def _pad(self, size: int) -> None:
        if size % tarfile.BLOCKSIZE:
            self._emit(tarfile.NUL * (tarfile.BLOCKSIZE - size % tarfile.BLOCKSIZE))

    def add_bytes(self, name: str, data: bytes) -> str:
        return self.add_stream(name, io.BytesIO(data), len(data))

    def add_file(self, name: str, path: Path, advance: Advance | None = None) -> str:
        with open(path, "rb", buffering=0) as fh:
            size = os.fstat(fh.fileno()).st_size
            return self.add_stream(name, fh, size, advance)

    def add_stream(self, name: str, fh, size: int, advance: Advance | None = None) -> str:
        """Add one file of exactly `size` bytes read from fh; returns the hex SHA-256 of those bytes."""
        if name in self.names:
            raise ValueError(f"{name} added twice")
        self.names.add(name)
        self._parents(name)
        self._header(name, tarfile.REGTYPE, size)
        digest = hashlib.sha256()
        left = size
        while left:
            chunk = fh.read(min(CHUNK, left))
            if not chunk:
                raise OSError(f"{name}: the source shrank while it was being written ({left} bytes short)")
            digest.update(chunk)
            self._emit(chunk)
            left -= len(chunk)
            if advance is not None:
                advance(len(chunk))
        if fh.read(1):
            raise OSError(f"{name}: the source grew while it was being written")
        self._pad(size)
        return digest.hexdigest()

    def abort(self) -> None:
        """Stop the hashing thread of a write that failed."""
        self.whole.hexdigest()

    def close(self) -> str:
        end = tarfile.NUL * (2 * tarfile.BLOCKSIZE)  # end-of-archive marker, then pad to a full record
        written = os.lseek(self.fd, 0, os.SEEK_CUR) + len(end)
        self._emit(end + tarfile.NUL * (-written % tarfile.RECORDSIZE))
        return self.whole.hexdigest()


# ---------------------------------------------------------------------------------------- reading


@dataclass(frozen=True)
class Limits:
    max_member_bytes: int = DEFAULT_MAX_MEMBER
    max_total_bytes: int = DEFAULT_MAX_TOTAL


@dataclass(frozen=True)
class Member:
    name: str
    folder: bool
    offset: int  # where its data starts in the archive
    size: int


@dataclass(frozen=True)
class Problem:
    name: str
    detail: str


def name_problem(name: str) -> str | None:
    """Why a member name is unsafe to extract, or None."""
    if not name:
        return "empty name"
    if name.startswith("/"):
        return "absolute path (a bundle holds relative names only)"
    if any(ord(c) < 32 or ord(c) == 127 or c == "\\" for c in name):
        return "control character or backslash in the name"
    parts = name.split("/")
    if ".." in parts:
        return "path escapes the bundle ('..')"
    if "" in parts or "." in parts:
        return "not a normalised path ('//' or '.')"
    return None


def list_members(fh, size: int, limits: Limits) -> tuple[list[Member], int, list[Problem]]:
    """Read every header (no data) of the open archive; returns (members, end offset, problems)."""
    problems: list[Problem] = []
    try:
        with tarfile.open(fileobj=fh, mode="r:") as tar:  # "r:": a plain tar only, never decompress
            infos = tar.getmembers()
            end = tar.offset
    except tarfile.TarError as exc:
        return [], 0, [Problem("(archive)", f"not a readable tar archive, or cut short (truncated): {exc}")]
    members: list[Member] = []
    seen: set[str] = set()
    files: set[str] = set()
    total = 0
    for info in infos:
        problem = name_problem(info.name)
        if problem is None and info.type not in (tarfile.REGTYPE, tarfile.AREGTYPE, tarfile.DIRTYPE):
            kind = KINDS.get(info.type, f"an entry of type {info.type!r}")
            target = f" to {info.linkname}" if info.issym() or info.islnk() else ""
            problem = f"{kind}{target}: a bundle holds regular files and folders only"
        if problem is None and info.name in seen:
            problem = "appears twice (a later copy would silently replace the first)"
        if problem is None and info.isreg() and info.size > limits.max_member_bytes:
            limit = limits.max_member_bytes
            problem = f"{info.size} bytes, over the per-file limit of {limit} (--max-member-bytes)"
        if problem is None and info.isreg() and info.offset_data + info.size > size:
            ends = info.offset_data + info.size
            problem = f"cut short (truncated): its data ends at byte {ends}, the file has {size}"
        if problem is not None:
            problems.append(Problem(info.name, problem))
            continue
        seen.add(info.name)
        if info.isreg():
            files.add(info.name)
            total += info.size
        members.append(Member(info.name, info.isdir(), info.offset_data, info.size if info.isreg() else 0))
    for member in members:
        parts = member.name.split("/")
        above = ("/".join(parts[:i]) for i in range(1, len(parts)))
        clash = next((folder for folder in above if folder in files), None)
        if clash:
            problems.append(Problem(member.name, f"lies under {clash}, which is a file"))
    if total > limits.max_total_bytes:
        problems.append(
            Problem(
                "(archive)",
                f"{total} bytes of files, over the limit of {limits.max_total_bytes} (--max-total-bytes)",
            )
        )
    if not problems and size - end < 2 * tarfile.BLOCKSIZE:
        problems.append(
            Problem(
                "(archive)",
                f"cut short (truncated): no end-of-archive marker after byte {end} (file has {size} bytes)",
            )
        )
    return members, end, problems
