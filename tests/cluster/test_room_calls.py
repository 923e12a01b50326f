"""Calls carried to a room's node through the real Redis: the host's answer and its catalogue errors come
back, a room no node hosts is served here, a host that is silent or slow fails within the budget, and what
is not a valid call is ignored."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from redis.asyncio import Redis

from emberrtc.cluster.keyspace import Keyspace
from emberrtc.cluster.room_calls import NodeUnreachable, RoomCalls, decode_error, encode_error
from emberrtc.cluster.room_control import MAX_PREVIEW, RoutedMediaPlane, RoutedPreviews
from emberrtc.cluster.subscriber import Subscriber
from emberrtc.domain.errors import InternalError, InvalidParameterValue, RoomNotExist
from emberrtc.domain.ports import NoMediaPlane
from tests.cluster.conftest import redis_client


class Node:
    """One node's calls, served on a subscription of its own; its handler answers with its node ID."""

    def __init__(self, keys: Keyspace, node_id: str, timeout: float = 1.0) -> None:
        self.redis = redis_client()
        self.calls = RoomCalls(self.redis, keys, node_id, timeout=timeout)
        self.subscriber = Subscriber(self.redis, poll=0.2)
        self.subscriber.on(self.calls.channel, self.calls.received)
        self.seen: list[tuple[str, str, dict[str, Any]]] = []
        self.calls.handle("whoami", self.whoami)

    async def whoami(self, app_id: str, room_id: str, args: dict[str, Any]) -> dict[str, Any]:
        self.seen.append((app_id, room_id, args))
        if args.get("fail") == "catalogue":
            raise RoomNotExist(f"room {room_id} is not running on {self.calls.node_id}")
        if args.get("fail") == "bug":
            raise ValueError("a bug on the host")
        if args.get("sleep"):
            await asyncio.sleep(float(args["sleep"]))
        return {"node": self.calls.node_id, "echo": args.get("echo")}

    async def close(self) -> None:
        await self.subscriber.close()
        await self.calls.close()
        await self.redis.aclose()


async def register(redis: Redis, keys: Keyspace, node_id: str) -> None:
    """A live node's registration, as presence leaves it (the calls look only at whether it exists)."""
    await redis.hset(keys.node(node_id), mapping={"public_url": f"http://{node_id}.example:8080"})  # type: ignore[misc]
    await redis.expire(keys.node(node_id), 60)


@pytest.fixture
async def two(redis: Redis, keys: Keyspace) -> AsyncIterator[tuple[Node, Node]]:
    a, b = Node(keys, "node-a"), Node(keys, "node-b")
    await a.subscriber.start()
    await b.subscriber.start()
    await register(redis, keys, "node-a")
    await register(redis, keys, "node-b")
    try:
        yield a, b
    finally:
        await a.close()
        await b.close()


async def test_a_call_runs_on_the_node_hosting_the_room_and_its_answer_comes_back(
    redis: Redis, keys: Keyspace, two: tuple[Node, Node]
) -> None:
    a, b = two
    await redis.set(keys.room("app1", "r1"), "node-b")
    assert await a.calls.host("app1", "r1") == "node-b"
    answer = await a.calls.run("whoami", "app1", "r1", {"echo": ["x", 1]})
    assert answer == {"node": "node-b", "echo": ["x", 1]}
    assert b.seen == [("app1", "r1", {"echo": ["x", 1]})] and a.seen == []
    # The host itself runs it in place, without a message.
    assert (await b.calls.run("whoami", "app1", "r1", {}))["node"] == "node-b"
    # The answer's key is gone once taken.
    assert [k async for k in redis.scan_iter(match=keys.prefix + "reply:*")] == []


async def test_the_hosts_catalogue_error_is_raised_where_the_call_was_made(
    redis: Redis, keys: Keyspace, two: tuple[Node, Node]
) -> None:
    a, _ = two
    await redis.set(keys.room("app1", "r1"), "node-b")
    with pytest.raises(RoomNotExist) as caught:
        await a.calls.run("whoami", "app1", "r1", {"fail": "catalogue"})
    assert caught.value.detail == "room r1 is not running on node-b"
    assert (caught.value.code, caught.value.status) == ("RTC.00001026", 404)
    # A fault that is not in the catalogue is a service fault, without the host's traceback or message.
    with pytest.raises(InternalError) as fault:
        await a.calls.run("whoami", "app1", "r1", {"fail": "bug"})
    assert "a bug on the host" not in fault.value.message and "node-b" in fault.value.message


async def test_a_room_no_live_node_hosts_is_served_here(redis: Redis, keys: Keyspace, two: tuple[Node, Node]) -> None:
    a, b = two
    assert await a.calls.host("app1", "nowhere") is None
    assert (await a.calls.run("whoami", "app1", "nowhere", {}))["node"] == "node-a"
    # Placed on a node whose registration expired (dead): not a host.
    await redis.set(keys.room("app1", "r2"), "node-gone")
    assert await a.calls.host("app1", "r2") is None
    assert (await a.calls.run("whoami", "app1", "r2", {}))["node"] == "node-a"
    assert b.seen == []


async def test_a_host_that_takes_no_calls_fails_at_once_and_a_slow_one_within_the_budget(
    redis: Redis, keys: Keyspace, two: tuple[Node, Node]
) -> None:
    a, b = two
    await register(redis, keys, "node-silent")  # registered, but nothing listens on its channel
    await redis.set(keys.room("app1", "r1"), "node-silent")
    started = time.monotonic()
    with pytest.raises(NodeUnreachable, match="takes no calls"):
        await a.calls.run("whoami", "app1", "r1", {})
    assert time.monotonic() - started < 0.9  # at once, not at the end of the 1 s budget
    await redis.set(keys.room("app1", "r1"), "node-b")
    started = time.monotonic()
    with pytest.raises(NodeUnreachable, match="did not answer whoami within 1 s"):
        await a.calls.run("whoami", "app1", "r1", {"sleep": 3})
    assert 0.9 < time.monotonic() - started < 3.0
    # The host gave up too (its handler is time-limited): nothing is left serving.
    await asyncio.wait_for(asyncio.gather(*b.calls._serving, return_exceptions=True), 2)


