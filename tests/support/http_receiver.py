"""A real HTTP/1.1 server on loopback that records what it receives: the application end of callbacks.

Each request is answered by the next scripted behaviour (default 200): a status code, or ``HANG`` (never
answer, so the sender's timeout fires). ``stop()`` and ``start()`` take it down and bring it back on the
same port, so a sender sees connections refused in between. With an ``ssl`` context it speaks HTTPS and
records the server name (SNI) each client asked for in ``server_names``.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl as _ssl
from collections import deque
from dataclasses import dataclass

HANG = "hang"


@dataclass(frozen=True)
class Received:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    #: What the receiver answered: a status code, or HANG.
    answer: int | str


class HttpReceiver:
    def __init__(self, ssl: _ssl.SSLContext | None = None, host: str = "127.0.0.1") -> None:
        self.ssl = ssl
        #: The address it listens on (loopback by default; a bridge address for a cluster's nodes).
        self.host = host
        self.server_names: list[str | None] = []
        if ssl is not None:
            ssl.sni_callback = lambda _sock, name, _ctx: self.server_names.append(name)  # type: ignore[assignment]
        self.received: list[Received] = []
        self.script: deque[int | str] = deque()
        self.port = 0
        self._server: asyncio.Server | None = None
        self._handlers: set[asyncio.Task[None]] = set()

    @property
    def url(self) -> str:
        return f"{'https' if self.ssl is not None else 'http'}://{self.host}:{self.port}"

    async def start(self) -> HttpReceiver:
        self._server = await asyncio.start_server(self._handle, self.host, self.port, reuse_address=True, ssl=self.ssl)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        for t in list(self._handlers):
            t.cancel()
        for t in list(self._handlers):
            with contextlib.suppress(asyncio.CancelledError):
                await t

    def answered(self, status: int = 200) -> list[Received]:
        """Requests answered with ``status`` (every request is logged, however it was answered)."""
        return [r for r in self.received if r.answer == status]

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            method, path, _ = lines[0].split(" ", 2)
            headers = {}
            for line in lines[1:]:
                if line:
                    k, _, v = line.partition(":")
                    headers[k.strip().lower()] = v.strip()
            body = await reader.readexactly(int(headers.get("content-length", "0")))
            behaviour = self.script.popleft() if self.script else 200
            self.received.append(Received(method, path, headers, body, behaviour))
            if behaviour == HANG:
                await asyncio.Event().wait()  # until stop() cancels it
            status = int(behaviour)
            extra = "Location: /elsewhere\r\n" if 300 <= status < 400 else ""
            writer.write(f"HTTP/1.1 {status} X\r\nContent-Length: 0\r\n{extra}Connection: close\r\n\r\n".encode())
            await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            self._handlers.discard(task)
            writer.close()
