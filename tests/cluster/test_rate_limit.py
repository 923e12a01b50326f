"""Rate limits counted across nodes in the real Redis: requests spread over nodes meet one limit, looking
takes nothing, limiters of different names and keys are apart, and without Redis each node counts alone."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from emberrtc.cluster.keyspace import Keyspace
from emberrtc.cluster.rate_limit import SharedRateLimiter, limiter_client
from emberrtc.config import RateLimit
from emberrtc.domain.clock import ManualClock
from emberrtc.domain.errors import RateLimited
from tests.cluster.conftest import REDIS_URL
from tests.support.waiting import until

LIMITS = {"stats": RateLimit(5, 60.0), "jobs": RateLimit(2, 2.0)}
#: The tests' Redis answers on loopback, but a loaded CI machine can take longer than the 0.25 s a node allows
#: before it counts alone; these tests are about shared counting, so they wait longer.
SLOW_MACHINE = 5.0


@pytest.fixture
async def nodes(redis: Redis, keys: Keyspace) -> AsyncIterator[list[SharedRateLimiter]]:
    clients = [limiter_client(REDIS_URL, timeout=SLOW_MACHINE) for _ in range(3)]
    try:
        yield [SharedRateLimiter(LIMITS, ManualClock(), redis=c, keys=keys) for c in clients]
    finally:
        for c in clients:
            await c.aclose()


async def accepted(limiters: list[SharedRateLimiter], key: str, category: str, tries: int) -> int:
    """How many of ``tries`` requests, spread over the limiters in turn, are let through."""
    ok = 0
    for i in range(tries):
        try:
            await limiters[i % len(limiters)].take(key, category)
            ok += 1
        except RateLimited as exc:
            assert exc.retry_after > 0
    return ok


async def test_requests_spread_over_three_nodes_meet_one_limit(
    redis: Redis, keys: Keyspace, nodes: list[SharedRateLimiter]
) -> None:
    assert await accepted(nodes, "tenant-1", "stats", 15) == 5  # 5 per minute for the tenant, not 5 per node
    with pytest.raises(RateLimited) as refused:
        await nodes[1].take("tenant-1", "stats")
    # One token comes back every 12 s: the wait says so (less the little time since the last refill).
    assert 11.0 < refused.value.retry_after <= 12.0
    wait = await nodes[2].peek("tenant-1", "stats")
    assert wait is not None and 11.0 < wait <= 12.0
    # Another tenant, and another category, have their own buckets.
    assert await accepted(nodes, "tenant-2", "stats", 6) == 5
    assert await nodes[0].peek("tenant-1", "jobs") is None
    # The buckets are in Redis under the cluster's prefix.
    assert await redis.exists(nodes[0].bucket("tenant-1", "stats")) == 1
    assert nodes[0].bucket("tenant-1", "stats").startswith(keys.prefix + "rate:api:stats:")


async def test_looking_takes_nothing_and_a_bucket_refills(nodes: list[SharedRateLimiter]) -> None:
    for _ in range(5):
        assert await nodes[0].peek("t", "jobs") is None
    assert await accepted(nodes, "t", "jobs", 3) == 2
    # 2 per 2 s: a token is back within 1 s (Redis's clock decides).
    await until(lambda: _has_token(nodes[2], "t", "jobs"), within=5, what="a token to come back")
    await nodes[2].take("t", "jobs")


async def _has_token(limiter: SharedRateLimiter, key: str, category: str) -> bool:
    return await limiter.peek(key, category) is None


async def test_limiters_of_other_names_and_long_keys_are_apart(redis: Redis, keys: Keyspace) -> None:
    client = limiter_client(REDIS_URL, timeout=SLOW_MACHINE)
    try:
        api = SharedRateLimiter(LIMITS, ManualClock(), redis=client, keys=keys, name="api")
        signin = SharedRateLimiter(LIMITS, ManualClock(), redis=client, keys=keys, name="signin")
        assert await accepted([api], "k", "stats", 6) == 5
        assert await signin.peek("k", "stats") is None
        long_key = "user:" + "x" * 500
        bucket = api.bucket(long_key, "stats")
        assert len(bucket) < 200 and "xxxx" not in bucket
        assert await accepted([api], long_key, "stats", 6) == 5
        assert await accepted([api], long_key + "y", "stats", 1) == 1
        # Unknown categories and a disabled limiter let everything through.
        assert await accepted([api], "k", "nothing-like-it", 10) == 10
        api.enabled = False
        assert await accepted([api], "k", "stats", 3) == 3
    finally:
        await client.aclose()


async def test_without_redis_each_node_counts_alone_and_says_so(
    keys: Keyspace, caplog: pytest.LogCaptureFixture
) -> None:
    client = limiter_client("redis://127.0.0.1:9/0")  # nothing listens on the discard port
    try:
        clock = ManualClock()
        limiter = SharedRateLimiter(LIMITS, clock, redis=client, keys=keys, retry_after=60)
        with caplog.at_level(logging.WARNING, logger="emberrtc.cluster.rate_limit"):
            assert await accepted([limiter], "t", "stats", 8) == 5  # this node's own bucket
            assert await limiter.peek("t", "stats") is not None
        warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
        assert len(warnings) == 1 and "counting on this node alone" in warnings[0]
    finally:
        await client.aclose()
