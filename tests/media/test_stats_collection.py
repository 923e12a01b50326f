"""Statistics collected from real sessions: Python clients report over signalling while one of them loses
packets on its downlink; the loss shows in the stored samples (``aloss``/``vloss``), in abnormal events with
the loss factor and in the per-minute roll-up, next to a refused join and the join times."""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

import pytest
from aiortc.rtcrtpreceiver import RTCRtpReceiver
from sqlalchemy import select
from sqlalchemy.orm import Session
from tests.media.conftest import MediaApp

from emberrtc.client import ColourVideoTrack, JoinRefusedError, RoomClient, RoomError, ToneAudioTrack
from emberrtc.store.models import AbnormalEvent, QosSample, SessionStats, StatsMinute

pytestmark = pytest.mark.media

#: Every packet whose RTP sequence number is a multiple of this is dropped on the lossy receiver (20 %),
#: retransmissions included, so the loss stays.
DROP_EVERY = 5


def lossy_receivers(monkeypatch: pytest.MonkeyPatch) -> set[RTCRtpReceiver]:
    """Receivers added to the returned set lose every ``DROP_EVERY``-th packet before aiortc sees it (the
    kernel here has no netem, so the loss is injected in the client's transport)."""
    lossy: set[RTCRtpReceiver] = set()
    original = RTCRtpReceiver._handle_rtp_packet

    async def handle(self: RTCRtpReceiver, packet: Any, arrival_time_ms: int) -> None:
        if self in lossy:
            codecs = getattr(self, "_RTCRtpReceiver__codecs", {})
            codec = codecs.get(packet.payload_type)
            if codec is not None and codec.mimeType.lower().endswith("/rtx"):
                return  # no retransmission repairs the loss
            if packet.sequence_number % DROP_EVERY == 0:
                return
        await original(self, packet, arrival_time_ms)

    monkeypatch.setattr(RTCRtpReceiver, "_handle_rtp_packet", handle)
    return lossy


async def _started(poller: Any) -> None:
    poller.start()


async def consume(track: Any) -> None:
    with contextlib.suppress(Exception):
        while True:
            await track.recv()


async def wait_for(check: Any, what: str, within: float = 30.0) -> Any:
    deadline = time.monotonic() + within
    while True:
        result = await check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.25)


