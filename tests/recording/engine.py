"""The recording engine under test, with stand-ins for the media plane, the outputs and the job service.

Test modules import the ``engine`` fixture from here (``conftest.py`` in this folder belongs to the
outputs' tests). The stand-ins implement the engine's real collaborators' interfaces and record the
calls: ``FakeOutputs`` "stores" each file by copying it to ``store/{bucket}/{object}`` (as the local
storage backend lays objects out), so a stored HLS playlist is opened with its segments exactly as a
player would find them.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import socket
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from emberrtc.domain.errors import BucketNotExist
from emberrtc.domain.ports import JobSpec
from emberrtc.recording.outputs import FileTarget, JobRef
from emberrtc.recording.plan import SourceFormat, Timing
from emberrtc.recording.reports import MediaState, Progress, Report
from emberrtc.recording.source import ForwardTarget
from emberrtc.recording.supervisor import RecordingSupervisor
from emberrtc.storage.errors import ObjectNotExist
from tests.recording.publisher import Publisher

PROGRESS_PACKETS = 10  # the sender's window (Engine.publish) must stay above twice this
# A test process starved of CPU for a second must not look like an interrupted publisher: interruptions
# here are 3 s or more (the tests' pauses are longer, and made in media time).
_CHUNK = 0.1  # seconds of media encoded before any of it is sent
TIMING = Timing(progress_packets=PROGRESS_PACKETS, interruption=3.0)


@dataclass
class Call:
    name: str
    args: dict[str, Any]


class FakeOutputs:
    def __init__(self, store: Path) -> None:
        self.store = store
        self.calls: list[Call] = []
        #: Jobs the job service would say are ``STOPPED`` (asked by recovery).
        self.stopped_jobs: set[str] = set()

    def named(self, name: str) -> list[Call]:
        return [c for c in self.calls if c.name == name]

    async def check_target(self, location: str, bucket: str, project: str | None = None) -> None:
        if bucket == "missing":
            raise BucketNotExist(f"bucket {bucket} does not exist")

    async def file_started(self, job: JobRef, *, record_format: str, target: FileTarget, start_time: float) -> str:
        self.calls.append(Call("file_started", {"job": job, "record_format": record_format, "target": target}))
        return "event"

    async def store_part(self, job: JobRef, *, path: Path, target: FileTarget, group: str) -> str:
        self._copy(path, target)
        self.calls.append(Call("store_part", {"path": path, "target": target, "group": group}))
        return "upload"

    async def file_completed(self, job: JobRef, **kw: Any) -> str:
        self._copy(kw["path"], kw["target"])
        self.calls.append(Call("file_completed", kw))
        return kw.get("group") or "group"

    async def job_over(self, job: JobRef, *, detail_message: str | None = None) -> str:
        self.calls.append(Call("job_over", {"job": job, "detail_message": detail_message}))
        return "event"

    async def job_over_if_recorded(self, job_id: str) -> str | None:
        self.calls.append(Call("job_over_if_recorded", {"job_id": job_id}))
        return None

    async def job_stopped(self, job_id: str) -> bool:
        return job_id in self.stopped_jobs

    async def read_image(self, uri: str, location: str, project: str | None = None) -> bytes:
        """A mixed job's image from ``store/{bucket}/{object}`` (``s3://bucket/object``)."""
        bucket, _, name = uri.removeprefix("s3://").partition("/")
        try:
            return (self.store / bucket / name).read_bytes()
        except FileNotFoundError:
            raise ObjectNotExist(f"{uri} does not exist") from None

    def stored(self, target: FileTarget) -> Path:
        return self.store / target.bucket / target.object_name

    def _copy(self, path: Path, target: FileTarget) -> None:
        dest = self.stored(target)
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, dest)


class FakeJobs:
    def __init__(self) -> None:
        self.calls: list[tuple[str, ...]] = []

    async def mark_running(self, job_id: str, description: str = "recording") -> None:
        self.calls.append(("running", job_id))

    async def mark_idle(self, job_id: str) -> None:
        self.calls.append(("idle", job_id))

    async def mark_stopped(self, job_id: str, reason: str, description: str) -> bool:
        self.calls.append(("stopped", job_id, reason, description))
        return True

    async def describe(self, job_id: str, description: str) -> None:
        self.calls.append(("describe", job_id, description))


class FakeSource:
    """The media plane: "forwards" a :class:`Publisher` by letting the test send its RTP to the ports."""

    def __init__(self) -> None:
        self.publishers: dict[str, Publisher] = {}
        self.targets: dict[str, ForwardTarget] = {}
        self.keyframe_requests: dict[str, int] = {}
        self.stopped: list[str] = []

    async def forward(self, job: JobSpec, target: ForwardTarget) -> SourceFormat:
        pub = self.publishers[job.job_id]
        self.targets[job.job_id] = target
        return SourceFormat(pub.video_codec, "OPUS" if pub.audio else None)

    async def request_keyframe(self, job_id: str) -> None:
        self.keyframe_requests[job_id] = self.keyframe_requests.get(job_id, 0) + 1
        self.publishers[job_id].request_keyframe()

    async def stop_forward(self, job_id: str) -> None:
        self.stopped.append(job_id)


