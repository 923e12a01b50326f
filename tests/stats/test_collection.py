"""Collection and storage of the statistics: client reports to sample rows, abnormal-event factors, the
batched writer, the per-minute and daily roll-ups and pruning, on the real database (SQLite, PostgreSQL)."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from emberrtc.domain.clock import ManualClock
from emberrtc.domain.room_session import JoinRequest, RoomSessionService
from emberrtc.domain.secrets import SecretBox
from emberrtc.stats import abnormal
from emberrtc.stats.collector import StatsCollector, sdk_type_of
from emberrtc.stats.report import StatsReport, report_rows, sample_row
from emberrtc.stats.rollup import Retention, StatsRollup
from emberrtc.stats.writer import StatsWriter
from emberrtc.store.database import Database
from emberrtc.store.models import AbnormalEvent, QosSample, SessionStats, StatsDay, StatsMinute
from tests.support.database import seed_app

# --- reports to rows (pure) -------------------------------------------------------------------------------


def _report(**fields: Any) -> StatsReport:
    return StatsReport.model_validate({"type": "stats", **fields})


def test_a_report_becomes_one_uplink_row_and_one_row_per_peer() -> None:
    report = _report(
        interval=5,
        appcpu=0.25,
        uplink={"audio": {"bitrate": 32, "packets": 250, "lost": 0, "rtt": 40}, "video": {"fps": 30, "width": 640}},
        downlink=[
            {"peer_id": "bob", "video": {"packets": 90, "lost": 10, "freeze_ms": 1200, "jitter": 12}},
            {"peer_id": "carol", "audio": {"packets": 250, "lost": 0}},
        ],
    )
    rows = report_rows(report, now=100.0, app_id="a", room_id="r", session_id="s", user_id="u", sdk_type="native")
    assert [(r["direction"], r["peer_id"]) for r in rows] == [
        ("uplink", "0"),
        ("downlink", "bob"),
        ("downlink", "carol"),
    ]
    up, bob, carol = rows
    assert up["aloss"] == 0 and up["artt"] == 40 and up["vfps"] == 30 and up["vwidth"] == 640 and up["appcpu"] == 0.25
    assert bob["vloss"] == pytest.approx(0.1)  # 10 lost of 100
    assert bob["vblock"] == pytest.approx(1200 / 5000) and bob["vfreeze_ms"] == 1200 and bob["aloss"] is None
    assert carol["aloss"] == 0 and carol["vloss"] is None and carol["time"] == 100.0


@pytest.mark.parametrize(
    "bad",
    [
        {"interval": 0},
        {"interval": 3600},
        {"appcpu": 1.5},
        {"access_net": "Wi Fi!"},
        {"uplink": {"audio": {"lost": -1}}},
        {"downlink": [{"peer_id": ""}]},
        {"downlink": [{"peer_id": f"p{i}"} for i in range(65)]},
    ],
)
def test_reports_out_of_range_are_refused(bad: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        _report(**bad)


def test_sample_rows_refuse_unknown_columns() -> None:
    with pytest.raises(ValueError):
        sample_row(time=1.0, bogus=2)


def test_sdk_type_follows_the_platform() -> None:
    assert sdk_type_of("browser-Linux x86_64") == "webrtc"
    assert sdk_type_of("python-linux") == "native" and sdk_type_of(None) == "native"


# --- abnormal-event factors (pure) ----------------------------------------------------------------------


def _down(**cols: Any) -> dict[str, Any]:
    base = {"direction": "downlink", "time": 1.0, "app_id": "a", "room_id": "r", "user_id": "u"}
    return sample_row(**{**base, "session_id": "s", "peer_id": "p", **cols})


def test_a_freeze_is_put_down_to_the_nearest_cause() -> None:
    lossy = _down(vfreeze_ms=900, vloss=0.2, vpackets=80)
    assert abnormal.freeze_factor("video", lossy, None, False) == (14, "local")  # downlink video loss
    assert abnormal.freeze_factor("video", lossy, {"vloss": 0.3}, False) == (12, "remote")  # the peer's uplink
    assert abnormal.freeze_factor("video", lossy, None, True) == (17, "remote")  # the peer left
    assert abnormal.freeze_factor("video", _down(vpackets=0), None, False) == (18, "remote")
    assert abnormal.freeze_factor("audio", _down(ajitter=80.0), None, False) == (8, "local")
    assert abnormal.freeze_factor("audio", _down(syscpu=0.95), None, False) == (1, "local")
    assert abnormal.freeze_factor("video", _down(), None, False) == (16, "local")


def test_freezes_shorter_than_600_ms_are_no_event() -> None:
    assert abnormal.freeze_events(_down(vfreeze_ms=599, afreeze_ms=None), None, False) == []
    events = abnormal.freeze_events(_down(vfreeze_ms=600, afreeze_ms=700, aloss=0.5), None, False)
    assert [(e["abnormal_type"], e["abnormal_factor"], e["peer_uid"]) for e in events] == [(2, 16, ""), (3, 13, "")]


def test_join_factors() -> None:
    assert abnormal.join_factor("RTC.00001001", 10) == 5
    assert abnormal.join_factor("RTC.00002000", 10) == 3
    assert abnormal.join_factor(None, 6000) == 90000004
    assert abnormal.join_factor(None, 100) == 1


def test_excellent_transmission() -> None:
    assert abnormal.excellent(0.01, 100) is True
    assert abnormal.excellent(0.05, 100) is False and abnormal.excellent(0.0, 300) is False
    assert abnormal.excellent(None, 10) is None


# --- writer, roll-ups and pruning on the database -----------------------------------------------------------


async def _count(db: Database, model: Any, *where: Any) -> int:
    return int(await db.run(lambda s: s.scalar(select(func.count()).select_from(model).where(*where))))


async def _minutes(db: Database) -> dict[str, float]:
    def work(s: Session) -> dict[str, float]:
        cols = [
            c.name
            for c in StatsMinute.__table__.columns
            if c.name not in ("id", "app_id", "room_id", "sdk_type", "minute")
        ]
        row = s.execute(select(*(func.sum(getattr(StatsMinute, c)) for c in cols))).one()
        return {c: float(v or 0) for c, v in zip(cols, row, strict=True)}

    return await db.run(work)


async def test_reports_joins_and_leaves_roll_up_into_minutes_days_and_are_pruned(
    db: Database, box: SecretBox, clock: ManualClock
) -> None:
    app_id = await seed_app(db, box, callback_url=None)
    sessions = RoomSessionService(db, box, clock)
    writer = StatsWriter(db)
    collector = StatsCollector(writer, clock)
    rollup = StatsRollup(db, clock, Retention())
    t0 = clock.now()

    # Two users join room r1; one join is refused (the media plane failed it).
    ctx = {}
    for user, platform in (("alice", "browser-Linux"), ("bob", "python-linux")):
        admission = await sessions.admit(JoinRequest(app_id, "r1", user, platform=platform, client_ip="10.0.0.1"))
        clock.advance(0.2)
        ctx[user] = collector.joined(
            session_id=admission.session_id,
            app_id=app_id,
            room_id="r1",
            user_id=user,
            platform=platform,
            client_ip="10.0.0.1",
            started=clock.now() - 0.2,
        )
    collector.join_refused(
        app_id=app_id,
        room_id="r1",
        user_id="carol",
        platform="python-linux",
        client_ip=None,
        fail_code="RTC.00002000",
        started=clock.now(),
    )
    # A minute of reports: alice sends video cleanly; bob receives it with 20 % loss and freezes.
    for _ in range(12):
        clock.advance(5)
        assert collector.report(
            ctx["alice"],
            _report(
                interval=5,
                uplink={"video": {"packets": 500, "lost": 0, "rtt": 30, "fps": 30, "width": 1280, "height": 720}},
            ),
        )
        assert collector.report(
            ctx["bob"],
            _report(
                interval=5,
                join_ms=6500,
                first_video_ms=400,
                downlink=[
                    {
                        "peer_id": "alice",
                        "video": {
                            "packets": 400,
                            "lost": 100,
                            "rtt": 30,
                            "freeze_ms": 800,
                            "width": 1280,
                            "height": 720,
                        },
                    }
                ],
            ),
        )
    assert not collector.report(ctx["bob"], _report(interval=5))  # sooner than 1 s after the last: dropped
    assert writer.pending > 0 and await _count(db, QosSample) == 0  # nothing written before a flush
    assert await writer.flush() > 0 and writer.pending == 0
    assert await _count(db, QosSample) == 24

    # Abnormal events: the refused join (server fault), bob's slow join, and his video freezes, one event a
    # minute (the reports span two minutes), put down to his own downlink loss (alice's uplink was clean).
    events = await db.run(
        lambda s: [(e.abnormal_type, e.abnormal_factor, e.location) for e in s.scalars(select(AbnormalEvent))]
    )
    assert events.count((1, 3, "local")) == 1 and events.count((1, 1, "local")) == 1
    assert events.count((2, 14, "local")) == 2 and len(events) == 4

    # The SFU's view of bob's downlink: one more transmission sample, but no more receive time.
    janus_row = sample_row(
        time=clock.now() - 1,
        app_id=app_id,
        room_id="r1",
        session_id=ctx["bob"].session_id,
        user_id="bob",
        peer_id="alice",
        direction="downlink",
        source="janus",
        sdk_type="native",
        interval_s=5.0,
        vbit=900.0,
        vloss=0.01,
        vrtt=30.0,
        vpackets=400,
    )
    writer.add_samples([janus_row])
    await writer.flush()

    assert await rollup.run_once()
    m = await _minutes(db)
    assert m["join_attempts"] == 3 and m["join_ok"] == 2
    assert m["join_ok_5s"] == 1  # bob reported 6.5 s
    assert m["first_video_n"] == 1 and m["first_video_ms_sum"] == 400
    assert m["video_recv_s"] == 60 and m["video_freeze_s"] == pytest.approx(9.6)
    assert m["video_up_samples"] == 12 and m["video_up_excellent"] == 12
    assert m["video_e2e_samples"] == 13 and m["video_e2e_excellent"] == 1
    assert m["comm_hd_s"] == 60 and m["comm_sd_s"] == 0
    online = await db.run(
        lambda s: {r.sdk_type: r.online_users for r in s.scalars(select(StatsMinute).where(StatsMinute.minute == t0))}
    )
    assert online == {"webrtc": 1, "native": 1}

    # A second pass rewrites the same minutes: nothing counts twice.
    assert await rollup.run_once()
    assert (await _minutes(db))["join_attempts"] == 3

    # Both leave; the next day (settled) gets its row, today never.
    for user in ("alice", "bob"):
        collector.left(ctx[user])
    await writer.flush()
    await sessions.leave(ctx["alice"].session_id, "left")
    await sessions.leave(ctx["bob"].session_id, "left")
    assert await _count(db, StatsDay) == 0
    clock.advance(86_400)
    await rollup.run_once()
    days = await db.run(
        lambda s: [
            (d.day, d.user_count, d.session_count, d.room_count, d.max_online_users, d.join_attempts)
            for d in s.scalars(select(StatsDay))
        ]
    )
    assert days == [("2027-01-15", 2, 2, 1, 2, 3)]

    # Retention: after 6 days the raw samples and minutes are gone, the day and the events stay.
    clock.advance(5 * 86_400)
    await rollup.run_once()
    assert await _count(db, QosSample) == 0 and await _count(db, StatsMinute) == 0
    assert await _count(db, StatsDay) == 1 and await _count(db, AbnormalEvent) == 4
    assert await _count(db, SessionStats) == 3


async def test_the_writer_keeps_rows_when_the_database_fails_and_bounds_its_buffer(db: Database) -> None:
    writer = StatsWriter(db, max_pending=10)
    row = sample_row(
        time=1.0,
        app_id="a",
        room_id="r",
        user_id="u",
        peer_id="0",
        direction="uplink",
        source="client",
        sdk_type="native",
        interval_s=5.0,
    )
    writer.add_samples([dict(row) for _ in range(15)])
    assert writer.pending == 10 and writer.dropped == 5
    writer.add_session({"session_id": "x"})  # missing required columns: the flush fails
    with pytest.raises(Exception):  # noqa: B017 - the driver's own integrity error
        await writer.flush()
    assert writer.pending == 10  # the samples are back, within the bound
    assert await _count(db, QosSample) == 0
