"""The browser SDK's QoS reports: two Chromiums on the demo page report getStats() over signalling, and
the stored samples say what each received (frame rate and size from the other's camera, no loss)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session
from tests.media.chromium import Chromium, chromium_skip_reason
from tests.media.conftest import MediaApp

from emberrtc.store.models import QosSample, SessionStats

pytestmark = pytest.mark.media

USERS = ("ines", "jonas")

#: Build a report now and send it; retried by the test while the server answers "not stored" (the
#: periodic report went out less than a second before).
SEND_REPORT = """(async () => {
  const room = window.emberDemo.room;
  const reply = await room._request(await room.qos.build());
  return reply.type === "stats_ok" && reply.stored;
})()"""


async def test_browsers_report_what_they_receive(media_app: MediaApp, tmp_path: Path) -> None:
    reason = chromium_skip_reason()
    if reason is not None:
        pytest.skip(reason)
    room = f"browser-stats-{time.monotonic_ns()}"
    svc = media_app.services

    def demo_url(user: str) -> str:
        fields = {"app_id": media_app.app_id, "room": room, "user": user, "app_key": media_app.app_key}
        return f"{media_app.server.url}/demo#{urlencode(fields)}"

    async with Chromium(tmp_path / "a") as first, Chromium(tmp_path / "b") as second:
        pages = dict(
            zip(
                USERS,
                await asyncio.gather(first.open(demo_url(USERS[0])), second.open(demo_url(USERS[1]))),
                strict=True,
            )
        )
        for page in pages.values():
            await page.evaluate("document.getElementById('join').click()")
        for page in pages.values():
            await page.wait_for("window.emberDemo.status === 'joined'", 20)
        for page in pages.values():
            await page.wait_for("window.emberDemo.room.framesDecoded().then((n) => n > 30)", 20)
        for user, page in pages.items():
            deadline = time.monotonic() + 10
            while not await page.evaluate(SEND_REPORT):
                assert time.monotonic() < deadline, f"{user}: no report stored"
                await asyncio.sleep(0.5)
        await asyncio.to_thread(media_app.server.call, svc.stats_collector.writer.flush())

        def read(s: Session) -> tuple[list[QosSample], dict[str, Any]]:
            samples = list(
                s.scalars(select(QosSample).where(QosSample.app_id == media_app.app_id, QosSample.room_id == room))
            )
            joins = {r.user_id: r for r in s.scalars(select(SessionStats).where(SessionStats.room_id == room))}
            return samples, joins

        samples, joins = await asyncio.to_thread(media_app.run, read)
        for page in pages.values():
            await page.evaluate("document.getElementById('leave').click()")

    for user in USERS:
        other = next(u for u in USERS if u != user)
        down = [r for r in samples if r.user_id == user and r.direction == "downlink" and r.peer_id == other]
        assert down, f"{user}: no downlink sample"
        assert all(r.sdk_type == "webrtc" and r.source == "client" for r in down)
        best = max(down, key=lambda r: r.vfps or 0)
        assert best.vfps is not None and best.vfps > 5 and (best.vwidth or 0) > 0 and (best.vheight or 0) > 0
        assert best.vloss is not None and best.vloss < 0.05 and (best.vbit or 0) > 0
        up = [r for r in samples if r.user_id == user and r.direction == "uplink"]
        assert up and max(r.vbit or 0 for r in up) > 0
        assert joins[user].sdk_type == "webrtc" and joins[user].ok
        assert joins[user].join_ms is not None and 0 < joins[user].join_ms < 5000
        assert joins[user].first_video_ms is not None and joins[user].first_video_ms > 0
