"""``ember serve`` as a user runs it: a real process, its log in a file, stopped with SIGTERM (or killed)."""

from __future__ import annotations

import json
import os
import signal
import ssl
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.server import free_port
from tests.support.waiting import until

EMBER = str(Path(sys.executable).parent / "ember")


class EmberServe:
    """``ember serve`` on a data folder that outlives the process.

    ``data_dir`` None runs with no ``--data-dir`` (the default ``./data`` of ``cwd``); ``env`` is added to a
    copy of the environment without any ``EMBER_*`` variable of the test run; ``prefix`` runs the command
    through another (``ip netns exec NAME``); ``log`` is where its output goes. ``serve_args`` are added to
    ``ember serve``'s; with ``ca`` (a PEM file) the server is reached over HTTPS at ``host``, trusting that CA.
    """

    def __init__(
        self,
        data_dir: Path | None,
        *,
        env: dict[str, str] | None = None,
        cwd: Path | None = None,
        prefix: Sequence[str] = (),
        log: Path | None = None,
        data_dir_arg: str | None = None,
        serve_args: Sequence[str] = (),
        host: str = "127.0.0.1",
        ca: Path | None = None,
    ) -> None:
        self.data_dir = data_dir
        self.port = free_port()
        self.ca = ca
        self.url = f"{'https' if ca else 'http'}://{host}:{self.port}"
        self.serve_args = list(serve_args)
        self.proc: subprocess.Popen[bytes] | None = None
        self.extra_env = env or {}
        self.cwd = cwd
        self.prefix = list(prefix)
        self.data_dir_arg = data_dir_arg if data_dir_arg is not None else (str(data_dir) if data_dir else None)
        if log is None:
            assert data_dir is not None, "give a log path when the data folder is the default one"
            log = data_dir / "serve.log"
        self.log = log

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("EMBER_")}
        env.update(self.extra_env)
        return env

    def verify(self) -> ssl.SSLContext | bool:
        """What an HTTP client should verify the server with: the test CA, or the system's."""
        return ssl.create_default_context(cafile=str(self.ca)) if self.ca else True

    def _data_args(self) -> list[str]:
        return ["--data-dir", self.data_dir_arg] if self.data_dir_arg else []

    def cli(self, *args: str) -> dict[str, Any]:
        r = subprocess.run(
            [*self.prefix, EMBER, *args, "--json", *self._data_args()],
            capture_output=True,
            text=True,
            env=self.env(),
            cwd=self.cwd,
        )
        assert r.returncode == 0, r.stderr
        return dict(json.loads(r.stdout))

    def spawn(self) -> None:
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                [*self.prefix, EMBER, "serve", "--port", str(self.port), *self._data_args(), *self.serve_args],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self.env(),
                cwd=self.cwd,
            )

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def check_alive(self) -> None:
        assert self.proc is not None
        if self.proc.poll() is not None:
            pytest.fail(f"ember serve exited ({self.proc.returncode}):\n{self.output()[-3000:]}")

    async def start(self) -> None:
        """Spawn and wait until the API answers (Janus is up by then: the server starts only after it)."""
        self.spawn()

        async def answers() -> bool:
            self.check_alive()
            try:
                async with httpx.AsyncClient(trust_env=False, verify=self.verify()) as c:
                    return (await c.get(f"{self.url}/openapi.json", timeout=2)).status_code == 200
            except httpx.TransportError:
                return False

        await until(answers, within=60, what="ember serve to answer")

    def kill9(self) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=10)

    def stop(self) -> int | None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode if self.proc is not None else None
