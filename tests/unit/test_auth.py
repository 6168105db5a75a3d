"""Request authentication (seed 3.4 order): hash lookup, revoked/expired, tenant, permission, rate limit."""

import hmac
import json
import os
import threading
from datetime import timedelta

import pytest

from airlock.apikeys import create_key, revoke_key, rotate_key
from airlock.audit import AuditLog
from inference.auth import Authenticator, AuthError, TokenBuckets, extract_key, parse_rate
from inference.auth import authenticate as authenticate_module

TENANT, OTHER = "tenant_defense_a", "tenant_health_b"


class Ticks:
    """A fake monotonic clock for the buckets."""

    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def store(tmp_path):
    return tmp_path / "apikeys.json"


@pytest.fixture
def audit(root, clock):
    with AuditLog(root, clock=clock) as log:
        yield log


@pytest.fixture
def ticks():
    return Ticks()


@pytest.fixture
def new_key(store, audit, clock):
    def make(tenant=TENANT, permissions=("generate", "jobs:read"), **extra):
        return create_key(
            store, tenant=tenant, permissions=permissions, created_by="ops", audit=audit, clock=clock, **extra
        )

    return make


@pytest.fixture
def auth(store, ticks, clock):
    return Authenticator(store, TokenBuckets(clock=ticks), default_rate="60/min", clock=clock)


def refusal(auth, key, operation="generate", tenant=None) -> AuthError:
    with pytest.raises(AuthError) as caught:
        auth.authenticate(key, operation, tenant)
    return caught.value


def test_a_valid_key_gives_its_principal(auth, new_key):
    key, record = new_key()
    principal = auth.authenticate(key, "generate", TENANT)
    assert principal.key_id == record.key_id
    assert principal.tenant == TENANT
    assert principal.permissions == ("generate", "jobs:read")
    assert auth.authenticate(key, "jobs:read").tenant == TENANT  # no tenant asked: the key's own


@pytest.mark.parametrize("presented", [None, ""])
def test_missing_key_is_401(auth, new_key, presented):
    new_key()
    error = refusal(auth, presented)
    assert (error.status, error.code, error.key_id) == (401, "missing_key", None)
    assert "X-API-KEY" in error.message
    assert error.headers()["WWW-Authenticate"].startswith("Bearer")


@pytest.mark.parametrize("presented", ["alk_" + "x" * 43, "garbage", "ak_0123456789ab", "ünïcode"])
def test_unknown_key_is_401_and_never_echoed(auth, new_key, presented):
    key, _ = new_key()
    for attempt in (presented, key[:-1], key + "x"):
        error = refusal(auth, attempt)
        assert (error.status, error.code) == (401, "invalid_key")
        assert attempt not in error.message


def test_revoked_key_is_401(auth, new_key, store, audit, clock):
    key, record = new_key()
    auth.authenticate(key, "generate")
    revoke_key(store, record.key_id, actor="ops", audit=audit, clock=clock)
    error = refusal(auth, key)  # the change is picked up without a restart
    assert (error.status, error.code, error.key_id) == (401, "revoked_key", record.key_id)
    assert key not in error.message


def test_rotated_key_works_until_its_grace_ends(auth, new_key, store, audit, clock):
    old_key, old = new_key()
    new, _ = rotate_key(store, old.key_id, actor="ops", audit=audit, grace=timedelta(hours=1), clock=clock)
    assert auth.authenticate(old_key, "generate").key_id == old.key_id
    assert auth.authenticate(new, "generate").key_id != old.key_id
    clock.advance(hours=1)
    assert refusal(auth, old_key).code == "revoked_key"
    auth.authenticate(new, "generate")


def test_expired_key_is_401(auth, new_key, clock):
    key, record = new_key(expires_in=timedelta(days=1))
    auth.authenticate(key, "generate")
    clock.advance(days=1)
    error = refusal(auth, key)
    assert (error.status, error.code, error.key_id) == (401, "expired_key", record.key_id)


def test_tenant_mismatch_is_403(auth, new_key):
    key, record = new_key()
    error = refusal(auth, key, tenant=OTHER)
    assert (error.status, error.code, error.key_id) == (403, "tenant_mismatch", record.key_id)


def test_missing_permission_is_403_and_admin_grants_all(auth, new_key):
    key, _ = new_key(permissions=["models:read"])
    error = refusal(auth, key, "audit:read-full")
    assert (error.status, error.code) == (403, "insufficient_permission")
    assert "audit:read-full" in error.message
    admin, _ = new_key(permissions=["admin"])
    assert auth.authenticate(admin, "audit:read-full").permissions == ("admin",)


def test_an_unknown_operation_is_a_programming_error(auth, new_key):
    key, _ = new_key()
    with pytest.raises(ValueError, match="unknown operation"):
        auth.authenticate(key, "delete-everything")


def test_checks_run_in_the_seed_order(auth, new_key, clock):
    """A key that fails several checks reports the first: revoked/expired before tenant before permission."""
    key, _ = new_key(permissions=["models:read"], expires_in=timedelta(hours=1))
    assert refusal(auth, key, "generate", OTHER).code == "tenant_mismatch"
    clock.advance(hours=1)
    assert refusal(auth, key, "generate", OTHER).code == "expired_key"


def test_every_lookup_uses_one_constant_time_comparison(auth, new_key, monkeypatch):
    key, _ = new_key()
    calls, real = [], hmac.compare_digest

    def counting(a, b):
        calls.append((len(a), len(b)))
        return real(a, b)

    monkeypatch.setattr(authenticate_module.hmac, "compare_digest", counting)
    auth.authenticate(key, "generate")
    for presented in (None, "", "garbage", "alk_" + "y" * 43):
        with pytest.raises(AuthError):
            auth.authenticate(presented, "generate")
    assert calls == [(64, 64)] * 5  # hash against hash, whether or not anything matched


