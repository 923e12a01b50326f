"""Per-minute and daily roll-ups of the statistics, and pruning of old rows, in one background loop.

Every ``stats_rollup_interval`` seconds:

1. **Minutes**: the minutes from two minutes ago (or from where the last pass stopped, if that is older,
   after downtime) up to and including the current, unfinished one are recomputed from the raw data
   (``room_sessions``, ``stats_sessions``, ``stats_qos_samples``) and rewritten: their ``stats_minutes``
   rows are deleted and inserted again in one transaction. Rewriting, not adding, makes a pass idempotent,
   and the two-minute overlap takes in facts that arrive late (a client's join time comes with its first
   report, a few seconds after the join).
2. **Days**: each finished UTC day not rolled yet (ten minutes past its midnight, so its last minutes are
   final) gets its ``stats_days`` row from its minutes, sessions and rooms.
3. **Pruning**: rows older than their retention (``Settings.stats_*_retention_days``) are deleted.

Several nodes may run this loop on one PostgreSQL: a pass takes a transaction-level advisory lock and a
node that does not get it skips the pass (another node is doing the same work). Definitions of every
counter: docs/statistics.md.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from sqlalchemy import BigInteger, Integer, and_, case, cast, delete, func, insert, not_, or_, select, text
from sqlalchemy.orm import Session
from sqlalchemy.sql.expression import ColumnElement

from emberrtc.config import Settings
from emberrtc.domain.background import BackgroundTask
from emberrtc.domain.clock import Clock
from emberrtc.domain.usage import DAY, day_of
from emberrtc.stats.abnormal import LOSS_HIGH, RTT_HIGH, SLOW_JOIN_MS
from emberrtc.store.database import Database
from emberrtc.store.models import (
    AbnormalEvent,
    QosSample,
    Room,
    RoomSession,
    SessionStats,
    StatsDay,
    StatsMark,
    StatsMinute,
)

log = logging.getLogger(__name__)

MINUTE = 60
#: Minutes recomputed behind the current one on every pass (late facts: a client's join time arrives with
#: its first report, a few seconds after the join; the writer flushes every second).
OVERLAP_MINUTES = 2
#: A day is rolled up this long after its end (its last minutes are final by then).
DAY_SETTLE = 10 * MINUTE
#: Video resolution tiers of CommunicationDuration (pixels of the received frame): SD up to 640x480, HD up
#: to 1280x720, above that UHD ("hdp").
SD_MAX_PIXELS = 640 * 480
HD_MAX_PIXELS = 1280 * 720
#: PostgreSQL advisory lock key of a roll-up pass (any constant; "EMBR" in ASCII).
_LOCK_KEY = 0x454D4252

COUNTERS = (
    "online_users join_attempts join_ok join_ok_5s first_audio_ms_sum first_audio_n first_video_ms_sum "
    "first_video_n video_recv_s video_freeze_s audio_recv_s audio_freeze_s video_up_samples video_up_excellent "
    "audio_up_samples audio_up_excellent video_e2e_samples video_e2e_excellent audio_e2e_samples "
    "audio_e2e_excellent video_rtt_sum video_rtt_n audio_rtt_sum audio_rtt_n push_attempts push_ok pull_attempts "
    "pull_ok comm_audio_s comm_sd_s comm_hd_s comm_uhd_s"
).split()
#: Counters a day sums from its minutes (online_users is a peak there, not a sum).
DAY_SUMS = [c for c in COUNTERS if c != "online_users"]


Key = tuple[str, str, str, int]  # app_id, room_id, sdk_type, minute


def _minute(t: float) -> int:
    return int(math.floor(t / MINUTE)) * MINUTE


def _sum_if(condition: ColumnElement[bool], value: Any = 1) -> Any:
    return func.sum(case((condition, value), else_=0))


def _sample_sums(s: Session, start: int, end: int) -> Any:
    """Per (app, room, SDK type, minute): the sample counters, summed by the database (one GROUP BY)."""
    q = QosSample
    if s.get_bind().dialect.name == "postgresql":
        minute = cast(func.floor(q.time / MINUTE), BigInteger) * MINUTE
    else:  # SQLite: CAST truncates, which is floor for the positive times stored here
        minute = cast(q.time / MINUTE, Integer) * MINUTE
    up, down = q.direction == "uplink", q.direction == "downlink"
    # Receive time, freezes and communication time are what the client experienced: its own reports only
    # (the SFU's row of the same leg would count the same seconds again).
    received = and_(down, q.source == "client")

    def is_excellent(loss: Any, rtt: Any) -> ColumnElement[bool]:
        return and_(loss.is_not(None), loss < LOSS_HIGH, or_(rtt.is_(None), rtt < RTT_HIGH))

    video = or_(*(c.is_not(None) for c in (q.vbit, q.dbit, q.vfps, q.dfps, q.vpackets, q.vfreeze_ms)))
    audio = or_(q.abit.is_not(None), q.apackets.is_not(None), q.afreeze_ms.is_not(None))
    v_pixels = func.coalesce(q.vwidth * q.vheight, 0)
    d_pixels = func.coalesce(q.dwidth * q.dheight, 0)
    pixels = case((v_pixels >= d_pixels, v_pixels), else_=d_pixels)
    columns: dict[str, Any] = {}
    for leg, cond in (("up", up), ("e2e", down)):
        columns[f"video_{leg}_samples"] = _sum_if(and_(cond, q.vloss.is_not(None))) + _sum_if(
            and_(cond, q.dloss.is_not(None))
        )
        columns[f"video_{leg}_excellent"] = _sum_if(and_(cond, is_excellent(q.vloss, q.vrtt))) + _sum_if(
            and_(cond, is_excellent(q.dloss, q.drtt))
        )
        columns[f"audio_{leg}_samples"] = _sum_if(and_(cond, q.aloss.is_not(None)))
        columns[f"audio_{leg}_excellent"] = _sum_if(and_(cond, is_excellent(q.aloss, q.artt)))
    columns["video_rtt_sum"] = func.sum(func.coalesce(q.vrtt, 0)) + func.sum(func.coalesce(q.drtt, 0))
    columns["video_rtt_n"] = func.count(q.vrtt) + func.count(q.drtt)
    columns["audio_rtt_sum"] = func.sum(func.coalesce(q.artt, 0))
    columns["audio_rtt_n"] = func.count(q.artt)
    for name in ("push_attempts", "push_ok", "pull_attempts", "pull_ok"):
        columns[name] = _sum_if(up, func.coalesce(getattr(q, name), 0))
    v_freeze = func.coalesce(q.vfreeze_ms, 0) / 1000.0
    a_freeze = func.coalesce(q.afreeze_ms, 0) / 1000.0
    columns["video_recv_s"] = _sum_if(and_(received, video), q.interval_s)
    columns["video_freeze_s"] = _sum_if(
        and_(received, video), case((v_freeze < q.interval_s, v_freeze), else_=q.interval_s)
    )
    columns["audio_recv_s"] = _sum_if(and_(received, audio), q.interval_s)
    columns["audio_freeze_s"] = _sum_if(
        and_(received, audio), case((a_freeze < q.interval_s, a_freeze), else_=q.interval_s)
    )
    columns["comm_sd_s"] = _sum_if(and_(received, video, pixels <= SD_MAX_PIXELS), q.interval_s)
    columns["comm_hd_s"] = _sum_if(and_(received, video, pixels > SD_MAX_PIXELS, pixels <= HD_MAX_PIXELS), q.interval_s)
    columns["comm_uhd_s"] = _sum_if(and_(received, video, pixels > HD_MAX_PIXELS), q.interval_s)
    columns["comm_audio_s"] = _sum_if(and_(received, not_(video), audio), q.interval_s)
    stmt = (
        select(q.app_id, q.room_id, q.sdk_type, minute.label("m"), *(c.label(n) for n, c in columns.items()))
        .where(q.time >= start, q.time < end)
        .group_by(q.app_id, q.room_id, q.sdk_type, minute)
    )
    return list(columns), s.execute(stmt)


def minute_counters(s: Session, start: int, end: int) -> dict[Key, dict[str, float]]:
    """The counters of every (app, room, SDK type, minute) in ``[start, end)`` (minute-aligned)."""
    counters: dict[Key, dict[str, float]] = defaultdict(lambda: dict.fromkeys(COUNTERS, 0.0))

    # Online users: successful sessions overlapping each minute (sdk_type from the join facts).
    rs, ss = RoomSession, SessionStats
    online = s.execute(
        select(rs.app_id, rs.room_id, rs.join_time, rs.leave_time, ss.sdk_type)
        .outerjoin(ss, ss.session_id == rs.session_id)
        .where(
            rs.state != "FAIL",
            rs.join_time < end,
            or_(rs.leave_time.is_(None), rs.leave_time >= start),
        )
    )
    for app_id, room_id, join_time, leave_time, sdk_type in online:
        first = max(start, _minute(join_time))
        last = min(end - MINUTE, _minute(leave_time) if leave_time is not None else end - MINUTE)
        for m in range(first, last + 1, MINUTE):
            counters[(app_id, room_id, sdk_type or "native", m)]["online_users"] += 1

    # Join attempts and first-frame times, by the minute the join started.
    joins = s.execute(
        select(
            ss.app_id, ss.room_id, ss.sdk_type, ss.join_time, ss.ok, ss.join_ms, ss.first_audio_ms, ss.first_video_ms
        ).where(ss.join_time >= start, ss.join_time < end)
    )
    for app_id, room_id, sdk_type, join_time, ok, join_ms, first_audio, first_video in joins:
        c = counters[(app_id, room_id, sdk_type, _minute(join_time))]
        c["join_attempts"] += 1
        if ok:
            c["join_ok"] += 1
            c["join_ok_5s"] += int(join_ms is not None and join_ms <= SLOW_JOIN_MS)
        if first_audio is not None:
            c["first_audio_ms_sum"] += first_audio
            c["first_audio_n"] += 1
        if first_video is not None:
            c["first_video_ms_sum"] += first_video
            c["first_video_n"] += 1

    names, sums = _sample_sums(s, start, end)
    for app_id, room_id, sdk_type, m, *values in sums:
        c = counters[(app_id, room_id, sdk_type, int(m))]
        for name, value in zip(names, values, strict=True):
            c[name] += float(value or 0)
    return counters


def _lock(s: Session) -> bool:
    """PostgreSQL: this pass's advisory lock (False: another node holds it). SQLite: one writer anyway."""
    if s.get_bind().dialect.name != "postgresql":
        return True
    return bool(s.execute(text("SELECT pg_try_advisory_xact_lock(:k)"), {"k": _LOCK_KEY}).scalar())


