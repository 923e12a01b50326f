"""Run and supervise the Janus process that carries Ember's media.

:class:`JanusProcess` writes a private config folder (:mod:`emberrtc.media.janus_config`), starts
``janus`` on it, waits until the HTTP API answers, restarts it with exponential backoff when it dies,
and stops it with SIGTERM, then SIGKILL if it lingers. A restarted Janus has forgotten every room and
session, so callers that keep state in Janus should rebuild it from :attr:`JanusProcess.on_ready`.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import os
import shutil
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import IO

import httpx

from emberrtc.config import absolute_path

from .child_process import Supervised, kill_stale, pids_running, terminate
from .janus_config import JanusConfig

__all__ = [
    "Backoff",
    "JanusNotInstalledError",
    "JanusProcess",
    "JanusStartError",
]

log = logging.getLogger(__name__)

_VIDEOROOM_PACKAGE = "janus.plugin.videoroom"

#: Called with the start count (1 for the first start) each time Janus becomes ready.
ReadyCallback = Callable[[int], Awaitable[None] | None]
#: Called with the exit status each time Janus exits without being asked to.
ExitCallback = Callable[[int], Awaitable[None] | None]


class JanusNotInstalledError(RuntimeError):
    """The Janus binary cannot be found or run."""


class JanusStartError(RuntimeError):
    """Janus did not become ready: it exited during start-up or missed the deadline."""


class Backoff:
    """Exponential delays between restarts: ``initial * factor**n``, at most ``maximum``."""

    def __init__(self, initial: float = 0.5, factor: float = 2.0, maximum: float = 30.0) -> None:
        if initial <= 0 or factor < 1 or maximum < initial:
            raise ValueError("need initial > 0, factor >= 1 and maximum >= initial")
        self.initial = initial
        self.factor = factor
        self.maximum = maximum
        self._next = initial

    def next_delay(self) -> float:
        """Return the delay before the next attempt and grow the following one."""
        delay = self._next
        self._next = min(self._next * self.factor, self.maximum)
        return delay

    def reset(self) -> None:
        """Start again from ``initial`` (after a run that lasted long enough to count as healthy)."""
        self._next = self.initial


class JanusProcess(Supervised):
    """Supervise one Janus process running on a private config folder.

    Use as ``async with JanusProcess(config, folder) as janus: ...`` or call :meth:`start` and
    :meth:`stop`. ``binary`` is the path or name of the ``janus`` executable.
    """

    name = "janus"

    def __init__(
        self,
        config: JanusConfig,
        config_dir: Path | str,
        *,
        binary: str | os.PathLike[str] = "janus",
        log_path: Path | str | None = None,
        ready_timeout: float = 10.0,
        stop_timeout: float = 5.0,
        backoff: Backoff | None = None,
        healthy_after: float = 30.0,
        on_ready: ReadyCallback | None = None,
        on_exit: ExitCallback | None = None,
    ) -> None:
        """Prepare a supervisor; nothing runs until :meth:`start`.

        ``log_path`` receives Janus's output (default ``config_dir/janus.log``, appended across
        restarts). ``ready_timeout`` bounds each start, ``stop_timeout`` the wait between SIGTERM and
        SIGKILL. A run lasting ``healthy_after`` seconds resets the restart backoff.
        """
        self.config = config
        # Janus runs with the config folder as its working directory: relative paths would be taken
        # relative to it a second time (data/janus/data/janus/janus.jcfg).
        self.config_dir = absolute_path(config_dir)
        self.binary = os.fspath(binary)
        self.log_path = absolute_path(log_path) if log_path is not None else self.config_dir / "janus.log"
        self.ready_timeout = ready_timeout
        self.stop_timeout = stop_timeout
        self.backoff = backoff or Backoff()
        self.healthy_after = healthy_after
        self.on_ready = on_ready
        self.on_exit = on_exit

        self._proc: asyncio.subprocess.Process | None = None
        self._log_file: IO[bytes] | None = None
        self._supervisor: asyncio.Task[None] | None = None
        self._stopping = False
        self._ready = False
        self._starts = 0
        self._exits = 0
        self._changed = asyncio.Condition()

    # -- state -------------------------------------------------------------------------------------

    @property
    def pid(self) -> int | None:
        """Process id of the running Janus, or None."""
        if self._proc is None or self._proc.returncode is not None:
            return None
        return self._proc.pid

    @property
    def ready(self) -> bool:
        """True while a started Janus answers its API and has not exited."""
        return self._ready

    @property
    def starts(self) -> int:
        """How many times Janus has become ready since :meth:`start`."""
        return self._starts

    @property
    def unexpected_exits(self) -> int:
        """How many times Janus exited without being asked to."""
        return self._exits

    async def wait_until(self, predicate: Callable[[], bool]) -> None:
        """Wait until ``predicate()`` holds, re-checked at each state change.

        Bound the wait with ``asyncio.timeout``.
        """
        async with self._changed:
            await self._changed.wait_for(predicate)

    async def wait_ready(self, *, starts: int = 1) -> None:
        """Wait until Janus is ready and has become ready at least ``starts`` times."""
        await self.wait_until(lambda: self._ready and self._starts >= starts)

    # -- lifecycle ---------------------------------------------------------------------------------

    async def _prepare(self) -> None:
        """Write the config (``start`` then starts Janus and waits until it is ready, and keeps it running).

        Raises :class:`JanusNotInstalledError` if the binary is missing; the first start raises
        :class:`JanusStartError` if it fails (no restart is attempted then: the config or install is broken).
        """
        self._resolve_binary()
        await asyncio.to_thread(self.config.write, self.config_dir)

    # -- internals ---------------------------------------------------------------------------------

    def _resolve_binary(self) -> str:
        path = shutil.which(self.binary)
        if path is None:
            raise JanusNotInstalledError(
                f"Janus executable {self.binary!r} not found or not executable. Ember needs the Janus "
                "WebRTC server (1.1.x): install it with `apt-get install janus`."
            )
        return path

    async def _spawn_until_ready(self) -> None:
        binary = self._resolve_binary()
        if self._log_file is None:
            # Kept open across restarts, closed by stop().
            self._log_file = await asyncio.to_thread(_open_log, self.log_path)
        if self._starts == 0:
            await asyncio.to_thread(kill_stale_janus, self.config_dir)
        # Janus dies with Ember even when Ember is killed (SIGKILL, OOM): its rooms are Ember's to run.
        prefix = ["setpriv", "--pdeathsig", "KILL", "--"] if shutil.which("setpriv") else []
        args = [
            *prefix,
            binary,
            # -F is where the plugins and the transport read their own files; -C names the core file
            # explicitly so nothing from /etc/janus is ever read.
            "-F",
            str(self.config_dir),
            "-C",
            str(self.config_dir / "janus.jcfg"),
            "--disable-colors",
        ]
        self._proc = await asyncio.create_subprocess_exec(
            *args,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=self._log_file,
            stderr=asyncio.subprocess.STDOUT,
            cwd=self.config_dir,
            # Own process group: a Ctrl-C at Ember's terminal must not kill Janus behind the
            # supervisor's back; shutdown goes through stop().
            start_new_session=True,
        )
        log.info("started janus (pid %d) with config %s", self._proc.pid, self.config_dir)
        await self._wait_for_api(self._proc)
        await self._set_state(ready=True, started=True)
        log.info("janus (pid %d) ready", self._proc.pid)
        await _call(self.on_ready, self._starts)

    async def _wait_for_api(self, proc: asyncio.subprocess.Process) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.ready_timeout
        last_error: Exception | None = None
        async with httpx.AsyncClient(timeout=1.0, trust_env=False) as http:
            while True:
                if proc.returncode is not None:
                    raise JanusStartError(
                        f"janus exited with status {proc.returncode} during start-up; "
                        f"last log lines:\n{self._log_tail()}"
                    )
                try:
                    response = await http.get(f"{self.config.http_url}/info")
                    info = response.json()
                    # Our plugin must be loaded; anything else answering on the port is not our Janus.
                    if info.get("janus") == "server_info" and _VIDEOROOM_PACKAGE in info.get("plugins", {}):
                        return
                    last_error = RuntimeError(f"unexpected info answer: {info!r}")
                except (httpx.HTTPError, ValueError) as exc:
                    last_error = exc
                if loop.time() >= deadline:
                    raise JanusStartError(
                        f"janus not ready within {self.ready_timeout} s ({last_error}); "
                        f"last log lines:\n{self._log_tail()}"
                    )
                # Poll interval: Janus is usually ready in ~50 ms, so this is not a sleep-to-sync.
                await asyncio.sleep(0.02)

    async def _supervise(self) -> None:
        loop = asyncio.get_running_loop()
        started_at = loop.time()
        while not self._stopping:
            proc = self._proc
            assert proc is not None
            status = await proc.wait()
            if self._stopping:
                return
            self._exits += 1
            await self._set_state(ready=False)
            if loop.time() - started_at >= self.healthy_after:
                self.backoff.reset()
            delay = self.backoff.next_delay()
            log.warning("janus (pid %d) exited with status %d; restarting in %.1f s", proc.pid, status, delay)
            await _call(self.on_exit, status)
            await asyncio.sleep(delay)
            started_at = loop.time()
            try:
                await self._spawn_until_ready()
            except JanusStartError as exc:
                # Kill a half-started process so the loop's wait() returns and the next try backs off.
                log.error("janus restart failed: %s", exc)
                await self._terminate()

    async def _terminate(self) -> None:
        proc = self._proc
        await self._set_state(ready=False)
        await terminate(proc, self.stop_timeout, "janus")
        if self._stopping and self._log_file is not None:
            self._log_file.close()
            self._log_file = None

    async def _set_state(self, *, ready: bool, started: bool = False) -> None:
        async with self._changed:
            self._ready = ready
            if started:
                self._starts += 1
            self._changed.notify_all()

    def _log_tail(self, lines: int = 20) -> str:
        try:
            text = self.log_path.read_bytes()[-8192:].decode("utf-8", "replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])


def _open_log(path: Path) -> IO[bytes]:
    path.parent.mkdir(parents=True, exist_ok=True)
    return open(path, "ab")


async def _call(callback: Callable[[int], Awaitable[None] | None] | None, value: int) -> None:
    if callback is None:
        return
    try:
        result = callback(value)
        if inspect.isawaitable(result):
            await result
    except Exception:
        # A faulty listener must not take the supervisor down with it.
        log.exception("janus supervisor callback failed")


def janus_pids(config_dir: Path) -> list[int]:
    """Janus processes running on ``config_dir`` (read from /proc)."""
    return pids_running("janus", config_dir)


def kill_stale_janus(config_dir: Path, wait: float = 5.0) -> list[int]:
    """Kill a Janus that a previous Ember run left on this config folder (it would hold the ports and rooms
    nobody runs any more). Returns the PIDs killed."""
    return kill_stale("janus", config_dir, "janus", wait)
