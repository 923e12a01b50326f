"""The live rooms page in headless Chromium with real rooms: a bot joins a room through Janus and appears on
the page within 2 s (server-sent events, no reload), with its published camera and its network report;
it is recorded (a single-stream job through Janus and a recording worker, stopped with the Jobs page's
button) and the file plays on the Recordings page; the Remove button takes it out of the room, and it
disappears from the page; a second room goes with its Dismiss button.

Marked ``media``: Janus and the test network namespace (``scripts/netns.sh``), as the other media tests.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import httpx
import pytest

from emberrtc.client import ColourVideoTrack, RoomClient, ToneAudioTrack
from tests.conftest import make_settings, make_tenant, token_for
from tests.console.browser import loaded, shot, sign_in, text
from tests.media.chromium import Chromium, chromium_skip_reason
from tests.media.conftest import MEDIA_IP, media_skip_reason
from tests.support.server import ServerThread, TenantInfo, free_port

pytestmark = pytest.mark.media

ROW = "document.querySelector('tr[data-user=\"alice\"]')"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerThread]:
    reason = media_skip_reason() or chromium_skip_reason()
    if reason is not None:
        pytest.skip(reason)
    port = free_port()
    settings = replace(
        make_settings(tmp_path_factory.mktemp("console-rooms")),
        media_enabled=True,
        media_ip=MEDIA_IP,
        port=port,
        public_url=f"http://127.0.0.1:{port}",  # download links the page can play
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


@pytest.fixture
def live_app(server: ServerThread) -> tuple[TenantInfo, str, str]:
    """A tenant, its app and the app's key."""
    tenant = make_tenant(server)
    with httpx.Client(base_url=server.url, headers={"X-Auth-Token": token_for(server, tenant)}) as api:
        app_id = api.post("/v2/apps", json={"app_name": "live-rooms"}).json()["app_id"]
        app_key = api.get(f"/v2/apps/{app_id}").json()["authentication"]["app_key"]
    return tenant, app_id, app_key


async def test_a_bot_appears_live_and_is_removed_from_the_page(
    server: ServerThread, live_app: tuple[TenantInfo, str, str], shots: Path, tmp_path: Path
) -> None:
    tenant, app_id, app_key = live_app
    async with Chromium(tmp_path / "browser") as browser:
        page = await browser.open("about:blank")
        await sign_in(page, server.url, tenant.name, tenant.password)
        await loaded(page, f"location.href = '/console/apps/{app_id}/rooms'")
        await page.wait_for("window.emberRooms && window.emberRooms.updates >= 1", 5)
        assert "No room is running" in await text(page)

        bot = await RoomClient.join(
            server.url, app_id=app_id, room_id="room1", user_id="alice", app_key=app_key, stats_interval=1.0
        )
        try:
            joined = time.monotonic()
            # On the page within 2 s of the join, without a reload.
            await page.wait_for(ROW, 2)
            assert time.monotonic() - joined < 2.5
            await bot.publish(
                "camera", video=ColourVideoTrack((220, 30, 30), width=160, height=120), audio=ToneAudioTrack(440)
            )
            await page.wait_for(f"{ROW} && {ROW}.textContent.includes('camera')", 5)
            # The bot's own report (every second here) shows as its network.
            await page.wait_for(f"{ROW} && {ROW}.textContent.includes('RTT')", 15)
            row = await page.evaluate(f"{ROW}.textContent")
            assert "loss" in row and "ago" in row
            await shot(page, shots, "11-rooms-live")
            await shot(page, shots, "11-rooms-live-phone", width=390)

            # Record her: a job through the API, stopped from the Jobs page, played on the Recordings page.
            job_id = await asyncio.to_thread(_start_recording, server, tenant, app_id)
            await asyncio.to_thread(_wait_state, server, tenant, app_id, job_id, "RUNNING", 20)
            recorded_from = time.monotonic()
            await loaded(page, f"location.href = '/console/apps/{app_id}/jobs'")
            # Four seconds of her in the file (a duration of content, not a wait for something to happen).
            await asyncio.sleep(max(0.0, 4 - (time.monotonic() - recorded_from)))
            await loaded(page, f"document.querySelector('form[action$=\"/jobs/{job_id}/stop\"] button').click()")
            await asyncio.to_thread(_wait_state, server, tenant, app_id, job_id, "STOPPED", 10)
            deadline = time.monotonic() + 30
            while True:
                await loaded(page, f"location.href = '/console/apps/{app_id}/recordings'")
                if await page.evaluate("document.querySelectorAll('video[data-src]').length") >= 1:
                    break
                assert time.monotonic() < deadline, "the recording never showed up as stored"
                await asyncio.sleep(0.5)
            assert job_id in await text(page)
            await page.evaluate("document.querySelector('video').play()")
            await page.wait_for("document.querySelector('video').currentTime > 2", 15)
            await shot(page, shots, "13-bot-recording-playing")
            await loaded(page, f"location.href = '/console/apps/{app_id}/rooms'")
            await page.wait_for(ROW, 5)

            removed = time.monotonic()
            await loaded(page, f"{ROW}.querySelector('button').click()")
            final = await asyncio.wait_for(asyncio.shield(bot.ended), 3)
            assert time.monotonic() - removed < 3
            assert final.get("reason") == "removed", final
            await page.wait_for(f"!{ROW}", 5)
            await shot(page, shots, "12-rooms-after-remove")
        finally:
            await bot.leave()

        # Dismiss: another bot, the room's Dismiss button, everyone out and the room gone from the page.
        bob = await RoomClient.join(server.url, app_id=app_id, room_id="room2", user_id="bob", app_key=app_key)
        try:
            await page.wait_for("document.querySelector('section[data-room=\"room2\"]')", 2)
            await loaded(page, "document.querySelector('section[data-room=\"room2\"] form button').click()")
            final = await asyncio.wait_for(asyncio.shield(bob.ended), 3)
            assert final.get("type") == "dismissed", final
            await page.wait_for("!document.querySelector('section[data-room=\"room2\"]')", 5)
        finally:
            await bob.leave()


def _start_recording(server: ServerThread, tenant: TenantInfo, app_id: str) -> str:
    with httpx.Client(base_url=server.url, headers={"X-Auth-Token": token_for(server, tenant)}) as api:
        rule = api.post(
            f"/v2/apps/{app_id}/record-rules",
            json={
                "obs_addr": {"location": "cn-north-4", "project_id": tenant.project_id, "bucket": "recordings"},
                "record_formats": ["MP4"],
                "mp4_config": {"record_cycle": 60},
            },
        ).json()
        job = api.post(
            f"/v2/apps/{app_id}/individual-stream-jobs",
            json={"room_id": "room1", "user_id": "alice", "record_param": {"record_rule_id": rule["rule_id"]}},
        )
        assert job.status_code == 201, job.text
        return str(job.json()["job_id"])


def _wait_state(server: ServerThread, tenant: TenantInfo, app_id: str, job_id: str, state: str, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    with httpx.Client(base_url=server.url, headers={"X-Auth-Token": token_for(server, tenant)}) as api:
        while True:
            job = api.get(f"/v2/apps/{app_id}/individual-stream-jobs/{job_id}").json()
            if job["state"] == state:
                return
            assert time.monotonic() < deadline, f"job still {job['state']}: {job.get('description')}"
            time.sleep(0.2)
