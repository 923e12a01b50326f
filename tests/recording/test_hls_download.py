"""A real HLS recording, played straight from its ``download_url`` as a player would.

The link the completion callback carries is opened with PyAV (FFmpeg's HLS demuxer over HTTP): the
playlist, then every segment through the signed links the served playlist holds (``tests/recording/
stored.py`` makes the recording). Nothing here sleeps.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from emberrtc.synthetic import colour_distance, median_rgb
from tests.recording.readback import read_back
from tests.recording.stored import BLUE, PROJECT, Recorded, file_server, record_hls
from tests.support.server import ServerThread


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerThread]:
    with file_server(tmp_path / "data") as srv:
        yield srv


@pytest.fixture
async def recorded(server: ServerThread, tmp_path: Path) -> Recorded:
    return await record_hls(server, tmp_path / "spool")


async def test_an_hls_recording_plays_from_its_download_url(recorded: Recorded) -> None:
    url = recorded.download_url
    assert url.startswith(f"{recorded.server.url}/files/local/bkt/") and url.split("?")[0].endswith(".m3u8")
    assert f"&project={PROJECT}&" in url  # the bucket is the project's
    rb = await asyncio.to_thread(read_back, url)
    # Start to end: every frame that was recorded, and the media's length.
    local, seconds = recorded.local, recorded.seconds
    assert rb.format == "hls"
    assert (rb.video_codec, rb.audio_codec) == ("h264", "aac")
    assert abs(rb.duration - seconds) <= 1.0 and rb.duration == pytest.approx(local.duration, abs=0.01)
    assert len(rb.video) == len(local.video) >= seconds * 30 - 15
    assert len(rb.audio) == len(local.audio) > 0
    assert rb.video[0].pts == local.video[0].pts and rb.video[-1].pts == local.video[-1].pts
    for frame in (rb.video[0], rb.middle_frame, rb.video[-1]):
        assert colour_distance(median_rgb(frame), BLUE) < 25


async def test_the_played_link_reaches_no_other_object(recorded: Recorded) -> None:
    url = recorded.download_url
    async with httpx.AsyncClient(trust_env=False) as http:
        playlist = await http.get(url)
        assert playlist.status_code == 200
        segments = [line for line in playlist.text.splitlines() if line and not line.startswith("#")]
        assert len(segments) >= 3 and all("?expires=" in s and "&signature=" in s for s in segments)
        assert all(f"&project={PROJECT}&" in s for s in segments)
        # The names a player resolves without the grant, and the playlist's grant on a segment: refused.
        base = url.split("?")[0].rsplit("/", 1)[0]
        bare = f"{base}/{segments[0].split('?')[0]}"
        assert (await http.get(bare)).status_code == 403
        assert (await http.get(f"{bare}?{url.split('?')[1]}")).status_code == 403
        # A segment's own grant, without its project (as a link of the shared layout of old): refused.
        unscoped = f"{base}/{segments[0]}".replace(f"&project={PROJECT}", "")
        assert (await http.get(unscoped)).status_code == 403
        assert (await http.get(f"{base}/{segments[0]}")).status_code == 200
