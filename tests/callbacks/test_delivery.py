"""Delivery to a real HTTP receiver: signed, in order per job, retried through outages, non-2xx answers
and timeouts, resumed after a restart, given up (and recorded) only after the retry window.
Runs on SQLite and PostgreSQL; a manual clock stands in for the hours of backoff."""

from __future__ import annotations

import hashlib
import hmac
import json
import random
from collections.abc import AsyncIterator

import pytest
from sqlalchemy import select

from emberrtc.callbacks import outbox
from emberrtc.callbacks.delivery import CallbackDelivery
from emberrtc.domain.clock import ManualClock
from emberrtc.domain.outbound import AllowList, OutboundPolicy
from emberrtc.domain.retry import Backoff
from emberrtc.domain.secrets import SecretBox
from emberrtc.store.database import Database
from emberrtc.store.models import CallbackEvent
from tests.support.database import open_database, seed_app, set_callback
from tests.support.http_receiver import HANG, HttpReceiver, Received
from tests.support.waiting import until

AUTH_KEY = "8923ab8c2dcef4538923ab8c2dcef453"


def make_delivery(db: Database, box: SecretBox, clock: ManualClock, **kw: object) -> CallbackDelivery:
    options: dict[str, object] = {
        "backoff": Backoff(1.0, 600.0, jitter=0.0),
        "timeout": 2.0,
        "outbound": OutboundPolicy(AllowList.parse("127.0.0.1")),  # the receiver's address
    }
    options.update(kw)
    return CallbackDelivery(db, box, clock, **options)  # type: ignore[arg-type]


@pytest.fixture
async def delivery(db: Database, box: SecretBox, clock: ManualClock) -> AsyncIterator[CallbackDelivery]:
    d = make_delivery(db, box, clock)
    d.start()
    try:
        yield d
    finally:
        await d.stop()


async def enqueue(db: Database, app: str, job: str, event_type: str, now: float, **fields: object) -> str:
    base = {"stream_name": f"{job}_stream", "room_id": "room1"}

    def work(s):  # type: ignore[no-untyped-def]
        return outbox.enqueue(s, app_id=app, job_id=job, event_type=event_type, fields={**base, **fields}, now=now)

    event_id = await db.run(work)
    assert event_id is not None
    return event_id


async def event(db: Database, event_id: str) -> CallbackEvent:
    found = await db.run(lambda s: s.get(CallbackEvent, event_id))
    assert found is not None
    return found


async def all_events(db: Database) -> list[CallbackEvent]:
    return await db.run(lambda s: list(s.scalars(select(CallbackEvent))))


def signature_ok(r: Received, key: str) -> bool:
    """The receiving application's check, written out from spec/README.md."""
    msg = r.headers["x-rtc-rand"].encode() + r.headers["x-rtc-timestamp"].encode() + r.body
    expected = hmac.new(key.encode(), msg, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, r.headers["x-rtc-signature"])


def bodies(rs: list[Received]) -> list[dict]:  # type: ignore[type-arg]
    return [json.loads(r.body) for r in rs]


async def test_signed_events_with_fields_in_order_per_job(
    db: Database, box: SecretBox, clock: ManualClock, receiver: HttpReceiver, delivery: CallbackDelivery
) -> None:
    app = await seed_app(db, box, callback_url=receiver.url + "/rtc/callback", auth_key=AUTH_KEY)
    now = clock.now()
    complete = {
        "record_format": "MP4",
        "download_url": "http://127.0.0.1:9/files/a.mp4",
        "record_duration": 61,
        "width": 640,
        "height": 360,
        "start_time": "2027-01-15T08:00:00Z",
        "end_time": "2027-01-15T08:01:01Z",
        "obs_location": "cn-north-4",
        "obs_bucket": "records",
        "obs_object": "app/MP4/a.mp4",
    }
    ids = {
        "j1": [
            await enqueue(db, app, "j1", "RECORD_NEW_FILE_START", now, record_format="MP4"),
            await enqueue(db, app, "j1", "RECORD_FILE_COMPLETE", now, **complete),
            await enqueue(db, app, "j1", "CLOUD_RECORD_OVER", now, detail_message="stopped by API"),
        ],
        "j2": [await enqueue(db, app, "j2", "RECORD_NEW_FILE_START", now, record_format="HLS")],
    }
    delivery.wake()
    await until(lambda: len(receiver.received) == 4, what="four callbacks")

    for r in receiver.received:
        assert r.method == "POST" and r.path == "/rtc/callback"
        assert r.headers["content-type"] == "application/json"
        assert signature_ok(r, AUTH_KEY)
        assert r.headers["x-rtc-timestamp"] == str(int(clock.now()))
    got = bodies(receiver.received)
    for job, expected in ids.items():
        assert [b["event_id"] for b in got if b["job_id"] == job] == expected  # in order, each once
    by_id = {b["event_id"]: b for b in got}
    assert by_id[ids["j1"][1]] == {
        "job_id": "j1",
        "stream_name": "j1_stream",
        "app_id": app,
        "room_id": "room1",
        "event_type": "RECORD_FILE_COMPLETE",
        **complete,
        "event_id": ids["j1"][1],
    }
    assert by_id[ids["j1"][2]]["event_type"] == "CLOUD_RECORD_OVER"
    assert by_id[ids["j1"][2]]["detail_message"] == "stopped by API"
    rows = await until(lambda: _all_finished(db), what="every outcome recorded")
    assert all(r.finished and r.delivered_at == clock.now() and r.attempts == 1 and r.last_status == 200 for r in rows)


