"""Headless Chromium driven over the DevTools protocol (CDP), for the browser SDK's test.

Debian's ``chromium`` runs with fake camera and microphone (``--use-fake-device-for-media-stream``), grants
media permission without asking (``--use-fake-ui-for-media-stream``) and talks to nothing but the pages it
is given: background networking, component updates, sync and the first-run flow are off. Local addresses
are put in ICE candidates as they are (no mDNS names, which Janus cannot resolve), so WebRTC runs over the
test namespace's veth pair.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import re
import shutil
from pathlib import Path
from typing import Any

from websockets.asyncio.client import ClientConnection, connect

CHROMIUM = os.environ.get("EMBER_CHROMIUM", "/usr/bin/chromium")

FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--no-default-browser-check",
    "--use-fake-ui-for-media-stream",
    "--use-fake-device-for-media-stream",
    "--autoplay-policy=no-user-gesture-required",
    "--mute-audio",
    # Host candidates with real addresses (not mDNS names), on every interface: the veth pair.
    "--disable-features=WebRtcHideLocalIpsWithMdns",
    "--force-webrtc-ip-handling-policy=default",
    "--remote-debugging-address=127.0.0.1",
    "--remote-debugging-port=0",
]

_DEVTOOLS = re.compile(r"DevTools listening on (ws://\S+)")


def chromium_skip_reason() -> str | None:
    """Why the browser test cannot run here, or None."""
    if shutil.which(CHROMIUM) is None:
        return f"Chromium not installed ({CHROMIUM!r} not found): run `apt-get install chromium`"
    return None


class CdpError(Exception):
    """A DevTools command failed, or a page script threw."""


class Page:
    """One tab, attached with a flat CDP session over the browser's connection."""

    def __init__(self, browser: Chromium, session_id: str) -> None:
        self.browser = browser
        self.session_id = session_id

    async def send(self, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        return await self.browser.send(method, params, session_id=self.session_id)

    async def evaluate(self, expression: str) -> Any:
        """The value of a JavaScript expression (awaited if it is a promise), returned by value."""
        reply = await self.send(
            "Runtime.evaluate", {"expression": expression, "awaitPromise": True, "returnByValue": True}
        )
        if "exceptionDetails" in reply:
            details = reply["exceptionDetails"]
            raise CdpError(details.get("exception", {}).get("description") or details.get("text"))
        return reply["result"].get("value")

    async def wait_for(self, predicate: str, seconds: float) -> Any:
        """Wait (in the page, bounded by ``seconds``) until the JS expression ``predicate`` is truthy."""
        script = f"""new Promise((resolve, reject) => {{
            const deadline = Date.now() + {int(seconds * 1000)};
            const check = async () => {{
                let value;
                try {{ value = await ({predicate}); }} catch (err) {{ reject(err); return; }}
                if (value) resolve(value);
                else if (Date.now() > deadline) reject(new Error("timed out waiting for: " + {json.dumps(predicate)}));
                else setTimeout(check, 50);
            }};
            check();
        }})"""
        return await self.evaluate(script)


class Chromium:
    """A headless Chromium process and its DevTools connection; use as ``async with``."""

    def __init__(self, user_data_dir: Path, extra_flags: list[str] | None = None) -> None:
        self.user_data_dir = user_data_dir
        self.extra_flags = extra_flags or []
        self.process: asyncio.subprocess.Process | None = None
        self.log: list[str] = []
        self._ws: ClientConnection | None = None
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._events: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._tasks: list[asyncio.Task[None]] = []

    async def __aenter__(self) -> Chromium:
        self.process = await asyncio.create_subprocess_exec(
            CHROMIUM,
            *FLAGS,
            *self.extra_flags,
            f"--user-data-dir={self.user_data_dir}",
            "about:blank",
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )
        try:
            async with asyncio.timeout(20):
                url = await self._devtools_url()
            self._tasks.append(asyncio.create_task(self._drain_stderr()))
            self._ws = await connect(url, proxy=None, max_size=16 * 1024 * 1024)
            self._tasks.append(asyncio.create_task(self._read()))
        except BaseException:
            await self.close()
            raise
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def _devtools_url(self) -> str:
        assert self.process is not None and self.process.stderr is not None
        while True:
            line = await self.process.stderr.readline()
            if not line:
                raise CdpError("Chromium exited before DevTools was ready:\n" + "\n".join(self.log[-30:]))
            text = line.decode(errors="replace").rstrip()
            self.log.append(text)
            match = _DEVTOOLS.search(text)
            if match:
                return match.group(1)

    async def _drain_stderr(self) -> None:
        # Keep reading so Chromium never blocks on a full pipe; kept for failure messages.
        assert self.process is not None and self.process.stderr is not None
        async for line in self.process.stderr:
            self.log.append(line.decode(errors="replace").rstrip())

    async def _read(self) -> None:
        assert self._ws is not None
        with contextlib.suppress(Exception):
            async for raw in self._ws:
                message = json.loads(raw)
                future = self._pending.pop(message.get("id", -1), None)
                if future is not None:
                    if not future.done():
                        future.set_result(message)
                else:
                    self._events.put_nowait(message)
        for future in self._pending.values():
            if not future.done():
                future.set_exception(CdpError("DevTools connection closed"))

    async def send(
        self, method: str, params: dict[str, Any] | None = None, *, session_id: str | None = None
    ) -> dict[str, Any]:
        """Send one CDP command and return its result."""
        assert self._ws is not None
        command_id = next(self._ids)
        message: dict[str, Any] = {"id": command_id, "method": method, "params": params or {}}
        if session_id is not None:
            message["sessionId"] = session_id
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[command_id] = future
        await self._ws.send(json.dumps(message))
        reply = await future
        if "error" in reply:
            raise CdpError(f"{method}: {reply['error']}")
        return dict(reply.get("result", {}))

    async def wait_event(self, method: str, session_id: str | None = None) -> dict[str, Any]:
        """The next CDP event ``method`` (of ``session_id``); bound the wait with ``asyncio.timeout``."""
        while True:
            event = await self._events.get()
            if event.get("method") == method and (session_id is None or event.get("sessionId") == session_id):
                return event

    def events_so_far(self, method: str, session_id: str | None = None) -> list[dict[str, Any]]:
        """The CDP events ``method`` (of ``session_id``) received and not yet consumed; others are kept."""
        found, kept = [], []
        while not self._events.empty():
            event = self._events.get_nowait()
            matches = event.get("method") == method and (session_id is None or event.get("sessionId") == session_id)
            (found if matches else kept).append(event)
        for event in kept:
            self._events.put_nowait(event)
        return found

    async def open(self, url: str) -> Page:
        """A new tab showing ``url``, returned once the page has loaded."""
        target = await self.send("Target.createTarget", {"url": "about:blank"})
        attached = await self.send("Target.attachToTarget", {"targetId": target["targetId"], "flatten": True})
        page = Page(self, attached["sessionId"])
        await page.send("Page.enable")
        await page.send("Runtime.enable")
        loaded = asyncio.create_task(self.wait_event("Page.loadEventFired", page.session_id))
        try:
            await page.send("Page.navigate", {"url": url})
            await loaded
        finally:
            loaded.cancel()
        return page

    async def close(self) -> None:
        if self._ws is not None:
            with contextlib.suppress(Exception):
                await self._ws.close()
        if self.process is not None and self.process.returncode is None:
            self.process.terminate()
            try:
                async with asyncio.timeout(10):
                    await self.process.wait()
            except TimeoutError:
                self.process.kill()
                await self.process.wait()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
