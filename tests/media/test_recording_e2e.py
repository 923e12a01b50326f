"""Recording end to end: a Python client publishes a synthetic colour and tone through Janus, a single-stream
job started with the v2 API records it, the file lands in local storage, and the application's real HTTP
receiver gets the signed callbacks (spec 4.3, 4.4, 6.6).
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from tests.media.conftest import MediaApp
from tests.recording.readback import Readback, read_back
from tests.support.http_receiver import HttpReceiver, Received
from tests.support.waiting import until

from emberrtc.callbacks.signature import verify
from emberrtc.client import ColourVideoTrack, RoomClient, ToneAudioTrack
from emberrtc.synthetic import colour_distance, dominant_frequency, median_rgb

pytestmark = pytest.mark.media

AUTH_KEY = "5f3c1a9e7b2d4c6a8e0f1b3d5a7c9e2f"
JOBS = "individual-stream-jobs"
WIDTH, HEIGHT = 320, 240
RED, BLUE, GREEN = (220, 30, 30), (30, 60, 220), (30, 200, 60)
TONE = 440.0
RECORD_SECONDS = 7.0
COLOUR_TOLERANCE = 25


class Recorded:
    """The app's callback receiver and record rule, and what the v2 API says about its jobs."""

    def __init__(self, app: MediaApp, receiver: HttpReceiver, rule_id: str) -> None:
        self.app, self.receiver, self.rule_id = app, receiver, rule_id

    @classmethod
    async def set_up(cls, app: MediaApp, receiver: HttpReceiver) -> Recorded:
        body = {"url": receiver.url + "/record-events", "auth_key": AUTH_KEY}
        put = await asyncio.to_thread(app.http.put, f"/v2/apps/{app.app_id}/record-callback", json=body)
        assert put.status_code == 200, put.text
        rule = {
            "obs_addr": {"location": "local", "project_id": app.project_id, "bucket": "ember-records"},
            "record_formats": ["MP4"],
            "mp4_config": {"record_cycle": 60},
        }
        created = await app.post(f"/v2/apps/{app.app_id}/record-rules", rule)
        assert created.status_code == 201, created.text
        return cls(app, receiver, created.json()["rule_id"])

    async def start_job(self, room_id: str, user_id: str, **params: Any) -> str:
        body = {"room_id": room_id, "user_id": user_id, "record_param": {"record_rule_id": self.rule_id}, **params}
        r = await self.app.post(f"/v2/apps/{self.app.app_id}/{JOBS}", body)
        assert r.status_code == 201, r.text
        assert r.json()["state"] == "INIT"
        return str(r.json()["job_id"])

    async def job(self, job_id: str) -> dict[str, Any]:
        r = await asyncio.to_thread(self.app.http.get, f"/v2/apps/{self.app.app_id}/{JOBS}/{job_id}")
        assert r.status_code == 200, r.text
        return dict(r.json())

    async def wait_state(self, job_id: str, state: str, within: float = 20.0) -> dict[str, Any]:
        async def reached() -> dict[str, Any] | None:
            job = await self.job(job_id)
            assert state == "STOPPED" or job["state"] != "STOPPED", f"the job stopped: {job}"
            return job if job["state"] == state else None

        return dict(await until(reached, within=within, what=f"job {job_id} {state}"))

    async def stop_job(self, job_id: str) -> None:
        r = await asyncio.to_thread(self.app.http.delete, f"/v2/apps/{self.app.app_id}/{JOBS}/{job_id}")
        assert r.status_code == 204, r.text

    def events(self, job_id: str, event_type: str | None = None) -> list[dict[str, Any]]:
        bodies = [json.loads(r.body) for r in self.receiver.answered()]
        return [b for b in bodies if b["job_id"] == job_id and event_type in (None, b["event_type"])]

    def requests(self, job_id: str) -> list[Received]:
        return [r for r in self.receiver.answered() if json.loads(r.body)["job_id"] == job_id]

    async def wait_events(self, job_id: str, event_type: str, count: int = 1, within: float = 30.0) -> None:
        await until(lambda: len(self.events(job_id, event_type)) >= count, within=within, what=f"{count} {event_type}")

    async def download(self, event: dict[str, Any], dest: Path) -> Readback:
        link = urlsplit(event["download_url"])
        async with httpx.AsyncClient(base_url=self.app.server.url, trust_env=False) as client:
            got = await client.get(f"{link.path}?{link.query}")
        assert got.status_code == 200, got.text
        await asyncio.to_thread(dest.write_bytes, got.content)
        return await asyncio.to_thread(read_back, dest)


async def _join(app: MediaApp, room: str, user: str) -> RoomClient:
    return await RoomClient.join(app.server.url, app_id=app.app_id, room_id=room, user_id=user, app_key=app.app_key)


