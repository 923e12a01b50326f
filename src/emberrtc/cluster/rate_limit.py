"""Rate limits counted across the cluster (issue 12, item 6): one token bucket per (key, category) in Redis.

The same buckets as :class:`~emberrtc.api.ratelimit.RateLimiter` (``count`` tokens, refilled at
``count/period`` per second; spec Table 1-2 for the API, ``signin_limits`` for failed sign-ins, the
``refused_joins`` of signalling), but kept in Redis and updated by one Lua script (:data:`_BUCKET`) on Redis's
clock, so requests spread over the nodes count against one limit, not one per node.

When Redis does not answer (within ``timeout``, 0.25 s), a request is counted by this node's own in-process
limiter instead, as on a single node: limits hold per node (fail-open towards the node's count, never
refusing for want of Redis). The first failure is logged, and Redis is tried again after ``retry_after`` (2 s);
the return to shared counting is logged too.
"""

from __future__ import annotations

import hashlib
import logging
import time

from redis.asyncio import Redis
from redis.exceptions import RedisError

from emberrtc.api.ratelimit import RateLimiter, refused
from emberrtc.config import RateLimit
from emberrtc.domain.clock import Clock

from .keyspace import Keyspace

log = logging.getLogger(__name__)

# KEYS: the bucket (hash: tokens, at). ARGV: count, period ms, 1 to take a token (0 to look only).
# Returns nil when a token is there (taken if asked), else the ms until the next one (as a string).
_BUCKET = """
local count = tonumber(ARGV[1])
local period = tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
local h = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens = tonumber(h[1]) or count
local at = tonumber(h[2]) or now
tokens = math.min(count, tokens + math.max(0, now - at) * count / period)
local allowed = tokens >= 1
if ARGV[3] == '1' then
  if allowed then tokens = tokens - 1 end
  redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'at', tostring(now))
  redis.call('PEXPIRE', KEYS[1], math.ceil(period) + 1000)
end
if allowed then return false end
return tostring((1 - tokens) * period / count)
"""

#: Keys longer than this (sign-in keys hold user names) are hashed in the bucket's name.
_MAX_KEY = 128


class SharedRateLimiter(RateLimiter):
    """A :class:`RateLimiter` whose buckets live in the cluster's Redis; its own in-process buckets serve
    while Redis does not answer. ``redis`` should have short socket timeouts and no retries
    (:func:`limiter_client`): a request waits for its count at most ``timeout``."""

    def __init__(
        self,
        limits: dict[str, RateLimit],
        clock: Clock,
        enabled: bool = True,
        *,
        redis: Redis,
        keys: Keyspace,
        name: str = "api",
        retry_after: float = 2.0,
    ) -> None:
        super().__init__(limits, clock, enabled)
        self._redis = redis
        self._prefix = f"{keys.prefix}rate:{name}:"
        self._retry_after = retry_after
        self._down_until: float | None = None  # monotonic; set while Redis is taken for unreachable

    def bucket(self, key: str, category: str) -> str:
        """The bucket's Redis key."""
        if len(key) > _MAX_KEY:
            key = "sha256:" + hashlib.sha256(key.encode()).hexdigest()
        return f"{self._prefix}{category}:{key}"

    async def _shared(self, key: str, category: str, limit: RateLimit, take: bool) -> float | None | bool:
        """Seconds until the next token (None: there is one, taken if ``take``); False when Redis did not
        answer (the caller counts here)."""
        if self._down_until is not None and time.monotonic() < self._down_until:
            return False
        try:
            wait_ms = await self._redis.eval(  # type: ignore[misc]
                _BUCKET, 1, self.bucket(key, category), limit.count, int(limit.period * 1000), 1 if take else 0
            )
        except (RedisError, OSError) as exc:
            if self._down_until is None:
                log.warning(
                    "rate limits: the cluster's Redis does not answer (%s); counting on this node alone until it does",
                    exc,
                )
            self._down_until = time.monotonic() + self._retry_after
            return False
        if self._down_until is not None:
            log.info("rate limits: the cluster's Redis answers again; counting across the cluster")
            self._down_until = None
        return None if wait_ms is None else float(wait_ms) / 1000

    async def take(self, tenant: str, category: str) -> None:
        limit = self._limits.get(category)
        if not self.enabled or limit is None:
            return
        wait = await self._shared(tenant, category, limit, take=True)
        if wait is False:
            self.check(tenant, category)
        elif wait is not None:
            raise refused(limit, category, wait)

    async def peek(self, tenant: str, category: str) -> float | None:
        limit = self._limits.get(category)
        if not self.enabled or limit is None:
            return None
        wait = await self._shared(tenant, category, limit, take=False)
        if wait is False:
            return self.blocked(tenant, category)
        return wait


def limiter_client(url: str, timeout: float = 0.25) -> Redis:
    """A Redis client for counting requests: each command answers within ``timeout`` or fails, not retried."""
    from redis.asyncio.retry import Retry
    from redis.backoff import NoBackoff

    return Redis.from_url(
        url,
        decode_responses=True,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        retry=Retry(NoBackoff(), 0),
    )
