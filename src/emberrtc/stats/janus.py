"""The SFU's view of every leg: Janus's per-handle statistics, polled through its admin API.

Every ``interval`` seconds each live publication handle (the user's **uplink**) and subscriber handle
(its **downlink**: one handle carries every stream the user receives, each subscription its own m-lines)
of this node's Janus is asked for ``handle_info``; its
``webrtc.media`` entries (one per m-line) carry cumulative counters and RTCP figures. The difference from
the previous poll becomes a ``stats_qos_samples`` row with ``source`` = ``janus``:

- uplink (Janus receives): packets received, ``lost`` (packets the client's stream lost on the way),
  ``jitter-local`` (Janus's measure), ``rtt``, bit rate from bytes received, NACKs Janus sent,
  ``in-link-quality``;
- downlink (Janus sends): packets sent, ``lost-by-remote`` (the loss the client reported in RTCP),
  ``jitter-remote``, ``rtt``, bit rate from bytes sent, NACKs received, ``out-link-quality``.

Loss over the interval is lost / (packets + lost) on an uplink and lost-by-remote / packets sent on a
downlink (the packets the client lost are among those Janus sent). A downlink's lost count moves only when
the client's RTCP receiver report arrives (about every second), so a window's figure is off by up to a
report's worth of packets: the default 5 s windows keep that small, and it evens out over consecutive ones.
Janus reports jitter and RTT in milliseconds. Camera audio goes to the ``a`` columns, camera video to ``v``,
screen video to ``d``. The first poll of a handle only records its counters.
Janus itself runs on this node, so each node polls its own.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from emberrtc.domain.background import BackgroundTask
from emberrtc.domain.clock import Clock
from emberrtc.media.plane import HandleView, JanusMediaPlane
from emberrtc.stats.report import sample_row
from emberrtc.stats.writer import StatsWriter

log = logging.getLogger(__name__)

#: Handles asked at once.
CONCURRENCY = 8

Counters = dict[str, float]


def _counters(entry: dict[str, Any], direction: str) -> Counters:
    rtcp = (entry.get("rtcp") or {}).get("main") or {}
    stats = entry.get("stats") or {}
    side = stats.get("in" if direction == "uplink" else "out") or {}
    other = stats.get("out" if direction == "uplink" else "in") or {}
    if direction == "uplink":
        lost, jitter, quality = rtcp.get("lost", 0), rtcp.get("jitter-local"), rtcp.get("in-link-quality")
        nacks = side.get("nacks", other.get("nacks", 0))
    else:
        lost, jitter, quality = rtcp.get("lost-by-remote", 0), rtcp.get("jitter-remote"), rtcp.get("out-link-quality")
        nacks = side.get("nacks", 0)
    return {
        "packets": float(side.get("packets", 0)),
        "bytes": float(side.get("bytes", 0)),
        "lost": float(lost or 0),
        "nacks": float(nacks or 0),
        "jitter": -1.0 if jitter is None else float(jitter),
        "rtt": -1.0 if rtcp.get("rtt") is None else float(rtcp["rtt"]),
        "quality": -1.0 if quality is None else float(quality),
    }


def janus_rows(
    view: HandleView,
    info: dict[str, Any],
    previous: dict[tuple[int, str], tuple[float, Counters]],
    *,
    now: float,
    sdk_type: str,
) -> list[dict[str, Any]]:
    """The sample row of one handle's ``handle_info`` (none on its first poll); ``previous`` holds each
    (handle, mid)'s last counters and is updated."""
    media = ((info.get("webrtc") or {}).get("media")) or {}
    cols: dict[str, Any] = {}
    interval = None
    packets_total = nacks_total = 0.0
    qualities = []
    for mid, entry in media.items():
        kind = entry.get("type")
        if kind not in ("audio", "video") or (view.mids is not None and str(mid) not in view.mids):
            continue
        current = _counters(entry, view.direction)
        key = (view.janus_handle, str(mid))
        before = previous.get(key)
        previous[key] = (now, current)
        if before is None or now <= before[0]:
            continue
        seconds = now - before[0]
        interval = seconds if interval is None else max(interval, seconds)
        d = {k: max(0.0, current[k] - before[1][k]) for k in ("packets", "bytes", "lost", "nacks")}
        p = "a" if kind == "audio" else ("v" if view.stream == "camera" else "d")
        if p == "a" and view.stream != "camera":
            continue
        # Uplink: Janus counts what arrived, so the lost ones come on top. Downlink: the lost ones are among
        # the packets Janus sent (the client's RTCP says how many of them never arrived).
        total = d["packets"] + d["lost"] if view.direction == "uplink" else d["packets"]
        cols[f"{p}bit"] = d["bytes"] * 8 / 1000 / seconds
        cols[f"{p}loss"] = min(1.0, d["lost"] / total) if total else None
        if current["jitter"] >= 0:
            cols[f"{p}jitter"] = current["jitter"]
        if current["rtt"] > 0:  # 0: no RTCP round trip measured yet
            cols[f"{p}rtt"] = current["rtt"]
        if p == "a":
            cols["apackets"] = int(d["packets"])
        else:
            packets_total += d["packets"]
        nacks_total += d["nacks"]
        if current["quality"] >= 0:
            qualities.append(current["quality"])
    if interval is None:
        return []
    if packets_total or "vbit" in cols or "dbit" in cols:
        cols["vpackets"] = int(packets_total)
    return [
        sample_row(
            time=now,
            app_id=view.app_id,
            room_id=view.room_id,
            session_id=view.session_id,
            user_id=view.user_id,
            peer_id=view.peer_id,
            direction=view.direction,
            source="janus",
            sdk_type=sdk_type,
            interval_s=interval,
            nacks=int(nacks_total),
            link_quality=min(qualities) if qualities else None,
            **cols,
        )
    ]


