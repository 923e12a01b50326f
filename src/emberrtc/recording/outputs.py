"""What a recording job produces, as the recording engine reports it: files to store, callbacks to send.

The engine calls, for each file it writes into the spool (``spool.path_for``):

- :meth:`RecordingOutputs.file_started` when the file is opened (``RECORD_NEW_FILE_START``),
- :meth:`RecordingOutputs.store_part` for each finished piece that is not the file itself (HLS segments),
- :meth:`RecordingOutputs.file_completed` when the file is closed (MP4, or the HLS playlist): the file is
  uploaded, and ``RECORD_FILE_COMPLETE`` (with its ``download_url``) goes out once the file and all its
  parts are stored; its recorded and transcoded seconds are counted (``domain.usage``), once per file;

and :meth:`RecordingOutputs.job_over` when the job ends (``CLOUD_RECORD_OVER``). Files go to the buckets
of the project of the job's app, under the object name the file claimed when it started
(``storage.object_claims``: never over another job's file); the callbacks name that object. Each call is one
transaction: the upload, the event (and for a completion, the usage) are recorded together or not at
all, and survive restarts.
Callbacks of a job go out in the order of these calls (a completion waits for its upload, and so does
everything after it).
"""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import dataclass, replace
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from emberrtc.callbacks import outbox
from emberrtc.callbacks.delivery import CallbackDelivery
from emberrtc.config import Settings
from emberrtc.domain.clock import Clock
from emberrtc.domain.errors import EmberError
from emberrtc.domain.outbound import OutboundPolicy
from emberrtc.domain.retry import Backoff
from emberrtc.domain.secrets import SecretBox, new_hex_id
from emberrtc.domain.usage import record_file
from emberrtc.storage.object_claims import ObjectClaims, rename_segments
from emberrtc.storage.object_store import validate_object_name
from emberrtc.storage.registry import StorageRegistry
from emberrtc.storage.spool import Spool
from emberrtc.storage.uploader import Uploader, describe, register
from emberrtc.store.database import Database
from emberrtc.store.models import App, CallbackEvent, Job, Tenant, Upload

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class JobRef:
    """The job a file belongs to (the callback's identifying fields)."""

    app_id: str
    job_id: str
    room_id: str
    stream_name: str


@dataclass(frozen=True)
class FileTarget:
    """Where a file goes: the rule's ``obs_addr.location`` and ``bucket``, and the full object name."""

    location: str
    bucket: str
    object_name: str


