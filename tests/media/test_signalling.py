"""Signalling through Ember with real clients: join checks, protocol errors, records of sessions and rooms."""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from tests.conftest import make_settings
from tests.media.conftest import MEDIA_IP, MediaApp, new_app
from tests.media.media_checks import assert_colour, video_report, with_deadline
from tests.support.server import ServerThread
from websockets.asyncio.client import connect

from emberrtc.client import ColourVideoTrack, JoinRefusedError, RoomClient, ToneAudioTrack, sign_join
from emberrtc.client.room import signalling_url
from emberrtc.config import RateLimit

pytestmark = pytest.mark.media

_CAMERA_OF_BOB = {"user_id": "bob", "stream": "camera"}

RED = (220, 30, 30)


async def join(app: MediaApp, room: str, user: str, **kwargs: Any) -> RoomClient:
    if "ctime" not in kwargs and "signature" not in kwargs and "app_key" not in kwargs:
        kwargs["app_key"] = app.app_key
    return await RoomClient.join(app.server.url, app_id=app.app_id, room_id=room, user_id=user, **kwargs)


async def test_signed_join_is_accepted_and_recorded(media_app: MediaApp) -> None:
    alice = await join(
        media_app, "r1", "alice", nickname="Alice", platform_name="web-test", sdk_version="9.9", device_model="rig"
    )
    assert alice.participants == {}
    assert alice.ice_servers == []  # no TURN relay configured: nothing to hand out (tests/media/test_turn_relay.py)
    bob = await join(media_app, "r1", "bob")
    assert set(bob.participants) == {"alice"}
    assert bob.participants["alice"].nickname == "Alice"
    await with_deadline(alice.wait_event(lambda e: e == {"type": "user_joined", "user_id": "bob", "nickname": None}), 5)

    rooms, sessions = await media_app.records("r1")
    assert [r["state"] for r in rooms] == ["RUNNING"]
    by_user = {s["user_id"]: s for s in sessions}
    assert by_user["alice"]["session_id"] == alice.session_id
    assert (by_user["alice"]["state"], by_user["alice"]["nickname"]) == ("ONLINE", "Alice")
    assert (by_user["alice"]["platform"], by_user["alice"]["sdk_version"], by_user["alice"]["device_model"]) == (
        "web-test",
        "9.9",
        "rig",
    )
    assert by_user["alice"]["client_ip"] == "127.0.0.1"

    assert (await bob.leave())["type"] == "left"
    await with_deadline(alice.wait_event(lambda e: e.get("type") == "user_left" and e["user_id"] == "bob"), 5)
    assert (await alice.leave())["type"] == "left"
    rooms, sessions = await media_app.records("r1")
    [room] = rooms
    assert room["state"] == "CLOSED" and room["end_time"] >= room["start_time"]
    assert {(s["user_id"], s["state"], s["leave_reason"]) for s in sessions} == {
        ("alice", "OFFLINE", "left"),
        ("bob", "OFFLINE", "left"),
    }


@pytest.mark.parametrize(
    ("case", "code"),
    [
        ("bad signature", "RTC.00001001"),
        ("expired ctime", "RTC.00001001"),
        ("ctime more than 12 h ahead", "RTC.00001001"),
        ("no signature", "RTC.00001001"),
        ("unknown app", "RTC.00001015"),
        ("disabled app", "RTC.00001016"),
    ],
)
async def test_refused_joins(media_app: MediaApp, case: str, code: str) -> None:
    app_id, room, user = media_app.app_id, "r-refused", "mallory"
    now = int(time.time())
    kwargs: dict[str, Any] = {
        "ctime": now + 3600,
        "signature": sign_join(media_app.app_key, app_id, room, user, now + 3600),
    }
    if case == "bad signature":
        kwargs["signature"] = sign_join("not-the-key", app_id, room, user, now + 3600)
    elif case == "expired ctime":
        kwargs = {"ctime": now - 1, "signature": sign_join(media_app.app_key, app_id, room, user, now - 1)}
    elif case == "ctime more than 12 h ahead":
        far = now + 12 * 3600 + 120
        kwargs = {"ctime": far, "signature": sign_join(media_app.app_key, app_id, room, user, far)}
    elif case == "no signature":
        kwargs = {}
    elif case == "unknown app":
        app_id = "0" * 32
    elif case == "disabled app":
        assert (await media_app.post(f"/v2/apps/{app_id}/disable")).status_code == 200
    with pytest.raises(JoinRefusedError) as refused:
        await RoomClient.join(media_app.server.url, app_id=app_id, room_id=room, user_id=user, **kwargs)
    assert refused.value.code == code
    _, sessions = await media_app.records(room)
    if case == "unknown app":
        assert sessions == []
    else:
        [session] = sessions
        assert session["state"] == "FAIL"
        assert session["fail_reason"].startswith(code)
        assert not media_app.plane.running(media_app.app_id, room)


async def test_a_client_refused_too_often_is_refused_at_once(tmp_path: Path) -> None:
    """Refused joins are limited per client address (``refused_joins``): past the limit a join is refused
    with RTC.00001023 before any check, and nothing more is recorded, even with a good signature."""
    settings = replace(
        make_settings(tmp_path),
        media_enabled=True,
        media_ip=MEDIA_IP,
        rate_limits_enabled=True,
        rate_limits={"refused_joins": RateLimit(3, 60.0)},
    )
    server = await asyncio.to_thread(lambda: ServerThread(settings).start())
    try:
        app = await asyncio.to_thread(new_app, server)
        ctime = int(time.time()) + 3600
        bad = sign_join("not-the-key", app.app_id, "r-limit", "mallory", ctime)
        for _ in range(3):
            with pytest.raises(JoinRefusedError) as refused:
                await join(app, "r-limit", "mallory", ctime=ctime, signature=bad)
            assert refused.value.code == "RTC.00001001"
        with pytest.raises(JoinRefusedError) as refused:
            await join(app, "r-limit", "mallory")  # a good signature, too late
        assert refused.value.code == "RTC.00001023"
        _, sessions = await app.records("r-limit")
        assert [s["state"] for s in sessions] == ["FAIL"] * 3
        app.http.close()
    finally:
        await asyncio.to_thread(server.stop)


