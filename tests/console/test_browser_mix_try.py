"""The Jobs page's live preview of a mixed job, and the Try it link, in headless Chromium with real rooms.

- Two bots publish a red and a blue camera through Janus; a mixed job started with the Jobs page's form
  composes them; the page shows the job's preview and refreshes it, and the picture it shows (fetched as
  the page fetches it, decoded with PyAV) has red on the left and blue on the right, as the nine-grid
  layout places them. Another tenant asking for the same preview gets the API's ``JobNotExist``.
- Try it: the console's form makes a server-signed join link; opened with the keyboard (a new tab), the
  demo page joins the room with Chromium's fake camera, and the participant shows on the live rooms page.

Marked ``media``: Janus and the test network namespace (``scripts/netns.sh``), as the other media tests.
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
import os
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import av
import httpx
import numpy as np
import pytest

from emberrtc.client import ColourVideoTrack, RoomClient
from emberrtc.synthetic import colour_distance
from tests.conftest import make_settings, make_tenant, token_for
from tests.console.browser import fill, go, loaded, press, shot, sign_in, text
from tests.console.conftest import Console
from tests.media.chromium import Chromium, Page, chromium_skip_reason
from tests.media.conftest import MEDIA_IP, media_skip_reason
from tests.support.server import ServerThread, TenantInfo, free_port
from tests.support.spec_checks import create_rule, mp4_rule

pytestmark = pytest.mark.media

RED, BLUE = (220, 30, 30), (30, 60, 220)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerThread]:
    reason = media_skip_reason() or chromium_skip_reason()
    if reason is not None:
        pytest.skip(reason)
    port = free_port()
    settings = replace(
        make_settings(tmp_path_factory.mktemp("console-mix")),
        media_enabled=True,
        media_ip=MEDIA_IP,
        port=port,
        public_url=f"http://127.0.0.1:{port}",
    )
    srv = ServerThread(settings).start()
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture
def shots(tmp_path: Path) -> Path:
    folder = Path(os.environ.get("EMBER_CONSOLE_SCREENSHOTS") or tmp_path / "screenshots")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _app(server: ServerThread, tenant: TenantInfo, name: str) -> tuple[str, str, str]:
    """An app (its ID and key) and a record rule of it."""
    with httpx.Client(base_url=server.url, headers={"X-Auth-Token": token_for(server, tenant)}) as api:
        app_id = api.post("/v2/apps", json={"app_name": name}).json()["app_id"]
        app_key = api.get(f"/v2/apps/{app_id}").json()["authentication"]["app_key"]
        rule = create_rule(api, app_id, mp4_rule(bucket="recordings", project_id=tenant.project_id))["rule_id"]
    return app_id, app_key, rule


def _wait_running(server: ServerThread, tenant: TenantInfo, app_id: str, job_id: str, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    with httpx.Client(base_url=server.url, headers={"X-Auth-Token": token_for(server, tenant)}) as api:
        while True:
            job = api.get(f"/v2/apps/{app_id}/mix-stream-jobs/{job_id}").json()
            if job["state"] == "RUNNING":
                return
            assert time.monotonic() < deadline, f"job still {job['state']}: {job.get('description')}"
            time.sleep(0.2)


async def _new_tab(browser: Chromium, path: str, seconds: float) -> Page:
    """The tab the page opened (target discovery on: ``Target.targetCreated``, then ``targetInfoChanged`` as
    it navigates) once it shows ``path``, attached."""
    deadline = time.monotonic() + seconds
    while True:
        events = browser.events_so_far("Target.targetCreated") + browser.events_so_far("Target.targetInfoChanged")
        found = [
            e["params"]["targetInfo"]
            for e in events
            if e["params"]["targetInfo"]["type"] == "page"
            and e["params"]["targetInfo"]["url"].split("#")[0].endswith(path)
        ]
        if found:
            break
        assert time.monotonic() < deadline, f"no new tab showing {path}"
        await asyncio.sleep(0.05)
    attached = await browser.send("Target.attachToTarget", {"targetId": found[0]["targetId"], "flatten": True})
    return Page(browser, attached["sessionId"])


def _cell(rgb: np.ndarray, x: int, y: int, w: int, h: int) -> tuple[int, int, int]:
    box = rgb[y + h // 4 : y + 3 * h // 4, x + w // 4 : x + 3 * w // 4].reshape(-1, 3)
    return tuple(int(v) for v in np.median(box, axis=0))  # type: ignore[return-value]


async def test_the_jobs_page_shows_a_live_preview_of_the_composite(
    server: ServerThread, shots: Path, tmp_path: Path
) -> None:
    tenant = make_tenant(server)
    app_id, app_key, rule = await asyncio.to_thread(_app, server, tenant, "mix-preview")
    bots = []
    try:
        for user, colour in (("alice", RED), ("bob", BLUE)):
            bot = await RoomClient.join(server.url, app_id=app_id, room_id="mixroom", user_id=user, app_key=app_key)
            bots.append(bot)
            await bot.publish("camera", video=ColourVideoTrack(colour, width=320, height=240))
        async with Chromium(tmp_path / "browser") as browser:
            page = await browser.open("about:blank")
            await sign_in(page, server.url, tenant.name, tenant.password)
            await go(page, f"{server.url}/console/apps/{app_id}/jobs")
            await fill(page, {"room_id": "mixroom"})
            await page.evaluate(
                'document.querySelector(\'input[name="layout_template"][value="nine_grids_view"]\').checked = true;'
                "document.getElementById('f-encode_template').value = '640x480_15_500'"
            )
            await loaded(page, "document.getElementById('mix-form').requestSubmit()")
            assert await page.evaluate("location.pathname") == f"/console/apps/{app_id}/jobs"
            job_id = await page.evaluate(
                "[...document.querySelectorAll('tbody tr')].find((r) => r.textContent.includes('mixroom'))"
                ".querySelector('code').textContent"
            )
            await asyncio.to_thread(_wait_running, server, tenant, app_id, job_id, 20)
            # The page shows the preview once this node's worker has written one, and fetches it again.
            deadline = time.monotonic() + 15
            while not await page.evaluate("!!document.querySelector('img[data-preview]')"):
                assert time.monotonic() < deadline, await text(page)
                await go(page, f"{server.url}/console/apps/{app_id}/jobs")
            await page.wait_for("window.emberPreviews && window.emberPreviews.loaded >= 2", 10)
            src = await page.evaluate("document.querySelector('img[data-preview]').src")
            assert src.split("?")[0].endswith(f"/console/apps/{app_id}/jobs/{job_id}/preview.jpg")
            # The picture, as the page gets it (its session cookie), read back: alice red left, bob blue right.
            fetched = await page.evaluate(
                f"fetch({json.dumps(src)}).then(async (r) => [r.status, r.headers.get('content-type'),"
                " btoa(String.fromCharCode(...new Uint8Array(await r.arrayBuffer())))])"
            )
            status, content_type, data = fetched
            assert status == 200 and content_type == "image/jpeg"
            with av.open(io.BytesIO(base64.b64decode(data))) as jpeg:
                frame = next(jpeg.decode(video=0))
            assert (frame.width, frame.height) == (320, 240)
            rgb = frame.to_ndarray(format="rgb24")
            assert colour_distance(_cell(rgb, 0, 0, 160, 240), RED) < 45, _cell(rgb, 0, 0, 160, 240)
            assert colour_distance(_cell(rgb, 160, 0, 160, 240), BLUE) < 45, _cell(rgb, 160, 0, 160, 240)
            await shot(page, shots, "14-jobs-live-preview")
            await shot(page, shots, "14-jobs-live-preview-phone", width=390)

            # Only the tenant's own job: another tenant (signed in to the console) is told it does not exist.
            other = make_tenant(server)
            stranger = Console(server.url)
            try:
                assert (await asyncio.to_thread(stranger.sign_in, other.name, other.password)).status_code == 303
                r = await asyncio.to_thread(stranger.get, f"/console/apps/{app_id}/jobs/{job_id}/preview.jpg")
                assert r.status_code == 404 and "RTC.00001015" in r.text, r.text  # AppNotExist, as on the API
                assert not r.headers["content-type"].startswith("image/")
            finally:
                stranger.close()

            # Stopped from the page: no preview any more.
            await loaded(page, f"document.querySelector('form[action$=\"/jobs/{job_id}/stop\"] button').click()")
            assert not await page.evaluate("!!document.querySelector('img[data-preview]')")
            gone = await page.evaluate(f"fetch({json.dumps(src)}).then((r) => r.status)")
            assert gone == 404
    finally:
        for bot in bots:
            await bot.leave()


async def test_try_it_joins_the_demo_room_and_shows_on_the_rooms_page(
    server: ServerThread, shots: Path, tmp_path: Path
) -> None:
    tenant = make_tenant(server)
    app_id, _, _ = await asyncio.to_thread(_app, server, tenant, "try-it")
    async with Chromium(tmp_path / "browser") as browser:
        page = await browser.open("about:blank")
        await sign_in(page, server.url, tenant.name, tenant.password)
        await go(page, f"{server.url}/console/apps/{app_id}")
        await loaded(page, "document.querySelector('nav.tabs a[href$=\"/try\"]').click()")
        assert await page.evaluate("location.pathname") == f"/console/apps/{app_id}/try"
        await fill(page, {"room_id": "tryroom", "user_id": "visitor"})
        await loaded(page, "document.querySelector('form[action$=\"/try\"]').requestSubmit()")
        link = await page.evaluate("document.getElementById('try-link').href")
        assert link.startswith(f"{server.url}/demo#")
        await shot(page, shots, "15-try-it-link")
        # The link opens the demo page in a new tab: focused and Enter pressed, as with the keyboard.
        await browser.send("Target.setDiscoverTargets", {"discover": True})
        browser.events_so_far("Target.targetCreated")  # (the tabs so far)
        await page.evaluate("document.getElementById('try-link').focus()")
        await press(page, "Enter")
        demo = await _new_tab(browser, "/demo", 10)
        await demo.wait_for("document.readyState === 'complete' && window.emberDemo", 10)
        assert await demo.evaluate("location.pathname") == "/demo"
        page = demo
        assert await page.evaluate("document.getElementById('app_key').value") == ""  # no key in the page
        await page.evaluate("document.getElementById('join').click()")
        status = await page.wait_for(
            "['joined', 'failed'].includes(window.emberDemo.status) && window.emberDemo.status", 20
        )
        assert status == "joined", await page.evaluate("window.emberDemo.error")
        # The live rooms page (another tab, the same session) shows the visitor and the camera it publishes.
        rooms = await browser.open(f"{server.url}/console/apps/{app_id}/rooms")
        row = "document.querySelector('tr[data-user=\"visitor\"]')"
        await rooms.wait_for(f"{row} && {row}.textContent.includes('camera')", 10)
        assert "tryroom" in await text(rooms)
        await shot(rooms, shots, "16-try-it-on-rooms-page")
        await page.evaluate("window.emberDemo.room.leave()")
        await rooms.wait_for(f"!{row}", 10)
