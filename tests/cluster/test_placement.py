"""Room placement on the real Redis: least loaded live node, atomic under races, moved off dead nodes."""

from __future__ import annotations

import asyncio
from collections import Counter

from redis.asyncio import Redis

from emberrtc.cluster.keyspace import Keyspace
from emberrtc.cluster.node_load import NodeLoad
from emberrtc.cluster.placement import RoomPlacement
from emberrtc.cluster.presence import Presence
from tests.cluster.conftest import redis_client
from tests.cluster.test_presence import presence


async def nodes(
    redis: Redis, keys: Keyspace, loads: dict[str, int], hosted: dict[str, list[str]] | None = None
) -> list[Presence]:
    """Registered nodes (no heartbeat task: each beats when the test says) with these participant counts."""
    out = []
    for node_id, participants in loads.items():
        p = presence(redis, keys, node_id, NodeLoad(participants=participants), (hosted or {}).get(node_id, []), ttl=30)
        await p.register()
        out.append(p)
    return out


async def test_first_join_places_the_room_on_the_least_loaded_node(redis: Redis, keys: Keyspace) -> None:
    await nodes(redis, keys, {"node-a": 5, "node-b": 1, "node-c": 3})
    placement = RoomPlacement(redis, keys, "node-a")
    host = await placement.place("app1", "r1")
    assert (host.node_id, host.public_url, host.placed_now) == ("node-b", "http://node-b.example:8080", True)
    # Found, not placed again, from any node.
    again = await RoomPlacement(redis, keys, "node-c").place("app1", "r1")
    assert (again.node_id, again.placed_now) == ("node-b", False)
    assert await redis.get(keys.room("app1", "r1")) == "node-b"


async def test_placements_between_heartbeats_count_as_load(redis: Redis, keys: Keyspace) -> None:
    await nodes(redis, keys, {"node-a": 0, "node-b": 0, "node-c": 0})
    placement = RoomPlacement(redis, keys, "node-a")
    hosts = [(await placement.place("app1", f"r{i}")).node_id for i in range(6)]
    assert Counter(hosts) == {"node-a": 2, "node-b": 2, "node-c": 2}


async def test_a_heartbeat_showing_the_room_ends_its_placing_count(redis: Redis, keys: Keyspace) -> None:
    [a, b] = await nodes(redis, keys, {"node-a": 0, "node-b": 0}, {"node-a": ["app1/r0"]})
    placement = RoomPlacement(redis, keys, "node-b")
    assert (await placement.place("app1", "r0")).node_id == "node-a"
    assert await redis.zcard(keys.placing("node-a")) == 1
    await a.beat()  # node-a now reports the room (and its participant count) itself
    assert await redis.zcard(keys.placing("node-a")) == 0


async def test_two_nodes_racing_first_joins_agree(redis: Redis, keys: Keyspace) -> None:
    await nodes(redis, keys, {"node-a": 0, "node-b": 0, "node-c": 0})
    other = redis_client()  # a connection of its own, as another node has
    try:
        on_a = RoomPlacement(redis, keys, "node-a")
        on_b = RoomPlacement(other, keys, "node-b")
        rooms = [f"race-{i}" for i in range(40)]
        got_a, got_b = await asyncio.gather(
            asyncio.gather(*(on_a.place("app1", r) for r in rooms)),
            asyncio.gather(*(on_b.place("app1", r) for r in rooms)),
        )
    finally:
        await other.aclose()
    for room, x, y in zip(rooms, got_a, got_b, strict=True):
        assert x.node_id == y.node_id, room
        assert x.placed_now != y.placed_now, room  # exactly one of the two placed it
    assert len({h.node_id for h in got_a}) == 3  # and they spread


async def test_a_room_of_a_dead_node_is_placed_again(redis: Redis, keys: Keyspace) -> None:
    [a, b] = await nodes(redis, keys, {"node-a": 0, "node-b": 9})
    placement = RoomPlacement(redis, keys, "node-b")
    assert (await placement.place("app1", "r1")).node_id == "node-a"
    await redis.delete(keys.node("node-a"))  # node-a's registration expired: dead
    host = await placement.place("app1", "r1")
    assert (host.node_id, host.placed_now) == ("node-b", True)


async def test_the_host_keeps_its_rooms_placed_and_learns_of_lost_ones(redis: Redis, keys: Keyspace) -> None:
    await nodes(redis, keys, {"node-a": 0, "node-b": 1})
    on_a = RoomPlacement(redis, keys, "node-a", ttl=30)
    await on_a.place("app1", "kept")
    await redis.pexpire(keys.room("app1", "kept"), 500)
    await redis.set(keys.room("app1", "taken"), "node-b")
    # "gone" expired while node-a held it: taken back.
    assert await on_a.refresh(["app1/kept", "app1/taken", "app1/gone"]) == ["app1/taken"]
    assert await redis.pttl(keys.room("app1", "kept")) > 20_000
    assert await redis.get(keys.room("app1", "gone")) == "node-a"
    assert await redis.get(keys.room("app1", "taken")) == "node-b"


async def test_no_live_node_is_an_error(redis: Redis, keys: Keyspace) -> None:
    import pytest

    from emberrtc.domain.errors import InternalError

    with pytest.raises(InternalError, match="no node of the cluster is alive"):
        await RoomPlacement(redis, keys, "node-a").place("app1", "r1")