async def test_auth_disabled_joins_without_signature(media_app: MediaApp) -> None:
    media_app.set_auth(False)
    client = await RoomClient.join(media_app.server.url, app_id=media_app.app_id, room_id="open", user_id="anyone")
    _, [session] = await media_app.records("open")
    assert session["state"] == "ONLINE"
    await client.leave()


async def test_disabled_app_keeps_its_running_room(media_app: MediaApp) -> None:
    alice = await join(media_app, "r-disable", "alice")
    bob = await join(media_app, "r-disable", "bob")
    try:
        await alice.publish("camera", video=ColourVideoTrack(RED), audio=ToneAudioTrack(440))
        await with_deadline(bob.wait_stream("alice"), 10)
        sub = await bob.subscribe("alice")
        assert (await media_app.post(f"/v2/apps/{media_app.app_id}/disable")).status_code == 200
        with pytest.raises(JoinRefusedError) as refused:
            await join(media_app, "r-disable", "carol")
        assert refused.value.code == "RTC.00001016"
        # The room goes on: media still flows, and requests in the room still work.
        report = await with_deadline(video_report(sub.video, frames=10), 15)
        assert_colour(report.colour, RED)
        await alice.ping()
    finally:
        await alice.leave()
        await bob.leave()


async def test_protocol_errors(media_app: MediaApp) -> None:
    url = signalling_url(media_app.server.url)
    async with connect(url, proxy=None) as ws:
        await ws.send("not json")
        reply = json.loads(await ws.recv())
        assert (reply["type"], reply["code"]) == ("error", "RTC.00001002")
        await ws.wait_closed()
        assert ws.close_code == 4403
    async with connect(url, proxy=None) as ws:
        await ws.send(json.dumps({"type": "publish", "id": 7, "stream": "camera", "sdp": "v=0"}))
        reply = json.loads(await ws.recv())
        assert (reply["type"], reply["id"], reply["code"]) == ("error", 7, "RTC.00001003")
        await ws.wait_closed()
        assert ws.close_code == 4400
    async with connect(url, proxy=None) as ws:
        await ws.send(json.dumps({"type": "join", "id": "j", "app_id": media_app.app_id, "user_id": "u"}))
        reply = json.loads(await ws.recv())
        assert (reply["type"], reply["id"], reply["code"]) == ("error", "j", "RTC.00001005")
        assert "room_id" in reply["message"]
    async with connect(url, proxy=None) as ws:
        bad = {"type": "join", "app_id": media_app.app_id, "room_id": "a/b", "user_id": "u"}
        await ws.send(json.dumps(bad))
        assert json.loads(await ws.recv())["code"] == "RTC.00001003"

    # In the room, mistakes get an error and the connection stays.
    client = await join(media_app, "r-proto", "alice")
    try:
        ws = client._ws
        for message, code in (
            ({"type": "subscribe", "id": 1, "user_id": "nobody", "stream": "camera"}, "RTC.00001003"),
            ({"type": "subscribe", "id": 2, "user_id": "nobody", "stream": "webcam"}, "RTC.00001003"),
            ({"type": "unpublish", "id": 3, "stream": "screen"}, "RTC.00001003"),
            ({"type": "answer", "id": 4, "subscription": "nope", "sdp": "v=0"}, "RTC.00001003"),
            ({"type": "publish", "id": 5, "stream": "camera", "sdp": "this is not SDP"}, "RTC.00001003"),
            ({"type": "dance", "id": 6}, "RTC.00001003"),
            ({"type": "publish", "id": 7, "stream": "camera"}, "RTC.00001005"),
            ({"type": "subscribe", "id": 8, "user_id": "bob"}, "RTC.00001005"),
            ({"type": "subscribe", "id": 9, "streams": []}, "RTC.00001003"),
            ({"type": "subscribe", "id": 10, "streams": [{"user_id": "bob", "stream": "tv"}]}, "RTC.00001003"),
            (
                {"type": "subscribe", "id": 11, "user_id": "bob", "stream": "camera", "streams": [{"user_id": "bob"}]},
                "RTC.00001005",
            ),
            (
                {"type": "subscribe", "id": 12, "user_id": "bob", "stream": "camera", "streams": [_CAMERA_OF_BOB]},
                "RTC.00001004",
            ),
            ({"type": "subscribe", "id": 13, "streams": [_CAMERA_OF_BOB] * 65}, "RTC.00001003"),
            ({"type": "answer", "id": 14, "sdp": "v=0"}, "RTC.00001003"),
            ({"type": "unsubscribe", "id": 15, "subscription": "nope"}, "RTC.00001003"),
        ):
            future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
            client._pending[message["id"]] = future  # type: ignore[index]
            await ws.send(json.dumps(message))
            reply = await with_deadline(future, 5)
            assert (reply["type"], reply["code"]) == ("error", code), (message, reply)
        await client.ping()
    finally:
        await client.leave()