async def test_loss_on_a_downlink_shows_in_samples_events_and_rollups(
    media_app: MediaApp, monkeypatch: pytest.MonkeyPatch
) -> None:
    lossy = lossy_receivers(monkeypatch)
    app = media_app
    svc = app.services
    room = f"stats-{time.monotonic_ns()}"

    async def on_server(coro: Any) -> Any:
        return await asyncio.to_thread(app.server.call, coro)

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
    try:
        await alice.publish("camera", video=ColourVideoTrack((200, 40, 40)), audio=ToneAudioTrack(440))
        async with asyncio.timeout(15):
            await bob.wait_stream("alice")
        sub = await bob.subscribe("alice")
        lossy.update(sub.pc.getReceivers())
        tasks = [asyncio.create_task(consume(t)) for t in (sub.video, sub.audio) if t is not None]

        def samples(s: Session) -> list[QosSample]:
            return list(s.scalars(select(QosSample).where(QosSample.app_id == app.app_id, QosSample.room_id == room)))

        assert svc.stats_janus is not None

        # The test polls Janus itself, every 3.5 s: the server's own 5 s poller is paused meanwhile, as a poll
        # of its own a moment after one of the test's would make a window too short to measure loss in.
        await on_server(svc.stats_janus.stop())
        last_poll = [time.monotonic()]
        await on_server(svc.stats_janus.poll())  # the first poll takes the counters

        async def lossy_downlink() -> list[QosSample]:
            # The SFU's view, besides the clients' reports, every 3.5 s: Janus learns the downlink loss from
            # the client's RTCP receiver reports, which aiortc sends every 0.5-1.5 s: a window's lost count
            # spans its 3.5 s give or take 1.5 s, so each window reads 20 % loss as 11-29 %.
            if time.monotonic() - last_poll[0] >= 3.5:
                last_poll[0] = time.monotonic()
                await on_server(svc.stats_janus.poll())
            await on_server(svc.stats_collector.writer.flush())
            rows = await asyncio.to_thread(app.run, samples)
            down = [
                r
                for r in rows
                if r.user_id == "bob" and r.direction == "downlink" and r.aloss is not None and r.vloss is not None
            ]
            by_client = [r for r in down if r.source == "client"]
            by_janus = [r for r in down if r.source == "janus"]
            return down if len(by_client) >= 3 and len(by_janus) >= 2 else []

        down = await wait_for(lossy_downlink, "three downlink samples with loss from bob")
        # A report out of range is refused with the catalogue's code, and the connection stays.
        with pytest.raises(RoomError) as refused:
            await bob._request({"type": "stats", "interval": 0, "downlink": [{"peer_id": ""}]})
        assert refused.value.code == "RTC.00001003"
        await bob.ping()
    finally:
        for task in tasks:
            task.cancel()
        if svc.stats_janus is not None:
            await on_server(_started(svc.stats_janus))
        await bob.leave()
        await alice.leave()

    # Bob's samples carry the injected 20 % loss (each one a few seconds of packets: allow the spread), as
    # his client measured it and as Janus heard it back in his RTCP receiver reports.
    for source in ("client", "janus"):
        legs = [r for r in down if r.source == source]
        assert all(r.peer_id == "alice" and r.sdk_type == "native" for r in legs)
        assert max(r.aloss for r in legs) >= 0.1 and max(r.vloss for r in legs) >= 0.1, (source, legs)
        assert all(r.aloss <= 0.35 and r.vloss <= 0.35 for r in legs), (source, [(r.aloss, r.vloss) for r in legs])
    rows = await asyncio.to_thread(app.run, samples)
    alice_up = [r for r in rows if r.user_id == "alice" and r.direction == "uplink" and r.peer_id == "0"]
    assert alice_up and max(r.vbit or 0 for r in alice_up) > 0 and max(r.abit or 0 for r in alice_up) > 0
    assert all((r.vloss or 0) < 0.05 for r in alice_up)  # alice's own uplink is clean
    janus_up = [r for r in alice_up if r.source == "janus"]
    assert janus_up and max(r.vbit or 0 for r in janus_up) > 0 and all(r.link_quality is not None for r in janus_up)

    def facts(s: Session) -> tuple[dict[str, Any], list[tuple[int, int, str]]]:
        sessions = {
            r.user_id: (r.ok, r.join_ms, r.fail_code, r.region)
            for r in s.scalars(
                select(SessionStats).where(SessionStats.app_id == app.app_id, SessionStats.room_id == room)
            )
        }
        events = [
            (e.abnormal_type, e.abnormal_factor, e.location)
            for e in s.scalars(
                select(AbnormalEvent).where(AbnormalEvent.app_id == app.app_id, AbnormalEvent.room_id == room)
            )
        ]
        return sessions, events

    await on_server(svc.stats_collector.writer.flush())
    sessions, events = await asyncio.to_thread(app.run, facts)
    assert sessions["alice"][0] is True and 0 < sessions["alice"][1] < 5000 and sessions["alice"][3] == "OT"
    assert sessions["carol"][:1] == (False,) and sessions["carol"][2] == "RTC.00001001"
    # The refused join is a type-1 event with "authentication failed"; freezes bob saw are put down to his
    # downlink loss (audio 13, video 14), alice's uplink being clean.
    assert (1, 5, "local") in events
    freezes = [e for e in events if e[0] in (2, 3)]
    assert all(factor in (13, 14) and location == "local" for _, factor, location in freezes), freezes

    assert await on_server(svc.stats_rollup.run_once())

    def minutes(s: Session) -> list[StatsMinute]:
        return list(s.scalars(select(StatsMinute).where(StatsMinute.app_id == app.app_id, StatsMinute.room_id == room)))

    rolled = await asyncio.to_thread(app.run, minutes)
    total = {
        c: sum(getattr(m, c) for m in rolled)
        for c in ("join_attempts", "join_ok", "video_e2e_samples", "video_e2e_excellent", "online_users")
    }
    assert total["join_attempts"] == 3 and total["join_ok"] == 2  # the refused join lowers JoinSuccessRate
    assert total["video_e2e_samples"] >= 3 and total["video_e2e_excellent"] < total["video_e2e_samples"]
    assert total["online_users"] >= 2
