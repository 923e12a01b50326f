"""The read side of the statistics API (spec section 5): the twelve operations over the statistics tables.

Reads only; the tables are written by the media plane (``rooms``, ``room_sessions``), the recording
outputs (``usage_entries``) and the statistics writer and roll-ups (``stats_*``; docs/statistics.md defines
every column and metric). Every query is bounded by the app and a time range, on the tables' indexes:

- rooms, users: ``rooms (app_id, start_time)``, ``room_sessions (app_id, join_time)``;
- real-time series: ``stats_minutes (app_id, room_id, minute)`` / unique ``(app_id, minute, ...)``;
- history and usage: ``stats_days (app_id, day)``, ``usage_entries (app_id, day)``;
- QoS details: ``stats_qos_samples (app_id, room_id, time)``;
- abnormal events: ``stats_abnormal_events (app_id, time)``.

A tenant sees only its own apps: an app of another tenant (or none) is RTC.00001015, as everywhere.
"""

from __future__ import annotations

import functools
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, Select, case, distinct, func, literal, or_, select, tuple_
from sqlalchemy.orm import Session

from emberrtc.domain.app import load_app
from emberrtc.domain.clock import Clock
from emberrtc.domain.tenant import Principal
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
    UsageEntry,
)

# --- the operations' queries (parsed and checked by ``api.schemas.stats``) -----------------------------


@dataclass(frozen=True)
class Window:
    """``[start, end]`` in UNIX seconds."""

    start: float
    end: float


@dataclass(frozen=True)
class Days:
    """``[first, last]`` UTC days, both included."""

    first: date
    last: date


@dataclass(frozen=True)
class Page:
    limit: int
    offset: int


@dataclass(frozen=True)
class RoomsQuery:  # spec 5.1 Table 5-2
    app: str
    room_id: str | None
    state: str | None
    window: Window
    page: Page


@dataclass(frozen=True)
class UsersQuery:  # spec 5.2 Table 5-9
    app: str
    room_id: str | None
    uid: str | None
    nickname: str | None
    regions: tuple[str, ...]
    isps: tuple[str, ...]
    states: tuple[str, ...]
    window: Window
    page: Page
    detail: bool


@dataclass(frozen=True)
class SeriesQuery:
    """Real-time per-minute series (spec 5.3, 5.5, 5.6)."""

    app: str
    room_id: str | None
    metric: str
    sdk_type: str | None
    window: Window


@dataclass(frozen=True)
class DimensionQuery:  # spec 5.4 Table 5-23
    app: str
    room_id: str | None
    metric: str
    dimension: str
    time: float


@dataclass(frozen=True)
class UsageQuery:  # spec 5.7 Table 5-44
    app: str
    metric: str
    days: Days


@dataclass(frozen=True)
class HistoryQuery:  # spec 5.8 Table 5-51, 5.9 Table 5-58
    app: str
    metrics: tuple[str, ...]
    days: Days


@dataclass(frozen=True)
class QosQuery:  # spec 5.10 Table 5-65
    app: str
    room_id: str
    user_id: str | None
    peer_id: str | None
    stream_id: str | None
    direction: str | None
    mids: tuple[str, ...]
    window: Window
    by_server_time: bool
    page: Page


@dataclass(frozen=True)
class AbnormalQuery:  # spec 5.11 Table 5-72, 5.12 Table 5-79
    app: str
    room_id: str | None
    uid: str | None
    window: Window
    page: Page
    dimensions: tuple[str, ...]


def today(now: float) -> date:
    return datetime.fromtimestamp(now, UTC).date()


MINUTE = 60
#: spec 5.10 ``time_type=ctime`` selects on the client's clock; samples are looked for within this many
#: seconds of the window by the server's clock (which the index orders), so clients that far off still show.
CLIENT_CLOCK_SLACK = 3600
DASH = "-"  # spec Table 5-6 / 5-13: end or leave time of what has not ended

# --- abnormal event descriptions (spec 5.11 Table 5-76) -------------------------------------------------

