"""``RoomClient.join`` and a cluster's ``redirect`` answer, against a signalling peer on loopback that
answers as a node not hosting the room does (the real nodes: tests/cluster/test_three_nodes.py)."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from websockets.asyncio.server import ServerConnection, serve

from emberrtc.client.room import MAX_REDIRECTS, RoomClient, RoomError


class Peer:
    """A signalling endpoint answering each join with ``answer(join)``, recording the joins it got."""

    def __init__(self, answer: Callable[[dict[str, Any]], dict[str, Any]]) -> None:
        self.answer = answer
        self.joins: list[dict[str, Any]] = []
        self.url = ""

    async def handle(self, ws: ServerConnection) -> None:
        join = json.loads(await ws.recv())
        self.joins.append(join)
        await ws.send(json.dumps({**self.answer(join), "id": join["id"]}))
        await ws.close(4302)


@pytest.fixture
async def peers() -> AsyncIterator[Callable[[Callable[[dict[str, Any]], dict[str, Any]]], Any]]:
    servers = []

    async def start(answer: Callable[[dict[str, Any]], dict[str, Any]]) -> Peer:
        peer = Peer(answer)
        server = await serve(peer.handle, "127.0.0.1", 0)
        servers.append(server)
        peer.url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
        return peer

    yield start
    for server in servers:
        server.close()
        await server.wait_closed()


def redirect(url: str) -> Callable[[dict[str, Any]], dict[str, Any]]:
    return lambda join: {"type": "redirect", "room_id": join["room_id"], "node_id": "n", "url": url, "message": ""}


async def join(server: str) -> RoomClient:
    return await RoomClient.join(server, app_id="a" * 32, room_id="r1", user_id="u1", app_key="k" * 32)


async def test_a_redirect_loop_is_cut_after_the_limit(peers: Any) -> None:
    peer = await peers(lambda join: {})
    peer.answer = redirect(peer.url)  # back to itself, for ever
    with pytest.raises(RoomError, match=f"redirected more than {MAX_REDIRECTS} times"):
        await join(peer.url)
    assert len(peer.joins) == MAX_REDIRECTS + 1
    # The same signed join each time.
    assert all(j == peer.joins[0] for j in peer.joins) and peer.joins[0]["signature"]


async def test_a_redirect_to_an_unusable_url_is_refused(peers: Any) -> None:
    peer = await peers(redirect("ftp://elsewhere/"))
    with pytest.raises(RoomError, match="unusable URL"):
        await join(peer.url)
    assert len(peer.joins) == 1


async def test_a_refusal_after_a_redirect_is_the_hosts(peers: Any) -> None:
    from emberrtc.client.room import JoinRefusedError

    host = await peers(lambda join: {"type": "error", "code": "RTC.00001001", "message": "bad signature"})
    entry = await peers(redirect(host.url))
    with pytest.raises(JoinRefusedError, match="bad signature"):
        await join(entry.url)
    assert (len(entry.joins), len(host.joins)) == (1, 1)
    assert host.joins[0] == entry.joins[0]


# --- rejoining after a lost connection -------------------------------------------------------------------


class Node:
    """A signalling endpoint that answers ``joined`` (naming ``nodes``), then either drops the connection
    (``drop``: as a node that died) or holds it until the client leaves."""

    def __init__(self, *, drop: bool, nodes: list[str] | None = None) -> None:
        self.drop = drop
        self.nodes = nodes or []
        self.joins: list[dict[str, Any]] = []
        self.url = ""

    async def handle(self, ws: ServerConnection) -> None:
        join = json.loads(await ws.recv())
        self.joins.append(join)
        joined = {
            "type": "joined",
            "id": join["id"],
            "session_id": f"s{len(self.joins)}",
            "room_id": join["room_id"],
            "user_id": join["user_id"],
            "participants": [],
            "ice_servers": [],
            "nodes": self.nodes,
        }
        await ws.send(json.dumps(joined))
        if self.drop:
            ws.transport.abort()  # no close frame: the connection is lost, not ended
            return
        async for raw in ws:
            if json.loads(raw).get("type") == "leave":
                await ws.send(json.dumps({"type": "left", "reason": "left"}))
                await ws.close()
                return


async def serve_node(node: Node) -> Any:
    server = await serve(node.handle, "127.0.0.1", 0)
    node.url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    return server


async def test_a_lost_connection_is_rejoined_through_a_node_the_join_answer_named() -> None:
    live = Node(drop=False)
    live_server = await serve_node(live)
    dying = Node(drop=True, nodes=[live.url])
    dying_server = await serve_node(dying)
    try:
        client = await RoomClient.join(
            dying.url, app_id="a" * 32, room_id="r1", user_id="u1", app_key="k" * 32, stats_interval=None
        )
        async with asyncio.timeout(10):
            reconnected = await client.wait_event(lambda e: e["type"] == "reconnected")
        kinds = [e["type"] for e in client.history]
        assert kinds.index("reconnecting") < kinds.index("reconnected")
        assert reconnected["server"] == live.url and client.server == live.url
        assert client.session_id == "s1" and not client.ended.done()
        assert live.joins == dying.joins  # the same signed join, sent again
        assert (await client.leave())["type"] == "left"
    finally:
        for server in (live_server, dying_server):
            server.close()
            await server.wait_closed()


async def test_rejoining_gives_up_after_its_time_and_the_client_ends() -> None:
    dying = Node(drop=True, nodes=["http://127.0.0.1:9"])  # nothing listens there
    server = await serve_node(dying)
    try:
        client = await RoomClient.join(
            dying.url, app_id="a" * 32, room_id="r1", user_id="u1", app_key="k" * 32, stats_interval=None, rejoin=1.0
        )
        server.close()  # the dying node is gone for good too
        await server.wait_closed()
        started = time.monotonic()
        async with asyncio.timeout(10):
            final = await asyncio.shield(client.ended)
        assert final["type"] == "connection_lost"
        assert 0.5 <= time.monotonic() - started < 5
        assert [e["type"] for e in client.history] == ["reconnecting", "connection_lost"]
    finally:
        server.close()


async def test_no_rejoin_after_leaving_or_when_turned_off() -> None:
    dying = Node(drop=True)
    server = await serve_node(dying)
    try:
        client = await RoomClient.join(
            dying.url, app_id="a" * 32, room_id="r1", user_id="u1", app_key="k" * 32, stats_interval=None, rejoin=None
        )
        async with asyncio.timeout(5):
            final = await asyncio.shield(client.ended)
        assert final["type"] == "connection_lost" and "reconnecting" not in [e["type"] for e in client.history]
        assert len(dying.joins) == 1
    finally:
        server.close()
        await server.wait_closed()
