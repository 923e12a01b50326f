"""/docs and /redoc in headless Chromium with every address but Ember's refused: the pages still render every
operation of the API, and the browser asks nothing of any other host."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from tests.conftest import make_settings
from tests.media.chromium import Chromium, Page, chromium_skip_reason
from tests.support.server import ServerThread

pytestmark = pytest.mark.media

# Every host name resolves to nothing, except the loopback address Ember listens on.
OFFLINE = ["--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1"]

# How many operations each page shows, counted in its DOM.
SWAGGER_OPERATIONS = "document.querySelectorAll('.opblock').length"  # one block per operation
REDOC_OPERATIONS = (  # one menu entry per operation: data-item-id="tag/TAG/operation/ID"
    "new Set([...document.querySelectorAll('[data-item-id*=\"/operation/\"]')].map((e) => e.dataset.itemId)).size"
)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerThread]:
    srv = ServerThread(make_settings(tmp_path / "data")).start()
    try:
        yield srv
    finally:
        srv.stop()


async def _screenshot(page: Page, path: Path) -> None:
    shot = await page.send("Page.captureScreenshot", {"format": "png"})
    await asyncio.to_thread(path.write_bytes, base64.b64decode(shot["data"]))


@pytest.mark.parametrize(("path", "rendered"), [("/docs", SWAGGER_OPERATIONS), ("/redoc", REDOC_OPERATIONS)])
async def test_docs_render_offline(server: ServerThread, tmp_path: Path, path: str, rendered: str) -> None:
    reason = chromium_skip_reason()
    if reason is not None:
        pytest.skip(reason)
    description = (await asyncio.to_thread(httpx.get, server.url + "/openapi.json")).json()
    operations = sum(len(methods) for methods in description["paths"].values())
    assert operations >= 20
    async with Chromium(tmp_path / "chromium", extra_flags=OFFLINE) as browser:
        page = await browser.open("about:blank")
        await page.send("Network.enable")
        await page.send("Page.navigate", {"url": server.url + path})
        # Every operation of the description is on the page, rendered by the script Ember served.
        count = await page.wait_for(f"({rendered}) >= {operations} && ({rendered})", 30)
        await page.wait_for("document.body.innerText.includes('Creating or Updating a Recording Rule')", 10)
        await _screenshot(page, tmp_path / f"{path.strip('/')}.png")
        # Every request the page made, the failed ones included (a refused CDN would be one)...
        sent = {e["params"]["requestId"]: e["params"] for e in browser.events_so_far("Network.requestWillBeSent")}
        failed = {e["params"]["requestId"]: e["params"] for e in browser.events_so_far("Network.loadingFailed")}
    # ...but a request the page's Content-Security-Policy stopped never left the browser.
    blocked = {rid for rid, failure in failed.items() if failure.get("blockedReason") == "csp"}
    requested = [request["request"]["url"] for rid, request in sent.items() if rid not in blocked]
    assert count == operations, (count, operations)
    assert any(url.endswith("/openapi.json") for url in requested), requested
    foreign = [url for url in requested if not url.startswith((server.url + "/", "data:", "blob:"))]
    assert not foreign, foreign
    assert not set(failed) - blocked, failed