ABNORMAL_TYPES = {
    1: "It takes a long time to enter a room (longer than 5s).",
    2: "Video freezing",
    3: "Audio freezing",
}
JOIN_FACTORS = {
    1: "Link setup failure",
    2: "The room is not idle.",
    3: "Server exception",
    4: "The server returns 503.",
    5: "Authentication failed",
    6: "Authentication reattempt",
    7: "Time synchronization failure.",
    8: "Incorrect URL.",
    9: "An internal error occurs on the terminal.",
    15: "An exception occurred when setting the SDP in the browser.",
    90000004: "The response to the signaling sent by the SDK for joining a room times out.",
    90100009: "The web system does not receive the configuration information delivered by the MSP.",
    90100008: "The WebSocket link fails to be established.",
    10000001: "Exception information returned by the server.",
    31000003: "Exception information returned by the server.",
    32000030: "Exception information returned by the server.",
}
FREEZE_FACTORS = {
    1: "Heavy system CPU usage",
    2: "Heavy app CPU usage",
    3: "Uplink audio latency",
    4: "Uplink audio jitter",
    5: "Uplink video latency",
    6: "Uplink video jitter",
    7: "Downlink audio latency",
    8: "Downlink audio jitter",
    9: "Downlink video latency",
    10: "Downlink video jitter",
    11: "Uplink audio packet loss",
    12: "Uplink video packet loss",
    13: "Downlink audio packet loss",
    14: "Downlink video packet loss",
    15: "No sound is heard in the downlink audio.",
    16: "Others",
    17: "The peer user is offline.",
    18: "The peer user has no code stream.",
    19: "No frame rate of the peer user",
    20: "There is no downlink code stream on the local server.",
    21: "Downlink No Frame Rate of Local Server",
}


def factor_desc(abnormal_type: int, factor: int) -> str:
    table = JOIN_FACTORS if abnormal_type == 1 else FREEZE_FACTORS
    return table.get(factor, "Others")


# --- usage tiers ----------------------------------------------------------------------------------------

#: spec 5.7 Table 5-48 splits durations into SD, HD and "UHD" (``video_hdp``) video and audio. Ember's
#: tiers, by the video's pixel count: SD up to 640x480, HD up to 1280x720, above that ``video_hdp``.
SD_MAX_PIXELS = 640 * 480
HD_MAX_PIXELS = 1280 * 720


def usage_tier(width: int | None, height: int | None) -> str:
    """``audio``, ``video_sd``, ``video_hd`` or ``video_hdp`` for a file of this video size."""
    if not width or not height:
        return "audio"
    pixels = width * height
    if pixels <= SD_MAX_PIXELS:
        return "video_sd"
    if pixels <= HD_MAX_PIXELS:
        return "video_hd"
    return "video_hdp"


# --- formatting -----------------------------------------------------------------------------------------


def spec_second(ts: float) -> str:
    """UTC ``YYYY-MM-DDThh:mm:ssZ`` (section 5's time format)."""
    return _second_text(int(ts))


@functools.lru_cache(maxsize=4096)
def _second_text(second: int) -> str:
    # A QoS answer repeats the same seconds across its series (one report's legs share a time).
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(second))


def _ratio(num: float, den: float) -> float | None:
    return round(num / den, 6) if den else None


def _grouped(keys: list[tuple[str, str, str, str]]) -> list[tuple[tuple[str, str, str], list[Any]]]:
    """Consecutive keys of one leg (uid, peer, source) together, in order."""
    out: list[tuple[tuple[str, str, str], list[Any]]] = []
    for key in keys:
        if out and out[-1][0] == key[:3]:
            out[-1][1].append(key)
        else:
            out.append((key[:3], [key]))
    return out


def _day_range(first: date, last: date) -> list[date]:
    return [first + timedelta(days=i) for i in range((last - first).days + 1)]


