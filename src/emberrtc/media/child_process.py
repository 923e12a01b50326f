"""What the supervised programs (Janus, the TURN relay) have in common as child processes of ``ember serve``:
finding the ones a previous run left on the same config (read from ``/proc``), killing them, and ending one
politely (SIGTERM, then SIGKILL after a grace time)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import time
from pathlib import Path
from typing import Self

log = logging.getLogger(__name__)


class Supervised:
    """The life of a program ``ember serve`` starts and keeps running (Janus, the TURN relay): ``start`` prepares
    it (:meth:`_prepare`), starts it and waits until it is ready; a failed first start ends it and raises (no
    restart then: the config or install is broken); after that :meth:`_supervise` keeps it running until
    ``stop``, which ends supervision first and then the program (:meth:`_terminate`)."""

    #: Names the supervising task (``{name}-supervisor``).
    name = "child"
    _supervisor: asyncio.Task[None] | None = None
    _stopping = False

    async def _prepare(self) -> None:
        """Before the first start: write the config, check the installation."""

    async def _spawn_until_ready(self) -> None:
        raise NotImplementedError

    async def _supervise(self) -> None:
        raise NotImplementedError

    async def _terminate(self) -> None:
        raise NotImplementedError

    async def start(self) -> None:
        if self._supervisor is not None:
            raise RuntimeError(f"{type(self).__name__} already started")
        await self._prepare()
        self._stopping = False
        try:
            await self._spawn_until_ready()
        except BaseException:
            self._stopping = True
            await self._terminate()
            raise
        self._supervisor = asyncio.create_task(self._supervise(), name=f"{self.name}-supervisor")

    async def stop(self) -> None:
        self._stopping = True
        if self._supervisor is not None:
            self._supervisor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._supervisor
            self._supervisor = None
        await self._terminate()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()


def pids_running(program: str, config: Path) -> list[int]:
    """Processes whose executable name ends with ``program`` and whose arguments name ``config``."""
    pids = []
    needle, name = str(config).encode(), program.encode()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if cmdline and cmdline[0].endswith(name) and needle in cmdline:
            pids.append(int(entry.name))
    return pids


def kill_stale(program: str, config: Path, what: str, wait: float = 5.0) -> list[int]:
    """Kill ``program`` processes a previous Ember run left on ``config`` (they would hold its ports), and
    wait up to ``wait`` seconds for them to be gone. Returns the PIDs killed."""
    pids = killed = pids_running(program, config)
    for pid in pids:
        log.warning("killing %s (pid %d) left running by a previous run on %s", what, pid, config)
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + wait
    while pids and time.monotonic() < deadline:
        pids = [p for p in pids if Path(f"/proc/{p}").exists() and not _is_zombie(p)]
        time.sleep(0.05)
    return killed


async def terminate(proc: asyncio.subprocess.Process | None, grace: float, what: str) -> None:
    """End ``proc`` if it runs: SIGTERM, then SIGKILL when it has not exited after ``grace`` seconds."""
    if proc is None or proc.returncode is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        proc.send_signal(signal.SIGTERM)
    try:
        async with asyncio.timeout(grace):
            await proc.wait()
    except TimeoutError:
        log.warning("%s (pid %d) ignored SIGTERM for %.1f s; killing it", what, proc.pid, grace)
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        await proc.wait()
    log.info("%s (pid %d) stopped with status %s", what, proc.pid, proc.returncode)


def _is_zombie(pid: int) -> bool:
    try:
        return (Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]) == "Z"
    except (OSError, IndexError):
        return True
