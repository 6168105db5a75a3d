"""Authentication for the HTTPS service: API keys checked against the local hashed store, tenant and
permission checks, and rate limits (seed section 3.4). Keys are managed with `airlock apikeys`."""

from inference.auth.authenticate import Authenticator, AuthError, Principal, extract_key
from inference.auth.ratelimit import RateLimiter, RateLimitUnavailable, RedisBuckets, TokenBuckets, parse_rate

__all__ = [
    "AuthError",
    "Authenticator",
    "Principal",
    "RateLimitUnavailable",
    "RateLimiter",
    "RedisBuckets",
    "TokenBuckets",
    "extract_key",
    "parse_rate",
]
