"""A real HLS recording in a real server's local storage, for the tests that play it from its link.

A worker process records a synthetic publisher to HLS; the files go into the server's local store
(``LocalStore.put_file``, as the uploader puts them), and :attr:`Recorded.download_url` is the link
the completion callback carries (``LocalStore.download_url``). Used by
``tests/recording/test_hls_download.py`` (PyAV) and ``tests/media/test_hls_player.py`` (Chromium).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from emberrtc.recording.outputs import FileTarget, JobRef
from emberrtc.recording.supervisor import RecordingSupervisor
from emberrtc.storage.local_store import LocalStore
from tests.conftest import make_settings
from tests.recording.engine import TIMING, Engine, FakeJobs, FakeOutputs, FakeSource, job_spec, rule
from tests.recording.publisher import Publisher
from tests.recording.readback import Readback, read_back
from tests.support.server import ServerThread, free_port

BLUE = (30, 60, 220)
#: The recording's project: its bucket is that project's, and its links carry it.
PROJECT = "5e1f0c2a9b8d4e7f6a5b4c3d2e1f0a9b"


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


@contextmanager
def file_server(data_dir: Path, host: str = "127.0.0.1") -> Iterator[ServerThread]:
    """A server whose links name the address it listens on (``public_url``), with one local location."""
    port = free_port()
    settings = replace(
        make_settings(data_dir),
        port=port,
        public_url=f"http://{host}:{port}",
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
    seconds: float
    local: Readback  # the stored playlist, read from the disk

    @property
    def download_url(self) -> str:
        return self.store.download_url(self.target.bucket, self.target.object_name)


async def record_hls(
    server: ServerThread, spool: Path, seconds: float = 6.0, colour: tuple[int, int, int] = BLUE
) -> Recorded:
    """Record ``seconds`` of H.264 + Opus to HLS (2 s segments) through a real worker into ``server``'s store."""
    assert server.services is not None
    store = server.services.storage.local("local", PROJECT)
    assert store is not None
    outputs, jobs, source = StoreOutputs(store), FakeJobs(), FakeSource()
    supervisor = RecordingSupervisor(
        outputs, source, spool_root=spool, jobs=jobs, max_restarts=0, stop_timeout=60, timing=TIMING
    )
    engine = Engine(supervisor, outputs, jobs, source, spool)
    supervisor.listeners.append(engine.listen)
    try:
        engine.source.publishers["h1"] = Publisher("H264", colour=colour, tone=440.0)
        await supervisor.start(job_spec("h1", rule(formats=("HLS",), hls_slice=2)))
        await engine.publish("h1", seconds)
        await engine.drained("h1")
        await supervisor.stop("h1")
    finally:
        await supervisor.close()
    # One file, unless a stall of this (shared, busy) machine outlasted the timing's gap and cut a second one:
    # the first is the one played back.
    completed = outputs.named("file_completed")
    assert completed, "no file was completed"
    target: FileTarget = completed[0].args["target"]
    assert len(outputs.named("store_part")) >= 3
    local = await asyncio.to_thread(read_back, store.object_path(target.bucket, target.object_name))
    return Recorded(server, store, target, seconds, local)