@dataclass
class Engine:
    supervisor: RecordingSupervisor
    outputs: FakeOutputs
    jobs: FakeJobs
    source: FakeSource
    spool: Path
    progress: dict[str, int] = field(default_factory=dict)
    sent: dict[str, int] = field(default_factory=dict)
    reports: list[tuple[str, Report]] = field(default_factory=list)
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    def listen(self, job_id: str, report: Report) -> None:
        self.reports.append((job_id, report))
        if isinstance(report, Progress):
            self.progress[job_id] = report.packets
        self.changed.set()

    async def wait_for(self, predicate: Any, limit: float = 30.0, what: str = "") -> Any:
        """Wait, on the engine's own reports, until ``predicate()`` holds (at most ``limit`` seconds)."""
        deadline = time.monotonic() + limit
        while not (result := predicate()):
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"timed out after {limit} s waiting for {what or predicate}")
            self.changed.clear()
            try:
                await asyncio.wait_for(self.changed.wait(), min(left, 0.2))
            except TimeoutError:
                pass
        return result

    async def publish(self, job_id: str, seconds: float, window: int = 40) -> int:
        """Send ``seconds`` of the job's publisher's media to the engine's ports as fast as the worker takes
        them (never more than ``window`` packets ahead of its progress reports, so the publisher answers a
        keyframe request within a fraction of a second of media, as a live one would). Returns packets sent."""
        pub = self.source.publishers[job_id]
        target = self.source.targets[job_id]
        ports = {"video": target.video_port, "audio": target.audio_port}
        sent = self.sent.get(job_id, 0)
        end = pub.t + seconds
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            while pub.t < end - 1e-9:
                # Encoded a tenth of a second ahead, so that no encoder's start-up (or a stall of this busy
                # machine while encoding) separates the two tracks' first packets: the worker aligns tracks
                # by arrival, and this feed runs faster than real time.
                chunk = list(pub.run(min(_CHUNK, end - pub.t)))
                for kind, data in chunk:
                    port = ports[kind]
                    if port is None:
                        continue
                    if sent - self.progress.get(job_id, 0) > window:
                        behind = sent - window // 2
                        await self.wait_for(lambda b=behind: self.progress.get(job_id, 0) >= b, what="progress")
                    sock.sendto(data, (target.host, port))
                    sent += 1
                    self.sent[job_id] = sent
        return sent

    async def drained(self, job_id: str) -> None:
        """Wait until the worker has taken every packet sent (to the nearest progress report)."""
        sent, step = self.sent.get(job_id, 0), PROGRESS_PACKETS
        await self.wait_for(lambda: self.progress.get(job_id, 0) >= sent - sent % step, what="all packets taken")

    def states(self, job_id: str) -> list[str]:
        return [r.state for j, r in self.reports if j == job_id and isinstance(r, MediaState)]


class DescribedJobs(FakeJobs):
    """The job service's calls, with descriptions."""

    async def mark_running(self, job_id: str, description: str = "recording") -> None:
        self.calls.append(("running", job_id, description))

    async def describe(self, job_id: str, description: str) -> None:
        self.calls.append(("describe", job_id, description))

    def described(self, job_id: str) -> list[str]:
        return [c[2] for c in self.calls if c[0] == "describe" and c[1] == job_id]


@pytest.fixture(name="engine")
async def engine_fixture(tmp_path: Path) -> AsyncIterator[Engine]:
    async with running_engine(tmp_path) as e:
        yield e


@contextlib.asynccontextmanager
async def running_engine(
    tmp_path: Path, timing: Timing = TIMING, jobs: FakeJobs | None = None
) -> AsyncIterator[Engine]:
    """A supervisor with fake outputs, jobs and media source, its workers real, on ``timing``."""
    outputs, source = FakeOutputs(tmp_path / "store"), FakeSource()
    jobs = jobs or FakeJobs()
    spool = tmp_path / "spool"
    supervisor = RecordingSupervisor(
        outputs,
        source,
        spool_root=spool,
        jobs=jobs,
        max_restarts=0,
        stop_timeout=60,
        timing=timing,
        outbound_allow=("127.0.0.1",),  # the tests' RTMP server
    )
    e = Engine(supervisor, outputs, jobs, source, spool)
    supervisor.listeners.append(e.listen)
    try:
        yield e
    finally:
        await supervisor.close()


def rule(
    *,
    formats: tuple[str, ...] = ("MP4",),
    mp4_cycle: int = 60,
    mp4_merge: int = 0,
    hls_cycle: int = 0,
    hls_slice: int = 2,
    hls_merge: int = 0,
    bucket: str = "bkt",
) -> dict[str, Any]:
    """A record rule as ``domain.record_rule.rule_view`` gives it (spec Table 4-251)."""
    out: dict[str, Any] = {
        "rule_id": "rule1",
        "app_id": "app1",
        "obs_addr": {"location": "local", "project_id": "p", "bucket": bucket, "object": "rec"},
        "record_formats": list(formats),
    }
    if "MP4" in formats:
        out["mp4_config"] = {"record_cycle": mp4_cycle, "record_max_duration_to_merge_file": mp4_merge}
    if "HLS" in formats:
        out["hls_config"] = {
            "record_cycle": hls_cycle,
            "record_slice_duration": hls_slice,
            "record_max_duration_to_merge_file": hls_merge,
        }
    return out


def job_spec(job_id: str, record_rule: dict[str, Any] | None, **params: Any) -> JobSpec:
    return JobSpec(
        job_id=job_id,
        app_id="app1",
        kind="individual",
        room_id="room1",
        user_id="alice",
        stream_name=f"s_{job_id}_room1_alice",
        params={"is_record_audio": True, "video_type": "CAMERASTREAM", "max_idle_time": 30, **params},
        record_rule=record_rule,
    )
