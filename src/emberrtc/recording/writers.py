"""Recording files: MP4 files and HLS playlists of MPEG-TS segments, cut as the record rule says.

Writers take H.264 and AAC packets stamped with recording time (``timeline.py``) and decide where each
goes. Cuts follow spec 4.9:

- a file (MP4) or playlist (HLS) lasts ``record_cycle`` seconds of media; an HLS segment lasts
  ``record_slice_duration`` seconds. With video, a cut happens on a keyframe (so every file and segment
  starts with one): transcoded video gets a forced keyframe at the boundary; passed-through video is cut
  at the first keyframe from ``Timing.keyframe_lead`` seconds before the boundary on, and the pipeline asks
  the publisher for one from then on;
- an interruption up to ``record_max_duration_to_merge_file`` seconds continues the file (the timeline
  has already cut the silence out); a longer one ends it, and the next media starts a new one. HLS with
  ``-1`` always continues;
- a change of video format (size, or passthrough vs transcode) starts a new file: an MP4 sample
  description holds one SPS;
- audio-only files are written when video does not come (``Timing.video_wait``).

At a cut the old file stays open for audio still due before the cut (audio trails video by an encoder
frame), so consecutive files meet without a hole.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Protocol
from urllib.parse import quote

import av
from av.audio.stream import AudioStream

from emberrtc.recording.audio import AudioPacket
from emberrtc.recording.plan import HLS, MP4, HlsOutput, Mp4Output, ObjectNaming, Timing
from emberrtc.recording.reports import FileCompleted, FileStarted, PartCompleted, Report
from emberrtc.recording.video import VIDEO_TIME_BASE, VideoPacket

_SETTLE = 0.5  # seconds of video past a cut after which audio for the old file is no longer awaited

#: MP4 files are fragmented (ISO BMFF ``moof``/``mdat`` pairs after an empty ``moov``), a fragment every
#: 2 s of media: a worker that dies (SIGKILL, power loss) leaves a file that is valid up to its last
#: complete fragment, which ``salvage.py`` keeps. Players, browsers and ffmpeg read such files as any MP4.
#: ``flush_packets``: each fragment goes to the file when it is complete, not when an I/O buffer fills.
MP4_FRAGMENTS = {"movflags": "empty_moov+default_base_moof", "frag_duration": "2000000", "flush_packets": "1"}


class FileContext(Protocol):
    """What writers need from the pipeline: names, wall-clock times and a way to report."""

    def new_file(self, naming: ObjectNaming, record_format: str, start: float, extension: str) -> tuple[str, str, Path]:
        """A new file starting at recording time ``start``: (file id, object name, spool path)."""
        ...

    def wall_at(self, r: float) -> float: ...

    def report(self, report: Report) -> None: ...


class Muxer:
    """One output container (MP4 file or TS segment) with H.264 muxed as is and AAC from the template.

    Timestamps in the container are relative to ``origin`` (recording time, seconds)."""

    def __init__(
        self,
        path: Path,
        container_format: str,
        origin: float,
        video_size: tuple[int, int] | None,
        audio: AudioStream | None,
    ) -> None:
        self.path = path
        options = MP4_FRAGMENTS if container_format == "mp4" else {}
        self._c = av.open(str(path), "w", format=container_format, options=dict(options))
        self._video = None
        self._audio = None
        if video_size is not None:
            self._video = self._c.add_mux_stream("h264", width=video_size[0], height=video_size[1])
            self._video.time_base = VIDEO_TIME_BASE
        self._audio_tb = Fraction(1, 48_000)
        if audio is not None:
            self._audio = self._c.add_stream_from_template(audio)
            self._audio_tb = Fraction(1, audio.codec_context.sample_rate)
        self._v0 = round(origin * 90_000)
        self._a0 = round(origin / self._audio_tb)
        self._last_v = -1
        self._last_v_delta = 3_000
        self._last_a = -1
        self.end = origin  # recording time reached (end of the last packet)
        self.last = origin  # recording time of the last packet's start

    @property
    def has_video(self) -> bool:
        return self._video is not None

    def video(self, pkt: VideoPacket) -> None:
        if self._video is None:
            return
        pts = pkt.pts - self._v0
        if pts < 0:
            return
        if pts <= self._last_v:
            pts = self._last_v + 1
        if self._last_v >= 0:
            self._last_v_delta = pts - self._last_v
        self._last_v = pts
        p = av.Packet(pkt.data)
        p.pts = p.dts = pts
        p.duration = self._last_v_delta
        p.time_base = VIDEO_TIME_BASE
        p.is_keyframe = pkt.keyframe
        p.stream = self._video
        self._c.mux(p)
        self._reached(pkt.pts / 90_000, (pkt.pts + self._last_v_delta) / 90_000)

    def audio(self, pkt: AudioPacket) -> None:
        if self._audio is None:
            return
        pts = pkt.pts - self._a0
        if pts < 0 or pts <= self._last_a:
            return
        self._last_a = pts
        p = av.Packet(pkt.data)
        p.pts = p.dts = pts
        p.duration = pkt.duration
        p.time_base = self._audio_tb
        p.stream = self._audio
        self._c.mux(p)
        self._reached(float(pkt.pts * self._audio_tb), float((pkt.pts + pkt.duration) * self._audio_tb))

    def _reached(self, start: float, end: float) -> None:
        if end > self.end:
            self.end, self.last = end, start

    def close(self) -> None:
        self._c.close()


@dataclass
class _Held:
    """A container kept open after a cut for audio still due before ``cut`` (recording time)."""

    muxer: Muxer
    cut: float
    done: Callable[[], None]


@dataclass
class _File:
    file_id: str
    config: Mp4Output | HlsOutput  # the rule's settings when the file started: they last as long as it
    object_name: str
    path: Path
    start: float
    video_size: tuple[int, int] | None
    passthrough: bool
    end: float = 0.0  # recording time of the end of the last packet
    last: float = 0.0  # recording time of the start of the last packet

    @property
    def naming(self) -> ObjectNaming:
        return self.config.naming

    def reached(self, muxer: Muxer) -> None:
        if muxer.end > self.end:
            self.end, self.last = muxer.end, muxer.last


@dataclass
class _Playlist(_File):
    segments: list[tuple[str, float]] = field(default_factory=list)  # (uri, duration)
    segment: Muxer | None = None
    segment_start: float = 0.0
    segment_index: int = 0
    segment_object: str = ""

    @property
    def hls(self) -> HlsOutput:
        assert isinstance(self.config, HlsOutput)
        return self.config


class FileWriter:
    """Cutting common to both formats; subclasses open, feed and close their files."""

    record_format = ""

    def __init__(
        self,
        ctx: FileContext,
        timing: Timing,
        has_video: bool,
        audio: AudioStream | None,
    ) -> None:
        self._ctx = ctx
        self._timing = timing
        self._has_video = has_video
        self._audio_template = audio
        self.retiring = False  # the rule no longer has this format: finish the current file, open no more
        #: A mixed job's files: all their media was made by Ember (usage counts them as transcoded, audio
        #: only or not).
        self.mixed = False
        self._file: _File | None = None
        self._held: list[_Held] = []
        self._audio_wait_from: float | None = None
        self._not_before = float("-inf")  # after an interruption ended a file: media from before it is late

    # --- what the pipeline calls -------------------------------------------------------------------------

    @property
    def open(self) -> bool:
        return self._file is not None

    @property
    def done(self) -> bool:
        return self.retiring and self._file is None and not self._held

    def wants_keyframe(self, r: float, passthrough: bool) -> bool:
        """Should the next video frame be a keyframe (to open a file, or for a cut that is due)?"""
        if self._file is None:
            return not self.retiring
        boundary = self._next_boundary()
        if boundary is None:
            return False
        return r >= boundary - (self._timing.keyframe_lead if passthrough else 0.0)

    def video(self, pkt: VideoPacket) -> bool:
        r = pkt.pts / 90_000
        self._settle_held(r - _SETTLE)
        f = self._file
        if f is not None and pkt.keyframe:
            if f.video_size != (pkt.width, pkt.height) or f.passthrough != pkt.passthrough:
                self._rotate(r)  # a new video format: a new file
            elif self._cut_due(r, pkt.passthrough):
                self._cut(r, pkt.passthrough)
        if self._file is None:
            if not pkt.keyframe or self.retiring or r <= self._not_before:
                return False
            self._start(r, (pkt.width, pkt.height), pkt.passthrough)
        f = self._file
        assert f is not None
        if f.video_size != (pkt.width, pkt.height) or f.passthrough != pkt.passthrough:
            return False  # waiting for the keyframe of the new format
        self._write_video(pkt)
        return True

    def audio(self, pkt: AudioPacket, sample_rate: int) -> bool:
        r = pkt.pts / sample_rate
        for held in self._held:
            if r < held.cut:
                held.muxer.audio(pkt)
                return True
        self._settle_held(r)
        if self._file is None:
            if self.retiring or r <= self._not_before:
                return False
            if self._has_video:
                # Wait a while for video to start the file; then record the audio alone.
                if self._audio_wait_from is None:
                    self._audio_wait_from = r
                if r - self._audio_wait_from < self._timing.video_wait:
                    return False
            self._start(r, None, False)
        elif self._file.video_size is None and self._cut_due(r, False):
            self._cut(r, False)
        if self._file is None:
            return False
        self._write_audio(pkt)
        return True

    def interrupted(self, gap: float, before: float) -> None:
        """An interruption of ``gap`` seconds, after recording time ``before``, was cut out just now."""
        threshold = self._merge_gap()
        if threshold is not None and gap > threshold:
            self._finish()
            # Media from before the gap may still come (one stream read ahead of the other): it ended
            # with the old file and must not start the new one.
            self._not_before = before

    def silence(self, seconds: float) -> None:
        """No packets for ``seconds`` (wall clock): end the file once the merge threshold is surely passed,
        so it is stored while the publisher is away."""
        threshold = self._merge_gap()
        if threshold is not None and seconds > threshold + self._timing.interruption:
            self._finish()

    def close(self) -> None:
        self._finish()

    # --- subclass parts ------------------------------------------------------------------------------------

    def _merge_gap(self) -> float | None:
        raise NotImplementedError

    def _next_boundary(self) -> float | None:
        raise NotImplementedError

    def _cut_due(self, r: float, passthrough: bool) -> bool:
        boundary = self._next_boundary()
        lead = self._timing.keyframe_lead if passthrough else 0.0
        return boundary is not None and r >= boundary - lead

    def _cut(self, r: float, passthrough: bool) -> None:
        """A planned cut at recording time ``r`` (a keyframe, or audio when there is no video)."""
        self._rotate(r)

    def _start(self, r: float, video_size: tuple[int, int] | None, passthrough: bool) -> None:
        raise NotImplementedError

    def _rotate(self, r: float) -> None:
        """End the current file at ``r`` (keeping it open for late audio) and let the next packet start one."""
        raise NotImplementedError

    def _write_video(self, pkt: VideoPacket) -> None:
        raise NotImplementedError

    def _write_audio(self, pkt: AudioPacket) -> None:
        raise NotImplementedError

    def _finish(self) -> None:
        """Close everything now."""
        raise NotImplementedError

    # --- helpers -------------------------------------------------------------------------------------------

    def _hold(self, muxer: Muxer, cut: float, done: Callable[[], None]) -> None:
        if self._audio_template is None:
            done()
        else:
            self._held.append(_Held(muxer, cut, done))

    def _settle_held(self, r: float) -> None:
        while self._held and r >= self._held[0].cut:
            self._held.pop(0).done()

    def _settle_all(self) -> None:
        while self._held:
            self._held.pop(0).done()

    def _muxer(self, path: Path, container_format: str, origin: float, f: _File) -> Muxer:
        return Muxer(path, container_format, origin, f.video_size, self._audio_template)

    def _new_file(self, naming: ObjectNaming, r: float, extension: str) -> tuple[str, str, Path]:
        self._audio_wait_from = None
        return self._ctx.new_file(naming, self.record_format, r, extension)

    def _report_started(self, f: _File) -> None:
        n, start = f.naming, self._ctx.wall_at(f.start)
        self._ctx.report(
            FileStarted(
                f.file_id,
                self.record_format,
                str(f.path),
                n.location,
                n.bucket,
                f.object_name,
                start,
                transcoded=self.mixed or (f.video_size is not None and not f.passthrough),
            )
        )

    def _report_completed(self, f: _File) -> None:
        width, height = f.video_size if f.video_size else (None, None)
        self._ctx.report(
            FileCompleted(
                file_id=f.file_id,
                record_format=self.record_format,
                path=str(f.path),
                location=f.naming.location,
                bucket=f.naming.bucket,
                object_name=f.object_name,
                start_time=self._ctx.wall_at(f.start),
                # The last packet's own instant, plus its length: its end may lie past an interruption.
                end_time=self._ctx.wall_at(f.last) + (f.end - f.last),
                duration=max(0.0, f.end - f.start),
                width=width,
                height=height,
                transcoded=self.mixed or (f.video_size is not None and not f.passthrough),
            )
        )


class Mp4Writer(FileWriter):
    """MP4 files of ``record_cycle`` seconds (spec Table 4-234)."""

    record_format = MP4

    def __init__(self, config: Mp4Output, ctx: FileContext, timing: Timing, has_video: bool, audio: AudioStream | None):
        super().__init__(ctx, timing, has_video, audio)
        self.config = config  # a new rule applies from the next file
        self._mux: Muxer | None = None

    def _merge_gap(self) -> float | None:
        return self._file.config.merge_gap if self._file is not None else None

    def _next_boundary(self) -> float | None:
        f = self._file
        if f is None or not isinstance(f.config, Mp4Output):
            return None
        return f.start + f.config.record_cycle

    def _start(self, r: float, video_size: tuple[int, int] | None, passthrough: bool) -> None:
        file_id, object_name, path = self._new_file(self.config.naming, r, ".mp4")
        f = _File(file_id, self.config, object_name, path, r, video_size, passthrough, end=r, last=r)
        self._mux = self._muxer(path, "mp4", r, f)
        self._file = f
        self._report_started(f)

    def _rotate(self, r: float) -> None:
        f, mux = self._file, self._mux
        self._file = self._mux = None
        if f is None or mux is None:
            return
        self._settle_all()

        def done() -> None:
            self._close(f, mux)

        self._hold(mux, r, done)

    def _write_video(self, pkt: VideoPacket) -> None:
        assert self._mux is not None
        self._mux.video(pkt)

    def _write_audio(self, pkt: AudioPacket) -> None:
        assert self._mux is not None
        self._mux.audio(pkt)

    def _finish(self) -> None:
        self._settle_all()
        f, mux = self._file, self._mux
        self._file = self._mux = None
        if f is not None and mux is not None:
            self._close(f, mux)

    def _close(self, f: _File, mux: Muxer) -> None:
        mux.close()
        f.reached(mux)
        self._report_completed(f)


class HlsWriter(FileWriter):
    """HLS: TS segments of ``record_slice_duration`` seconds, a playlist per ``record_cycle`` (spec Table
    4-233). The playlist in the spool is rewritten after every segment (``EVENT``; ``VOD`` with
    ``#EXT-X-ENDLIST`` once complete), so it is valid at every moment; segments are reported as parts
    as soon as they are closed, the playlist when it ends."""

    record_format = HLS

    def __init__(self, config: HlsOutput, ctx: FileContext, timing: Timing, has_video: bool, audio: AudioStream | None):
        super().__init__(ctx, timing, has_video, audio)
        self.config = config

    @property
    def _playlist(self) -> _Playlist | None:
        assert self._file is None or isinstance(self._file, _Playlist)
        return self._file

    def _merge_gap(self) -> float | None:
        p = self._playlist
        return p.hls.merge_gap if p is not None else None

    def _next_boundary(self) -> float | None:
        p = self._playlist
        if p is None:
            return None
        boundary = p.segment_start + p.hls.slice_duration
        if p.hls.record_cycle is not None:
            boundary = min(boundary, p.start + p.hls.record_cycle)
        return boundary

    def _playlist_due(self, r: float, passthrough: bool) -> bool:
        p = self._playlist
        cycle = p.hls.record_cycle if p is not None else None
        lead = self._timing.keyframe_lead if passthrough else 0.0
        return p is not None and cycle is not None and r >= p.start + cycle - lead

    def _cut(self, r: float, passthrough: bool) -> None:
        p = self._playlist
        # A playlist ends with its cycle, or at the first segment cut after the rule changed (with
        # record_cycle 0 it would never end, and the new rule never apply).
        if self._playlist_due(r, passthrough) or self.retiring or (p is not None and p.config != self.config):
            self._rotate(r)
        else:
            self._next_segment(r)

    def _start(self, r: float, video_size: tuple[int, int] | None, passthrough: bool) -> None:
        file_id, object_name, path = self._new_file(self.config.naming, r, ".m3u8")
        p = _Playlist(file_id, self.config, object_name, path, r, video_size, passthrough, end=r, last=r)
        self._file = p
        self._open_segment(p, r)
        self._write_playlist(p, final=False)
        self._report_started(p)

    def _open_segment(self, p: _Playlist, r: float) -> None:
        folder, _, name = p.object_name.rpartition("/")
        stem = name.removesuffix(".m3u8")
        base = f"{stem}_{p.segment_index:05d}.ts"
        p.segment_object = f"{folder}/{base}" if folder else base
        path = p.path.with_name(f"{p.file_id}-{p.segment_index:05d}.ts")
        # Timestamps run on across the playlist's segments (relative to the playlist's start).
        p.segment = self._muxer(path, "mpegts", p.start, p)
        p.segment_start = r

    def _next_segment(self, r: float) -> None:
        p = self._playlist
        if p is None or p.segment is None:
            return
        self._settle_all()
        segment, start, obj = p.segment, p.segment_start, p.segment_object
        self._hold(segment, r, lambda: self._end_segment(p, segment, start, obj))
        p.segment_index += 1
        self._open_segment(p, r)

    def _end_segment(self, p: _Playlist, segment: Muxer, start: float, obj: str) -> None:
        segment.close()
        duration = max(0.0, segment.end - start)
        p.segments.append((quote(obj.rpartition("/")[2]), duration))
        p.reached(segment)
        self._write_playlist(p, final=False)
        self._ctx.report(PartCompleted(p.file_id, str(segment.path), p.naming.location, p.naming.bucket, obj))

    def _rotate(self, r: float) -> None:
        p = self._playlist
        self._file = None
        if p is None:
            return
        self._settle_all()
        segment, start, obj = p.segment, p.segment_start, p.segment_object
        p.segment = None

        def done() -> None:
            if segment is not None:
                self._end_segment(p, segment, start, obj)
            self._complete(p)

        if segment is None:
            done()
        else:
            self._hold(segment, r, done)

    def _write_video(self, pkt: VideoPacket) -> None:
        p = self._playlist
        assert p is not None and p.segment is not None
        p.segment.video(pkt)

    def _write_audio(self, pkt: AudioPacket) -> None:
        p = self._playlist
        assert p is not None and p.segment is not None
        p.segment.audio(pkt)

    def _finish(self) -> None:
        self._settle_all()
        p = self._playlist
        self._file = None
        if p is None:
            return
        if p.segment is not None:
            self._end_segment(p, p.segment, p.segment_start, p.segment_object)
            p.segment = None
        self._complete(p)

    def _complete(self, p: _Playlist) -> None:
        self._write_playlist(p, final=True)
        self._report_completed(p)

    def _write_playlist(self, p: _Playlist, final: bool) -> None:
        target = max([math.ceil(d) for _, d in p.segments] + [math.ceil(p.hls.slice_duration)])
        lines = [
            "#EXTM3U",
            "#EXT-X-VERSION:3",
            f"#EXT-X-TARGETDURATION:{target}",
            "#EXT-X-MEDIA-SEQUENCE:0",
            f"#EXT-X-PLAYLIST-TYPE:{'VOD' if final else 'EVENT'}",
        ]
        for uri, duration in p.segments:
            lines += [f"#EXTINF:{duration:.3f},", uri]
        if final:
            lines.append("#EXT-X-ENDLIST")
        tmp = p.path.with_name(f".{p.path.name}.tmp")
        tmp.write_text("\n".join(lines) + "\n")
        os.replace(tmp, p.path)
