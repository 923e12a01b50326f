"""A stand-in for the ``janus`` binary, for supervisor tests that need no real Janus.

Usage: ``fake_janus.py MODE -F DIR -C FILE ...``. It reads the HTTP port from DIR's transport config
and answers ``GET /janus/info`` like Janus. MODE: ``serve`` (exit on SIGTERM), ``ignore-term``
(survive SIGTERM, so only SIGKILL ends it) or ``fail`` (print an error and exit 3 at once).
"""

from __future__ import annotations

import json
import re
import signal
import sys
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path


class _Info(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        body = json.dumps({"janus": "server_info", "plugins": {"janus.plugin.videoroom": {}}}).encode()
        self.send_response(200 if self.path == "/janus/info" else 404)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - signature is fixed
        pass


def main() -> None:
    mode, args = sys.argv[1], sys.argv[2:]
    folder = Path(args[args.index("-F") + 1])
    print(f"fake janus {mode} with {folder}", flush=True)
    if mode == "fail":
        print("fatal: cannot load configuration", flush=True)
        sys.exit(3)
    if mode == "ignore-term":
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    else:
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    http_config = (folder / "janus.transport.http.jcfg").read_text()
    port = int(re.search(r"^\s*port = (\d+)", http_config, re.MULTILINE).group(1))  # type: ignore[union-attr]
    HTTPServer(("127.0.0.1", port), _Info).serve_forever()


if __name__ == "__main__":
    main()
