"""Query strings of the statistics operations (spec section 5), checked at the edge.

Section 5's operations take only query parameters. A required one that is absent (or empty) is 400
``DATA.100011001`` with SparkRTC's own message, ``Required String parameter 'app' is not present``; a value
of the wrong shape (a time not ``YYYY-MM-DDThh:mm:ssZ``, a day not ``YYYY-MM-DD``, an unknown metric, a span
longer than the operation allows, a negative ``limit``) is RTC.00001003 from the one catalogue.

Each ``parse_*`` function turns the request's query string into a frozen query object for
``stats.queries``; times become UNIX seconds, days stay ``YYYY-MM-DD`` strings (they sort in time order).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import UTC, date, datetime, timedelta

from starlette.datastructures import QueryParams

from emberrtc.api.schemas.common import check_id
from emberrtc.domain.errors import InvalidParameterValue, StatsParameterMissing
from emberrtc.stats.queries import (
    AbnormalQuery,
    Days,
    DimensionQuery,
    HistoryQuery,
    Page,
    QosQuery,
    RoomsQuery,
    SeriesQuery,
    UsageQuery,
    UsersQuery,
    Window,
    today,
)
from emberrtc.stats.region import region_code

HOUR = 3600
DAY = 86_400
#: spec 5.1, 5.2: "The maximum query time span is 90 days."
MAX_SPAN_LIST = 90 * DAY
#: spec 5.3, 5.5, 5.6, 5.11, 5.12: one day.
MAX_SPAN_REALTIME = DAY
#: spec 5.8, 5.9: 31 days (usage, 5.7, states none; Ember applies the same).
MAX_DAYS_HISTORY = 31
#: spec 5.10: data of the last five days; one query spans at most 24 hours.
QOS_RETENTION = 5 * DAY
MAX_SPAN_QOS = DAY
#: ``limit`` when not given (spec 5.11 says 10; Ember uses it for every list) and the most one page holds.
DEFAULT_LIMIT = 10
MAX_LIMIT = 1000

_TIME_RE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$")
_DAY_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_INT_RE = re.compile(r"^[+]?\d{1,9}$")

# --- the metric names of each operation (spec tables) ---------------------------------------------------

SCALE_METRICS = ("OnlineUsers", "RoomCount")  # Table 5-16
DIMENSION_METRICS = ("OnlineUsers",)  # Table 5-23
DIMENSIONS = ("region", "access_net", "platform", "sdk")  # Table 5-23
QUALITY_METRICS = ("JoinSuccessRate", "JoinSuccess5SecsRate", "VideoFreezeRate", "AudioFreezeRate")  # 5-30
NETWORK_METRICS = (  # Table 5-37
    "VideoUpstreamExcellentTransRate",
    "AudioUpstreamExcellentTransRate",
    "VideoExcellentTransRate",
    "AudioExcellentTransRate",
)
SDK_TYPES = ("native", "webrtc")
USAGE_METRICS = ("CommunicationDuration", "TranscodeDuration", "RecordDuration")  # Table 5-44
HISTORY_SCALE_METRICS = (  # Table 5-51
    "UserCount",
    "SessionCount",
    "RoomCount",
    "MaxOnlineUserCount",
    "MaxOnlineRoomCount",
    "CommunicationDuration",
    "VideoCommunicationDuration",
    "AudioCommunicationDuration",
)
HISTORY_QUALITY_METRICS = (  # Table 5-58
    "JoinSuccessRate",
    "JoinSuccess5SecsRate",
    "VideoFreezeRate",
    "AudioFreezeRate",
    "FirstVideoRecvTime",
    "FirstAudioRecvTime",
    "PullStreamSuccessRate",
    "PushStreamSuccessRate",
    "VideoUpstreamExcellentTransRate",
    "AudioUpstreamExcellentTransRate",
    "VideoExcellentTransRate",
    "AudioExcellentTransRate",
    "VideoTransDelay",
    "AudioTransDelay",
)
QOS_MIDS = (  # Table 5-65
    "appcpu",
    "syscpu",
    "abit",
    "vbit",
    "dbit",
    "vfps",
    "dfps",
    "vblock",
    "dblock",
    "aloss",
    "vloss",
    "dloss",
    "vwidth",
    "vheight",
    "dwidth",
    "dheight",
    "ajitter",
    "artt",
    "vjitter",
    "vrtt",
    "djitter",
    "drtt",
)
ROOM_STATES = ("RUNNING", "CLOSED")  # Table 5-2
USER_STATES = ("FAIL", "ONLINE", "OFFLINE")  # Table 5-9
USER_TYPES = ("summary", "detail")  # Table 5-9
DIRECTIONS = ("uplink", "downlink")  # Table 5-65
TIME_TYPES = ("ctime", "stime")  # Table 5-65
ABNORMAL_DIMENSIONS = ("abnormal_type", "abnormal_factor")  # Table 5-79


# --- reading one parameter -----------------------------------------------------------------------------


class Params:
    """The query string of one request, read parameter by parameter with the section-5 errors."""

    def __init__(self, query: QueryParams) -> None:
        self._q = query

    def text(self, name: str, *, required: bool = False, max_len: int = 256) -> str | None:
        value = self._q.get(name)
        if value is None or value == "":
            if required:
                raise StatsParameterMissing(name)
            return None
        if len(value) > max_len or any(ord(c) < 0x20 or ord(c) == 0x7F for c in value):
            raise InvalidParameterValue(f"{name} must be at most {max_len} printable characters")
        return value

    def ident(self, name: str, *, required: bool = False) -> str | None:
        """An app, room or user ID (the safe alphabet of the rest of the API)."""
        value = self.text(name, required=required)
        if value is None:
            return None
        try:
            return check_id(value)
        except ValueError as exc:
            raise InvalidParameterValue(f"{name} {exc}") from None

    def items(self, name: str, *, required: bool = False) -> list[str]:
        """An ``Array`` parameter: comma-separated (as the official SDK sends it) and/or repeated."""
        values = [v.strip() for raw in self._q.getlist(name) for v in raw.split(",") if v.strip()]
        if not values and required:
            raise StatsParameterMissing(name)
        if len(values) > 64 or any(len(v) > 128 for v in values):
            raise InvalidParameterValue(f"{name} has too many or too long values")
        return values

    def choice(self, name: str, options: Iterable[str], *, required: bool = False) -> str | None:
        value = self.text(name, required=required)
        options = tuple(options)
        if value is not None and value not in options:
            raise InvalidParameterValue(f"{name} must be one of {', '.join(options)}, not {value!r}")
        return value

    def choices(self, name: str, options: Iterable[str], *, required: bool = False) -> list[str]:
        options = tuple(options)
        values = self.items(name, required=required)
        for v in values:
            if v not in options:
                raise InvalidParameterValue(f"{name} must be among {', '.join(options)}, not {v!r}")
        return list(dict.fromkeys(values))

    def time(self, name: str, *, required: bool = False) -> float | None:
        """UTC ``YYYY-MM-DDThh:mm:ssZ`` (spec 5.x) as UNIX seconds."""
        value = self.text(name, required=required, max_len=32)
        if value is None:
            return None
        try:
            if not _TIME_RE.match(value):
                raise ValueError(value)
            return datetime.strptime(value, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC).timestamp()
        except ValueError:
            raise InvalidParameterValue(
                f"{name} must be a UTC time as YYYY-MM-DDThh:mm:ssZ (e.g. 2020-04-23T06:00:00Z), not {value!r}"
            ) from None

    def day(self, name: str, *, required: bool = False) -> date | None:
        """UTC ``YYYY-MM-DD``."""
        value = self.text(name, required=required, max_len=16)
        if value is None:
            return None
        try:
            if not _DAY_RE.match(value):
                raise ValueError(value)
            return date.fromisoformat(value)
        except ValueError:
            raise InvalidParameterValue(f"{name} must be a UTC day as YYYY-MM-DD, not {value!r}") from None

    def integer(self, name: str, default: int, lo: int, hi: int) -> int:
        value = self.text(name, max_len=16)
        if value is None:
            return default
        if not _INT_RE.match(value) or not lo <= int(value) <= hi:
            raise InvalidParameterValue(f"{name} must be an integer from {lo} to {hi}, not {value!r}")
        return int(value)


# --- time windows --------------------------------------------------------------------------------------


def window(p: Params, now: float, max_span: float, *, required: bool = False, span_text: str) -> Window:
    """``start_time``/``end_time``: by default the last hour up to now (spec 5.x); ``start <= end`` and
    ``end - start <= max_span``."""
    start = p.time("start_time", required=required)
    end = p.time("end_time", required=required)
    if end is None:
        end = max(now, start) if start is not None else now
    if start is None:
        start = end - HOUR
    if start > end:
        raise InvalidParameterValue("start_time must not be after end_time")
    if end - start > max_span:
        raise InvalidParameterValue(f"the query spans more than {span_text} (start_time to end_time)")
    return Window(start, end)


def days(p: Params, now: float, *, required: bool) -> Days:
    """``start_date``/``end_date``: by default the last day (yesterday, UTC); at most 31 days."""
    first = p.day("start_date", required=required)
    last = p.day("end_date", required=required)
    yesterday = today(now) - timedelta(days=1)
    if last is None:
        last = max(yesterday, first) if first is not None else yesterday
    if first is None:
        first = last
    if first > last:
        raise InvalidParameterValue("start_date must not be after end_date")
    if (last - first).days + 1 > MAX_DAYS_HISTORY:
        raise InvalidParameterValue(f"the query spans more than {MAX_DAYS_HISTORY} days (start_date to end_date)")
    return Days(first, last)


def page(p: Params) -> Page:
    return Page(p.integer("limit", DEFAULT_LIMIT, 1, MAX_LIMIT), p.integer("offset", 0, 0, 1_000_000_000))


# --- the operations' queries ---------------------------------------------------------------------------


def parse_rooms(q: QueryParams, now: float) -> RoomsQuery:
    p = Params(q)
    app = p.ident("app", required=True)
    assert app is not None
    return RoomsQuery(
        app=app,
        room_id=p.ident("room_id"),
        state=p.choice("state", ROOM_STATES),
        window=window(p, now, MAX_SPAN_LIST, span_text="90 days"),
        page=page(p),
    )


def parse_users(q: QueryParams, now: float) -> UsersQuery:
    p = Params(q)
    app = p.ident("app", required=True)
    assert app is not None
    regions = []
    for value in p.items("region"):
        code = region_code(value)
        if code is None:
            raise InvalidParameterValue(f"region must be a province name or abbreviation (spec 6.5), not {value!r}")
        regions.append(code)
    return UsersQuery(
        app=app,
        room_id=p.ident("room_id"),
        uid=p.ident("uid"),
        nickname=p.text("nickname"),
        regions=tuple(dict.fromkeys(regions)),
        isps=tuple(dict.fromkeys(p.items("isp"))),
        states=tuple(p.choices("state", USER_STATES)),
        window=window(p, now, MAX_SPAN_LIST, span_text="90 days"),
        page=page(p),
        detail=p.choice("type", USER_TYPES) == "detail",
    )


def parse_series(q: QueryParams, now: float, metrics: tuple[str, ...], *, with_sdk_type: bool) -> SeriesQuery:
    p = Params(q)
    app = p.ident("app", required=True)
    metric = p.choice("metric", metrics, required=True)
    sdk_type = p.choice("sdk_type", SDK_TYPES, required=True) if with_sdk_type else None
    assert app is not None and metric is not None
    return SeriesQuery(
        app=app,
        room_id=p.ident("room_id"),
        metric=metric,
        sdk_type=sdk_type,
        window=window(p, now, MAX_SPAN_REALTIME, span_text="1 day"),
    )


def parse_dimension(q: QueryParams) -> DimensionQuery:
    p = Params(q)
    app = p.ident("app", required=True)
    metric = p.choice("metric", DIMENSION_METRICS, required=True)
    dimension = p.choice("dimension", DIMENSIONS, required=True)
    at = p.time("time", required=True)
    assert app is not None and metric is not None and dimension is not None and at is not None
    return DimensionQuery(app=app, room_id=p.ident("room_id"), metric=metric, dimension=dimension, time=at)


def parse_usage(q: QueryParams, now: float) -> UsageQuery:
    p = Params(q)
    app = p.ident("app", required=True)
    metric = p.choice("metric", USAGE_METRICS, required=True)
    assert app is not None and metric is not None
    return UsageQuery(app=app, metric=metric, days=days(p, now, required=True))


def parse_history(q: QueryParams, now: float, metrics: tuple[str, ...]) -> HistoryQuery:
    p = Params(q)
    app = p.ident("app", required=True)
    chosen = p.choices("metric", metrics, required=True)
    assert app is not None
    return HistoryQuery(app=app, metrics=tuple(chosen), days=days(p, now, required=False))


def parse_qos(q: QueryParams, now: float) -> QosQuery:
    p = Params(q)
    app = p.ident("app_id", required=True)
    room_id = p.ident("room_id", required=True)
    mids = p.items("mid", required=True)
    p.text("domain")  # accepted and checked for shape; one Ember serves one domain
    if "all" in mids:
        mids = list(QOS_MIDS)
    for mid in mids:
        if mid not in QOS_MIDS:
            raise InvalidParameterValue(f"mid must be all or among {', '.join(QOS_MIDS)}, not {mid!r}")
    w = window(p, now, MAX_SPAN_QOS, required=True, span_text="24 hours")
    if w.start < now - QOS_RETENTION:
        raise InvalidParameterValue("only the last 5 days can be queried: start_time is earlier")
    peer = p.text("peer_id", max_len=64)
    if peer is not None and peer != "0":
        peer = p.ident("peer_id")
    assert app is not None and room_id is not None
    return QosQuery(
        app=app,
        room_id=room_id,
        user_id=p.ident("user_id"),
        peer_id=peer,
        stream_id=p.text("stream_id", max_len=128),
        direction=p.choice("direction", DIRECTIONS),
        mids=tuple(dict.fromkeys(mids)),
        window=w,
        by_server_time=p.choice("time_type", TIME_TYPES) == "stime",
        page=page(p),
    )


def parse_abnormal(q: QueryParams, now: float, *, grouped: bool) -> AbnormalQuery:
    p = Params(q)
    app = p.ident("app", required=True)
    assert app is not None
    dims = tuple(p.choices("dimension", ABNORMAL_DIMENSIONS)) if grouped else ()
    return AbnormalQuery(
        app=app,
        room_id=p.ident("room_id"),
        uid=None if grouped else p.ident("uid"),
        window=window(p, now, MAX_SPAN_REALTIME, span_text="1 day"),
        page=page(p) if not grouped else Page(MAX_LIMIT, 0),
        dimensions=dims or ABNORMAL_DIMENSIONS,
    )
