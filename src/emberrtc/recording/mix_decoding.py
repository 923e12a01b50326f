"""Decoding a mixed job's video inputs: on the worker's one thread while one core carries the job, spread
over a few threads when it does not.

A mixed job runs in one worker process, on one thread, which is the cheapest way to run many jobs on a
machine (no hand-offs). But one job can outgrow a core: 25 users in ``nine_grids_view`` composed to
1080p30 cost 1.1 CPU-seconds per output second on the bench's machine (``bench/mix_capacity.py``), most of
it decoding 25 inputs, and cameras sending 720p cost four times as much to decode. A job on one thread
then falls behind the room for as long as it runs.

So the job measures itself (:class:`LoadGauge`: the process's CPU time per second of output, over each
second of output) and, above ``Encoding.mix_parallel_load`` of a core, decodes each output step's pictures
and scales them to their tiles on up to ``Encoding.mix_decode_threads`` threads (:class:`ParallelWork`);
below 0.6 of that it goes back to one thread. PyAV lets go of the GIL while FFmpeg decodes, so the inputs'
decoders run side by side; each decoder is used by one thread at a time, the pictures are the same as on
one thread, in the same order, and no picture comes later (FFmpeg's own frame threads would hold one
picture back per thread and cost a quarter more CPU, measured 2026-12-03). swscale lets go of the GIL
too; each input's scalers are used by one thread at a time (``Compositor.compose``).
"""

from __future__ import annotations

import functools
import os
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Protocol, TypeVar

import av

#: Share of ``Encoding.mix_parallel_load`` under which a job goes back to decoding on one thread.
BACK_TO_ONE = 0.6

T = TypeVar("T")


class LoadGauge:
    """Whether a job should decode in parallel, from its CPU time per second of output.

    :meth:`output` is told of each output step; once per ``window`` seconds of output it compares the CPU
    time spent since the last window with the output made. The first window (the encoders and decoders
    opening) is not judged. A ``threshold`` of 0 or less: parallel from the start.
    """

    def __init__(self, threshold: float, window: float = 1.0, cpu: Callable[[], float] = time.process_time) -> None:
        self.threshold = threshold
        self.window = window
        self._cpu = cpu
        self.parallel = threshold <= 0
        self.load: float | None = None  # CPU-seconds per output second over the last window
        self._media = 0.0
        self._start = cpu()
        self._windows = 0

    def output(self, seconds: float) -> bool:
        """``seconds`` of output were made; True when :attr:`parallel` changed."""
        self._media += seconds
        if self._media < self.window:
            return False
        now = self._cpu()
        load, self._start, self._media = (now - self._start) / self._media, now, 0.0
        self._windows += 1
        if self._windows == 1 or self.threshold <= 0:
            return False
        self.load = load
        wanted = load > self.threshold * (BACK_TO_ONE if self.parallel else 1.0)
        if wanted == self.parallel:
            return False
        self.parallel = wanted
        return True


class _Packets(Protocol):
    data: bytes


@dataclass
class Decoded:
    """What one input's decoder made of its packets for one output step."""

    picture: av.VideoFrame | None = None  # the newest
    errors: list[av.FFmpegError] = field(default_factory=list)


def decode(decoder: av.VideoCodecContext, frames: Sequence[_Packets]) -> Decoded:
    """Decode ``frames`` in order (any thread; only this decoder is touched); the newest picture and the
    errors (a frame that fails is skipped, the next ones are still tried)."""
    out = Decoded()
    for frame in frames:
        try:
            pictures = decoder.decode(av.Packet(frame.data))
        except av.FFmpegError as exc:
            out.errors.append(exc)
            continue
        for picture in pictures:
            if isinstance(picture, av.VideoFrame):
                out.picture = picture
    return out


class ParallelWork:
    """Runs an output step's independent tasks at once (decoding, scaling): the calling thread takes one
    share, a pool the others; results in the order of the tasks."""

    def __init__(self, threads: int) -> None:
        self.threads = max(1, min(threads, os.cpu_count() or 1))
        self._pool = ThreadPoolExecutor(self.threads - 1, thread_name_prefix="mix-work") if self.threads > 1 else None

    def spreads(self, tasks: int) -> bool:
        """Are ``tasks`` tasks run on more than one thread?"""
        return self._pool is not None and tasks > 1

    def run(self, tasks: Sequence[Callable[[], T]]) -> list[T]:
        """Each task's result, in the order of ``tasks`` (the first failure is raised, once all have run)."""
        if self._pool is None or not self.spreads(len(tasks)):
            return [task() for task in tasks]
        shares = [list(range(i, len(tasks), self.threads)) for i in range(min(self.threads, len(tasks)))]

        def run(share: list[int]) -> list[T]:
            return [tasks[i]() for i in share]

        others = [self._pool.submit(run, share) for share in shares[1:]]
        try:
            mine = run(shares[0])
        finally:
            made = [f.result() for f in others]  # every share finished before anything is touched again
        results: dict[int, T] = {}
        for share, done in zip(shares, [mine, *made], strict=True):
            results.update(zip(share, done, strict=True))
        return [results[i] for i in range(len(tasks))]

    def decode(self, work: Sequence[tuple[av.VideoCodecContext, Sequence[_Packets]]]) -> list[Decoded]:
        """Each (decoder, frames) decoded (:func:`decode`); results in the order of ``work``."""
        return self.run([functools.partial(decode, d, frames) for d, frames in work])

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
