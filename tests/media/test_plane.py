"""The media plane against a real Janus, with aiortc peers doing the WebRTC side (no signalling server).

Covers rooms per (app, room), presence and stream events, publish/subscribe with decoded content,
multistream subscriptions (one subscriber handle per participant, renegotiated one offer at a time, ended
subscriptions paused and resumed), removal and dismissal (subscribers hung up and told), and a Janus crash
followed by lazy room re-creation.
"""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.rtcconfiguration import RTCBundlePolicy
from tests.media.conftest import make_config
from tests.support.waiting import until

from emberrtc.client.synthetic import ColourVideoTrack, ToneAudioTrack, median_rgb
from emberrtc.media.janus_process import Backoff
from emberrtc.media.plane import (
    AlreadyPublishedError,
    AlreadySubscribedError,
    Ended,
    EndReason,
    JanusMediaPlane,
    NegotiationError,
    NotFoundError,
    Participant,
    RenegotiationPendingError,
    RoomEvent,
    StreamKind,
    StreamPublished,
    StreamUnpublished,
    SubscriberClosed,
    SubscriptionEnded,
    UserJoined,
    UserLeft,
)

pytestmark = pytest.mark.media

APP_A, APP_B = "a" * 32, "b" * 32
RED, BLUE = (220, 30, 30), (30, 60, 220)
COLOUR_TOLERANCE = 20


@pytest.fixture
async def plane(tmp_path: Path, janus_binary: str) -> AsyncIterator[JanusMediaPlane]:
    media = JanusMediaPlane(
        make_config(),
        tmp_path / "janus",
        binary=janus_binary,
        backoff=Backoff(initial=0.05, maximum=1.0),
        settle_timeout=0,
    )
    await media.start()
    try:
        yield media
    finally:
        await media.stop()


def _pc() -> RTCPeerConnection:
    return RTCPeerConnection(RTCConfiguration(iceServers=[], bundlePolicy=RTCBundlePolicy.MAX_BUNDLE))


async def _next(p: Participant, predicate: Callable[[RoomEvent], bool], within: float = 5) -> RoomEvent:
    async with asyncio.timeout(within):
        while True:
            event = await p.events.get()
            if predicate(event):
                return event


async def _publish(plane: JanusMediaPlane, p: Participant, kind: StreamKind, rgb: tuple[int, int, int]) -> Any:
    pc = _pc()
    pc.addTransceiver(ColourVideoTrack(rgb), direction="sendonly")
    pc.addTransceiver(ToneAudioTrack(440), direction="sendonly")
    await pc.setLocalDescription(await pc.createOffer())
    answer, tracks = await plane.publish(p, kind, pc.localDescription.sdp)
    assert sorted(t["type"] for t in tracks) == ["audio", "video"]
    await pc.setRemoteDescription(RTCSessionDescription(answer, "answer"))
    return pc


async def _subscribe(plane: JanusMediaPlane, p: Participant, user_id: str, kind: StreamKind) -> tuple[str, Any, Any]:
    sub_id, offer, _ = await plane.subscribe(p, user_id, kind)
    pc = _pc()
    tracks: dict[str, Any] = {}
    pc.on("track", lambda track: tracks.setdefault(track.kind, track))
    await pc.setRemoteDescription(RTCSessionDescription(offer, "offer"))
    await pc.setLocalDescription(await pc.createAnswer())
    await plane.answer(p, sub_id, pc.localDescription.sdp)
    return sub_id, pc, tracks["video"]


