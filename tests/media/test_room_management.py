"""Room management through the v2 API acting on real rooms, and Janus dying mid-call.

batch-remove-users and dismiss must take effect within 1 s, as the clients see it: the removed user is
told why, its subscribers' PeerConnections are hung up, and the records say what happened.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiortc.mediastreams import MediaStreamError
from tests.media.conftest import MediaApp, new_app, start_media_server
from tests.media.media_checks import assert_colour, video_report, with_deadline
from tests.support.server import ServerThread

from emberrtc.client import ColourVideoTrack, RoomClient, Subscription, ToneAudioTrack

pytestmark = pytest.mark.media

RED, BLUE = (220, 30, 30), (30, 60, 220)
SMALL = {"width": 160, "height": 120}


async def _join(app: MediaApp, room: str, user: str) -> RoomClient:
    return await RoomClient.join(app.server.url, app_id=app.app_id, room_id=room, user_id=user, app_key=app.app_key)


async def _track_ends(sub: Subscription) -> None:
    """Return once the subscription's video track has stopped delivering frames."""
    assert sub.video is not None
    with pytest.raises(MediaStreamError):
        while True:
            await sub.video.recv()


async def _publisher_with_viewers(app: MediaApp, room: str, viewers: list[str]) -> tuple[RoomClient, dict[str, Any]]:
    """A speaker publishing a camera and viewers receiving it (all left again if setting up fails)."""
    publisher = await _join(app, room, "speaker")
    audience: dict[str, Any] = {}
    try:
        await publisher.publish("camera", video=ColourVideoTrack(RED, **SMALL), audio=ToneAudioTrack(440))
        for name in viewers:
            client = await _join(app, room, name)
            audience[name] = (client, None)
            await with_deadline(client.wait_stream("speaker", "camera"), 10)
            sub = await client.subscribe("speaker")
            await with_deadline(sub.video.recv(), 10)  # type: ignore[union-attr]
            audience[name] = (client, sub)
    except BaseException:
        for client in [publisher, *(c for c, _ in audience.values())]:
            await client.leave()
        raise
    return publisher, audience


async def test_remove_users_takes_effect_within_a_second(media_app: MediaApp) -> None:
    speaker, audience = await _publisher_with_viewers(media_app, "kick", ["v1", "v2"])
    try:
        started = time.monotonic()
        response = await media_app.post(
            f"/v2/apps/{media_app.app_id}/rooms/kick/batch-remove-users", {"user_ids": ["speaker", "absent"]}
        )
        assert response.status_code == 202, response.text

        async def viewer_sees_it(client: RoomClient, sub: Subscription) -> None:
            ended = await client.wait_event(lambda e: e.get("type") == "subscription_ended")
            assert ended["subscription"] == sub.id
            left = await client.wait_event(lambda e: e.get("type") == "user_left")
            assert left == {"type": "user_left", "user_id": "speaker", "reason": "removed"}
            await _track_ends(sub)

        final = await with_deadline(asyncio.shield(speaker.ended), 1)
        await with_deadline(asyncio.gather(*(viewer_sees_it(c, s) for c, s in audience.values())), 1)
        assert time.monotonic() - started < 1.0
        assert final["type"] == "removed" and final["reason"] == "removed"
        assert "removed you" in final["message"]
        assert not speaker.publications  # the client hung up its own PeerConnections

        # Janus no longer has the speaker or the viewers' subscriptions to it.
        assert media_app.plane.participants(media_app.app_id, "kick") == ["v1", "v2"]
        assert not await asyncio.wrap_future(
            asyncio.run_coroutine_threadsafe(
                media_app.plane.has_stream(media_app.app_id, "kick", None, None),
                media_app.server.loop,  # type: ignore[arg-type]
            )
        )
        rooms, sessions = await media_app.records("kick")
        assert [r["state"] for r in rooms] == ["RUNNING"]
        states = {s["user_id"]: (s["state"], s["leave_reason"], s["published_streams"]) for s in sessions}
        assert states == {
            "speaker": ("OFFLINE", "removed", ["camera"]),
            "v1": ("ONLINE", None, []),
            "v2": ("ONLINE", None, []),
        }
        # The viewers stay in the room and can go on.
        await audience["v1"][0].ping()
    finally:
        await speaker.leave()
        for client, _ in audience.values():
            await client.leave()
    rooms, _ = await media_app.records("kick")
    assert [r["state"] for r in rooms] == ["CLOSED"]


