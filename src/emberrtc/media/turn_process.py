"""Run and supervise the embedded TURN relay (coturn's ``turnserver``), as Janus is run.

:class:`TurnProcess` writes ``turnserver.conf`` (:mod:`emberrtc.media.turn_config`) into a private folder,
starts ``turnserver`` on it, waits until it answers a STUN Binding request on its port, keeps probing it
so, restarts it with exponential backoff when it dies or stops answering, and stops it with SIGTERM, then
SIGKILL if it lingers. The relay keeps no state Ember depends on: a restarted relay loses its allocations,
and clients that were relayed through it see their ICE fail and join again (as after a Janus restart).

coturn's log (``turnserver.log``, one file: ``simple-log``) is bounded by Ember, not by coturn (whose own
rollover is daily, by name, never by size) nor by the journal (the log must be where the relay's folder
is, with or without systemd, and the relay's per-session lines would flood Ember's journal): at each health
probe a log past ``log_max_bytes`` is copied to ``turnserver.log.1`` and truncated in place. coturn opens
it with ``O_APPEND``, so its next line lands at the new start of the file; lines written between the copy
and the truncation (a few microseconds) are lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import socket
from pathlib import Path
from typing import IO

from aioice import stun

from emberrtc.config import absolute_path

from .child_process import Supervised, kill_stale, pids_running, terminate
from .janus_process import Backoff
from .turn_config import TurnConfig

__all__ = ["TurnNotInstalledError", "TurnProcess", "TurnStartError", "check_ports", "rotate_log", "stun_binding"]

log = logging.getLogger(__name__)


class TurnNotInstalledError(RuntimeError):
    """The coturn binary cannot be found."""


class TurnStartError(RuntimeError):
    """The relay did not answer: it exited during start-up or missed the deadline."""


class TurnProcess(Supervised):
    """Supervise one ``turnserver`` on a private config folder (``async with`` or start/stop)."""

    name = "turn"

    def __init__(
        self,
        config: TurnConfig,
        folder: Path | str,
        *,
        binary: str = "turnserver",
        ready_timeout: float = 10.0,
        stop_timeout: float = 5.0,
        backoff: Backoff | None = None,
        healthy_after: float = 30.0,
        health_interval: float = 10.0,
        health_failures: int = 3,
        log_max_bytes: int = 16 * 2**20,
    ) -> None:
        """``health_interval``: seconds between STUN probes of the running relay; after ``health_failures``
        unanswered probes in a row it is killed and restarted (a hung relay is as useless as a dead one).
        ``log_max_bytes``: the log is rotated when it passes this size (checked at each probe)."""
        if log_max_bytes < 1024:
            raise ValueError(f"log_max_bytes must be at least 1024, not {log_max_bytes}")
        self.config = config
        self.log_max_bytes = log_max_bytes
        self.folder = absolute_path(folder)
        self.binary = binary
        self.ready_timeout = ready_timeout
        self.stop_timeout = stop_timeout
        self.backoff = backoff or Backoff()
        self.healthy_after = healthy_after
        self.health_interval = health_interval
        self.health_failures = health_failures
        self._proc: asyncio.subprocess.Process | None = None
        self._output: IO[bytes] | None = None
        self._supervisor: asyncio.Task[None] | None = None
        self._stopping = False
        self.starts = 0
        self.unexpected_exits = 0
        self._ready = False

    @property
    def config_path(self) -> Path:
        return self.folder / "turnserver.conf"

    @property
    def log_path(self) -> Path:
        """coturn's own log (sessions, allocations, refusals)."""
        return self.folder / "turnserver.log"

    @property
    def ready(self) -> bool:
        """True while the relay runs and answered its last STUN probe."""
        return self._ready and self.pid is not None

    @property
    def pid(self) -> int | None:
        if self._proc is None or self._proc.returncode is not None:
            return None
        return self._proc.pid

    @staticmethod
    def check_installed(binary: str) -> str:
        """The binary's path, or :class:`TurnNotInstalledError` saying how to install it."""
        path = shutil.which(binary)
        if path is None:
            raise TurnNotInstalledError(
                f"TURN relay executable {binary!r} not found: EMBER_TURN=embedded needs coturn "
                "(`apt-get install coturn`), or unset EMBER_TURN"
            )
        return path

    async def healthy(self, within: float = 1.0) -> bool:
        """True when the relay answers a STUN Binding request on its port (over loopback)."""
        if self.pid is None:
            return False
        return await stun_binding(("127.0.0.1", self.config.port), within)

    async def _prepare(self) -> None:
        """Write the config and make sure the relay's ports are free (``start`` then starts the relay, waits
        until it answers and keeps it running)."""
        self.check_installed(self.binary)
        await asyncio.to_thread(self.config.write, self.folder)
        await asyncio.to_thread(kill_stale_relay, self.config_path)
        await asyncio.to_thread(rotate_log, self.log_path, self.log_max_bytes)
        check_ports(self.config)

    async def _spawn_until_ready(self) -> None:
        binary = self.check_installed(self.binary)
        if self._output is None:
            # What coturn prints outside its log file (start-up complaints); its log is log_path.
            self._output = await asyncio.to_thread(open, self.folder / "turnserver.out", "ab")
        # The relay dies with Ember even when Ember is killed: its credentials are Ember's to give.
        prefix = ["setpriv", "--pdeathsig", "KILL", "--"] if shutil.which("setpriv") else []
        self._proc = await asyncio.create_subprocess_exec(
            *prefix,
            binary,
            "-c",
            str(self.config_path),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=self._output,
            stderr=asyncio.subprocess.STDOUT,
            cwd=self.folder,
            start_new_session=True,
        )
        log.info("started TURN relay turnserver (pid %d) with config %s", self._proc.pid, self.config_path)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.ready_timeout
        while not await stun_binding(("127.0.0.1", self.config.port), 0.2):
            if self._proc.returncode is not None:
                raise TurnStartError(
                    f"turnserver exited with status {self._proc.returncode} during start-up; see {self.log_path}"
                )
            if loop.time() >= deadline:
                raise TurnStartError(f"turnserver did not answer within {self.ready_timeout} s; see {self.log_path}")
        self.starts += 1
        self._ready = True
        log.info("TURN relay (pid %d) ready on port %d", self._proc.pid, self.config.port)

    async def _supervise(self) -> None:
        loop = asyncio.get_running_loop()
        started_at = loop.time()
        while not self._stopping:
            proc = self._proc
            assert proc is not None
            status = await self._watch(proc)
            self._ready = False
            if self._stopping:
                return
            self.unexpected_exits += 1
            if loop.time() - started_at >= self.healthy_after:
                self.backoff.reset()
            delay = self.backoff.next_delay()
            log.warning("TURN relay (pid %d) exited with status %d; restarting in %.1f s", proc.pid, status, delay)
            await asyncio.sleep(delay)
            started_at = loop.time()
            try:
                await self._spawn_until_ready()
            except TurnStartError as exc:
                log.error("TURN relay restart failed: %s", exc)
                await self._terminate()

    async def _watch(self, proc: asyncio.subprocess.Process) -> int:
        """Wait until ``proc`` exits, probing it every ``health_interval``; kill it when it stops answering."""
        missed = 0
        while True:
            try:
                async with asyncio.timeout(self.health_interval):
                    return await proc.wait()
            except TimeoutError:
                pass
            await asyncio.to_thread(rotate_log, self.log_path, self.log_max_bytes)
            if await stun_binding(("127.0.0.1", self.config.port), min(1.0, self.health_interval)):
                missed = 0
                self._ready = True
                continue
            missed += 1
            self._ready = False
            if missed >= self.health_failures:
                log.error("TURN relay (pid %d) stopped answering STUN; killing it to restart it", proc.pid)
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                return await proc.wait()

    async def _terminate(self) -> None:
        self._ready = False
        await terminate(self._proc, self.stop_timeout, "TURN relay")
        if self._stopping and self._output is not None:
            self._output.close()
            self._output = None


