"""The statistics API answers from a real call: Python clients in a room through Janus, one subscriber's
downlink losing packets (in its transport: this kernel has no netem), a refused join. What the API says is
read over HTTP, as a SparkRTC user reads it: the loss in ``aloss``/``vloss``, the abnormal events with their
factors, the refused join in the users list and in ``JoinSuccessRate``, the room and its duration."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy.orm import Session
from tests.media.conftest import MediaApp
from tests.media.test_stats_collection import consume, lossy_receivers, wait_for

from emberrtc.client import ColourVideoTrack, JoinRefusedError, RoomClient, ToneAudioTrack
from emberrtc.store.models import App, Tenant

pytestmark = pytest.mark.media


def _t(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


async def test_the_api_reports_a_lossy_call(media_app: MediaApp, monkeypatch: pytest.MonkeyPatch) -> None:
    lossy = lossy_receivers(monkeypatch)
    app = media_app
    svc = app.services
    room = f"api-{time.monotonic_ns()}"

    def project(s: Session) -> str:
        a = s.get(App, app.app_id)
        assert a is not None
        t = s.get(Tenant, a.domain_id)
        assert t is not None
        return t.project_id

    p = await asyncio.to_thread(app.run, project)
    started = time.time()

    async def get(path: str) -> Any:
        r = await asyncio.to_thread(app.http.get, path)
        assert r.status_code == 200, r.text
        return r.json()

    async def flush() -> None:
        await asyncio.to_thread(app.server.call, svc.stats_collector.writer.flush())

    def window() -> str:
        return f"&start_time={_t(started - 60)}&end_time={_t(time.time() + 60)}"

    alice = await RoomClient.join(
        app.server.url, app_id=app.app_id, room_id=room, user_id="alice", app_key=app.app_key, stats_interval=1.5
    )
    bob = await RoomClient.join(
        app.server.url, app_id=app.app_id, room_id=room, user_id="bob", app_key=app.app_key, stats_interval=1.5
    )
    with pytest.raises(JoinRefusedError):
        await RoomClient.join(
            app.server.url, app_id=app.app_id, room_id=room, user_id="carol", app_key="wrong", stats_interval=None
        )
    tasks: list[asyncio.Task[None]] = []
    qos = f"/v1/{p}/rtc/client/qos/details?app_id={app.app_id}&room_id={room}&time_type=stime"
    try:
        await alice.publish("camera", video=ColourVideoTrack((40, 200, 40)), audio=ToneAudioTrack(440))
        async with asyncio.timeout(15):
            await bob.wait_stream("alice")
        sub = await bob.subscribe("alice")
        lossy.update(sub.pc.getReceivers())
        tasks = [asyncio.create_task(consume(t)) for t in (sub.video, sub.audio) if t is not None]

        online = await get(
            f"/v1/{p}/rtc/realtime/scale/dimension?app={app.app_id}&metric=OnlineUsers&dimension=region"
            f"&time={_t(time.time() + 1)}"  # whole seconds: the next one, so the joins of this one count
        )
        assert online["dimensions"] == [{"dimension": "OT", "online_users": 2}]  # loopback clients: Others

        async def lossy_series() -> dict[str, list[float]]:
            await flush()
            body = await get(qos + f"&mid=aloss,vloss&user_id=bob&direction=downlink{window()}")
            series = {d["mid"]: [v["value"] for v in d["data"]] for d in body["data"] if d["peerid"] == "alice"}
            return series if min((len(v) for v in series.values()), default=0) >= 3 and len(series) == 2 else {}

        series = await wait_for(lossy_series, "three downlink loss samples from bob through the API")
    finally:
        for task in tasks:
            task.cancel()
        await bob.leave()
        await alice.leave()
    in_room = time.time() - started

    # spec 5.10: the injected 20 % loss shows in bob's downlink from alice; alice's own uplink is clean
    assert max(series["aloss"]) >= 0.1 and max(series["vloss"]) >= 0.1, series
    assert max(series["aloss"] + series["vloss"]) <= 0.35, series
    uplink = await get(qos + f"&mid=vloss,vbit&user_id=alice&peer_id=0{window()}")
    up = {d["mid"]: [v["value"] for v in d["data"]] for d in uplink["data"]}
    assert up["vbit"] and max(up["vbit"]) > 0 and max(up.get("vloss", [0.0])) < 0.05

    await flush()
    # spec 5.11 / 5.12: the refused join (authentication failed) and bob's freezes, put down to his
    # downlink loss (13 audio, 14 video)
    events = (await get(f"/v1/rtc/data/abnormal-events?app={app.app_id}&room_id={room}&limit=100{window()}"))["events"]
    kinds = {(e["uid"], e["abnormal_type"], e["abnormal_factor"]) for e in events}
    assert ("carol", 1, 5) in kinds, kinds
    freezes = [e for e in events if e["abnormal_type"] in (2, 3)]
    assert freezes and all(e["abnormal_factor"] in (13, 14) and e["uid"] == "bob" for e in freezes), events
    dist = await get(f"/v1/rtc/data/abnormal-event/dimension?app={app.app_id}&room_id={room}{window()}")
    assert {"abnormal_type": 1, "abnormal_factor": 5, "user_count": 1}.items() <= next(
        d for d in dist["dimensions"] if d["abnormal_type"] == 1
    ).items()

    # spec 5.1 / 5.2: the room ran from the first join to the last leave; carol is a FAIL user
    rooms = (await get(f"/v1/{p}/rtc/rooms?app={app.app_id}&room_id={room}{window()}"))["room_info_list"]
    assert [(r["state"], r["end_time"] != "-") for r in rooms] == [("CLOSED", True)]
    assert 0 < rooms[0]["duration"] <= in_room + 1
    users = (await get(f"/v1/{p}/rtc/users?app={app.app_id}&room_id={room}{window()}"))["users"]
    assert {u["uid"]: u["state"] for u in users} == {"alice": "OFFLINE", "bob": "OFFLINE", "carol": "FAIL"}

    # spec 5.3 / 5.5: after the per-minute roll-up, two users were online and one join in three failed
    assert await asyncio.to_thread(app.server.call, svc.stats_rollup.run_once())
    scale = await get(f"/v1/{p}/rtc/realtime/scale?app={app.app_id}&room_id={room}&metric=OnlineUsers{window()}")
    assert max(v["value"] for v in scale["scale"]) >= 2
    quality = await get(
        f"/v1/{p}/rtc/realtime/quality?app={app.app_id}&room_id={room}&metric=JoinSuccessRate&sdk_type=native{window()}"
    )
    rates = [v["value"] for v in quality["quality"]]
    assert rates and min(rates) < 1.0 and all(0 <= r <= 1 for r in rates), rates
    network = await get(
        f"/v1/{p}/rtc/realtime/network?app={app.app_id}&room_id={room}&metric=VideoExcellentTransRate"
        f"&sdk_type=native{window()}"
    )
    assert network["network"] and min(v["value"] for v in network["network"]) < 1.0  # the lossy leg is not excellent
