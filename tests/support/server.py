"""A real Ember server on a loopback port, in its own thread and event loop, for tests and benchmarks."""

from __future__ import annotations

import asyncio
import socket
import threading
from dataclasses import dataclass
from typing import Any

import uvicorn

from emberrtc.api.app import create_app
from emberrtc.api.edge import server_config
from emberrtc.bootstrap import Services, build
from emberrtc.config import Settings
from emberrtc.domain.clock import Clock


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ServerThread:
    """``start()`` returns once the server answers; ``stop()`` shuts it down cleanly."""

    def __init__(
        self, settings: Settings, clock: Clock | None = None, *, host: str = "127.0.0.1", **build_kwargs: Any
    ) -> None:
        """``host``: the address to listen on (loopback; another for clients in other network namespaces)."""
        self.settings = settings
        self.host = host
        self.clock = clock
        self.build_kwargs = build_kwargs
        self.port = settings.port if settings.port not in (0, 8080) else free_port()
        self.url = f"http://{host}:{self.port}"
        self.services: Services | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self._server: uvicorn.Server | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="ember-server", daemon=True)

    def _run(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as exc:  # surfaced by start()
            self._error = exc
            self._ready.set()

    async def _main(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.services = await build(self.settings, clock=self.clock, **self.build_kwargs)
        app = create_app(self.services)
        config = server_config(app, self.settings, host=self.host, port=self.port, log_level="warning", lifespan="on")
        self._server = uvicorn.Server(config)
        config.install_signal_handlers = False  # type: ignore[attr-defined]
        serve = asyncio.create_task(self._server.serve())
        while not self._server.started:
            if serve.done():
                await serve
                return
            await asyncio.sleep(0.01)
        self._ready.set()
        await serve

    def start(self) -> ServerThread:
        self._thread.start()
        if not self._ready.wait(30):
            raise TimeoutError("Ember did not start within 30 s")
        if self._error:
            raise self._error
        return self

    def call(self, coro: Any, timeout: float = 30) -> Any:
        """Run a coroutine on the server's loop (to reach its services) and return its result."""
        assert self.loop is not None
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        self._thread.join(30)


@dataclass
class TenantInfo:
    name: str
    password: str
    domain_id: str
    project_id: str
    ak: str
    sk: str
