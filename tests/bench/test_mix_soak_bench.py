"""``bench/mix_soak.py`` runs one mixed job for many minutes on the bench clips looped, users leaving and
joining: each looped sender must look like one that kept sending (its RTP sequence numbers and timestamps
carried on), and the job must take the joins (their colours in the grid) and cut its files."""

from __future__ import annotations

import struct
from pathlib import Path

import av

from emberrtc.synthetic import colour_distance
from tests.bench import load_bench
from tests.bench.test_mixer_bench import COLOURS, make_clip
from tests.recording.readback import cell_rgb, frame_at

soak = load_bench("mix_soak")
LENGTH = 2.0


def feed(tmp_path: Path, count: int):  # type: ignore[no-untyped-def]
    clips = [make_clip(tmp_path / f"input{i}.mp4", i, LENGTH) for i in range(count)]
    return soak.mixer.make_feed(clips, LENGTH)


def test_a_looped_sender_carries_its_sequence_numbers_and_timestamps_on(tmp_path: Path) -> None:
    nine = feed(tmp_path, 2)
    looped = soak.Looped(nine, LENGTH)
    three = looped.until(3 * LENGTH, 0.0)
    assert [t for t, _, _ in three] == sorted(t for t, _, _ in three)
    assert len(three) == 3 * len(nine.datagrams)
    assert looped.until(LENGTH + 0.5, LENGTH) == [d for d in three if LENGTH <= d[0] < LENGTH + 0.5]
    for stream in nine.streams:
        rate = 90_000 if stream.kind == "video" else 48_000
        sent = [d for _, ssrc, d in three if ssrc == stream.ssrc]
        sequences = [struct.unpack("!H", d[2:4])[0] for d in sent]
        stamps = [struct.unpack("!I", d[4:8])[0] for d in sent]
        assert all((b - a) % 65536 == 1 for a, b in zip(sequences, sequences[1:], strict=False)), stream
        assert stamps == sorted(stamps), stream  # no wrap in six seconds from these bases
        per_loop = len(sent) // 3
        assert stamps[per_loop] - stamps[0] == round(LENGTH * rate), stream  # the next loop, 2 s on


def test_the_job_takes_the_joins_and_cuts_its_files(tmp_path: Path) -> None:
    nine = feed(tmp_path, 8)  # six in the room at a time, two waiting
    spool = tmp_path / "spool"
    seen: list[tuple[float, float, int]] = []
    samples = soak.soak(nine, LENGTH, 12.0, str(spool), churn=2.0, cycle=4, sample_every=4.0,
                        on_sample=lambda *s: seen.append(s))  # fmt: skip
    assert [round(t) for t, _ in samples] == [4, 8, 12] and all(mb > 0 for _, mb in samples)
    assert [round(t) for t, _, _ in seen] == [4, 8, 12] and seen[-1][2] >= 2  # files of 4 s completed
    files = sorted(spool.rglob("*.mp4"))
    assert len(files) >= 3
    # 11.5 s in (a leave and a join every 2 s, the last at 10 s): users 5 to 7 and 0 to 2 are in the room
    # (the two waiting joined, then three who had left came back). Each joiner took the tile of the user
    # who had just left (nine_grids_view), so user 5, there from the start, keeps the sixth.
    with av.open(str(files[-1])) as container:
        pictures = list(container.decode(video=0))
    picture = frame_at(pictures, float(pictures[0].time or 0.0) + 3.5)  # the file of 8 to 12 s
    assert (picture.width, picture.height) == (640, 480)
    w, h = 640 // 3, 480 // 2
    for cell, user in enumerate((6, 7, 0, 1, 2, 5)):
        x, y = (cell % 3) * w, (cell // 3) * h
        got = cell_rgb(picture, x, y, w, h)
        assert colour_distance(got, COLOURS[user]) < 30, (cell, user, got)