class _BindingProtocol(asyncio.DatagramProtocol):
    def __init__(self, transaction_id: bytes) -> None:
        self.transaction_id = transaction_id
        self.answered: asyncio.Future[bool] = asyncio.get_running_loop().create_future()

    def datagram_received(self, data: bytes, addr: tuple[str | object, int]) -> None:
        with contextlib.suppress(ValueError):
            message = stun.parse_message(data)
            if message.transaction_id == self.transaction_id and not self.answered.done():
                self.answered.set_result(message.message_class == stun.Class.RESPONSE)

    def error_received(self, exc: Exception) -> None:  # ICMP unreachable: nothing listens yet
        if not self.answered.done():
            self.answered.set_result(False)


async def stun_binding(address: tuple[str, int], within: float) -> bool:
    """True when ``address`` answers a STUN Binding request (RFC 8489) with success within ``within`` seconds."""
    request = stun.Message(message_method=stun.Method.BINDING, message_class=stun.Class.REQUEST)
    loop = asyncio.get_running_loop()
    transport, protocol = await loop.create_datagram_endpoint(
        lambda: _BindingProtocol(request.transaction_id), remote_addr=address
    )
    try:
        transport.sendto(bytes(request))
        async with asyncio.timeout(within):
            return await protocol.answered
    except TimeoutError:
        return False
    finally:
        transport.close()


