"""The mixed-stream video encoder: composed canvases -> H.264 at an encode template's rate (Table 4-175).

The template fixes the resolution, the frame rate and the bit rate (``1280*720_30_1710``: 1280x720,
30 frames per second, 1710 kbit/s). The caller feeds one canvas per frame period (the compositor
repeats the last picture of a frozen input), so the output has a constant frame rate. libx264 with the
recording's preset, ``zerolatency`` (no B-frames, no lookahead: one frame in, one packet out, dts ==
pts) and a VBV buffer of one second at the template's rate, so RTMP players and HLS segments see the
rate they were promised.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

import av
from av.video.frame import PictureType

from emberrtc.domain.mix_layout import parse_encode_template
from emberrtc.recording.plan import Encoding

#: Output timestamps are in 1/90000 s, like the rest of the recording (``recording.video``).
TIME_BASE = Fraction(1, 90_000)


@dataclass(frozen=True)
class EncodeTemplate:
    """A video encode template: picture size, frames per second, bit rate."""

    name: str
    width: int
    height: int
    fps: int
    kbps: int

    @property
    def frame_duration(self) -> int:
        """One frame in :data:`TIME_BASE` units."""
        return round(TIME_BASE.denominator / self.fps)

    def pts(self, index: int) -> int:
        """Timestamp of frame ``index`` (constant frame rate)."""
        return index * TIME_BASE.denominator // self.fps


def parse_template(name: str) -> EncodeTemplate:
    """``1280*720_30_1710`` or ``1280x720_30_1710`` -> its template; ``audio_only`` or anything else: ValueError."""
    parsed = parse_encode_template(name)
    if parsed is None:
        raise ValueError("audio_only has no video encode template")
    width, height, fps, kbps = parsed
    return EncodeTemplate(name.replace("x", "*"), width, height, fps, kbps)


class MixVideoEncoder:
    """Compositor output -> H.264 packets (``pts``/``dts`` in :data:`TIME_BASE`)."""

    def __init__(self, template: EncodeTemplate, encoding: Encoding | None = None) -> None:
        self.encoding = encoding or Encoding()
        self.template = template
        self.time_base = TIME_BASE
        self.threads = self.encoding.threads
        self._encoder = self._open(self.threads)
        self._force = True  # the first frame is a keyframe anyway; say so
        self.frames = 0

    def _open(self, threads: int) -> av.VideoCodecContext:
        template, encoding = self.template, self.encoding
        encoder = av.CodecContext.create("libx264", "w")
        assert isinstance(encoder, av.VideoCodecContext)
        encoder.width, encoder.height = template.width, template.height
        encoder.pix_fmt = "yuv420p"
        encoder.time_base = TIME_BASE
        encoder.framerate = Fraction(template.fps, 1)
        encoder.gop_size = max(1, round(encoding.video_gop_seconds * template.fps))
        encoder.bit_rate = template.kbps * 1000
        encoder.thread_count = threads
        encoder.thread_type = "AUTO"
        kbps = str(template.kbps)
        encoder.options = {
            "preset": encoding.video_preset,
            "tune": "zerolatency",
            "forced-idr": "1",  # a forced keyframe is an IDR, where a file, segment or RTMP viewer can start
            "x264-params": f"vbv-maxrate={kbps}:vbv-bufsize={kbps}",
        }
        encoder.open()
        return encoder

    def set_threads(self, threads: int) -> list[av.Packet]:
        """Encode on ``threads`` threads from the next frame on, which is an IDR. Returns what the encoder
        held. The stream goes on: threads change neither the parameter sets nor the timestamps."""
        if threads == self.threads:
            return []
        held = self.flush()
        self._encoder, self.threads = self._open(threads), threads
        self._force = True
        return held

    def force_keyframe(self) -> None:
        """The next frame is an IDR (file cut, HLS segment, RTMP join)."""
        self._force = True

    def encode(self, frame: av.VideoFrame, pts: int) -> list[av.Packet]:
        """One canvas at ``pts`` (:data:`TIME_BASE`); it must have the template's size."""
        if (frame.width, frame.height) != (self.template.width, self.template.height):
            raise ValueError(
                f"frame is {frame.width}x{frame.height}, the template {self.template.width}x{self.template.height}"
            )
        if frame.format.name != "yuv420p":
            frame = frame.reformat(format="yuv420p")
        frame.pts = pts
        frame.time_base = TIME_BASE
        frame.pict_type = PictureType.I if self._force else PictureType.NONE
        self._force = False
        self.frames += 1
        return list(self._encoder.encode(frame))

    def flush(self) -> list[av.Packet]:
        """The packets still inside the encoder; the encoder is finished afterwards."""
        return list(self._encoder.encode(None))
