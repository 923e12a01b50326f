"""``bench/mixer.py``'s two in-process sides compose the same picture: Ember's compositor and the reference
filter graph (``scale`` + ``xstack`` + ``amix``) put each input's colour in the same tile, one picture per
output period, and make the same amount of sound. Otherwise the bench would compare different work. Its
``pipeline`` side, a whole mixed job fed the clips as RTP, records every input in its tile."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import av
import numpy as np
import pytest

from emberrtc.recording.layout import Tile
from emberrtc.synthetic import ColourVideo, colour_distance, median_rgb
from tests.bench import load_bench

COLOURS = [
    (220, 30, 30), (30, 200, 30), (30, 30, 220), (220, 220, 30), (30, 220, 220),
    (220, 30, 220), (240, 140, 20), (120, 60, 20), (140, 140, 140),
]  # fmt: skip


bench = load_bench("mixer")


def _tone(index: int, n: int) -> av.AudioFrame:
    """1600 samples (one 30 fps period) of mono fltp 48 kHz, a tone per input."""
    t = (np.arange(1600) + n * 1600) / 48_000
    samples = (0.2 * np.sin(2 * np.pi * (220 + 110 * index) * t)).astype(np.float32)
    frame = av.AudioFrame.from_ndarray(samples.reshape(1, -1), format="fltp", layout="mono")
    frame.sample_rate = 48_000
    return frame


def _run(side: object, steps: int) -> tuple[list[av.VideoFrame], int]:
    videos = [ColourVideo(rgb, width=bench.WIDTH, height=bench.HEIGHT, marker=False) for rgb in COLOURS]
    pictures, samples = [], 0
    for n in range(steps):
        for i, video in enumerate(videos):
            side.video(i, video.frame(n))  # type: ignore[attr-defined]
            side.audio(i, _tone(i, n))  # type: ignore[attr-defined]
        made, sound = side.step()  # type: ignore[attr-defined]
        pictures += [picture.reformat(format="yuv420p") for picture in made]  # a copy: Ember's canvas is reused
        samples += sum(block.samples for block in sound)
    return pictures, samples


def test_both_sides_put_every_input_in_its_tile_once_per_period() -> None:
    template = bench.parse_template("1280*720_30_1710")
    tiles = bench.grid(len(COLOURS), template).tiles
    assert len(tiles) == 9
    ours, our_samples = _run(bench.EmberSide(len(COLOURS), template), 30)
    theirs, their_samples = _run(bench.FilterGraphSide(len(COLOURS), template, bench.WIDTH, bench.HEIGHT), 30)
    assert len(ours) == 30
    assert len(theirs) >= 29  # the graph may hold the last period until the next pictures come
    assert abs(our_samples - their_samples) <= 2048 and our_samples == 30 * 1600
    for picture in (ours[-1], theirs[-1]):
        _assert_every_colour_in_its_tile(picture, tiles)


def _assert_every_colour_in_its_tile(picture: av.VideoFrame, tiles: tuple[Tile, ...]) -> None:
    """``COLOURS[i]`` fills tile ``i`` of a 1280x720 picture (away from the tile's edges, where scaling blends)."""
    assert (picture.width, picture.height) == (1280, 720)
    rgb = picture.to_ndarray(format="rgb24")
    for tile, colour in zip(tiles, COLOURS, strict=True):
        x, y, w, h = tile.x, tile.y, tile.width, tile.height
        cell = av.VideoFrame.from_ndarray(
            np.ascontiguousarray(rgb[y + 4 : y + h - 4, x + 4 : x + w - 4]), format="rgb24"
        )
        assert colour_distance(median_rgb(cell), colour) < 12, (tile, colour)


def make_clip(path: Path, index: int, seconds: float) -> Path:
    """An H.264 + AAC clip like the bench's, of one colour and one tone (``COLOURS[index]``)."""
    video = ColourVideo(COLOURS[index], width=bench.WIDTH, height=bench.HEIGHT, marker=False)
    with av.open(str(path), "w") as container:
        h264 = container.add_stream("libx264", rate=bench.FPS)
        h264.width, h264.height, h264.pix_fmt = bench.WIDTH, bench.HEIGHT, "yuv420p"
        h264.options = {"preset": "ultrafast", "bf": "0"}
        aac = container.add_stream("aac", rate=48_000, layout="mono")
        for n in range(round(seconds * bench.FPS)):
            frame = video.frame(n)
            frame.pts = n
            container.mux(h264.encode(frame))
            sound = _tone(index, n)
            sound.pts = n * 1600
            container.mux(aac.encode(sound))
        container.mux(h264.encode(None))
        container.mux(aac.encode(None))
    return path


def test_the_whole_job_records_every_input_in_its_tile(tmp_path: Path) -> None:
    """The ``pipeline`` side is a real mixed job: the clips as RTP in, an MP4 of the grid and the mix out."""
    clips = [make_clip(tmp_path / f"input{i}.mp4", i, 2.0) for i in range(len(COLOURS))]
    feed = bench.make_feed(clips, 2.0)
    assert sorted((s.user_id, s.kind, s.codec) for s in feed.streams) == sorted(
        (f"user{i}", kind, codec) for i in range(9) for kind, codec in (("video", "H264"), ("audio", "OPUS"))
    )
    assert [t for t, _ in feed.datagrams] == sorted(t for t, _ in feed.datagrams)
    template = bench.parse_template("1280*720_30_1710")
    out = tmp_path / "out"
    assert bench.pipeline(feed, template, 2.0, 1, keep=out) > 0
    [mp4] = out.rglob("*.mp4")
    pictures, sound, last = 0, 0, None
    with av.open(str(mp4)) as container:
        for frame in container.decode(*container.streams):
            if isinstance(frame, av.VideoFrame):
                pictures, last = pictures + 1, frame
            else:
                sound += frame.samples
    # Two seconds of room, less what arrived before the first keyframes were decoded.
    assert 50 <= pictures <= 60
    assert 1.7 * 48_000 <= sound <= 2.1 * 48_000
    assert last is not None
    _assert_every_colour_in_its_tile(last, bench.grid(len(COLOURS), template).tiles)


def test_instructions_counts_what_a_command_executes() -> None:
    """``--count instructions``: callgrind's count grows with the work a command does, and the same command
    counts the same (the point of the mode: figures the machine's load does not move)."""
    idle = [sys.executable, "-S", "-c", "pass"]
    busy = [sys.executable, "-S", "-c", "sum(range(2_000_000))"]
    first, again, more = bench.instructions(idle), bench.instructions(idle), bench.instructions(busy)
    assert first > 1_000_000
    assert abs(again - first) < 0.01 * first
    assert more - first > 2_000_000 * 10  # each step of the loop is tens of instructions
    with pytest.raises(RuntimeError, match="failed"):
        bench.instructions([sys.executable, "-S", "-c", "raise SystemExit(3)"])


def test_each_counted_side_runs_alone_as_a_command(tmp_path: Path) -> None:
    """The commands ``--count instructions`` runs: the reference command itself, and each in-process side
    composing once in a child process from the same clips."""
    clips = [make_clip(tmp_path / f"input{i}.mp4", i, 2.5) for i in range(len(COLOURS))]
    template = bench.parse_template("1280*720_30_1710")
    assert bench.side_command("ffmpeg", clips, template, 1.5) == bench.ffmpeg_command(clips, template, 1.5, 1)
    for side in ("ember", "libavfilter"):
        command = bench.side_command(side, clips, template, 1.5)
        done = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
        assert done.returncode == 0, done.stderr[-2000:]
        assert sorted(p.name for p in tmp_path.iterdir()) == sorted(c.name for c in clips)  # no clips made anew


def test_paired_gives_the_median_ratio_of_the_rounds_and_an_interval_around_it() -> None:
    """Round by round: each round's ratio, their median, a bootstrap interval that holds it and narrows with
    more rounds, and how many rounds are under 1.0 (the target's line)."""
    ember = [0.98, 1.02, 0.97, 0.99, 1.01, 0.96, 0.98, 0.97]
    ffmpeg = [1.0] * 8
    p = bench.paired(ember, ffmpeg)
    assert p.median == pytest.approx(0.98) and p.below == 6 and p.rounds == 8
    assert p.low <= p.median <= p.high and p.high - p.low > 0
    assert bench.paired(ember, ffmpeg) == p  # seeded: the same rounds give the same figures
    # The same ratio in every round, whatever the costs: no spread.
    assert bench.paired([0.5, 1.0, 1.5], [1.0, 2.0, 3.0]) == (0.5, 0.5, 0.5, 3, 3)
    many = bench.paired(ember * 8, ffmpeg * 8)
    assert many.high - many.low < p.high - p.low
    with pytest.raises(ValueError):
        bench.paired([0.9, 1.0], [1.0])
