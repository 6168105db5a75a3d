"""Rate limits shared through a real Redis: two service hosts draw from one bucket, Redis' own clock
refills it, TLS 1.3 with the internal CA works, and an unreachable Redis refuses requests (503)."""

import time

import pytest
from redis_server import redis_server

from airlock.apikeys import create_key
from airlock.audit import AuditLog
from airlock.ca import init_ca, issue
from inference.auth import Authenticator, AuthError, RateLimitUnavailable, RedisBuckets
from inference.settings import LimitSettings


@pytest.fixture(scope="module")
def redis_url(tmp_path_factory):
    with redis_server(tmp_path_factory.mktemp("redis")) as (url, _):
        yield url


def test_two_hosts_share_one_bucket(redis_url):
    host_a, host_b = RedisBuckets.from_url(redis_url), RedisBuckets.from_url(redis_url)
    waits = [host.take("key:shared", 1 / 60, 4) for host in (host_a, host_b, host_a, host_b, host_a)]
    assert waits[:4] == [0.0] * 4
    assert 55 < waits[4] <= 60  # the fifth request waits for the next token, whichever host it hits
    assert host_b.take("key:other", 1 / 60, 4) == 0.0  # buckets are per key


def test_the_bucket_refills_on_redis_clock(redis_url):
    buckets = RedisBuckets.from_url(redis_url)
    assert [buckets.take("key:refill", 20.0, 2) for _ in range(2)] == [0.0, 0.0]
    wait = buckets.take("key:refill", 20.0, 2)
    assert 0 < wait <= 0.05
    time.sleep(0.12)
    assert buckets.take("key:refill", 20.0, 2) == 0.0


def test_idle_buckets_expire(redis_url):
    buckets = RedisBuckets.from_url(redis_url)
    buckets.take("key:idle", 100.0, 1)
    ttl_ms = buckets.client.pttl(RedisBuckets.PREFIX + "key:idle")
    assert 0 < ttl_ms <= 1100  # gone about a second after it would be full again


def test_wrong_password_or_no_redis_fails_closed(redis_url):
    wrong = redis_url.replace(redis_url.split("@")[0], "redis://:not-the-password")
    with pytest.raises(RateLimitUnavailable):
        RedisBuckets.from_url(wrong).take("key:x", 1.0, 1)
    with pytest.raises(RateLimitUnavailable):
        RedisBuckets.from_url("redis://127.0.0.1:1/0", timeout_s=0.5).take("key:x", 1.0, 1)


def test_an_unreachable_redis_refuses_the_request_with_503(tmp_path):
    store = tmp_path / "apikeys.json"
    with AuditLog(tmp_path / "audit") as audit:
        key, _ = create_key(store, tenant="tenant_a", permissions=["generate"], created_by="t", audit=audit)
    auth = Authenticator(store, RedisBuckets.from_url("redis://127.0.0.1:1/0", timeout_s=0.5))
    with pytest.raises(AuthError) as caught:
        auth.authenticate(key, "generate")
    assert caught.value.status == 503 and caught.value.code == "rate_limit_unavailable"


def test_tls_13_with_the_internal_ca(tmp_path):
    ca = init_ca(tmp_path / "tls")
    cert, key = issue(ca, ["localhost", "127.0.0.1"], tmp_path / "tls")
    with redis_server(tmp_path / "redis", tls=(cert, key, ca.cert_path)) as (url, _):
        assert RedisBuckets.from_url(url, ca_cert=ca.cert_path).take("key:tls", 1.0, 1) == 0.0
        stranger = init_ca(tmp_path / "other-ca")
        with pytest.raises(RateLimitUnavailable):  # a server our CA did not sign is not trusted
            RedisBuckets.from_url(url, ca_cert=stranger.cert_path).take("key:tls", 1.0, 1)


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("redis://10.20.0.7:6379/0", "plaintext Redis"),
        ("rediss://10.20.0.7:6379/0", "limits.redis_ca"),
        ("http://10.20.0.7/", "expected redis://"),
    ],
)
def test_settings_refuse_an_unsafe_redis(url, problem):
    assert problem in " ".join(LimitSettings(redis_url=url).redis_problems())


def test_settings_accept_loopback_and_verified_tls(tmp_path):
    ca = tmp_path / "ca.crt"
    ca.write_text("pem")
    assert LimitSettings(redis_url="redis://127.0.0.1:6379/0").redis_problems() == []
    assert LimitSettings(redis_url="rediss://redis.internal:6380/0", redis_ca=ca).redis_problems() == []
