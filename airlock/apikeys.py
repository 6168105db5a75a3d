"""API keys for the HTTPS service: a store of SHA-256 hashes, never of keys (seed section 3.4).

A key (`alk_` + 43 URL-safe characters, 256 bits) is shown once by `airlock apikeys create` or
`rotate` and then exists only with its holder; the store keeps its hex SHA-256 and what it may do:

    {"version": 1, "keys": [{"key_id": "ak_0123456789ab", "sha256": "<64 hex>", "tenant": "...",
      "permissions": ["generate"], "rate": "30/min", "expires_at": null, "created_by": "...",
      "created_at": "2026-10-01T09:00:00Z", "revoked_at": null, "rotated_from": null}]}

Every change runs under an exclusive flock on `<store>.lock` (two CLI runs cannot lose a key),
writes its `user_changes` audit record first (if the audit log refuses, nothing changes: fail
closed) and then replaces the file atomically (mode 0600). The service reloads it when it changes.
"""

from __future__ import annotations

import contextlib
import fcntl
import getpass
import hashlib
import json
import os
import re
import secrets
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from airlock.audit import AuditLog
from airlock.audit.layout import replace_atomically
from airlock.errors import AirlockError

DEFAULT_STORE = Path("/var/lib/airlock/apikeys.json")
VERSION = 1
KEY_PREFIX = "alk_"
KEY_LENGTH = len(KEY_PREFIX) + 43  # token_urlsafe(32): 32 random bytes as 43 base64url characters
# What a key may be granted; "admin" grants every operation (see KeyRecord.allows).
PERMISSIONS = ("generate", "jobs:read", "models:read", "audit:read-full", "admin")
TENANT = re.compile(r"[a-z0-9][a-z0-9_-]{0,62}")  # fullmatch: `$` would let "a\n" pass
KEY_ID = re.compile(r"^ak_[0-9a-f]{12}$")
RATE = re.compile(r"^(\d{1,9})/(s|min|h)$")
PERIOD_SECONDS = {"s": 1, "min": 60, "h": 3600}
DURATION = re.compile(r"^(\d{1,9})(s|min|h|d|w)$")
DURATION_UNITS = {"s": "seconds", "min": "minutes", "h": "hours", "d": "days", "w": "weeks"}

Clock = Callable[[], datetime]


class ApiKeyError(AirlockError):
    """The key store cannot do what was asked (unreadable store, key already revoked, ...)."""


class ApiKeyInputError(ApiKeyError, ValueError):
    """A bad argument (permission, rate, tenant, duration, key id): the caller must fix the input."""


class UnknownKeyError(ApiKeyInputError, KeyError):
    """No key with that id in the store."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


def default_store() -> Path:
    return Path(os.environ.get("AIRLOCK_APIKEYS", DEFAULT_STORE))


def os_user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no passwd entry (some containers)
        return f"uid:{os.getuid()}"


def _utcnow() -> datetime:
    return datetime.now(UTC)


def rfc3339(moment: datetime) -> str:
    """UTC, whole seconds, 'Z': what the store and the audit records carry."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(text: str) -> datetime:
    moment = datetime.fromisoformat(text)
    if moment.tzinfo is None:
        raise ValueError(f"{text!r} has no time zone")
    return moment


def hash_key(api_key: str) -> str:
    """Hex SHA-256 of the key as presented (the store's lookup key, seed 3.4)."""
    return hashlib.sha256(api_key.encode("utf-8", "replace")).hexdigest()


# ---------------------------------------------------------------- input checks


def parse_rate(text: str) -> tuple[float, int]:
    """'30/min' -> (0.5 tokens per second, burst 30): N requests per period, N at once at most."""
    match = RATE.match(text.strip()) if isinstance(text, str) else None
    if not match or int(match[1]) < 1:
        raise ApiKeyInputError(f"bad rate {text!r}: use N/s, N/min or N/h with N >= 1 (for example 30/min)")
    count = int(match[1])
    return count / PERIOD_SECONDS[match[2]], max(1, count)


