"""Does one mixed job keep up with a full room? 25 users in ``nine_grids_view`` composed to 1080p30.

A mixed job runs in one worker process. On one thread, 25 participants' 640x360@30 H.264 decoded, scaled
into a 5x5 grid and encoded to ``1920*1080_30_4620`` cost more than a core (``bench/mixer.py``'s nine cost
0.6), so the job would fall behind the room for as long as it ran. Ember's job measures its own load and,
past ``Encoding.mix_parallel_load`` of a core, decodes, scales and encodes on several threads
(``recording/mix_decoding.py``).

This runs Ember's whole mixed job (``bench/mixer.py``'s ``pipeline`` side: the clips as RTP as Janus
forwards them, jitter buffers, depacketizing, decoding, compositor, mixer, encoders, MP4 files) for 25
users, the nine bench clips each sent by several users, fed as fast as the job takes them, in alternating
rounds:

- ``one thread``: the job kept on one thread whatever its load;
- ``automatic``: Ember's rule, as jobs run (one thread for the first two seconds of output, while it
  measures itself);
- ``parallel``: on several threads from the start (the rule's steady state).

Each prints CPU-seconds and wall-clock seconds per second of output. A job keeps up with the room when its
wall-clock time per output second is below 1. The last line gives the automatic rule's figure, its ratio
to one thread's, and whether it keeps up.

    python bench/mix_capacity.py [--users 25] [--seconds 10] [--rounds 3]
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import statistics
import struct
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT))

import mixer  # noqa: E402  (bench/mixer.py: the clips and the whole-job side)

TEMPLATE = "1920*1080_30_4620"
#: ``Encoding.mix_parallel_load`` of each side (above any load: never parallel; 0: from the start).
SIDES = {"one thread": 1e9, "automatic": mixer.ENCODING.mix_parallel_load, "parallel": 0.0}


def widen(feed: mixer.Feed, users: int) -> mixer.Feed:
    """``feed``'s publishers sent by ``users`` users: user ``i`` sends publisher ``i % n``'s packets under
    SSRCs of its own, in the join order of ``i``."""
    by_ssrc: dict[int, list[tuple[float, bytes]]] = {}
    for t, datagram in feed.datagrams:
        by_ssrc.setdefault(struct.unpack("!I", datagram[8:12])[0], []).append((t, datagram))
    publishers = sorted({s.user_id for s in feed.streams}, key=lambda u: int(u.removeprefix("user")))
    streams, datagrams = [], []
    for i in range(users):
        publisher = publishers[i % len(publishers)]
        for k, stream in enumerate(s for s in feed.streams if s.user_id == publisher):
            ssrc = 1_000_000 + 10 * i + k
            streams.append(dataclasses.replace(stream, ssrc=ssrc, user_id=f"user{i}", order=i))
            for t, datagram in by_ssrc.get(stream.ssrc, []):
                datagrams.append((t, datagram[:8] + struct.pack("!I", ssrc) + datagram[12:]))
    datagrams.sort(key=lambda item: item[0])
    return mixer.Feed(tuple(streams), tuple(datagrams))


def run(feed: mixer.Feed, seconds: float, parallel_load: float, keep: Path | None = None) -> tuple[float, float]:
    """One job of ``seconds``: (CPU-seconds, wall-clock seconds) per output second."""
    template = mixer.parse_template(TEMPLATE)
    started = time.monotonic()
    cpu = mixer.pipeline(feed, template, seconds, mixer.ENCODING.threads, keep, mix_parallel_load=parallel_load)
    return cpu / seconds, (time.monotonic() - started) / seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--users", type=int, default=25, help="users in the room (1 to 25)")
    parser.add_argument("--seconds", type=float, default=10.0, help="output seconds per run (2 to 11)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--clips", type=Path, default=Path(tempfile.gettempdir()) / "ember-bench-mixer")
    args = parser.parse_args()
    if not 1 <= args.users <= 25:
        parser.error("--users must be 1 to 25 (nine_grids_view)")
    seconds = min(max(args.seconds, 2.0), mixer.CLIP_SECONDS - 1)
    feed = widen(mixer.make_feed(mixer.make_clips(args.clips), seconds), args.users)
    results: dict[str, list[tuple[float, float]]] = {side: [] for side in SIDES}
    run(feed, 1.0, 1e9)  # warm-up, not counted
    for r in range(args.rounds):
        order = list(SIDES.items())
        for side, load in order if r % 2 == 0 else order[::-1]:
            cpu, wall = run(feed, seconds, load)
            results[side].append((cpu, wall))
            print(f"round {r + 1} {side:10}: {cpu:.3f} CPU-s, {wall:.3f} s of wall clock per output second", flush=True)
    median = {
        side: (statistics.median(c for c, _ in runs), statistics.median(w for _, w in runs))
        for side, runs in results.items()
    }
    for side, (cpu, wall) in median.items():
        print(f"{side}: {cpu:.3f} CPU-s, {wall:.3f} s of wall clock per output second")
    cpu, wall = median["automatic"]
    alone = median["one thread"][1]
    print(
        f"{args.users} users, {TEMPLATE}, {os.cpu_count()} cores: automatic {wall:.2f} s of wall clock per output "
        f"second ({wall / alone:.2f} of one thread's {alone:.2f}; parallel from the start "
        f"{median['parallel'][1]:.2f}); keeps up: {'yes' if wall < 1.0 else 'no'}"
    )


if __name__ == "__main__":
    main()
