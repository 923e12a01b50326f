"""The recording worker: one OS process per job, running one :class:`~emberrtc.recording.pipeline.Pipeline`.

::

    python -m emberrtc.recording.worker PLAN.json   # or "-": the plan is the first line on stdin

- **stdout**: reports (``reports.py``), one JSON line each; the first is ``ready`` (with the RTP ports),
  the last ``exited``.
- **stdin**: commands, one JSON line each: ``{"cmd": "stop"}`` finishes every file and exits;
  ``{"cmd": "update", "plan": "<plan JSON>"}`` applies a new plan from the next file. End of stdin (the
  server died) also stops: the files are finished all the same.
- **spool folder**: ``.journal.jsonl`` has every file report (see :class:`Reporter`), ``.worker.lock`` is
  held while the worker runs; with them a restarted server stores, reports or salvages whatever the
  worker left (``supervisor.RecordingSupervisor.recover``).
- **signals**: SIGTERM stops like ``stop``; SIGINT is ignored (a terminal's Ctrl-C is the server's to
  handle, and it stops its workers).
- **stderr**: log lines. Exit status 0 after a stop, 2 after a fatal error (reported first).

A mixed-stream job (``plan.mix``) runs a :class:`~emberrtc.recording.mix_pipeline.MixPipeline` on one
port (``mix``) instead; everything else is the same.

One thread: datagrams are read in rounds at most every ``_ROUND`` seconds; each round takes what every
socket holds and processes it in arrival order (kernel receive timestamps), so audio and video stay
interleaved as they came, however much piled up. The kernel's socket buffer (enlarged) holds what
arrives between rounds and while frames are being encoded.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import selectors
import signal
import socket
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO

from emberrtc.domain.redaction import MaskUrlsFilter
from emberrtc.recording import reports
from emberrtc.recording.pipeline import AUDIO, VIDEO, Pipeline
from emberrtc.recording.plan import RecordingPlan, Timing
from emberrtc.recording.reports import Behind, Exited, Ready, Report, WorkerError
from emberrtc.recording.rtp import open_socket, receive

log = logging.getLogger("emberrtc.recording.worker")

_BATCH = 4096  # most datagrams read from one socket in one round
_TICK = 0.05  # seconds between pipeline ticks (a fraction of the jitter buffer's wait)
_ROUND = 0.02  # shortest time between two rounds of reading while packets trickle in (live media)
_FEW = 8  # a round with fewer datagrams than this waits for the next; a backlog is read without pause
_SLOW = 0.25  # after a round longer than this (seconds), what came meanwhile is read before silence is judged
# In the job's spool folder, dot files like the spool's own marks (storage.spool): never a media file's name.
JOURNAL = ".journal.jsonl"  # file reports of every worker run of the job, in order
LOCK = ".worker.lock"  # held by the job's worker while it runs
MIX = "mix"  # a mixed job's one port: every stream of the room, told apart by SSRC (``mix_pipeline``)


class Reporter:
    """Writes reports to stdout (while the parent listens) and every file report to the job's journal.

    The journal (``.journal.jsonl`` in the spool folder, flushed and synced per line) is what a restarted
    server reads to store and report the files of a worker whose reports it never received (its
    predecessor was killed, or the worker outlived it), and to salvage files the worker could not finish."""

    def __init__(self, out: IO[bytes], spool: Path) -> None:
        self._out = out
        spool.mkdir(parents=True, exist_ok=True)
        self._journal = (spool / JOURNAL).open("ab")
        self.parent_gone = False

    def __call__(self, report: Report) -> None:
        line = (reports.encode(report) + "\n").encode()
        if isinstance(report, reports.FileCompleted | reports.PartCompleted | reports.FileStarted):
            self._journal.write(line)
            self._journal.flush()
            os.fsync(self._journal.fileno())
        if not self.parent_gone:
            try:
                self._out.write(line)
                self._out.flush()
            except (BrokenPipeError, ValueError, OSError):
                self.parent_gone = True


def hold_job_lock(spool: Path) -> int:
    """Take the job's lock (``.worker.lock`` in its spool folder) for this process's lifetime: a restarted
    server waits on it before reading the journal, so it never reads a journal still being written. A worker
    of the same job still finishing its files makes this one wait."""
    spool.mkdir(parents=True, exist_ok=True)
    fd = os.open(spool / LOCK, os.O_RDWR | os.O_CREAT, 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX)
    return fd


def _arrival(item: tuple[float, str, bytes]) -> float:
    return item[0]


class LagWatch:
    """How long after their arrival the worker reads its datagrams, and :class:`Behind` when that lasts.

    Each round of reading gives the lag of the newest datagram it read (a round that read nothing: 0, nothing
    waits). Past ``Timing.behind`` for ``Timing.behind_for`` seconds the worker reports it, again every
    ``repeat`` seconds with the figure of the moment while it lasts, and ``Behind(0)`` once it has read
    within a quarter of ``behind`` for ``behind_for`` seconds.
    """

    def __init__(self, timing: Timing, report: Callable[[Report], None], repeat: float = 5.0) -> None:
        self._limit, self._for, self._repeat = timing.behind, timing.behind_for, repeat
        self._report = report
        self.behind = False
        self._since: float | None = None  # when the lag last crossed to the other side of the state
        self._last_report = 0.0

    def round(self, now: float, newest: float | None) -> None:
        """A round of reading ended at ``now``; ``newest``: arrival time of the newest datagram it read."""
        lag = 0.0 if newest is None else max(0.0, now - newest)
        other_side = lag <= self._limit / 4 if self.behind else lag > self._limit
        if not other_side:
            self._since = None
            if self.behind and now - self._last_report >= self._repeat:
                self._last_report = now
                self._report(Behind(_late(lag)))
            return
        if self._since is None:
            self._since = now
        if now - self._since >= self._for:
            self.behind, self._since, self._last_report = not self.behind, None, now
            self._report(Behind(_late(lag) if self.behind else 0.0))


def _late(lag: float) -> float:
    """A lag as :class:`Behind` carries it: to the hundredth, never 0 (which says: caught up)."""
    return max(0.01, round(lag, 2))


class Worker:
    def __init__(self, plan: RecordingPlan, stdin_fd: int, stdout: IO[bytes], pending: bytes = b"") -> None:
        self.plan = plan
        self._stdin = stdin_fd
        self._buffer = pending
        self._lock = hold_job_lock(Path(plan.spool_dir))
        self._reporter = Reporter(stdout, Path(plan.spool_dir))
        self._stopping: str | None = None

    def run(self) -> int:
        signal.signal(signal.SIGTERM, lambda *_: self._stop("terminated"))
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        sockets: dict[str, socket.socket] = {}
        pipeline: Pipeline
        if self.plan.mix is not None:
            # Imported here: single-stream workers need none of the mixing machinery.
            from emberrtc.recording.mix_pipeline import MixPipeline

            sockets[MIX] = open_socket(self.plan.mix.endpoint)
            pipeline = MixPipeline(self.plan, self._reporter)
        else:
            if self.plan.video is not None:
                sockets[VIDEO] = open_socket(self.plan.video.endpoint)
            if self.plan.audio is not None:
                sockets[AUDIO] = open_socket(self.plan.audio.endpoint)
            pipeline = Pipeline(self.plan, self._reporter)
        self._reporter(Ready({k: s.getsockname()[1] for k, s in sockets.items()}, os.getpid()))
        selector = selectors.DefaultSelector()
        for kind, sock in sockets.items():
            selector.register(sock, selectors.EVENT_READ, kind)
        selector.register(self._stdin, selectors.EVENT_READ, "control")
        self._commands(pipeline)  # a command may have come with the plan
        status = 0
        try:
            next_tick = 0.0
            lag = LagWatch(self.plan.timing, self._reporter)
            while self._stopping is None:
                ready = [key.data for key, _ in selector.select(_TICK)]
                round_start = time.monotonic()
                if "control" in ready:
                    self._read_control(pipeline)
                busy = [k for k in ready if k != "control"]
                batch, backlog = self._read(sockets, busy, pipeline)
                now = time.monotonic()
                lag.round(now, batch[-1][0] if batch else None)  # the batch is in arrival order
                # Silences are judged on drained sockets: not after a full read, nor after a slow round while
                # packets wait (a mix composing a backlog can take longer than a silence lasts).
                if now >= next_tick and not backlog:
                    lagging = now - round_start > _SLOW and self._waiting(selector)
                    pipeline.tick(now, drained=not lagging)
                    next_tick = now + _TICK
                if busy and len(batch) < _FEW:
                    # Let packets gather: one wake-up per few packets instead of one per packet. Arrival
                    # times are the kernel's, so waiting changes nothing but the cost.
                    time.sleep(max(0.0, round_start + _ROUND - time.monotonic()))
        except Exception as exc:  # a fault in this job must end only this job, and say why
            log.exception("recording worker failed")
            self._reporter(WorkerError(f"{type(exc).__name__}: {exc}", fatal=True))
            self._stopping = "failed"
            status = 2
        try:
            if status == 0:  # what was sent before the stop is recorded too
                self._read(sockets, list(sockets), pipeline)
            pipeline.close()
        except Exception as exc:
            log.exception("closing the recording failed")
            self._reporter(WorkerError(f"closing files failed: {type(exc).__name__}: {exc}", fatal=True))
            status = 2
        self._reporter(Exited(self._stopping or "stopped"))
        return status

    @staticmethod
    def _waiting(selector: selectors.BaseSelector) -> bool:
        """Does a media socket hold datagrams now?"""
        return any(key.data != "control" for key, _ in selector.select(0))

    def _read(
        self, sockets: dict[str, socket.socket], kinds: list[str], pipeline: Pipeline
    ) -> tuple[list[tuple[float, str, bytes]], bool]:
        """One round: what the sockets hold, processed in arrival order. Returns the round's datagrams and
        whether a socket may hold more."""
        batch: list[tuple[float, str, bytes]] = []
        backlog = False
        if kinds:
            now = time.monotonic()
            offset = now - time.time()
            for kind in kinds:
                backlog = self._drain(sockets[kind], kind, now, offset, batch) or backlog
            # One order across the streams, the order they arrived in: a backlog read stream by stream
            # must not let one stream's media overtake the other's.
            batch.sort(key=_arrival)
            for arrival, kind, data in batch:
                pipeline.receive(kind, data, arrival)
        return batch, backlog

    @staticmethod
    def _drain(
        sock: socket.socket, kind: str, now: float, offset: float, batch: list[tuple[float, str, bytes]]
    ) -> bool:
        """What the socket holds (up to ``_BATCH`` datagrams), with arrival times, into ``batch``; True if
        more may be waiting."""
        for _ in range(_BATCH):
            try:
                data, arrival = receive(sock, offset)
            except BlockingIOError:
                return False
            # A kernel time in the future would be a wall-clock step: trust the read time instead.
            batch.append((arrival if arrival is not None and arrival <= now else now, kind, data))
        return True

    def _read_control(self, pipeline: Pipeline) -> None:
        data = os.read(self._stdin, 65536)
        if not data:
            self._reporter.parent_gone = True
            self._stop("the server went away")
            return
        self._buffer += data
        self._commands(pipeline)

    def _commands(self, pipeline: Pipeline) -> None:
        while b"\n" in self._buffer:
            line, self._buffer = self._buffer.split(b"\n", 1)
            if not line.strip():
                continue
            try:
                command = json.loads(line)
                if command["cmd"] == "stop":
                    self._stop("stopped")
                elif command["cmd"] == "update":
                    pipeline.update(RecordingPlan.from_json(command["plan"]))
                else:
                    raise ValueError(f"unknown command {command['cmd']!r}")
            except (ValueError, KeyError, TypeError) as exc:
                log.error("bad command %r: %s", line[:200], exc)
                self._reporter(WorkerError(f"bad command: {exc}", fatal=False))

    def _stop(self, reason: str) -> None:
        if self._stopping is None:
            self._stopping = reason


def _read_line(fd: int) -> tuple[bytes, bytes]:
    """The first line on ``fd`` and whatever came after it."""
    buffer = b""
    while b"\n" not in buffer:
        chunk = os.read(fd, 65536)
        if not chunk:
            break
        buffer += chunk
    line, _, rest = buffer.partition(b"\n")
    return line, rest


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print("usage: python -m emberrtc.recording.worker PLAN.json|-", file=sys.stderr)
        return 64
    logging.basicConfig(
        level=os.environ.get("EMBER_WORKER_LOG_LEVEL", "WARNING"),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    for handler in logging.getLogger().handlers:
        handler.addFilter(MaskUrlsFilter())  # an RTMP URL's stream key, an S3 URL's signature
    stdin = sys.stdin.fileno()
    pending = b""
    if argv[0] == "-":
        text, pending = _read_line(stdin)
    else:
        text = Path(argv[0]).read_bytes()
    plan = RecordingPlan.from_json(text.decode())
    return Worker(plan, stdin, sys.stdout.buffer, pending).run()


if __name__ == "__main__":
    sys.exit(main())
