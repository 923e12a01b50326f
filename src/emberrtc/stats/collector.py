"""What signalling tells the statistics: join outcomes, client reports, leaves. Never waits on the database.

Every method is synchronous and cheap: it checks, shapes rows and hands them to the :class:`StatsWriter`
buffer. Definitions of what is recorded: docs/statistics.md.

Per-node memory: the latest uplink sample of each user connected to this node (to name the cause of a
peer's freeze) and recent leaves. A peer connected to another node is not seen here, so a freeze caused on
its uplink gets the receiver's local factors instead; documented in docs/statistics.md.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

from emberrtc.domain.clock import Clock
from emberrtc.domain.secrets import new_hex_id
from emberrtc.stats import abnormal
from emberrtc.stats.region import OTHERS, RegionLocator
from emberrtc.stats.report import MIN_REPORT_INTERVAL, StatsReport, report_rows
from emberrtc.stats.writer import StatsWriter

WEBRTC, NATIVE = "webrtc", "native"
#: How long a leave is remembered to name a freeze's cause "peer offline" (seconds).
GONE_MEMORY = 120.0
#: Most users whose latest uplink sample is remembered on this node.
MAX_REMEMBERED = 50_000
_SLOW_JOIN = "slow_join"  # a type-1 event was recorded for the session


def sdk_type_of(platform: str | None) -> str:
    """``webrtc`` for the browser SDK (its platform starts ``browser-`` or ``web``), else ``native``."""
    if platform and platform.lower().startswith(("browser", "web")):
        return WEBRTC
    return NATIVE


@dataclass
class SessionStatsContext:
    """One admitted session's statistics state, held by its signalling connection."""

    session_id: str
    app_id: str
    room_id: str
    user_id: str
    sdk_type: str
    last_report: float | None = None
    reported: set[str] = field(default_factory=set)


