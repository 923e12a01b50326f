"""Reading recordings back with PyAV: streams, duration, content, and the H.264 bytes themselves."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import av
import numpy as np

from emberrtc.recording import h264


@dataclass
class Readback:
    format: str
    duration: float
    video_codec: str | None = None
    width: int | None = None
    height: int | None = None
    audio_codec: str | None = None
    sample_rate: int | None = None
    video: list[av.VideoFrame] = field(default_factory=list)
    audio: list[av.AudioFrame] = field(default_factory=list)

    @property
    def middle_frame(self) -> av.VideoFrame:
        return self.video[len(self.video) // 2]


def read_back(path: Path | str, *, decode_video: bool = True) -> Readback:
    with av.open(str(path)) as c:
        rb = Readback(c.format.name, (c.duration or 0) / av.time_base)
        streams = []
        if c.streams.video:
            v = c.streams.video[0]
            rb.video_codec, rb.width, rb.height = v.codec_context.name, v.codec_context.width, v.codec_context.height
            if decode_video:
                streams.append(v)
        if c.streams.audio:
            a = c.streams.audio[0]
            rb.audio_codec, rb.sample_rate = a.codec_context.name, a.codec_context.sample_rate
            streams.append(a)
        for frame in c.decode(*streams):
            if isinstance(frame, av.VideoFrame):
                rb.video.append(frame)
            elif isinstance(frame, av.AudioFrame):
                rb.audio.append(frame)
    return rb


def video_packets(path: Path | str) -> list[av.Packet]:
    with av.open(str(path)) as c:
        return [p for p in c.demux(video=0) if p.size]


def picture_nals(path: Path | str) -> list[bytes]:
    """The coded slices (IDR and non-IDR) of a file's video, as NAL units."""
    out: list[bytes] = []
    for packet in video_packets(path):
        data = bytes(packet)
        annexb = data.startswith((b"\x00\x00\x01", b"\x00\x00\x00\x01"))
        nals = h264.split_annexb(data) if annexb else h264.split_avcc(data)
        out.extend(n for n in nals if h264.nal_type(n) in (h264.SLICE, h264.IDR))
    return out


def first_frame_is_keyframe(path: Path | str) -> bool:
    packets = video_packets(path)
    return bool(packets) and packets[0].is_keyframe


def cell_rgb(frame: av.VideoFrame, x: int, y: int, w: int, h: int) -> tuple[int, int, int]:
    """Median colour of the middle half of a cell (away from its edges, where scaling blends)."""
    rgb = frame.to_ndarray(format="rgb24")
    box = rgb[y + h // 4 : y + 3 * h // 4, x + w // 4 : x + 3 * w // 4].reshape(-1, 3)
    med = np.median(box, axis=0)
    return int(med[0]), int(med[1]), int(med[2])


def frame_at(frames: list[av.VideoFrame], t: float) -> av.VideoFrame:
    """The decoded picture nearest ``t`` seconds."""
    return min(frames, key=lambda f: abs(float(f.time or 0.0) - t))


def band(frames: list[av.AudioFrame], tone: float) -> float:
    """The tone's share of the strongest component of the audio's spectrum."""
    samples = np.concatenate([f.to_ndarray()[0] for f in frames])
    spectrum = np.abs(np.fft.rfft(samples))
    freqs = np.fft.rfftfreq(len(samples), 1 / 48_000)
    return float(spectrum[(freqs > tone - 15) & (freqs < tone + 15)].max() / spectrum.max())
