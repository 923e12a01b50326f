"""A mixed job's video decoding: the load gauge that decides between one thread and several, and the
parallel work (decoding, scaling), whose pictures must be those of one thread, in the same order."""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction

import av
import numpy as np
import pytest

from emberrtc.recording import mix_decoding
from emberrtc.recording.mix_decoding import BACK_TO_ONE, Decoded, LoadGauge, ParallelWork, decode


class FakeCpu:
    """A CPU clock the test moves (:func:`run` adds the CPU each step of output costs)."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def run(gauge: LoadGauge, cpu: FakeCpu, load: float, seconds: float, step: float = 0.05) -> list[bool]:
    """``seconds`` of output at ``load``; the changes the gauge announced (its new state each time)."""
    changes = []
    for _ in range(round(seconds / step)):
        cpu.now += load * step
        if gauge.output(step):
            changes.append(gauge.parallel)
    return changes


def test_the_gauge_goes_parallel_above_its_threshold_and_back_well_below_it() -> None:
    cpu = FakeCpu()
    gauge = LoadGauge(0.75, window=1.0, cpu=cpu)
    # The first second (encoders and decoders opening) is not judged, however heavy.
    assert run(gauge, cpu, 3.0, 1.0) == [] and not gauge.parallel
    assert run(gauge, cpu, 0.7, 3.0) == [] and gauge.load == pytest.approx(0.7)
    assert run(gauge, cpu, 0.9, 1.0) == [True] and gauge.parallel
    # Parallel work costs a little more CPU: in the band between the two thresholds it stays parallel.
    assert run(gauge, cpu, 0.75 * BACK_TO_ONE + 0.05, 5.0) == [] and gauge.parallel
    assert run(gauge, cpu, 0.2, 1.0) == [False] and not gauge.parallel
    assert run(gauge, cpu, 0.5, 3.0) == []


def test_a_threshold_of_zero_is_parallel_from_the_start_whatever_the_load() -> None:
    cpu = FakeCpu()
    gauge = LoadGauge(0.0, cpu=cpu)
    assert gauge.parallel
    assert run(gauge, cpu, 0.01, 5.0) == [] and gauge.parallel


@dataclass
class Frame:
    data: bytes


def h264_stream(seed: int, frames: int = 12) -> list[Frame]:
    """Noisy 160x96 pictures encoded to H.264 (Annex B, one frame per packet)."""
    rng = np.random.default_rng(seed)
    encoder = av.CodecContext.create("libx264", "w")
    assert isinstance(encoder, av.VideoCodecContext)
    encoder.width, encoder.height, encoder.pix_fmt = 160, 96, "yuv420p"
    encoder.time_base, encoder.framerate = Fraction(1, 30), Fraction(30)
    encoder.options = {"preset": "ultrafast", "tune": "zerolatency"}
    packets: list[Frame] = []
    for i in range(frames):
        picture = av.VideoFrame.from_ndarray(rng.integers(0, 255, (96, 160, 3), np.uint8), format="rgb24")
        picture = picture.reformat(format="yuv420p")
        picture.pts = i
        packets += [Frame(bytes(p)) for p in encoder.encode(picture)]
    packets += [Frame(bytes(p)) for p in encoder.encode(None)]
    return packets


def decoders(n: int) -> list[av.VideoCodecContext]:
    out = []
    for _ in range(n):
        d = av.CodecContext.create("h264", "r")
        assert isinstance(d, av.VideoCodecContext)
        out.append(d)
    return out


def luma(decoded: Decoded) -> np.ndarray:
    assert decoded.picture is not None
    return decoded.picture.to_ndarray(format="gray")


@pytest.fixture
def streams() -> list[list[Frame]]:
    return [h264_stream(seed) for seed in range(5)]


@pytest.fixture
def parallel() -> Iterator[ParallelWork]:
    p = ParallelWork(3)
    try:
        yield p
    finally:
        p.close()


def test_parallel_decoding_gives_one_threads_pictures_in_order(
    streams: list[list[Frame]], parallel: ParallelWork, monkeypatch: pytest.MonkeyPatch
) -> None:
    threads: set[int] = set()
    one_by_one = mix_decoding.decode

    def noting_the_thread(decoder: av.VideoCodecContext, frames: list[Frame]) -> Decoded:
        threads.add(threading.get_ident())
        return one_by_one(decoder, frames)

    monkeypatch.setattr(mix_decoding, "decode", noting_the_thread)
    alone, together = decoders(5), decoders(5)
    # Three output steps: the first packets of each input, then the next two, then the rest.
    for start, end in ((0, 1), (1, 3), (3, None)):
        expected = [decode(d, s[start:end]) for d, s in zip(alone, streams, strict=True)]
        got = parallel.decode([(d, s[start:end]) for d, s in zip(together, streams, strict=True)])
        assert len(got) == 5
        for e, g in zip(expected, got, strict=True):
            assert (e.picture is None) == (g.picture is None)
            if e.picture is not None:
                assert np.array_equal(luma(e), luma(g))  # the same picture of the same input
    if parallel.threads > 1:  # a machine of one core decodes on the caller's thread only
        assert len(threads) == min(parallel.threads, 5) and threading.get_ident() in threads


def test_an_undecodable_frame_is_reported_for_its_input_alone(
    streams: list[list[Frame]], parallel: ParallelWork
) -> None:
    work = [(d, list(s)) for d, s in zip(decoders(3), streams[:3], strict=True)]
    work[1] = (work[1][0], [Frame(b"\x00\x00\x00\x01\x65" + b"\xff" * 64), *work[1][1]])  # an IDR of garbage first
    got = parallel.decode(work)
    assert [len(g.errors) for g in got] == [0, 1, 0]
    assert all(g.picture is not None for g in got)  # the frames after it decode


def test_one_thread_asked_or_one_input_decodes_on_the_callers_thread(streams: list[list[Frame]]) -> None:
    single = ParallelWork(1)
    try:
        assert single.threads == 1
        got = single.decode([(d, s) for d, s in zip(decoders(2), streams, strict=False)])
        assert all(g.picture is not None for g in got)
    finally:
        single.close()


def test_tasks_run_on_the_pools_threads_results_in_order_and_a_failure_waits_for_the_rest(
    parallel: ParallelWork,
) -> None:
    threads: set[int] = set()
    finished: list[int] = []

    def task(i: int) -> int:
        threads.add(threading.get_ident())
        time.sleep(0.02)
        finished.append(i)
        return i * i

    assert parallel.run([functools.partial(task, i) for i in range(7)]) == [i * i for i in range(7)]
    if parallel.threads > 1:
        assert len(threads) == min(parallel.threads, 7)

    def fails() -> int:
        raise RuntimeError("scaling failed")

    finished.clear()
    with pytest.raises(RuntimeError, match="scaling failed"):
        parallel.run([fails, *(functools.partial(task, i) for i in range(5))])
    done = len(finished)
    time.sleep(0.1)
    assert len(finished) == done  # nothing was still running when the failure was raised
    if parallel.threads > 1:
        assert done > 0  # the other thread's share ran
