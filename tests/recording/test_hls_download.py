"""A real HLS recording, played straight from its ``download_url`` as a player would.

A worker process records a synthetic publisher to HLS; the files go into a real Ember server's local
storage (``LocalStore.put_file``, as the uploader puts them), and the link the completion callback
carries (``LocalStore.download_url``) is opened with PyAV (FFmpeg's HLS demuxer over HTTP): playlist,
then every segment through the signed links the served playlist holds. Nothing here sleeps.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import httpx
import pytest

from emberrtc.recording.outputs import FileTarget, JobRef
from emberrtc.recording.supervisor import RecordingSupervisor
from emberrtc.storage.local_store import LocalStore
from emberrtc.synthetic import colour_distance, median_rgb
from tests.conftest import make_settings
from tests.recording.engine import TIMING, Engine, FakeJobs, FakeOutputs, FakeSource, job_spec, rule
from tests.recording.publisher import Publisher
from tests.recording.readback import Readback, read_back
from tests.support.server import ServerThread, free_port

BLUE = (30, 60, 220)
SECONDS = 6.0


class StoreOutputs(FakeOutputs):
    """The engine's outputs, storing each file and segment in a real local store."""

    def __init__(self, store: LocalStore) -> None:
        super().__init__(store.root)
        self.local = store

    async def store_part(self, job: JobRef, *, path: Path, target: FileTarget, group: str) -> str:
        await self.local.put_file(target.bucket, target.object_name, path)
        return await super().store_part(job, path=path, target=target, group=group)

    async def file_completed(self, job: JobRef, **kw: Any) -> str:
        await self.local.put_file(kw["target"].bucket, kw["target"].object_name, kw["path"])
        return await super().file_completed(job, **kw)

    def _copy(self, path: Path, target: FileTarget) -> None:
        pass  # put_file stored it


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerThread]:
    port = free_port()
    settings = replace(
        make_settings(tmp_path / "data"),
        port=port,
        public_url=f"http://127.0.0.1:{port}",
        storage_locations=json.dumps({"local": {"type": "local"}}),
    )
    srv = ServerThread(settings).start()
    try:
        yield srv
    finally:
        srv.stop()


@dataclass
class Recorded:
    server: ServerThread
    store: LocalStore
    target: FileTarget
    local: Readback  # the stored playlist read from the disk

    @property
    def download_url(self) -> str:
        return self.store.download_url(self.target.bucket, self.target.object_name)


@pytest.fixture
async def recorded(server: ServerThread, tmp_path: Path) -> AsyncIterator[Recorded]:
    assert server.services is not None
    store = server.services.storage.local("local")
    assert store is not None
    outputs, jobs, source = StoreOutputs(store), FakeJobs(), FakeSource()
    supervisor = RecordingSupervisor(
        outputs, source, spool_root=tmp_path / "spool", jobs=jobs, max_restarts=0, stop_timeout=60, timing=TIMING
    )
    engine = Engine(supervisor, outputs, jobs, source, tmp_path / "spool")
    supervisor.listeners.append(engine.listen)
    try:
        engine.source.publishers["h1"] = Publisher("H264", colour=BLUE, tone=440.0)
        await supervisor.start(job_spec("h1", rule(formats=("HLS",), hls_slice=2)))
        await engine.publish("h1", SECONDS)
        await engine.drained("h1")
        await supervisor.stop("h1")
    finally:
        await supervisor.close()
    (done,) = outputs.named("file_completed")
    target: FileTarget = done.args["target"]
    assert len(outputs.named("store_part")) >= 3
    local = await asyncio.to_thread(read_back, store.object_path(target.bucket, target.object_name))
    yield Recorded(server, store, target, local)


async def test_an_hls_recording_plays_from_its_download_url(recorded: Recorded) -> None:
    url = recorded.download_url
    assert url.startswith(f"{recorded.server.url}/files/local/bkt/") and url.split("?")[0].endswith(".m3u8")
    rb = await asyncio.to_thread(read_back, url)
    # Start to end: every frame that was recorded, and the media's length.
    assert rb.format == "hls"
    assert (rb.video_codec, rb.audio_codec) == ("h264", "aac")
    assert abs(rb.duration - SECONDS) <= 1.0 and rb.duration == pytest.approx(recorded.local.duration, abs=0.01)
    assert len(rb.video) == len(recorded.local.video) >= SECONDS * 30 - 15
    assert len(rb.audio) == len(recorded.local.audio) > 0
    assert rb.video[0].pts == recorded.local.video[0].pts and rb.video[-1].pts == recorded.local.video[-1].pts
    assert colour_distance(median_rgb(rb.video[0]), BLUE) < 25
    assert colour_distance(median_rgb(rb.middle_frame), BLUE) < 25
    assert colour_distance(median_rgb(rb.video[-1]), BLUE) < 25


async def test_the_played_link_reaches_no_other_object(recorded: Recorded) -> None:
    url = recorded.download_url
    async with httpx.AsyncClient(trust_env=False) as http:
        playlist = await http.get(url)
        assert playlist.status_code == 200
        segments = [line for line in playlist.text.splitlines() if line and not line.startswith("#")]
        assert len(segments) >= 3 and all("?expires=" in s and "&signature=" in s for s in segments)
        # The names a player resolves without the grant, and the playlist's grant on a segment: refused.
        base = url.split("?")[0].rsplit("/", 1)[0]
        bare = f"{base}/{segments[0].split('?')[0]}"
        assert (await http.get(bare)).status_code == 403
        assert (await http.get(f"{bare}?{url.split('?')[1]}")).status_code == 403
