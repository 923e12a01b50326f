"""The transactional outbox of recording callbacks (spec 4.3, 6.6).

``enqueue(session, ...)`` writes an event inside the caller's unit of work, so an event exists exactly
when the change that caused it was committed. The delivery loop (``callbacks.delivery``) sends what is
here. Each event has a stable ``event_id`` (also in its body, for the application to de-duplicate: the
delivery is at least once) and a ``sequence`` per job (events of a job go out in that order).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from emberrtc.domain.secrets import new_hex_id
from emberrtc.store.models import App, CallbackEvent, CallbackSequence

# Event names (spec 4.3.1 and 6.6; spec/README.md: send the first spelling of each).
RECORD_NEW_FILE_START = "RECORD_NEW_FILE_START"
RECORD_FILE_COMPLETE = "RECORD_FILE_COMPLETE"
CLOUD_RECORD_OVER = "CLOUD_RECORD_OVER"
EVENTS = (RECORD_NEW_FILE_START, RECORD_FILE_COMPLETE, CLOUD_RECORD_OVER)

# spec 6.6 Table 6-3, in its order; ``event_id`` is Ember's addition for de-duplication.
BODY_FIELDS = (
    "job_id",
    "stream_name",
    "app_id",
    "room_id",
    "event_type",
    "record_format",
    "download_url",
    "record_duration",
    "width",
    "height",
    "start_time",
    "end_time",
    "obs_location",
    "obs_bucket",
    "obs_object",
    "detail_message",
    "event_id",
)


def callback_time(ts: float) -> str:
    """spec 6.6: ``start_time``/``end_time`` are UTC ``YYYY-MM-DDThh:mm:ssZ``."""
    return datetime.fromtimestamp(ts, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def valid_callback_url(url: str | None) -> bool:
    """spec 4.3.1 Table 4-3: the URL must start with http:// or https:// (and name a host)."""
    if not url:
        return False
    try:
        parts = urlsplit(url)
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and bool(parts.hostname)


def subscribed(app: App, event_type: str) -> bool:
    """Does the app want this event? No callback URL: nothing. No explicit list: every event."""
    if not app.record_callback_url:
        return False
    events = app.record_callback_events
    return event_type in (events if events is not None else EVENTS)


def body_json(fields: dict[str, Any]) -> str:
    """The body as sent: the spec's fields in the spec's order, absent values left out."""
    ordered = {k: fields[k] for k in BODY_FIELDS if fields.get(k) is not None}
    return json.dumps(ordered, ensure_ascii=False, separators=(",", ":"))


def _next_sequence(s: Session, job_id: str) -> int:
    """One atomic upsert: concurrent writers for one job still get distinct, increasing numbers."""
    dialect = s.get_bind().dialect.name
    insert = pg_insert if dialect == "postgresql" else sqlite_insert
    stmt = (
        insert(CallbackSequence)
        .values(job_id=job_id, last_sequence=1)
        .on_conflict_do_update(
            index_elements=[CallbackSequence.job_id],
            set_={"last_sequence": CallbackSequence.last_sequence + 1},
        )
        .returning(CallbackSequence.last_sequence)
    )
    return int(s.execute(stmt).scalar_one())


def enqueue(
    s: Session,
    *,
    app_id: str,
    job_id: str,
    event_type: str,
    fields: dict[str, Any],
    now: float,
    hold_group: str | None = None,
) -> str | None:
    """Add an event to the outbox inside the caller's transaction; returns its id, or None when the app
    has no record callback or did not subscribe to this event. ``fields`` are spec 6.6 fields.

    With ``hold_group`` the event waits (and so does every later event of the job) until
    :func:`release` is called for that group: a file's completion goes out once the file is stored.
    Wake the delivery loop after the transaction commits.
    """
    if event_type not in EVENTS:
        raise ValueError(f"unknown callback event {event_type!r}")
    app = s.get(App, app_id)
    if app is None or not subscribed(app, event_type):
        return None
    event_id = new_hex_id()
    body = body_json({**fields, "app_id": app_id, "job_id": job_id, "event_type": event_type, "event_id": event_id})
    s.add(
        CallbackEvent(
            event_id=event_id,
            app_id=app_id,
            job_id=job_id,
            sequence=_next_sequence(s, job_id),
            event_type=event_type,
            body=body,
            ready=hold_group is None,
            hold_group=hold_group,
            finished=False,
            attempts=0,
            created_at=now,
            next_attempt_at=now,
        )
    )
    return event_id


def held(s: Session, hold_group: str) -> list[CallbackEvent]:
    """Events waiting for ``hold_group``."""
    q = select(CallbackEvent).where(CallbackEvent.hold_group == hold_group, CallbackEvent.ready.is_(False))
    return list(s.scalars(q.order_by(CallbackEvent.sequence)))


def release(s: Session, event: CallbackEvent, now: float, fields: dict[str, Any] | None = None) -> None:
    """Let a held event go, adding ``fields`` (e.g. ``download_url``) to its body first."""
    if fields:
        body = json.loads(event.body)
        body.update(fields)
        event.body = body_json(body)
    event.ready = True
    event.next_attempt_at = now