async def _live(app: MediaApp, room_id: str, user_id: str, video_type: str) -> bool:
    """Does the server's media plane see the user's stream live (asked on the server's loop)?"""
    coro = app.plane.has_stream(app.app_id, room_id, user_id, video_type)
    return bool(await asyncio.to_thread(app.server.call, coro))


async def _forwarders(app: MediaApp, room_id: str) -> dict[str, int]:
    return dict(await asyncio.to_thread(app.server.call, app.plane.forwarders(app.app_id, room_id)))


async def test_single_stream_job_records_an_mp4_with_signed_callbacks(media_app: MediaApp, tmp_path: Path) -> None:
    receiver = await HttpReceiver().start()
    client = await _join(media_app, "rec-room", "alice")
    try:
        rec = await Recorded.set_up(media_app, receiver)
        publication = await client.publish(
            "camera",
            video=ColourVideoTrack(RED, width=WIDTH, height=HEIGHT),
            audio=ToneAudioTrack(TONE),
            codec="h264",
        )
        assert {(t["type"], t["codec"]) for t in publication.tracks} == {("video", "h264"), ("audio", "opus")}
        await until(lambda: _live(media_app, "rec-room", "alice", "CAMERASTREAM"), what="alice's camera is live")

        asked = time.monotonic()
        job_id = await rec.start_job("rec-room", "alice")
        running = await rec.wait_state(job_id, "RUNNING")
        started = time.monotonic()
        assert running["description"] == "recording"
        assert sum((await _forwarders(media_app, "rec-room")).values()) == 2  # video and audio
        await asyncio.sleep(RECORD_SECONDS)  # the length of the recording, not a synchronisation
        recorded = time.monotonic() - started
        await rec.stop_job(job_id)
        # The most the file can hold: from the start request to the stop's answer (a loaded machine can
        # stretch both calls, and the worker records until the stop reaches it).
        longest = time.monotonic() - asked
        stopped = await rec.wait_state(job_id, "STOPPED")
        assert stopped["stop_reason"]
        assert sum((await _forwarders(media_app, "rec-room")).values()) == 0  # alice still publishes

        await rec.wait_events(job_id, "CLOUD_RECORD_OVER")
    finally:
        await client.leave()
        await receiver.stop()

    requests = rec.requests(job_id)
    assert all(verify(AUTH_KEY, r.headers, r.body) for r in requests)
    assert all(r.path == "/record-events" for r in requests)
    events = rec.events(job_id)
    assert [e["event_type"] for e in events] == ["RECORD_NEW_FILE_START", "RECORD_FILE_COMPLETE", "CLOUD_RECORD_OVER"]
    assert len({e["event_id"] for e in events}) == 3
    start, complete, _ = events
    stream_name = f"s_{job_id}_rec-room_alice"
    for e in events:
        assert (e["app_id"], e["room_id"], e["stream_name"]) == (media_app.app_id, "rec-room", stream_name)
    assert start["obs_object"] == complete["obs_object"]
    assert complete["record_format"] == "MP4"
    assert (complete["obs_location"], complete["obs_bucket"]) == ("local", "ember-records")
    assert complete["obs_object"].endswith(".mp4")
    assert (complete["width"], complete["height"]) == (WIDTH, HEIGHT)
    assert recorded - 1.5 <= complete["record_duration"] <= longest + 1.0  # whole seconds, rounded
    for key in ("start_time", "end_time", "download_url"):
        assert complete[key], key

    rb = await rec.download(complete, tmp_path / "recording.mp4")
    assert "mp4" in rb.format
    assert (rb.video_codec, rb.width, rb.height) == ("h264", WIDTH, HEIGHT)
    assert (rb.audio_codec, rb.sample_rate) == ("aac", 48_000)
    assert recorded - 1.0 <= rb.duration <= longest + 0.2, (
        f"file lasts {rb.duration:.2f} s, recorded for {recorded:.2f} s (at most {longest:.2f} s)"
    )
    assert colour_distance(median_rgb(rb.middle_frame), RED) < COLOUR_TOLERANCE
    assert dominant_frequency(rb.audio[5:]) == pytest.approx(TONE, abs=5)


