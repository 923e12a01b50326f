"""Checks on received media: frame and sample rates, decoded colour, tone frequency."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any

import av

from emberrtc.client.synthetic import median_rgb, tone_frequency

# Lossy coding and YUV 4:2:0 round trips move a flat colour by up to ~10 steps (measured); test colours
# are far further apart than this.
COLOUR_TOLERANCE = 20
# Publishing rates: the synthetic camera runs at 30 fps, audio at 48 kHz.
VIDEO_FPS, SAMPLE_RATE = 30.0, 48_000


@dataclass
class VideoReport:
    #: Frames per second of wall-clock time while receiving.
    fps: float
    #: Frames per second of media time (their RTP timestamps): below the publishing rate if frames were lost.
    media_fps: float
    colour: tuple[int, int, int]
    size: tuple[int, int]


@dataclass
class AudioReport:
    #: Samples per second of wall-clock time while receiving.
    samples_per_second: float
    #: Samples received per sample of media time spanned (their RTP timestamps): below 1 if audio was lost.
    completeness: float
    frequency: float


async def _drain(track: Any, seconds: float) -> Any:
    """Read for ``seconds``: frames queued while the subscription was set up arrive in a burst, and would
    inflate a rate measured from the first one."""
    frame = await track.recv()
    started = time.monotonic()
    while time.monotonic() - started < seconds:
        frame = await track.recv()
    return frame


async def video_report(track: Any, frames: int = 45, warm_up: float = 0.5) -> VideoReport:
    """After a warm-up, receive ``frames`` more frames and report their rates, colour and size."""
    first: av.VideoFrame = await _drain(track, warm_up)
    started = time.monotonic()
    last = first
    for _ in range(frames):
        last = await track.recv()
    elapsed = time.monotonic() - started
    media_time = float((last.pts - first.pts) * last.time_base)
    return VideoReport(frames / elapsed, frames / media_time, median_rgb(last), (last.width, last.height))


async def audio_report(track: Any, seconds: float = 1.5, warm_up: float = 0.5) -> AudioReport:
    """After a warm-up, receive ``seconds`` of audio and report the rates and the tone."""
    first: av.AudioFrame = await _drain(track, warm_up)
    started = time.monotonic()
    frames: list[av.AudioFrame] = []
    samples = 0
    while time.monotonic() - started < seconds:
        frame = await track.recv()
        frames.append(frame)
        samples += frame.samples
    elapsed = time.monotonic() - started
    last = frames[-1]
    spanned = (last.pts + last.samples - (first.pts + first.samples)) * last.time_base * last.sample_rate
    return AudioReport(samples / elapsed, samples / float(spanned), tone_frequency(frames))


def assert_colour(got: tuple[int, int, int], want: tuple[int, int, int]) -> None:
    assert all(abs(a - b) <= COLOUR_TOLERANCE for a, b in zip(got, want, strict=True)), (
        f"decoded colour {got} is not the published {want}"
    )


def assert_rates(video: VideoReport | None = None, audio: AudioReport | None = None, fps: float = VIDEO_FPS) -> None:
    """Everything published arrived (rates in media time), and in real time (wall-clock rates, with the
    slack a loaded test machine needs: all clients share this one process)."""
    if video is not None:
        assert 0.9 * fps <= video.media_fps <= 1.1 * fps, f"video at {video.media_fps:.1f} fps of media time"
        assert 0.6 * fps <= video.fps <= 1.4 * fps, f"video received at {video.fps:.1f} fps, published at {fps}"
    if audio is not None:
        assert 0.95 <= audio.completeness <= 1.05, f"received {audio.completeness:.0%} of the audio"
        rate = audio.samples_per_second
        assert 0.6 * SAMPLE_RATE <= rate <= 1.4 * SAMPLE_RATE, f"audio received at {rate:.0f} samples/s"


async def with_deadline(coro: Any, seconds: float) -> Any:
    """Await ``coro``, failing after ``seconds``."""
    async with asyncio.timeout(seconds):
        return await coro
