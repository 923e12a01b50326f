"""The Janus client against a real Janus: rooms, participants, typed errors, admin API."""

from __future__ import annotations

import asyncio
import os
import signal

import pytest

from emberrtc.media.janus_client import (
    JanusApiError,
    JanusApiErrorCode,
    JanusClient,
    NoSuchRoomError,
    RoomExistsError,
    SessionClosedError,
    VideoRoomError,
    VideoRoomErrorCode,
    VideoRoomUnauthorizedError,
)
from emberrtc.media.janus_process import JanusProcess

pytestmark = pytest.mark.media


async def test_create_list_destroy_rooms(client: JanusClient) -> None:
    session = await client.create_session()
    rooms = await session.attach_videoroom()

    created = await rooms.create_room("room-a", description="first", publishers=3)
    assert created == "room-a"
    assert await rooms.create_room("room-b", allowed=["token-b"]) == "room-b"
    assert await rooms.room_exists("room-a")
    assert not await rooms.room_exists("room-zzz")

    listed = {room["room"]: room for room in await rooms.list_rooms()}
    assert set(listed) == {"room-a", "room-b"}
    assert listed["room-a"]["description"] == "first"
    assert listed["room-a"]["max_publishers"] == 3
    # Codecs in order of preference, as Ember asks: H.264 first, VP8 as fallback, Opus audio.
    assert listed["room-a"]["videocodec"] == "h264,vp8"
    assert listed["room-a"]["audiocodec"] == "opus"
    assert await rooms.list_participants("room-a") == []

    await rooms.destroy_room("room-a")
    assert not await rooms.room_exists("room-a")
    assert [room["room"] for room in await rooms.list_rooms()] == ["room-b"]
    await session.destroy()


async def test_videoroom_errors_carry_janus_codes(client: JanusClient) -> None:
    session = await client.create_session()
    rooms = await session.attach_videoroom()
    await rooms.create_room("room-e", allowed=["good-token"])

    with pytest.raises(RoomExistsError) as exists:
        await rooms.create_room("room-e")
    assert exists.value.code == VideoRoomErrorCode.ROOM_EXISTS

    with pytest.raises(NoSuchRoomError) as missing:
        await rooms.destroy_room("no-such-room")
    assert missing.value.code == 426

    participant = await session.attach_videoroom()
    with pytest.raises(VideoRoomUnauthorizedError) as refused:
        await participant.join_publisher("room-e", token="bad-token")
    assert refused.value.code == VideoRoomErrorCode.UNAUTHORIZED

    # Without the plugin's admin_key nobody may create rooms or forward RTP.
    with pytest.raises(VideoRoomUnauthorizedError):
        await rooms.create_room("room-x", admin_key="wrong-key")
    keyless = JanusClient(client.url, api_secret=client.api_secret)
    try:
        other = await (await keyless.create_session()).attach_videoroom()
        with pytest.raises(VideoRoomError) as no_key:
            await other.create_room("room-x")
        assert no_key.value.code == VideoRoomErrorCode.MISSING_ELEMENT
    finally:
        await keyless.aclose()
    assert not await rooms.room_exists("room-x")


async def test_wrong_api_secret_is_refused(client: JanusClient) -> None:
    intruder = JanusClient(client.url, api_secret="wrong")
    try:
        with pytest.raises(JanusApiError) as refused:
            await intruder.create_session()
        assert refused.value.code == JanusApiErrorCode.UNAUTHORIZED
    finally:
        await intruder.aclose()


async def test_join_list_and_kick_participant(client: JanusClient) -> None:
    session = await client.create_session()
    rooms = await session.attach_videoroom()
    await rooms.create_room("room-k", allowed=["t"])

    alice = await session.attach_videoroom()
    joined = await alice.join_publisher("room-k", participant="alice", display="Alice", token="t")
    assert joined["videoroom"] == "joined"
    assert joined["id"] == "alice"

    participants = await rooms.list_participants("room-k")
    assert [(p["id"], p["display"], p["publisher"]) for p in participants] == [("alice", "Alice", False)]

    await rooms.kick("room-k", "alice")
    async with asyncio.timeout(5):
        await alice.wait_event(lambda event: event.get("plugindata", {}).get("data", {}).get("leaving") == "ok")
    assert await rooms.list_participants("room-k") == []
    await session.destroy()


async def test_admin_api_sees_sessions_and_handles(client: JanusClient) -> None:
    session = await client.create_session()
    handle = await session.attach_videoroom()

    assert session.id in await client.list_sessions()
    assert await client.list_handles(session.id) == [handle.id]
    info = await client.handle_info(session.id, handle.id)
    assert info["plugin"] == "janus.plugin.videoroom"
    assert info["session_id"] == session.id

    await session.destroy()
    assert session.closed
    assert session.id not in await client.list_sessions()
    with pytest.raises(SessionClosedError):
        await handle.request("list")


async def test_session_closes_when_janus_restarts(janus: JanusProcess, client: JanusClient) -> None:
    session = await client.create_session()
    await session.keepalive()
    janus_pid = janus.pid
    assert janus_pid is not None

    os.kill(janus_pid, signal.SIGKILL)
    async with asyncio.timeout(10):
        await session.wait_closed()
        await janus.wait_ready(starts=2)
    # The new Janus knows nothing of the old session; a fresh one works.
    assert session.id not in await client.list_sessions()
    fresh = await client.create_session()
    assert await (await fresh.attach_videoroom()).list_rooms() == []
