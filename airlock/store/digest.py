"""Keyed digests of full prompts for the audit log.

A plain SHA-256 of a prompt would let anyone who reads the log (and sees the sanitized text around a
redacted value) guess the value back: an SSN has only 10**9 candidates. An HMAC-SHA256 under a host
secret still lets the service match a full prompt to its record, but not a reader of the log alone.
The secret lives beside the full prompts' KEKs (0600 in a 0700 folder), never in the audit log.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import os
import secrets
import stat
from pathlib import Path

from airlock.store.errors import KekError
from airlock.store.files import private_dir, write_atomic

NAME = "digest.key"  # not a tenant id ('.' is not allowed in one): FileKeks never reads it


def digest_key(directory: Path) -> bytes:
    """The host's prompt-digest secret in directory, created (32 random bytes) on first use."""
    path = private_dir(Path(directory)) / NAME
    with contextlib.suppress(FileExistsError):  # the usual case: made before, or by another process
        write_atomic(path, secrets.token_bytes(32), overwrite=False)
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_mode & 0o077:
            mode = st.st_mode & 0o777
            raise KekError(f"prompt digest key {path} is open to others (mode {mode:04o}): chmod 600 {path}")
        key = os.read(fd, 64)
    finally:
        os.close(fd)
    if len(key) != 32:
        raise KekError(f"prompt digest key {path} is not 32 bytes: remove it only if no record needs it")
    return key


def keyed_digest(key: bytes, text: str) -> str:
    return hmac.new(key, text.encode("utf-8"), hashlib.sha256).hexdigest()
