"""The recording files of an app's jobs, as stored: what the console's Recordings page lists.

A recording file is an MP4 file or an HLS playlist with its segments. Its seconds come from the usage
rows counted when it completed (``domain.usage``, one row per file and day), its bytes and whereabouts
from its uploads (``storage.uploader``: the file, or the playlist and every segment of its group). A file
is ``stored`` once every upload of its group is confirmed by storage; only then can it be played.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from emberrtc.domain.app import load_app
from emberrtc.domain.tenant import Principal
from emberrtc.store.database import Database
from emberrtc.store.models import Job, Upload, UsageEntry

STORED = "stored"  # storage.uploader's state of a confirmed upload


@dataclass(frozen=True)
class RecordingFile:
    """One recording file of a job."""

    job_id: str
    room_id: str
    stream_name: str
    record_format: str
    object_name: str
    location: str | None
    bucket: str | None
    #: Whose bucket the file went to (``storage.local_store`` keeps projects' buckets apart; None: the
    #: shared buckets of files stored before that).
    project_id: str | None
    #: Seconds recorded (the file's ``end_time - start_time``).
    duration: float
    #: Bytes of the file with all its parts (an HLS playlist's segments), as uploaded so far.
    size: int
    width: int | None
    height: int | None
    #: When the file completed (UNIX seconds).
    completed_at: float
    #: ``stored`` (every part confirmed by storage), ``pending`` (uploading) or ``lost``.
    state: str


async def list_files(db: Database, principal: Principal, app_id: str, limit: int = 200) -> list[RecordingFile]:
    """The app's recording files, newest first; :class:`AppNotExist` for another tenant's app."""

    def work(s: Session) -> list[RecordingFile]:
        load_app(s, principal, app_id)
        u = UsageEntry
        files = s.execute(
            select(
                u.job_id,
                u.object_name,
                func.max(u.record_format).label("record_format"),
                func.sum(u.recorded_seconds).label("duration"),
                func.max(u.width).label("width"),
                func.max(u.height).label("height"),
                func.min(u.create_time).label("completed_at"),
                func.max(Job.room_id).label("room_id"),
                func.max(Job.stream_name).label("stream_name"),
            )
            .join(Job, Job.job_id == u.job_id)
            .where(u.app_id == app_id)
            .group_by(u.job_id, u.object_name)
            .order_by(func.min(u.create_time).desc(), u.object_name)
            .limit(limit)
        ).all()
        out = []
        for f in files:
            head = s.execute(
                select(
                    Upload.location, Upload.bucket, Upload.project_id, Upload.group_key, Upload.state, Upload.size
                ).where(Upload.job_id == f.job_id, Upload.object_name == f.object_name)
            ).first()
            size, state = 0, "pending"
            if head is not None:
                size, state = int(head.size), head.state
                if head.group_key is not None:
                    parts = s.execute(
                        select(Upload.state, Upload.size).where(
                            Upload.job_id == f.job_id, Upload.group_key == head.group_key
                        )
                    ).all()
                    size = sum(int(p.size) for p in parts)
                    states = {p.state for p in parts}
                    state = STORED if states == {STORED} else ("lost" if "lost" in states else "pending")
            out.append(
                RecordingFile(
                    job_id=f.job_id,
                    room_id=f.room_id,
                    stream_name=f.stream_name,
                    record_format=f.record_format,
                    object_name=f.object_name,
                    location=head.location if head is not None else None,
                    bucket=head.bucket if head is not None else None,
                    project_id=head.project_id if head is not None else None,
                    duration=float(f.duration or 0.0),
                    size=size,
                    width=f.width,
                    height=f.height,
                    completed_at=float(f.completed_at),
                    state=state,
                )
            )
        return out

    return await db.run(work)