# ---------------------------------------------------------------- rate limits


def test_burst_then_429_with_retry_after_then_refill(store, new_key, ticks, clock):
    key, record = new_key(rate="3/min")
    auth = Authenticator(store, TokenBuckets(clock=ticks), clock=clock)
    for _ in range(3):
        auth.authenticate(key, "generate")
    error = refusal(auth, key)
    assert (error.status, error.code, error.key_id) == (429, "rate_limited", record.key_id)
    assert error.retry_after == pytest.approx(20.0)
    assert error.headers() == {"Retry-After": "20"}
    ticks.now += 19.9
    assert refusal(auth, key).retry_after == pytest.approx(0.1)
    ticks.now += 0.1
    auth.authenticate(key, "generate")
    ticks.now += 3600  # a long idle refills to the burst, never beyond
    for _ in range(3):
        auth.authenticate(key, "generate")
    assert refusal(auth, key).code == "rate_limited"


def test_keys_without_a_rate_get_the_service_default(store, new_key, ticks, clock):
    key, _ = new_key()
    auth = Authenticator(store, TokenBuckets(clock=ticks), default_rate="2/s", clock=clock)
    auth.authenticate(key, "generate")
    auth.authenticate(key, "generate")
    assert refusal(auth, key).retry_after == pytest.approx(0.5)


def test_tenant_limit_spans_all_its_keys(store, new_key, ticks, clock):
    first, _ = new_key(rate="100/s")
    second, _ = new_key(rate="100/s")
    other, _ = new_key(tenant=OTHER, rate="100/s")
    auth = Authenticator(store, TokenBuckets(clock=ticks), tenant_rate="3/s", clock=clock)
    for key in (first, second, first):
        auth.authenticate(key, "generate")
    error = refusal(auth, second)
    assert error.code == "rate_limited" and TENANT in error.message and error.retry_after > 0
    auth.authenticate(other, "generate")  # another tenant is not held back
    ticks.now += 1
    auth.authenticate(second, "generate")


def test_token_buckets_are_independent_and_bounded():
    ticks = Ticks()
    buckets = TokenBuckets(clock=ticks, max_buckets=100)
    assert buckets.take("a", 1.0, 1) == 0.0
    assert buckets.take("a", 1.0, 1) == pytest.approx(1.0)
    assert buckets.take("b", 1.0, 1) == 0.0
    for n in range(1000):
        buckets.take(f"k{n}", 1.0, 5)
    assert len(buckets) <= 100
    ticks.now += 10  # everything idle has refilled: dropping those buckets loses nothing
    buckets.take("fresh", 1.0, 1)
    assert len(buckets) == 1


def test_token_buckets_are_thread_safe():
    buckets = TokenBuckets(clock=lambda: 0.0)
    allowed = []

    def hammer():
        allowed.extend(buckets.take("shared", 1.0, 500) == 0.0 for _ in range(200))

    threads = [threading.Thread(target=hammer) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(allowed) == 500  # exactly the burst, however the threads interleave


def test_parse_rate_is_shared_with_the_store():
    assert parse_rate("30/min") == (0.5, 30)
    with pytest.raises(ValueError, match="N/s, N/min or N/h"):
        Authenticator("unused.json", TokenBuckets(), default_rate="fast")


# ---------------------------------------------------------------- headers and the store file


@pytest.mark.parametrize(
    "headers",
    [
        {"X-API-KEY": "alk_abc"},
        {"x-api-key": " alk_abc "},
        {"Authorization": "Bearer alk_abc"},
        {"authorization": "bearer   alk_abc"},
        {"X-Api-Key": "alk_abc", "Authorization": "Bearer alk_other"},
    ],
)
def test_extract_key_accepts_both_header_forms(headers):
    assert extract_key(headers) == "alk_abc"


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Basic dXNlcjpwYXNz"}, {"Authorization": "Bearer "}, {"X-API-KEY": ""}],
)
def test_extract_key_finds_nothing_without_a_key(headers):
    assert extract_key(headers) is None


def test_no_store_yet_means_every_key_is_unknown(auth):
    assert refusal(auth, "alk_" + "z" * 43).code == "invalid_key"


def test_a_damaged_store_fails_closed_with_503(auth, new_key, store):
    key, _ = new_key()
    auth.authenticate(key, "generate")
    doc = json.loads(store.read_text())
    doc["version"] = 99
    store.write_text(json.dumps(doc))
    error = refusal(auth, key)
    assert (error.status, error.code) == (503, "key_store_unavailable")
    assert str(store) not in error.message  # server paths stay in the operator's log


def test_a_change_stat_cannot_see_is_still_picked_up_while_the_file_is_fresh(
    auth, new_key, store, audit, clock
):
    """Same inode, size and mtime (two writes in one timestamp tick): the racy-timestamp rule re-reads."""
    old_key, old = new_key()
    rotate_key(store, old.key_id, actor="ops", audit=audit, grace=timedelta(hours=1), clock=clock)
    auth.authenticate(old_key, "generate")
    before = store.stat()
    text = store.read_text()
    assert text.count('"2026-10-01T10:00:00Z"') == 1
    store.write_text(text.replace('"2026-10-01T10:00:00Z"', '"2026-10-01T09:00:00Z"'))  # revoke it now
    os.utime(store, ns=(before.st_atime_ns, before.st_mtime_ns))
    after = store.stat()
    assert (after.st_ino, after.st_size, after.st_mtime_ns) == (
        before.st_ino,
        before.st_size,
        before.st_mtime_ns,
    )
    assert refusal(auth, old_key).code == "revoked_key"
