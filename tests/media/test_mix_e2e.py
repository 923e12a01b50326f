"""Mixed-stream recording end to end (spec 4.8): Python clients publish distinct colours and tones through
Janus, a mixed job started with the v2 API composes the room, follows a user who leaves and one who joins,
takes a live layout change (PUT) with a background image, and its MP4 lands in local storage with signed
callbacks; the file is read back with PyAV and checked cell by cell.
"""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest
from tests.media.conftest import MediaApp
from tests.media.test_recording_e2e import AUTH_KEY, Recorded, _join, _live
from tests.recording.readback import band, cell_rgb, frame_at
from tests.support.http_receiver import HttpReceiver
from tests.support.waiting import until

from emberrtc.callbacks.signature import verify
from emberrtc.client import ColourVideoTrack, ToneAudioTrack
from emberrtc.recording.layout import Participant, compute_layout, layout_params
from emberrtc.recording.reports import Progress, Report
from emberrtc.synthetic import colour_distance

pytestmark = pytest.mark.media

MIX_JOBS = "mix-stream-jobs"
RED, BLUE, GREEN, MAGENTA = (220, 30, 30), (30, 60, 220), (30, 200, 60), (200, 40, 200)
TEMPLATE, W, H, FPS = "640x480_15_500", 640, 480, 15
PHASE = 3.0  # seconds of each phase of the recording (lengths of media, not synchronisation)
TOLERANCE = 45  # the mix is scaled and encoded at 500 kbit/s


async def merging_rule(app: MediaApp) -> str:
    """A rule whose MP4s go on over interruptions up to 10 s: a test process starved of CPU for a second
    (its clients send from it) must not split the recording the test reads back."""
    rule = {
        "obs_addr": {"location": "local", "project_id": app.project_id, "bucket": "ember-records"},
        "record_formats": ["MP4"],
        "mp4_config": {"record_cycle": 60, "record_max_duration_to_merge_file": 10},
    }
    created = await app.post(f"/v2/apps/{app.app_id}/record-rules", rule)
    assert created.status_code == 201, created.text
    return str(created.json()["rule_id"])


def png(rgb: tuple[int, int, int], width: int = 64, height: int = 48) -> bytes:
    frame = av.VideoFrame.from_ndarray(np.full((height, width, 3), rgb, np.uint8), format="rgb24")
    encoder = av.CodecContext.create("png", "w")
    assert isinstance(encoder, av.VideoCodecContext)
    encoder.width, encoder.height, encoder.pix_fmt = width, height, "rgb24"
    return b"".join(bytes(p) for p in [*encoder.encode(frame), *encoder.encode(None)])


