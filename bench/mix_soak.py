"""Does a long mixed job hold its memory? A meeting of many minutes, someone joining or leaving every few seconds.

A mixed job runs as long as its meeting: hours, with people coming and going. Anything it keeps per input
(decoders, scalers, jitter buffers, audio queues, scaled pictures), per layout or per file and does not let
go of grows with the meeting. This runs Ember's whole mixed job (``bench/mixer.py``'s ``pipeline`` side: the
bench clips as RTP as Janus forwards them, jitter buffers, depacketizing, decoding, compositor, mixer,
encoders, MP4 files cut every ``--cycle`` seconds) for ``--minutes`` of output, as fast as it goes. The nine
clips' publishers are looped (their RTP timestamps and sequence numbers carried on, as a live sender's
are); six of them are in the room at a time, and every ``--churn`` seconds the one who joined first leaves
and the one out longest joins, so each comes back many times with the same SSRCs (a re-join).

It prints the process's resident memory once per minute of output, after a collection; the last line gives
its growth from the second minute (the codecs and first files opened) to the last, per hour of output.

    python bench/mix_soak.py [--minutes 30] [--churn 5] [--cycle 60]
"""

from __future__ import annotations

import argparse
import gc
import struct
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT))

import mixer  # noqa: E402  (bench/mixer.py: the clips, their RTP and the job's plan)

from emberrtc.recording.mix_pipeline import MixPipeline  # noqa: E402
from emberrtc.recording.plan import Endpoint, MixInput, Mp4Output, ObjectNaming, RecordingPlan  # noqa: E402

TEMPLATE = "640*480_15_500"
PRESENT = 6  # users in the room at a time
STEP = 0.02


