"""The Python client's QoS reports: what it measures every few seconds, sent over signalling (``stats``).

Measured (as deltas over the report's interval; message format in :mod:`emberrtc.stats.report`):

- **uplink**, per published stream, from aiortc's sender statistics: packets and bytes sent, packets the
  SFU reported lost (RTCP receiver reports) and the round-trip time they carry;
- **downlink**, per subscription, from aiortc's receiver statistics (packets received and lost, jitter)
  and from the frames the application takes from the tracks (:class:`FrameMeter`): frame rate, frame size,
  freezes (a gap of 600 ms or more between two frames, spec 5.10 ``vblock``) and when the first audio and
  video frames arrived;
- the process's CPU use (``appcpu``) and the machine's (``syscpu``, from ``/proc/stat`` where it exists);
- once: the time to join (from opening the signalling connection to ``joined``).

Frames are counted when the application receives them (``track.recv()``): an application that never
reads a track has no frame rate or freezes for it, only packet statistics.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aiortc import RTCPeerConnection
from aiortc.mediastreams import MediaStreamTrack
from aiortc.stats import RTCOutboundRtpStreamStats, RTCRemoteInboundRtpStreamStats

log = logging.getLogger(__name__)

#: spec 5.10: a freeze is a gap of 600 ms or more between two frames.
FREEZE_GAP = 0.6
#: RTP clock rates of the media Ember carries (jitter arrives in RTP timestamp units).
CLOCK_RATE = {"audio": 48_000, "video": 90_000}


class FrameMeter(MediaStreamTrack):
    """A received track as the application reads it, counting frames, their size and the gaps."""

    def __init__(self, track: MediaStreamTrack, on_first: Callable[[str], None] | None = None) -> None:
        super().__init__()
        self.kind = track.kind
        self._track = track
        self._on_first = on_first
        self.frames = 0
        self.freeze_s = 0.0
        self.width: int | None = None
        self.height: int | None = None
        self._last: float | None = None
        #: Up to when a freeze in progress has been counted (a report may fall inside a freeze).
        self._counted = 0.0

    def _count_gap(self, now: float) -> None:
        if self._last is not None and now - self._last >= FREEZE_GAP:
            self.freeze_s += now - max(self._last, self._counted)
            self._counted = now

    async def recv(self) -> Any:
        frame = await self._track.recv()
        now = time.monotonic()
        if self._last is None and self._on_first is not None:
            self._on_first(self.kind)
        self._count_gap(now)
        self._last = now
        self.frames += 1
        if self.kind == "video":
            self.width, self.height = getattr(frame, "width", None), getattr(frame, "height", None)
        return frame

    def stop(self) -> None:
        super().stop()
        self._track.stop()

    def take(self) -> tuple[int, float]:
        """Frames and freeze seconds since the last call (a freeze still going on counts up to now)."""
        self._count_gap(time.monotonic())
        frames, freeze = self.frames, self.freeze_s
        self.frames, self.freeze_s = 0, 0.0
        return frames, freeze


def _system_cpu_times() -> tuple[float, float] | None:
    """(busy, total) jiffies from ``/proc/stat``, or None where there is none."""
    try:
        with open("/proc/stat") as f:
            fields = [float(x) for x in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0.0)
    return sum(fields) - idle, sum(fields)


@dataclass
class _Counters:
    """The last cumulative values seen per statistics id, to report deltas."""

    last: dict[str, dict[str, float]] = field(default_factory=dict)

    def delta(self, key: str, **values: float) -> dict[str, float]:
        before = self.last.get(key, {})
        self.last[key] = values
        return {k: max(0.0, v - before.get(k, 0.0)) for k, v in values.items()}


async def _leg_stats(
    pc: RTCPeerConnection, counters: _Counters, interval: float, up: bool, receivers: list[Any] | None = None
) -> dict[str, dict[str, Any]]:
    """Per kind (``audio``/``video``): this interval's packets, loss, bit rate, jitter and RTT of ``pc``;
    downlink: of ``receivers`` only (one subscription's, on the subscriber PeerConnection every
    subscription shares), or every receiver of ``pc``."""
    report = await pc.getStats()
    out: dict[str, dict[str, Any]] = {}
    rtts: dict[str, float] = {}
    remote_lost: dict[str, float] = {}
    for stats in report.values():
        if isinstance(stats, RTCRemoteInboundRtpStreamStats):
            rtts[stats.kind] = stats.roundTripTime * 1000
            remote_lost[stats.kind] = float(stats.packetsLost)
    for stats in report.values():
        if up and isinstance(stats, RTCOutboundRtpStreamStats):
            d = counters.delta(
                f"{id(pc)}:{stats.id}",
                packets=stats.packetsSent,
                bytes=stats.bytesSent,
                lost=remote_lost.get(stats.kind, 0.0),
            )
            lost = min(d["lost"], d["packets"])
            out[stats.kind] = {
                "packets": int(d["packets"] - lost),
                "lost": int(lost),
                "bitrate": d["bytes"] * 8 / 1000 / interval,
                "rtt": rtts.get(stats.kind),
            }
    if not up:
        for receiver in pc.getReceivers() if receivers is None else receivers:
            stream = _primary_stream(receiver)
            if stream is None:
                continue
            kind = receiver.track.kind
            # aiortc counts no bytes received: the downlink bit rate stays unreported.
            d = counters.delta(f"{id(receiver)}", packets=stream.packets_received, lost=stream.packets_lost)
            out[kind] = {
                "packets": int(d["packets"]),
                "lost": int(d["lost"]),
                "jitter": stream.jitter / CLOCK_RATE.get(kind, 90_000) * 1000,
            }
    return out


def _primary_stream(receiver: Any) -> Any:
    """The receiver's media stream statistics (the SSRC with the most packets, so not its retransmission
    stream). aiortc's ``getStats`` keys every SSRC of a receiver by one id, so one entry hides the other:
    its per-SSRC statistics are read directly (``StreamStatistics``), None if they are not there."""
    streams = getattr(receiver, "_RTCRtpReceiver__remote_streams", None)
    if not streams:
        return None
    return max(streams.values(), key=lambda s: s.packets_received)


class QosReporter:
    """Measures a :class:`~emberrtc.client.room.RoomClient` and sends a ``stats`` report every ``interval``
    seconds through ``send`` (the client's request method)."""

    def __init__(
        self, client: Any, send: Callable[[dict[str, Any]], Awaitable[dict[str, Any]]], interval: float = 5.0
    ) -> None:
        self._client = client
        self._send = send
        self.interval = interval
        self._counters = _Counters()
        self._task: asyncio.Task[None] | None = None
        self._joined_at = time.monotonic()
        self._first: dict[str, float] = {}
        self._once: dict[str, float] = {}
        self._seen_pcs: dict[int, bool] = {}
        self._cpu_process = time.process_time()
        self._cpu_wall = time.monotonic()
        self._cpu_system = _system_cpu_times()
        #: Replies to the reports sent (``stats_ok``), for tests and diagnostics.
        self.sent = 0
        self.stored = 0

    def joined(self, join_ms: float) -> None:
        self._once["join_ms"] = join_ms

    def first_frame(self, kind: str) -> None:
        if kind not in self._first:
            self._first[kind] = time.monotonic()
            self._once[f"first_{kind}_ms"] = (self._first[kind] - self._joined_at) * 1000

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._loop(), name="room-client-qos")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:
                report = await self.build()
                reply = await self._send(report)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the room may be closing; reports are best effort
                log.debug("QoS report not sent: %s", exc)
                continue
            self.sent += 1
            self.stored += int(bool(reply.get("stored")))

    def _cpu(self) -> tuple[float | None, float | None]:
        now_wall, now_process = time.monotonic(), time.process_time()
        wall = now_wall - self._cpu_wall
        app = (now_process - self._cpu_process) / wall / (os.cpu_count() or 1) if wall > 0 else None
        self._cpu_wall, self._cpu_process = now_wall, now_process
        system = None
        current = _system_cpu_times()
        if current is not None and self._cpu_system is not None and current[1] > self._cpu_system[1]:
            system = (current[0] - self._cpu_system[0]) / (current[1] - self._cpu_system[1])
        self._cpu_system = current
        clamp = lambda x: None if x is None else min(1.0, max(0.0, x))  # noqa: E731
        return clamp(app), clamp(system)

    def _attempts(self, pcs: list[RTCPeerConnection]) -> dict[str, int]:
        """Connections first seen this interval (attempts) and those that reached ``connected`` (ok)."""
        attempts = ok = 0
        for pc in pcs:
            key = id(pc)
            if key not in self._seen_pcs:
                self._seen_pcs[key] = False
                attempts += 1
            if not self._seen_pcs[key] and pc.connectionState == "connected":
                self._seen_pcs[key] = True
                ok += 1
        return {"attempts": attempts, "ok": ok}

    async def build(self) -> dict[str, Any]:
        """The report for the interval just ended (see :mod:`emberrtc.stats.report`)."""
        client = self._client
        interval = self.interval
        appcpu, syscpu = self._cpu()
        report: dict[str, Any] = {"type": "stats", "interval": interval, "ctime": time.time()}
        if appcpu is not None:
            report["appcpu"] = appcpu
        if syscpu is not None:
            report["syscpu"] = syscpu
        report.update(self._once)
        self._once = {}
        uplink: dict[str, Any] = {}
        for stream, publication in list(client.publications.items()):
            legs = await _leg_stats(publication.pc, self._counters, interval, up=True)
            if "audio" in legs and stream == "camera":
                uplink["audio"] = legs["audio"]
            if "video" in legs:
                uplink["video" if stream == "camera" else "screen"] = legs["video"]
        if uplink:
            report["uplink"] = uplink
        report["push"] = self._attempts([p.pc for p in client.publications.values()])
        report["pull"] = self._attempts([s.pc for s in client.subscriptions.values()])
        peers: dict[str, dict[str, Any]] = {}
        for sub in list(client.subscriptions.values()):
            mids = {str(t.get("mid")) for t in sub.tracks}
            own = [t.receiver for t in sub.pc.getTransceivers() if t.mid is not None and str(t.mid) in mids]
            legs = await _leg_stats(sub.pc, self._counters, interval, up=False, receivers=own)
            peer = peers.setdefault(sub.user_id, {"peer_id": sub.user_id})
            for kind, leg in legs.items():
                meter = sub.video if kind == "video" else sub.audio
                if isinstance(meter, FrameMeter):
                    frames, freeze = meter.take()
                    leg["freeze_ms"] = freeze * 1000
                    if kind == "video":
                        leg["fps"] = frames / interval
                        if meter.width and meter.height:
                            leg["width"], leg["height"] = meter.width, meter.height
                name = "audio" if kind == "audio" else "video" if sub.stream == "camera" else "screen"
                peer[name] = {k: v for k, v in leg.items() if v is not None}
        report["downlink"] = list(peers.values())[:64]
        return report
