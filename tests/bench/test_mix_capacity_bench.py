"""``bench/mix_capacity.py`` gives a whole mixed job a room of many users: the nine clips sent by several
users each, under SSRCs of their own, and the job decoding on several threads records every user in the
5x5 grid's cell the layout gives them."""

from __future__ import annotations

import struct
from collections import Counter
from pathlib import Path

import av
import numpy as np

from emberrtc.synthetic import colour_distance, median_rgb
from tests.bench import load_bench
from tests.bench.test_mixer_bench import COLOURS, make_clip

capacity = load_bench("mix_capacity")


def test_a_room_of_17_users_is_recorded_on_several_threads_each_user_in_their_cell(tmp_path: Path) -> None:
    clips = [make_clip(tmp_path / f"input{i}.mp4", i, 2.0) for i in range(len(COLOURS))]
    nine = capacity.mixer.make_feed(clips, 2.0)
    feed = capacity.widen(nine, 17)
    # Every user sends its publisher's packets, under SSRCs of its own.
    assert len(feed.streams) == 34 and len({s.ssrc for s in feed.streams}) == 34
    assert [s.order for s in feed.streams if s.kind == "video"] == list(range(17))
    sent = Counter(struct.unpack("!I", d[8:12])[0] for _, d in feed.datagrams)
    source = Counter(struct.unpack("!I", d[8:12])[0] for _, d in nine.datagrams)
    for s in feed.streams:
        original = next(o for o in nine.streams if o.user_id == f"user{s.order % 9}" and o.kind == s.kind)
        assert sent[s.ssrc] == source[original.ssrc] > 0, (s, original)
    out = tmp_path / "out"
    cpu, wall = capacity.run(feed, 2.0, 0.0, keep=out)  # on several threads from the start
    assert cpu > 0 and wall > 0
    [mp4] = out.rglob("*.mp4")
    last = None
    with av.open(str(mp4)) as container:
        assert (container.streams.video[0].width, container.streams.video[0].height) == (1920, 1080)
        for frame in container.decode(video=0):
            last = frame
    assert last is not None
    rgb = last.to_ndarray(format="rgb24")
    w, h = 1920 // 5, 1080 // 5  # 17 users: a 5x5 grid, filled in join order, row by row
    for i in range(17):
        x, y = (i % 5) * w, (i // 5) * h
        cell = np.ascontiguousarray(rgb[y + h // 4 : y + 3 * h // 4, x + w // 4 : x + 3 * w // 4])
        got = median_rgb(av.VideoFrame.from_ndarray(cell, format="rgb24"))
        assert colour_distance(got, COLOURS[i % 9]) < 20, (i, got)
