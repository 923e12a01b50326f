"""The browser SDK and demo page in headless Chromium: two browsers in one room see each other's video, and
a browser follows Python publishers coming, sharing a screen, stopping it, leaving and coming back.

Each participant is its own Chromium (fake camera and microphone) showing Ember's ``/demo`` page, run inside
the test network namespace; Ember serves the page on loopback (a secure context, so getUserMedia works) and
WebRTC goes over the veth pair to Janus.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from urllib.parse import urlencode

import httpx
import pytest
from tests.media.chromium import Chromium, Page, chromium_skip_reason
from tests.media.conftest import MediaApp
from tests.media.media_checks import with_deadline

from emberrtc.client import ColourVideoTrack, RoomClient

pytestmark = pytest.mark.media

ROOM = "browsers"
USERS = ("anna", "bruno")


def test_sdk_and_demo_are_served(media_app: MediaApp) -> None:
    with httpx.Client(base_url=media_app.server.url, trust_env=False) as http:
        sdk = http.get("/sdk/ember-rtc.js")
        demo = http.get("/demo")
    assert sdk.status_code == 200 and sdk.headers["content-type"].startswith("text/javascript")
    assert "export class EmberRoom" in sdk.text and "/v1/rtc/signalling" in sdk.text
    assert demo.status_code == 200 and demo.headers["content-type"].startswith("text/html")
    assert 'from "/sdk/ember-rtc.js"' in demo.text


async def _frames_decoded(page: Page) -> int:
    return int(await page.evaluate("window.emberDemo.room.framesDecoded()"))


async def test_two_browsers_see_each_other(media_app: MediaApp, tmp_path: Path) -> None:
    reason = chromium_skip_reason()
    if reason is not None:
        pytest.skip(reason)

    def demo_url(user: str) -> str:
        # The fragment never reaches the server; the page prefills its form from it.
        fields = {"app_id": media_app.app_id, "room": ROOM, "user": user, "app_key": media_app.app_key}
        return f"{media_app.server.url}/demo#{urlencode(fields)}"

    async with Chromium(tmp_path / "anna") as first, Chromium(tmp_path / "bruno") as second:
        pages = dict(
            zip(USERS, await asyncio.gather(first.open(demo_url("anna")), second.open(demo_url("bruno"))), strict=True)
        )
        for page in pages.values():
            await page.evaluate("document.getElementById('join').click()")
        for user, page in pages.items():
            status = await page.wait_for(
                "['joined', 'failed'].includes(window.emberDemo.status) && window.emberDemo.status", 20
            )
            assert status == "joined", f"{user}: {await page.evaluate('window.emberDemo.error')}"

        # Each page receives the other's camera, and decodes ever more of its frames.
        for user, page in pages.items():
            other = next(u for u in USERS if u != user)
            await page.wait_for("window.emberDemo.room.framesDecoded().then((n) => n > 0)", 20)
            subs = await page.evaluate(
                "[...window.emberDemo.room.subscriptions.values()].map((s) => [s.userId, s.stream])"
            )
            assert subs == [[other, "camera"]]
        before = {user: await _frames_decoded(page) for user, page in pages.items()}
        for user, page in pages.items():
            # At the fake camera's rate (20-30 fps), 30 more frames take 1-1.5 s.
            await page.wait_for(f"window.emberDemo.room.framesDecoded().then((n) => n >= {before[user] + 30})", 15)
            after = await _frames_decoded(page)
            assert after >= before[user] + 30, (user, before[user], after)
            # The remote tile plays real pictures.
            size = await page.evaluate(
                "[...document.querySelectorAll('video')].filter((v) => !v.muted)"
                ".map((v) => [v.videoWidth, v.videoHeight])"
            )
            assert len(size) == 1 and size[0][0] > 0 and size[0][1] > 0, size

        # Leaving ends both sessions; the server's records show browsers that published a camera.
        for page in pages.values():
            await page.evaluate("document.getElementById('leave').click()")
            await page.wait_for("window.emberDemo.status === 'ended'", 10)
        _, sessions = await with_deadline(media_app.records(ROOM), 10)
        assert {s["user_id"]: s["published_streams"] for s in sessions} == {user: ["camera"] for user in USERS}
        assert all(s["platform"].startswith("browser-") and s["state"] == "OFFLINE" for s in sessions), sessions


# framesDecoded of each subscription's video, by the mids its tracks have in the subscriber RTCPeerConnection.
_FRAMES_BY_SUBSCRIPTION = """(async () => {
  const room = window.emberDemo.room;
  const out = {};
  if (!room.subscriberPc) return out;
  const stats = await room.subscriberPc.getStats();
  for (const sub of room.subscriptions.values()) {
    const mids = sub.tracks.filter((t) => t.type === "video").map((t) => String(t.mid));
    let frames = 0;
    stats.forEach((r) => {
      if (r.type === "inbound-rtp" && r.kind === "video" && mids.includes(String(r.mid))) {
        frames += r.framesDecoded || 0;
      }
    });
    out[`${sub.userId}/${sub.stream}`] = frames;
  }
  return out;
})()"""


async def test_browser_follows_streams_coming_and_going(media_app: MediaApp, tmp_path: Path) -> None:
    """One browser receives Python publishers that come, add a screen share, stop it, leave and come back,
    and unsubscribes and subscribes again itself: every stream on the one subscriber RTCPeerConnection, each
    playing; then removal of a publisher and dismissal of the room."""
    reason = chromium_skip_reason()
    if reason is not None:
        pytest.skip(reason)
    room_id = "browser-multi"
    fields = {"app_id": media_app.app_id, "room": room_id, "user": "anna", "app_key": media_app.app_key}
    others: dict[str, RoomClient] = {}

    async def publisher(user: str, rgb: tuple[int, int, int]) -> RoomClient:
        client = await RoomClient.join(
            media_app.server.url, app_id=media_app.app_id, room_id=room_id, user_id=user, app_key=media_app.app_key
        )
        others[user] = client
        await client.publish("camera", video=ColourVideoTrack(rgb, width=160, height=120))
        return client

    async def playing(page: Page, expected: set[str]) -> None:
        """The browser's subscriptions are exactly ``expected``, each decoding more and more frames."""
        await page.wait_for(
            f"[...window.emberDemo.room.subscriptions.values()].map((s) => `${{s.userId}}/${{s.stream}}`)"
            f".sort().join() === {','.join(sorted(expected))!r}",
            20,
        )
        first = await page.evaluate(_FRAMES_BY_SUBSCRIPTION)
        assert set(first) == expected
        await page.wait_for(
            f"{_FRAMES_BY_SUBSCRIPTION}.then((f) => Object.keys(f).length === {len(expected)} && "
            f"Object.entries(f).every(([k, n]) => n >= ({first!r}[k] || 0) + 10))",
            20,
        )

    async with Chromium(tmp_path / "anna") as browser:
        page = await browser.open(f"{media_app.server.url}/demo#{urlencode(fields)}")
        try:
            await page.evaluate("document.getElementById('join').click()")
            status = await page.wait_for(
                "['joined', 'failed'].includes(window.emberDemo.status) && window.emberDemo.status", 20
            )
            assert status == "joined", await page.evaluate("window.emberDemo.error")
            carl = await publisher("carl", (220, 30, 30))
            await playing(page, {"carl/camera"})
            pc_id = "window.emberDemo.room.subscriberPc"
            await page.evaluate(f"window.firstPc = {pc_id}")
            await publisher("dora", (30, 60, 220))
            await carl.publish("screen", video=ColourVideoTrack((30, 200, 60), width=320, height=180))
            await playing(page, {"carl/camera", "carl/screen", "dora/camera"})
            await carl.unpublish("screen")
            await playing(page, {"carl/camera", "dora/camera"})
            await others.pop("dora").leave()
            await playing(page, {"carl/camera"})
            await publisher("dora", (30, 60, 220))
            await playing(page, {"carl/camera", "dora/camera"})
            # The page unsubscribes from Dora and subscribes again: paused, then resumed.
            await page.evaluate(
                "(async () => { const r = window.emberDemo.room;"
                " await r.unsubscribe([...r.subscriptions.values()].find((s) => s.userId === 'dora')); })()"
            )
            await playing(page, {"carl/camera"})
            await page.evaluate("window.emberDemo.room.subscribe('dora', 'camera').then((s) => s.id)")
            await playing(page, {"carl/camera", "dora/camera"})
            # All of it on the first subscriber RTCPeerConnection.
            assert await page.evaluate(f"window.firstPc === {pc_id}")

            # The application removes Carl: his subscription ends in the browser, Dora's plays on.
            removed = await media_app.post(
                f"/v2/apps/{media_app.app_id}/rooms/{room_id}/batch-remove-users", {"user_ids": ["carl"]}
            )
            assert removed.status_code == 202, removed.text
            await playing(page, {"dora/camera"})
            # Dismissing the room ends the browser's session and drops its subscriber RTCPeerConnection.
            dismissed = await media_app.post(f"/v2/apps/{media_app.app_id}/rooms/{room_id}/dismiss")
            assert dismissed.status_code == 202, dismissed.text
            await page.wait_for("window.emberDemo.status === 'ended'", 10)
            assert await page.evaluate(
                "window.firstPc.connectionState === 'closed' && window.emberDemo.room === null"
            ), await page.evaluate("[window.firstPc.connectionState, String(window.emberDemo.room)]")
        finally:
            for client in others.values():
                await client.leave()
