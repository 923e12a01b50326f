"""The refused-join limiter counts per app and client address (issue 11, item 9): one address's bad joins
to one app lock out its joins to that app only, not its valid joins to another app."""

from __future__ import annotations

import asyncio
import time
from dataclasses import replace
from pathlib import Path

import pytest
from tests.conftest import make_settings
from tests.media.conftest import MEDIA_IP, new_app
from tests.support.server import ServerThread

from emberrtc.client import JoinRefusedError, RoomClient, sign_join
from emberrtc.config import RateLimit

pytestmark = pytest.mark.media


async def test_refused_joins_to_one_app_do_not_lock_out_another(tmp_path: Path) -> None:
    settings = replace(
        make_settings(tmp_path),
        media_enabled=True,
        media_ip=MEDIA_IP,
        rate_limits_enabled=True,
        rate_limits={"refused_joins": RateLimit(3, 60.0)},
    )
    server = await asyncio.to_thread(lambda: ServerThread(settings).start())
    try:
        target, other = await asyncio.to_thread(new_app, server), await asyncio.to_thread(new_app, server)
        ctime = int(time.time()) + 3600
        bad = sign_join("not-the-key", target.app_id, "r", "mallory", ctime)
        for _ in range(3):
            with pytest.raises(JoinRefusedError) as refused:
                await RoomClient.join(
                    server.url, app_id=target.app_id, room_id="r", user_id="mallory", ctime=ctime, signature=bad
                )
            assert refused.value.code == "RTC.00001001"
        with pytest.raises(JoinRefusedError) as refused:
            await RoomClient.join(
                server.url, app_id=target.app_id, room_id="r", user_id="alice", app_key=target.app_key
            )
        assert refused.value.code == "RTC.00001023"  # this app, from this address: limited
        # The same address, another app: served.
        alice = await RoomClient.join(
            server.url, app_id=other.app_id, room_id="r", user_id="alice", app_key=other.app_key
        )
        assert (await alice.leave())["type"] == "left"
        for app in (target, other):
            app.http.close()
    finally:
        await asyncio.to_thread(server.stop)
