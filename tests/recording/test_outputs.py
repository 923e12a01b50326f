"""What the recording engine calls when files start and finish and the job ends: files reach storage
(through an outage), and the application hears about them in order, signed, with a working download_url."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from sqlalchemy import select

from emberrtc.callbacks.delivery import CallbackDelivery
from emberrtc.domain.clock import ManualClock
from emberrtc.domain.outbound import AllowList, OutboundPolicy
from emberrtc.domain.retry import Backoff
from emberrtc.domain.secrets import SecretBox
from emberrtc.recording.outputs import FileTarget, JobRef, RecordingOutputs
from emberrtc.storage.download_link import DownloadLinks
from emberrtc.storage.errors import BucketNotExist, UnknownStorageLocation
from emberrtc.storage.local_store import LocalStore
from emberrtc.storage.object_store import ObjectStore
from emberrtc.storage.registry import StorageRegistry
from emberrtc.storage.s3_store import S3Store
from emberrtc.storage.spool import Spool
from emberrtc.storage.uploader import Uploader
from emberrtc.store.database import Database
from emberrtc.store.models import Job, Upload
from tests.support.database import seed_app
from tests.support.http_receiver import HttpReceiver
from tests.support.s3 import MotoS3
from tests.support.waiting import until

AUTH_KEY = "78912374ae8cdb38"
S3_LOCATION = "cn-north-4"


@pytest.fixture
def s3() -> Iterator[MotoS3]:
    server = MotoS3().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
async def outputs(
    db: Database, box: SecretBox, clock: ManualClock, tmp_path: Path, s3: MotoS3
) -> AsyncIterator[RecordingOutputs]:
    links = DownloadLinks(b"k" * 32, "http://127.0.0.1:8080", 3600, clock)
    stores: dict[str, ObjectStore] = {
        "local": LocalStore("local", tmp_path / "storage", links),
        S3_LOCATION: S3Store(S3_LOCATION, s3.settings()),
    }
    registry = StorageRegistry(stores, links)
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


def signed(r) -> bool:  # type: ignore[no-untyped-def]
    msg = r.headers["x-rtc-rand"].encode() + r.headers["x-rtc-timestamp"].encode() + r.body
    return hmac.compare_digest(
        hmac.new(AUTH_KEY.encode(), msg, hashlib.sha256).hexdigest(), r.headers["x-rtc-signature"]
    )


async def test_mp4_file_through_a_storage_outage(
    db: Database,
    box: SecretBox,
    clock: ManualClock,
    s3: MotoS3,
    receiver: HttpReceiver,
    outputs: RecordingOutputs,
) -> None:
    app = await seed_app(db, box, callback_url=receiver.url + "/cb", auth_key=AUTH_KEY)
    job = JobRef(app_id=app, job_id="job1", room_id="room1", stream_name="stream1")
    bucket = s3.new_bucket()
    await outputs.check_target(S3_LOCATION, bucket)
    with pytest.raises(BucketNotExist):
        await outputs.check_target(S3_LOCATION, "no-such-bucket")
    with pytest.raises(UnknownStorageLocation):
        await outputs.check_target("eu-west-0", bucket)

    target = FileTarget(S3_LOCATION, bucket, f"{app}/MP4/stream1_20270115080000/stream1_20270115080000.mp4")
    start = 1_800_000_000.0
    await outputs.file_started(job, record_format="MP4", target=target, start_time=start)
    await until(lambda: len(receiver.received) == 1, what="RECORD_NEW_FILE_START")

    s3.stop()  # storage goes down while the file is written
    path = outputs.spool.path_for(job.job_id, "part1.mp4")
    data = os.urandom(150_000)
    path.write_bytes(data)
    clock.advance(61.4)
    await outputs.file_completed(
        job,
        record_format="MP4",
        path=path,
        target=target,
        start_time=start,
        end_time=clock.now(),
        width=640,
        height=360,
    )
    await outputs.job_over(job, detail_message="stopped by API")
    upload = await until(lambda: _failed_upload(db), what="a failed upload attempt")
    assert "StorageUnavailable" in (upload.last_error or "")
    assert path.read_bytes() == data
    assert len(receiver.received) == 1  # the completion waits for the file, the end for the completion

    s3.start()
    clock.advance(2.0)
    outputs.uploader.wake()
    await until(lambda: len(receiver.received) == 3, what="completion and end after storage came back")
    assert not path.exists()
    assert not path.parent.exists()  # the job is over and its last file stored: its spool folder goes

    start_ev, complete, over = (json.loads(r.body) for r in receiver.received)
    assert all(signed(r) for r in receiver.received)
    assert [start_ev["event_type"], complete["event_type"], over["event_type"]] == [
        "RECORD_NEW_FILE_START",
        "RECORD_FILE_COMPLETE",
        "CLOUD_RECORD_OVER",
    ]
    assert start_ev["start_time"] == "2027-01-15T08:00:00Z" and start_ev["obs_object"] == target.object_name
    url = complete.pop("download_url")
    assert complete == {
        "job_id": "job1",
        "stream_name": "stream1",
        "app_id": app,
        "room_id": "room1",
        "event_type": "RECORD_FILE_COMPLETE",
        "record_format": "MP4",
        "record_duration": 61,
        "width": 640,
        "height": 360,
        "start_time": "2027-01-15T08:00:00Z",
        "end_time": "2027-01-15T08:01:01Z",
        "obs_location": S3_LOCATION,
        "obs_bucket": bucket,
        "obs_object": target.object_name,
        "event_id": complete["event_id"],
    }
    async with httpx.AsyncClient(trust_env=False) as http:
        got = await http.get(url)
    assert got.status_code == 200 and got.content == data
    assert over["detail_message"] == "stopped by API" and over["job_id"] == "job1"
    assert len({b["event_id"] for b in map(json.loads, (r.body for r in receiver.received))}) == 3


async def test_hls_completion_waits_for_every_segment(
    db: Database, box: SecretBox, clock: ManualClock, receiver: HttpReceiver, outputs: RecordingOutputs
) -> None:
    app = await seed_app(db, box, callback_url=receiver.url + "/cb", events=["RECORD_FILE_COMPLETE"])
    job = JobRef(app_id=app, job_id="job2", room_id="room1", stream_name="s2")
    prefix = f"{app}/HLS/s2_1"
    segments = []
    for i in range(2):
        seg = outputs.spool.path_for(job.job_id, f"s2_{i}.ts")
        seg.write_bytes(os.urandom(20_000))
        segments.append(seg)
        await outputs.store_part(
            job, path=seg, target=FileTarget("local", "records", f"{prefix}/s2_{i}.ts"), group="file-1"
        )
    playlist = outputs.spool.path_for(job.job_id, "s2.m3u8")
    playlist.write_text("#EXTM3U\n#EXT-X-ENDLIST\n")
    await outputs.file_started(job, record_format="HLS", target=FileTarget("local", "records", "x"), start_time=0)
    await outputs.file_completed(
        job,
        record_format="HLS",
        path=playlist,
        target=FileTarget("local", "records", f"{prefix}/s2.m3u8"),
        start_time=clock.now() - 30,
        end_time=clock.now(),
        width=1280,
        height=720,
        group="file-1",
    )
    (r,) = await until(lambda: receiver.received, what="the HLS completion")
    body = json.loads(r.body)
    assert body["event_type"] == "RECORD_FILE_COMPLETE" and body["record_duration"] == 30  # only what is subscribed
    stored = await db.run(lambda s: list(s.scalars(select(Upload).where(Upload.group_key == "file-1"))))
    assert len(stored) == 3 and all(u.state == "stored" for u in stored)
    assert not any(p.exists() for p in [*segments, playlist])
    parts = urlsplit(body["download_url"])
    assert parts.path == f"/files/local/records/{prefix}/s2.m3u8"
    q = parse_qs(parts.query)
    project = await outputs.project_of(app)
    assert project is not None and q["project"] == [project]  # the app's tenant's bucket
    links = outputs.registry.links
    assert links is not None
    links.verify("local", "records", f"{prefix}/s2.m3u8", q["expires"][0], q["signature"][0], project)
    local = outputs.registry.get("local", project)
    assert (await local.get("records", f"{prefix}/s2.m3u8")).startswith(b"#EXTM3U")


async def _failed_upload(db: Database) -> Upload | None:
    rows = await db.run(lambda s: list(s.scalars(select(Upload))))
    return next((u for u in rows if u.attempts >= 1 and u.last_error), None)


async def test_the_end_of_a_job_is_reported_once_whichever_node_ends_it(
    db: Database, box: SecretBox, clock: ManualClock, receiver: HttpReceiver, outputs: RecordingOutputs
) -> None:
    """In a cluster the node stopping a job may not be the one that recorded it (that one died): the end is
    reported from the job's row when a recorder ran it, once; the recording node coming back adds none."""
    app = await seed_app(db, box, callback_url=receiver.url + "/cb", auth_key=AUTH_KEY)

    def job(job_id: str, recorded_on: str | None) -> Job:
        now = clock.now()
        return Job(
            job_id=job_id, app_id=app, kind="individual", slot="api", room_id="room1", user_id="u",
            stream_name=f"s_{job_id}", params={}, state="STOPPED", create_time=now, update_time=now,
            recorded_on=recorded_on,
        )  # fmt: skip

    await db.run(lambda s: s.add_all([job("never", None), job("recorded", "node-1")]))
    assert await outputs.job_over_if_recorded("never") is None  # never recorded: no end to report
    assert await outputs.job_over_if_recorded("missing") is None
    assert await outputs.job_over_if_recorded("recorded") is not None  # the node that stopped it
    ref = JobRef(app_id=app, job_id="recorded", room_id="room1", stream_name="s_recorded")
    assert await outputs.job_over(ref) is None  # the recording node, back, reads its journal: no second one
    await until(lambda: len(receiver.received) == 1, what="CLOUD_RECORD_OVER")
    [over] = [json.loads(r.body) for r in receiver.received]
    assert (over["event_type"], over["job_id"], over["stream_name"]) == ("CLOUD_RECORD_OVER", "recorded", "s_recorded")
    assert await outputs.job_stopped("recorded") and await outputs.job_stopped("missing")