async def test_dismiss_takes_effect_within_a_second(media_app: MediaApp) -> None:
    speaker, audience = await _publisher_with_viewers(media_app, "gone", ["v1", "v2"])
    clients = [speaker, *(c for c, _ in audience.values())]
    try:
        started = time.monotonic()
        response = await media_app.post(f"/v2/apps/{media_app.app_id}/rooms/gone/dismiss")
        assert response.status_code == 202, response.text
        finals = await with_deadline(asyncio.gather(*(asyncio.shield(c.ended) for c in clients)), 1)
        await with_deadline(asyncio.gather(*(_track_ends(s) for _, s in audience.values())), 1)
        assert time.monotonic() - started < 1.0
        assert {f["type"] for f in finals} == {"dismissed"}
    finally:
        for client in clients:
            await client.leave()
    # The records were final when the API answered.
    rooms, sessions = await media_app.records("gone")
    [room] = rooms
    assert room["state"] == "CLOSED"
    assert room["duration"] == int(room["end_time"] - room["start_time"])
    assert {(s["state"], s["leave_reason"]) for s in sessions} == {("OFFLINE", "dismissed")}
    assert not media_app.plane.running(media_app.app_id, "gone")

    again = await media_app.post(f"/v2/apps/{media_app.app_id}/rooms/gone/dismiss")
    assert again.status_code == 404
    assert again.json()["error_code"] == "RTC.00001026"
    # The room ID can be used again: a new run.
    client = await _join(media_app, "gone", "late")
    await client.leave()
    rooms, _ = await media_app.records("gone")
    assert [r["state"] for r in rooms] == ["CLOSED", "CLOSED"]


async def test_same_user_joining_again_replaces_the_old_connection(media_app: MediaApp) -> None:
    first = await _join(media_app, "dup", "dave")
    second = await _join(media_app, "dup", "dave")
    final = await with_deadline(asyncio.shield(first.ended), 2)
    assert (final["type"], final["reason"]) == ("removed", "replaced")
    await second.ping()
    await first.leave()
    await second.leave()
    _, sessions = await media_app.records("dup")
    assert [(s["state"], s["leave_reason"]) for s in sessions] == [("OFFLINE", "replaced"), ("OFFLINE", "left")]


@pytest.fixture
def private_ember(tmp_path: Path) -> Iterator[ServerThread]:
    server = start_media_server(tmp_path)
    try:
        yield server
    finally:
        server.stop()


async def test_janus_killed_mid_call_is_restarted_and_new_joins_work(private_ember: ServerThread) -> None:
    app = new_app(private_ember)
    plane = app.plane
    speaker, audience = await _publisher_with_viewers(app, "crash", ["viewer"])
    viewer = audience["viewer"][0]
    try:
        pid = plane.process.pid
        assert pid is not None
        os.kill(pid, signal.SIGKILL)
        finals = await with_deadline(asyncio.gather(asyncio.shield(speaker.ended), asyncio.shield(viewer.ended)), 5)
        assert {(f["type"], f["reason"]) for f in finals} == {("disconnected", "media_restart")}
    finally:
        await speaker.leave()
        await viewer.leave()
    rooms, sessions = await app.records("crash")
    assert [r["state"] for r in rooms] == ["CLOSED"]
    assert {(s["state"], s["leave_reason"]) for s in sessions} == {("OFFLINE", "media_restart")}

    assert private_ember.loop is not None
    await asyncio.wrap_future(
        asyncio.run_coroutine_threadsafe(asyncio.wait_for(plane.process.wait_ready(starts=2), 15), private_ember.loop)
    )
    # New joins work on the restarted Janus: the room is created again and media flows.
    speaker = await _join(app, "crash", "speaker")
    viewer = await _join(app, "crash", "viewer")
    try:
        await speaker.publish("camera", video=ColourVideoTrack(BLUE, **SMALL))
        await with_deadline(viewer.wait_stream("speaker"), 10)
        sub = await viewer.subscribe("speaker")
        report = await with_deadline(video_report(sub.video, frames=10), 10)
        assert_colour(report.colour, BLUE)
    finally:
        await speaker.leave()
        await viewer.leave()
        app.http.close()
    rooms, _ = await app.records("crash")
    assert [r["state"] for r in rooms] == ["CLOSED", "CLOSED"]
