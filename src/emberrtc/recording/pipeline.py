"""One job's media path: RTP in, files and RTMP pushes out (source -> transform -> sink).

::

    UDP datagram -> RtpPacket -> JitterBuffer -> Depacketizer -> Timeline -> VideoPath / AudioPath
                 -> Mp4Writer / HlsWriter -> files in the spool + reports
                 -> RtmpPush (one per ``publish_param.rtmp_urls`` URL) -> FLV to the URL (``rtmp.py``)

A plan may have files only, RTMP pushes only, or both. Pushes get the same H.264 and AAC packets as the
writers; their network I/O happens off this thread (``rtmp.py``), and a push that waits for a keyframe
(just connected, or after dropping a backlog) gets one like a writer that cuts: forced when transcoding,
asked of the publisher in passthrough. ``update`` with a new plan adds and removes pushes at once.

The pipeline is single-threaded and does no I/O of its own besides writing files: the worker process
(``worker.py``) feeds it datagrams and ticks it; tests can drive it directly with fake clocks. Times
given to it are monotonic seconds (``arrival``, ``now``); the wall clock is injected (``wall_clock``)
and used only to stamp files.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from emberrtc.domain.outbound import AllowList, OutboundPolicy
from emberrtc.recording import depacketizer
from emberrtc.recording.audio import AudioPacket, AudioPath
from emberrtc.recording.depacketizer import Depacketizer, EncodedFrame, OpusDepacketizer
from emberrtc.recording.plan import HLS, MP4, ObjectNaming, RecordingPlan
from emberrtc.recording.reports import KeyframeRequest, MediaState, Progress, Report
from emberrtc.recording.rtmp import RtmpPush
from emberrtc.recording.rtp import JitterBuffer, Released, RtpPacket, is_rtcp
from emberrtc.recording.timeline import Timeline
from emberrtc.recording.video import VideoPacket, VideoPath
from emberrtc.recording.writers import FileWriter, HlsWriter, Mp4Writer

log = logging.getLogger(__name__)

VIDEO, AUDIO = "video", "audio"


@dataclass
class _Track:
    kind: str
    clock_rate: int
    jitter: JitterBuffer
    depacketizer: Depacketizer | OpusDepacketizer


class Pipeline:
    """Records one job as its plan says; see the module docstring."""

    def __init__(
        self,
        plan: RecordingPlan,
        report: Callable[[Report], None],
        *,
        wall_clock: Callable[[], float] = time.time,
        run_id: str | None = None,
    ) -> None:
        self.plan = plan
        self._report = report
        self._timeline = Timeline(wall_clock, plan.timing.interruption)
        # Unique per worker run, so a restarted worker never reuses a file id or a spool name.
        self._run_id = run_id or secrets.token_hex(3)
        self._seq = 0
        self._names: set[str] = set(plan.reserved_names)
        self.spool = Path(plan.spool_dir)
        self.spool.mkdir(parents=True, exist_ok=True)
        self._tracks: dict[str, _Track] = {}
        self._video: VideoPath | None = None
        self._audio: AudioPath | None = None
        self._open_inputs(plan)
        self._writers: list[FileWriter] = []
        self._add_writers(plan)
        self._pushes: dict[str, RtmpPush] = {}  # by URL
        self._ending: list[RtmpPush] = []  # removed from the plan, still finishing their stream
        self._add_pushes(plan)
        self.packets = 0
        self.bad_packets = 0
        self._started_at: float | None = None
        self._last_arrival: float | None = None
        self._now = 0.0
        self._r = 0.0
        self._idle = False
        self._recording = False
        self._last_request: tuple[float, float] | None = None  # (monotonic, recording time)

    # --- feeding ---------------------------------------------------------------------------------------------

    def receive(self, kind: str, data: bytes, arrival: float) -> None:
        """One datagram from the ``kind`` (``video``/``audio``) port, received at monotonic ``arrival``."""
        track = self._tracks.get(kind)
        if track is None or is_rtcp(data):
            return
        try:
            packet = RtpPacket.parse(data)
        except ValueError:
            self.bad_packets += 1
            return
        self.packets += 1
        self._now = arrival
        self._last_arrival = arrival
        self._idle = False
        for item in track.jitter.push(packet, arrival):
            self._released(track, item)
        if self.packets % self.plan.timing.progress_packets == 0:
            self._report(Progress(self.packets, round(self._r, 3)))

    def _judge_silence(self, now: float, nothing: str) -> None:
        """Idle once nothing has come for ``idle_after`` (reported as ``nothing`` for so long); writers are
        told of a silence longer than ``interruption`` (they cut or pad as the plan says)."""
        since = self._last_arrival if self._last_arrival is not None else self._started_at
        silent = now - (now if since is None else since)
        if silent >= self.plan.timing.idle_after and not self._idle:
            self._idle = True
            self._recording = False
            self._report(MediaState("idle", f"{nothing} for {silent:.0f} s"))
        if self._last_arrival is not None and silent > self.plan.timing.interruption:
            for w in self._writers:
                w.silence(silent)
            self._retire_done()

    def tick(self, now: float, drained: bool = True) -> None:
        """Periodic work (every few tens of milliseconds): overdue packets, silence, keyframe retries.
        ``drained`` False: packets are waiting to be read (the caller is behind), so neither a missing packet
        nor a silence is judged yet."""
        self._now = now
        if self._started_at is None:
            self._started_at = now
        if not drained:
            self._poll_pushes()
            return
        for track in self._tracks.values():
            for item in track.jitter.poll(now):
                self._released(track, item)
        self._judge_silence(now, "no media")
        video = self._tracks.get(VIDEO)
        if video is not None and video.depacketizer.waiting_for_keyframe and not self._idle and self.packets:
            self._ask_keyframe("waiting for a keyframe")
        self._poll_pushes()

    def update(self, plan: RecordingPlan) -> None:
        """A changed rule (``PUT`` of ``record_param``): formats, cycles and names apply from the next file.
        Changed ``rtmp_urls`` (``PUT`` of ``publish_param``): pushes start and stop at once. Inputs (codecs,
        ports) do not change here; a new source needs a new worker."""
        self.plan = plan
        for url in [u for u in self._pushes if u not in plan.rtmp_urls]:
            push = self._pushes.pop(url)
            push.close()
            self._ending.append(push)
        self._add_pushes(plan)
        self._names |= set(plan.reserved_names)
        for w in self._writers:
            if isinstance(w, Mp4Writer):
                if plan.mp4 is None:
                    w.retiring = True
                else:
                    w.config, w.retiring = plan.mp4, False
            elif isinstance(w, HlsWriter):
                if plan.hls is None:
                    w.retiring = True
                else:
                    w.config, w.retiring = plan.hls, False
        self._add_writers(plan)
        self._retire_done()

    def close(self) -> None:
        """End of the job: everything pending is written and every file closed and reported."""
        self._flush_inputs()
        for w in self._writers:
            w.close()
        self._writers = []
        # Every push ends its stream at once, in parallel, within one deadline.
        pushes, self._pushes = [*self._pushes.values(), *self._ending], {}
        for push in pushes:
            push.close()
        deadline = time.monotonic() + self.plan.timing.push_connect_timeout + 2.0
        for push in pushes:
            push.join(deadline)
        self._ending = pushes
        self._poll_pushes()

    # --- FileContext (for the writers) ----------------------------------------------------------------------

    def new_file(self, naming: ObjectNaming, record_format: str, start: float, extension: str) -> tuple[str, str, Path]:
        name = naming.object_name(record_format, self.wall_at(start), extension)
        if name in self._names:  # two files in one second, or a prefix without {file_start_time}
            stem = name.removesuffix(extension)
            n = 1
            while f"{stem}-{n}{extension}" in self._names:
                n += 1
            name = f"{stem}-{n}{extension}"
        self._names.add(name)
        self._seq += 1
        file_id = f"{self._run_id}-{record_format.lower()}{self._seq:04d}"
        return file_id, name, self.spool / f"{file_id}{extension}"

    def wall_at(self, r: float) -> float:
        return self._timeline.wall_at(r)

    def report(self, report: Report) -> None:
        self._report(report)

    # --- inputs (a mixed job's pipeline replaces these) --------------------------------------------------------

    def _open_inputs(self, plan: RecordingPlan) -> None:
        """The plan's video and audio tracks, and their paths to the writers' H.264 and AAC."""
        if plan.video is not None:
            self._video = VideoPath(plan.video, plan.encoding)
            self._add_track(VIDEO, plan.video.codec, plan.video.clock_rate)
        if plan.audio is not None:
            self._audio = AudioPath(plan.encoding)
            self._add_track(AUDIO, plan.audio.codec, plan.audio.clock_rate)

    def _flush_inputs(self) -> None:
        """At the end: everything the inputs still hold, to the writers."""
        for track in self._tracks.values():
            for item in track.jitter.drain():
                self._released(track, item)
            for frame in track.depacketizer.flush():
                self._frame(track, frame)
        if self._video is not None:
            self._write_video(self._video.flush())
        if self._audio is not None:
            self._write_audio(self._audio.flush())

    @property
    def has_video(self) -> bool:
        """Does the output have video (files wait a while for it before recording audio alone)?"""
        return self.plan.video is not None

    # --- internals ----------------------------------------------------------------------------------------------

    def _add_track(self, kind: str, codec: str, clock_rate: int) -> None:
        self._tracks[kind] = _Track(
            kind,
            clock_rate,
            JitterBuffer(self.plan.timing.jitter_delay),
            depacketizer.for_codec(codec, lambda: self._ask_keyframe("no decodable picture")),
        )

    def _add_writers(self, plan: RecordingPlan) -> None:
        have = {w.record_format for w in self._writers if not w.retiring}
        template = self._audio.template if self._audio is not None else None
        has_video = self.has_video
        if plan.mp4 is not None and MP4 not in have:
            self._writers.append(Mp4Writer(plan.mp4, self, plan.timing, has_video, template))
        if plan.hls is not None and HLS not in have:
            self._writers.append(HlsWriter(plan.hls, self, plan.timing, has_video, template))

    def _add_pushes(self, plan: RecordingPlan) -> None:
        template = self._audio.template if self._audio is not None else None
        for url in plan.rtmp_urls:
            if url not in self._pushes:
                self._pushes[url] = RtmpPush(
                    url,
                    has_video=self.has_video,
                    audio=template,
                    timing=plan.timing,
                    outbound=OutboundPolicy(AllowList.from_entries(plan.outbound_allow)),
                )

    def _poll_pushes(self) -> None:
        """Report the pushes' state changes (they happen on their threads; reports are sent from here)."""
        for push in [*self._pushes.values(), *self._ending]:
            for state in push.poll():
                self._report(state)
        if any(p.done for p in self._ending):
            self._ending = [p for p in self._ending if not p.done]

    def _push_wants_keyframe(self) -> bool:
        return any(p.wants_keyframe for p in self._pushes.values())

    def _retire_done(self) -> None:
        if any(w.done for w in self._writers):
            self._writers = [w for w in self._writers if not w.done]

    def _released(self, track: _Track, item: Released) -> None:
        for frame in track.depacketizer.push(item):
            self._frame(track, frame)

    def _frame(self, track: _Track, frame: EncodedFrame) -> None:
        place = self._timeline.place(track.kind, frame.ssrc, frame.timestamp, track.clock_rate, frame.arrival)
        if place.interruption is not None:
            log.info("media interrupted for %.1f s", place.interruption)
            for w in self._writers:
                w.interrupted(place.interruption, place.before)
        r = self._r = place.time
        if track.kind == VIDEO and self._video is not None:
            # Transcoding: force a keyframe where a writer must cut. Passthrough: ask the publisher.
            push_waits = self._push_wants_keyframe()
            force = push_waits or any(w.wants_keyframe(r, False) for w in self._writers)
            wrote = self._write_video(self._video.push(frame, round(r * 90_000), force))
            if self._video.passthrough and any(w.wants_keyframe(r, True) for w in self._writers):
                self._ask_keyframe("a file or segment is due to start")
            elif self._video.passthrough and push_waits:
                self._ask_keyframe("an RTMP push starts with a keyframe")
        elif track.kind == AUDIO and self._audio is not None:
            wrote = self._write_audio(self._audio.push(frame, round(r * self._audio.sample_rate)))
        else:
            return
        self._retire_done()
        if wrote and not self._recording:
            self._recording = True
            self._report(MediaState("recording", "recording"))

    def _write_video(self, packets: list[VideoPacket]) -> bool:
        """To the writers and the pushes. True if media went out (into a file, or to the pushes: a push
        that is not connected still counts, the job is live)."""
        wrote = bool(packets) and bool(self._pushes)
        for pkt in packets:
            for w in self._writers:
                wrote = w.video(pkt) or wrote
            for push in self._pushes.values():
                push.video(pkt)
        return wrote

    def _write_audio(self, packets: list[AudioPacket]) -> bool:
        wrote = bool(packets) and bool(self._pushes)
        rate = self._audio.sample_rate if self._audio is not None else 48_000
        for pkt in packets:
            for w in self._writers:
                wrote = w.audio(pkt, rate) or wrote
            for push in self._pushes.values():
                push.audio(pkt, rate)
        return wrote

    def _ask_keyframe(self, reason: str) -> None:
        """Ask the publisher for a keyframe, at most once per ``keyframe_retry`` of both wall and media time."""
        retry = self.plan.timing.keyframe_retry
        last = self._last_request
        if last is not None and self._now - last[0] < retry and self._r - last[1] < retry:
            return
        self._last_request = (self._now, self._r)
        self._report(KeyframeRequest(reason))
