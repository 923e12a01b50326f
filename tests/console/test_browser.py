"""The console in real headless Chromium (Debian's ``chromium``, driven over DevTools like the other browser
tests): sign in (a wrong password refused first), create an app, show its key, create a record rule with an
invalid value and see the API's error next to the field, fix it, play a recording in the page, watch the
live rooms page connect, see a cross-site form post rejected, and read every page at phone width too.

Screenshots of every page go to ``$EMBER_CONSOLE_SCREENSHOTS`` (or the test's temporary folder) and are
checked to be real renderings (a picture of the expected size, not blank); they are looked at in review.
The browser talks to the loopback server only; no media plane is needed.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import httpx
import pytest

from emberrtc.store.models import AbnormalEvent
from tests.conftest import make_settings, make_tenant, token_for
from tests.console.browser import fill, go, loaded, press, shot, text, type_text
from tests.console.recording import record_file
from tests.media.chromium import Chromium, chromium_skip_reason
from tests.support.server import ServerThread, TenantInfo, free_port

# The API checks run in between browser steps; blocking httpx calls there are fine in a test.
# ruff: noqa: ASYNC212


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerThread]:
    """A server whose download links name the address it listens on, so the page can play them."""
    port = free_port()
    settings = replace(
        make_settings(tmp_path_factory.mktemp("console-browser")), port=port, public_url=f"http://127.0.0.1:{port}"
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


async def test_the_console_in_chromium(server: ServerThread, shots: Path) -> None:
    reason = chromium_skip_reason()
    if reason is not None:
        pytest.skip(reason)
    tenant: TenantInfo = make_tenant(server)
    api = httpx.Client(base_url=server.url, headers={"X-Auth-Token": token_for(server, tenant)})
    base = server.url
    async with Chromium(shots.parent / "browser") as browser:
        page = await browser.open(f"{base}/console")
        await shot(page, shots, "01-sign-in")

        # A wrong password is refused on the page, then the right one signs in.
        await fill(page, {"user": tenant.name, "password": "not-the-password"})
        await loaded(page, "document.querySelector('form[action=\"/console/sign-in\"]').requestSubmit()")
        assert "the user name, password or account name is wrong" in await text(page)
        await shot(page, shots, "02-sign-in-refused")
        # Now with the keyboard only: the user field has the focus, Tab to the password, Enter to sign in.
        assert await page.evaluate("document.activeElement.name") == "user"
        await press(page, "Tab")
        assert await page.evaluate("document.activeElement.name") == "password"
        await type_text(page, tenant.password)
        done = asyncio.create_task(browser.wait_event("Page.loadEventFired", page.session_id))
        await press(page, "Enter")
        async with asyncio.timeout(15):
            await done
        assert await page.evaluate("location.pathname") == "/console/apps"
        assert await page.evaluate("document.cookie") == ""  # HttpOnly: no script sees the session

        # Create an app.
        await fill(page, {"app_name": "browser-app"})
        await loaded(page, "document.querySelector('form[action=\"/console/apps\"]').requestSubmit()")
        app_id = str(await page.evaluate("document.getElementById('app-id').textContent"))
        assert api.get(f"/v2/apps/{app_id}").json()["app_name"] == "browser-app"
        key = api.get(f"/v2/apps/{app_id}").json()["authentication"]["app_key"]
        assert key not in await text(page)
        await loaded(page, "document.querySelector('form[action$=\"/app-key\"] button').click()")
        assert await page.evaluate("document.getElementById('app-key').textContent") == key
        await shot(page, shots, "03-app")
        await shot(page, shots, "03-app-phone", width=390)

        # A record rule with an invalid value: the API's error, next to the field; then fixed.
        await go(page, f"{base}/console/apps/{app_id}/recording")
        await fill(page, {"obs_addr.bucket": "recordings", "mp4_config.record_cycle": "30"})
        await loaded(page, "document.getElementById('rule-form').requestSubmit()")
        field = "document.getElementById('f-mp4_config-record_cycle')"
        assert await page.evaluate(f"{field}.getAttribute('aria-invalid')") == "true"
        assert "f-mp4_config-record_cycle-error" in await page.evaluate(f"{field}.getAttribute('aria-describedby')")
        error = await page.evaluate("document.getElementById('f-mp4_config-record_cycle-error').textContent")
        assert "RTC.00001003" in error and "mp4_config.record_cycle" in error and "60" in error
        assert await page.evaluate(f"{field}.value") == "30"  # what was typed is kept
        await shot(page, shots, "04-rule-error")
        await fill(page, {"mp4_config.record_cycle": "120"})
        await loaded(page, "document.getElementById('rule-form').requestSubmit()")
        (rule,) = api.get(f"/v2/apps/{app_id}/record-rules").json()["rules"]
        assert rule["mp4_config"]["record_cycle"] == 120 and rule["rule_id"] in await text(page)
        await shot(page, shots, "05-recording")
        await shot(page, shots, "05-recording-phone", width=390)

        # A recording, listed and played in the page.
        stored = record_file(server, api, app_id, tenant.project_id, seconds=4.0)
        deadline = time.monotonic() + 20
        while True:
            await go(page, f"{base}/console/apps/{app_id}/recordings")
            if await page.evaluate("document.querySelectorAll('video[data-src]').length") == 1:
                break
            assert time.monotonic() < deadline, "the recording never showed up as stored"
            await asyncio.sleep(0.3)
        assert stored.object_name in await text(page)
        await page.evaluate("document.querySelector('video').play()")
        await page.wait_for("document.querySelector('video').currentTime > 1.5", 15)
        await shot(page, shots, "06-recordings-playing")
        await shot(page, shots, "06-recordings-playing-phone", width=390)

        # An HLS recording (a playlist and its segments), played in the page too.
        hls = record_file(server, api, app_id, tenant.project_id, seconds=4.0, fmt="HLS")
        deadline = time.monotonic() + 20
        while True:
            await go(page, f"{base}/console/apps/{app_id}/recordings")
            if await page.evaluate("document.querySelectorAll('video[data-format=\"HLS\"]').length") == 1:
                break
            assert time.monotonic() < deadline, "the HLS recording never showed up as stored"
            await asyncio.sleep(0.3)
        assert hls.object_name in await text(page)
        video = "document.querySelector('video[data-format=\"HLS\"]')"
        await page.evaluate(f"{video}.play()")
        await page.wait_for(f"{video}.currentTime > 1.5", 15)
        assert await page.evaluate(f"{video}.dataset.engine") in ("hls.js", "native")
        await page.evaluate(f"{video}.scrollIntoView()")
        await shot(page, shots, "06-recordings-hls-playing")

        await go(page, f"{base}/console/apps/{app_id}/jobs")
        assert stored.job_id in await text(page)
        await shot(page, shots, "07-jobs")
        await shot(page, shots, "07-jobs-phone", width=390)

        # Live rooms: the page follows the server's event stream.
        await go(page, f"{base}/console/apps/{app_id}/rooms")
        await page.wait_for("window.emberRooms && window.emberRooms.updates >= 1", 5)
        assert "Live: updated" in await text(page)
        await shot(page, shots, "08-rooms")
        await shot(page, shots, "08-rooms-phone", width=390)

        # Abnormal events of the last hour (as the statistics collector writes them): a chart by cause.
        assert server.services is not None
        now = server.services.clock.now()
        events = [
            AbnormalEvent(time=now - 60 * i, app_id=app_id, room_id="room1", user_id=user, stage=stage,
                          location="local", peer_uid="", abnormal_type=kind, abnormal_factor=factor)
            for i, (user, stage, kind, factor) in enumerate(
                [("bob", "communication", 2, 14), ("carol", "communication", 2, 14), ("dave", "join_room", 1, 1),
                 ("bob", "communication", 3, 13)]
            )
        ]  # fmt: skip
        assert server.services is not None
        server.call(server.services.db.run(lambda s: s.add_all(events)))
        await go(page, f"{base}/console/apps/{app_id}/usage")
        assert await page.evaluate("document.querySelectorAll('svg.chart rect').length") >= 1  # today's recording
        abnormal = "document.querySelector('.abnormal-chart svg')"
        assert await page.evaluate(f"{abnormal}.querySelectorAll('rect').length") == 3  # three causes
        await shot(page, shots, "09-usage")
        await shot(page, shots, "09-usage-phone", width=390)

        await go(page, f"{base}/console/apps/{app_id}/try")
        await loaded(page, "document.querySelector('form[action$=\"/try\"]').requestSubmit()")
        link = str(await page.evaluate("document.getElementById('try-link').getAttribute('href')"))
        assert link.startswith("/demo#app_id=") and "signature=" in link
        await shot(page, shots, "10-try")
        await shot(page, shots, "10-try-phone", width=390)

        # A cross-site form post (another origin's page posting to the console) is rejected.
        before = api.get("/v2/apps").json()["count"]
        other = await browser.open("about:blank")
        form = (
            f"<form method=post action='{base}/console/apps'><input name=app_name value=forged>"
            "<input name=csrf value=guess></form>"
        )
        await loaded(other, f"document.body.innerHTML = {json.dumps(form)}; document.forms[0].submit()")
        refused = await text(other)
        assert "RTC.00001001" in refused or "RTC.00001021" in refused
        assert api.get("/v2/apps").json()["count"] == before

        # Sign out: back to the sign-in page, and the session is gone.
        await go(page, f"{base}/console/apps")
        await loaded(page, "document.querySelector('form[action=\"/console/sign-out\"] button').click()")
        assert await page.evaluate("location.pathname") == "/console"
        await go(page, f"{base}/console/apps")
        assert await page.evaluate("location.pathname") == "/console"
    api.close()


async def test_a_custom_layout_from_the_panes_editor_in_chromium(server: ServerThread, shots: Path) -> None:
    reason = chromium_skip_reason()
    if reason is not None:
        pytest.skip(reason)
    tenant: TenantInfo = make_tenant(server)
    api = httpx.Client(base_url=server.url, headers={"X-Auth-Token": token_for(server, tenant)})
    app_id = api.post("/v2/apps", json={"app_name": "panes"}).json()["app_id"]
    api.post(
        f"/v2/apps/{app_id}/record-rules",
        json={
            "obs_addr": {"location": "cn-north-4", "project_id": tenant.project_id, "bucket": "recordings"},
            "record_formats": ["MP4"],
            "mp4_config": {"record_cycle": 60},
        },
    )
    base = server.url
    async with Chromium(shots.parent / "browser-panes") as browser:
        page = await browser.open(f"{base}/console")
        await fill(page, {"user": tenant.name, "password": tenant.password})
        await loaded(page, "document.querySelector('form[action=\"/console/sign-in\"]').requestSubmit()")
        await go(page, f"{base}/console/apps/{app_id}/jobs")
        # The editor shows only with the Custom layout.
        assert await page.evaluate("document.getElementById('panes').hidden") is True
        await page.evaluate('document.querySelector(\'input[name="layout_template"][value="custom"]\').click()')
        assert await page.evaluate("document.getElementById('panes').hidden") is False
        await fill(page, {"room_id": "stage"})
        values = {"user_id": "alice", "x": "0", "y": "0", "width": "0.5", "height": "1"}
        for name, value in values.items():
            await page.evaluate(f"document.getElementById('pane-0-{name}').value = {json.dumps(value)}")
        # With the keyboard: Enter on "Add a pane" adds a row and puts the focus in its first field.
        await page.evaluate("document.querySelector('button[data-add-pane]').focus()")
        await press(page, "Enter")
        assert await page.evaluate("document.querySelectorAll('#pane-rows [data-pane]').length") == 2
        assert await page.evaluate("document.activeElement.id") == "pane-added1-user_id"
        await type_text(page, "bob")
        bob = {"x": "1.5", "y": "0", "width": "0.5", "height": "1", "zorder": "1"}
        for name, value in bob.items():
            await page.evaluate(f"document.getElementById('pane-added1-{name}').value = {json.dumps(value)}")
        await page.evaluate("document.getElementById('pane-added1-video_type').value = 'SCREENSTREAM'")
        # A third row, removed again with its button (the focus goes back to "Add a pane").
        await page.evaluate("document.querySelector('button[data-add-pane]').click()")
        rows = "document.querySelectorAll('#pane-rows [data-pane]')"
        assert await page.evaluate(f"{rows}.length") == 3
        assert await page.evaluate(f"{rows}[2].querySelector('button').textContent") == "Remove pane 3"
        await page.evaluate(f"{rows}[2].querySelector('button').click()")
        assert await page.evaluate(f"{rows}.length") == 2
        assert await page.evaluate("document.activeElement.hasAttribute('data-add-pane')")
        # Bob's x is out of range: the API's error next to it, the rows kept.
        await loaded(page, "document.getElementById('mix-form').requestSubmit()")
        assert await page.evaluate("document.getElementById('pane-1-x').getAttribute('aria-invalid')") == "true"
        error = await page.evaluate("document.getElementById('pane-1-x-error').textContent")
        assert "RTC.00001003" in error and "mix_param.layout_panes.1.x" in error
        assert await page.evaluate("document.getElementById('pane-1-user_id').value") == "bob"
        assert await page.evaluate("document.getElementById('panes').hidden") is False
        await page.evaluate("document.getElementById('pane-1-x').scrollIntoView()")
        await shot(page, shots, "17-custom-layout-error")
        await shot(page, shots, "17-custom-layout-error-phone", width=390)
        await page.evaluate("document.getElementById('pane-1-x').value = '0.5'")
        await loaded(page, "document.getElementById('mix-form').requestSubmit()")
        assert await page.evaluate("location.pathname") == f"/console/apps/{app_id}/jobs"
        job_id = await page.evaluate(
            "[...document.querySelectorAll('tbody tr')].find((r) => r.textContent.includes('stage'))"
            ".querySelector('code').textContent"
        )
        panes = api.get(f"/v2/apps/{app_id}/mix-stream-jobs/{job_id}").json()["mix_param"]["layout_panes"]
        assert [(p["user_id"], p["video_type"], p["x"], p.get("zorder")) for p in panes] == [
            ("alice", "CAMERASTREAM", 0, None),
            ("bob", "SCREENSTREAM", 0.5, 1),
        ]
    api.close()