def parse_duration(text: str) -> timedelta:
    """'90d' -> 90 days; units s, min, h, d, w ('min', never 'm': months or minutes is a guess)."""
    match = DURATION.match(text.strip())
    if not match or int(match[1]) < 1:
        raise ApiKeyInputError(
            f"bad duration {text!r}: use N followed by s, min, h, d or w (for example 90d or 24h)"
        )
    return timedelta(**{DURATION_UNITS[match[2]]: int(match[1])})


def check_permissions(permissions: Iterable[str]) -> tuple[str, ...]:
    """Known, de-duplicated, in PERMISSIONS order; at least one."""
    given = {p.strip() for p in permissions if p.strip()}
    unknown = sorted(given - set(PERMISSIONS))
    if unknown:
        raise ApiKeyInputError(
            f"unknown permission {', '.join(map(repr, unknown))}; valid permissions: {', '.join(PERMISSIONS)}"
        )
    if not given:
        raise ApiKeyInputError(f"give at least one permission out of: {', '.join(PERMISSIONS)}")
    return tuple(p for p in PERMISSIONS if p in given)


def check_tenant(tenant: str) -> str:
    if not isinstance(tenant, str) or not TENANT.fullmatch(tenant):
        raise ApiKeyInputError(
            f"bad tenant id {tenant!r}: 1-63 characters, lowercase letters, digits, '_' and '-', "
            "starting with a letter or digit"
        )
    return tenant


def check_key_id(key_id: str) -> str:
    if not isinstance(key_id, str) or not KEY_ID.match(key_id):
        raise ApiKeyInputError(f"bad key id {key_id!r}: key ids look like ak_0123456789ab")
    return key_id


# ---------------------------------------------------------------- records and the store


@dataclass(frozen=True)
class KeyRecord:
    key_id: str
    sha256: str
    tenant: str
    permissions: tuple[str, ...]
    rate: str | None
    expires_at: str | None
    created_by: str
    created_at: str
    revoked_at: str | None = None
    rotated_from: str | None = None

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["permissions"] = list(self.permissions)
        return data

    def public(self) -> dict[str, Any]:
        """What `list` shows: everything but the hash."""
        data = self.to_dict()
        del data["sha256"]
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> KeyRecord:
        """Parse and check one stored entry (a hand-edited store is refused, not half-trusted)."""
        record = cls(**{**data, "permissions": tuple(data["permissions"])})
        check_key_id(record.key_id)
        check_tenant(record.tenant)
        if check_permissions(record.permissions) != record.permissions:
            raise ApiKeyInputError(f"permissions {list(record.permissions)} are not in canonical form")
        if not re.fullmatch(r"[0-9a-f]{64}", record.sha256):
            raise ApiKeyInputError("sha256 is not 64 lowercase hex digits")
        if record.rate is not None:
            parse_rate(record.rate)
        for stamp in (record.created_at, record.expires_at, record.revoked_at):
            if stamp is not None:
                parse_time(stamp)
        return record

    def revoked(self, now: datetime) -> bool:
        return self.revoked_at is not None and now >= parse_time(self.revoked_at)

    def expired(self, now: datetime) -> bool:
        return self.expires_at is not None and now >= parse_time(self.expires_at)

    def allows(self, operation: str) -> bool:
        return operation in self.permissions or "admin" in self.permissions

    def status(self, now: datetime) -> str:
        if self.revoked(now):
            return "revoked"
        if self.expired(now):
            return "expired"
        if self.revoked_at is not None:
            return f"active until {self.revoked_at} (rotated)"
        return "active"


