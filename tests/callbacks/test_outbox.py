"""The outbox: events written inside the caller's transaction, numbered per job, only when subscribed."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import select

from emberrtc.callbacks import outbox
from emberrtc.domain.clock import ManualClock
from emberrtc.domain.secrets import SecretBox
from emberrtc.store.database import Database
from emberrtc.store.models import CallbackEvent
from tests.support.database import seed_app


async def events(db: Database) -> list[CallbackEvent]:
    return await db.run(lambda s: list(s.scalars(select(CallbackEvent).order_by(CallbackEvent.created_at))))


def put(app_id: str, job_id: str, event_type: str, now: float, **fields):  # type: ignore[no-untyped-def]
    return lambda s: outbox.enqueue(s, app_id=app_id, job_id=job_id, event_type=event_type, fields=fields, now=now)


async def test_sequences_bodies_and_ids(db: Database, box: SecretBox, clock: ManualClock) -> None:
    app = await seed_app(db, box, callback_url="http://127.0.0.1:9/cb")
    ids = []
    for job, ev in [("j1", "RECORD_NEW_FILE_START"), ("j2", "RECORD_NEW_FILE_START"), ("j1", "CLOUD_RECORD_OVER")]:
        ids.append(await db.run(put(app, job, ev, clock.now(), stream_name="s", room_id="r", record_format="MP4")))
    rows = await events(db)
    assert [(r.job_id, r.sequence) for r in rows] == [("j1", 1), ("j2", 1), ("j1", 2)]
    assert [r.event_id for r in rows] == ids and len(set(ids)) == 3
    body = json.loads(rows[0].body)
    # spec 6.6 fields in the spec's order, plus the event id; absent values left out
    assert list(body) == ["job_id", "stream_name", "app_id", "room_id", "event_type", "record_format", "event_id"]
    assert body == {
        "job_id": "j1",
        "stream_name": "s",
        "app_id": app,
        "room_id": "r",
        "event_type": "RECORD_NEW_FILE_START",
        "record_format": "MP4",
        "event_id": ids[0],
    }
    assert all(r.ready and not r.finished and r.attempts == 0 for r in rows)


async def test_enqueue_is_part_of_the_callers_transaction(db: Database, box: SecretBox, clock: ManualClock) -> None:
    app = await seed_app(db, box, callback_url="http://127.0.0.1:9/cb")

    def fails(s):  # type: ignore[no-untyped-def]
        put(app, "j1", "CLOUD_RECORD_OVER", clock.now())(s)
        raise RuntimeError("the surrounding unit of work fails")

    with pytest.raises(RuntimeError):
        await db.run(fails)
    assert await events(db) == []
    await db.run(put(app, "j1", "CLOUD_RECORD_OVER", clock.now()))
    assert [r.sequence for r in await events(db)] == [1]


async def test_only_subscribed_events(db: Database, box: SecretBox, clock: ManualClock) -> None:
    only_complete = await seed_app(db, box, callback_url="http://127.0.0.1:9/cb", events=["RECORD_FILE_COMPLETE"])
    no_callback = await seed_app(db, box, callback_url=None)
    assert await db.run(put(only_complete, "j1", "RECORD_NEW_FILE_START", clock.now())) is None
    assert await db.run(put(only_complete, "j1", "RECORD_FILE_COMPLETE", clock.now())) is not None
    assert await db.run(put(no_callback, "j2", "RECORD_FILE_COMPLETE", clock.now())) is None
    assert await db.run(put("no-such-app", "j3", "RECORD_FILE_COMPLETE", clock.now())) is None
    assert [r.event_type for r in await events(db)] == ["RECORD_FILE_COMPLETE"]
    with pytest.raises(ValueError):
        await db.run(put(only_complete, "j1", "RECORD_NEW_FILE_STAR", clock.now()))


async def test_held_until_released(db: Database, box: SecretBox, clock: ManualClock) -> None:
    app = await seed_app(db, box, callback_url="http://127.0.0.1:9/cb")

    def held(s):  # type: ignore[no-untyped-def]
        return outbox.enqueue(
            s,
            app_id=app,
            job_id="j1",
            event_type="RECORD_FILE_COMPLETE",
            fields={"obs_object": "a.mp4"},
            now=clock.now(),
            hold_group="g1",
        )

    await db.run(held)
    (row,) = await events(db)
    assert not row.ready

    clock.advance(5)

    def release(s):  # type: ignore[no-untyped-def]
        for ev in outbox.held(s, "g1"):
            outbox.release(s, ev, clock.now(), {"download_url": "http://x/a.mp4"})

    await db.run(release)
    (row,) = await events(db)
    assert row.ready and row.next_attempt_at == clock.now()
    body = json.loads(row.body)
    assert body["download_url"] == "http://x/a.mp4" and list(body)[-1] == "event_id"


def test_callback_time_and_urls() -> None:
    assert outbox.callback_time(1_700_000_000.9) == "2023-11-14T22:13:20Z"
    assert outbox.valid_callback_url("https://example.com/cb")
    assert outbox.valid_callback_url("http://127.0.0.1:8080/cb?x=1")
    for bad in ("ftp://example.com", "http://", "example.com/cb", "", None, "javascript:alert(1)"):
        assert not outbox.valid_callback_url(bad)