async def test_publish_subscribe_and_presence_events(plane: JanusMediaPlane) -> None:
    alice, peers = await plane.join(APP_A, "r1", "alice", session_id="s-alice", nickname="Alice")
    assert peers == []
    bob, peers = await plane.join(APP_A, "r1", "bob", session_id="s-bob")
    assert [(v.user_id, v.nickname, v.streams) for v in peers] == [("alice", "Alice", [])]
    assert await _next(alice, lambda e: True) == UserJoined("bob", None)
    pcs = []
    try:
        pcs.append(await _publish(plane, alice, StreamKind.CAMERA, RED))
        with pytest.raises(AlreadyPublishedError):
            await plane.publish(alice, StreamKind.CAMERA, "v=0")
        # Announced once Alice's PeerConnection is up.
        assert await _next(bob, lambda e: True) == StreamPublished("alice", StreamKind.CAMERA, True, True)
        assert await plane.has_stream(APP_A, "r1", "alice", "CAMERASTREAM")
        assert not await plane.has_stream(APP_A, "r1", "alice", "SCREENSTREAM")
        assert not await plane.has_stream(APP_A, "r1", "bob", None)
        assert not await plane.has_stream(APP_B, "r1", None, None)
        [feed] = plane.feeds(APP_A, "r1")
        assert (feed.user_id, feed.stream, feed.janus_room) == ("alice", StreamKind.CAMERA, f"{APP_A}/r1")

        with pytest.raises(NotFoundError):
            await plane.subscribe(bob, "alice", StreamKind.SCREEN)
        sub_id, pc, video = await _subscribe(plane, bob, "alice", StreamKind.CAMERA)
        pcs.append(pc)
        async with asyncio.timeout(10):
            frame = await video.recv()
        assert all(abs(a - b) <= COLOUR_TOLERANCE for a, b in zip(median_rgb(frame), RED, strict=True))

        # A third participant joining now sees Alice's live camera.
        carol, peers = await plane.join(APP_A, "r1", "carol", session_id="s-carol")
        assert {v.user_id: [s.stream for s in v.streams] for v in peers} == {"alice": ["camera"], "bob": []}

        await plane.unpublish(alice, StreamKind.CAMERA)
        ended = await _next(bob, lambda e: isinstance(e, SubscriptionEnded))
        assert isinstance(ended, SubscriptionEnded) and ended.subscription == sub_id
        assert await _next(carol, lambda e: True) == StreamUnpublished("alice", StreamKind.CAMERA)
        assert not await plane.has_stream(APP_A, "r1", None, None)

        await plane.leave(alice)
        assert await _next(alice, lambda e: isinstance(e, Ended)) == Ended(EndReason.LEFT, "you left the room")
        assert await _next(bob, lambda e: isinstance(e, UserLeft)) == UserLeft("alice", EndReason.LEFT)
        assert sorted(plane.participants(APP_A, "r1")) == ["bob", "carol"]
        await plane.leave(bob)
        await plane.leave(carol)
        assert not plane.running(APP_A, "r1")
        _, control = await plane._janus()
        assert not await control.room_exists(f"{APP_A}/r1")
    finally:
        for pc in pcs:
            await pc.close()


async def test_rooms_of_different_apps_are_separate(plane: JanusMediaPlane) -> None:
    a, _ = await plane.join(APP_A, "same", "u1", session_id="s1")
    b, peers = await plane.join(APP_B, "same", "u2", session_id="s2")
    assert peers == []
    _, control = await plane._janus()
    rooms = {r["room"] for r in await control.list_rooms()}
    assert {f"{APP_A}/same", f"{APP_B}/same"} <= rooms
    assert await plane.dismiss(APP_A, "same")
    assert plane.running(APP_B, "same")
    assert b.events.empty()
    await plane.leave(b)
    assert a.end_reason == EndReason.DISMISSED


