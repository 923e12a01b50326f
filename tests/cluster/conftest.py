"""Fixtures for the cluster's parts: the machine's Redis (``EMBER_TEST_REDIS_URL``), each test in a cluster
name of its own so that tests (and engineers) sharing the server never see each other's keys."""

from __future__ import annotations

import os
import secrets
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis
from redis.exceptions import RedisError

from emberrtc.cluster.keyspace import Keyspace

REDIS_URL = os.environ.get("EMBER_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


def redis_client() -> Redis:
    return Redis.from_url(REDIS_URL, decode_responses=True, socket_timeout=5, socket_connect_timeout=5)


@pytest.fixture
async def redis() -> AsyncIterator[Redis]:
    client = redis_client()
    try:
        await client.ping()
    except (RedisError, OSError):
        await client.aclose()
        if os.environ.get("CI"):
            pytest.fail(f"Redis is not reachable at {REDIS_URL}")
        pytest.skip(f"Redis is not reachable at {REDIS_URL}")
    try:
        yield client
    finally:
        await client.aclose()


@pytest.fixture
async def keys(redis: Redis) -> AsyncIterator[Keyspace]:
    """A cluster name of this test's own; its keys are deleted afterwards."""
    space = Keyspace(f"test-{secrets.token_hex(6)}")
    try:
        yield space
    finally:
        found = [k async for k in redis.scan_iter(match=space.prefix + "*")]  # braces are literal in MATCH
        if found:
            await redis.delete(*found)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests marked ``cluster`` need the harness of ``tests/support/cluster.py``: skipped, saying why, where
    it cannot run."""
    from tests.support.cluster import skip_reason

    reason = skip_reason()
    if reason is None:
        return
    skip = pytest.mark.skip(reason=reason)
    for item in items:
        if item.get_closest_marker("cluster") is not None:
            item.add_marker(skip)