class JanusStatsPoller:
    """Polls this node's Janus every ``interval`` seconds and hands the rows to the writer."""

    def __init__(
        self,
        plane: JanusMediaPlane,
        writer: StatsWriter,
        clock: Clock,
        sdk_type_of_session: Any,
        interval: float = 5.0,
    ) -> None:
        self._plane = plane
        self._writer = writer
        self._clock = clock
        self._sdk_type = sdk_type_of_session
        self.interval = interval
        self._previous: dict[tuple[int, str], tuple[float, Counters]] = {}
        self._task = BackgroundTask("stats-janus", self._loop)

    async def poll(self) -> int:
        """One poll of every live handle; the number of rows handed to the writer."""
        if not self._plane.process.ready:
            return 0
        views = self._plane.handles()
        limit = asyncio.Semaphore(CONCURRENCY)

        async def info(session: int, handle: int) -> dict[str, Any] | None:
            async with limit:
                try:
                    return await self._plane.client.handle_info(session, handle)
                except Exception as exc:  # the handle went away between the snapshot and the question
                    log.debug("handle_info %s failed: %s", handle, exc)
                    return None

        # A subscriber handle carries every stream its participant receives: asked once, read per view.
        handles = sorted({(v.janus_session, v.janus_handle) for v in views})
        answers = dict(zip(handles, await asyncio.gather(*(info(*h) for h in handles)), strict=True))
        infos = [answers[(v.janus_session, v.janus_handle)] for v in views]
        now = self._clock.now()
        rows: list[dict[str, Any]] = []
        for view, answer in zip(views, infos, strict=True):
            if answer is not None:
                rows += janus_rows(view, answer, self._previous, now=now, sdk_type=self._sdk_type(view.session_id))
        live = {v.janus_handle for v in views}
        for key in [k for k in self._previous if k[0] not in live]:
            del self._previous[key]
        if rows:
            self._writer.add_samples(rows)
        return len(rows)

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:
                await self.poll()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("polling Janus statistics failed")

    def start(self) -> None:
        self._task.start()

    async def stop(self) -> None:
        await self._task.stop()