async def test_remove_users_hangs_up_publisher_and_its_subscribers(plane: JanusMediaPlane) -> None:
    alice, _ = await plane.join(APP_A, "r2", "alice", session_id="sa")
    bob, _ = await plane.join(APP_A, "r2", "bob", session_id="sb")
    pcs = [await _publish(plane, alice, StreamKind.CAMERA, BLUE)]
    try:
        await _next(bob, lambda e: isinstance(e, StreamPublished))
        sub_id, pc, video = await _subscribe(plane, bob, "alice", StreamKind.CAMERA)
        pcs.append(pc)
        async with asyncio.timeout(10):
            await video.recv()
        loop = asyncio.get_running_loop()
        started = loop.time()
        await plane.remove_users(APP_A, "r2", ["alice", "nobody"])
        assert await _next(alice, lambda e: isinstance(e, Ended), within=1) == Ended(
            EndReason.REMOVED, "the application removed you from the room"
        )
        sub_end = await _next(bob, lambda e: isinstance(e, SubscriptionEnded), within=1)
        assert isinstance(sub_end, SubscriptionEnded) and sub_end.subscription == sub_id
        assert await _next(bob, lambda e: isinstance(e, UserLeft), within=1) == UserLeft("alice", EndReason.REMOVED)
        assert loop.time() - started < 1.0
        # Janus holds no publisher or subscriber of Alice's any more (its leave completes on its own thread,
        # a moment after the kick is answered).
        _, control = await plane._janus()

        async def janus_empty() -> bool:
            return await control.list_participants(f"{APP_A}/r2") == []

        await until(janus_empty, within=2, what="Janus to let Alice's handles go")
        assert plane.participants(APP_A, "r2") == ["bob"]
        with pytest.raises(NotFoundError):
            await plane.publish(alice, StreamKind.CAMERA, "v=0")
    finally:
        for pc in pcs:
            await pc.close()
    assert await plane.dismiss(APP_A, "r2")
    assert await _next(bob, lambda e: isinstance(e, Ended)) == Ended(
        EndReason.DISMISSED, "the application dismissed the room"
    )
    assert not await plane.dismiss(APP_A, "r2")
    assert not plane.running(APP_A, "r2")


async def test_same_user_joining_again_replaces_the_first(plane: JanusMediaPlane) -> None:
    first, _ = await plane.join(APP_A, "r3", "dave", session_id="one")
    second, peers = await plane.join(APP_A, "r3", "dave", session_id="two")
    assert peers == []
    assert (await _next(first, lambda e: isinstance(e, Ended))).reason == EndReason.REPLACED  # type: ignore[union-attr]
    assert plane.participants(APP_A, "r3") == ["dave"]
    await plane.leave(second)


async def test_janus_crash_ends_participants_and_rooms_come_back(plane: JanusMediaPlane) -> None:
    alice, _ = await plane.join(APP_A, "r4", "alice", session_id="sa")
    pc = await _publish(plane, alice, StreamKind.CAMERA, RED)
    try:
        pid = plane.process.pid
        assert pid is not None
        os.kill(pid, signal.SIGKILL)
        ended = await _next(alice, lambda e: isinstance(e, Ended), within=10)
        assert ended == Ended(EndReason.MEDIA_RESTART, "the media server restarted; join again")
        async with asyncio.timeout(10):
            await plane.process.wait_ready(starts=2)
    finally:
        await pc.close()
    assert not plane.running(APP_A, "r4")
    # The next join creates the room again in the new Janus, and media flows.
    alice, _ = await plane.join(APP_A, "r4", "alice", session_id="sa2")
    bob, _ = await plane.join(APP_A, "r4", "bob", session_id="sb2")
    pcs = [await _publish(plane, alice, StreamKind.SCREEN, BLUE)]
    try:
        await _next(bob, lambda e: isinstance(e, StreamPublished))
        _, pc2, video = await _subscribe(plane, bob, "alice", StreamKind.SCREEN)
        pcs.append(pc2)
        async with asyncio.timeout(10):
            frame = await video.recv()
        assert all(abs(a - b) <= COLOUR_TOLERANCE for a, b in zip(median_rgb(frame), BLUE, strict=True))
    finally:
        for pc in pcs:
            await pc.close()


async def _answer(plane: JanusMediaPlane, p: Participant, pc: Any, offer: str | None) -> None:
    assert offer is not None
    await pc.setRemoteDescription(RTCSessionDescription(offer, "offer"))
    await pc.setLocalDescription(await pc.createAnswer())
    await plane.answer(p, None, pc.localDescription.sdp)


def _video_of(pc: Any, tracks: list[dict[str, Any]]) -> Any:
    [mid] = [t["mid"] for t in tracks if t["type"] == "video"]
    return next(t.receiver.track for t in pc.getTransceivers() if t.mid == mid)