@dataclass
class KeyStore:
    path: Path
    keys: list[KeyRecord] = field(default_factory=list)
    by_hash: dict[str, KeyRecord] = field(init=False)
    by_id: dict[str, KeyRecord] = field(init=False)

    def __post_init__(self) -> None:
        self.by_hash = {k.sha256: k for k in self.keys}
        self.by_id = {k.key_id: k for k in self.keys}

    def get(self, key_id: str) -> KeyRecord:
        check_key_id(key_id)
        try:
            return self.by_id[key_id]
        except KeyError:
            raise UnknownKeyError(
                f"no API key {key_id} in {self.path}; `airlock apikeys list` shows the key ids"
            ) from None

    def to_bytes(self) -> bytes:
        doc = {"version": VERSION, "keys": [k.to_dict() for k in self.keys]}
        return (json.dumps(doc, indent=2, sort_keys=False) + "\n").encode()


def load_store(path: Path) -> KeyStore:
    """Read the store; a missing file is an empty store, anything unreadable is an ApiKeyError."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return KeyStore(path)
    except OSError as exc:
        raise ApiKeyError(f"cannot read the API key store {path}: {exc.strerror or exc}") from exc
    try:
        doc = json.loads(raw)
        if doc.get("version") != VERSION:
            raise ValueError(f"version {doc.get('version')!r}, expected {VERSION}")
        keys = [KeyRecord.from_dict(entry) for entry in doc["keys"]]
    except (ValueError, TypeError, KeyError, AttributeError) as exc:
        raise ApiKeyError(
            f"the API key store {path} is damaged ({exc}); restore it from backup, never edit it by hand"
        ) from exc
    store = KeyStore(path, keys)
    if len(store.by_id) != len(keys) or len(store.by_hash) != len(keys):
        raise ApiKeyError(
            f"the API key store {path} holds a duplicate key id or hash; restore it from backup"
        )
    return store


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[KeyStore]:
    """Hold the store's lock file exclusively while reading and replacing it."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o750)
        fd = os.open(path.with_name(path.name + ".lock"), os.O_RDWR | os.O_CREAT, 0o600)
    except OSError as exc:
        raise ApiKeyError(f"cannot lock the API key store {path}: {exc.strerror or exc}") from exc
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield load_store(path)
    finally:
        os.close(fd)  # closing the descriptor releases the flock


def _save(store: KeyStore) -> None:
    """Replace the file atomically, 0600, keeping the owner the provisioning role gave it."""
    path = store.path
    try:
        before = path.stat()
    except FileNotFoundError:
        before = None
    replace_atomically(path, store.to_bytes(), mode=0o600)
    if before is not None and (before.st_uid, before.st_gid) != (os.getuid(), os.getgid()):
        # root running the CLI must not leave the store unreadable by the service user
        with contextlib.suppress(PermissionError):
            os.chown(path, before.st_uid, before.st_gid)


def _commit(store: KeyStore, records: list[KeyRecord], audit: AuditLog, event: str, fields: dict) -> None:
    """Audit first (fail closed), then write; a write that fails after the record is audited too."""
    audit.append("user_changes", event, outcome="success", **fields)
    new = KeyStore(store.path, records)
    try:
        _save(new)
    except OSError as exc:
        reason = f"cannot write {store.path}: {exc.strerror or exc}"
        with contextlib.suppress(AirlockError):  # best effort: the error below is what matters
            audit.append("user_changes", event, outcome="failure", reason=reason, **fields)
        raise ApiKeyError(f"{reason}; the change was not made") from exc


def _new_key(store: KeyStore) -> tuple[str, str, str]:
    """A fresh (key, key id, hash), unique in the store."""
    while True:
        key_id = "ak_" + secrets.token_hex(6)
        key = KEY_PREFIX + secrets.token_urlsafe(32)
        digest = hash_key(key)
        if key_id not in store.by_id and digest not in store.by_hash:
            return key, key_id, digest


def _audit_fields(record: KeyRecord, actor: str, action: str) -> dict[str, Any]:
    # Only ids, tenant and grants: never the key, never its hash.
    return {
        "actor": actor,
        "subject": record.key_id,
        "tenant": record.tenant,
        "action": action,
        "permissions": list(record.permissions),
        "rate": record.rate,
        "expires_at": record.expires_at,
    }


