"""Who is calling, and may they: API-key validation entirely inside the enclave (seed 3.4).

The order is the seed's `AirGappedAuth.validate_key`, and each step only runs if the one before passed:
SHA-256 lookup (constant-time compare) -> revoked / expired -> tenant match -> permission ->
rate limit (per key, then per tenant). Failures are `AuthError`s carrying the HTTP status, a stable
code and a message that never repeats the key.
"""

from __future__ import annotations

import hmac
import logging
import math
import os
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from airlock.apikeys import PERMISSIONS, ApiKeyError, KeyRecord, KeyStore, hash_key, load_store
from airlock.errors import AirlockError
from inference.auth.ratelimit import RateLimiter, RateLimitUnavailable, parse_rate

log = logging.getLogger(__name__)
NO_MATCH = "0" * 64  # compared against when no record matched, so every path does the same work
RACY_NS = 2_000_000_000  # file timestamps can be this coarse (and clocks this far apart) in practice
HOW_TO_SEND = "send it as `X-API-KEY: <key>` or `Authorization: Bearer <key>`"


class AuthError(AirlockError):
    """A refused request: `status` is the HTTP status, `code` a stable machine-readable reason."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        retry_after: float | None = None,
        key_id: str | None = None,
    ):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.retry_after = retry_after
        self.key_id = key_id

    def headers(self) -> dict[str, str]:
        """Response headers the status calls for (RFC 6750 challenge, RFC 9110 Retry-After)."""
        if self.status == 401:
            return {"WWW-Authenticate": 'Bearer realm="airlock"'}
        if self.retry_after is not None:
            return {"Retry-After": str(max(1, math.ceil(self.retry_after)))}
        return {}


@dataclass(frozen=True)
class Principal:
    key_id: str
    tenant: str
    permissions: tuple[str, ...]


def extract_key(headers: Mapping[str, str]) -> str | None:
    """The presented key: `X-API-KEY` (Fooocus-API) first, else `Authorization: Bearer <key>`."""
    api_key = bearer = None
    for name, value in headers.items():
        lowered = name.lower()
        if lowered == "x-api-key":
            api_key = value.strip() or None
        elif lowered == "authorization":
            scheme, _, credentials = value.strip().partition(" ")
            if scheme.lower() == "bearer":
                bearer = credentials.strip() or None
    return api_key or bearer


def _utcnow() -> datetime:
    return datetime.now(UTC)


class Authenticator:
    """Validates keys against the hashed store, reloading it whenever the file changes."""

    def __init__(
        self,
        store_path: Path,
        limiter: RateLimiter,
        *,
        default_rate: str = "60/min",
        tenant_rate: str | None = None,
        clock: Callable[[], datetime] = _utcnow,
    ):
        self.store_path = Path(store_path)
        self.limiter = limiter
        self.clock = clock
        self.default_rate = parse_rate(default_rate)  # a bad setting fails at startup, not per request
        self.tenant_rate = parse_rate(tenant_rate) if tenant_rate is not None else None
        self._lock = threading.Lock()
        self._signature: tuple[int, int, int] | None = None
        self._racy = False
        self._store = KeyStore(self.store_path)

    def store(self) -> KeyStore:
        """The current store; re-read when the file's inode, mtime or size changes (atomic replace).

        Two changes within one file-timestamp tick can leave all three equal (same size, a reused
        inode), so a file modified shortly before it was read is read again until it is older than
        RACY_NS: the same "racy timestamp" rule git uses for its index.
        """
        try:
            st = os.stat(self.store_path)
            signature: tuple[int, int, int] | None = (st.st_ino, st.st_mtime_ns, st.st_size)
        except FileNotFoundError:
            signature = None  # no keys made yet: every key is unknown
        except OSError as exc:
            raise self._unavailable(exc) from exc
        with self._lock:
            if signature != self._signature or self._racy:
                read_at = time.time_ns()
                try:
                    store = load_store(self.store_path)
                except ApiKeyError as exc:
                    # Fail closed: an unreadable store must not leave revoked keys working.
                    raise self._unavailable(exc) from exc
                self._store, self._signature = store, signature
                self._racy = signature is not None and read_at - signature[1] < RACY_NS
            return self._store

    def _unavailable(self, exc: Exception) -> AuthError:
        # The reason (a server path) goes to the operator's log, not to the client.
        log.error("API key store %s cannot be used: %s", self.store_path, exc)
        return AuthError(
            503, "key_store_unavailable", "API keys cannot be checked right now; try again later"
        )

    def _take(self, bucket: str, rate: float, burst: int) -> float:
        try:
            return self.limiter.take(bucket, rate, burst)
        except RateLimitUnavailable as exc:  # fail closed: no limit check, no request
            log.error("%s", exc)
            raise AuthError(
                503, "rate_limit_unavailable", "rate limits cannot be checked right now; try again later"
            ) from exc

    def authenticate(
        self, api_key: str | None, operation: str | None, tenant: str | None = None
    ) -> Principal:
        """operation None: any valid key will do (who am I); every other check still applies."""
        if operation is not None and operation not in PERMISSIONS:
            raise ValueError(f"unknown operation {operation!r}; use one of {', '.join(PERMISSIONS)}")
        store = self.store()
        # Hash whatever came (even nothing, even garbage) so the time taken says nothing about its form.
        digest = hash_key(api_key or "")
        record = store.by_hash.get(digest)
        matched = hmac.compare_digest(record.sha256 if record else NO_MATCH, digest)
        if not api_key:
            raise AuthError(401, "missing_key", f"missing API key: {HOW_TO_SEND}")
        if record is None or not matched:
            raise AuthError(401, "invalid_key", "invalid API key")
        return self._authorize(record, operation, tenant)

    def _authorize(self, record: KeyRecord, operation: str | None, tenant: str | None) -> Principal:
        key_id = record.key_id
        now = self.clock()
        if record.revoked(now):
            raise AuthError(
                401,
                "revoked_key",
                f"API key {key_id} was revoked; ask your administrator for a new key",
                key_id=key_id,
            )
        if record.expired(now):
            raise AuthError(
                401,
                "expired_key",
                f"API key {key_id} expired at {record.expires_at}; ask for a new key",
                key_id=key_id,
            )
        if tenant is not None and tenant != record.tenant:
            raise AuthError(
                403, "tenant_mismatch", f"API key {key_id} is not valid for tenant {tenant!r}", key_id=key_id
            )
        if operation is not None and not record.allows(operation):
            raise AuthError(
                403,
                "insufficient_permission",
                f"API key {key_id} lacks the {operation!r} permission",
                key_id=key_id,
            )
        rate, burst = parse_rate(record.rate) if record.rate else self.default_rate
        wait = self._take(f"key:{key_id}", rate, burst)
        if wait > 0:
            raise AuthError(
                429,
                "rate_limited",
                f"rate limit of API key {key_id} exceeded; retry in {math.ceil(wait)} s",
                retry_after=wait,
                key_id=key_id,
            )
        if self.tenant_rate is not None:
            wait = self._take(f"tenant:{record.tenant}", *self.tenant_rate)
            if wait > 0:
                raise AuthError(
                    429,
                    "rate_limited",
                    f"rate limit of tenant {record.tenant!r} exceeded; retry in {math.ceil(wait)} s",
                    retry_after=wait,
                    key_id=key_id,
                )
        return Principal(key_id, record.tenant, record.permissions)
