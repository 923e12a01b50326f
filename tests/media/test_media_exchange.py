"""Python clients exchanging real audio and video through Ember and Janus.

Every subscriber must receive frames and samples at the publishing rate, decode the publisher's colour and
hear the publisher's tone.
"""

from __future__ import annotations

import asyncio

import pytest
from tests.media.conftest import MediaApp
from tests.media.media_checks import assert_colour, assert_rates, audio_report, video_report, with_deadline

from emberrtc.client import ColourVideoTrack, RoomClient, Subscription, ToneAudioTrack

pytestmark = pytest.mark.media

PEOPLE = {
    "red": ((220, 30, 30), 440.0),
    "green": ((30, 200, 60), 660.0),
    "blue": ((30, 60, 220), 880.0),
    "yellow": ((230, 210, 40), 550.0),
}
# Small frames: four publishers and twelve subscriptions share this process's one event loop. Four VP8
# publishers send 15 frames a second: at 30, the twelve decoders and four encoders in this one process fell
# behind real time on a loaded two-core machine (16 of 30 frames a second arrived, once in a rehearsal).
WIDTH, HEIGHT = 160, 120


async def _join(app: MediaApp, room: str, user: str) -> RoomClient:
    return await RoomClient.join(app.server.url, app_id=app.app_id, room_id=room, user_id=user, app_key=app.app_key)


@pytest.mark.parametrize(("count", "codec", "fps"), [(2, "h264", 30), (4, "vp8", 15)])
async def test_clients_exchange_audio_and_video(media_app: MediaApp, count: int, codec: str, fps: int) -> None:
    room = f"mesh-{count}"
    names = list(PEOPLE)[:count]
    clients = {name: await _join(media_app, room, name) for name in names}
    try:
        for name, client in clients.items():
            rgb, tone = PEOPLE[name]
            publication = await client.publish(
                "camera",
                video=ColourVideoTrack(rgb, width=WIDTH, height=HEIGHT, fps=fps),
                audio=ToneAudioTrack(tone),
                codec=codec,
            )
            assert {(t["type"], t["codec"]) for t in publication.tracks} == {("video", codec), ("audio", "opus")}

        # Everyone subscribes to everyone else once their stream is announced.
        subs: dict[tuple[str, str], Subscription] = {}
        for name, client in clients.items():
            for other in names:
                if other == name:
                    continue
                await with_deadline(client.wait_stream(other, "camera"), 15)
                subs[(name, other)] = await client.subscribe(other, "camera")
        for client in clients.values():
            assert {p: s.streams for p, s in client.participants.items()} == {
                other: {"camera": {"audio": True, "video": True}} for other in names if other != client.user_id
            }

        async def check(key: tuple[str, str], sub: Subscription) -> None:
            video, audio = await asyncio.gather(video_report(sub.video, frames=45), audio_report(sub.audio, 1.5))
            rgb, tone = PEOPLE[key[1]]
            assert video.size == (WIDTH, HEIGHT)
            assert_colour(video.colour, rgb)
            assert_rates(video, audio, fps=fps)
            assert abs(audio.frequency - tone) <= 5, f"{key}: heard {audio.frequency:.0f} Hz, sent {tone}"

        await with_deadline(asyncio.gather(*(check(k, s) for k, s in subs.items())), 60)
        _, sessions = await media_app.records(room)
        assert {s["user_id"]: s["published_streams"] for s in sessions} == {name: ["camera"] for name in names}
    finally:
        for client in clients.values():
            await client.leave()


async def test_screen_share_next_to_camera(media_app: MediaApp) -> None:
    presenter = await _join(media_app, "share", "presenter")
    viewer = await _join(media_app, "share", "viewer")
    try:
        await presenter.publish(
            "camera", video=ColourVideoTrack((220, 30, 30), width=160, height=120), audio=ToneAudioTrack(440)
        )
        await presenter.publish("screen", video=ColourVideoTrack((30, 60, 220), width=320, height=180, fps=15))
        for stream in ("camera", "screen"):
            await with_deadline(viewer.wait_stream("presenter", stream), 15)
        assert viewer.participants["presenter"].streams == {
            "camera": {"audio": True, "video": True},
            "screen": {"audio": False, "video": True},
        }
        camera = await viewer.subscribe("presenter", "camera")
        screen = await viewer.subscribe("presenter", "screen")
        assert screen.audio is None
        cam_video, scr_video = await with_deadline(
            asyncio.gather(video_report(camera.video, frames=30), video_report(screen.video, frames=15)), 30
        )
        assert (cam_video.size, scr_video.size) == ((160, 120), (320, 180))
        assert_colour(cam_video.colour, (220, 30, 30))
        assert_colour(scr_video.colour, (30, 60, 220))
        assert_rates(cam_video)
        assert_rates(scr_video, fps=15)

        # Stopping the share ends that subscription only.
        await presenter.unpublish("screen")
        ended = await with_deadline(viewer.wait_event(lambda e: e.get("type") == "subscription_ended"), 5)
        assert ended["subscription"] == screen.id and ended["stream"] == "screen"
        await with_deadline(
            viewer.wait_event(lambda e: e.get("type") == "stream_unpublished" and e["stream"] == "screen"), 5
        )
        assert screen.ended.is_set() and not camera.ended.is_set()
        await with_deadline(camera.video.recv(), 5)  # type: ignore[union-attr]
        _, sessions = await media_app.records("share")
        assert {s["user_id"]: s["published_streams"] for s in sessions} == {
            "presenter": ["camera", "screen"],
            "viewer": [],
        }
    finally:
        await presenter.leave()
        await viewer.leave()