# ---------------------------------------------------------------- the operations


def create_key(
    store: Path,
    *,
    tenant: str,
    permissions: Iterable[str],
    rate: str | None = None,
    expires_in: timedelta | None = None,
    created_by: str,
    audit: AuditLog,
    clock: Clock = _utcnow,
) -> tuple[str, KeyRecord]:
    """Make a key; returns (the key, to show once, and its stored record)."""
    check_tenant(tenant)
    perms = check_permissions(permissions)
    if rate is not None:
        rate = rate.strip()
        parse_rate(rate)
    if expires_in is not None and expires_in <= timedelta(0):
        raise ApiKeyInputError("the expiry must be in the future (for example --expires 90d)")
    if not created_by or not created_by.strip():
        raise ApiKeyInputError("created_by must name who creates the key")
    now = clock()
    with _locked(store) as current:
        key, key_id, digest = _new_key(current)
        record = KeyRecord(
            key_id=key_id,
            sha256=digest,
            tenant=tenant,
            permissions=perms,
            rate=rate,
            expires_at=rfc3339(now + expires_in) if expires_in is not None else None,
            created_by=created_by,
            created_at=rfc3339(now),
        )
        _commit(
            current,
            [*current.keys, record],
            audit,
            "apikey.created",
            _audit_fields(record, created_by, "create"),
        )
    return key, record


def list_keys(store: Path) -> list[KeyRecord]:
    return list(load_store(store).keys)


def revoke_key(store: Path, key_id: str, *, actor: str, audit: AuditLog, clock: Clock = _utcnow) -> KeyRecord:
    """Revoke now (also brings forward a revocation scheduled by `rotate --grace`)."""
    now = clock()
    with _locked(store) as current:
        old = current.get(key_id)
        if old.revoked(now):
            raise ApiKeyError(f"API key {key_id} was already revoked at {old.revoked_at}")
        record = replace(old, revoked_at=rfc3339(now))
        records = [record if k.key_id == key_id else k for k in current.keys]
        fields = {**_audit_fields(record, actor, "revoke"), "revoked_at": record.revoked_at}
        _commit(current, records, audit, "apikey.revoked", fields)
    return record


def rotate_key(
    store: Path,
    key_id: str,
    *,
    actor: str,
    audit: AuditLog,
    grace: timedelta | None = None,
    clock: Clock = _utcnow,
) -> tuple[str, KeyRecord]:
    """Replace a key: the new one keeps tenant, permissions, rate and lifetime; the old one is revoked
    now, or at now + grace so clients can switch over. Returns (the new key, its record)."""
    if grace is not None and grace < timedelta(0):
        raise ApiKeyInputError("the grace period cannot be negative")
    now = clock()
    with _locked(store) as current:
        old = current.get(key_id)
        if old.revoked_at is not None:
            raise ApiKeyError(
                f"API key {key_id} is revoked (or scheduled to be, at {old.revoked_at}); "
                "create a new key with `airlock apikeys create` instead"
            )
        lifetime = (
            parse_time(old.expires_at) - parse_time(old.created_at) if old.expires_at is not None else None
        )
        key, new_id, digest = _new_key(current)
        record = KeyRecord(
            key_id=new_id,
            sha256=digest,
            tenant=old.tenant,
            permissions=old.permissions,
            rate=old.rate,
            expires_at=rfc3339(now + lifetime) if lifetime is not None else None,
            created_by=actor,
            created_at=rfc3339(now),
            rotated_from=old.key_id,
        )
        retired = replace(old, revoked_at=rfc3339(now + (grace or timedelta(0))))
        records = [retired if k.key_id == key_id else k for k in current.keys] + [record]
        fields = {
            **_audit_fields(record, actor, "rotate"),
            "rotated_from": old.key_id,
            "old_revoked_at": retired.revoked_at,
        }
        _commit(current, records, audit, "apikey.rotated", fields)
    return key, record
