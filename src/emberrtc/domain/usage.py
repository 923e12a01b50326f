"""Usage accounting: recorded and transcoded seconds per application and UTC day.

The figures behind the statistics API's ``RecordDuration`` and ``TranscodeDuration`` (spec 5.7, Table
5-44). They are counted per completed recording file, an MP4 file or an HLS playlist:

- **recorded seconds**: the file's media span, ``end_time - start_time`` as reported in
  ``RECORD_FILE_COMPLETE``, attributed to the app of the job and split across UTC days at midnight (a file
  from 23:59:30 to 00:00:30 counts 30 s on each day);
- **transcoded seconds**: the same seconds when the file's video was re-encoded by Ember (a VP8 publisher,
  or H.264 above the stream's resolution cap, encoded to H.264), else 0. H.264 passed through as
  published and audio-only files count 0. Opus to AAC audio conversion is not counted as transcoding.
  A mixed-stream job's files (spec 4.8) always count: mixing is transcoding, audio-only mixes included.

Each file is counted exactly once: one row per (job, object name, day) under a unique key, inserted with
``ON CONFLICT DO NOTHING``, so a completion processed twice (say, replayed after a crash) adds nothing.
:func:`record_file` runs inside the caller's unit of work, so the row is written in the same transaction
as the file's upload and its callback (``recording.outputs``). Totals are ``SUM ... GROUP BY day``.
Files of an app that no longer exists are not counted (its usage went with it).
"""

from __future__ import annotations

import functools
import math
import re
from datetime import UTC, date, datetime
from typing import Any, cast

from sqlalchemy import Table, bindparam, exists, func, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from emberrtc.domain.app import load_app
from emberrtc.domain.errors import AppNotExist, InvalidParameterValue
from emberrtc.domain.secrets import new_hex_id
from emberrtc.domain.tenant import Principal
from emberrtc.store.database import Database
from emberrtc.store.models import App, UsageEntry

DAY = 86_400  # seconds in a UTC day (UNIX time has no leap seconds)
_DAY_FORMAT = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def day_of(t: float) -> str:
    """The UTC day of UNIX time ``t`` as ``YYYY-MM-DD``."""
    return datetime.fromtimestamp(t, UTC).date().isoformat()


def split_by_day(start: float, end: float) -> list[tuple[str, float]]:
    """``[start, end)`` cut at each UTC midnight: ``(day, seconds)`` in order; empty when ``end <= start``."""
    if not (math.isfinite(start) and math.isfinite(end)):
        raise ValueError(f"times must be finite: {start}, {end}")
    pieces: list[tuple[str, float]] = []
    t = start
    while t < end:
        midnight = math.floor(t / DAY) * DAY + DAY  # the next one
        upto = min(end, midnight)
        pieces.append((day_of(t), float(upto - t)))
        t = upto
    return pieces


@functools.cache
def _insert_statement(dialect: str) -> Any:
    """Insert one row unless the (job, object, day) row exists or the app does not.

    ``INSERT ... SELECT ... WHERE EXISTS (app)``: a file completed after its app was deleted is still
    uploaded and called back, just not counted (a plain insert would fail on the foreign key and take
    the upload and the callback down with it). Built once with bind parameters (see ``record_rule``).
    """
    table = cast(Table, UsageEntry.__table__)
    insert = sqlite_insert if dialect == "sqlite" else pg_insert
    row = select(*(bindparam(c.name, type_=c.type) for c in table.c)).where(
        exists().where(App.app_id == bindparam("app_id"))
    )
    return (
        insert(table)
        .from_select([c.name for c in table.c], row)
        .on_conflict_do_nothing(index_elements=["job_id", "object_name", "day"])
    )


def record_file(
    s: Session,
    *,
    app_id: str,
    job_id: str,
    object_name: str,
    record_format: str,
    start_time: float,
    end_time: float,
    transcoded: bool,
    width: int | None,
    height: int | None,
    now: float,
) -> int:
    """Count a completed file, in the caller's transaction. Returns the number of new (day) rows: 0 when the
    file was counted before (or is empty, or its app is gone)."""
    stmt = _insert_statement(s.get_bind().dialect.name)
    added = 0
    for day, seconds in split_by_day(start_time, end_time):
        params = {
            "entry_id": new_hex_id(),
            "app_id": app_id,
            "job_id": job_id,
            "object_name": object_name,
            "day": day,
            "recorded_seconds": seconds,
            "transcoded_seconds": seconds if transcoded else 0.0,
            "record_format": record_format,
            "width": width,
            "height": height,
            "create_time": now,
        }
        added += max(0, s.connection().execute(stmt, params).rowcount)
    return added


def check_day(value: str, name: str) -> str:
    """``value`` when it is a real ``YYYY-MM-DD`` day, else RTC.00001003."""
    try:
        if not _DAY_FORMAT.match(value):
            raise ValueError(value)
        date.fromisoformat(value)
    except ValueError:
        raise InvalidParameterValue(f"{name} must be a day as YYYY-MM-DD, not {value!r}") from None
    return value


class UsageService:
    """Reads the per-day totals."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def days(
        self, principal: Principal | None, app_id: str, start_day: str | None, end_day: str | None
    ) -> list[dict[str, Any]]:
        """Per-day totals of ``app_id`` from ``start_day`` to ``end_day`` (UTC, both included; None: open),
        oldest first: ``{"day", "recorded_seconds", "transcoded_seconds", "files"}``. Days without any
        recording are omitted. ``principal`` None is the operator (the CLI): any app; a tenant sees only
        its own apps (RTC.00001015 otherwise)."""
        if start_day is not None:
            check_day(start_day, "start day")
        if end_day is not None:
            check_day(end_day, "end day")
        if start_day is not None and end_day is not None and start_day > end_day:
            raise InvalidParameterValue(f"start day {start_day} is after end day {end_day}")
        u = UsageEntry
        q = (
            select(u.day, func.sum(u.recorded_seconds), func.sum(u.transcoded_seconds), func.count())
            .where(u.app_id == app_id)
            .group_by(u.day)
            .order_by(u.day)
        )
        # days compare as strings: YYYY-MM-DD sorts in time order
        if start_day is not None:
            q = q.where(u.day >= start_day)
        if end_day is not None:
            q = q.where(u.day <= end_day)

        def work(s: Session) -> list[dict[str, Any]]:
            if principal is not None:
                load_app(s, principal, app_id)
            elif s.get(App, app_id) is None:
                raise AppNotExist(f"app {app_id} does not exist")
            return [
                {"day": day, "recorded_seconds": float(rec), "transcoded_seconds": float(tr), "files": int(n)}
                for day, rec, tr, n in s.execute(q)
            ]

        return await self._db.run(work)