class StatsQueries:
    """The twelve section-5 operations, each one read-only unit of work."""

    def __init__(self, db: Database, clock: Clock, domain: str) -> None:
        self._db = db
        self._clock = clock
        #: spec Table 5-6 / 5-13 ``domain``: the host name clients reach this server by.
        self._domain = domain

    async def _read(self, principal: Principal, app_id: str, work: Callable[[Session], Any]) -> Any:
        def run(s: Session) -> Any:
            load_app(s, principal, app_id)
            return work(s)

        return await self._db.run(run)

    # --- 5.1 rooms ------------------------------------------------------------------------------------

    async def rooms(self, principal: Principal, q: RoomsQuery) -> dict[str, Any]:
        """Room runs that were open at some moment of the window (started before its end, not closed before
        its start), newest first."""
        now = self._clock.now()
        cond = [
            Room.app_id == q.app,
            Room.start_time <= q.window.end,
            or_(Room.end_time.is_(None), Room.end_time >= q.window.start),
        ]
        if q.room_id is not None:
            cond.append(Room.room_id == q.room_id)
        if q.state is not None:
            cond.append(Room.state == q.state)

        def work(s: Session) -> dict[str, Any]:
            total = s.scalar(select(func.count()).select_from(Room).where(*cond)) or 0
            rows = s.execute(
                select(Room)
                .where(*cond)
                .order_by(Room.start_time.desc(), Room.room_uid)
                .limit(q.page.limit)
                .offset(q.page.offset)
            ).scalars()
            rooms = [
                {
                    "domain": self._domain,
                    "app": r.app_id,
                    "room_id": r.room_id,
                    "state": r.state,
                    "duration": r.duration if r.duration is not None else max(0, int(now - r.start_time)),
                    "start_time": spec_second(r.start_time),
                    "end_time": spec_second(r.end_time) if r.end_time is not None else DASH,
                }
                for r in rows
            ]
            return {"total": total, "limit": q.page.limit, "offset": q.page.offset, "room_info_list": rooms}

        return await self._read(principal, q.app, work)  # type: ignore[no-any-return]

    # --- 5.2 users ------------------------------------------------------------------------------------

    async def users(self, principal: Principal, q: UsersQuery) -> dict[str, Any]:
        """Sessions (``type=detail``) or users per room (``summary``) present at some moment of the window.

        A summary row is one (room, user): its latest session's details, the first join time and the last
        leave time (``-`` while any session is online); its state is ``ONLINE`` if any session is,
        else ``OFFLINE`` if any session got in, else ``FAIL``.
        """
        rs, st = RoomSession, SessionStats
        region = func.coalesce(st.region, literal("OT"))
        isp = func.coalesce(st.isp, literal(""))
        cond: list[ColumnElement[bool]] = [
            rs.app_id == q.app,
            rs.join_time <= q.window.end,
            or_(rs.leave_time.is_(None), rs.leave_time >= q.window.start),
        ]
        if q.room_id is not None:
            cond.append(rs.room_id == q.room_id)
        if q.uid is not None:
            cond.append(rs.user_id == q.uid)
        if q.nickname is not None:
            cond.append(rs.nickname == q.nickname)
        if q.regions:
            cond.append(region.in_(q.regions))
        if q.isps:
            cond.append(isp.in_(q.isps))
        joined = rs.__table__.outerjoin(st.__table__, st.session_id == rs.session_id)

        def row(r: Any, state: str, join_time: float, leave: float | None, online: bool) -> dict[str, Any]:
            return {
                "domain": self._domain,
                "app": r.app_id,
                "room_id": r.room_id,
                "uid": r.user_id,
                "session": r.session_id,
                "state": state,
                "nick_name": r.nickname or "",
                "ip": r.client_ip or "",
                "region": r.region,
                "isp": r.isp,
                "device_model": r.device_model or "",
                "platform": r.platform or "",
                "sdk": r.sdk_version or "",
                "join_time": spec_second(join_time),
                "leave_time": DASH if online or leave is None else spec_second(leave),
            }

        cols = (
            rs.session_id,
            rs.app_id,
            rs.room_id,
            rs.user_id,
            rs.nickname,
            rs.state,
            rs.join_time,
            rs.leave_time,
            rs.client_ip,
            rs.platform,
            rs.sdk_version,
            rs.device_model,
            region.label("region"),
            isp.label("isp"),
        )

        def detail(s: Session) -> dict[str, Any]:
            c = [*cond, rs.state.in_(q.states)] if q.states else cond
            total = s.scalar(select(func.count()).select_from(joined).where(*c)) or 0
            rows = s.execute(
                select(*cols)
                .select_from(joined)
                .where(*c)
                .order_by(rs.join_time.desc(), rs.session_id)
                .limit(q.page.limit)
                .offset(q.page.offset)
            )
            users = [row(r, r.state, r.join_time, r.leave_time, r.state == "ONLINE") for r in rows]
            return {"total": total, "limit": q.page.limit, "offset": q.page.offset, "users": users}

        def summary(s: Session) -> dict[str, Any]:
            online = func.sum(case((rs.state == "ONLINE", 1), else_=0))
            got_in = func.sum(case((rs.state == "OFFLINE", 1), else_=0))
            state = case((online > 0, literal("ONLINE")), (got_in > 0, literal("OFFLINE")), else_=literal("FAIL"))
            groups = (
                select(
                    rs.room_id,
                    rs.user_id,
                    func.min(rs.join_time).label("first_join"),
                    func.max(rs.join_time).label("last_join"),
                    func.max(rs.leave_time).label("last_leave"),
                    state.label("state"),
                )
                .select_from(joined)
                .where(*cond)
                .group_by(rs.room_id, rs.user_id)
            )
            if q.states:
                groups = groups.having(state.in_(q.states))
            sub = groups.subquery()
            total = s.scalar(select(func.count()).select_from(sub)) or 0
            page = list(
                s.execute(
                    select(sub)
                    .order_by(sub.c.last_join.desc(), sub.c.room_id, sub.c.user_id)
                    .limit(q.page.limit)
                    .offset(q.page.offset)
                )
            )
            latest: dict[tuple[str, str], Any] = {}
            if page:
                # the latest session of each (room, user) of the page, in one read
                pairs = [(g.room_id, g.user_id) for g in page]
                for r in s.execute(
                    select(*cols)
                    .select_from(joined)
                    .where(*cond, tuple_(rs.room_id, rs.user_id).in_(pairs))
                    .order_by(rs.join_time.desc(), rs.session_id)
                ):
                    latest.setdefault((r.room_id, r.user_id), r)
            users = [
                row(latest[(g.room_id, g.user_id)], g.state, g.first_join, g.last_leave, g.state == "ONLINE")
                for g in page
            ]
            return {"total": total, "limit": q.page.limit, "offset": q.page.offset, "users": users}

        return await self._read(principal, q.app, detail if q.detail else summary)  # type: ignore[no-any-return]

    # --- 5.3, 5.5, 5.6 real-time per-minute series ------------------------------------------------------

    async def _minutes(
        self, principal: Principal, q: SeriesQuery, columns: Sequence[Any], fill: bool
    ) -> list[tuple[int, Sequence[Any]]]:
        """``(minute, aggregates)`` for each minute of the window the roll-up has finished: the minutes
        with rows, and with ``fill`` every other finished minute too (aggregates None)."""
        m = StatsMinute
        first = int(q.window.start // MINUTE) * MINUTE
        cond = [m.app_id == q.app, m.minute >= first, m.minute <= q.window.end]
        if q.room_id is not None:
            cond.append(m.room_id == q.room_id)
        if q.sdk_type is not None:
            cond.append(m.sdk_type == q.sdk_type)

        def work(s: Session) -> list[tuple[int, Sequence[Any]]]:
            found: dict[int, Sequence[Any]] = {
                int(r[0]): tuple(r[1:])
                for r in s.execute(select(m.minute, *columns).where(*cond).group_by(m.minute).order_by(m.minute))
            }
            if not fill:
                return sorted(found.items())
            done = s.scalar(select(StatsMark.done_until).where(StatsMark.name == "minutes"))
            upto = min(q.window.end, (done or 0) - MINUTE) if done is not None else -1
            last_found = max(found) if found else -1
            out: list[tuple[int, Sequence[Any]]] = []
            for minute in range(first, int(max(upto, last_found)) + 1, MINUTE):
                out.append((minute, found.get(minute, ())))
            return out

        return await self._read(principal, q.app, work)  # type: ignore[no-any-return]

    async def realtime_scale(self, principal: Principal, q: SeriesQuery) -> dict[str, Any]:
        """spec 5.3: per minute, ``OnlineUsers`` (sessions online at some moment of the minute) or
        ``RoomCount`` (rooms with a user online). Minutes the roll-up has finished without rows are 0."""
        m = StatsMinute
        if q.metric == "OnlineUsers":
            agg: Any = func.sum(m.online_users)
        else:
            agg = func.count(distinct(case((m.online_users > 0, m.room_id))))
        rows = await self._minutes(principal, q, [agg], fill=True)
        return {"scale": [{"time": spec_second(t), "value": int(v[0] or 0) if v else 0} for t, v in rows]}

    _QUALITY: dict[str, tuple[str, str]] = {
        "JoinSuccessRate": ("join_ok", "join_attempts"),
        "JoinSuccess5SecsRate": ("join_ok_5s", "join_attempts"),
        "VideoFreezeRate": ("video_freeze_s", "video_recv_s"),
        "AudioFreezeRate": ("audio_freeze_s", "audio_recv_s"),
        "VideoUpstreamExcellentTransRate": ("video_up_excellent", "video_up_samples"),
        "AudioUpstreamExcellentTransRate": ("audio_up_excellent", "audio_up_samples"),
        "VideoExcellentTransRate": ("video_e2e_excellent", "video_e2e_samples"),
        "AudioExcellentTransRate": ("audio_e2e_excellent", "audio_e2e_samples"),
    }

    async def realtime_rate(self, principal: Principal, q: SeriesQuery) -> list[dict[str, Any]]:
        """spec 5.5 and 5.6: per minute, the metric's ratio (docs/statistics.md); minutes without any
        attempt or sample (no denominator) are left out rather than shown as 0 or 1."""
        num, den = self._QUALITY[q.metric]
        m = StatsMinute
        rows = await self._minutes(principal, q, [func.sum(getattr(m, num)), func.sum(getattr(m, den))], fill=False)
        out = []
        for t, (n, d) in rows:
            value = _ratio(float(n or 0), float(d or 0))
            if value is not None:
                out.append({"time": spec_second(t), "value": value})
        return out

    # --- 5.4 distribution at one moment -----------------------------------------------------------------

    async def realtime_dimension(self, principal: Principal, q: DimensionQuery) -> dict[str, Any]:
        """spec 5.4: users online at ``time`` (joined at or before it, not left before it), counted by
        dimension value, most users first."""
        rs, st = RoomSession, SessionStats
        key: Any = {
            "region": func.coalesce(st.region, literal("OT")),
            "access_net": func.coalesce(st.access_net, literal("unknown")),
            "platform": func.coalesce(rs.platform, literal("unknown")),
            "sdk": func.coalesce(rs.sdk_version, literal("unknown")),
        }[q.dimension]
        cond = [
            rs.app_id == q.app,
            rs.join_time <= q.time,
            rs.state != "FAIL",
            or_(rs.leave_time.is_(None), rs.leave_time >= q.time),
        ]
        if q.room_id is not None:
            cond.append(rs.room_id == q.room_id)
        n = func.count().label("n")
        stmt: Select[Any] = (
            select(key.label("k"), n)
            .select_from(rs.__table__.outerjoin(st.__table__, st.session_id == rs.session_id))
            .where(*cond)
            .group_by(key)
            .order_by(n.desc(), key)
        )

        def work(s: Session) -> dict[str, Any]:
            return {"dimensions": [{"dimension": k, "online_users": int(c)} for k, c in s.execute(stmt)]}

        return await self._read(principal, q.app, work)  # type: ignore[no-any-return]

    # --- 5.7 usage ------------------------------------------------------------------------------------

    async def usage(self, principal: Principal, q: UsageQuery) -> dict[str, Any]:
        """spec 5.7: per day of the range up to today, seconds by tier. ``CommunicationDuration`` comes from
        the daily roll-up (finished days); ``RecordDuration`` and ``TranscodeDuration`` from the recording
        usage that ``ember usage`` counts (``usage_entries``, today included), split by the file's video
        size (:func:`usage_tier`)."""
        last = min(q.days.last, today(self._clock.now()))
        first, lo, hi = q.days.first, q.days.first.isoformat(), last.isoformat()

        def work(s: Session) -> dict[str, Any]:
            per_day: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
            if q.metric == "CommunicationDuration":
                d = StatsDay
                for c in s.execute(
                    select(d.day, d.comm_sd_s, d.comm_hd_s, d.comm_uhd_s, d.comm_audio_s).where(
                        d.app_id == q.app, d.day >= lo, d.day <= hi
                    )
                ):
                    tiers = per_day[c.day]
                    tiers["video_sd"] += c.comm_sd_s
                    tiers["video_hd"] += c.comm_hd_s
                    tiers["video_hdp"] += c.comm_uhd_s
                    tiers["audio"] += c.comm_audio_s
            else:
                u = UsageEntry
                seconds = u.recorded_seconds if q.metric == "RecordDuration" else u.transcoded_seconds
                for r in s.execute(
                    select(u.day, u.width, u.height, func.sum(seconds).label("s"))
                    .where(u.app_id == q.app, u.day >= lo, u.day <= hi)
                    .group_by(u.day, u.width, u.height)
                ):
                    per_day[r.day][usage_tier(r.width, r.height)] += float(r.s or 0)
            out = []
            for day in _day_range(first, last) if first <= last else []:
                tiers = per_day.get(day.isoformat(), {})
                values = {k: int(round(tiers.get(k, 0.0))) for k in ("video_sd", "video_hd", "video_hdp", "audio")}
                out.append({"date": day.isoformat(), **values, "total_duration": sum(values.values())})
            return {"usage": out}

        return await self._read(principal, q.app, work)  # type: ignore[no-any-return]

    # --- 5.8, 5.9 history -------------------------------------------------------------------------------

    async def _days(self, principal: Principal, q: HistoryQuery) -> list[tuple[str, StatsDay | None]]:
        """The days of the range before today, with their roll-up row (None: nothing happened that day)."""
        last = min(q.days.last, today(self._clock.now()) - timedelta(days=1))

        def work(s: Session) -> list[tuple[str, StatsDay | None]]:
            if q.days.first > last:
                return []
            d = StatsDay
            rows = {
                r.day: r
                for r in s.execute(
                    select(d).where(d.app_id == q.app, d.day >= q.days.first.isoformat(), d.day <= last.isoformat())
                ).scalars()
            }
            return [(day.isoformat(), rows.get(day.isoformat())) for day in _day_range(q.days.first, last)]

        return await self._read(principal, q.app, work)  # type: ignore[no-any-return]

    _SCALE: dict[str, tuple[str, Callable[[StatsDay], float]]] = {
        "UserCount": ("user_count", lambda d: d.user_count),
        "SessionCount": ("session_count", lambda d: d.session_count),
        "RoomCount": ("room_count", lambda d: d.room_count),
        "MaxOnlineUserCount": ("max_online_user_count", lambda d: d.max_online_users),
        "MaxOnlineRoomCount": ("max_online_room_count", lambda d: d.max_online_rooms),
        "CommunicationDuration": (
            "communication_duration",
            lambda d: d.comm_audio_s + d.comm_sd_s + d.comm_hd_s + d.comm_uhd_s,
        ),
        "VideoCommunicationDuration": (
            "video_communication_duration",
            lambda d: d.comm_sd_s + d.comm_hd_s + d.comm_uhd_s,
        ),
        "AudioCommunicationDuration": ("audio_communication_duration", lambda d: d.comm_audio_s),
    }

    async def history_scale(self, principal: Principal, q: HistoryQuery) -> dict[str, Any]:
        """spec 5.8: per finished day, the asked metrics (0 on days without calls)."""
        out = []
        for day, row in await self._days(principal, q):
            item: dict[str, Any] = {"date": day}
            for metric in q.metrics:
                field, get = self._SCALE[metric]
                item[field] = int(round(get(row))) if row is not None else 0
            out.append(item)
        return {"scale": out}

    _HISTORY_QUALITY: dict[str, tuple[str, str, str, float]] = {
        # metric: (response field, numerator column, denominator column, scale)
        "JoinSuccessRate": ("join_success_rate", "join_ok", "join_attempts", 1.0),
        "JoinSuccess5SecsRate": ("join_success_in5secs_rate", "join_ok_5s", "join_attempts", 1.0),
        "VideoFreezeRate": ("video_freeze_rate", "video_freeze_s", "video_recv_s", 1.0),
        "AudioFreezeRate": ("audio_freeze_rate", "audio_freeze_s", "audio_recv_s", 1.0),
        "FirstVideoRecvTime": ("first_video_recv_time", "first_video_ms_sum", "first_video_n", 1.0),
        "FirstAudioRecvTime": ("first_audio_recv_time", "first_audio_ms_sum", "first_audio_n", 1.0),
        "PullStreamSuccessRate": ("pull_stream_success_rate", "pull_ok", "pull_attempts", 1.0),
        "PushStreamSuccessRate": ("push_stream_success_rate", "push_ok", "push_attempts", 1.0),
        "VideoUpstreamExcellentTransRate": (
            "video_upstream_excellent_trans_rate",
            "video_up_excellent",
            "video_up_samples",
            1.0,
        ),
        "AudioUpstreamExcellentTransRate": (
            "audio_upstream_excellent_trans_rate",
            "audio_up_excellent",
            "audio_up_samples",
            1.0,
        ),
        "VideoExcellentTransRate": ("video_excellent_trans_rate", "video_e2e_excellent", "video_e2e_samples", 1.0),
        "AudioExcellentTransRate": ("audio_excellent_trans_rate", "audio_e2e_excellent", "audio_e2e_samples", 1.0),
        # End-to-end delay: the mean RTT between clients and the SFU (up and down legs) is the sum of one
        # way on each leg, publisher to SFU to subscriber (docs/statistics.md).
        "VideoTransDelay": ("video_trans_delay", "video_rtt_sum", "video_rtt_n", 1.0),
        "AudioTransDelay": ("audio_trans_delay", "audio_rtt_sum", "audio_rtt_n", 1.0),
    }
    _WHOLE_MS = frozenset({"FirstVideoRecvTime", "FirstAudioRecvTime"})  # Table 5-62: Long

    async def history_quality(self, principal: Principal, q: HistoryQuery) -> dict[str, Any]:
        """spec 5.9: per finished day, the asked metrics; a metric without any attempt or sample that day
        is left out of that day's item (not invented as 0 or 1)."""
        out = []
        for day, row in await self._days(principal, q):
            item: dict[str, Any] = {"date": day}
            for metric in q.metrics:
                field, num, den, scale = self._HISTORY_QUALITY[metric]
                if row is None:
                    continue
                value = _ratio(float(getattr(row, num)) * scale, float(getattr(row, den)))
                if value is not None:
                    item[field] = int(round(value)) if metric in self._WHOLE_MS else value
            out.append(item)
        return {"quality": out}

    # --- 5.10 user call indicators ------------------------------------------------------------------------

    async def qos_details(self, principal: Principal, q: QosQuery) -> dict[str, Any]:
        """spec 5.10: the raw samples of a room as series per (user, peer, mid). ``peerid`` ``0`` is the
        user's uplink. Where a leg has client samples, those are shown; the SFU's (Janus) samples of a leg
        show only when its client sent none. Series are paged with ``limit``/``offset``.

        Two reads: which series exist (counts per leg, source and mid, aggregated by the database), then the
        points of the page's series only, so a big room costs what one page shows."""
        qs = QosSample
        t = qs.time if q.by_server_time else func.coalesce(qs.ctime, qs.time)
        cond = [qs.app_id == q.app, qs.room_id == q.room_id, t >= q.window.start, t <= q.window.end]
        if not q.by_server_time:
            # the client's clock may be off; the server's time keeps the (app, room, time) index in use
            cond += [qs.time >= q.window.start - CLIENT_CLOCK_SLACK, qs.time <= q.window.end + CLIENT_CLOCK_SLACK]
        if q.user_id is not None:
            cond.append(qs.user_id == q.user_id)
        if q.peer_id is not None:
            cond.append(qs.peer_id == q.peer_id)
        if q.direction is not None:
            cond.append(qs.direction == q.direction)
        present = (
            select(qs.user_id, qs.peer_id, qs.source, *(func.count(getattr(qs, mid)) for mid in q.mids))
            .where(*cond)
            .group_by(qs.user_id, qs.peer_id, qs.source)
        )

        def work(s: Session) -> dict[str, Any]:
            counts: dict[tuple[str, str], dict[str, Sequence[Any]]] = defaultdict(dict)
            for r in s.execute(present):
                counts[(r[0], r[1])][r[2]] = r[3:]
            keys: list[tuple[str, str, str, str]] = []  # (uid, peer, source, mid), in answer order
            for (uid, peer), by_source in sorted(counts.items()):
                source = "client" if "client" in by_source else "janus"
                n = by_source.get(source) or ()
                keys += [(uid, peer, source, mid) for mid, c in zip(q.mids, n, strict=False) if c]
            page = keys[q.page.offset : q.page.offset + q.page.limit]
            if not page:
                return {"room_id": q.room_id, "data": []}
            legs = _grouped(page)
            mids = list(dict.fromkeys(k[3] for k in page))
            points: dict[tuple[str, str, str], list[Any]] = defaultdict(list)
            for r in s.execute(
                select(qs.user_id, qs.peer_id, qs.source, t, *(getattr(qs, mid) for mid in mids))
                .where(*cond, tuple_(qs.user_id, qs.peer_id, qs.source).in_([leg for leg, _ in legs]))
                .order_by(t)
            ):
                points[(r[0], r[1], r[2])].append(r)
            series = []
            for (uid, peer, source), group in legs:
                rows = points.get((uid, peer, source), [])
                times = [spec_second(r[3]) for r in rows]
                for key in group:
                    i = 4 + mids.index(key[3])
                    data = [{"time": times[j], "value": float(r[i])} for j, r in enumerate(rows) if r[i] is not None]
                    series.append({"uid": uid, "peerid": peer, "mid": key[3], "data": data})
            return {"room_id": q.room_id, "data": series}

        return await self._read(principal, q.app, work)  # type: ignore[no-any-return]

    # --- 5.11, 5.12 abnormal events -----------------------------------------------------------------------

    @staticmethod
    def _abnormal_cond(q: AbnormalQuery) -> list[ColumnElement[bool]]:
        e = AbnormalEvent
        cond = [e.app_id == q.app, e.time >= q.window.start, e.time <= q.window.end]
        if q.room_id is not None:
            cond.append(e.room_id == q.room_id)
        if q.uid is not None:
            cond.append(e.user_id == q.uid)
        return cond

    async def abnormal_events(self, principal: Principal, q: AbnormalQuery) -> dict[str, Any]:
        """spec 5.11: the events of the window, newest first, paged."""
        e = AbnormalEvent
        cond = self._abnormal_cond(q)

        def work(s: Session) -> dict[str, Any]:
            total = s.scalar(select(func.count()).select_from(e).where(*cond)) or 0
            rows = s.execute(
                select(e).where(*cond).order_by(e.time.desc(), e.event_id).limit(q.page.limit).offset(q.page.offset)
            ).scalars()
            events = [
                {
                    "time": spec_second(r.time),
                    "uid": r.user_id,
                    "room_id": r.room_id,
                    "stage": r.stage,
                    "location": r.location,
                    "peer_uid": r.peer_uid,
                    "abnormal_type": r.abnormal_type,
                    "abnormal_type_desc": ABNORMAL_TYPES.get(r.abnormal_type, "Others"),
                    "abnormal_factor": r.abnormal_factor,
                    "abnormal_factor_desc": factor_desc(r.abnormal_type, r.abnormal_factor),
                }
                for r in rows
            ]
            return {"total": total, "events": events}

        return await self._read(principal, q.app, work)  # type: ignore[no-any-return]

    async def abnormal_dimension(self, principal: Principal, q: AbnormalQuery) -> dict[str, Any]:
        """spec 5.12: distinct users with events in the window, per type and/or factor, most users first."""
        e = AbnormalEvent
        by_type = "abnormal_type" in q.dimensions
        by_factor = "abnormal_factor" in q.dimensions
        keys: list[Any] = []
        if by_type:
            keys.append(e.abnormal_type)
        if by_factor:
            # a factor code means something only with its type (1 is a join factor and a freeze factor)
            keys = [e.abnormal_type, e.abnormal_factor]
        users = func.count(distinct(e.user_id)).label("users")
        stmt = select(*keys, users).where(*self._abnormal_cond(q)).group_by(*keys).order_by(users.desc(), *keys)

        def work(s: Session) -> dict[str, Any]:
            out = []
            for r in s.execute(stmt):
                item: dict[str, Any] = {}
                kind = r.abnormal_type
                if by_type:
                    item["abnormal_type"] = kind
                    item["abnormal_type_desc"] = ABNORMAL_TYPES.get(kind, "Others")
                if by_factor:
                    item["abnormal_factor"] = r.abnormal_factor
                    item["abnormal_factor_desc"] = factor_desc(kind, r.abnormal_factor)
                item["user_count"] = int(r.users)
                out.append(item)
            return {"dimensions": out}

        return await self._read(principal, q.app, work)  # type: ignore[no-any-return]
