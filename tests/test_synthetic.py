"""The synthetic sources say what they are: colour, frequency, flash and beep instants."""

from __future__ import annotations

import pytest

from emberrtc.synthetic import (
    ColourVideo,
    SineTone,
    beep_and_flash,
    beep_times,
    colour_distance,
    dominant_frequency,
    flash_times,
    median_rgb,
)


def test_colour_video_has_its_colour_timestamps_and_a_moving_marker() -> None:
    video = ColourVideo((240, 140, 20), width=320, height=180, fps=25)
    a, b = video.frame(0), video.frame(5)
    assert colour_distance(median_rgb(a), (240, 140, 20)) < 6
    assert (b.pts, b.time_base.denominator, b.width, b.height, b.format.name) == (18_000, 90_000, 320, 180, "yuv420p")
    assert a.to_ndarray().tobytes() != b.to_ndarray().tobytes()  # the marker moved


def test_sine_tone_has_its_frequency() -> None:
    tone = SineTone(523.25, layout="stereo")
    frames = [tone.frame(n) for n in range(25)]
    assert frames[3].pts == 3 * 960 and frames[0].samples == 960 and len(frames[0].layout.channels) == 2
    assert dominant_frequency(frames) == pytest.approx(523.25, abs=2)


def test_beeps_and_flashes_happen_together_every_second() -> None:
    video, audio = beep_and_flash(1.0, fps=30)
    flashes = flash_times(video.frame(n) for n in range(100))
    beeps = beep_times([audio.frame(n) for n in range(170)])
    assert flashes == pytest.approx([0.0, 1.0, 2.0, 3.0], abs=0.034)
    assert beeps == pytest.approx([0.0, 1.0, 2.0, 3.0], abs=0.011)
