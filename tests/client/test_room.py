"""``RoomClient.join`` and a cluster's ``redirect`` answer, against a signalling peer on loopback that
answers as a node not hosting the room does (the real nodes: tests/cluster/test_three_nodes.py)."""

from __future__ import annotations

import json
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