def _mark(s: Session, name: str) -> float | None:
    mark = s.get(StatsMark, name)
    return None if mark is None else mark.done_until


def _set_mark(s: Session, name: str, value: float) -> None:
    mark = s.get(StatsMark, name)
    if mark is None:
        s.add(StatsMark(name=name, done_until=value))
    else:
        mark.done_until = value


@dataclass(frozen=True)
class Retention:
    """Days each kind of statistics row is kept (``Settings.stats_*_retention_days``)."""

    samples: int = 5
    minutes: int = 2
    days: int = 400
    events: int = 31


class StatsRollup:
    def __init__(self, db: Database, clock: Clock, retention: Retention, interval: float = 15.0) -> None:
        self._db = db
        self._clock = clock
        self.retention = retention
        self.interval = interval
        self._task = BackgroundTask("stats-rollup", self._loop)

    @classmethod
    def from_settings(cls, settings: Settings, db: Database, clock: Clock) -> StatsRollup:
        retention = Retention(
            samples=settings.stats_sample_retention_days,
            minutes=settings.stats_minute_retention_days,
            days=settings.stats_day_retention_days,
            events=settings.stats_event_retention_days,
        )
        return cls(db, clock, retention, settings.stats_rollup_interval)

    async def run_once(self) -> bool:
        """One pass: minutes, days, pruning. False when another node holds the pass (PostgreSQL)."""
        now = self._clock.now()
        return await self._db.run(lambda s: self._pass(s, now))

    def _pass(self, s: Session, now: float) -> bool:
        if not _lock(s):
            return False
        self._minutes(s, now)
        self._days(s, now)
        self._prune(s, now)
        return True

    def _minutes(self, s: Session, now: float) -> None:
        end = _minute(now) + MINUTE  # the current minute included
        start = end - (OVERLAP_MINUTES + 1) * MINUTE
        done = _mark(s, "minutes")
        if done is not None:
            oldest = _minute(now - self.retention.minutes * DAY)
            start = max(oldest, min(start, _minute(done) - OVERLAP_MINUTES * MINUTE))
        counters = minute_counters(s, start, end)
        s.execute(delete(StatsMinute).where(StatsMinute.minute >= start, StatsMinute.minute < end))
        rows = [
            {"app_id": a, "room_id": r, "sdk_type": t, "minute": m, **{k: c[k] for k in COUNTERS}}
            for (a, r, t, m), c in counters.items()
        ]
        if rows:
            s.execute(insert(StatsMinute), rows)
        _set_mark(s, "minutes", float(end - MINUTE))

    def _days(self, s: Session, now: float) -> None:
        last_day_start = math.floor((now - DAY_SETTLE) / DAY) * DAY - DAY  # the latest settled day
        done = _mark(s, "days")
        if done is None:
            # First run: begin with the oldest day minutes are still kept for.
            first = s.scalar(select(func.min(StatsMinute.minute)))
            if first is None:
                _set_mark(s, "days", float(last_day_start + DAY))
                return
            done = float(math.floor(first / DAY) * DAY)
        day = int(done)
        while day <= last_day_start:
            self.roll_day(s, day)
            day += DAY
        _set_mark(s, "days", float(day))

    @staticmethod
    def roll_day(s: Session, day_start: int) -> None:
        """(Re)write the ``stats_days`` rows of the UTC day starting at ``day_start``."""
        day_end = day_start + DAY
        day = day_of(day_start)
        m = StatsMinute
        per_app: dict[str, dict[str, float]] = defaultdict(lambda: dict.fromkeys(DAY_SUMS, 0.0))
        sums = s.execute(
            select(m.app_id, *(func.sum(getattr(m, c)) for c in DAY_SUMS))
            .where(m.minute >= day_start, m.minute < day_end)
            .group_by(m.app_id)
        )
        for app_id, *values in sums:
            per_app[app_id].update({c: float(v or 0) for c, v in zip(DAY_SUMS, values, strict=True)})
        # Peaks: per minute, users over all rooms and rooms with a user.
        peaks = s.execute(
            select(m.app_id, m.minute, func.sum(m.online_users), func.count(func.distinct(m.room_id)))
            .where(m.minute >= day_start, m.minute < day_end, m.online_users > 0)
            .group_by(m.app_id, m.minute)
        )
        max_users: dict[str, int] = defaultdict(int)
        max_rooms: dict[str, int] = defaultdict(int)
        for app_id, _minute_start, online, busy in peaks:
            max_users[app_id] = max(max_users[app_id], int(online))
            max_rooms[app_id] = max(max_rooms[app_id], int(busy))
        rs = RoomSession
        sessions = s.execute(
            select(rs.app_id, func.count())
            .where(rs.state != "FAIL", rs.join_time >= day_start, rs.join_time < day_end)
            .group_by(rs.app_id)
        )
        session_counts = {a: int(n) for a, n in sessions}
        # Users: distinct (room, user) online at some moment of the day, joined that day or before.
        users = s.execute(
            select(rs.app_id, func.count(func.distinct(rs.room_id + "\x1f" + rs.user_id)))
            .where(
                rs.state != "FAIL",
                rs.join_time < day_end,
                or_(rs.leave_time.is_(None), rs.leave_time >= day_start),
            )
            .group_by(rs.app_id)
        )
        user_counts = {a: int(u) for a, u in users}
        rooms = s.execute(
            select(Room.app_id, func.count())
            .where(Room.start_time < day_end, or_(Room.end_time.is_(None), Room.end_time >= day_start))
            .group_by(Room.app_id)
        )
        room_counts = {a: int(n) for a, n in rooms}
        apps = set(per_app) | set(session_counts) | set(user_counts) | set(room_counts)
        s.execute(delete(StatsDay).where(StatsDay.day == day))
        rows = [
            {
                "app_id": a,
                "day": day,
                "user_count": user_counts.get(a, 0),
                "session_count": session_counts.get(a, 0),
                "room_count": room_counts.get(a, 0),
                "max_online_users": max_users.get(a, 0),
                "max_online_rooms": max_rooms.get(a, 0),
                **per_app[a],
            }
            for a in sorted(apps)
        ]
        if rows:
            s.execute(insert(StatsDay), rows)

    def _prune(self, s: Session, now: float) -> None:
        r = self.retention
        s.execute(delete(QosSample).where(QosSample.time < now - r.samples * DAY))
        s.execute(delete(StatsMinute).where(StatsMinute.minute < now - r.minutes * DAY))
        s.execute(delete(StatsDay).where(StatsDay.day < day_of(now - r.days * DAY)))
        s.execute(delete(SessionStats).where(SessionStats.join_time < now - r.days * DAY))
        s.execute(delete(AbnormalEvent).where(AbnormalEvent.time < now - r.events * DAY))

    async def _loop(self) -> None:
        while True:
            try:
                await self.run_once()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("statistics roll-up failed; retrying in %.0f s", self.interval)
            await asyncio.sleep(self.interval)

    def start(self) -> None:
        self._task.start()

    async def stop(self) -> None:
        await self._task.stop()
