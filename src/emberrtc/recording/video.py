"""Encoded input video to the H.264 that files hold: passthrough where possible, else a transcode.

H.264 within the plan's resolution cap is passed through untouched (no decode, no encode): the
publisher's own bytes go into the files. VP8, and H.264 larger than the cap, are decoded, scaled to fit
the cap and encoded with libx264. The choice is made at each keyframe, where the stream may switch.
Either way the output is Annex B H.264 with SPS/PPS in front of every keyframe, so MP4 and MPEG-TS
muxers take it as is.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from fractions import Fraction

import av
from av.video.frame import PictureType
from av.video.reformatter import VideoReformatter

from emberrtc.recording import h264
from emberrtc.recording.depacketizer import EncodedFrame
from emberrtc.recording.plan import H264, VP8, Encoding, VideoInput

log = logging.getLogger(__name__)

VIDEO_TIME_BASE = Fraction(1, 90_000)
_DECODERS = {H264: "h264", VP8: "vp8"}


@dataclass(slots=True)
class VideoPacket:
    """One H.264 access unit for the writers, at recording time ``pts`` (1/90000 s)."""

    data: bytes  # Annex B
    pts: int
    keyframe: bool
    width: int
    height: int
    passthrough: bool  # the publisher's bytes (True) or Ember's encoder's (False)


class VideoPath:
    """Passthrough or transcode, per keyframe (see the module docstring)."""

    def __init__(self, video: VideoInput, encoding: Encoding) -> None:
        self._codec = video.codec
        self._cap = video.cap
        self._encoding = encoding
        self.passthrough = False
        self._source_size: tuple[int, int] | None = None  # of the passthrough stream
        self._sps: bytes | None = None
        self._decoder: av.VideoCodecContext | None = None
        self._encoder: av.VideoCodecContext | None = None
        self._out_size: tuple[int, int] | None = None
        self._reformatter = VideoReformatter()
        self._last_pts = -1
        self.passed = 0  # frames passed through
        self.encoded = 0  # frames transcoded
        self.decode_errors = 0

    def push(self, frame: EncodedFrame, pts: int, force_keyframe: bool = False) -> list[VideoPacket]:
        """``force_keyframe``: a writer is about to cut; honoured when transcoding (passthrough callers ask
        the publisher instead)."""
        pts = max(pts, self._last_pts + 1)
        self._last_pts = pts
        out: list[VideoPacket] = []
        if frame.keyframe and self._codec == H264:
            size = self._h264_size(frame.data)
            fits = size is not None and self._cap.fits(*size)
            if fits != self.passthrough:
                if fits:
                    out.extend(self._drain_encoder())
                    self._decoder = None
                self.passthrough = fits
            if size is not None:
                self._source_size = size
        if self.passthrough and self._source_size is not None:
            self.passed += 1
            out.append(VideoPacket(frame.data, pts, frame.keyframe, *self._source_size, True))
            return out
        out.extend(self._transcode(frame, pts, force_keyframe))
        return out

    def flush(self) -> list[VideoPacket]:
        return self._drain_encoder()

    # --- passthrough -------------------------------------------------------------------------------------

    def _h264_size(self, data: bytes) -> tuple[int, int] | None:
        """The picture size of an IDR access unit, by decoding it once per new SPS."""
        sps = next((n for n in h264.split_annexb(data) if h264.nal_type(n) == h264.SPS), None)
        if sps is not None and sps == self._sps and self._source_size is not None:
            return self._source_size
        probe = av.CodecContext.create("h264", "r")
        probe.thread_count = 1
        try:
            frames = [*probe.decode(av.Packet(data)), *probe.decode(None)]
        except av.FFmpegError:
            self.decode_errors += 1
            return self._source_size
        if not frames:
            return self._source_size
        self._sps = sps
        return frames[0].width, frames[0].height

    # --- transcode ---------------------------------------------------------------------------------------

    def _transcode(self, frame: EncodedFrame, pts: int, force_keyframe: bool) -> list[VideoPacket]:
        if self._decoder is None:
            if not frame.keyframe:
                return []  # (after a switch from passthrough) start decoding on a keyframe
            decoder = av.CodecContext.create(_DECODERS[self._codec], "r")
            assert isinstance(decoder, av.VideoCodecContext)
            decoder.thread_count = self._encoding.threads
            self._decoder = decoder
        packet = av.Packet(frame.data)
        packet.pts = packet.dts = pts
        packet.time_base = VIDEO_TIME_BASE
        try:
            pictures = self._decoder.decode(packet)
        except av.FFmpegError as exc:
            self.decode_errors += 1
            log.debug("video decode error: %s", exc)
            return []
        out: list[VideoPacket] = []
        for picture in pictures:
            out.extend(self._encode(picture, pts, force_keyframe))
            force_keyframe = False
        return out

    def _encode(self, picture: av.VideoFrame, pts: int, force_keyframe: bool) -> list[VideoPacket]:
        out: list[VideoPacket] = []
        size = self._cap.fit(picture.width, picture.height)
        if self._out_size is None or _aspect_changed(self._out_size, size):
            out.extend(self._drain_encoder())
            self._out_size = size
            self._encoder = self._open_encoder(*size)
        assert self._encoder is not None and self._out_size is not None
        width, height = self._out_size
        if (picture.width, picture.height) != (width, height) or picture.format.name != "yuv420p":
            picture = self._reformatter.reformat(picture, width=width, height=height, format="yuv420p")
        picture.pts = pts
        picture.time_base = VIDEO_TIME_BASE
        picture.pict_type = PictureType.I if force_keyframe else PictureType.NONE
        for packet in self._encoder.encode(picture):
            out.append(self._packet(packet))
        self.encoded += 1
        return out

    def _open_encoder(self, width: int, height: int) -> av.VideoCodecContext:
        e = self._encoding
        encoder = av.CodecContext.create("libx264", "w")
        assert isinstance(encoder, av.VideoCodecContext)
        encoder.width, encoder.height = width, height
        encoder.pix_fmt = "yuv420p"
        encoder.time_base = VIDEO_TIME_BASE
        encoder.framerate = Fraction(e.video_fps, 1)
        encoder.gop_size = max(1, round(e.video_gop_seconds * e.video_fps))
        encoder.thread_count = e.threads
        # zerolatency: no B-frames and no lookahead, so one frame in gives one frame out and dts == pts;
        # forced-idr: a forced keyframe is an IDR, where a file or segment can start.
        encoder.options = {
            "preset": e.video_preset,
            "tune": "zerolatency",
            "crf": str(e.video_crf),
            "forced-idr": "1",
        }
        encoder.open()
        return encoder

    def _drain_encoder(self) -> list[VideoPacket]:
        if self._encoder is None:
            return []
        out = [self._packet(p) for p in self._encoder.encode(None)]
        self._encoder = None
        self._out_size = None
        return out

    def _packet(self, packet: av.Packet) -> VideoPacket:
        assert self._out_size is not None and packet.pts is not None
        return VideoPacket(bytes(packet), packet.pts, packet.is_keyframe, *self._out_size, False)


def _aspect_changed(a: tuple[int, int], b: tuple[int, int]) -> bool:
    """A new output size only when the shape changes (WebRTC senders scale by steps, keeping the shape;
    those steps are scaled back to the established size)."""
    return abs(a[0] / a[1] - b[0] / b[1]) > 0.05 * (a[0] / a[1])
