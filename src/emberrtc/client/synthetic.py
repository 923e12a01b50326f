"""Synthetic media for tests, demos and benchmarks: no camera or microphone needed.

- :class:`ColourVideoTrack`: a solid colour with a white square marker sweeping left to right once a
  second, so a receiver can check both the colour (the median of a frame) and that the picture moves.
- :class:`ToneAudioTrack`: a continuous sine tone, so a receiver can check the frequency.

Both pace themselves in real time, as a camera and a microphone would.
"""

from __future__ import annotations

import asyncio
import fractions
import math
import re
import time

import av
import numpy as np
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

__all__ = ["COLOURS", "ColourVideoTrack", "ToneAudioTrack", "median_rgb", "parse_colour", "tone_frequency"]

#: Colour names ``ember bot --color`` accepts (besides ``#RRGGBB``).
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 30, 30),
    "green": (30, 200, 60),
    "blue": (30, 60, 220),
    "yellow": (230, 210, 40),
    "cyan": (40, 200, 220),
    "magenta": (210, 40, 190),
    "orange": (240, 140, 20),
    "purple": (130, 50, 200),
    "white": (235, 235, 235),
    "grey": (128, 128, 128),
    "gray": (128, 128, 128),
    "black": (20, 20, 20),
}

_VIDEO_CLOCK = 90_000  # RTP video clock rate (RFC 3551)
_SAMPLE_RATE = 48_000  # Opus works at 48 kHz (RFC 7587)
_AUDIO_PTIME = 0.020  # 20 ms per audio frame, WebRTC's usual packetisation


def parse_colour(text: str) -> tuple[int, int, int]:
    """A colour name from :data:`COLOURS` or ``#RRGGBB``, as an RGB triple."""
    name = text.strip().lower()
    if name in COLOURS:
        return COLOURS[name]
    if re.fullmatch(r"#?[0-9a-f]{6}", name):
        value = name.lstrip("#")
        return (int(value[0:2], 16), int(value[2:4], 16), int(value[4:6], 16))
    raise ValueError(f"unknown colour {text!r}: use #RRGGBB or one of {', '.join(sorted(COLOURS))}")


def _rgb_to_yuv(rgb: tuple[int, int, int]) -> tuple[int, int, int]:
    # ITU-R BT.601, limited range: what libswscale assumes for yuv420p <-> rgb24 without colour metadata.
    r, g, b = rgb
    y = 16 + (65.481 * r + 128.553 * g + 24.966 * b) / 255
    u = 128 + (-37.797 * r - 74.203 * g + 112.0 * b) / 255
    v = 128 + (112.0 * r - 93.786 * g - 18.214 * b) / 255
    return (round(y), round(u), round(v))


class _Paced:
    """Real-time pacing: item ``n`` is due ``n * period`` seconds after the first."""

    def __init__(self, period: float) -> None:
        self.period = period
        self.count = 0
        self._start: float | None = None

    async def next(self) -> int:
        now = time.monotonic()
        if self._start is None:
            self._start = now
        else:
            self.count += 1
            delay = self._start + self.count * self.period - now
            if delay > 0:
                await asyncio.sleep(delay)
        return self.count


class ColourVideoTrack(MediaStreamTrack):
    """Video of one colour with a moving white square (yuv420p frames, paced at ``fps``)."""

    kind = "video"

    def __init__(self, rgb: tuple[int, int, int], *, width: int = 320, height: int = 240, fps: float = 30) -> None:
        super().__init__()
        if width % 2 or height % 2:
            raise ValueError("width and height must be even (4:2:0 chroma)")
        self.rgb = rgb
        self.width, self.height, self.fps = width, height, fps
        y, u, v = _rgb_to_yuv(rgb)
        self._background = np.empty((height * 3 // 2, width), dtype=np.uint8)
        self._background[:height] = y
        # yuv420p as one array: the U plane then the V plane, each (height/2, width/2), packed in rows.
        chroma = self._background[height:].reshape(2, height // 2, width // 2)
        chroma[0], chroma[1] = u, v
        self._marker = max(2, (height // 6) & ~1)
        self._pace = _Paced(1 / fps)

    async def recv(self) -> av.VideoFrame:
        if self.readyState != "live":
            raise MediaStreamError
        n = await self._pace.next()
        image = self._background.copy()
        size, w, h = self._marker, self.width, self.height
        # One sweep per second, on the vertical middle.
        x = int((n / self.fps) % 1.0 * (w - size)) & ~1
        y = (h // 2 - size // 2) & ~1
        image[y : y + size, x : x + size] = 235
        chroma = image[h:].reshape(2, h // 2, w // 2)
        chroma[:, y // 2 : (y + size) // 2, x // 2 : (x + size) // 2] = 128
        frame = av.VideoFrame.from_ndarray(image, format="yuv420p")
        frame.pts = round(n * _VIDEO_CLOCK / self.fps)
        frame.time_base = fractions.Fraction(1, _VIDEO_CLOCK)
        return frame


class ToneAudioTrack(MediaStreamTrack):
    """A sine tone at ``frequency`` Hz: 48 kHz mono, 20 ms frames, paced in real time."""

    kind = "audio"

    def __init__(self, frequency: float = 440.0, *, amplitude: float = 0.3) -> None:
        super().__init__()
        self.frequency = frequency
        self._amplitude = int(amplitude * 32767)
        self._samples = int(_SAMPLE_RATE * _AUDIO_PTIME)
        self._pace = _Paced(_AUDIO_PTIME)

    async def recv(self) -> av.AudioFrame:
        if self.readyState != "live":
            raise MediaStreamError
        n = await self._pace.next()
        start = n * self._samples
        t = (start + np.arange(self._samples)) / _SAMPLE_RATE
        samples = (self._amplitude * np.sin(2 * math.pi * self.frequency * t)).astype(np.int16)
        frame = av.AudioFrame.from_ndarray(samples.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = _SAMPLE_RATE
        frame.pts = start
        frame.time_base = fractions.Fraction(1, _SAMPLE_RATE)
        return frame


def median_rgb(frame: av.VideoFrame) -> tuple[int, int, int]:
    """The median colour of a decoded frame (the moving marker covers too little to move it)."""
    rgb = frame.to_ndarray(format="rgb24").reshape(-1, 3)
    r, g, b = np.median(rgb, axis=0)
    return (int(r), int(g), int(b))


def tone_frequency(frames: list[av.AudioFrame]) -> float:
    """The strongest frequency (Hz) in decoded audio frames (first channel), by FFT."""
    if not frames:
        raise ValueError("no audio frames")
    rate = frames[0].sample_rate
    chunks = []
    for frame in frames:
        data = frame.to_ndarray()
        # Packed formats interleave the channels in one row; planar ones have a row per channel.
        channels = len(frame.layout.channels)
        mono = data[0] if not frame.format.is_packed else data.reshape(-1, channels)[:, 0]
        chunks.append(mono.astype(np.float64))
    signal = np.concatenate(chunks)
    spectrum = np.abs(np.fft.rfft(signal * np.hanning(len(signal))))
    spectrum[0] = 0
    return float(np.argmax(spectrum) * rate / len(signal))