async def test_no_auth_key_no_signature(
    db: Database, box: SecretBox, clock: ManualClock, receiver: HttpReceiver, delivery: CallbackDelivery
) -> None:
    app = await seed_app(db, box, callback_url=receiver.url + "/cb")
    await enqueue(db, app, "j1", "CLOUD_RECORD_OVER", clock.now())
    delivery.wake()
    (r,) = await until(lambda: receiver.received, what="the callback")
    assert not any(h.startswith("x-rtc-") for h in r.headers)


async def test_receiver_down_for_a_while_then_up(
    db: Database, box: SecretBox, clock: ManualClock, receiver: HttpReceiver, delivery: CallbackDelivery
) -> None:
    app = await seed_app(db, box, callback_url=receiver.url + "/cb", auth_key=AUTH_KEY)
    await receiver.stop()  # the application is down
    first = await enqueue(db, app, "j1", "RECORD_NEW_FILE_START", clock.now())
    second = await enqueue(db, app, "j1", "CLOUD_RECORD_OVER", clock.now())
    delivery.wake()
    delays = []
    for attempt in range(1, 6):
        if attempt > 1:
            clock.advance(delays[-1])
            delivery.wake()
        row = await until(lambda n=attempt: _attempts(db, first, n), what=f"attempt {attempt}")
        assert not row.finished and row.last_error and "Connect" in row.last_error
        delays.append(row.next_attempt_at - clock.now())
    assert delays == [1.0, 2.0, 4.0, 8.0, 16.0]  # exponential
    assert (await event(db, second)).attempts == 0  # the job's next event waits its turn

    await receiver.start()  # back, on the same port
    clock.advance(delays[-1])
    delivery.wake()
    await until(lambda: len(receiver.answered(200)) == 2, what="both callbacks after the receiver came back")
    assert [b["event_id"] for b in bodies(receiver.received)] == [first, second]
    assert all(signature_ok(r, AUTH_KEY) for r in receiver.received)
    assert (await event(db, first)).attempts == 6


async def test_non_2xx_redirects_and_timeouts_are_retried(
    db: Database, box: SecretBox, clock: ManualClock, receiver: HttpReceiver
) -> None:
    # The timeout is generous: on a loaded machine an answered attempt must never look like a hang
    # (0.3 s once cut off an attempt before the receiver had even read it).
    delivery = make_delivery(db, box, clock, timeout=2.0)
    delivery.start()
    try:
        app = await seed_app(db, box, callback_url=receiver.url + "/cb")
        receiver.script.extend([500, 302, 404, HANG, 204])
        eid = await enqueue(db, app, "j1", "CLOUD_RECORD_OVER", clock.now())
        delivery.wake()
        errors = []
        for attempt in range(1, 5):
            row = await until(lambda n=attempt: _attempts(db, eid, n, failed=True), what=f"failure {attempt}")
            errors.append(row.last_error)
            clock.advance(row.next_attempt_at - clock.now())
            delivery.wake()
        row = await until(lambda: _delivered(db, eid), what="delivery on the fifth attempt")
    finally:
        await delivery.stop()
    assert errors[0] == "HTTP 500"
    assert errors[1] == "HTTP 302 (redirects are not followed)"
    assert errors[2] == "HTTP 404"
    assert errors[3] == "no answer within 2 s"
    assert row.attempts == 5 and row.last_status == 204
    assert [r.path for r in receiver.received] == ["/cb"] * 5  # never followed to /elsewhere
    assert len({json.loads(r.body)["event_id"] for r in receiver.received}) == 1  # same event, same body
    assert len({r.body for r in receiver.received}) == 1


async def test_restart_resumes_from_the_database(
    db_url: str, box: SecretBox, clock: ManualClock, receiver: HttpReceiver
) -> None:
    db = await open_database(db_url)
    app = await seed_app(db, box, callback_url=receiver.url + "/cb", auth_key=AUTH_KEY)
    receiver.script.append(HANG)  # the first attempt is cut off by the stop
    ids = [await enqueue(db, app, "j1", t, clock.now()) for t in ("RECORD_NEW_FILE_START", "CLOUD_RECORD_OVER")]
    first = make_delivery(db, box, clock, timeout=30.0)
    first.start()
    await until(lambda: receiver.received, what="the first attempt to arrive")
    await first.stop()  # the process goes away mid-delivery
    await db.close()

    db = await open_database(db_url)  # a new process on the same database
    second = make_delivery(db, box, clock)
    second.start()
    try:
        await until(lambda: len(receiver.answered(200)) == 2, what="delivery by the new loop")
    finally:
        await second.stop()
        await db.close()
    assert [b["event_id"] for b in bodies(receiver.answered(200))] == ids
    # At least once: the cut-off attempt and its redelivery carry the same event id.
    assert [b["event_id"] for b in bodies(receiver.received)] == [ids[0], ids[0], ids[1]]


