"""A mixed-stream job's media path (spec 4.8): every stream of the room in, one composed stream out.

::

    UDP datagrams (one port; the media plane rewrites each stream's SSRC, the plan says whose it is)
        -> RtpPacket -> JitterBuffer -> Depacketizer -> decoder (H.264, VP8, Opus)
        -> Compositor (video, placed by the layout) / AudioMixer (audio, the three loudest)
    output clock (a constant frame rate, ``Timing.mix_latency`` behind the arrivals)
        -> Compositor.compose -> MixVideoEncoder -> H.264 --+
        -> AudioMixer.pull -> AudioPath (AAC) ---------------+-> the single-stream pipeline's writers and
                                                                RTMP pushes (record rules, cycles, merge
                                                                threshold, MP4/HLS, reports: unchanged)

Time. The output is made on the worker's monotonic clock: one step per frame period (``1/fps``; 20 ms for
``audio_only``), each composing the newest picture of every input and taking that step's samples from the
mixer. A step at instant ``t`` is made once a packet arrives, or the clock passes, ``t + mix_latency``
(inputs wait up to ``Timing.jitter_delay`` in their jitter buffers): arrival times are the kernel's, so a
backlog read at once is composed as it came. Steps go only up to the latest arrival: when nobody sends
anything (nobody publishes), the output stops; when media comes back after more than
``Timing.interruption``, it resumes at the arrival and the writers see an interruption, exactly like a
single-stream job's silence (``Timeline`` cuts the gap out and maps recording time to the wall clock).

Lip sync. Each input's frames are placed by its own RTP timestamps: a :class:`StreamClock` per stream maps
them to the instants they were due (Janus ``rtp_forward`` sends no sender reports, so by the stream's
earliest packet) and measures how late the stream arrives. A publication's audio and video (one user's
camera and microphone) are held back together by the delay of the later of the two (at most
``MAX_AV_DELAY``): a picture due at ``d`` is decoded for the output instant ``d + delay - mix_latency``,
and audio due at ``d`` is given to the mixer for that same instant (``AudioMixer.push(at=...)``, which puts
silence before it, or cuts what is already past, when it is more than 30 ms off). So a video that comes
300 ms late delays its owner's voice by as much, and lips and voice stay together; other participants
are not held back. A stream that is late from its very first packet cannot be told from an on-time one.

Inputs come and go with :meth:`MixPipeline.update` (the server sends a new plan when a publisher joins,
leaves or re-publishes, and when a ``PUT`` changes the layout or the images): a new layout applies to the
next frame composed, in the same file.

Every two seconds of output the composite is also written, small, as the job's live preview
(``mix_preview``: ``.preview.jpg`` in the spool folder, for the console).

Threads. The job runs on the worker's one thread while it needs less than ``Encoding.mix_parallel_load``
of a core; past that, each step's pictures are decoded and scaled to their tiles on several threads and
the encoder is reopened with several (``mix_decoding``: same pictures, same order, same file). Everything
else (RTP, audio, painting the canvas) stays on the worker's thread.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import av

from emberrtc.recording import depacketizer
from emberrtc.recording.audio import AudioPath
from emberrtc.recording.audio_mixer import MAX_QUEUE, AudioMixer
from emberrtc.recording.compositor import Compositor
from emberrtc.recording.depacketizer import Depacketizer, EncodedFrame, OpusDepacketizer
from emberrtc.recording.layout import Layout, Participant, compute_layout, layout_params
from emberrtc.recording.mix_decoding import LoadGauge, ParallelWork, decode
from emberrtc.recording.mix_images import MixImages, decode_image
from emberrtc.recording.mix_preview import PreviewWriter
from emberrtc.recording.mix_video import EncodeTemplate, MixVideoEncoder, parse_template
from emberrtc.recording.pipeline import Pipeline
from emberrtc.recording.plan import H264, MixImageFiles, MixInput, MixStream, RecordingPlan
from emberrtc.recording.reports import KeyframeRequest, MediaState, Progress, Report, WorkerError
from emberrtc.recording.rtp import JitterBuffer, Released, RtpPacket, is_rtcp
from emberrtc.recording.timeline import StreamClock
from emberrtc.recording.video import VideoPacket

log = logging.getLogger(__name__)

AUDIO_STEP = 0.02  # seconds of output per step of an audio_only job (one Opus frame's worth)
#: The most (seconds) a participant's audio and video are held back to wait for the later of the two.
MAX_AV_DELAY = 1.0
_MIX_TRACK = "mix"  # the output's one track on the timeline


@dataclass
class _Input:
    """One forwarded stream: its packets to decoded frames."""

    spec: MixStream
    jitter: JitterBuffer
    depacketizer: Depacketizer | OpusDepacketizer
    clock: StreamClock
    decoder: av.VideoCodecContext | av.AudioCodecContext | None = None
    #: Video: frames waiting for their instant on the output, (due instant, frame), in order.
    waiting: deque[tuple[float, EncodedFrame]] = field(default_factory=deque)
    packets: int = 0
    decode_errors: int = 0
    last_request: tuple[float, float] | None = None  # (monotonic, recording time) of the last keyframe request

    @property
    def source(self) -> tuple[str, str]:
        """The compositor's name for a video input: (user_id, "camera" | "screen")."""
        return (self.spec.user_id, self.spec.stream)

    @property
    def mixer_key(self) -> str:
        """The mixer's name for an audio input: one per user and publication."""
        return f"{self.spec.user_id}/{self.spec.stream}"

    @property
    def publication(self) -> tuple[str, str]:
        """The participant's publication the stream belongs to: its audio and video are kept in sync."""
        return (self.spec.user_id, self.spec.stream)


