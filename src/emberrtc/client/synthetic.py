"""Synthetic media as aiortc tracks, paced in real time as a camera and a microphone would be.

- :class:`ColourVideoTrack`: a solid colour with a white square sweeping left to right once a second, so a
  receiver can check both the colour (the median of a frame) and that the picture moves.
- :class:`ToneAudioTrack`: a continuous sine tone, so a receiver can check the frequency.

The pictures and samples come from :mod:`emberrtc.synthetic`, shared with the recording tests and
benchmarks; this module only adds the pacing.
"""

from __future__ import annotations

import asyncio
import time

import av
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from emberrtc.synthetic import COLOURS, ColourVideo, SineTone, median_rgb, parse_colour
from emberrtc.synthetic import dominant_frequency as tone_frequency

__all__ = ["COLOURS", "ColourVideoTrack", "ToneAudioTrack", "median_rgb", "parse_colour", "tone_frequency"]

_SAMPLE_RATE = 48_000  # Opus works at 48 kHz (RFC 7587)
_AUDIO_PTIME = 0.020  # 20 ms per audio frame, WebRTC's usual packetisation


#: A consumer this far behind (nobody read the track for a while, e.g. while a client rejoins) gets the
#: current item next, not a burst of every item it missed: a live camera or microphone drops what nobody took.
_MAX_LAG = 1.0


class _Paced:
    """Real-time pacing: item ``n`` is due ``n * period`` seconds after the first; items more than
    ``_MAX_LAG`` overdue are skipped (their numbers too, so timestamps keep to real time)."""

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
            if delay < -_MAX_LAG:
                self.count = int((now - self._start) / self.period)
            elif delay > 0:
                await asyncio.sleep(delay)
        return self.count


class ColourVideoTrack(MediaStreamTrack):
    """Video of one colour with a moving white square (yuv420p frames, paced at ``fps``)."""

    kind = "video"

    def __init__(self, rgb: tuple[int, int, int], *, width: int = 320, height: int = 240, fps: float = 30) -> None:
        super().__init__()
        self.rgb = rgb
        self.width, self.height, self.fps = width, height, fps
        self._source = ColourVideo(rgb, width=width, height=height, fps=fps)
        self._pace = _Paced(1 / fps)
        #: Frames handed to the consumer (for a published track: to the encoder) so far.
        self.frames = 0

    async def recv(self) -> av.VideoFrame:
        if self.readyState != "live":
            raise MediaStreamError
        frame = self._source.frame(await self._pace.next())
        self.frames += 1
        return frame


class ToneAudioTrack(MediaStreamTrack):
    """A sine tone at ``frequency`` Hz: 48 kHz mono, 20 ms frames, paced in real time."""

    kind = "audio"

    def __init__(self, frequency: float = 440.0, *, amplitude: float = 0.3) -> None:
        super().__init__()
        self.frequency = frequency
        self._source = SineTone(
            frequency, sample_rate=_SAMPLE_RATE, samples_per_frame=int(_SAMPLE_RATE * _AUDIO_PTIME), amplitude=amplitude
        )
        self._pace = _Paced(_AUDIO_PTIME)
        #: Frames handed to the consumer (for a published track: to the encoder) so far.
        self.frames = 0

    async def recv(self) -> av.AudioFrame:
        if self.readyState != "live":
            raise MediaStreamError
        frame = self._source.frame(await self._pace.next())
        self.frames += 1
        return frame