async def test_mixed_job_composes_the_room_follows_it_and_takes_a_live_layout(
    media_app: MediaApp, tmp_path: Path
) -> None:
    app_id, room = media_app.app_id, "mix-room"
    # Where each recording is (its worker's media time, reported every few packets): instants of the test
    # placed in the file. A report may be a fraction of a second old: an instant placed by it is at most
    # that much early.
    progress: dict[str, list[float]] = defaultdict(list)

    def listen(j: str, report: Report) -> None:
        if isinstance(report, Progress):
            progress[j].append(report.media_time)

    recorder = media_app.services.recorder
    assert recorder is not None
    recorder.listeners.append(listen)
    receiver = await HttpReceiver().start()
    alice = await _join(media_app, room, "alice")
    bob = await _join(media_app, room, "bob")
    carol = None
    try:
        rec = await Recorded.set_up(media_app, receiver)
        store = media_app.services.storage.local("local", media_app.project_id)
        assert store is not None
        image = tmp_path / "magenta.png"
        image.write_bytes(png(MAGENTA))
        await asyncio.to_thread(media_app.server.call, store.put_file("ember-records", "images/magenta.png", image))

        await alice.publish("camera", video=ColourVideoTrack(RED, width=320, height=240), audio=ToneAudioTrack(440.0),
                            codec="h264")  # fmt: skip
        # bob in portrait, VP8
        await bob.publish("camera", video=ColourVideoTrack(BLUE, width=240, height=320), audio=ToneAudioTrack(1200.0),
                          codec="vp8")  # fmt: skip
        for user in ("alice", "bob"):
            await until(lambda u=user: _live(media_app, room, u, "CAMERASTREAM"), what=f"{user}'s camera is live")

        body = {
            "mix_param": {"room_id": room, "encode_template": TEMPLATE, "layout_template": "nine_grids_view"},
            "record_param": {"record_rule_id": await merging_rule(media_app)},
        }
        posted = time.monotonic()
        created = await media_app.post(f"/v2/apps/{app_id}/{MIX_JOBS}", body)
        assert created.status_code == 201, created.text
        job_id = created.json()["job_id"]
        assert created.json()["stream_name"] == f"m_{job_id}_{room}"
        media_time = progress[job_id]

        async def state(want: str) -> dict[str, Any] | None:
            r = await asyncio.to_thread(media_app.http.get, f"/v2/apps/{app_id}/{MIX_JOBS}/{job_id}")
            assert r.status_code == 200, r.text
            job = dict(r.json())
            assert want == "STOPPED" or job["state"] != "STOPPED", job
            return job if job["state"] == want else None

        # A worker starts in a second or two, much longer on a loaded machine; media waits in its socket.
        await until(lambda: state("RUNNING"), within=60, what="the mixed job RUNNING")
        ran = media_time[-1] if media_time else 0.0
        started = time.monotonic()
        await asyncio.sleep(PHASE)  # phase 1: alice and bob

        await bob.leave()  # phase 2: bob leaves, carol joins and takes his place
        carol = await _join(media_app, room, "carol")
        await carol.publish("camera", video=ColourVideoTrack(GREEN, width=320, height=240), codec="h264")
        await until(lambda: _live(media_app, room, "carol", "CAMERASTREAM"), what="carol's camera is live")
        joined = media_time[-1]
        await asyncio.sleep(PHASE)

        panes = [  # phase 3: a custom layout (PUT) over a background image
            {"id": 1, "user_id": "alice", "x": 0, "y": 0, "width": 0.5, "height": 1.0, "zorder": 0,
             "crop_mode": "KEEP_RATIO_CROP"},
            {"id": 2, "user_id": "carol", "x": 0.5, "y": 0.5, "width": 0.5, "height": 0.5, "zorder": 1},
        ]  # fmt: skip
        update = {
            "mix_param": {
                "layout_template": "custom",
                "layout_panes": panes,
                "background_image": "s3://ember-records/images/magenta.png",
                "default_user_background_image": "s3://ember-records/images/absent.png",
            }
        }
        put = await asyncio.to_thread(media_app.http.put, f"/v2/apps/{app_id}/{MIX_JOBS}/{job_id}", json=update)
        assert put.status_code == 200, put.text
        changed = media_time[-1]
        running = await until(lambda: state("RUNNING"), what="the job still RUNNING")
        assert "default_user_background_image s3://ember-records/images/absent.png" in running["description"]
        await asyncio.sleep(PHASE)

        stopped_at = time.monotonic() - started
        stop = await asyncio.to_thread(media_app.http.delete, f"/v2/apps/{app_id}/{MIX_JOBS}/{job_id}")
        assert stop.status_code == 204, stop.text
        since_post = time.monotonic() - posted  # the DELETE answers once the worker has ended the file
        await until(lambda: state("STOPPED"), within=20, what="the mixed job STOPPED")
        await rec.wait_events(job_id, "CLOUD_RECORD_OVER")
    finally:
        recorder.listeners.remove(listen)
        for client in (alice, bob, carol):
            if client is not None:
                await client.leave()
        await receiver.stop()

    assert all(verify(AUTH_KEY, r.headers, r.body) for r in rec.requests(job_id))
    events = rec.events(job_id)
    assert [e["event_type"] for e in events] == ["RECORD_NEW_FILE_START", "RECORD_FILE_COMPLETE", "CLOUD_RECORD_OVER"]
    complete = events[1]
    assert complete["stream_name"] == f"m_{job_id}_{room}"
    assert (complete["width"], complete["height"]) == (W, H)
    rb = await rec.download(complete, tmp_path / "mix.mp4")
    assert (rb.video_codec, rb.width, rb.height, rb.audio_codec) == ("h264", W, H, "aac")
    times = [float(f.time or 0.0) for f in rb.video]
    assert np.allclose(np.diff(times), 1 / FPS, atol=0.002)  # a constant frame rate
    # From its first media (forwarded, and waiting in the socket, while the worker started) to the stop.
    assert stopped_at - 0.5 <= rb.duration <= since_post + 0.5, (rb.duration, stopped_at, since_post)

    # Phase 1: the nine-grid cells of alice and bob (join order), each with its colour; both tones.
    people = [Participant("alice", 0, True, False), Participant("bob", 1, True, False)]
    grid = compute_layout(layout_params({"layout_template": "nine_grids_view"}), people, W, H)
    colours = {"alice": RED, "bob": BLUE, "carol": GREEN}
    first = frame_at(rb.video, ran + PHASE - 1.0)
    for tile in grid.tiles:
        assert tile.source is not None
        got = cell_rgb(first, tile.x, tile.y, tile.width, tile.height)
        assert colour_distance(got, colours[tile.source[0]]) < TOLERANCE, (tile, got)
    early = [f for f in rb.audio if ran + 0.5 < float(f.time or 0.0) < ran + PHASE - 0.5]
    assert band(early, 440.0) > 0.2 and band(early, 1200.0) > 0.2

    # Phase 2: carol in bob's cell, alice where she was.
    second = frame_at(rb.video, joined + PHASE - 1.0)
    for tile in grid.tiles:
        assert tile.source is not None
        who = "carol" if tile.source[0] == "bob" else "alice"
        got = cell_rgb(second, tile.x, tile.y, tile.width, tile.height)
        assert colour_distance(got, colours[who]) < TOLERANCE, (who, got)

    # Phase 3: the custom layout within 1 s of the PUT's answer, in the same file, over the image.
    # (`changed`: the worker's media time when the PUT was answered, at most a fraction of a second early.)
    def custom(frame: av.VideoFrame) -> bool:
        return (
            colour_distance(cell_rgb(frame, 0, 0, 320, 480), RED) < TOLERANCE
            and colour_distance(cell_rgb(frame, 320, 240, 320, 240), GREEN) < TOLERANCE
            and colour_distance(cell_rgb(frame, 320, 0, 320, 240), MAGENTA) < TOLERANCE
        )

    assert not custom(frame_at(rb.video, changed - 0.5))
    assert all(custom(f) for f in rb.video if changed + 1.0 <= float(f.time or 0.0) <= changed + PHASE - 0.5)


