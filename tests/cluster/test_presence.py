"""Presence on the real Redis: registration, heartbeats with load, death after the TTL, one ID one node."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable

import pytest
from redis.asyncio import Redis

from emberrtc.cluster.keyspace import Keyspace
from emberrtc.cluster.node_load import NodeLoad
from emberrtc.cluster.presence import Presence, live_nodes
from emberrtc.domain.errors import InternalError
from tests.support.waiting import until


def presence(
    redis: Redis,
    keys: Keyspace,
    node_id: str,
    load: NodeLoad = NodeLoad(),
    hosted: Iterable[str] = (),
    *,
    heartbeat: float = 0.1,
    ttl: float = 0.6,
) -> Presence:
    return Presence(
        redis,
        keys,
        node_id,
        public_url=f"http://{node_id}.example:8080",
        media_ip="10.0.0.1",
        load=lambda: load,
        hosted=lambda: list(hosted),
        heartbeat=heartbeat,
        node_ttl=ttl,
    )


async def test_nodes_register_with_their_load_and_leave(redis: Redis, keys: Keyspace) -> None:
    a = presence(redis, keys, "node-a", NodeLoad(participants=7, rooms=2, recording_workers=1, cpu=12.5))
    b = presence(redis, keys, "node-b")
    for p in (a, b):
        await p.register()
        p.start()
    try:
        nodes = await live_nodes(redis, keys)
        assert [n.node_id for n in nodes] == ["node-a", "node-b"]
        first = nodes[0]
        assert (first.public_url, first.media_ip) == ("http://node-a.example:8080", "10.0.0.1")
        assert first.load == NodeLoad(participants=7, rooms=2, recording_workers=1, cpu=12.5)
        assert abs(first.heartbeat_at - time.time()) < 5
    finally:
        await b.stop()
    # A node that stops cleanly leaves at once.
    assert [n.node_id for n in await live_nodes(redis, keys)] == ["node-a"]
    await a.stop()
    assert await live_nodes(redis, keys) == []


async def test_a_node_not_heard_from_for_the_ttl_is_dead(redis: Redis, keys: Keyspace) -> None:
    a, b = presence(redis, keys, "node-a"), presence(redis, keys, "node-b")
    for p in (a, b):
        await p.register()
        p.start()
    try:
        # node-b "dies": its heartbeat stops without leaving (as under kill -9).
        assert b._task is not None
        b._task.cancel()
        died = time.monotonic()
        await asyncio.sleep(0.3)  # half the TTL, several of node-a's heartbeats
        assert [n.node_id for n in await live_nodes(redis, keys)] == ["node-a", "node-b"]

        async def gone() -> bool:
            return [n.node_id for n in await live_nodes(redis, keys)] == ["node-a"]

        await until(gone, within=5, what="node-b to be dead")
        assert time.monotonic() - died >= 0.5  # not before its TTL (0.6 s from its last heartbeat)
        assert not await redis.sismember(keys.nodes, "node-b")  # pruned
    finally:
        await a.stop()


async def test_a_live_node_id_cannot_be_taken(redis: Redis, keys: Keyspace) -> None:
    first = presence(redis, keys, "node-a")
    await first.register()
    first.start()
    try:
        second = presence(redis, keys, "node-a")
        with pytest.raises(InternalError, match="belongs to another live node"):
            await second.register()
    finally:
        await first.stop()


async def test_a_dead_process_node_id_is_taken_once_it_expires(redis: Redis, keys: Keyspace) -> None:
    crashed = presence(redis, keys, "node-a", ttl=1.0)
    await crashed.register()  # and never beats again
    restarted = presence(redis, keys, "node-a", NodeLoad(participants=1), ttl=1.0)
    started = time.monotonic()
    await restarted.register()
    assert time.monotonic() - started >= 0.5  # waited for the old registration to expire
    [node] = await live_nodes(redis, keys)
    assert node.load.participants == 1
    await restarted.stop()


async def test_a_heartbeat_after_expiry_registers_again(redis: Redis, keys: Keyspace) -> None:
    p = presence(redis, keys, "node-a", ttl=0.3)
    await p.register()
    await until(lambda: _absent(redis, keys), within=5, what="the registration to expire")
    await p.beat()
    assert [n.node_id for n in await live_nodes(redis, keys)] == ["node-a"]
    await p.stop()


async def _absent(redis: Redis, keys: Keyspace) -> bool:
    return not await redis.exists(keys.node("node-a"))
