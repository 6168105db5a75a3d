"""OutputStore: generated images encrypted at rest, one envelope per object, per-tenant KEKs.

On disk (the KEKs live elsewhere: see kek.FileKeks):

    <root>/<tenant>/<object_id>.enc    ciphertext of image + metadata, written once, never changed
    <root>/<tenant>/<object_id>.key    the wrapped data key; rotation rewrites only this
    <root>/.locks/<tenant>.lock        one writer per tenant (put, delete, purge, rotate, retire)

Per-object key files rather than one per-tenant index: each is replaced atomically on its own, so
a crash mid-rotation leaves every object readable under the old KEK or the new one, and objects
never share a file that one bad write could take down. The .key file is the commit point: put
writes the ciphertext first, and delete removes the key first (crypto-shredding: without its
wrapped key the ciphertext is noise), so a ciphertext without a key is debris, never an object.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from airlock.apikeys import os_user
from airlock.audit.records import parse_ts, utc_timestamp
from airlock.errors import AirlockError
from airlock.store import envelope
from airlock.store.envelope import KeyFile
from airlock.store.errors import (
    InvalidInput,
    KekError,
    KekInUse,
    OutputExists,
    OutputNotFound,
    OutputTampered,
    StoreError,
    UnwrapFailed,
)
from airlock.store.files import TMP_SUFFIX, private_dir, remove, tenant_lock, write_atomic
from airlock.store.kek import KekProvider, current_id
from airlock.store.names import OBJECT_ID, check_object_id, check_tenant

DEFAULT_STORE = Path("/var/lib/airlock/outputs")  # inference.settings PathSettings.outputs
COMPONENT = "outputs"


def default_actor() -> str:
    return os.environ.get("SUDO_USER") or os_user()


def _utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class OutputRef:
    tenant: str
    object_id: str
    kek_id: str

    def __str__(self) -> str:
        return f"{self.tenant}/{self.object_id}"


@dataclass(frozen=True)
class Rotated:
    tenant: str
    kek_id: str  # the new current KEK
    previous: tuple[str, ...]  # KEKs kept for decryption until retired
    rewrapped: int
    failed: tuple[str, ...]  # object ids whose key file did not authenticate (audited one by one)


@dataclass(frozen=True)
class Purged:
    tenant: str
    cutoff: datetime
    deleted: int
    skipped: tuple[str, ...]  # object ids whose key file is unreadable, so their age is unknown


class OutputStore:
    def __init__(self, root: Path, keys: KekProvider, audit, *, clock: Callable[[], datetime] = _utcnow):
        self.root = Path(root)
        self.keys = keys
        self.audit = audit  # an AuditLog (records go to system_events); None: read-only use
        self.clock = clock
        key_dir = getattr(keys, "directory", None)
        if key_dir is not None and _overlap(self.root, Path(key_dir)):
            raise StoreError(
                f"the KEK directory {key_dir} and the output store {self.root} overlap: keep KEKs apart "
                "from the data they protect (a copy or backup of one must not carry the other)"
            )

    # ------------------------------------------------------------------ objects

    def put(self, tenant: str, object_id: str, data: bytes, metadata: dict) -> OutputRef:
        """Encrypt and store an object (write-once); the first put for a tenant makes its first KEK."""
        key_path, enc_path = self._paths(tenant, object_id)
        if not isinstance(data, bytes | bytearray | memoryview):
            raise InvalidInput(f"data for {tenant}/{object_id} must be bytes, got {type(data).__name__}")
        if not isinstance(metadata, dict):
            raise InvalidInput(
                f"metadata for {tenant}/{object_id} must be a dict, got {type(metadata).__name__}"
            )
        data_key = envelope.new_data_key()
        try:
            blob = envelope.seal(data_key, tenant, object_id, data, metadata)  # the slow part: unlocked
        except (TypeError, ValueError) as exc:
            raise InvalidInput(f"metadata for {tenant}/{object_id} is not plain JSON data: {exc}") from None
        created = utc_timestamp(self.clock())
        with tenant_lock(self.root, tenant):
            if key_path.exists():
                raise OutputExists(f"output {tenant}/{object_id} already exists; outputs are write-once")
            kek_id = self.keys.current(tenant) or self._first_kek(tenant)
            aad = envelope.key_aad(tenant, object_id, kek_id, created)
            key_file = KeyFile(kek_id, created, self.keys.wrap(tenant, kek_id, data_key, aad))
            private_dir(enc_path.parent)
            write_atomic(enc_path, blob)  # replaces debris of an interrupted put of this id, if any
            try:
                write_atomic(key_path, key_file.to_bytes(), overwrite=False)  # the commit point
            except BaseException:
                remove(enc_path)
                raise
        return OutputRef(tenant, object_id, kek_id)

    def get(self, tenant: str, object_id: str) -> tuple[bytes, dict]:
        """The image and metadata; OutputNotFound (also for another tenant's id), OutputTampered."""
        key_path, enc_path = self._paths(tenant, object_id)
        key_file = self._read_key(tenant, object_id, "get")
        data_key = self._unwrap(tenant, object_id, key_file, "get")
        try:
            blob = enc_path.read_bytes()
        except FileNotFoundError:
            if not key_path.exists():  # deleted while we read: it is simply gone
                raise OutputNotFound(tenant, object_id) from None
            raise self._tampered(tenant, object_id, "its ciphertext is missing", "get") from None
        try:
            return envelope.open_sealed(data_key, tenant, object_id, blob)
        except ValueError as exc:
            raise self._tampered(tenant, object_id, str(exc), "get") from None

    def tenants(self) -> list[str]:
        """The tenants with a folder in the store, sorted (for retention over every tenant)."""
        try:
            folders = [p.name for p in self.root.iterdir() if p.is_dir()]
        except FileNotFoundError:
            return []
        valid = []
        for name in folders:
            try:
                valid.append(check_tenant(name))
            except InvalidInput:
                continue  # .locks and anything that is not a tenant's folder
        return sorted(valid)

    def list(self, tenant: str) -> list[str]:
        """The tenant's object ids, sorted (their ciphertext is not read)."""
        folder = self.root / check_tenant(tenant)
        try:
            names = [p.name for p in folder.iterdir()]
        except FileNotFoundError:
            return []
        ids = (n[: -len(".key")] for n in names if n.endswith(".key"))
        return sorted(i for i in ids if OBJECT_ID.fullmatch(i) and ".." not in i)

    def delete(self, tenant: str, object_id: str, *, actor: str | None = None) -> None:
        """Delete one object (key file first: crypto-shredded even if the ciphertext unlink fails)."""
        key_path, enc_path = self._paths(tenant, object_id)
        with tenant_lock(self.root, tenant):
            if not key_path.exists():
                raise OutputNotFound(tenant, object_id)
            fields = {"tenant": tenant, "object_id": object_id, "actor": actor or default_actor()}
            self._record("outputs.deleted", **fields)  # fail closed: no record, no deletion
            self._removing("outputs.deleted", fields, [(key_path, enc_path)])

    def delete_tenant(self, tenant: str, *, actor: str | None = None) -> int:
        """Erase a tenant (GDPR): every object and every KEK. Returns how many objects there were."""
        folder = self.root / check_tenant(tenant)
        with tenant_lock(self.root, tenant):
            ids = self.list(tenant)
            fields = {
                "tenant": tenant,
                "objects": len(ids),
                "keks": len(self.keys.kek_ids(tenant)),
                "actor": actor or default_actor(),
            }
            self._record("outputs.tenant_erased", **fields)
            self._removing("outputs.tenant_erased", fields, [self._paths(tenant, i) for i in ids])
            try:
                with contextlib.suppress(FileNotFoundError):
                    shutil.rmtree(folder)  # debris of interrupted writes
                self.keys.destroy_tenant(tenant)  # backups of the ciphertext are now unreadable too
            except OSError as exc:
                self._failed("outputs.tenant_erased", fields, exc)
        return len(ids)

    def purge_older_than(
        self, tenant: str, days: int, now: datetime | None = None, *, actor: str | None = None
    ) -> Purged:
        """Retention: delete objects created more than `days` days before now (key and ciphertext)."""
        check_tenant(tenant)
        if not isinstance(days, int) or days < 0:
            raise InvalidInput(f"retention must be a whole number of days >= 0, got {days!r}")
        cutoff = (now or self.clock()) - timedelta(days=days)
        with tenant_lock(self.root, tenant):
            old, skipped = [], []
            for object_id in self.list(tenant):
                try:  # `created` is read, not authenticated: that needs the KEK, and get checks it
                    created = parse_ts(self._read_key(tenant, object_id, "purge").created)
                except (OutputTampered, ValueError):
                    skipped.append(object_id)
                    continue
                if created < cutoff:
                    old.append(object_id)
            fields = {
                "tenant": tenant,
                "days": days,
                "cutoff": utc_timestamp(cutoff),
                "objects": len(old),
                "skipped": len(skipped),
                "actor": actor or default_actor(),
            }
            self._record("outputs.purged", **fields)
            self._removing("outputs.purged", fields, [self._paths(tenant, i) for i in old])
            self._sweep(tenant)
        return Purged(tenant, cutoff, len(old), tuple(skipped))

    # ------------------------------------------------------------------ KEKs

    def keks(self, tenant: str) -> dict[str, int]:
        """The tenant's KEK ids, oldest first (the last is current), each with the objects it wraps."""
        usage = dict.fromkeys(self.keys.kek_ids(check_tenant(tenant)), 0)
        for object_id in self.list(tenant):
            with contextlib.suppress(OutputTampered, OutputNotFound):
                kek_id = self._read_key(tenant, object_id, "keks", audit=False).kek_id
                usage[kek_id] = usage.get(kek_id, 0) + 1  # an id the tenant lacks shows up too
        return usage

    def rotate(self, tenant: str, *, actor: str | None = None) -> Rotated:
        """Make a new current KEK and re-wrap every data key under it; ciphertexts are not touched."""
        check_tenant(tenant)
        with tenant_lock(self.root, tenant):
            previous = tuple(self.keys.kek_ids(tenant))
            ids = self.list(tenant)
            kek_id = self.keys.create(tenant)
            fields = {
                "tenant": tenant,
                "kek_id": kek_id,
                "previous": list(previous),
                "objects": len(ids),
                "actor": actor or default_actor(),
            }
            try:
                self._record("outputs.kek_rotated", **fields)
            except BaseException:
                self.keys.retire(tenant, kek_id)  # fail closed: unused, so nothing is lost
                raise
            rewrapped, failed = 0, []
            for object_id in ids:
                try:
                    key_file = self._read_key(tenant, object_id, "rotate")
                    data_key = self._unwrap(tenant, object_id, key_file, "rotate")
                except OutputTampered:
                    failed.append(object_id)
                    continue
                aad = envelope.key_aad(tenant, object_id, kek_id, key_file.created)
                new = KeyFile(kek_id, key_file.created, self.keys.wrap(tenant, kek_id, data_key, aad))
                try:
                    write_atomic(self._paths(tenant, object_id)[0], new.to_bytes())
                except OSError as exc:  # objects not yet re-wrapped stay readable under their old KEK
                    self._failed("outputs.kek_rotated", {**fields, "rewrapped": rewrapped}, exc)
                rewrapped += 1
            if failed:
                self._record_quietly(
                    "outputs.kek_rotated",
                    "failure",
                    **fields,
                    rewrapped=rewrapped,
                    failed=failed[:100],
                    failed_count=len(failed),
                )
        return Rotated(tenant, kek_id, previous, rewrapped, tuple(failed))

    def retire(self, tenant: str, kek_id: str, *, actor: str | None = None) -> None:
        """Destroy an old KEK; refused while it is current or still wraps any data key."""
        check_tenant(tenant)
        with tenant_lock(self.root, tenant):
            usage = self.keks(tenant)
            ids = self.keys.kek_ids(tenant)
            fields = {"tenant": tenant, "kek_id": kek_id, "actor": actor or default_actor()}
            if kek_id not in ids:
                raise KekError(
                    f"tenant {tenant} has no KEK {kek_id!r} (`airlock outputs keys list` shows them)"
                )
            unreadable = len(self.list(tenant)) - sum(usage.values())
            reason = None
            if kek_id == current_id(ids):
                reason = f"KEK {kek_id} is tenant {tenant}'s current KEK: rotate first"
            elif usage[kek_id] or unreadable:
                reason = (
                    f"KEK {kek_id} of tenant {tenant} still wraps {usage[kek_id]} objects"
                    + (f" ({unreadable} key files are unreadable and may too)" if unreadable else "")
                    + f": run `airlock keys rotate --tenant {tenant}` to re-wrap them, then retire it"
                )
            if reason:
                self._record_quietly("outputs.kek_retired", "failure", **fields, reason=reason)
                raise KekInUse(reason)
            self._record("outputs.kek_retired", **fields)
            self.keys.retire(tenant, kek_id)

    # ------------------------------------------------------------------ internals

    def _paths(self, tenant: str, object_id: str) -> tuple[Path, Path]:
        folder = self.root / check_tenant(tenant)
        name = check_object_id(object_id)
        return folder / f"{name}.key", folder / f"{name}.enc"

    def _first_kek(self, tenant: str) -> str:
        kek_id = self.keys.create(tenant)
        try:
            self._record("outputs.kek_created", tenant=tenant, kek_id=kek_id, actor=default_actor())
        except BaseException:
            self.keys.retire(tenant, kek_id)
            raise
        return kek_id

    def _read_key(self, tenant: str, object_id: str, operation: str, *, audit: bool = True) -> KeyFile:
        key_path, _ = self._paths(tenant, object_id)
        try:
            raw = key_path.read_bytes()
        except FileNotFoundError:
            raise OutputNotFound(tenant, object_id) from None  # same error whether it exists elsewhere or not
        try:
            return KeyFile.from_bytes(raw)
        except ValueError as exc:
            if not audit:
                raise OutputTampered(tenant, object_id, str(exc)) from None
            raise self._tampered(tenant, object_id, str(exc), operation) from None

    def _unwrap(self, tenant: str, object_id: str, key_file: KeyFile, operation: str) -> bytes:
        aad = envelope.key_aad(tenant, object_id, key_file.kek_id, key_file.created)
        try:
            return self.keys.unwrap(tenant, key_file.kek_id, key_file.wrapped, aad)
        except UnwrapFailed as exc:
            raise self._tampered(tenant, object_id, str(exc), operation) from None

    def _tampered(self, tenant: str, object_id: str, reason: str, operation: str) -> OutputTampered:
        self._record_quietly(
            "outputs.tampered",
            "failure",
            tenant=tenant,
            object_id=object_id,
            operation=operation,
            reason=reason,
        )
        return OutputTampered(tenant, object_id, reason)

    def _record(self, event: str, outcome: str = "success", **fields) -> None:
        if self.audit is None:
            raise StoreError(f"this store was opened read-only (no audit log): {event} needs one")
        self.audit.append("system_events", event, outcome=outcome, component=COMPONENT, **fields)

    def _record_quietly(self, event: str, outcome: str, **fields) -> None:
        # For refusals and failures: the error the caller gets matters more than a failed record of it.
        with contextlib.suppress(AirlockError):
            self._record(event, outcome, **fields)

    def _removing(self, event: str, fields: dict, objects: list[tuple[Path, Path]]) -> None:
        """Remove (key, ciphertext) pairs, keys first; a failure is audited and raised."""
        try:
            remove(*(key for key, _ in objects))
            remove(*(enc for _, enc in objects))
        except OSError as exc:
            self._failed(event, fields, exc)

    def _failed(self, event: str, fields: dict, exc: OSError) -> None:
        reason = f"{exc.strerror or exc}"
        self._record_quietly(event, "failure", **fields, reason=reason)
        raise StoreError(f"{event} for tenant {fields['tenant']} did not finish: {reason}; fix it and retry")

    def _sweep(self, tenant: str) -> None:
        """Remove debris of writers that died (temp files, ciphertexts never committed); we hold the lock."""
        folder = self.root / tenant
        if not folder.is_dir():
            return
        keys = {p.name[: -len(".key")] for p in folder.glob("*.key")}
        debris = [p for p in folder.iterdir() if p.name.startswith(".") and p.name.endswith(TMP_SUFFIX)]
        debris += [p for p in folder.glob("*.enc") if p.name[: -len(".enc")] not in keys]
        remove(*debris)


def _overlap(a: Path, b: Path) -> bool:
    a, b = a.resolve(), b.resolve()
    return a == b or a.is_relative_to(b) or b.is_relative_to(a)