class StatsCollector:
    def __init__(self, writer: StatsWriter, clock: Clock, locator: RegionLocator | None = None) -> None:
        self.writer = writer
        self._clock = clock
        self._locator = locator
        self._uplinks: OrderedDict[tuple[str, str, str], dict[str, Any]] = OrderedDict()
        self._gone: OrderedDict[tuple[str, str, str], float] = OrderedDict()
        #: Reports not stored because they came too often.
        self.throttled = 0
        #: SDK type of the sessions in the room on this node (for the SFU's samples of their legs).
        self._sdk_types: dict[str, str] = {}
        #: (session, peer, type) -> the minute of its last freeze event: at most one a minute.
        self._last_freeze: dict[tuple[str, str, int], int] = {}

    def _where(self, ip: str | None) -> tuple[str, str]:
        if self._locator is None:
            return OTHERS, ""
        location = self._locator.locate(ip)
        return location.region, location.isp

    def _session_row(
        self,
        *,
        session_id: str,
        app_id: str,
        room_id: str,
        user_id: str,
        join_time: float,
        ok: bool,
        platform: str | None,
        client_ip: str | None,
        join_ms: float | None,
        fail_code: str | None,
    ) -> dict[str, Any]:
        region, isp = self._where(client_ip)
        return {
            "session_id": session_id,
            "app_id": app_id,
            "room_id": room_id,
            "user_id": user_id,
            "join_time": join_time,
            "ok": ok,
            "sdk_type": sdk_type_of(platform),
            "access_net": "unknown",
            "region": region,
            "isp": isp[:64],
            "join_ms": join_ms,
            "first_audio_ms": None,
            "first_video_ms": None,
            "fail_code": fail_code,
        }

    def _join_event(
        self, app_id: str, room_id: str, user_id: str, session_id: str, t: float, factor: int
    ) -> dict[str, Any]:
        return {
            "time": t,
            "app_id": app_id,
            "room_id": room_id,
            "user_id": user_id,
            "session_id": session_id,
            "stage": "join_room",
            "location": "local",
            "peer_uid": "",
            "abnormal_type": abnormal.JOIN_SLOW,
            "abnormal_factor": factor,
        }

    # --- joins ----------------------------------------------------------------------------------------

    def join_refused(
        self,
        *,
        app_id: str,
        room_id: str,
        user_id: str,
        platform: str | None,
        client_ip: str | None,
        fail_code: str,
        started: float,
    ) -> None:
        """A join refused (by the checks or the media plane) after ``started``: a failed attempt and a
        type-1 abnormal event with the refusal's factor."""
        now = self._clock.now()
        session_id = new_hex_id()
        server_ms = (now - started) * 1000
        self.writer.add_session(
            self._session_row(
                session_id=session_id,
                app_id=app_id,
                room_id=room_id,
                user_id=user_id,
                join_time=started,
                ok=False,
                platform=platform,
                client_ip=client_ip,
                join_ms=server_ms,
                fail_code=fail_code,
            )
        )
        factor = abnormal.join_factor(fail_code, server_ms)
        self.writer.add_events([self._join_event(app_id, room_id, user_id, session_id, now, factor)])

    def joined(
        self,
        *,
        session_id: str,
        app_id: str,
        room_id: str,
        user_id: str,
        platform: str | None,
        client_ip: str | None,
        started: float,
    ) -> SessionStatsContext:
        """The client got ``joined``; time to join so far is the server's part (from the request to the
        reply), replaced by the client's own measure when it reports one."""
        now = self._clock.now()
        server_ms = (now - started) * 1000
        row = self._session_row(
            session_id=session_id,
            app_id=app_id,
            room_id=room_id,
            user_id=user_id,
            join_time=started,
            ok=True,
            platform=platform,
            client_ip=client_ip,
            join_ms=server_ms,
            fail_code=None,
        )
        self.writer.add_session(row)
        ctx = SessionStatsContext(session_id, app_id, room_id, user_id, row["sdk_type"])
        self._sdk_types[session_id] = ctx.sdk_type
        if server_ms > abnormal.SLOW_JOIN_MS:
            factor = abnormal.join_factor(None, server_ms)
            self.writer.add_events([self._join_event(app_id, room_id, user_id, session_id, now, factor)])
            ctx.reported.add(_SLOW_JOIN)
        self._gone.pop((app_id, room_id, user_id), None)
        return ctx

    def left(self, ctx: SessionStatsContext) -> None:
        """The session ended: its user's later absence names peers' freezes "peer offline"."""
        key = (ctx.app_id, ctx.room_id, ctx.user_id)
        self._sdk_types.pop(ctx.session_id, None)
        for stale in [k for k in self._last_freeze if k[0] == ctx.session_id]:
            del self._last_freeze[stale]
        self._uplinks.pop(key, None)
        self._gone[key] = self._clock.now()
        self._gone.move_to_end(key)
        while self._gone and (
            len(self._gone) > MAX_REMEMBERED or next(iter(self._gone.values())) < self._clock.now() - GONE_MEMORY
        ):
            self._gone.popitem(last=False)

    def sdk_type_of_session(self, session_id: str) -> str:
        """The SDK type of a session in a room on this node (``native`` when unknown)."""
        return self._sdk_types.get(session_id, NATIVE)

    # --- reports --------------------------------------------------------------------------------------

    def report(self, ctx: SessionStatsContext, report: StatsReport) -> bool:
        """Store one client report; False when it came sooner than ``MIN_REPORT_INTERVAL`` after the last
        one (not stored)."""
        now = self._clock.now()
        if ctx.last_report is not None and now - ctx.last_report < MIN_REPORT_INTERVAL:
            self.throttled += 1
            return False
        ctx.last_report = now
        self._session_facts(ctx, report, now)
        rows = report_rows(
            report,
            now=now,
            app_id=ctx.app_id,
            room_id=ctx.room_id,
            session_id=ctx.session_id,
            user_id=ctx.user_id,
            sdk_type=ctx.sdk_type,
        )
        events: list[dict[str, Any]] = []
        for row in rows:
            if row["direction"] == "uplink":
                key = (ctx.app_id, ctx.room_id, ctx.user_id)
                self._uplinks[key] = row
                self._uplinks.move_to_end(key)
                if len(self._uplinks) > MAX_REMEMBERED:
                    self._uplinks.popitem(last=False)
                continue
            peer = (ctx.app_id, ctx.room_id, row["peer_id"])
            for event in abnormal.freeze_events(row, self._uplinks.get(peer), peer in self._gone):
                # A freeze that lasts or repeats is one event a minute per peer and kind (spec 5.11's events
                # are per minute: "time": "...T17:45:00Z").
                freeze_key = (ctx.session_id, str(row["peer_id"]), int(event["abnormal_type"]))
                minute = int(now // 60)
                if self._last_freeze.get(freeze_key) != minute:
                    self._last_freeze[freeze_key] = minute
                    events.append(event)
        self.writer.add_samples(rows)
        if events:
            self.writer.add_events(events)
        return True

    def _session_facts(self, ctx: SessionStatsContext, report: StatsReport, now: float) -> None:
        columns: dict[str, Any] = {}
        if report.access_net is not None and "access_net" not in ctx.reported:
            columns["access_net"] = report.access_net
        for name in ("join_ms", "first_audio_ms", "first_video_ms"):
            value = getattr(report, name)
            if value is not None and name not in ctx.reported:
                columns[name] = value
        if not columns:
            return
        ctx.reported.update(columns)
        self.writer.update_session(ctx.session_id, **columns)
        join_ms = columns.get("join_ms")
        if join_ms is not None and join_ms > abnormal.SLOW_JOIN_MS and _SLOW_JOIN not in ctx.reported:
            ctx.reported.add(_SLOW_JOIN)
            event = self._join_event(
                ctx.app_id, ctx.room_id, ctx.user_id, ctx.session_id, now, abnormal.join_factor(None, None)
            )
            self.writer.add_events([event])
