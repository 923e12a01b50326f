"""Multistream subscriptions: everything a participant receives comes on one subscriber PeerConnection.

Python clients through Ember and a real Janus: subscriptions made together share one request and one
PeerConnection, and that PeerConnection is renegotiated as subscriptions end and begin (unsubscribe and
subscribe again, a publisher leaving and coming back, a screen share added later) while the other streams
on it carry on.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from aiortc.mediastreams import MediaStreamError
from tests.media.conftest import MediaApp
from tests.media.media_checks import assert_colour, video_report, with_deadline

from emberrtc.client import ColourVideoTrack, RoomClient, Subscription, ToneAudioTrack

pytestmark = pytest.mark.media

COLOURS = {"red": (220, 30, 30), "green": (30, 200, 60), "blue": (30, 60, 220)}
SMALL = {"width": 160, "height": 120}


async def _join(app: MediaApp, room: str, user: str) -> RoomClient:
    return await RoomClient.join(app.server.url, app_id=app.app_id, room_id=room, user_id=user, app_key=app.app_key)


async def _shows(sub: Subscription, rgb: tuple[int, int, int]) -> None:
    """The subscription's video plays the publisher's colour."""
    assert sub.video is not None
    report = await with_deadline(video_report(sub.video, frames=10, warm_up=0.2), 20)
    assert_colour(report.colour, rgb)


async def _track_ends(sub: Subscription) -> None:
    assert sub.video is not None
    with pytest.raises(MediaStreamError):
        while True:
            await with_deadline(sub.video.recv(), 5)


def _requests(client: RoomClient) -> list[dict[str, Any]]:
    """Record every request the client sends (a spy on its WebSocket)."""
    sent: list[dict[str, Any]] = []
    send = client._ws.send

    async def spy(message: Any) -> None:
        sent.append(json.loads(message))
        await send(message)

    client._ws.send = spy  # type: ignore[method-assign]
    return sent


async def _publishers(app: MediaApp, room: str, names: list[str]) -> dict[str, RoomClient]:
    clients: dict[str, RoomClient] = {}
    try:
        for name in names:
            clients[name] = await _join(app, room, name)
            await clients[name].publish("camera", video=ColourVideoTrack(COLOURS[name], **SMALL))
    except BaseException:
        for client in clients.values():
            await client.leave()
        raise
    return clients


async def test_subscriptions_made_together_share_one_request_and_one_peer_connection(media_app: MediaApp) -> None:
    publishers = await _publishers(media_app, "together", list(COLOURS))
    viewer = await _join(media_app, "together", "viewer")
    try:
        for name in COLOURS:
            await with_deadline(viewer.wait_stream(name), 15)
        sent = _requests(viewer)
        subs = await with_deadline(asyncio.gather(*(viewer.subscribe(name) for name in COLOURS)), 20)
        # One subscribe naming the three streams, one answer: one renegotiation, so one ICE and DTLS.
        assert [m["type"] for m in sent] == ["subscribe", "answer"]
        assert sent[0]["streams"] == [{"user_id": name, "stream": "camera"} for name in COLOURS]
        assert {id(s.pc) for s in subs} == {id(viewer.subscriber_pc)}
        mids = [t["mid"] for s in subs for t in s.tracks]
        assert len(mids) == len(set(mids)) == 3 and all(t["type"] == "video" for s in subs for t in s.tracks)
        await asyncio.gather(*(_shows(sub, COLOURS[sub.user_id]) for sub in subs))
        # The server holds one Janus subscriber handle for the viewer.
        participant = media_app.plane._rooms[(media_app.app_id, "together")].participants["viewer"]
        assert participant._subscriber is not None and len(participant._subscriptions) == 3

        # A subscription to a stream that is not there fails alone; the others in its batch are made.
        more = await asyncio.gather(
            viewer.subscribe("red", "screen"), viewer.subscribe("nobody"), return_exceptions=True
        )
        assert all(isinstance(m, Exception) for m in more)
        again = await asyncio.gather(viewer.subscribe("red"), return_exceptions=True)
        assert "already receive" in str(again[0])
    finally:
        await viewer.leave()
        for client in publishers.values():
            await client.leave()


async def test_unsubscribe_and_subscribe_again_on_the_same_peer_connection(media_app: MediaApp) -> None:
    publishers = await _publishers(media_app, "again", ["red", "blue"])
    viewer = await _join(media_app, "again", "viewer")
    try:
        for name in ("red", "blue"):
            await with_deadline(viewer.wait_stream(name), 15)
        red, blue = await asyncio.gather(viewer.subscribe("red"), viewer.subscribe("blue"))
        await asyncio.gather(_shows(red, COLOURS["red"]), _shows(blue, COLOURS["blue"]))
        pc = viewer.subscriber_pc

        await viewer.unsubscribe(red)
        await _track_ends(red)
        assert red.end_reason == "unsubscribed" and not blue.ended.is_set()
        await _shows(blue, COLOURS["blue"])

        red_again = await viewer.subscribe("red")
        assert viewer.subscriber_pc is pc and red_again.id != red.id
        await asyncio.gather(_shows(red_again, COLOURS["red"]), _shows(blue, COLOURS["blue"]))
    finally:
        await viewer.leave()
        for client in publishers.values():
            await client.leave()


async def test_publisher_leaving_and_coming_back_and_a_screen_added_later(media_app: MediaApp) -> None:
    publishers = await _publishers(media_app, "back", ["red", "green"])
    viewer = await _join(media_app, "back", "viewer")
    try:
        for name in ("red", "green"):
            await with_deadline(viewer.wait_stream(name), 15)
        red, green = await asyncio.gather(viewer.subscribe("red"), viewer.subscribe("green"))
        await asyncio.gather(_shows(red, COLOURS["red"]), _shows(green, COLOURS["green"]))
        pc = viewer.subscriber_pc

        # Red leaves: only red's subscription ends, and no renegotiation is needed for it.
        await publishers.pop("red").leave()
        ended = await with_deadline(viewer.wait_event(lambda e: e.get("type") == "subscription_ended"), 5)
        assert (ended["subscription"], ended["user_id"]) == (red.id, "red")
        await _track_ends(red)
        await _shows(green, COLOURS["green"])

        # Red comes back with a camera, green adds a screen share: both join the same PeerConnection.
        publishers["red"] = await _join(media_app, "back", "red")
        await publishers["red"].publish("camera", video=ColourVideoTrack(COLOURS["red"], **SMALL))
        await publishers["green"].publish("screen", video=ColourVideoTrack(COLOURS["blue"], width=320, height=180))
        await with_deadline(viewer.wait_stream("red"), 15)
        await with_deadline(viewer.wait_stream("green", "screen"), 15)
        red_back, screen = await asyncio.gather(viewer.subscribe("red"), viewer.subscribe("green", "screen"))
        assert viewer.subscriber_pc is pc
        await asyncio.gather(
            _shows(red_back, COLOURS["red"]), _shows(screen, COLOURS["blue"]), _shows(green, COLOURS["green"])
        )
    finally:
        await viewer.leave()
        for client in publishers.values():
            await client.leave()


async def test_one_renegotiation_at_a_time(media_app: MediaApp) -> None:
    publisher = await _join(media_app, "one-at-a-time", "red")
    viewer = await _join(media_app, "one-at-a-time", "viewer")
    try:
        await publisher.publish("camera", video=ColourVideoTrack(COLOURS["red"], **SMALL), audio=ToneAudioTrack(440))
        await publisher.publish("screen", video=ColourVideoTrack(COLOURS["blue"], **SMALL))
        await with_deadline(viewer.wait_stream("red", "screen"), 15)
        await with_deadline(viewer.wait_stream("red", "camera"), 15)
        # Raw protocol: an offer left unanswered blocks the next subscribe until it is answered.
        offer = await viewer._request({"type": "subscribe", "user_id": "red", "stream": "camera"})
        assert offer["sdp"] and [t["type"] for t in offer["tracks"]] == ["video", "audio"]
        with pytest.raises(Exception, match="answer the last subscription offer"):
            await viewer._request({"type": "subscribe", "user_id": "red", "stream": "screen"})
    finally:
        await viewer.leave()
        await publisher.leave()


async def test_a_failed_subscriber_peer_connection_is_replaced(media_app: MediaApp) -> None:
    publishers = await _publishers(media_app, "failed", ["red", "blue"])
    viewer = await _join(media_app, "failed", "viewer")
    try:
        for name in ("red", "blue"):
            await with_deadline(viewer.wait_stream(name), 15)
        red, blue = await asyncio.gather(viewer.subscribe("red"), viewer.subscribe("blue"))
        await asyncio.gather(_shows(red, COLOURS["red"]), _shows(blue, COLOURS["blue"]))
        broken = viewer.subscriber_pc
        assert broken is not None
        # The client's side of the transport goes away (as when ICE consent is lost).
        await broken.getTransceivers()[0].receiver.transport.stop()
        await asyncio.gather(_track_ends(red), _track_ends(blue))
        # Whichever side notices first: the client (its PeerConnection closed) resets and tells the server,
        # or Janus (the DTLS alert) hangs up and the server tells the client.
        assert red.end_reason == blue.end_reason
        if red.end_reason == "connection failed":
            # The client ends them while resetting, holding its renegotiation lock: once it has the lock
            # again, the server has been told and answered.
            async with asyncio.timeout(5), viewer._negotiation:
                pass
        else:
            assert red.end_reason == "the subscriber connection ended"
            await with_deadline(viewer.wait_event(lambda e: e.get("type") == "subscriber_closed"), 5)
        participant = media_app.plane._rooms[(media_app.app_id, "failed")].participants["viewer"]
        assert participant._subscriber is None and not participant._subscriptions
        assert viewer.subscriber_pc is None and broken.connectionState == "closed"
        # The next subscriptions start a new PeerConnection, and play.
        red, blue = await asyncio.gather(viewer.subscribe("red"), viewer.subscribe("blue"))
        assert viewer.subscriber_pc is not broken
        await asyncio.gather(_shows(red, COLOURS["red"]), _shows(blue, COLOURS["blue"]))
    finally:
        await viewer.leave()
        for client in publishers.values():
            await client.leave()