def resident_mb() -> float:
    """This process's resident memory (``VmRSS``), MB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


class Looped:
    """A feed's datagrams over and over: loop ``k`` has its times, RTP timestamps and sequence numbers moved
    on by ``k`` loops, so each sender looks like one that kept sending."""

    def __init__(self, feed: mixer.Feed, length: float) -> None:
        self.datagrams = feed.datagrams
        self.length = length
        clock = {s.ssrc: 90_000 if s.kind == "video" else 48_000 for s in feed.streams}
        counts: dict[int, int] = {}
        for _, datagram in feed.datagrams:
            ssrc = struct.unpack("!I", datagram[8:12])[0]
            counts[ssrc] = counts.get(ssrc, 0) + 1
        self._per_loop = {ssrc: (round(length * clock[ssrc]), counts[ssrc]) for ssrc in counts}

    def until(self, end: float, start: float) -> list[tuple[float, int, bytes]]:
        """``(time, ssrc, datagram)`` of every datagram due in ``[start, end)``."""
        out = []
        first, last = self.datagrams[0][0], self.datagrams[-1][0]  # Opus's pre-skip puts its first before 0
        loop = max(0, int((start - last) // self.length))
        while loop * self.length + first < end:
            base = loop * self.length
            for t, datagram in self.datagrams:
                at = base + t
                if at < start or at >= end:
                    continue
                ssrc = struct.unpack("!I", datagram[8:12])[0]
                ticks, count = self._per_loop[ssrc]
                sequence, timestamp = struct.unpack("!HI", datagram[2:8])
                moved = struct.pack("!HI", (sequence + loop * count) % 65536, (timestamp + loop * ticks) % (1 << 32))
                out.append((at, ssrc, datagram[:2] + moved + datagram[8:]))
            loop += 1
        out.sort(key=lambda item: item[0])
        return out


def soak(
    feed: mixer.Feed,
    length: float,
    seconds: float,
    spool: str,
    *,
    churn: float = 5.0,
    cycle: int = 60,
    sample_every: float = 60.0,
    on_sample: Callable[[float, float, int], None] = lambda *_: None,
) -> list[tuple[float, float]]:
    """Run the mixed job on ``feed`` (made for ``length`` seconds) looped for ``seconds`` of output,
    ``PRESENT`` users at a time, one leaving and one joining every ``churn`` seconds; ``(output seconds,
    resident MB)`` every ``sample_every`` seconds of output (``on_sample`` is also told how many files were
    completed)."""
    looped = Looped(feed, length)
    users = sorted({s.user_id for s in feed.streams}, key=lambda u: int(u.removeprefix("user")))
    present, waiting = users[:PRESENT], users[PRESENT:]
    naming = ObjectNaming("{stream}_{file_start_time}", "bench", "m_soak_room", record_type="mix")

    def plan() -> RecordingPlan:
        streams = tuple(s for s in feed.streams if s.user_id in present)
        return RecordingPlan(
            job_id="soak", app_id="bench", room_id="room", stream_name="m_soak_room", location="local",
            bucket="bench", spool_dir=spool, video=None, audio=None, mp4=Mp4Output(naming, record_cycle=cycle),
            encoding=mixer.ENCODING,
            mix=MixInput(Endpoint(), TEMPLATE, {"layout_template": "nine_grids_view"}, streams),
        )  # fmt: skip

    files = 0

    def report(item: object) -> None:
        nonlocal files
        files += type(item).__name__ == "FileCompleted"

    job = MixPipeline(plan(), report, run_id="soak")
    origin, now = 1000.0, 0.0
    samples: list[tuple[float, float]] = []
    next_churn, next_sample = churn, sample_every
    while now < seconds - 1e-9:
        end = now + churn / 5
        ssrcs = {s.ssrc for s in feed.streams if s.user_id in present}
        pending = [d for d in looped.until(end, now) if d[1] in ssrcs]
        i = 0
        while now < end - 1e-9:
            now += STEP
            while i < len(pending) and pending[i][0] < now:
                job.receive("mix", pending[i][2], origin + pending[i][0])
                i += 1
            job.tick(origin + now)
        if now >= next_churn - 1e-9:
            next_churn += churn
            waiting.append(present.pop(0))
            present.append(waiting.pop(0))
            job.update(plan())
        if now >= next_sample - 1e-9:
            next_sample += sample_every
            gc.collect()
            samples.append((now, resident_mb()))
            on_sample(now, samples[-1][1], files)
    job.close()
    return samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=30.0, help="minutes of output (at least 3)")
    parser.add_argument("--churn", type=float, default=5.0, help="seconds between a leave and a join")
    parser.add_argument("--cycle", type=int, default=60, help="record_cycle of the MP4 files (seconds)")
    parser.add_argument("--clips", type=Path, default=Path(tempfile.gettempdir()) / "ember-bench-mixer")
    parser.add_argument("--keep", type=Path, help="write the files here (default: a temporary folder)")
    args = parser.parse_args()
    if args.minutes < 3:
        parser.error("--minutes must be at least 3 (the growth is measured from the second minute)")
    length = mixer.CLIP_SECONDS - 1
    feed = mixer.make_feed(mixer.make_clips(args.clips), length)
    started = time.monotonic()

    def say(seconds: float, mb: float, files: int) -> None:
        wall = time.monotonic() - started
        print(f"{seconds / 60:5.1f} min of output: {mb:7.1f} MB resident, {files} files, {wall:5.0f} s of wall clock")

    with tempfile.TemporaryDirectory() as temporary:
        samples = soak(feed, length, args.minutes * 60, str(args.keep or temporary), churn=args.churn, cycle=args.cycle,
                       on_sample=say)  # fmt: skip
    (s1, first), (s2, last) = samples[1], samples[-1]
    per_hour = (last - first) / (s2 - s1) * 3600
    print(
        f"mixed job, {args.minutes:g} min of output, a join and a leave every {args.churn:g} s, files of "
        f"{args.cycle} s: resident {first:.1f} MB at minute {s1 / 60:.0f}, {last:.1f} MB at minute {s2 / 60:.0f}; "
        f"growth {per_hour:+.1f} MB per hour of output"
    )


if __name__ == "__main__":
    main()
