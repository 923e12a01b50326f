"""Usage accounting from the recording side: writers tell whether each file's video was re-encoded, the
supervisor passes it on, and the outputs count a completed file once, in the transaction that stores it."""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import func, select

from emberrtc.callbacks.delivery import CallbackDelivery
from emberrtc.domain.clock import ManualClock
from emberrtc.domain.outbound import AllowList, OutboundPolicy
from emberrtc.domain.retry import Backoff
from emberrtc.domain.secrets import SecretBox
from emberrtc.domain.usage import UsageService
from emberrtc.recording import outputs as outputs_module
from emberrtc.recording import reports
from emberrtc.recording.outputs import FileTarget, JobRef, RecordingOutputs
from emberrtc.recording.plan import HlsOutput, Mp4Output
from emberrtc.recording.reports import FileCompleted, FileStarted
from emberrtc.storage.download_link import DownloadLinks
from emberrtc.storage.local_store import LocalStore
from emberrtc.storage.registry import StorageRegistry
from emberrtc.storage.spool import Spool
from emberrtc.storage.uploader import Uploader
from emberrtc.store.database import Database
from emberrtc.store.models import CallbackEvent, Upload, UsageEntry
from emberrtc.synthetic import ColourVideo
from tests.recording.engine import Engine, engine_fixture, rule
from tests.recording.publisher import Publisher
from tests.recording.readback import picture_nals
from tests.recording.test_pipeline import NAMING, Driver, plan_for
from tests.recording.test_supervisor import completed, record
from tests.support.database import seed_app
from tests.support.http_receiver import HttpReceiver

__all__ = ["engine_fixture"]  # the fixture, used by name

# --- the writers ----------------------------------------------------------------------------------------


def test_vp8_files_are_transcoded_h264_within_the_cap_is_not(tmp_path: Path) -> None:
    vp8 = Driver(
        plan_for(tmp_path / "vp8", video="VP8", mp4=Mp4Output(NAMING, 60), hls=HlsOutput(NAMING, 60, 2)),
        Publisher("VP8"),
        tmp_path / "vp8",
    )
    vp8.send(3.0)
    vp8.close()
    assert sorted((f.record_format, f.transcoded) for f in vp8.of(FileCompleted)) == [("HLS", True), ("MP4", True)]

    pub = Publisher("H264")
    h264 = Driver(
        plan_for(tmp_path / "h264", mp4=Mp4Output(NAMING, 60), hls=HlsOutput(NAMING, 60, 2)), pub, tmp_path / "h264"
    )
    h264.send(3.0)
    h264.close()
    files = h264.of(FileCompleted)
    assert sorted((f.record_format, f.transcoded) for f in files) == [("HLS", False), ("MP4", False)]
    (mp4,) = [f for f in files if f.record_format == "MP4"]
    assert set(picture_nals(mp4.path)) <= pub.sent.h264_nals  # really passed through


def test_the_flag_is_per_file_when_h264_grows_beyond_the_cap(tmp_path: Path) -> None:
    pub = Publisher("H264", width=320, height=180)
    d = Driver(plan_for(tmp_path, cap="SD", mp4=Mp4Output(NAMING, 60)), pub, tmp_path)
    d.send(2.0)
    pub.video = ColourVideo((220, 30, 30), width=1280, height=720, fps=30)  # above SD: re-encoded
    pub.request_keyframe()
    d.send(2.0)
    d.close()
    first, second = d.of(FileCompleted)
    assert (first.width, first.transcoded) == (320, False)
    assert (second.width, second.height, second.transcoded) == (640, 360, True)
    # Known from the file's start too (a file salvaged after a crash has only its FileStarted).
    assert [s.transcoded for s in d.of(FileStarted)] == [False, True]
    assert not set(picture_nals(second.path)) & pub.sent.h264_nals


def test_audio_only_files_are_not_transcoded(tmp_path: Path) -> None:
    d = Driver(plan_for(tmp_path, video=None, mp4=Mp4Output(NAMING, 60)), Publisher(None), tmp_path)
    d.send(2.0)
    d.close()
    (f,) = d.of(FileCompleted)
    assert f.width is None and f.transcoded is False  # Opus to AAC is not counted as transcoding


def test_report_lines_keep_the_flag_and_older_lines_still_decode() -> None:
    report = FileCompleted("f1", "MP4", "/s/a.mp4", "local", "b", "a.mp4", 1.0, 2.0, 1.0, 320, 180, transcoded=True)
    assert reports.decode(reports.encode(report)) == report
    old = json.loads(reports.encode(report))
    del old["transcoded"]  # a worker from before the field
    decoded = reports.decode(json.dumps(old))
    assert isinstance(decoded, FileCompleted) and decoded.transcoded is False


# --- the supervisor, with a real worker process ------------------------------------------------------------


