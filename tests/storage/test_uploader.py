"""Durable uploads: retried while storage is down, confirmed before the spool lets go, resumed after a
restart. Runs on SQLite and PostgreSQL, against the local backend and a real S3 wire peer."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

from emberrtc.domain.clock import ManualClock
from emberrtc.domain.retry import Backoff
from emberrtc.storage.download_link import DownloadLinks
from emberrtc.storage.local_store import LocalStore
from emberrtc.storage.object_store import ObjectInfo, ObjectStore
from emberrtc.storage.registry import StorageRegistry
from emberrtc.storage.s3_store import S3Store
from emberrtc.storage.spool import Spool
from emberrtc.storage.uploader import LOST, PENDING, STORED, Uploader, describe
from emberrtc.store.database import Database
from emberrtc.store.models import Upload
from tests.support.database import open_database
from tests.support.s3 import MotoS3
from tests.support.waiting import until

S3_LOCATION = "cn-north-4"


@pytest.fixture
def s3() -> Iterator[MotoS3]:
    """A server of this test's own: these tests take it down."""
    server = MotoS3().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def spool(tmp_path: Path) -> Spool:
    return Spool(tmp_path / "spool")


def make_registry(tmp_path: Path, links: DownloadLinks, s3: MotoS3, **overrides: ObjectStore) -> StorageRegistry:
    stores: dict[str, ObjectStore] = {
        "local": LocalStore("local", tmp_path / "storage", links),
        S3_LOCATION: S3Store(S3_LOCATION, s3.settings()),
    }
    stores.update(overrides)
    return StorageRegistry(stores, links)


def make_uploader(db: Database, registry: StorageRegistry, spool: Spool, clock: ManualClock) -> Uploader:
    # No jitter here, so the test can check the exact backoff.
    return Uploader(db, registry, spool, clock, node_id="node-a", backoff=Backoff(2.0, 300.0, jitter=0.0))


def spooled(spool: Spool, job: str, name: str, size: int = 100_000) -> tuple[Path, bytes]:
    data = os.urandom(size)
    path = spool.path_for(job, name)
    path.write_bytes(data)
    return path, data


async def rows(db: Database) -> list[Upload]:
    return await db.run(lambda s: list(s.scalars(select(Upload).order_by(Upload.created_at))))


async def row(db: Database, upload_id: str) -> Upload:
    found = await db.run(lambda s: s.get(Upload, upload_id))
    assert found is not None
    return found


async def test_local_upload_moves_the_file_out_of_the_spool(
    db: Database, tmp_path: Path, links: DownloadLinks, clock: ManualClock, spool: Spool
) -> None:
    registry = make_registry(tmp_path, links, MotoS3())
    up = make_uploader(db, registry, spool, clock)
    path, data = spooled(spool, "job1", "a.mp4")
    uid = await up.add(await describe(path, "local", "records", "app/MP4/a.mp4"), job_id="job1")
    assert await up.run_once() == 1
    r = await row(db, uid)
    assert (r.state, r.attempts, r.uploaded_at, r.last_error) == (STORED, 1, clock.now(), None)
    assert not path.exists()
    assert (spool.root / "job1").is_dir()  # the job runs on: its worker may open the next file there
    assert await registry.get("local").get("records", "app/MP4/a.mp4") == data
    assert await up.run_once() == 0  # nothing left to do


async def test_s3_down_then_back(
    db: Database, tmp_path: Path, links: DownloadLinks, clock: ManualClock, spool: Spool, s3: MotoS3
) -> None:
    bucket = s3.new_bucket()
    registry = make_registry(tmp_path, links, s3)
    up = make_uploader(db, registry, spool, clock)
    path, data = spooled(spool, "job1", "a.mp4")
    s3.stop()  # storage goes down before the file is finished

    up.start()
    try:
        uid = await up.add(await describe(path, S3_LOCATION, bucket, "app/MP4/a.mp4"), job_id="job1")
        first = await until(lambda: _attempted(db, uid, 1), what="the first failed attempt")
        assert first.state == PENDING and "StorageUnavailable" in (first.last_error or "")
        assert first.next_attempt_at == clock.now() + 2.0  # backoff: base
        assert path.read_bytes() == data  # the spool keeps the only copy

        clock.advance(2.0)
        up.wake()
        second = await until(lambda: _attempted(db, uid, 2), what="the second failed attempt")
        assert second.state == PENDING and second.next_attempt_at == clock.now() + 4.0  # doubled
        assert path.exists()

        s3.start()  # storage is back
        clock.advance(4.0)
        up.wake()
        done = await until(lambda: _in_state(db, uid, STORED), what="the upload after storage came back")
    finally:
        await up.stop()
    assert done.attempts == 3 and done.last_error is None
    assert not path.exists()
    assert s3.client().get_object(Bucket=bucket, Key="app/MP4/a.mp4")["Body"].read() == data


