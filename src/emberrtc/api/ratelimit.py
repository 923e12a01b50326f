"""Per-tenant, per-category throttling (spec Table 1-2) as token buckets."""

from __future__ import annotations

from emberrtc.config import RateLimit
from emberrtc.domain.clock import Clock
from emberrtc.domain.errors import RateLimited


class RateLimiter:
    """A bucket per (tenant, category) holding up to ``count`` tokens, refilled at ``count/period`` per second."""

    def __init__(self, limits: dict[str, RateLimit], clock: Clock, enabled: bool = True) -> None:
        self._limits = limits
        self._clock = clock
        self.enabled = enabled
        self._buckets: dict[tuple[str, str], tuple[float, float]] = {}

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
            wait = (1.0 - tokens) / rate
            raise RateLimited(
                f"more than {limit.count} {category} requests in {limit.period:g} s; retry after {wait:.1f} s",
                retry_after=wait,
            )
        self._buckets[(tenant, category)] = (tokens - 1.0, now)
