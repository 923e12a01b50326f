"""A real RTMP server on loopback: nginx with Debian's RTMP module (``libnginx-mod-rtmp``).

Each :class:`RtmpServer` runs its own nginx (``daemon off; master_process off``) from a private folder
holding its config, pid file, error log and recordings, listening on 127.0.0.1 only. Its application
``live`` plays what is published (``live on``) and records every stream to ``records/{name}.flv``
(``record all; record_unique off``); when a publisher leaves, nginx runs ``touch records/{name}.flv.done``
(``exec_record_done``), so a test knows the recording is complete before reading it back.

``stop()`` then ``start()`` brings it back on the same port (an RTMP server going down and coming back).
Without nginx or the module, :func:`rtmp_skip_reason` says what to install.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

from tests.support.server import free_port

NGINX = os.environ.get("EMBER_NGINX_BINARY", "/usr/sbin/nginx")
RTMP_MODULE = os.environ.get("EMBER_NGINX_RTMP_MODULE", "/usr/lib/nginx/modules/ngx_rtmp_module.so")
APPLICATION = "live"

_CONFIG = """\
load_module {module};
daemon off;
master_process off;
worker_processes 1;
pid {root}/nginx.pid;
error_log {root}/error.log info;
events {{
    worker_connections 64;
}}
rtmp {{
    server {{
        listen 127.0.0.1:{port};
        chunk_size 4096;
        application {app} {{
            live on;
            record all;
            record_path {root}/records;
            record_unique off;
            exec_record_done {touch} $path.done;
        }}
    }}
}}
"""


def rtmp_skip_reason() -> str | None:
    """Why an RTMP server cannot be run here, or None if it can."""
    if not (Path(NGINX).is_file() and Path(RTMP_MODULE).is_file()):
        return f"nginx with the RTMP module is not installed ({NGINX}, {RTMP_MODULE}): run scripts/setup.sh test"
    return None


class RtmpServer:
    """One nginx-rtmp on 127.0.0.1 (see the module docstring)."""

    def __init__(self, root: Path, port: int | None = None) -> None:
        self.root = root
        self.port = port or free_port()
        self.records = root / "records"
        self._process: subprocess.Popen[bytes] | None = None

    def url(self, name: str) -> str:
        """Where to publish (and play) stream ``name``."""
        return f"rtmp://127.0.0.1:{self.port}/{APPLICATION}/{name}"

    def recording(self, name: str) -> Path:
        return self.records / f"{name}.flv"

    def recorded(self, name: str) -> bool:
        """Has a publisher of ``name`` left, its recording closed?"""
        return (self.records / f"{name}.flv.done").exists()

    def forget(self, name: str) -> None:
        """Remove the marks of earlier recordings of ``name``."""
        for path in (self.recording(name), self.records / f"{name}.flv.done"):
            path.unlink(missing_ok=True)

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self, timeout: float = 10.0) -> RtmpServer:
        self.records.mkdir(parents=True, exist_ok=True)
        config = self.root / "nginx.conf"
        config.write_text(
            _CONFIG.format(
                module=RTMP_MODULE, root=self.root, port=self.port, app=APPLICATION, touch=shutil.which("touch")
            )
        )
        # -e: the log for start-up errors (before the config's error_log applies); -p: the prefix folder.
        self._process = subprocess.Popen(
            [NGINX, "-p", str(self.root), "-c", str(config), "-e", str(self.root / "error.log")],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        deadline = time.monotonic() + timeout
        while not self._accepting():
            if self._process.poll() is not None:
                err = self._process.stderr.read().decode(errors="replace") if self._process.stderr else ""
                self._process = None
                raise RuntimeError(f"nginx exited at start: {err.strip()} {self.log()[-2000:]}")
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"nginx did not listen on 127.0.0.1:{self.port} within {timeout} s")
            time.sleep(0.02)
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Fast shutdown (SIGTERM): connections are closed, recordings end where they are."""
        p, self._process = self._process, None
        if p is None:
            return
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(timeout)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(timeout)
        if p.stderr is not None:
            p.stderr.close()

    def log(self) -> str:
        path = self.root / "error.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def _accepting(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                return True
        except OSError:
            return False

    def __enter__(self) -> RtmpServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