class RecordingOutputs:
    def __init__(
        self,
        db: Database,
        registry: StorageRegistry,
        spool: Spool,
        uploader: Uploader,
        delivery: CallbackDelivery,
        clock: Clock,
    ) -> None:
        self._db = db
        self.registry = registry
        self.spool = spool
        self._uploader = uploader
        self._delivery = delivery
        self._clock = clock
        self.claims = ObjectClaims(db, registry, clock)
        #: app -> its tenant's project (an app never changes tenant).
        self._projects: dict[str, str | None] = {}
        uploader.on_group_stored.append(self._release_completions)
        uploader.after_group_stored.append(delivery.wake)

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        db: Database,
        box: SecretBox,
        clock: Clock,
        registry: StorageRegistry,
        outbound: OutboundPolicy,
    ) -> RecordingOutputs:
        """The spool under ``data_dir/spool``, its uploader and the callback delivery, as configured."""
        spool = Spool(settings.data_dir / "spool")
        uploader = Uploader(
            db,
            registry,
            spool,
            clock,
            node_id=spool.node_id(),
            backoff=Backoff(settings.upload_retry_base, settings.upload_retry_max),
            concurrency=settings.upload_concurrency,
        )
        delivery = CallbackDelivery(
            db,
            box,
            clock,
            backoff=Backoff(settings.callback_retry_base, settings.callback_retry_max),
            timeout=settings.callback_timeout,
            retry_window=settings.callback_retry_window,
            concurrency=settings.callback_concurrency,
            outbound=outbound,
        )
        return cls(db, registry, spool, uploader, delivery, clock)

    @property
    def uploader(self) -> Uploader:
        return self._uploader

    @property
    def delivery(self) -> CallbackDelivery:
        return self._delivery

    def start(self) -> None:
        """Start the uploader and the callback delivery (pending work from before a restart included)."""
        self._uploader.start()
        self._delivery.start()

    async def stop(self) -> None:
        await self._uploader.stop()
        await self._delivery.stop()

    async def check_target(self, location: str, bucket: str, project: str | None = None) -> None:
        """At job start: an unknown location is RTC.00001003, a missing bucket (of ``project``, the job's app's
        project) RTC.00001014."""
        await self.registry.check_target(location, bucket, project)

    async def read_image(self, uri: str, location: str, project: str | None = None) -> bytes:
        """A mixed job's image (``s3://bucket/object``, spec Table 4-175) from the storage ``location`` (the
        job's rule's), in ``project``'s buckets (the job's app's project). A malformed URI, an unknown
        location or a missing object raise the storage errors."""
        ref = self.registry.resolve_uri(uri, location, project)
        return await ref.store.get(ref.bucket, ref.name)

    async def project_of(self, app_id: str) -> str | None:
        """The project of the app's tenant: whose buckets the app's files go to."""
        if app_id not in self._projects:
            project = await self._db.run(lambda s: _project_of(s, app_id))
            if project is None:
                return None  # not cached: the app may be written by another node right now
            self._projects[app_id] = project
        return self._projects[app_id]

    async def _claimed(self, job: JobRef, target: FileTarget, *, part: bool = False) -> tuple[FileTarget, str | None]:
        """The target under the object name the file holds (``storage.object_claims``), and the project."""
        project = await self.project_of(job.app_id)
        args = (job.job_id, target.location, project, target.bucket, validate_object_name(target.object_name))
        name = await (self.claims.part(*args) if part else self.claims.claim(*args))
        return replace(target, object_name=name), project

    async def file_started(
        self, job: JobRef, *, record_format: str, target: FileTarget, start_time: float
    ) -> str | None:
        """A new file was opened: its object name is claimed (it may differ from ``target``'s when that is
        taken). Returns the event id (None when the app does not want the event)."""
        target, _ = await self._claimed(job, target)
        now = self._clock.now()
        fields = {
            **self._ids(job),
            "record_format": record_format,
            "start_time": outbox.callback_time(start_time),
            **self._obs(target),
        }
        event_id = await self._db.run(
            lambda s: outbox.enqueue(
                s,
                app_id=job.app_id,
                job_id=job.job_id,
                event_type=outbox.RECORD_NEW_FILE_START,
                fields=fields,
                now=now,
            )
        )
        self._delivery.wake()
        return event_id

    async def store_part(self, job: JobRef, *, path: Path, target: FileTarget, group: str) -> str:
        """Upload a piece of a file that is still being written (an HLS segment); ``group`` names the file
        (pass the same to :meth:`file_completed`). Returns the upload id."""
        target, project = await self._claimed(job, target, part=True)
        f = await describe(path, target.location, target.bucket, target.object_name)
        now = self._clock.now()
        upload_id = await self._db.run(
            lambda s: register(
                s, f, node_id=self._uploader.node_id, now=now, job_id=job.job_id, group_key=group, project_id=project
            )
        )
        self._uploader.wake()
        return upload_id

    async def file_completed(
        self,
        job: JobRef,
        *,
        record_format: str,
        path: Path,
        target: FileTarget,
        start_time: float,
        end_time: float,
        width: int | None,
        height: int | None,
        group: str | None = None,
        content_type: str | None = None,
        transcoded: bool = False,
    ) -> str:
        """The file at ``path`` (in the spool) is finished: upload it, then send ``RECORD_FILE_COMPLETE``,
        and count its seconds for the app (``transcoded``: its video was re-encoded; see ``domain.usage``).
        Returns the group key (one per recording file)."""
        group = group or new_hex_id()
        planned = target.object_name
        target, project = await self._claimed(job, target)
        if target.object_name != planned and planned.endswith(".m3u8"):
            # The playlist names its segments after the planned name: after the claimed one, as stored.
            await asyncio.to_thread(_rename_playlist, path, planned, target.object_name)
        f = await describe(path, target.location, target.bucket, target.object_name, content_type)
        now = self._clock.now()
        fields = {
            **self._ids(job),
            "record_format": record_format,
            # spec 6.6: record_duration is a Long in seconds
            "record_duration": max(0, round(end_time - start_time)),
            "width": width,
            "height": height,
            "start_time": outbox.callback_time(start_time),
            "end_time": outbox.callback_time(end_time),
            **self._obs(target),
        }

        def work(s: Session) -> None:
            register(
                s, f, node_id=self._uploader.node_id, now=now, job_id=job.job_id, group_key=group, project_id=project
            )
            outbox.enqueue(
                s,
                app_id=job.app_id,
                job_id=job.job_id,
                event_type=outbox.RECORD_FILE_COMPLETE,
                fields=fields,
                now=now,
                hold_group=group,
            )
            record_file(
                s,
                app_id=job.app_id,
                job_id=job.job_id,
                object_name=target.object_name,
                record_format=record_format,
                start_time=start_time,
                end_time=end_time,
                transcoded=transcoded,
                width=width,
                height=height,
                now=now,
            )

        await self._db.run(work)
        self._uploader.wake()
        return group

    async def job_over(self, job: JobRef, *, detail_message: str | None = None) -> str | None:
        """The job ended; the event follows every completion of the job. Once per job: a second call (the
        node that recorded it, coming back after another node stopped the job) enqueues nothing."""
        now = self._clock.now()
        fields = {**self._ids(job), "detail_message": detail_message}

        def work(s: Session) -> str | None:
            # The job's row locked: two nodes ending the same job one after the other, not both at once.
            s.get(Job, job.job_id, with_for_update=True)
            over = select(CallbackEvent.event_id).where(
                CallbackEvent.job_id == job.job_id, CallbackEvent.event_type == outbox.CLOUD_RECORD_OVER
            )
            if s.scalar(over.limit(1)) is not None:
                return None
            return outbox.enqueue(
                s,
                app_id=job.app_id,
                job_id=job.job_id,
                event_type=outbox.CLOUD_RECORD_OVER,
                fields=fields,
                now=now,
            )

        event_id = await self._db.run(work)
        self._delivery.wake()
        await asyncio.to_thread(self.spool.finish_job, job.job_id)
        return event_id

    async def job_over_if_recorded(self, job_id: str) -> str | None:
        """A job stopped where no recorder of it runs and no spool journal names it (it recorded on a node
        that died, or before a restart whose recovery finished with it): ``CLOUD_RECORD_OVER`` all the same
        when a recorder ever ran it (``jobs.recorded_on``); nothing for a job that never recorded."""

        def work(s: Session) -> JobRef | None:
            job = s.get(Job, job_id)
            if job is None or job.recorded_on is None:
                return None
            return JobRef(job.app_id, job.job_id, job.room_id, job.stream_name)

        ref = await self._db.run(work)
        return None if ref is None else await self.job_over(ref)

    async def job_stopped(self, job_id: str) -> bool:
        """Is the job ``STOPPED`` (or gone)? A node's recovery asks for the jobs its spool names."""
        state = await self._db.run(lambda s: s.scalar(select(Job.state).where(Job.job_id == job_id)))
        return state is None or state == "STOPPED"

    # --- internals -----------------------------------------------------------------------------------

    @staticmethod
    def _ids(job: JobRef) -> dict[str, str]:
        return {"job_id": job.job_id, "stream_name": job.stream_name, "app_id": job.app_id, "room_id": job.room_id}

    @staticmethod
    def _obs(target: FileTarget) -> dict[str, str]:
        return {"obs_location": target.location, "obs_bucket": target.bucket, "obs_object": target.object_name}

    def _release_completions(self, s: Session, group: str, now: float) -> None:
        """Runs in the uploader's transaction once every file of ``group`` is stored."""
        for event in outbox.held(s, group):
            body = json.loads(event.body)
            fields = {}
            try:
                # The project the file was written for (its upload's), so the link names the object stored.
                project = s.scalar(select(Upload.project_id).where(Upload.group_key == group).limit(1))
                store = self.registry.get(body["obs_location"], project)
                fields["download_url"] = store.download_url(body["obs_bucket"], body["obs_object"])
            except (EmberError, KeyError) as exc:  # the location left the configuration meanwhile
                log.error("no download_url for event %s: %s", event.event_id, exc)
            outbox.release(s, event, now, fields)


def _project_of(s: Session, app_id: str) -> str | None:
    return s.scalar(select(Tenant.project_id).join(App, App.domain_id == Tenant.domain_id).where(App.app_id == app_id))


def _rename_playlist(path: Path, planned: str, actual: str) -> None:
    """Rewrite a finished playlist in the spool (atomically: a replay after a crash rewrites it again,
    to the same text) so that it names its segments after ``actual``."""
    text = path.read_text()
    renamed = rename_segments(text, planned, actual)
    if renamed != text:
        tmp = path.with_name(f".{path.name}.renamed")
        tmp.write_text(renamed)
        tmp.replace(path)