async def test_the_supervisor_passes_the_flag_to_the_outputs(engine: Engine) -> None:
    await record(engine, "vp8", Publisher("VP8"), rule(), 3.0)
    await record(engine, "h264", Publisher("H264", seed=3), rule(), 3.0)
    await engine.supervisor.stop("vp8")
    await engine.supervisor.stop("h264")
    calls = completed(engine, "MP4")
    flags = {c.args["group"].partition("-")[0]: c.args["transcoded"] for c in calls}  # group: {job_id}-{file}
    assert len(calls) == 2 and flags == {"vp8": True, "h264": False}


# --- the outputs, on the real database ---------------------------------------------------------------------


@pytest.fixture
async def outputs(db: Database, box: SecretBox, clock: ManualClock, tmp_path: Path) -> AsyncIterator[RecordingOutputs]:
    links = DownloadLinks(b"k" * 32, "http://127.0.0.1:8080", 3600, clock)
    registry = StorageRegistry({"local": LocalStore("local", tmp_path / "storage", links)}, links)
    spool = Spool(tmp_path / "spool")
    uploader = Uploader(db, registry, spool, clock, node_id=spool.node_id(), backoff=Backoff(2.0, 300.0, jitter=0))
    delivery = CallbackDelivery(
        db,
        box,
        clock,
        backoff=Backoff(1.0, 600.0, jitter=0),
        timeout=5.0,
        outbound=OutboundPolicy(AllowList.parse("127.0.0.1")),
    )
    out = RecordingOutputs(db, registry, spool, uploader, delivery, clock)
    out.start()
    try:
        yield out
    finally:
        await out.stop()


async def _count(db: Database, model: type, job_id: str) -> int:
    q = select(func.count()).select_from(model).where(model.job_id == job_id)  # type: ignore[attr-defined]
    return int(await db.run(lambda s: s.scalar(q)))


async def test_a_completed_file_is_counted_once_with_its_transcoded_seconds(
    db: Database, box: SecretBox, clock: ManualClock, receiver: HttpReceiver, outputs: RecordingOutputs
) -> None:
    app = await seed_app(db, box, callback_url=receiver.url + "/cb")
    job = JobRef(app_id=app, job_id="job1", room_id="room1", stream_name="s1")
    midnight = 1_800_057_600.0  # 2027-01-16T00:00:00Z
    vp8 = FileTarget("local", "records", f"{app}/MP4/s1_a.mp4")
    h264 = FileTarget("local", "records", f"{app}/MP4/s1_b.mp4")

    async def complete(target: FileTarget, start: float, end: float, transcoded: bool) -> None:
        path = outputs.spool.path_for(job.job_id, target.object_name.rpartition("/")[2])
        path.write_bytes(os.urandom(10_000))
        await outputs.file_completed(
            job,
            record_format="MP4",
            path=path,
            target=target,
            start_time=start,
            end_time=end,
            width=640,
            height=360,
            transcoded=transcoded,
        )

    await complete(vp8, midnight - 30, midnight + 30, True)
    await complete(vp8, midnight - 30, midnight + 30, True)  # the same completion again (a replay)
    await complete(h264, midnight + 30, midnight + 90.5, False)

    assert await _count(db, Upload, "job1") == 3  # the replay did go through the outputs
    assert await _count(db, UsageEntry, "job1") == 3  # but the file counts once: two days, plus the other
    assert await UsageService(db).days(None, app, None, None) == [
        {"day": "2027-01-15", "recorded_seconds": 30.0, "transcoded_seconds": 30.0, "files": 1},
        {"day": "2027-01-16", "recorded_seconds": 90.5, "transcoded_seconds": 30.0, "files": 2},
    ]


async def test_usage_is_in_the_same_transaction_as_the_upload_and_the_callback(
    db: Database,
    box: SecretBox,
    receiver: HttpReceiver,
    outputs: RecordingOutputs,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    app = await seed_app(db, box, callback_url=receiver.url + "/cb")
    job = JobRef(app_id=app, job_id="job2", room_id="room1", stream_name="s2")
    real = outputs_module.record_file

    def counted_then_crash(s, **kw):  # type: ignore[no-untyped-def]
        real(s, **kw)
        raise RuntimeError("crash after counting")

    monkeypatch.setattr(outputs_module, "record_file", counted_then_crash)
    path = outputs.spool.path_for(job.job_id, "c.mp4")
    path.write_bytes(os.urandom(1_000))
    with pytest.raises(RuntimeError):
        await outputs.file_completed(
            job,
            record_format="MP4",
            path=path,
            target=FileTarget("local", "records", "c.mp4"),
            start_time=1_800_000_000.0,
            end_time=1_800_000_060.0,
            width=None,
            height=None,
        )
    # Nothing of the completion stayed: no usage without the file's upload and callback, nor the reverse.
    assert await _count(db, UsageEntry, "job2") == 0
    assert await _count(db, Upload, "job2") == 0
    assert await _count(db, CallbackEvent, "job2") == 0