async def test_spool_file_kept_until_storage_confirms(
    db: Database, tmp_path: Path, links: DownloadLinks, clock: ManualClock, spool: Spool, s3: MotoS3
) -> None:
    class Forgetful(S3Store):
        """Accepts the upload but then reports something else: storage did not keep our bytes."""

        async def head(self, bucket: str, name: str) -> ObjectInfo | None:
            info = await super().head(bucket, name)
            return None if info is None else ObjectInfo(info.size - 1, info.etag, info.content_type)

    bucket = s3.new_bucket()
    path, data = spooled(spool, "job1", "a.mp4")
    f = await describe(path, S3_LOCATION, bucket, "a.mp4")
    bad = make_uploader(
        db, make_registry(tmp_path, links, s3, **{S3_LOCATION: Forgetful(S3_LOCATION, s3.settings())}), spool, clock
    )
    uid = await bad.add(f)
    await bad.run_once()
    r = await row(db, uid)
    assert r.state == PENDING and "did not confirm" in (r.last_error or "")
    assert path.read_bytes() == data

    good = make_uploader(db, make_registry(tmp_path, links, s3), spool, clock)
    clock.advance(2.0)
    await good.run_once()
    assert (await row(db, uid)).state == STORED
    assert not path.exists()


async def test_restart_resumes_pending_uploads(
    db_url: str, tmp_path: Path, links: DownloadLinks, clock: ManualClock, spool: Spool, s3: MotoS3
) -> None:
    bucket = s3.new_bucket()
    path, data = spooled(spool, "job1", "a.mp4")
    s3.stop()
    db = await open_database(db_url)
    try:
        up = make_uploader(db, make_registry(tmp_path, links, s3), spool, clock)
        uid = await up.add(await describe(path, S3_LOCATION, bucket, "a.mp4"))
        await up.run_once()
        assert (await row(db, uid)).state == PENDING
    finally:
        await db.close()  # the process goes away

    s3.start()
    clock.advance(10.0)
    db = await open_database(db_url)  # a new process on the same database and spool
    try:
        up = make_uploader(db, make_registry(tmp_path, links, s3), spool, clock)
        up.start()
        try:
            await until(lambda: _in_state(db, uid, STORED), what="the resumed upload")
        finally:
            await up.stop()
    finally:
        await db.close()
    assert not path.exists()
    assert s3.client().get_object(Bucket=bucket, Key="a.mp4")["Body"].read() == data


async def test_crash_between_spool_delete_and_commit(
    db: Database, tmp_path: Path, links: DownloadLinks, clock: ManualClock, spool: Spool
) -> None:
    registry = make_registry(tmp_path, links, MotoS3())
    up = make_uploader(db, registry, spool, clock)
    path, data = spooled(spool, "job1", "a.mp4")
    uid = await up.add(await describe(path, "local", "records", "a.mp4"))
    # What a crash leaves behind: the object is stored and the spool file deleted, the row still pending.
    await registry.get("local").put_file("records", "a.mp4", path)
    path.unlink()
    await up.run_once()
    assert (await row(db, uid)).state == STORED

    # No spool file and nothing in storage: the file is lost, and that is recorded, not retried forever.
    path2, _ = spooled(spool, "job1", "b.mp4")
    uid2 = await up.add(await describe(path2, "local", "records", "b.mp4"))
    path2.unlink()
    await up.run_once()
    lost = await row(db, uid2)
    assert lost.state == LOST and "disappeared" in (lost.last_error or "")


