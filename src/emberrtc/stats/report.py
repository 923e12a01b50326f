"""The statistics a client reports over signalling, checked, and turned into QoS sample rows.

A client sends ``{"type": "stats", ...}`` every few seconds (``emberrtc.client.room``, ``ember-rtc.js``),
with what it measured over the last ``interval`` seconds (deltas, not totals):

.. code-block:: json

    {"type": "stats", "interval": 5.0, "ctime": 1764745200.5, "access_net": "wifi",
     "appcpu": 0.12, "syscpu": 0.30,
     "join_ms": 420, "first_audio_ms": 180, "first_video_ms": 350,
     "push": {"attempts": 1, "ok": 1}, "pull": {"attempts": 2, "ok": 2},
     "uplink": {"audio": M, "video": M, "screen": M},
     "downlink": [{"peer_id": "bob", "audio": M, "video": M, "screen": M}]}

where each ``M`` (every field optional) is ``{"bitrate": kbit/s, "packets": sent or received, "lost":
packets lost, "jitter": ms, "rtt": ms, "fps", "width", "height", "freeze_ms": time frozen, "nacks"}``. All
fields but ``type`` are optional; ``join_ms`` and the first-frame times are sent once, when known.

A freeze is a gap of 600 ms or more between two rendered video frames (spec 5.10 ``vblock``), or between two
audio frames played (Ember's audio counterpart); ``freeze_ms`` sums the lengths of those gaps.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

#: spec 5.10: a video freeze is a gap of 600 ms or more.
FREEZE_GAP_MS = 600
#: Reports closer together than this (seconds) are not stored: a client cannot flood the database.
MIN_REPORT_INTERVAL = 1.0
#: The longest interval one report may cover (seconds).
MAX_INTERVAL = 60.0
#: Most peers one downlink report may name.
MAX_PEERS = 64

_Count = Annotated[int, Field(ge=0, le=10_000_000)]
_Ms = Annotated[float, Field(ge=0, le=3_600_000, allow_inf_nan=False)]
_Rate = Annotated[float, Field(ge=0, le=1, allow_inf_nan=False)]


class MediaStats(BaseModel):
    """One medium of one leg over the report's interval."""

    model_config = ConfigDict(extra="ignore")
    bitrate: Annotated[float, Field(ge=0, le=1_000_000, allow_inf_nan=False)] | None = None
    packets: _Count | None = None
    lost: _Count | None = None
    jitter: _Ms | None = None
    rtt: _Ms | None = None
    fps: Annotated[float, Field(ge=0, le=1000, allow_inf_nan=False)] | None = None
    width: Annotated[int, Field(ge=0, le=16384)] | None = None
    height: Annotated[int, Field(ge=0, le=16384)] | None = None
    freeze_ms: _Ms | None = None
    nacks: _Count | None = None

    def loss(self) -> float | None:
        """lost / (received + lost) for downlink, lost / sent for uplink (RTCP-reported): the same formula
        with ``packets`` what this side counted. None without both counts or with nothing counted."""
        if self.packets is None or self.lost is None:
            return None
        total = self.packets + self.lost
        return self.lost / total if total else None


class Leg(BaseModel):
    model_config = ConfigDict(extra="ignore")
    audio: MediaStats | None = None
    video: MediaStats | None = None
    screen: MediaStats | None = None


class DownLeg(Leg):
    peer_id: Annotated[str, StringConstraints(min_length=1, max_length=64)]


class Attempts(BaseModel):
    model_config = ConfigDict(extra="ignore")
    attempts: _Count = 0
    ok: _Count = 0


class StatsReport(BaseModel):
    """The ``stats`` signalling message (see the module docstring)."""

    model_config = ConfigDict(extra="ignore")
    type: Literal["stats"]
    id: int | Annotated[str, StringConstraints(max_length=64)] | None = None
    interval: Annotated[float, Field(gt=0, le=MAX_INTERVAL, allow_inf_nan=False)] = 5.0
    ctime: Annotated[float, Field(ge=0, le=10_000_000_000, allow_inf_nan=False)] | None = None
    access_net: Annotated[str, StringConstraints(pattern=r"^[a-z0-9_-]{1,16}$")] | None = None
    appcpu: _Rate | None = None
    syscpu: _Rate | None = None
    join_ms: _Ms | None = None
    first_audio_ms: _Ms | None = None
    first_video_ms: _Ms | None = None
    push: Attempts | None = None
    pull: Attempts | None = None
    uplink: Leg | None = None
    downlink: Annotated[list[DownLeg], Field(max_length=MAX_PEERS)] = []


