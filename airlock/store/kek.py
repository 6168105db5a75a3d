"""Key-encryption keys (KEKs): the provider seam, and the file provider we ship.

Wrapping is AES-256-GCM, not AES key wrap (RFC 3394/5649): the wrapped data key must be bound to
its tenant, object id and KEK id, and key wrap takes no associated data; GCM does, and it is what
PKCS#11 (CKM_AES_GCM) and cloud KMSs (encryption context) offer, so a later provider keeps the
same binding. Nonces are 96 random bits per wrap: NIST SP 800-38D allows 2^32 random-nonce
encryptions under one key, far more than a tenant's objects times its rotations.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import shutil
import stat
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from airlock.audit.layout import fsync_dir
from airlock.audit.records import utc_timestamp
from airlock.store.errors import KekError, UnwrapFailed
from airlock.store.files import private_dir, remove, write_atomic
from airlock.store.names import check_tenant, kek_version

DEFAULT_KEK_DIR = Path("/var/lib/airlock/kek")  # the service creates a tenant's first KEK: not /etc
KEK_FORMAT = "airlock-kek-v1"
NONCE = 12


class KekProvider(Protocol):
    """Where tenants' KEKs live and how data keys are wrapped under them.

    A PKCS#11 or KMS provider implements these calls with the KEK inside the device: the store only
    ever holds a data key and its wrapped form, never a KEK. Callers serialise changes per tenant."""

    def current(self, tenant: str) -> str | None:
        """The id of the KEK new data keys are wrapped under; None before the tenant's first."""

    def create(self, tenant: str) -> str:
        """Make a new KEK, which becomes current; return its id."""

    def kek_ids(self, tenant: str) -> list[str]:
        """Every KEK the tenant still has, oldest first (the last is current)."""

    def wrap(self, tenant: str, kek_id: str, data_key: bytes, aad: bytes) -> bytes:
        """Encrypt a data key under the KEK, bound to aad; the result is opaque to the store."""

    def unwrap(self, tenant: str, kek_id: str, wrapped: bytes, aad: bytes) -> bytes:
        """The data key back; UnwrapFailed when it does not authenticate or the KEK is not there."""

    def retire(self, tenant: str, kek_id: str) -> None:
        """Destroy a KEK (the caller has checked nothing still needs it)."""

    def destroy_tenant(self, tenant: str) -> int:
        """Destroy every KEK of a tenant; return how many there were."""


def current_id(ids: list[str]) -> str | None:
    return ids[-1] if ids else None