async def test_messages_that_are_not_valid_calls_are_ignored(
    redis: Redis, keys: Keyspace, two: tuple[Node, Node]
) -> None:
    a, b = two
    good = {"v": 1, "id": "0" * 32, "op": "whoami", "app_id": "app1", "room_id": "r1", "args": {}, "from": "node-a"}
    bad = [
        "not json",
        json.dumps([1, 2]),
        json.dumps({**good, "v": 2}),
        json.dumps({**good, "id": "../../etc"}),
        json.dumps({**good, "op": "shutdown"}),
        json.dumps({**good, "room_id": "a/b"}),
        json.dumps({**good, "app_id": 7}),
        json.dumps({**good, "args": "all"}),
        json.dumps({**good, "args": {"pad": "x" * 70_000}}),
    ]
    for message in bad:
        assert await redis.publish(b.calls.channel, message) == 1
    await redis.set(keys.room("app1", "r1"), "node-b")
    # Served in order after the bad ones: the node still serves, and ran none of them.
    assert (await a.calls.run("whoami", "app1", "r1", {"echo": "ok"}))["echo"] == "ok"
    assert b.seen == [("app1", "r1", {"echo": "ok"})]
    assert [k async for k in redis.scan_iter(match=keys.prefix + "reply:*")] == []


async def test_room_management_goes_to_the_rooms_node_and_checks_its_arguments_there(
    redis: Redis, keys: Keyspace, two: tuple[Node, Node]
) -> None:
    a, b = two
    RoutedMediaPlane(NoMediaPlane(), b.calls)  # node-b's handlers, on a plane where no room runs
    via_a = RoutedMediaPlane(NoMediaPlane(), a.calls)
    await redis.set(keys.room("app1", "r1"), "node-b")
    assert await via_a.dismiss("app1", "r1") is False  # node-b's answer: nobody in the room there
    await via_a.remove_users("app1", "r1", ["u1", "u2"])
    # What another node sends is checked again on the host.
    with pytest.raises(InternalError, match="user_ids"):
        await a.calls.call("node-b", "remove_users", "app1", "r1", {"user_ids": ["ok", "not/ok"]})
    with pytest.raises(InternalError, match="user_ids"):
        await a.calls.call("node-b", "remove_users", "app1", "r1", {"user_ids": "u1"})


class Previews:
    """A node's own previews: what its workers composed, by (app, room, job)."""

    across_nodes = False

    def __init__(self, pictures: dict[tuple[str, str, str], bytes]) -> None:
        self.pictures = pictures

    async def get(self, app_id: str, room_id: str, job_id: str) -> bytes | None:
        return self.pictures.get((app_id, room_id, job_id))


async def test_a_mixed_jobs_preview_comes_from_the_node_that_composes_it(
    redis: Redis, keys: Keyspace, two: tuple[Node, Node]
) -> None:
    a, b = two
    job, other = "a" * 32, "b" * 32
    jpeg = bytes(range(256)) * 60  # 15 KB, every byte value: carried as is
    via_a = RoutedPreviews(Previews({("app1", "r2", other): b"node-a's own"}), a.calls)
    composed_on_b = {("app1", "r1", job): jpeg, ("app1", "r1", other): b"x" * (MAX_PREVIEW + 1)}
    via_b = RoutedPreviews(Previews(composed_on_b), b.calls)
    await redis.set(keys.room("app1", "r1"), "node-b")
    assert via_a.across_nodes
    assert await via_a.get("app1", "r1", job) == jpeg  # composed on node-b, asked on node-a
    assert await via_b.get("app1", "r1", job) == jpeg  # on the host itself: read in place
    assert await via_a.get("app1", "r1", "c" * 32) is None  # no such job composed there
    assert await via_a.get("app2", "r1", job) is None  # another app's room: not the same job (served here)
    assert await via_a.get("app1", "r1", other) is None  # too large to carry: not shown elsewhere
    assert await via_a.get("app1", "r2", other) == b"node-a's own"  # a room no node hosts: this node's
    # What another node sends is checked again on the host.
    with pytest.raises(InternalError, match="job_id"):
        await a.calls.call("node-b", "mix_preview", "app1", "r1", {"job_id": "../../etc/passwd"})
    # A host that answers something else than a preview is a fault, not a picture.
    b.calls.handle("mix_preview", lambda *_: _answer("not base64!"))
    with pytest.raises(InternalError, match="not one"):
        await via_a.get("app1", "r1", job)
    b.calls.handle("mix_preview", lambda *_: _answer(["a list"]))
    with pytest.raises(InternalError, match="not one"):
        await via_a.get("app1", "r1", job)


async def _answer(value: Any) -> Any:
    return value


def test_an_answers_error_is_the_catalogues_or_a_fault() -> None:
    again = decode_error(encode_error(InvalidParameterValue("room_id: too long")), "node-b")
    assert type(again) is InvalidParameterValue and again.message == InvalidParameterValue("room_id: too long").message
    for data in ({"type": "SystemExit", "code": "x"}, {"type": "RoomNotExist", "code": "RTC.1"}, "text", None):
        assert type(decode_error(data, "node-b")) is InternalError