async def test_one_subscriber_handle_carries_every_stream(plane: JanusMediaPlane) -> None:
    alice, _ = await plane.join(APP_A, "r5", "alice", session_id="sa")
    bob, _ = await plane.join(APP_A, "r5", "bob", session_id="sb")
    viewer, _ = await plane.join(APP_A, "r5", "viewer", session_id="sv")
    pcs = [await _publish(plane, alice, StreamKind.CAMERA, RED), await _publish(plane, bob, StreamKind.CAMERA, BLUE)]
    sub_pc = _pc()
    pcs.append(sub_pc)
    try:
        for _ in range(2):
            await _next(viewer, lambda e: isinstance(e, StreamPublished))
        views, offer = await plane.subscribe_many(viewer, [("alice", StreamKind.CAMERA), ("bob", StreamKind.CAMERA)])
        assert [(v.user_id, v.stream) for v in views] == [("alice", StreamKind.CAMERA), ("bob", StreamKind.CAMERA)]
        assert sorted(t["type"] for v in views for t in v.tracks) == ["audio", "audio", "video", "video"]
        # One offer at a time: nothing more until this one is answered.
        with pytest.raises(RenegotiationPendingError):
            await plane.subscribe(viewer, "alice", StreamKind.CAMERA)
        # An answer Janus refuses ends the subscriber handle (Janus would wait on it forever) and says so.
        with pytest.raises(NegotiationError):
            await plane.answer(viewer, None, "not SDP")
        for view in views:
            ended = await _next(viewer, lambda e: isinstance(e, SubscriptionEnded))
            assert isinstance(ended, SubscriptionEnded) and ended.subscription == view.id
        assert isinstance(await _next(viewer, lambda e: True), SubscriberClosed)
        assert viewer._subscriber is None
        views, offer = await plane.subscribe_many(viewer, [("alice", StreamKind.CAMERA), ("bob", StreamKind.CAMERA)])
        await _answer(plane, viewer, sub_pc, offer)
        handle = viewer._subscriber.handle if viewer._subscriber else None
        with pytest.raises(AlreadySubscribedError):
            await plane.subscribe(viewer, "alice", StreamKind.CAMERA)
        with pytest.raises(NotFoundError):
            await plane.answer(viewer, None, "v=0")  # no offer pending
        alice_video, bob_video = (_video_of(sub_pc, v.tracks) for v in views)
        async with asyncio.timeout(10):
            red, blue = await asyncio.gather(alice_video.recv(), bob_video.recv())
        assert all(abs(a - b) <= COLOUR_TOLERANCE for a, b in zip(median_rgb(red), RED, strict=True))
        assert all(abs(a - b) <= COLOUR_TOLERANCE for a, b in zip(median_rgb(blue), BLUE, strict=True))

        # Unsubscribing pauses the streams (no offer); subscribing again resumes them, on the same mids.
        assert await plane.unsubscribe(viewer, views[0].id) is None
        again_id, again_offer, again_tracks = await plane.subscribe(viewer, "alice", StreamKind.CAMERA)
        assert again_offer is None and again_id != views[0].id and again_tracks == views[0].tracks
        async with asyncio.timeout(10):
            await alice_video.recv()

        # Bob leaving ends his subscription only; the viewer keeps its one handle.
        await plane.leave(bob)
        ended = await _next(viewer, lambda e: isinstance(e, SubscriptionEnded))
        assert isinstance(ended, SubscriptionEnded) and (ended.subscription, ended.user_id) == (views[1].id, "bob")
        assert viewer._subscriber is not None and viewer._subscriber.handle is handle
        assert list(viewer._subscriptions) == [again_id]

        # Janus hanging up the subscriber PeerConnection ends every subscription on it, then says so.
        assert handle is not None
        await handle.hangup()
        ended = await _next(viewer, lambda e: isinstance(e, SubscriptionEnded))
        assert isinstance(ended, SubscriptionEnded) and ended.subscription == again_id
        closed = await _next(viewer, lambda e: True)
        assert isinstance(closed, SubscriberClosed)
        assert viewer._subscriber is None and not viewer._subscriptions
    finally:
        for pc in pcs:
            await pc.close()
    for p in (alice, viewer):
        await plane.leave(p)