class FileKeks:
    """KEKs as files: <directory>/<tenant>/<kek_id>.kek, JSON holding the 32-byte key (base64).

    Folders are 0700 and files 0600, written atomically and never changed after: a new version is a
    new file, retiring deletes one. A file, or its folder, that others can read is refused."""

    def __init__(self, directory: Path = DEFAULT_KEK_DIR):
        self.directory = Path(directory)

    def _tenant_dir(self, tenant: str) -> Path:
        return self.directory / check_tenant(tenant)

    def kek_ids(self, tenant: str) -> list[str]:
        try:
            names = [p.name[: -len(".kek")] for p in self._tenant_dir(tenant).iterdir() if p.suffix == ".kek"]
        except FileNotFoundError:
            return []
        versions = {name: kek_version(name) for name in names}
        return sorted((n for n, v in versions.items() if v is not None), key=versions.__getitem__)

    def current(self, tenant: str) -> str | None:
        return current_id(self.kek_ids(tenant))

    def create(self, tenant: str) -> str:
        ids = self.kek_ids(tenant)
        version = kek_version(ids[-1]) + 1 if ids else 1
        kek_id = f"v{version}-{os.urandom(4).hex()}"  # the random part: ids never repeat across key dirs
        record = {
            "format": KEK_FORMAT,
            "tenant": tenant,
            "kek_id": kek_id,
            "created": utc_timestamp(datetime.now(UTC)),
            "key": base64.b64encode(AESGCM.generate_key(bit_length=256)).decode(),
        }
        folder = private_dir(self._tenant_dir(tenant))
        write_atomic(folder / f"{kek_id}.kek", json.dumps(record).encode() + b"\n", overwrite=False)
        return kek_id

    def _load(self, tenant: str, kek_id: str) -> AESGCM:
        """The KEK as a cipher. FileNotFoundError when there is no such KEK; KekError when unsafe."""
        if kek_version(kek_id) is None:  # ids come from key files: never let one walk the tree
            raise FileNotFoundError(kek_id)
        folder = self._tenant_dir(tenant)
        path = folder / f"{kek_id}.kek"
        for place in (self.directory, folder):
            mode = place.stat().st_mode & 0o777
            if mode & 0o077:
                raise KekError(
                    f"KEK folder {place} is open to others (mode {mode:04o}): chmod 700 {place}, then "
                    "check who could read it and rotate the tenant's KEKs if in doubt"
                )
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
        except OSError as exc:
            if isinstance(exc, FileNotFoundError):
                raise
            raise KekError(f"cannot open KEK file {path}: {exc.strerror} (a symlink is refused)") from exc
        try:
            st = os.fstat(fd)  # checked on the open file: no window between the check and the read
            mode = st.st_mode & 0o777
            if not stat.S_ISREG(st.st_mode) or mode & 0o077:
                raise KekError(
                    f"KEK file {path} is readable or writable by others (mode {mode:04o}): "
                    f"chmod 600 {path}, then check who could read it and rotate the tenant's KEKs if in doubt"
                )
            with os.fdopen(os.dup(fd), "rb") as fh:
                raw = fh.read()
        finally:
            os.close(fd)
        try:
            record = json.loads(raw)
            key = base64.b64decode(record["key"], validate=True)
            fits = (
                record["format"] == KEK_FORMAT and record["tenant"] == tenant and record["kek_id"] == kek_id
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise KekError(f"KEK file {path} is not a readable KEK: restore it from the key backup") from exc
        if not fits or len(key) != 32:
            raise KekError(
                f"KEK file {path} does not hold KEK {kek_id} of tenant {tenant}: restore it from backup"
            )
        return AESGCM(key)

    def wrap(self, tenant: str, kek_id: str, data_key: bytes, aad: bytes) -> bytes:
        try:
            kek = self._load(tenant, kek_id)
        except FileNotFoundError:
            raise KekError(f"tenant {tenant} has no KEK {kek_id} in {self.directory}") from None
        nonce = os.urandom(NONCE)
        return nonce + kek.encrypt(nonce, data_key, aad)

    def unwrap(self, tenant: str, kek_id: str, wrapped: bytes, aad: bytes) -> bytes:
        try:
            kek = self._load(tenant, kek_id)
        except FileNotFoundError:
            raise UnwrapFailed(
                f"its data key is wrapped under KEK {kek_id!r}, which the tenant does not have"
            ) from None
        try:
            return kek.decrypt(wrapped[:NONCE], wrapped[NONCE:], aad)
        except (InvalidTag, ValueError):
            raise UnwrapFailed("its wrapped data key does not authenticate") from None

    def retire(self, tenant: str, kek_id: str) -> None:
        path = self._tenant_dir(tenant) / f"{kek_id}.kek"
        if kek_version(kek_id) is None or not path.exists():
            raise KekError(f"tenant {tenant} has no KEK {kek_id!r} (`airlock outputs keys list` shows them)")
        remove(path)

    def destroy_tenant(self, tenant: str) -> int:
        folder = self._tenant_dir(tenant)
        ids = self.kek_ids(tenant)
        remove(*(folder / f"{kek_id}.kek" for kek_id in ids))
        with contextlib.suppress(FileNotFoundError):
            shutil.rmtree(folder)
            fsync_dir(self.directory)
        return len(ids)
