"""Local rate limiting (seed 3.4: "Redis or in-memory"): token buckets, one per key id and one per tenant.

A bucket holds up to `burst` tokens and refills at `rate_per_s`; a request takes one token or is told
how long until one is there (the `Retry-After` of a 429). `TokenBuckets` are per process (one worker
per host); `RedisBuckets` share the buckets between every service host behind a load balancer.
"""

from __future__ import annotations

import ssl
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import redis

from airlock.apikeys import parse_rate
from airlock.errors import AirlockError

__all__ = ["RateLimitUnavailable", "RateLimiter", "RedisBuckets", "TokenBuckets", "parse_rate"]


class RateLimitUnavailable(AirlockError):
    """The shared rate-limit store cannot be reached: requests are refused, never let through."""


class RateLimiter(Protocol):
    def take(self, key: str, rate_per_s: float, burst: int) -> float:
        """Take one token from `key`'s bucket: 0.0 if allowed, else seconds until a token is available."""
        ...


@dataclass
class _Bucket:
    tokens: float
    stamp: float  # clock reading when `tokens` was last brought up to date
    rate: float
    burst: int

    def full_at(self) -> float:
        return self.stamp + (self.burst - self.tokens) / self.rate


class TokenBuckets:
    """Thread-safe in-memory token buckets.

    Memory stays bounded: buckets are kept in least-recently-used order; a bucket that has refilled
    completely is the same as a new one, so those are dropped as they are found, and beyond
    `max_buckets` the least recently used is dropped regardless (its owner gets a fresh bucket).
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic, *, max_buckets: int = 100_000):
        self.clock = clock
        self.max_buckets = max_buckets
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._buckets)

    def take(self, key: str, rate_per_s: float, burst: int) -> float:
        if rate_per_s <= 0 or burst < 1:
            raise ValueError(f"rate_per_s must be > 0 and burst >= 1, got {rate_per_s} and {burst}")
        with self._lock:
            now = self.clock()
            bucket = self._buckets.get(key)
            if bucket is None:
                bucket = self._buckets[key] = _Bucket(float(burst), now, rate_per_s, burst)
            else:
                elapsed = max(0.0, now - bucket.stamp)  # a clock that steps back must not mint tokens
                bucket.tokens = min(float(burst), bucket.tokens + elapsed * rate_per_s)
                bucket.stamp, bucket.rate, bucket.burst = now, rate_per_s, burst
                self._buckets.move_to_end(key)
            if bucket.tokens >= 1.0:
                bucket.tokens -= 1.0
                wait = 0.0
            else:
                wait = (1.0 - bucket.tokens) / rate_per_s
            self._evict(now)
            return wait

    def _evict(self, now: float) -> None:
        # The oldest entries are the likeliest to be full again; stop at the first that is not.
        while len(self._buckets) > 1:
            key, oldest = next(iter(self._buckets.items()))
            if now >= oldest.full_at() or len(self._buckets) > self.max_buckets:
                del self._buckets[key]
            else:
                break


# The same bucket arithmetic as `TokenBuckets`, run atomically inside Redis. The clock is Redis' own
# TIME, so hosts with skewed clocks still share one notion of "now"; an idle bucket expires once it
# would be full again (a full bucket and no bucket are the same thing).
_TAKE = """
local rate, burst = tonumber(ARGV[1]), tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local state = redis.call('HMGET', KEYS[1], 'tokens', 'stamp')
local tokens, stamp = tonumber(state[1]), tonumber(state[2])
if tokens == nil or stamp == nil then tokens, stamp = burst, now end
tokens = math.min(burst, tokens + math.max(0, now - stamp) * rate)
local wait = 0
if tokens >= 1 then tokens = tokens - 1 else wait = (1 - tokens) / rate end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'stamp', tostring(now))
redis.call('PEXPIRE', KEYS[1], math.ceil((burst - tokens) / rate * 1000) + 1000)
return tostring(wait)
"""


class RedisBuckets:
    """Token buckets in Redis, shared by every service host that points at the same server."""

    PREFIX = "airlock:ratelimit:"

    def __init__(self, client: redis.Redis):
        self.client = client
        self._take = client.register_script(_TAKE)

    @classmethod
    def from_url(cls, url: str, *, ca_cert: Path | None = None, timeout_s: float = 2.0) -> RedisBuckets:
        """`redis://host:port/db` or `rediss://` (TLS, verified against ca_cert); password in the URL."""
        options: dict = {"socket_timeout": timeout_s, "socket_connect_timeout": timeout_s}
        if url.startswith("rediss://"):
            options |= {
                "ssl_ca_certs": str(ca_cert) if ca_cert else None,
                "ssl_min_version": ssl.TLSVersion.TLSv1_3,
            }
        return cls(redis.Redis.from_url(url, **options))

    def take(self, key: str, rate_per_s: float, burst: int) -> float:
        if rate_per_s <= 0 or burst < 1:
            raise ValueError(f"rate_per_s must be > 0 and burst >= 1, got {rate_per_s} and {burst}")
        try:
            return float(self._take(keys=[self.PREFIX + key], args=[repr(rate_per_s), burst]))
        except redis.RedisError as exc:
            raise RateLimitUnavailable(f"the Redis rate-limit store cannot be used: {exc}") from exc