@dataclass
class MixStats:
    """Counters for tests and logs."""

    frames: int = 0  # output steps made
    unknown_packets: int = 0  # RTP with an SSRC the plan does not name (a stream just removed, or stray)
    decode_errors: int = 0
    layouts: list[Layout] = field(default_factory=list)  # every layout applied, in order
    parallel_steps: int = 0  # output steps whose pictures were decoded on several threads (mix_decoding)


class MixPipeline(Pipeline):
    """Records a mixed job as its plan says (see the module docstring); the worker drives it like
    :class:`Pipeline`: ``receive`` datagrams, ``tick`` the clock, ``update`` the plan, ``close``."""

    def __init__(
        self,
        plan: RecordingPlan,
        report: Callable[[Report], None],
        *,
        wall_clock: Callable[[], float] = time.time,
        run_id: str | None = None,
        cpu_clock: Callable[[], float] = time.process_time,
    ) -> None:
        if plan.mix is None:
            raise ValueError("a mixed pipeline needs a plan with mix inputs")
        self._cpu_clock = cpu_clock
        super().__init__(plan, report, wall_clock=wall_clock, run_id=run_id)

    # --- inputs ----------------------------------------------------------------------------------------------

    @property
    def mix(self) -> MixInput:
        assert self.plan.mix is not None
        return self.plan.mix

    @property
    def has_video(self) -> bool:
        return not self.mix.audio_only

    @property
    def layout(self) -> Layout | None:
        """The layout the next frame is composed with (None: audio only)."""
        return self._layout

    def _open_inputs(self, plan: RecordingPlan) -> None:
        mix = plan.mix
        assert mix is not None
        e = plan.encoding
        self.stats = MixStats()
        self._audio = AudioPath(e)
        self._mixer = AudioMixer(e.audio_sample_rate, max_queue=MAX_QUEUE + MAX_AV_DELAY)
        self._template: EncodeTemplate | None = None
        self._compositor: Compositor | None = None
        self._encoder: MixVideoEncoder | None = None
        self.preview: PreviewWriter | None = None
        # Video decoded and encoded on one thread, or on several once the job needs more than a core
        # (mix_decoding).
        self._gauge: LoadGauge | None = None
        self._parallel: ParallelWork | None = None
        if not mix.audio_only:
            self._gauge = LoadGauge(e.mix_parallel_load, cpu=self._cpu_clock)
            if self._gauge.parallel:
                self._parallel = ParallelWork(e.mix_decode_threads)
            self._template = parse_template(mix.encode_template)
            self._compositor = Compositor(self._template.width, self._template.height)
            threads = self._parallel.threads if self._parallel is not None else e.threads
            self._encoder = MixVideoEncoder(self._template, dataclasses.replace(e, threads=threads))
            self.preview = PreviewWriter(self.spool, self._template.width, self._template.height)
        self._step = 1 / self._template.fps if self._template is not None else AUDIO_STEP
        self._inputs: dict[int, _Input] = {}  # by SSRC
        self._layout: Layout | None = None
        self._t_next: float | None = None  # monotonic instant of the next output step
        self._steps = 0
        self._delays: dict[tuple[str, str], float] = {}  # by publication, see _measure_delays
        self._set_streams(mix.streams)
        self._set_layout(mix)
        self._set_images(mix.images)

    def _flush_inputs(self) -> None:
        """What the jitter buffers hold is decoded, the output made up to the last arrival, the encoders
        emptied."""
        for stream in self._inputs.values():
            for item in stream.jitter.drain():
                self._released_input(stream, item)
        if self._last_arrival is not None:
            self._advance(self._last_arrival)
        # What the encoders still hold ends the files that are open; a file already ended by a silence
        # must not be followed by a new one made of nothing but this tail.
        writers, self._writers = self._writers, [w for w in self._writers if w.open]
        try:
            if self._encoder is not None:
                self._write_video([self._packet(p) for p in self._encoder.flush()])
            assert self._audio is not None
            self._write_audio(self._audio.flush())
        finally:
            self._writers = writers
            if self.preview is not None:
                self.preview.remove()

    # --- feeding ---------------------------------------------------------------------------------------------

    def receive(self, kind: str, data: bytes, arrival: float) -> None:
        """One datagram from the job's port (``kind`` is the port's name, ``mix``)."""
        if is_rtcp(data):
            return
        try:
            packet = RtpPacket.parse(data)
        except ValueError:
            self.bad_packets += 1
            return
        stream = self._inputs.get(packet.ssrc)
        if stream is None:
            self.stats.unknown_packets += 1
            return
        self.packets += 1
        stream.packets += 1
        self._now = arrival
        if self._t_next is None:
            self._t_next = arrival
        elif self._last_arrival is not None and arrival - self._last_arrival > self.plan.timing.interruption:
            # Media again after nobody sent anything: the output resumes now (the gap is an interruption).
            self._t_next = max(self._t_next, arrival)
        self._last_arrival = arrival
        self._idle = False
        # Steps due before this packet are made first: the output follows arrival times (the kernel's), so a
        # backlog read at once (a worker starting on a filled socket) is composed as it came, not smeared.
        self._advance(arrival - self.plan.timing.mix_latency)
        stream.clock.arrived(packet.timestamp, arrival)
        for item in stream.jitter.push(packet, arrival):
            self._released_input(stream, item)
        if self.packets % self.plan.timing.progress_packets == 0:
            self._report(Progress(self.packets, round(self._r, 3)))

    def tick(self, now: float, drained: bool = True) -> None:
        """Overdue packets, the output steps that are due, silence, keyframe requests (``drained`` False:
        the caller is behind, packets wait to be read: no packet is given up for lost, no silence judged)."""
        self._now = now
        if self._started_at is None:
            self._started_at = now
        if drained:
            for stream in list(self._inputs.values()):
                for item in stream.jitter.poll(now):
                    self._released_input(stream, item)
        if self._last_arrival is not None:
            self._advance(min(now - self.plan.timing.mix_latency, self._last_arrival))
        if not drained:
            self._ask_keyframes()
            self._poll_pushes()
            return
        self._judge_silence(now, "no media from anyone in the room")
        self._ask_keyframes()
        self._poll_pushes()

    def _ask_keyframes(self) -> None:
        """Ask again for each video input still waiting for a keyframe (rate-limited per input)."""
        if not self._idle and self._compositor is not None:
            for stream in self._inputs.values():
                if stream.spec.kind == "video" and stream.packets and stream.depacketizer.waiting_for_keyframe:
                    self._ask_input_keyframe(stream, "waiting for a keyframe")

    def update(self, plan: RecordingPlan) -> None:
        """A new plan from the server: outputs as :meth:`Pipeline.update`; streams added and removed (a
        publisher joined, left or re-published); a new layout or new images from the next frame."""
        if plan.mix is None:
            raise ValueError("a mixed job's plan must keep its mix inputs")
        before = self.mix
        if plan.mix.encode_template != before.encode_template:
            log.error("the encode template cannot change while the job runs; keeping %s", before.encode_template)
        super().update(plan)
        mix = plan.mix
        if mix.streams != before.streams:
            self._set_streams(mix.streams)
        if mix.streams != before.streams or mix.params != before.params:
            self._set_layout(mix)
        if mix.images != before.images:
            self._set_images(mix.images)

    # --- internals ------------------------------------------------------------------------------------------

    def _set_streams(self, streams: tuple[MixStream, ...]) -> None:
        wanted = {s.ssrc: s for s in streams if s.kind == "audio" or self._compositor is not None}
        for ssrc, stream in list(self._inputs.items()):
            if wanted.get(ssrc) == stream.spec:
                continue
            del self._inputs[ssrc]
            place = (stream.spec.user_id, stream.spec.stream, stream.spec.kind)
            if any((s.user_id, s.stream, s.kind) == place for s in wanted.values()):
                continue  # a re-publish: the new stream takes over the same place
            if stream.spec.kind == "video" and self._compositor is not None:
                self._compositor.drop(stream.source)
            elif stream.spec.kind == "audio":
                self._mixer.remove(stream.mixer_key)
        for ssrc, spec in wanted.items():
            if ssrc in self._inputs:
                continue
            depack = depacketizer.for_codec(spec.codec, self._keyframe_asker(ssrc))
            clock = StreamClock(48_000 if spec.kind == "audio" else 90_000, max_delay=MAX_AV_DELAY)
            stream = _Input(spec, JitterBuffer(self.plan.timing.jitter_delay), depack, clock)
            self._inputs[ssrc] = stream

    def _add_writers(self, plan: RecordingPlan) -> None:
        super()._add_writers(plan)
        for w in self._writers:
            w.mixed = True  # mixing counts as transcoding (usage accounting)

    def _keyframe_asker(self, ssrc: int) -> Callable[[], None]:
        def ask() -> None:
            stream = self._inputs.get(ssrc)
            if stream is not None:
                self._ask_input_keyframe(stream, "no decodable picture")

        return ask

    def _set_layout(self, mix: MixInput) -> None:
        if self._compositor is None or self._template is None:
            return
        users: dict[str, Participant] = {}
        for s in mix.streams:
            p = users.get(s.user_id) or Participant(s.user_id, s.order, False, False)
            video = s.kind == "video"
            users[s.user_id] = Participant(
                s.user_id,
                min(p.order, s.order),
                p.camera or (video and s.stream == "camera"),
                p.screen or (video and s.stream == "screen"),
            )
        try:
            params = layout_params(mix.params)
            layout = compute_layout(
                params,
                sorted(users.values(), key=lambda p: (p.order, p.user_id)),
                self._template.width,
                self._template.height,
                previous=self._layout,
            )
        except (ValueError, KeyError, TypeError) as exc:  # validated by the API; a fault must not end the job
            log.error("layout failed: %s", exc)
            self._report(WorkerError(f"the layout could not be applied: {exc}", fatal=False))
            return
        self._layout = layout
        self._compositor.set_layout(layout)
        self.stats.layouts.append(layout)

    def _set_images(self, files: MixImageFiles) -> None:
        if self._compositor is None:
            return

        def load(path: str | None) -> av.VideoFrame | None:
            if not path:
                return None
            try:
                return decode_image(Path(path).read_bytes())
            except (OSError, ValueError) as exc:  # the server checked it; say so and use the colour
                self._report(WorkerError(f"background image {Path(path).name}: {exc}", fatal=False))
                return None

        users = {user_id: frame for user_id, path in files.users if (frame := load(path)) is not None}
        self._compositor.set_images(
            MixImages(load(files.background), load(files.default_user), load(files.screen), users)
        )

    def _released_input(self, stream: _Input, item: Released) -> None:
        for frame in stream.depacketizer.push(item):
            due = stream.clock.due(frame.timestamp)
            if stream.spec.kind == "video":
                stream.waiting.append((due, frame))  # decoded when its output instant comes (_show_video)
            else:
                self._decode(stream, frame, self._audio_position(stream, due))

    def _measure_delays(self) -> None:
        """How long each publication's media is held back after it was due (once per output step): its
        latest stream's delay (so its audio and video stay together), plus one output step (what arrives
        in the step being made)."""
        delays: dict[tuple[str, str], float] = {}
        for stream in self._inputs.values():
            delay = stream.clock.delay(self._now)
            if delay > delays.get(stream.publication, -1.0):
                delays[stream.publication] = delay
        self._delays = {p: min(d, MAX_AV_DELAY) + self._step for p, d in delays.items()}

    def _delay(self, publication: tuple[str, str]) -> float:
        delay = self._delays.get(publication)
        if delay is None:  # a stream new since the last step
            self._measure_delays()
            delay = self._delays.get(publication, self._step)
        return delay

    def _audio_position(self, stream: _Input, due: float) -> int | None:
        """The mixer position (samples) of audio due at ``due``: the output instant it belongs at is
        ``due + delay - mix_latency`` (as a picture's, :meth:`_show_video`)."""
        if self._t_next is None:
            return None
        at = due + self._delay(stream.publication) - self.plan.timing.mix_latency
        return self._mixer.position + round((at - self._t_next) * self._mixer.sample_rate)

    def _show_video(self, t: float) -> None:
        """Each video input's pictures whose output instant (due + delay - mix_latency) has come by output
        instant ``t`` are decoded (on several threads when the job needs them); the compositor gets the
        newest."""
        assert self._compositor is not None
        horizon = t + self.plan.timing.mix_latency
        streams: list[_Input] = []
        work: list[tuple[av.VideoCodecContext, list[EncodedFrame]]] = []
        for stream in list(self._inputs.values()):
            waiting = stream.waiting
            if not waiting:
                continue
            delay = self._delay(stream.publication)
            due = []
            while waiting and waiting[0][0] + delay <= horizon:
                due.append(waiting.popleft()[1])
            if due:
                decoder = self._decoder(stream)
                assert isinstance(decoder, av.VideoCodecContext)
                streams.append(stream)
                work.append((decoder, due))
        if self._parallel is None:
            results = [decode(decoder, frames) for decoder, frames in work]
        else:
            if self._parallel.spreads(len(work)):
                self.stats.parallel_steps += 1
            results = self._parallel.decode(work)
        for stream, decoded in zip(streams, results, strict=True):
            for exc in decoded.errors:
                self._decode_failed(stream, exc)
            if decoded.picture is not None:
                self._compositor.update(stream.source, decoded.picture)

    def _decode_failed(self, stream: _Input, exc: av.FFmpegError) -> None:
        stream.decode_errors += 1
        self.stats.decode_errors += 1
        log.debug("%s: decode error: %s", stream.spec.key, exc)
        if stream.spec.kind == "video":
            self._ask_input_keyframe(stream, "undecodable picture")

    def _decoder(self, stream: _Input) -> av.VideoCodecContext | av.AudioCodecContext:
        spec = stream.spec
        if stream.decoder is None:
            name = "opus" if spec.kind == "audio" else ("h264" if spec.codec == H264 else "vp8")
            decoder = av.CodecContext.create(name, "r")
            assert isinstance(decoder, av.VideoCodecContext | av.AudioCodecContext)
            decoder.thread_count = self.plan.encoding.threads
            if isinstance(decoder, av.AudioCodecContext):
                decoder.sample_rate = 48_000  # RFC 7587
                decoder.layout = "stereo"
            stream.decoder = decoder
        return stream.decoder

    def _decode(self, stream: _Input, frame: EncodedFrame, at: int | None = None) -> None:
        """An audio frame decoded into the mixer at position ``at`` (video: :meth:`_show_video`)."""
        decoder = self._decoder(stream)
        try:
            decoded = decoder.decode(av.Packet(frame.data))
        except av.FFmpegError as exc:
            self._decode_failed(stream, exc)
            return
        for item in decoded:
            if isinstance(item, av.AudioFrame):
                self._mixer.push(stream.mixer_key, item, at)
                at = None  # more frames from one packet follow the first

    def _advance(self, horizon: float) -> None:
        """Make every output step due up to monotonic instant ``horizon``."""
        while self._t_next is not None and self._t_next <= horizon:
            self._output(self._t_next)
            self._t_next += self._step

    def _output(self, t: float) -> None:
        """One output step at monotonic instant ``t``: a composed frame and its samples."""
        place = self._timeline.place(_MIX_TRACK, 0, round(t * 90_000) % (1 << 32), 90_000, t)
        if place.interruption is not None:
            log.info("mix interrupted for %.1f s", place.interruption)
            for w in self._writers:
                w.interrupted(place.interruption, place.before)
        r = self._r = place.time
        wrote = False
        self._measure_delays()
        if self._compositor is not None and self._encoder is not None:
            if self._push_wants_keyframe() or any(w.wants_keyframe(r, False) for w in self._writers):
                self._encoder.force_keyframe()
            self._show_video(t)
            canvas = self._compositor.compose(self._parallel.run if self._parallel is not None else None)
            packets = self._encoder.encode(canvas, round(r * 90_000))
            if self.preview is not None:
                self.preview.offer(canvas, t)  # once per PREVIEW_INTERVAL: the console's live picture
            wrote = self._write_video([self._packet(p) for p in packets])
        assert self._audio is not None
        rate = self._audio.sample_rate
        samples = round((self._steps + 1) * self._step * rate) - round(self._steps * self._step * rate)
        mixed = self._mixer.pull(samples)
        wrote = self._write_audio(self._audio.push_samples(mixed, round(r * rate))) or wrote
        self._steps += 1
        self.stats.frames += 1
        if self._gauge is not None and self._gauge.output(self._step):
            self._use_threads(self._gauge.parallel)
        self._retire_done()
        if wrote and not self._recording:
            self._recording = True
            self._report(MediaState("recording", "recording"))

    def _use_threads(self, parallel: bool) -> None:
        """Decode on several threads from the next step on (``parallel``), or on this one again."""
        assert self._gauge is not None
        if parallel and self._parallel is None:
            self._parallel = ParallelWork(self.plan.encoding.mix_decode_threads)
            threads = self._parallel.threads
            log.info(
                "mix: %.2f CPU-s per output second; decoding and encoding on %d threads", self._gauge.load, threads
            )
        elif not parallel and self._parallel is not None:
            self._parallel.close()
            self._parallel = None
            threads = self.plan.encoding.threads
            log.info("mix: %.2f CPU-s per output second; back to one thread", self._gauge.load)
        else:
            return
        if self._encoder is not None:
            self._write_video([self._packet(p) for p in self._encoder.set_threads(threads)])

    def close(self) -> None:
        try:
            super().close()
        finally:
            if self._parallel is not None:
                self._parallel.close()
                self._parallel = None

    def _packet(self, packet: av.Packet) -> VideoPacket:
        assert self._template is not None and packet.pts is not None
        return VideoPacket(
            bytes(packet), packet.pts, packet.is_keyframe, self._template.width, self._template.height, False
        )

    def _ask_input_keyframe(self, stream: _Input, reason: str) -> None:
        """Ask one input's publisher for a keyframe, at most once per ``keyframe_retry`` of wall and media time."""
        retry = self.plan.timing.keyframe_retry
        last = stream.last_request
        if last is not None and self._now - last[0] < retry and self._r - last[1] < retry:
            return
        stream.last_request = (self._now, self._r)
        self._report(KeyframeRequest(f"{stream.spec.key}: {reason}", stream=stream.spec.key))
