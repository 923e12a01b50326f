"""Mixed-stream jobs through the engine: the supervisor, a real worker process and real UDP, with the media
plane and the outputs stood in for (``engine.py``). The room's publishers send in real time (a mixed job's
output follows arrival times), so these tests are a few seconds of media each."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from emberrtc.domain.ports import JobSpec
from emberrtc.recording.plan import Encoding, MixStream
from emberrtc.recording.source import MixTarget
from emberrtc.recording.supervisor import RecordingSupervisor
from emberrtc.synthetic import colour_distance, median_rgb
from tests.recording.engine import TIMING, Engine, FakeJobs, FakeOutputs, FakeSource, rule
from tests.recording.publisher import Publisher
from tests.recording.readback import read_back
from tests.recording.test_mix_pipeline import BLUE, RED, User, cell_rgb

TEMPLATE = "480x360_15_320"


class MixSource(FakeSource):
    """The media plane for mixed jobs: the room's users, "forwarded" by the test's sender."""

    def __init__(self) -> None:
        super().__init__()
        self.room: dict[str, User] = {}
        self.mix_targets: dict[str, MixTarget] = {}
        self.stream_keys: list[str] = []

    def streams(self) -> tuple[MixStream, ...]:
        return tuple(s for u in self.room.values() for s in u.streams())

    async def forward_mix(self, job: JobSpec, target: MixTarget) -> tuple[MixStream, ...]:
        self.mix_targets[job.job_id] = target
        return self.streams()

    async def request_keyframe(self, job_id: str, stream: str = "") -> None:
        self.stream_keys.append(stream)
        user = self.room.get(stream.split("/")[0])
        if user is not None:
            user.pub.request_keyframe()


class Room:
    """Sends every user's media to the job's port in real time while it runs."""

    def __init__(self, source: MixSource, job_id: str) -> None:
        self.source, self.job_id = source, job_id
        self.task: asyncio.Task[None] | None = None

    async def run(self) -> None:
        target = self.source.mix_targets[self.job_id]
        loop = asyncio.get_running_loop()
        start = loop.time()
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            step = 0
            while True:
                step += 1
                for user in list(self.source.room.values()):
                    for _, data in user.pub.run(0.02):
                        sock.sendto(data, (target.host, target.port))
                # Real-time pacing of the media (a live sender), not synchronisation.
                await asyncio.sleep(max(0.0, start + step * 0.02 - loop.time()))

    def __enter__(self) -> Room:
        self.task = asyncio.create_task(self.run())
        return self

    def __exit__(self, *exc: object) -> None:
        assert self.task is not None
        self.task.cancel()


@pytest.fixture(name="mix_engine")
async def mix_engine_fixture(tmp_path: Path, request: pytest.FixtureRequest) -> AsyncIterator[Engine]:
    """A supervisor with a fake room; ``request.param`` (indirect parametrization): the plans' Encoding."""
    outputs, jobs, source = FakeOutputs(tmp_path / "store"), FakeJobs(), MixSource()
    supervisor = RecordingSupervisor(
        outputs,
        source,
        spool_root=tmp_path / "spool",
        jobs=jobs,
        max_restarts=0,
        timing=TIMING,
        encoding=getattr(request, "param", None),
    )
    e = Engine(supervisor, outputs, jobs, source, tmp_path / "spool")
    supervisor.listeners.append(e.listen)
    yield e
    await supervisor.close()


def mix_job(job_id: str, **mix: Any) -> JobSpec:
    params = {"mix_param": {"room_id": "room1", "encode_template": TEMPLATE, "layout_template": "nine_grids_view",
                            **mix}}  # fmt: skip
    return JobSpec(job_id, "app1", "mix", "room1", None, f"m_{job_id}_room1", params, rule(formats=("MP4",)))


def completed(engine: Engine) -> list[Any]:
    return engine.outputs.named("file_completed")


