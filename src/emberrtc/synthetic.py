"""Synthetic media for tests, demos, benchmarks and ``ember bot``: outputs can be checked by their content.

- :class:`ColourVideo`: a solid colour with a white square sweeping left to right once a second
  (the picture moves, the median stays the colour), optionally a white flash every ``flash_every`` s;
- :class:`SineTone`: a sine tone, optionally silent but for a short beep every ``beep_every`` s;
- :func:`beep_and_flash`: the two together, flash and beep at the same instants (A/V sync checks).

Frames are made by index, with ``pts`` and ``time_base`` set (video 1/90000, audio 1/sample rate) and
no pacing: the caller decides how fast to go. The check functions read content back: the median colour
of a picture, the dominant frequency of audio, the instants of flashes and beeps.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence
from fractions import Fraction

import av
import numpy as np

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


def parse_colour(text: str) -> tuple[int, int, int]:
    """A colour name from :data:`COLOURS` or ``#RRGGBB``, as an RGB triple."""
    name = text.strip().lower()
    if name in COLOURS:
        return COLOURS[name]
    if re.fullmatch(r"#?[0-9a-f]{6}", name):
        value = name.lstrip("#")
        return (int(value[0:2], 16), int(value[2:4], 16), int(value[4:6], 16))
    raise ValueError(f"unknown colour {text!r}: use #RRGGBB or one of {', '.join(sorted(COLOURS))}")


VIDEO_CLOCK = 90_000  # RTP video clock (RFC 3551)
VIDEO_TIME_BASE = Fraction(1, VIDEO_CLOCK)


def rgb_to_yuv(rgb: tuple[int, int, int]) -> tuple[int, int, int]:
    """ITU-R BT.601 limited range: what swscale assumes for yuv420p <-> rgb24 without colour metadata."""
    r, g, b = rgb
    y = 16 + (65.481 * r + 128.553 * g + 24.966 * b) / 255
    u = 128 + (-37.797 * r - 74.203 * g + 112.0 * b) / 255
    v = 128 + (112.0 * r - 93.786 * g - 18.214 * b) / 255
    return round(y), round(u), round(v)


