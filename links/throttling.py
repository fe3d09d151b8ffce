"""Per-IP token buckets for link generation and download (API.md §9), in Django's default cache.

DRF's SimpleRateThrottle counts N requests per period; upstream uses token buckets (generation:
100 tokens/s, burst 1; download: 10 tokens/s, burst 5), so two generate requests 10 ms apart
collide while a steady 50/s passes. The bucket is (tokens, timestamp) under one cache key per
scope and client IP, and the IP is REMOTE_ADDR only: X-Forwarded-For and X-Real-IP are client
input and would let anyone mint fresh buckets (§15).

Limits can be changed (tests, load tests) with the Django settings CALLFS_LINK_GENERATE_RATE and
CALLFS_LINK_DOWNLOAD_RATE: a `(tokens_per_second, burst)` pair, or None for no limit.
"""

from __future__ import annotations

import threading
import time

from django.conf import settings
from django.core.cache import DEFAULT_CACHE_ALIAS, cache, caches
from rest_framework.throttling import BaseThrottle

from callfs_site.errors import ServiceUnavailable

# (tokens per second, burst); upstream hard-codes these (§9).
DEFAULT_GENERATE_RATE: tuple[float, int] = (100.0, 1)
DEFAULT_DOWNLOAD_RATE: tuple[float, int] = (10.0, 5)

# An idle bucket is full again after burst/rate seconds; keep it a little longer, then let the
# cache evict it (upstream evicts idle IPs after 10 minutes).
IDLE_SECONDS = 600

# Atomic refill-and-take in Redis: every node and worker shares one bucket per IP without a race.
# Redis's own clock is used so nodes with skewed clocks agree on the refill.
_REDIS_TAKE = """
local now_parts = redis.call('TIME')
local now = tonumber(now_parts[1]) + tonumber(now_parts[2]) / 1000000
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local state = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens = tonumber(state[1])
local stamp = tonumber(state[2])
if tokens == nil or stamp == nil then
  tokens = burst
  stamp = now
end
tokens = math.min(burst, tokens + math.max(0, now - stamp) * rate)
local allowed = 0
if tokens >= 1 then
  tokens = tokens - 1
  allowed = 1
end
-- %.6f: tostring() keeps 14 digits, which would round the timestamp to 0.1 ms
local left = string.format('%.9f', tokens)
redis.call('HSET', KEYS[1], 'tokens', left, 'ts', string.format('%.6f', now))
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[3]))
return {allowed, left}
"""

# Non-Redis caches (the default LocMemCache) live inside one process, so a process-wide lock
# makes get-refill-set atomic for them. A shared non-Redis cache (memcached, database) would
# only be approximately right under concurrency: two racing requests may both take the last
# token, which admits one extra request now and then and is acceptable for a rate limiter.
_local_lock = threading.Lock()


def cache_key(scope: str, ident: str) -> str:
    """The cache key of one client's bucket for one scope."""
    return f"links:bucket:{scope}:{ident}"


def _redis_cache():
    """The default cache if it is django-redis (not the `cache` proxy, whose type says nothing)."""
    from django_redis.cache import RedisCache

    backend = caches[DEFAULT_CACHE_ALIAS]
    return backend if isinstance(backend, RedisCache) else None


def take(scope: str, ident: str, rate: float, burst: int) -> tuple[bool, float]:
    """Take one token from the bucket; return (allowed, seconds until a token is available)."""
    key = cache_key(scope, ident)
    redis_cache = _redis_cache()
    if redis_cache is not None:
        from redis.exceptions import RedisError

        try:
            # The same prefixed key django-redis uses, so cache.delete(cache_key(...)) resets it.
            allowed, left = redis_cache.client.get_client(write=True).eval(
                _REDIS_TAKE, 1, redis_cache.client.make_key(key), rate, burst, IDLE_SECONDS)
        except RedisError:
            # §16.1: Redis down is a 503, not a crash; the limiter does not silently fail open.
            raise ServiceUnavailable("the rate limiter is unavailable, try again later") from None
        tokens = float(left)
        return bool(allowed), 0.0 if allowed else (1 - tokens) / rate
    with _local_lock:
        now = time.monotonic()
        tokens, stamp = cache.get(key, (float(burst), now))
        tokens = min(float(burst), tokens + max(0.0, now - stamp) * rate)
        allowed = tokens >= 1
        if allowed:
            tokens -= 1
        cache.set(key, (tokens, now), IDLE_SECONDS)
    return allowed, 0.0 if allowed else (1 - tokens) / rate


class TokenBucketThrottle(BaseThrottle):
    """A DRF throttle answering 429 RATE_LIMIT_EXCEEDED (via the error handler) when the
    client's bucket is empty. Subclasses name the scope, its setting and its default."""

    scope = ""
    setting = ""
    default: tuple[float, int] | None = None

    def __init__(self) -> None:
        self._wait = 0.0

    def limit(self) -> tuple[float, int] | None:
        return getattr(settings, self.setting, self.default)

    def get_ident(self, request) -> str:
        # The TCP peer only; DRF's own get_ident would trust X-Forwarded-For with NUM_PROXIES.
        return request.META.get("REMOTE_ADDR") or "unknown"

    def allow_request(self, request, view) -> bool:
        limit = self.limit()
        if limit is None:
            return True
        rate, burst = limit
        allowed, self._wait = take(self.scope, self.get_ident(request), float(rate), int(burst))
        return allowed

    def wait(self) -> float | None:
        return self._wait or None


class LinkGenerateThrottle(TokenBucketThrottle):
    """POST /v1/links/generate: 100/s, burst 1 per client IP, after authentication."""

    scope = "generate"
    setting = "CALLFS_LINK_GENERATE_RATE"
    default = DEFAULT_GENERATE_RATE


class LinkDownloadThrottle(TokenBucketThrottle):
    """GET /download/{token}: 10/s, burst 5 per client IP, before the link is looked at."""

    scope = "download"
    setting = "CALLFS_LINK_DOWNLOAD_RATE"
    default = DEFAULT_DOWNLOAD_RATE
