"""RTMP push end to end: a Python client publishes a synthetic colour and tone through Janus; a single-stream
job started with the v2 API with ``publish_param.rtmp_urls`` and no ``record_param`` pushes it to a real RTMP
server (nginx with the RTMP module), which records what it gets; the recording is read back and checked by
content. A second URL nobody listens on is retried, and the job's ``description`` says so (spec 4.4).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.media.conftest import MediaApp
from tests.media.test_recording_e2e import JOBS, _join, _live
from tests.recording.readback import read_back
from tests.support.rtmp_server import RtmpServer, rtmp_skip_reason
from tests.support.server import free_port
from tests.support.waiting import until

from emberrtc.client import ColourVideoTrack, ToneAudioTrack
from emberrtc.recording.rtmp import mask_url
from emberrtc.synthetic import colour_distance, dominant_frequency, median_rgb

pytestmark = pytest.mark.media

RED = (220, 30, 30)
TONE = 440.0
PUSH_SECONDS = 5.0


@pytest.fixture
def rtmp(tmp_path: Path) -> Iterator[RtmpServer]:
    if (reason := rtmp_skip_reason()) is not None:
        pytest.skip(reason)
    with RtmpServer(tmp_path / "nginx") as server:
        yield server


async def _job(app: MediaApp, job_id: str) -> dict[str, Any]:
    r = await asyncio.to_thread(app.http.get, f"/v2/apps/{app.app_id}/{JOBS}/{job_id}")
    assert r.status_code == 200, r.text
    return dict(r.json())


async def test_a_job_without_record_param_pushes_to_rtmp(media_app: MediaApp, rtmp: RtmpServer) -> None:
    good = rtmp.url("ember-e2e")
    bad = f"rtmp://127.0.0.1:{free_port()}/live/secret-key"
    client = await _join(media_app, "push-room", "carol")
    try:
        await client.publish("camera", video=ColourVideoTrack(RED, width=320, height=240), audio=ToneAudioTrack(TONE))
        await until(lambda: _live(media_app, "push-room", "carol", "CAMERASTREAM"), what="carol's camera is live")
        body = {"room_id": "push-room", "user_id": "carol", "publish_param": {"rtmp_urls": [good, bad]}}
        created = await media_app.post(f"/v2/apps/{media_app.app_id}/{JOBS}", body)
        assert created.status_code == 201, created.text
        job_id = created.json()["job_id"]

        async def described() -> dict[str, Any] | None:
            job = await _job(media_app, job_id)
            assert job["state"] != "STOPPED", job
            text = job.get("description") or ""
            # The bad URL is reported once its first attempt has failed, which can be after the good one
            # connected (each attempt starts its own process).
            wanted = ("pushing to 1 of 2 RTMP URLs", ": retrying (")
            return job if job["state"] == "RUNNING" and all(part in text for part in wanted) else None

        running = await until(described, within=30.0, what="the job running, one URL pushing, one retrying")
        started = time.monotonic()
        assert f"{mask_url(bad)}: retrying (Connection refused)" in running["description"]
        assert "secret-key" not in running["description"]
        await asyncio.sleep(PUSH_SECONDS)  # the length of the push, not a synchronisation
        pushed_for = time.monotonic() - started
        r = await asyncio.to_thread(media_app.http.delete, f"/v2/apps/{media_app.app_id}/{JOBS}/{job_id}")
        assert r.status_code == 204, r.text
        await until(lambda: rtmp.recorded("ember-e2e"), within=30.0, what="nginx to finish the recording")
    finally:
        await client.leave()

    stopped = await _job(media_app, job_id)
    assert stopped["state"] == "STOPPED"
    rb = await asyncio.to_thread(read_back, rtmp.recording("ember-e2e"))
    assert rb.format == "flv"
    assert (rb.video_codec, rb.width, rb.height) == ("h264", 320, 240)
    assert (rb.audio_codec, rb.sample_rate) == ("aac", 48_000)
    assert pushed_for - 1.0 <= rb.duration <= pushed_for + 3.0
    assert colour_distance(median_rgb(rb.middle_frame), RED) < 25
    assert dominant_frequency(rb.audio[5:]) == pytest.approx(TONE, abs=5)