class ColourVideo:
    """yuv420p pictures of one colour with a moving white square; frame ``n`` is at ``n / fps`` s."""

    def __init__(
        self,
        rgb: tuple[int, int, int] = (220, 30, 30),
        *,
        width: int = 320,
        height: int = 180,
        fps: float = 30,
        marker: bool = True,
        flash_every: float | None = None,
        flash_duration: float = 0.1,
    ) -> None:
        if width % 2 or height % 2:
            raise ValueError("width and height must be even (4:2:0 chroma)")
        self.rgb, self.width, self.height, self.fps = rgb, width, height, fps
        self.marker = marker
        self.flash_every = flash_every
        self.flash_duration = flash_duration
        y, u, v = rgb_to_yuv(rgb)
        self._background = np.empty((height * 3 // 2, width), dtype=np.uint8)
        self._background[:height] = y
        chroma = self._background[height:].reshape(2, height // 2, width // 2)
        chroma[0], chroma[1] = u, v
        self._white = np.empty_like(self._background)
        self._white[:height] = 235
        self._white[height:] = 128
        self._size = max(2, (height // 6) & ~1)

    def time_of(self, n: int) -> float:
        return n / self.fps

    def flashing(self, n: int) -> bool:
        if self.flash_every is None:
            return False
        return self.time_of(n) % self.flash_every < self.flash_duration - 1e-9

    def frame(self, n: int) -> av.VideoFrame:
        if self.flashing(n):
            image = self._white
        else:
            image = self._background
            if self.marker:
                image = image.copy()
                w, h, size = self.width, self.height, self._size
                x = int((self.time_of(n) % 1.0) * (w - size)) & ~1
                y = (h // 2 - size // 2) & ~1
                image[y : y + size, x : x + size] = 235
                chroma = image[h:].reshape(2, h // 2, w // 2)
                chroma[:, y // 2 : (y + size) // 2, x // 2 : (x + size) // 2] = 128
        frame = av.VideoFrame.from_ndarray(image, format="yuv420p")
        frame.pts = round(n * VIDEO_CLOCK / self.fps)
        frame.time_base = VIDEO_TIME_BASE
        return frame


class SineTone:
    """s16 audio frames of ``samples_per_frame`` samples: a continuous tone at ``frequency`` Hz, or
    (``beep_every``) silence with a ``beep_frequency`` beep of ``beep_duration`` s at every multiple."""

    def __init__(
        self,
        frequency: float = 440.0,
        *,
        sample_rate: int = 48_000,
        samples_per_frame: int = 960,
        amplitude: float = 0.3,
        layout: str = "mono",
        beep_every: float | None = None,
        beep_duration: float = 0.1,
        beep_frequency: float = 1000.0,
    ) -> None:
        self.frequency = frequency
        self.sample_rate = sample_rate
        self.samples_per_frame = samples_per_frame
        self.layout = layout
        self.channels = 1 if layout == "mono" else 2
        self.beep_every = beep_every
        self.beep_duration = beep_duration
        self.beep_frequency = beep_frequency
        self._amplitude = amplitude * 32767

    def time_of(self, n: int) -> float:
        return n * self.samples_per_frame / self.sample_rate

    def frame(self, n: int) -> av.AudioFrame:
        start = n * self.samples_per_frame
        t = (start + np.arange(self.samples_per_frame)) / self.sample_rate
        if self.beep_every is None:
            wave = np.sin(2 * math.pi * self.frequency * t)
        else:
            on = (t % self.beep_every) < self.beep_duration
            wave = np.where(on, np.sin(2 * math.pi * self.beep_frequency * t), 0.0)
        samples = (self._amplitude * wave).astype(np.int16)
        if self.channels == 2:
            samples = np.repeat(samples, 2)  # packed s16: L R L R ...
        frame = av.AudioFrame.from_ndarray(samples.reshape(1, -1), format="s16", layout=self.layout)
        frame.sample_rate = self.sample_rate
        frame.pts = start
        frame.time_base = Fraction(1, self.sample_rate)
        return frame


def beep_and_flash(
    every: float = 1.0, *, width: int = 320, height: int = 180, fps: float = 30, duration: float = 0.1
) -> tuple[ColourVideo, SineTone]:
    """Grey video flashing white and silence beeping, both for ``duration`` s at each multiple of ``every``."""
    video = ColourVideo(
        (128, 128, 128), width=width, height=height, fps=fps, marker=False, flash_every=every, flash_duration=duration
    )
    audio = SineTone(beep_every=every, beep_duration=duration)
    return video, audio


# --- checks ----------------------------------------------------------------------------------------------


def median_rgb(frame: av.VideoFrame) -> tuple[int, int, int]:
    """The median colour of a decoded picture (the moving marker covers too little to move it)."""
    rgb = frame.to_ndarray(format="rgb24").reshape(-1, 3)
    r, g, b = np.median(rgb, axis=0)
    return int(r), int(g), int(b)


def colour_distance(a: Sequence[int], b: Sequence[int]) -> float:
    return float(math.dist(a, b))


def _mono(frame: av.AudioFrame) -> np.ndarray:
    data = frame.to_ndarray()
    channels = len(frame.layout.channels)
    mono = data[0] if not frame.format.is_packed else data.reshape(-1, channels)[:, 0]
    return mono.astype(np.float64)


def dominant_frequency(frames: Iterable[av.AudioFrame]) -> float:
    """The strongest frequency (Hz) in decoded audio (first channel), by FFT."""
    frames = list(frames)
    if not frames:
        raise ValueError("no audio frames")
    rate = frames[0].sample_rate
    signal = np.concatenate([_mono(f) for f in frames])
    spectrum = np.abs(np.fft.rfft(signal * np.hanning(len(signal))))
    spectrum[0] = 0
    return float(np.argmax(spectrum) * rate / len(signal))


def flash_times(frames: Iterable[av.VideoFrame], threshold: float = 200.0) -> list[float]:
    """Instants (s, from the frames' pts) where the picture turns white."""
    out: list[float] = []
    was = False
    for frame in frames:
        luma = float(np.asarray(frame.to_ndarray(format="gray")).mean())
        bright = luma > threshold
        if bright and not was and frame.pts is not None and frame.time_base is not None:
            out.append(float(frame.pts * frame.time_base))
        was = bright
    return out


def beep_times(frames: Iterable[av.AudioFrame], window: float = 0.01, threshold: float = 0.05) -> list[float]:
    """Instants (s, from the frames' pts) where sound starts after silence (10 ms RMS windows)."""
    frames = list(frames)
    if not frames:
        return []
    first = frames[0]
    rate = first.sample_rate
    start = float((first.pts or 0) * first.time_base) if first.time_base is not None else 0.0
    signal = np.concatenate([_mono(f) for f in frames])
    peak = float(np.max(np.abs(signal))) or 1.0
    step = max(1, int(rate * window))
    out: list[float] = []
    was = False
    for i in range(0, len(signal) - step, step):
        loud = float(np.sqrt(np.mean((signal[i : i + step] / peak) ** 2))) > threshold
        if loud and not was:
            out.append(start + i / rate)
        was = loud
    return out