async def test_audio_only_mix_stops_after_max_idle_time_once_everyone_left(media_app: MediaApp, tmp_path: Path) -> None:
    """``audio_only``: an audio-only file with both voices; with nobody publishing the job counts its
    ``max_idle_time`` and stops with ``IDLE_TIMEOUT``, its file complete and its callbacks sent."""
    app_id, room = media_app.app_id, "mix-audio-room"
    receiver = await HttpReceiver().start()
    clients = [await _join(media_app, room, "dan"), await _join(media_app, room, "eve")]
    try:
        rec = await Recorded.set_up(media_app, receiver)
        body = {
            "mix_param": {"room_id": room, "encode_template": "audio_only", "max_idle_time": 5},
            "record_param": {"record_rule_id": await merging_rule(media_app)},
        }
        created = await media_app.post(f"/v2/apps/{app_id}/{MIX_JOBS}", body)
        assert created.status_code == 201, created.text
        job_id = created.json()["job_id"]
        for client, tone in zip(clients, (500.0, 1300.0), strict=True):
            # Video too: an audio-only job records none of it.
            await client.publish("camera", video=ColourVideoTrack(RED), audio=ToneAudioTrack(tone), codec="vp8")

        last: list[dict[str, Any]] = []

        async def state(want: str) -> dict[str, Any] | None:
            r = await asyncio.to_thread(media_app.http.get, f"/v2/apps/{app_id}/{MIX_JOBS}/{job_id}")
            assert r.status_code == 200, r.text
            last[:] = [dict(r.json())]
            return dict(r.json()) if r.json()["state"] == want else None

        try:
            await until(lambda: state("RUNNING"), within=60, what="the audio-only job RUNNING")
        except AssertionError as exc:
            raise AssertionError(f"{exc}; the job as last seen: {last}") from exc
        await asyncio.sleep(PHASE)  # the length of the recording
        for client in clients:
            await client.leave()
        left = time.monotonic()
        stopped = await until(lambda: state("STOPPED"), within=30, what="the job to stop by itself")
        assert stopped["stop_reason"] == "IDLE_TIMEOUT"
        assert time.monotonic() - left >= 5.0 - 0.5  # max_idle_time counted from when nobody published
        await rec.wait_events(job_id, "CLOUD_RECORD_OVER")
    finally:
        for client in clients:
            await client.leave()
        await receiver.stop()

    events = rec.events(job_id)
    assert [e["event_type"] for e in events] == ["RECORD_NEW_FILE_START", "RECORD_FILE_COMPLETE", "CLOUD_RECORD_OVER"]
    complete = events[1]
    assert (complete.get("width"), complete.get("height")) in ((None, None), (0, 0))
    rb = await rec.download(complete, tmp_path / "audio.mp4")
    assert rb.video_codec is None and (rb.audio_codec, rb.sample_rate) == ("aac", 48_000)
    assert rb.duration >= PHASE - 0.5
    middle = [f for f in rb.audio if 0.5 < float(f.time or 0.0) < rb.duration - 0.5]
    assert band(middle, 500.0) > 0.2 and band(middle, 1300.0) > 0.2
