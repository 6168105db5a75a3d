"""Local rate limiting (seed 3.4: "Redis or in-memory"): token buckets, one per key id and one per tenant.

A bucket holds up to `burst` tokens and refills at `rate_per_s`; a request takes one token or is told
how long until one is there (the `Retry-After` of a 429). In-memory buckets are per process: run one
worker per host, or add a shared backend that satisfies `RateLimiter`.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from airlock.apikeys import parse_rate

__all__ = ["RateLimiter", "TokenBuckets", "parse_rate"]


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