async def test_given_up_after_the_retry_window_and_recorded(
    db: Database, box: SecretBox, clock: ManualClock, receiver: HttpReceiver
) -> None:
    # The production defaults (24 h window, 10 min cap) with real jitter; passes driven one by one.
    delivery = make_delivery(db, box, clock, backoff=Backoff(5.0, 600.0, rng=random.Random(7)))
    try:
        app = await seed_app(db, box, callback_url=receiver.url + "/cb")
        receiver.script.extend([503] * 1000)
        doomed = await enqueue(db, app, "j1", "RECORD_FILE_COMPLETE", clock.now())
        after = await enqueue(db, app, "j1", "CLOUD_RECORD_OVER", clock.now())
        start = clock.now()
        while True:
            assert await delivery.run_once() == 1  # only the head of the job is ever sent
            row = await event(db, doomed)
            if row.finished:
                break
            wait = row.next_attempt_at - clock.now()
            assert 0 < wait <= 600.0  # capped at 10 minutes
            clock.advance(wait)
        assert row.gave_up_at is not None and row.delivered_at is None
        assert row.gave_up_at - start >= 24 * 3600  # retried for at least 24 h
        assert row.last_error == "HTTP 503" and row.last_status == 503
        assert row.attempts == len(receiver.received) > 100
        assert (await event(db, after)).attempts == 0
        receiver.script.clear()
        # The job's later event is not blocked forever by one given up.
        assert await delivery.run_once() == 1
        assert (await event(db, after)).delivered_at is not None
    finally:
        await delivery.stop()


async def test_unsubscribed_or_removed_callbacks_are_not_sent(
    db: Database, box: SecretBox, clock: ManualClock, receiver: HttpReceiver, delivery: CallbackDelivery
) -> None:
    app = await seed_app(db, box, callback_url=receiver.url + "/cb")
    eid = await enqueue(db, app, "j1", "CLOUD_RECORD_OVER", clock.now())
    await set_callback(db, app, "ftp://127.0.0.1/cb")  # as if written past the API's validation
    eid2 = await enqueue(db, app, "j2", "CLOUD_RECORD_OVER", clock.now() + 1)  # due only later
    delivery.wake()
    row = await until(lambda: _finished(db, eid), what="the invalid URL to be given up")
    assert row.gave_up_at is not None and "invalid callback URL" in (row.last_error or "")
    await set_callback(db, app, None)
    clock.advance(1)
    delivery.wake()
    row2 = await until(lambda: _finished(db, eid2), what="the unsubscribed event to be dropped")
    assert "no longer has a record callback" in (row2.last_error or "")
    assert receiver.received == []


async def test_a_held_event_blocks_only_its_own_job(
    db: Database, box: SecretBox, clock: ManualClock, receiver: HttpReceiver, delivery: CallbackDelivery
) -> None:
    app = await seed_app(db, box, callback_url=receiver.url + "/cb")

    def held(s):  # type: ignore[no-untyped-def]
        return outbox.enqueue(
            s, app_id=app, job_id="j1", event_type="RECORD_FILE_COMPLETE", fields={}, now=clock.now(), hold_group="g"
        )

    complete = await db.run(held)
    over = await enqueue(db, app, "j1", "CLOUD_RECORD_OVER", clock.now())
    other = await enqueue(db, app, "j2", "CLOUD_RECORD_OVER", clock.now())
    delivery.wake()
    await until(lambda: _delivered(db, other), what="the other job's event")
    assert (await event(db, over)).attempts == 0

    def release(s):  # type: ignore[no-untyped-def]
        for ev in outbox.held(s, "g"):
            outbox.release(s, ev, clock.now(), {"download_url": "http://127.0.0.1:9/a.mp4"})

    await db.run(release)
    delivery.wake()
    await until(lambda: _delivered(db, over), what="the held job's events")
    assert [b["event_id"] for b in bodies(receiver.received)] == [other, complete, over]
    assert bodies(receiver.received)[1]["download_url"] == "http://127.0.0.1:9/a.mp4"


async def _attempts(db: Database, eid: str, n: int, failed: bool = False) -> CallbackEvent | None:
    """The event once ``n`` attempts have ended (``attempts`` counts attempts whose outcome is recorded)."""
    row = await event(db, eid)
    if row.attempts < n or (failed and row.last_error is None):
        return None
    return row


async def _delivered(db: Database, eid: str) -> CallbackEvent | None:
    row = await event(db, eid)
    return row if row.delivered_at is not None else None


async def _finished(db: Database, eid: str) -> CallbackEvent | None:
    row = await event(db, eid)
    return row if row.finished else None


async def _all_finished(db: Database) -> list[CallbackEvent] | None:
    rows = await all_events(db)
    return rows if all(r.finished for r in rows) else None
