"""Private, crash-safe files: 0700 folders, 0600 files, atomic writes and one writer per tenant.

An atomic write goes to a temp file in the same folder (a dot name no object id can take), is
fsynced, renamed over the final name and the folder fsynced: a crash or an error leaves the old
file or the new one, never part of one. Temp files of a crashed process are swept by `purge`.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import secrets
from collections.abc import Iterator
from pathlib import Path

from airlock.audit.layout import fsync_dir

TMP_SUFFIX = ".tmp"


def _adopt_owner(fd: int, parent: Path) -> None:
    # Root running the CLI must not leave files the service user cannot read: take the folder's owner.
    if os.geteuid() == 0:
        st = os.stat(parent)
        os.fchown(fd, st.st_uid, st.st_gid)


def private_dir(path: Path) -> Path:
    """Create path (and missing parents) as 0700 folders owned like their parent; return it."""
    if path.is_dir():
        return path
    private_dir(path.parent)
    try:
        path.mkdir(mode=0o700)
    except FileExistsError:
        return path  # made meanwhile by another writer
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fchmod(fd, 0o700)  # the umask may have taken bits off, never added: set it exactly
        _adopt_owner(fd, path.parent)
    finally:
        os.close(fd)
    fsync_dir(path.parent)
    return path


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def write_atomic(path: Path, data: bytes, *, overwrite: bool = True) -> None:
    """Write data to path as a 0600 file, all or nothing; overwrite=False fails if path exists."""
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}{TMP_SUFFIX}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    try:
        try:
            _adopt_owner(fd, path.parent)
            _write_all(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        if overwrite:
            os.replace(tmp, path)
        else:
            os.link(tmp, path)  # FileExistsError rather than replacing what is there
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)  # gone after a replace; the spare name after a link; the debris after an error
    fsync_dir(path.parent)


def remove(*paths: Path) -> None:
    """Unlink paths in order (missing ones are fine) and make the removals durable."""
    parents = set()
    for path in paths:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
            parents.add(path.parent)
    for parent in parents:
        fsync_dir(parent)


@contextlib.contextmanager
def tenant_lock(root: Path, tenant: str) -> Iterator[None]:
    """Exclusive lock on one tenant's objects across processes (every change takes it; reads don't).

    The lock files live in <root>/.locks, not in the tenant's folder, so erasing a tenant never
    pulls a lock out from under a writer waiting on it."""
    fd = os.open(
        private_dir(root / ".locks") / f"{tenant}.lock", os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600
    )
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)
