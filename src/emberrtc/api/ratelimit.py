"""Per-tenant, per-category throttling (spec Table 1-2) as token buckets."""

from __future__ import annotations

from emberrtc.config import RateLimit
from emberrtc.domain.clock import Clock
from emberrtc.domain.errors import RateLimited

_PRUNE_AT = 10_000  # buckets kept before full ones are forgotten


def refused(limit: RateLimit, category: str, wait: float) -> RateLimited:
    """The error for a request over ``limit``, the next token ``wait`` seconds away."""
    return RateLimited(
        f"more than {limit.count} {category} requests in {limit.period:g} s; retry after {wait:.1f} s",
        retry_after=wait,
    )


class RateLimiter:
    """A bucket per (tenant, category) holding up to ``count`` tokens, refilled at ``count/period`` per second."""

    def __init__(self, limits: dict[str, RateLimit], clock: Clock, enabled: bool = True) -> None:
        self._limits = limits
        self._clock = clock
        self.enabled = enabled
        self._buckets: dict[tuple[str, str], tuple[float, float]] = {}
        self._prune_at = _PRUNE_AT

    async def take(self, tenant: str, category: str) -> None:
        """What callers use: :meth:`check` here; in a cluster, counted across the nodes
        (``cluster.rate_limit.SharedRateLimiter``)."""
        self.check(tenant, category)

    async def peek(self, tenant: str, category: str) -> float | None:
        """What callers use: :meth:`blocked` here; in a cluster, across the nodes."""
        return self.blocked(tenant, category)

    def blocked(self, tenant: str, category: str) -> float | None:
        """Seconds until ``tenant`` has a token for ``category`` again, or None if it has one (none taken)."""
        limit = self._limits.get(category)
        if not self.enabled or limit is None:
            return None
        rate = limit.count / limit.period
        tokens, last = self._buckets.get((tenant, category), (float(limit.count), self._clock.now()))
        tokens = min(float(limit.count), tokens + (self._clock.now() - last) * rate)
        return None if tokens >= 1.0 else (1.0 - tokens) / rate

    def check(self, tenant: str, category: str) -> None:
        """Take one token, or raise :class:`RateLimited` with the seconds until the next one."""
        limit = self._limits.get(category)
        if not self.enabled or limit is None:
            return
        now = self._clock.now()
        rate = limit.count / limit.period
        tokens, last = self._buckets.get((tenant, category), (float(limit.count), now))
        tokens = min(float(limit.count), tokens + (now - last) * rate)
        if tokens < 1.0:
            self._buckets[(tenant, category)] = (tokens, now)
            raise refused(limit, category, (1.0 - tokens) / rate)
        self._buckets[(tenant, category)] = (tokens - 1.0, now)
        if len(self._buckets) > self._prune_at:
            self._prune(now)
            # Pruning walks every bucket: when most are busy, wait for twice as many before the next walk.
            self._prune_at = max(_PRUNE_AT, 2 * len(self._buckets))

    def _prune(self, now: float) -> None:
        """Forget buckets that have refilled (keys such as client addresses must not grow without end)."""
        for key, (tokens, last) in list(self._buckets.items()):
            limit = self._limits.get(key[1])
            if limit is None or tokens + (now - last) * limit.count / limit.period >= limit.count:
                del self._buckets[key]