def rotate_log(path: Path, max_bytes: int) -> bool:
    """When ``path`` is larger than ``max_bytes``: copy it to ``PATH.1`` (replacing the previous one) and
    truncate it in place, so a writer holding it open in append mode goes on at its start. True if rotated."""
    try:
        if path.stat().st_size <= max_bytes:
            return False
    except FileNotFoundError:
        return False
    older = path.with_name(path.name + ".1")
    partial = path.with_name(path.name + ".1.tmp")
    # Copied, not renamed: coturn never reopens its log, so a renamed file would go on growing under its new name.
    shutil.copyfile(path, partial)
    os.chmod(partial, 0o600)
    os.replace(partial, older)
    with open(path, "r+b") as log_file:
        log_file.truncate(0)
    return True


def check_ports(config: TurnConfig) -> None:
    """:class:`TurnStartError` saying what to do when the relay could not take its listening ports."""
    busy = ports_in_use(config)
    denied = [b for b in busy if b.endswith(" (not permitted)")]
    if denied:
        raise TurnStartError(
            f"the TURN relay may not listen on {', '.join(d.split(' (')[0] for d in denied)}: ports below 1024 "
            "need CAP_NET_BIND_SERVICE (the unit of `ember install-service` gives it; or run as root), or set "
            "EMBER_TURN_TLS_PORT=5349"
        )
    if busy:
        # Another relay would answer the health check (and clients) in this one's place.
        hint = (
            "Debian's own coturn service, if enabled, holds 3478: `systemctl disable --now coturn`, or set "
            "EMBER_TURN_PORT"
        )
        if f"TCP {config.tls_port}" in busy and config.tls:
            hint += (
                f"; a web server or reverse proxy (Caddy, nginx) may hold {config.tls_port}: set "
                "EMBER_TURN_TLS_PORT=5349"
            )
        raise TurnStartError(f"the TURN relay's ports are in use by another program: {', '.join(busy)}. {hint}")


def ports_in_use(config: TurnConfig) -> list[str]:
    """Which of the relay's listening ports (UDP and TCP, and TLS's TCP) another program holds, or this process
    may not take (``PORT (not permitted)``)."""
    wanted = [(socket.SOCK_DGRAM, config.port, "UDP"), (socket.SOCK_STREAM, config.port, "TCP")]
    if config.tls:
        wanted.append((socket.SOCK_STREAM, config.tls_port, "TCP"))
    busy = []
    for kind, port, name in wanted:
        with socket.socket(socket.AF_INET, kind) as probe:
            if kind == socket.SOCK_STREAM:
                probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # TIME_WAIT is not "in use"
            try:
                probe.bind(("0.0.0.0", port))
            except PermissionError:  # below 1024 without CAP_NET_BIND_SERVICE
                busy.append(f"{name} {port} (not permitted)")
            except OSError:
                busy.append(f"{name} {port}")
    return busy


def relay_pids(config_path: Path) -> list[int]:
    """``turnserver`` processes running on ``config_path`` (read from /proc)."""
    return pids_running("turnserver", config_path)


def kill_stale_relay(config_path: Path, wait: float = 5.0) -> list[int]:
    """Kill a relay a previous Ember run left on this config (it would hold the ports)."""
    return kill_stale("turnserver", config_path, "TURN relay", wait)