@pytest.mark.parametrize(
    "mix_engine", [None, Encoding(mix_parallel_load=0.0)], ids=["one thread", "several threads"], indirect=True
)
async def test_a_mixed_job_follows_the_room_through_its_worker(mix_engine: Engine) -> None:
    e = mix_engine
    source = e.source
    assert isinstance(source, MixSource)
    alice = User("alice", 0, Publisher("H264", colour=RED, tone=440.0, seed=1))
    bob = User("bob", 1, Publisher("VP8", colour=BLUE, tone=None, seed=2))
    source.room["alice"] = alice
    job = mix_job("m1", background_image="s3://bkt/images/none.png")
    await e.supervisor.start(job)
    # The image that cannot be read is named in the job's description; the colour is used.
    described = [c for c in e.jobs.calls if c[0] == "describe"]
    assert described and "background_image s3://bkt/images/none.png: " in described[0][2]
    with Room(source, "m1"):
        await e.wait_for(lambda: "recording" in e.states("m1"), what="recording")
        await asyncio.sleep(2.0)  # alice alone, for this long
        source.room["bob"] = bob  # bob joins: the media plane forwards him and tells the engine
        await e.supervisor.streams_changed("m1", source.streams())
        await asyncio.sleep(2.5)  # both, for this long
    await e.supervisor.stop("m1")

    (mp4,) = completed(e)  # one file: joins change the picture, not the file
    assert mp4.args["transcoded"] and (mp4.args["width"], mp4.args["height"]) == (480, 360)
    rb = read_back(e.outputs.stored(mp4.args["target"]))
    assert (rb.width, rb.height, rb.video_codec, rb.audio_codec) == (480, 360, "h264", "aac")
    assert colour_distance(median_rgb(rb.video[len(rb.video) // 5]), RED) < 40  # alice alone: the canvas
    last = rb.video[-5]
    assert colour_distance(cell_rgb(last, 0, 0, 240, 360), RED) < 40
    assert colour_distance(cell_rgb(last, 240, 0, 240, 360), BLUE) < 40
    assert e.outputs.named("job_over")
    assert not list(e.spool.glob("m1/.image-*"))  # no image was readable


async def test_a_killed_mix_worker_is_restarted_on_the_same_port(mix_engine: Engine) -> None:
    e = mix_engine
    e.supervisor.max_restarts = 1
    source = e.source
    assert isinstance(source, MixSource)
    source.room["alice"] = User("alice", 0, Publisher("H264", colour=RED, tone=440.0, seed=1))
    await e.supervisor.start(mix_job("m2"))
    port = source.mix_targets["m2"].port
    with Room(source, "m2"):
        await e.wait_for(lambda: "recording" in e.states("m2"), what="recording")
        await asyncio.sleep(3.0)  # the first worker's file, for this long
        first = e.supervisor.worker_pid("m2")
        assert first is not None
        os.kill(first, signal.SIGKILL)
        await e.wait_for(lambda: e.supervisor.worker_pid("m2") not in (None, first), what="a new worker")
        await e.wait_for(lambda: e.states("m2").count("recording") >= 2, what="the new worker recording")
        await asyncio.sleep(2.0)
    await e.supervisor.stop("m2")

    assert source.mix_targets["m2"].port == port  # forwarded once, to the port the new worker inherited
    salvaged, second = completed(e)
    assert read_back(e.outputs.stored(salvaged.args["target"]), decode_video=False).duration >= 1.5
    rb = read_back(e.outputs.stored(second.args["target"]))
    assert rb.duration >= 1.5 and colour_distance(median_rgb(rb.middle_frame), RED) < 40
    assert not [c for c in e.jobs.calls if c[0] == "stopped"]


async def test_a_change_of_the_room_while_the_job_starts_is_not_lost(mix_engine: Engine) -> None:
    e = mix_engine
    source = e.source
    assert isinstance(source, MixSource)
    alice = User("alice", 0, Publisher("H264", colour=RED, tone=None, seed=1))
    bob = User("bob", 1, Publisher("VP8", colour=BLUE, tone=None, seed=2))
    source.room["alice"] = alice
    original = source.forward_mix

    async def forward_then_bob_joins(job: JobSpec, target: MixTarget) -> tuple[MixStream, ...]:
        streams = await original(job, target)
        source.room["bob"] = bob  # bob goes live just after the forwarding started: the engine is told
        await e.supervisor.streams_changed(job.job_id, source.streams())
        return streams

    source.forward_mix = forward_then_bob_joins  # type: ignore[method-assign]
    await e.supervisor.start(mix_job("m3"))
    with Room(source, "m3"):
        await e.wait_for(lambda: "recording" in e.states("m3"), what="recording")
        await asyncio.sleep(1.5)  # media, for this long
    await e.supervisor.stop("m3")
    (mp4,) = completed(e)
    last = read_back(e.outputs.stored(mp4.args["target"])).video[-3]
    assert colour_distance(cell_rgb(last, 240, 0, 240, 360), BLUE) < 40  # bob is in the mix from the start