async def test_groups_and_nodes(
    db: Database, tmp_path: Path, links: DownloadLinks, clock: ManualClock, spool: Spool
) -> None:
    registry = make_registry(tmp_path, links, MotoS3())
    up = make_uploader(db, registry, spool, clock)
    calls: list[tuple[str, int]] = []
    up.on_group_stored.append(lambda s, group, now: calls.append((group, len(_stored_in(s, group)))))
    woken: list[bool] = []
    up.after_group_stored.append(lambda: woken.append(True))

    seg, _ = spooled(spool, "job1", "seg0.ts")
    await up.add(await describe(seg, "local", "records", "h/seg0.ts"), group_key="file1")
    await up.run_once()
    assert calls == [("file1", 1)]  # the group had nothing else pending at that point
    playlist, _ = spooled(spool, "job1", "index.m3u8")
    seg1, _ = spooled(spool, "job1", "seg1.ts")
    await up.add(await describe(seg1, "local", "records", "h/seg1.ts"), group_key="file2")
    await up.add(await describe(playlist, "local", "records", "h/index.m3u8"), group_key="file2")
    await up.run_once()
    assert calls == [("file1", 1), ("file2", 2)]  # once, when the last file of the group was stored
    assert woken == [True, True]

    other = Uploader(db, registry, spool, clock, node_id="node-b", backoff=Backoff(2.0, 300.0))
    foreign, _ = spooled(spool, "job2", "x.mp4")
    await other.add(await describe(foreign, "local", "records", "x.mp4"))
    assert await up.run_once() == 0  # another node's spool is not ours to upload
    assert await other.run_once() == 1
    assert {r.state for r in await rows(db)} == {STORED}


def _stored_in(s, group):  # type: ignore[no-untyped-def]
    return list(s.scalars(select(Upload).where(Upload.group_key == group, Upload.state == STORED)))


async def _attempted(db: Database, uid: str, n: int) -> Upload | None:
    r = await row(db, uid)
    return r if r.attempts >= n else None


async def _in_state(db: Database, uid: str, state: str) -> Upload | None:
    r = await row(db, uid)
    return r if r.state == state else None


async def test_group_completion_with_concurrent_uploads(
    db: Database, tmp_path: Path, links: DownloadLinks, clock: ManualClock, spool: Spool
) -> None:
    """Files of one group stored at the same moment in separate transactions: the group's completion is
    still seen exactly once (on PostgreSQL each transaction would otherwise miss the other's commit)."""
    registry = make_registry(tmp_path, links, MotoS3())
    up = Uploader(db, registry, spool, clock, node_id="node-a", backoff=Backoff(2.0, 300.0), concurrency=8)
    completed: list[str] = []
    up.on_group_stored.append(lambda s, group, now: completed.append(group))
    for g in range(6):
        for i in range(4):
            path, _ = spooled(spool, f"job{g}", f"seg{i}.ts", size=1000)
            await up.add(await describe(path, "local", "records", f"g{g}/seg{i}.ts"), group_key=f"group{g}")
    assert await up.run_once() == 24
    assert sorted(completed) == [f"group{g}" for g in range(6)]


async def test_an_object_of_another_is_never_replaced(
    db: Database, tmp_path: Path, links: DownloadLinks, clock: ManualClock, spool: Spool
) -> None:
    """Storage already holds other bytes under the name (put there outside Ember after the file's name was
    claimed): the upload is refused, retried later, and the spool keeps the file; the project's bucket is
    the one written, not another project's of the same name."""
    registry = make_registry(tmp_path, links, MotoS3())
    project, other = "a" * 32, "b" * 32
    theirs = tmp_path / "theirs.mp4"
    theirs.write_bytes(b"someone else's")
    await registry.get("local", project).put_file("records", "a.mp4", theirs)
    await registry.get("local", other).put_file("records", "b.mp4", theirs)
    up = make_uploader(db, registry, spool, clock)
    path, data = spooled(spool, "job1", "a.mp4")
    uid = await up.add(await describe(path, "local", "records", "a.mp4"), job_id="job1", project_id=project)
    assert await up.run_once() == 1
    r = await row(db, uid)
    assert r.state == PENDING and "ObjectExists" in (r.last_error or "") and r.next_attempt_at > clock.now()
    assert path.read_bytes() == data
    assert await registry.get("local", project).get("records", "a.mp4") == b"someone else's"
    # Another file of the same project and bucket, whose name another project uses: stored.
    path2, data2 = spooled(spool, "job1", "b.mp4")
    uid2 = await up.add(await describe(path2, "local", "records", "b.mp4"), job_id="job1", project_id=project)
    clock.advance(1)
    await up.run_once()
    assert (await row(db, uid2)).state == STORED
    assert await registry.get("local", project).get("records", "b.mp4") == data2
    assert await registry.get("local", other).get("records", "b.mp4") == b"someone else's"
