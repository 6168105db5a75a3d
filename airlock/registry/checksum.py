"""Checksums of registered models, streamed in 1 MiB chunks (models are gigabytes).

A single file's checksum is `sha256:<hex of its bytes>`. A diffusers folder's checksum is
`sha256:<hex>` over the UTF-8 text made of one line per regular file in the folder (at any depth):

    <sha256 hex of the file>  <path relative to the folder, POSIX separators>\\n

with the lines sorted by relative path (code point order). The text is the `sha256sum` format, so
an auditor can recompute it with `find . -type f | sort | xargs sha256sum` style tools; the order
files were written in, their timestamps and modes do not change it. Symlinks and other special files
are refused: a registered folder holds regular files only.
"""

from __future__ import annotations

import hashlib
import os
import stat
from collections.abc import Callable
from pathlib import Path

from airlock.registry.errors import RegistryError

CHUNK = 1024 * 1024
Advance = Callable[[int], object]


def _raise(exc: OSError) -> None:
    raise exc  # an unreadable subfolder must fail the checksum, not silently drop its files


def tree_files(path: Path) -> list[tuple[str, Path]]:
    """Every regular file under a folder as (relative POSIX path, absolute path), sorted by the former."""
    found: list[tuple[str, Path]] = []
    for dirpath, dirnames, filenames in os.walk(path, onerror=_raise, followlinks=False):
        for name in dirnames + filenames:
            full = Path(dirpath, name)
            mode = full.lstat().st_mode
            rel = full.relative_to(path).as_posix()
            if any(ord(c) < 32 for c in rel):
                raise RegistryError(
                    f"{full}: a name with control characters cannot be checksummed; rename it"
                )
            if stat.S_ISLNK(mode):
                raise RegistryError(f"{full} is a symlink; a model folder must hold regular files only")
            if stat.S_ISREG(mode):
                found.append((rel, full))
            elif not stat.S_ISDIR(mode):
                raise RegistryError(
                    f"{full} is not a regular file; a model folder holds files and folders only"
                )
    return sorted(found)


def file_sha256(path: Path, advance: Advance | None = None, copy_to: int | None = None) -> str:
    """Hex SHA-256 of a file; with copy_to (a file descriptor) the same bytes are written there too."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(CHUNK):
            digest.update(chunk)
            if copy_to is not None:
                view = memoryview(chunk)
                while view:
                    view = view[os.write(copy_to, view) :]
            if advance is not None:
                advance(len(chunk))
    return digest.hexdigest()


def listing_checksum(lines: list[tuple[str, str]]) -> str:
    """The folder checksum from (relative path, file hex digest) pairs."""
    text = "".join(f"{digest}  {rel}\n" for rel, digest in sorted(lines))
    return "sha256:" + hashlib.sha256(text.encode("utf-8")).hexdigest()


def tree_size(path: Path) -> int:
    """Bytes a checksum of path reads (for progress bars)."""
    if path.is_dir():
        return sum(full.stat().st_size for _rel, full in tree_files(path))
    return path.stat().st_size


def tree_checksum(path: Path, advance: Advance | None = None) -> str:
    """`sha256:<hex>` of a file or a diffusers folder, as defined in this module's docstring."""
    path = Path(path)
    if path.is_symlink():
        raise RegistryError(f"{path} is a symlink; registered models are regular files or folders")
    if path.is_dir():
        return listing_checksum([(rel, file_sha256(full, advance)) for rel, full in tree_files(path)])
    if not path.is_file():
        raise RegistryError(f"{path} does not exist or is not a regular file or folder")
    return "sha256:" + file_sha256(path, advance)
