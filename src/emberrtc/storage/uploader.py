"""Durable uploads: spooled files go to storage with retries, and leave the spool only once stored.

Every file to upload is a row in ``uploads`` (written in the same transaction as whatever announced the
file), so a restart picks up where the last process stopped. An attempt uploads the file, reads the
object back (``head``) and compares size and MD5/ETag; only a confirmed object lets the spool file go:
first the file is deleted, then the row is marked ``stored``. A crash between the two leaves a pending
row without its file; the next attempt then finds the object in storage, confirms it and finishes.
Failures (storage down, bucket missing, a mismatch, another object already under the name: storage is
written create-exclusive, ``ObjectStore.put_file``) are retried with capped exponential backoff for as
long as it takes: the spool holds the only copy.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from emberrtc.domain.background import BackgroundTask
from emberrtc.domain.clock import Clock
from emberrtc.domain.redaction import mask_urls
from emberrtc.domain.retry import Backoff
from emberrtc.domain.secrets import new_hex_id
from emberrtc.storage.errors import StorageUnavailable
from emberrtc.storage.object_store import ObjectInfo, file_digest, guess_content_type, validate_object_name
from emberrtc.storage.registry import StorageRegistry
from emberrtc.storage.spool import Spool
from emberrtc.store.database import Database
from emberrtc.store.models import Upload

log = logging.getLogger(__name__)

PENDING, STORED, LOST = "pending", "stored", "lost"

#: Called inside the transaction that stores the last pending file of a group: ``(session, group, now)``.
GroupStored = Callable[[Session, str, float], None]


@dataclass(frozen=True)
class SpooledFile:
    """A finished file in the spool and where it must go."""

    path: Path
    location: str
    bucket: str
    object_name: str
    size: int
    md5: str
    content_type: str


async def describe(
    path: Path, location: str, bucket: str, object_name: str, content_type: str | None = None
) -> SpooledFile:
    """Measure a spooled file (size and MD5, read off the event loop)."""
    validate_object_name(object_name)
    size, md5 = await asyncio.to_thread(file_digest, path)
    return SpooledFile(path, location, bucket, object_name, size, md5, content_type or guess_content_type(object_name))


def register(
    s: Session,
    f: SpooledFile,
    *,
    node_id: str,
    now: float,
    job_id: str | None = None,
    group_key: str | None = None,
    project_id: str | None = None,
) -> str:
    """Record an upload inside the caller's unit of work; returns its id. Wake the uploader after commit.
    ``project_id``: whose bucket (None: the shared buckets of old, ``storage.local_store``)."""
    upload_id = new_hex_id()
    s.add(
        Upload(
            upload_id=upload_id,
            node_id=node_id,
            job_id=job_id,
            group_key=group_key,
            location=f.location,
            project_id=project_id,
            bucket=f.bucket,
            object_name=f.object_name,
            content_type=f.content_type,
            spool_path=str(f.path),
            size=f.size,
            md5=f.md5,
            state=PENDING,
            attempts=0,
            created_at=now,
            next_attempt_at=now,
        )
    )
    return upload_id


def group_pending(s: Session, group_key: str) -> int:
    """How many files of a group are not stored yet."""
    n = s.scalar(select(func.count()).select_from(Upload).where(Upload.group_key == group_key, Upload.state == PENDING))
    return int(n or 0)


def _lock_group(s: Session, upload_id: str) -> Upload | None:
    """Lock an upload, and with it every file of its group (in id order, so lockers never deadlock).

    Two files of a group stored at the same moment must not both count the other as still pending (under
    PostgreSQL's READ COMMITTED each would, and the group's completion would never be announced): the
    second waits for the first to commit, then counts.
    """
    group = s.scalar(select(Upload.group_key).where(Upload.upload_id == upload_id))
    if group is not None:
        s.execute(
            select(Upload.upload_id).where(Upload.group_key == group).order_by(Upload.upload_id).with_for_update()
        )
    return s.get(Upload, upload_id, with_for_update=True, populate_existing=True)


def _confirmed(info: ObjectInfo | None, row: Upload) -> bool:
    """Storage holds exactly our bytes: same size, and the MD5 when the ETag is one (single-part uploads;
    a multipart ETag is ``md5-of-parts-N``, checked by size only)."""
    if info is None or info.size != row.size:
        return False
    return "-" in info.etag or info.etag.lower() == row.md5.lower()


class Uploader:
    """Uploads this node's pending files; a background task between ``start()`` and ``stop()``."""

    def __init__(
        self,
        db: Database,
        registry: StorageRegistry,
        spool: Spool,
        clock: Clock,
        *,
        node_id: str,
        backoff: Backoff,
        concurrency: int = 4,
        poll_interval: float = 5.0,
    ) -> None:
        self._db = db
        self._registry = registry
        self._spool = spool
        self._clock = clock
        self.node_id = node_id
        self._backoff = backoff
        self._concurrency = max(1, concurrency)
        self._poll = poll_interval
        self._wake = asyncio.Event()
        self._loop = BackgroundTask("ember-uploader", self._run)
        self._inflight: set[str] = set()
        #: Hooks run inside the transaction that stores a group's last file (``RecordingOutputs`` releases
        #: the file's completion callback there).
        self.on_group_stored: list[GroupStored] = []
        #: Called after such a transaction committed (to wake the callback delivery).
        self.after_group_stored: list[Callable[[], None]] = []

    # --- lifecycle -------------------------------------------------------------------------------------

    def start(self) -> None:
        self._loop.start()

    async def stop(self) -> None:
        await self._loop.stop()

    def wake(self) -> None:
        """Look for due uploads now (after registering one, or after moving a test clock)."""
        self._wake.set()

    async def add(
        self,
        f: SpooledFile,
        *,
        job_id: str | None = None,
        group_key: str | None = None,
        project_id: str | None = None,
    ) -> str:
        """Register one file in its own transaction and start on it."""
        now = self._clock.now()
        upload_id = await self._db.run(
            lambda s: register(
                s, f, node_id=self.node_id, now=now, job_id=job_id, group_key=group_key, project_id=project_id
            )
        )
        self.wake()
        return upload_id

    # --- work ----------------------------------------------------------------------------------------

    async def run_once(self) -> int:
        """Attempt every due upload once (at most ``concurrency`` at a time); returns how many were tried."""
        rows = await self._due(limit=1000)
        sem = asyncio.Semaphore(self._concurrency)

        async def one(row: Upload) -> None:
            async with sem:
                await self._attempt(row)

        await asyncio.gather(*(one(r) for r in rows))
        return len(rows)

    async def _due(self, limit: int) -> list[Upload]:
        now = self._clock.now()
        busy = set(self._inflight)

        def work(s: Session) -> list[Upload]:
            q = (
                select(Upload)
                .where(Upload.node_id == self.node_id, Upload.state == PENDING, Upload.next_attempt_at <= now)
                .order_by(Upload.next_attempt_at, Upload.created_at)
                .limit(limit + len(busy))
            )
            return [r for r in s.scalars(q) if r.upload_id not in busy][:limit]

        return await self._db.run(work)

    async def _next_due(self) -> float | None:
        def work(s: Session) -> float | None:
            return s.scalar(
                select(func.min(Upload.next_attempt_at)).where(Upload.node_id == self.node_id, Upload.state == PENDING)
            )

        return await self._db.run(work)

    async def _attempt(self, row: Upload) -> None:
        self._inflight.add(row.upload_id)
        try:
            try:
                info = await self._put(row)
            except Exception as exc:  # storage faults, a missing bucket, a mismatch: all retried
                await self._failed(row, exc)
                return
            if info is None:
                await self._lost(row)
                return
            path = Path(row.spool_path)
            if self._spool.contains(path):
                await asyncio.to_thread(self._spool.remove, path)
            await self._stored(row, info)
        finally:
            self._inflight.discard(row.upload_id)

    async def _put(self, row: Upload) -> ObjectInfo | None:
        """Upload and confirm; None when the spool file is gone and storage does not hold it either."""
        store = self._registry.get(row.location, row.project_id)
        path = Path(row.spool_path)
        if not await asyncio.to_thread(path.is_file):
            # A crash after deleting the spool file but before recording the upload as stored.
            info = await store.head(row.bucket, row.object_name)
            return info if _confirmed(info, row) else None
        await store.put_file(row.bucket, row.object_name, path, row.content_type)
        info = await store.head(row.bucket, row.object_name)
        if not _confirmed(info, row):
            got = "nothing" if info is None else f"size {info.size}, etag {info.etag}"
            raise StorageUnavailable(
                f"storage did not confirm {row.object_name!r}: expected size {row.size}, md5 {row.md5}; got {got}"
            )
        return info

    async def _stored(self, row: Upload, info: ObjectInfo) -> None:
        now = self._clock.now()
        hooks = list(self.on_group_stored)

        def work(s: Session) -> bool:
            up = _lock_group(s, row.upload_id)
            if up is None or up.state != PENDING:
                return False
            up.state, up.uploaded_at, up.etag, up.last_error = STORED, now, info.etag, None
            up.attempts += 1
            s.flush()
            if up.group_key is not None and group_pending(s, up.group_key) == 0:
                for hook in hooks:
                    hook(s, up.group_key, now)
                return True
            return False

        if await self._db.run(work):
            for notify in self.after_group_stored:
                notify()
        log.info("stored %s/%s in %s (%d bytes)", row.bucket, row.object_name, row.location, row.size)

    async def _lost(self, row: Upload) -> None:
        now = self._clock.now()
        hooks = list(self.on_group_stored)
        log.error(
            "spool file %s is gone and %s/%s is not in storage: lost", row.spool_path, row.bucket, row.object_name
        )

        def work(s: Session) -> None:
            up = _lock_group(s, row.upload_id)
            if up is None or up.state != PENDING:
                return
            up.state, up.last_error = LOST, "the spool file disappeared before storage held it"
            up.attempts += 1
            s.flush()
            # Later events of the job must not wait forever for a file that cannot arrive.
            if up.group_key is not None and group_pending(s, up.group_key) == 0:
                for hook in hooks:
                    hook(s, up.group_key, now)

        await self._db.run(work)
        for notify in self.after_group_stored:
            notify()

    async def _failed(self, row: Upload, exc: Exception) -> None:
        now = self._clock.now()
        attempts = row.attempts + 1
        delay = self._backoff.delay(attempts)
        # botocore quotes endpoint URLs in its messages: no credentials or signatures in the log.
        message = mask_urls(f"{type(exc).__name__}: {exc}")[:2000]
        log.warning(
            "upload of %s/%s failed (attempt %d, retry in %.0f s): %s",
            row.bucket,
            row.object_name,
            attempts,
            delay,
            message,
        )

        def work(s: Session) -> None:
            up = s.get(Upload, row.upload_id, with_for_update=True)
            if up is None or up.state != PENDING:
                return
            up.attempts += 1
            up.last_error = message
            up.next_attempt_at = now + delay

        await self._db.run(work)

    async def _run(self) -> None:
        while True:
            self._wake.clear()
            try:
                await self.run_once()
                due = await self._next_due()
            except asyncio.CancelledError:
                raise
            except Exception:  # the database may be briefly unreachable; try again later
                log.exception("uploader pass failed")
                due = None
            wait = self._poll if due is None else min(self._poll, max(0.0, due - self._clock.now()))
            if wait > 0:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(wait):
                        await self._wake.wait()
