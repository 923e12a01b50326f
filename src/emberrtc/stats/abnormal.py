"""Abnormal user-experience events (spec 5.11, Table 5-76) and the thresholds behind them.

Three kinds: a join that took over 5 s or was refused (type 1, stage ``join_room``), a video freeze (type 2)
and an audio freeze (type 3) in a downlink sample (stage ``communication``). A freeze event gets the first
factor that holds, in this order (the cause nearest the source first):

1. the peer has left the room (17, remote);
2. no packet of that medium arrived in the interval (18, remote: the peer sends no stream);
3. the peer's own uplink loss, jitter or delay was high in its latest report (11/12, 4/6, 3/5; remote);
4. this user's downlink loss, jitter or delay was high in the sample (13/14, 8/10, 7/9; local);
5. this user's system or app CPU was high (1, 2; local);
6. otherwise 16 ("others", local).

"High" means at or over the thresholds below. The same loss and RTT thresholds define an *excellent*
transmission sample: loss under :data:`LOSS_HIGH` and RTT under :data:`RTT_HIGH`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

#: Packet loss at or over 5 % is high; a sample under it (and under RTT_HIGH) is an excellent transmission.
LOSS_HIGH = 0.05
#: Round-trip time (client to SFU) at or over 300 ms is high.
RTT_HIGH = 300.0
#: Interarrival jitter at or over 50 ms is high.
JITTER_HIGH = 50.0
#: System CPU at or over 90 %, app CPU at or over 80 %, are high.
SYSCPU_HIGH = 0.9
APPCPU_HIGH = 0.8
#: A join over this many milliseconds is abnormal (type 1).
SLOW_JOIN_MS = 5000.0

JOIN_SLOW, VIDEO_FREEZE, AUDIO_FREEZE = 1, 2, 3

#: Type 1 factors (Table 5-76).
F_LINK_SETUP, F_SERVER_FAULT, F_SERVER_503, F_AUTH_FAILED = 1, 3, 4, 5
F_SERVER_ERROR = 10000001
F_JOIN_TIMEOUT = 90000004
#: Types 2 and 3 factors (Table 5-76).
F_SYSCPU, F_APPCPU, F_OTHERS, F_PEER_OFFLINE, F_PEER_NO_STREAM = 1, 2, 16, 17, 18


@dataclass(frozen=True)
class Classified:
    abnormal_type: int
    factor: int
    location: str  # local / remote


def excellent(loss: float | None, rtt: float | None) -> bool | None:
    """An excellent transmission sample: loss under 5 % and RTT under 300 ms (None: loss not measured;
    a sample without an RTT is judged on loss alone)."""
    if loss is None:
        return None
    return loss < LOSS_HIGH and (rtt is None or rtt < RTT_HIGH)


def join_factor(fail_code: str | None, server_ms: float | None) -> int:
    """The factor of a type-1 event: why the join was refused, or what made it slow."""
    if fail_code is None:
        # Slow but successful: the server's own part over 5 s means its reply was late (90000004);
        # otherwise the time went outside the server, setting up the link (1).
        return F_JOIN_TIMEOUT if server_ms is not None and server_ms > SLOW_JOIN_MS else F_LINK_SETUP
    if fail_code == "RTC.00001001":  # bad or expired join signature
        return F_AUTH_FAILED
    if fail_code == "RTC.00002000":  # the server (media plane) failed
        return F_SERVER_FAULT
    if fail_code == "RTC.00001023":  # throttled: the answer a busy server gives
        return F_SERVER_503
    return F_SERVER_ERROR


def _high(value: Any, threshold: float) -> bool:
    return value is not None and value >= threshold


def freeze_factor(
    medium: str, sample: dict[str, Any], peer_uplink: dict[str, Any] | None, peer_gone: bool
) -> tuple[int, str]:
    """(factor, location) of a freeze of ``medium`` (``video``/``audio``) in the downlink ``sample``, given
    the peer's latest uplink sample (None when unknown on this node) and whether the peer has left."""
    v = medium == "video"
    p = "v" if v else "a"
    if peer_gone:
        return F_PEER_OFFLINE, "remote"
    if sample.get(f"{p}packets") == 0:
        return F_PEER_NO_STREAM, "remote"
    if peer_uplink is not None:
        if _high(peer_uplink.get(f"{p}loss"), LOSS_HIGH):
            return (12 if v else 11), "remote"
        if _high(peer_uplink.get(f"{p}jitter"), JITTER_HIGH):
            return (6 if v else 4), "remote"
        if _high(peer_uplink.get(f"{p}rtt"), RTT_HIGH):
            return (5 if v else 3), "remote"
    if _high(sample.get(f"{p}loss"), LOSS_HIGH):
        return (14 if v else 13), "local"
    if _high(sample.get(f"{p}jitter"), JITTER_HIGH):
        return (10 if v else 8), "local"
    if _high(sample.get(f"{p}rtt"), RTT_HIGH):
        return (9 if v else 7), "local"
    if _high(sample.get("syscpu"), SYSCPU_HIGH):
        return F_SYSCPU, "local"
    if _high(sample.get("appcpu"), APPCPU_HIGH):
        return F_APPCPU, "local"
    return F_OTHERS, "local"


def freeze_events(sample: dict[str, Any], peer_uplink: dict[str, Any] | None, peer_gone: bool) -> list[dict[str, Any]]:
    """``stats_abnormal_events`` rows for the freezes in one downlink sample row (none, one or two)."""
    if sample["direction"] != "downlink":
        return []
    events = []
    for medium, kind, column in (("video", VIDEO_FREEZE, "vfreeze_ms"), ("audio", AUDIO_FREEZE, "afreeze_ms")):
        frozen = sample.get(column)
        if frozen is None or frozen < 600:  # spec 5.10: a freeze is a gap of 600 ms or more
            continue
        factor, location = freeze_factor(medium, sample, peer_uplink, peer_gone)
        events.append(
            {
                "time": sample["time"],
                "app_id": sample["app_id"],
                "room_id": sample["room_id"],
                "user_id": sample["user_id"],
                "session_id": sample["session_id"],
                "stage": "communication",
                "location": location,
                "peer_uid": sample["peer_id"] if location == "remote" else "",
                "abnormal_type": kind,
                "abnormal_factor": factor,
            }
        )
    return events