def _freeze_rate(m: MediaStats | None, interval: float) -> float | None:
    if m is None or m.freeze_ms is None:
        return None
    return min(1.0, m.freeze_ms / (interval * 1000))


def _get(m: MediaStats | None, name: str) -> Any:
    return None if m is None else getattr(m, name)


def _leg_columns(leg: Leg, interval: float) -> dict[str, Any]:
    a, v, d = leg.audio, leg.video, leg.screen
    return {
        "abit": _get(a, "bitrate"),
        "vbit": _get(v, "bitrate"),
        "dbit": _get(d, "bitrate"),
        "vfps": _get(v, "fps"),
        "dfps": _get(d, "fps"),
        "vblock": _freeze_rate(v, interval),
        "dblock": _freeze_rate(d, interval),
        "ablock": _freeze_rate(a, interval),
        "aloss": None if a is None else a.loss(),
        "vloss": None if v is None else v.loss(),
        "dloss": None if d is None else d.loss(),
        "vwidth": _get(v, "width"),
        "vheight": _get(v, "height"),
        "dwidth": _get(d, "width"),
        "dheight": _get(d, "height"),
        "ajitter": _get(a, "jitter"),
        "artt": _get(a, "rtt"),
        "vjitter": _get(v, "jitter"),
        "vrtt": _get(v, "rtt"),
        "djitter": _get(d, "jitter"),
        "drtt": _get(d, "rtt"),
        "apackets": _get(a, "packets"),
        "vpackets": _sum(_get(v, "packets"), _get(d, "packets")),
        "nacks": _sum(_get(a, "nacks"), _get(v, "nacks"), _get(d, "nacks")),
        "vfreeze_ms": _sum(_get(v, "freeze_ms"), _get(d, "freeze_ms")),
        "afreeze_ms": _get(a, "freeze_ms"),
    }


def _sum(*values: float | None) -> Any:
    present = [x for x in values if x is not None]
    return sum(present) if present else None


SAMPLE_COLUMNS = (
    "time ctime app_id room_id session_id user_id peer_id direction source sdk_type interval_s appcpu syscpu "
    "abit vbit dbit vfps dfps vblock dblock ablock aloss vloss dloss vwidth vheight dwidth dheight ajitter artt "
    "vjitter vrtt djitter drtt apackets vpackets nacks link_quality vfreeze_ms afreeze_ms push_attempts push_ok "
    "pull_attempts pull_ok"
).split()


_COLUMN_SET = frozenset(SAMPLE_COLUMNS)
_EMPTY_ROW = dict.fromkeys(SAMPLE_COLUMNS)


def sample_row(**values: Any) -> dict[str, Any]:
    """A complete ``stats_qos_samples`` row (every column present, unknown ones None) for a bulk insert.
    Values come checked (finite, in range) from :class:`StatsReport` or the SFU."""
    if not values.keys() <= _COLUMN_SET:
        raise ValueError(f"not sample columns: {sorted(values.keys() - _COLUMN_SET)}")
    row = dict(_EMPTY_ROW)
    row.update(values)
    return row


def report_rows(
    report: StatsReport,
    *,
    now: float,
    app_id: str,
    room_id: str,
    session_id: str,
    user_id: str,
    sdk_type: str,
) -> list[dict[str, Any]]:
    """The sample rows of one report: one uplink row when the client sent anything, one downlink row per
    peer. ``time`` is ``now`` (server receive time)."""
    common = {
        "time": now,
        "ctime": report.ctime,
        "app_id": app_id,
        "room_id": room_id,
        "session_id": session_id,
        "user_id": user_id,
        "source": "client",
        "sdk_type": sdk_type,
        "interval_s": report.interval,
    }
    rows: list[dict[str, Any]] = []
    if report.uplink is not None or report.push is not None or report.pull is not None or report.appcpu is not None:
        cols = _leg_columns(report.uplink or Leg(), report.interval)
        rows.append(
            sample_row(
                **common,
                **cols,
                peer_id="0",
                direction="uplink",
                appcpu=report.appcpu,
                syscpu=report.syscpu,
                push_attempts=report.push and report.push.attempts,
                push_ok=report.push and report.push.ok,
                pull_attempts=report.pull and report.pull.attempts,
                pull_ok=report.pull and report.pull.ok,
            )
        )
    for leg in report.downlink:
        cols = _leg_columns(leg, report.interval)
        rows.append(
            sample_row(
                **common,
                **cols,
                peer_id=leg.peer_id,
                direction="downlink",
                appcpu=report.appcpu,
                syscpu=report.syscpu,
            )
        )
    return rows
