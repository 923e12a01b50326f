"""Signalling on a server without a media plane: joins are refused honestly, never half-served."""

from __future__ import annotations

import json

import pytest
from websockets.asyncio.client import connect

from tests.support.server import ServerThread


@pytest.mark.parametrize("first", ["join", "garbage"])
async def test_join_is_refused_without_a_media_plane(server: ServerThread, first: str) -> None:
    assert server.services is not None and server.services.plane is None
    url = server.url.replace("http://", "ws://") + "/v1/rtc/signalling"
    async with connect(url, proxy=None) as ws:
        if first == "join":
            await ws.send(json.dumps({"type": "join", "id": 1, "app_id": "a" * 32, "room_id": "r", "user_id": "u"}))
            reply = json.loads(await ws.recv())
            assert (reply["type"], reply["id"], reply["code"]) == ("error", 1, "RTC.00002000")
            assert "without a media plane" in reply["message"]
            await ws.wait_closed()
            assert ws.close_code == 4500
        else:
            await ws.send("[1, 2]")
            reply = json.loads(await ws.recv())
            assert (reply["type"], reply["code"]) == ("error", "RTC.00001002")
            await ws.wait_closed()
            assert ws.close_code == 4403