async def test_job_waits_for_the_stream_and_follows_a_republish(media_app: MediaApp, tmp_path: Path) -> None:
    """A job started before the user publishes waits in INIT and runs once the stream is up; when the user
    publishes again with another codec, the same job goes on recording the new stream."""
    receiver = await HttpReceiver().start()
    client = await _join(media_app, "early-room", "bob")
    try:
        rec = await Recorded.set_up(media_app, receiver)
        job_id = await rec.start_job("early-room", "bob", video_type="SCREENSTREAM", is_record_audio=False)
        # bob is in the room with a camera only: the job waits for his screen.
        await client.publish("camera", video=ColourVideoTrack(RED, width=WIDTH, height=HEIGHT), codec="h264")
        await until(lambda: _live(media_app, "early-room", "bob", "CAMERASTREAM"), what="bob's camera is live")
        assert (await rec.job(job_id))["state"] == "INIT"

        await client.publish("screen", video=ColourVideoTrack(BLUE, width=WIDTH, height=HEIGHT), codec="vp8")
        await rec.wait_state(job_id, "RUNNING")
        await rec.wait_events(job_id, "RECORD_NEW_FILE_START")

        # The screen again, now in H.264: forwarded again to the job, whose worker follows the new codec.
        await client.unpublish("screen")
        await client.publish("screen", video=ColourVideoTrack(GREEN, width=WIDTH, height=HEIGHT), codec="h264")
        await rec.wait_events(job_id, "RECORD_NEW_FILE_START", count=2)
        await rec.wait_state(job_id, "RUNNING")
        await asyncio.sleep(2.0)  # the length of the second file, not a synchronisation
        await rec.stop_job(job_id)
        await rec.wait_state(job_id, "STOPPED")
        await rec.wait_events(job_id, "CLOUD_RECORD_OVER")
    finally:
        await client.leave()
        await receiver.stop()

    assert all(verify(AUTH_KEY, r.headers, r.body) for r in rec.requests(job_id))
    files = rec.events(job_id, "RECORD_FILE_COMPLETE")
    assert len(files) >= 2
    first = await rec.download(files[0], tmp_path / "first.mp4")
    last = await rec.download(files[-1], tmp_path / "last.mp4")
    for rb in (first, last):
        assert (rb.video_codec, rb.width, rb.height, rb.audio_codec) == ("h264", WIDTH, HEIGHT, None)
    assert colour_distance(median_rgb(first.middle_frame), BLUE) < COLOUR_TOLERANCE
    assert colour_distance(median_rgb(last.middle_frame), GREEN) < COLOUR_TOLERANCE


async def test_automatic_recording_records_every_publisher_of_new_rooms(media_app: MediaApp, tmp_path: Path) -> None:
    """spec 4.6: with ``AUTO_INDIVIDUAL_RECORD``, a camera published in a room opened after the setting is
    recorded with the rule, under the stream name ``{app}_{room}_{user}_av_m``; the job ends after its
    publisher leaves, with its file complete and its callbacks sent."""
    receiver = await HttpReceiver().start()
    app_id = media_app.app_id
    try:
        rec = await Recorded.set_up(media_app, receiver)
        mode = {"mode": "AUTO_INDIVIDUAL_RECORD", "record_rule_id": rec.rule_id}
        put = await asyncio.to_thread(media_app.http.put, f"/v2/apps/{app_id}/auto-record-mode", json=mode)
        assert put.status_code == 200, put.text

        client = await _join(media_app, "auto-room", "carol")
        try:
            await client.publish(
                "camera", video=ColourVideoTrack(GREEN, width=WIDTH, height=HEIGHT), audio=ToneAudioTrack(TONE)
            )
            stream_name = f"{app_id}_auto-room_carol_av_m"

            def started() -> list[dict[str, Any]]:
                bodies = [json.loads(r.body) for r in receiver.answered()]
                return [b for b in bodies if b["stream_name"] == stream_name]

            (first,) = await until(started, within=30, what="the automatic job's first file")
            job_id = first["job_id"]
            running = await rec.wait_state(job_id, "RUNNING")
            assert running["stream_name"] == stream_name and running["user_id"] == "carol"
            began = time.monotonic()
            await asyncio.sleep(RECORD_SECONDS)  # the length of the recording, not a synchronisation
        finally:
            await client.leave()
        recorded = time.monotonic() - began
        stopped = await rec.wait_state(job_id, "STOPPED", within=30)  # 5 s after carol left (tests' setting)
        assert stopped["stop_reason"] == "IDLE_TIMEOUT"
        await rec.wait_events(job_id, "CLOUD_RECORD_OVER")
    finally:
        await receiver.stop()

    assert all(verify(AUTH_KEY, r.headers, r.body) for r in rec.requests(job_id))
    events = rec.events(job_id)
    assert [e["event_type"] for e in events] == ["RECORD_NEW_FILE_START", "RECORD_FILE_COMPLETE", "CLOUD_RECORD_OVER"]
    complete = events[1]
    assert complete["stream_name"] == stream_name
    rb = await rec.download(complete, tmp_path / "auto.mp4")
    assert (rb.video_codec, rb.audio_codec) == ("h264", "aac")
    # From its first media (a moment before RUNNING was seen) to carol's leaving.
    assert recorded - 1.0 <= rb.duration <= recorded + 3.0, f"{rb.duration:.2f} s for {recorded:.2f} s"
    assert colour_distance(median_rgb(rb.middle_frame), GREEN) < COLOUR_TOLERANCE
    assert dominant_frequency(rb.audio[5:]) == pytest.approx(TONE, abs=5)
