"""Three ``ember serve`` nodes, each in a network namespace of its own as if on its own machine, with
PostgreSQL and Redis in another (``tests/support/cluster.py``): placement by load, the redirect the
clients follow, racing first joins, presence and death (issue 12, items 1-3)."""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlencode

import asyncpg
import httpx
import pytest
from redis.asyncio import Redis

from emberrtc.client import ColourVideoTrack, RoomClient, ToneAudioTrack
from emberrtc.cluster.keyspace import Keyspace
from tests.media.media_checks import assert_colour, video_report, with_deadline
from tests.support.cluster import SERVICES_IP, Cluster
from tests.support.waiting import until

pytestmark = pytest.mark.cluster

RED, BLUE = (220, 30, 30), (30, 60, 220)


@dataclass
class ClusterApp:
    cluster: Cluster
    app_id: str
    app_key: str

    async def join(self, via: str, room: str, user: str) -> RoomClient:
        return await RoomClient.join(via, app_id=self.app_id, room_id=room, user_id=user, app_key=self.app_key)

    async def idle(self) -> None:
        """Wait until every node's heartbeat says it hosts nobody and no placement is still counted as load
        (what earlier tests left is gone), so that placement starts from even loads."""

        def quiet() -> bool:
            nodes = self.cluster.status()
            return len(nodes) == len(self.cluster.nodes) and all(n["participants"] == 0 for n in nodes)

        await until(lambda: asyncio.to_thread(quiet), within=20, what="the nodes to host nobody")
        redis = Redis.from_url(f"redis://{SERVICES_IP}:6379/0", decode_responses=True)
        try:
            keys = Keyspace("ember")

            async def settled() -> bool:
                return not any([await redis.zcard(keys.placing(n.node_id)) for n in self.cluster.nodes])

            await until(settled, within=20, what="recent placements to age out")
        finally:
            await redis.aclose()

    async def running_runs(self, room_id: str) -> list[asyncpg.Record]:
        conn = await asyncpg.connect(f"postgresql://postgres@{SERVICES_IP}:5432/ember", timeout=5)
        try:
            return list(
                await conn.fetch(
                    "SELECT room_uid, node_id FROM rooms WHERE app_id = $1 AND room_id = $2 AND state = 'RUNNING'",
                    self.app_id,
                    room_id,
                )
            )
        finally:
            await conn.close()


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClusterApp]:
    with Cluster.start(tmp_path_factory.mktemp("cluster"), nodes=3) as cluster:
        password = secrets.token_urlsafe(12)
        cluster.ember("tenant", "create", "acme", "--password", password)
        via = cluster.nodes[1].url  # any node serves the API
        body = {
            "auth": {
                "identity": {
                    "methods": ["password"],
                    "password": {"user": {"name": "acme", "password": password, "domain": {"name": "acme"}}},
                },
                "scope": {"project": {"name": "ember"}},
            }
        }
        with httpx.Client(base_url=via, trust_env=False, timeout=15) as http:
            r = http.post("/v3/auth/tokens", json=body)
            assert r.status_code == 201, r.text
            headers = {"X-Auth-Token": r.headers["X-Subject-Token"]}
            created = http.post("/v2/apps", json={"app_name": "cluster"}, headers=headers)
            assert created.status_code == 201, created.text
            app_id = created.json()["app_id"]
            app_key = http.get(f"/v2/apps/{app_id}", headers=headers).json()["authentication"]["app_key"]
        yield ClusterApp(cluster, app_id, app_key)


async def test_rooms_spread_over_the_nodes_by_load(app: ClusterApp) -> None:
    await app.idle()
    entry = app.cluster.nodes[0].url
    clients: list[RoomClient] = []
    try:
        for user in ("ann", "ben", "cat"):
            clients.append(await app.join(entry, "busy", user))
        busy = {c.server for c in clients}
        assert len(busy) == 1, busy
        [busy_url] = busy
        busy_node = app.cluster.node(busy_url).node_id

        def busy_reported() -> bool:
            return any(n["node_id"] == busy_node and n["participants"] == 3 for n in app.cluster.status())

        await until(lambda: asyncio.to_thread(busy_reported), within=10, what="the busy node's heartbeat")
        # Two rooms of one, joined through the same node: each goes to a node with nobody, not the busy one.
        light = [await app.join(entry, f"light-{i}", f"solo-{i}") for i in range(2)]
        clients += light
        others = {n.node_id for n in app.cluster.nodes} - {busy_node}
        assert {app.cluster.node(c.server).node_id for c in light} == others
        for client in light:
            [run] = await app.running_runs(client.room_id)
            assert run["node_id"] == app.cluster.node(client.server).node_id

        def spread() -> bool:
            counts = {n["node_id"]: n["participants"] for n in app.cluster.status()}
            return counts == {busy_node: 3, **{o: 1 for o in others}}

        await until(lambda: asyncio.to_thread(spread), within=10, what="the heartbeats to show the spread")
    finally:
        for client in clients:
            await client.leave()


async def test_a_client_joining_through_another_node_is_sent_to_the_room_and_exchanges_media(app: ClusterApp) -> None:
    await app.idle()
    alice = await app.join(app.cluster.nodes[0].url, "meet", "alice")
    bob: RoomClient | None = None
    try:
        host = app.cluster.node(alice.server)
        wrong = next(n for n in app.cluster.nodes if n is not host)
        bob = await app.join(wrong.url, "meet", "bob")
        assert [(r["node_id"], r["url"]) for r in bob.redirects] == [(host.node_id, host.url)]
        assert bob.server == host.url
        assert "alice" in bob.participants  # the same room, not one of its own on the wrong node
        await alice.publish("camera", video=ColourVideoTrack(RED, width=160, height=120), audio=ToneAudioTrack(440))
        await bob.publish("camera", video=ColourVideoTrack(BLUE, width=160, height=120), audio=ToneAudioTrack(660))
        await with_deadline(bob.wait_stream("alice"), 15)
        await with_deadline(alice.wait_stream("bob"), 15)
        to_bob, to_alice = await asyncio.gather(bob.subscribe("alice"), alice.subscribe("bob"))
        seen_by_bob, seen_by_alice = await with_deadline(
            asyncio.gather(video_report(to_bob.video, frames=20), video_report(to_alice.video, frames=20)), 30
        )
        assert_colour(seen_by_bob.colour, RED)
        assert_colour(seen_by_alice.colour, BLUE)
        [run] = await app.running_runs("meet")
        assert run["node_id"] == host.node_id
    finally:
        for client in (alice, bob):
            if client is not None:
                await client.leave()


async def test_two_racing_first_joins_end_in_one_room(app: ClusterApp) -> None:
    await app.idle()
    rooms = [f"race-{i}" for i in range(4)]
    second, third = app.cluster.nodes[1].url, app.cluster.nodes[2].url
    pairs = await asyncio.gather(
        *(asyncio.gather(app.join(second, room, "carol"), app.join(third, room, "dave")) for room in rooms)
    )
    try:
        for room, (carol, dave) in zip(rooms, pairs, strict=True):
            assert carol.server == dave.server, room
            await with_deadline(until(lambda c=carol: "dave" in c.participants, what="carol to see dave"), 10)
            await with_deadline(until(lambda d=dave: "carol" in d.participants, what="dave to see carol"), 10)
            [run] = await app.running_runs(room)
            assert run["node_id"] == app.cluster.node(carol.server).node_id
    finally:
        for pair in pairs:
            for client in pair:
                await client.leave()


async def test_the_browser_sdk_follows_the_redirect(app: ClusterApp, tmp_path: Path) -> None:
    from tests.media.chromium import Chromium, chromium_skip_reason

    reason = chromium_skip_reason()
    if reason is not None:
        pytest.skip(reason)
    await app.idle()
    publisher = await app.join(app.cluster.nodes[0].url, "browser-meet", "pia")
    try:
        await publisher.publish("camera", video=ColourVideoTrack(RED, width=160, height=120))
        host = app.cluster.node(publisher.server)
        wrong = next(n for n in app.cluster.nodes if n is not host)
        fields = {"app_id": app.app_id, "room": "browser-meet", "user": "bea", "app_key": app.app_key}
        # The page comes from the wrong node; plain http on a bridge address is made a secure context (the
        # SDK signs with WebCrypto, and asks for the fake camera).
        origins = ",".join(n.url for n in app.cluster.nodes)
        async with Chromium(tmp_path / "bea", [f"--unsafely-treat-insecure-origin-as-secure={origins}"]) as browser:
            page = await browser.open(f"{wrong.url}/demo#{urlencode(fields)}")
            await page.evaluate("document.getElementById('join').click()")
            status = await page.wait_for(
                "['joined', 'failed'].includes(window.emberDemo.status) && window.emberDemo.status", 30
            )
            assert status == "joined", await page.evaluate("window.emberDemo.error")
            assert await page.evaluate("window.emberDemo.room.server") == host.url
            redirects = await page.evaluate("window.emberDemo.room.redirects.map((r) => r.node_id)")
            assert redirects == [host.node_id]
            # In the publisher's room: it receives pia's camera and decodes it.
            await page.wait_for("window.emberDemo.room.framesDecoded().then((n) => n > 10)", 30)
            assert "bea" in publisher.participants
    finally:
        await publisher.leave()


async def test_every_node_says_who_answered_and_status_drops_a_killed_node(app: ClusterApp) -> None:
    async with httpx.AsyncClient(trust_env=False, timeout=10) as http:
        for node in app.cluster.nodes:
            health = (await http.get(f"{node.url}/healthz")).json()
            assert health == {"status": "ok", "node_id": node.node_id, "cluster": True, "media": True}
            metrics = (await http.get(f"{node.url}/metrics")).text
            assert f'ember_node_info{{cluster="true",node_id="{node.node_id}"}} 1.0' in metrics
    nodes = await asyncio.to_thread(app.cluster.status)
    assert [(n["node_id"], n["public_url"]) for n in nodes] == [(n.node_id, n.url) for n in app.cluster.nodes]

    # Rooms on every node, one of them on the node about to be killed.
    await app.idle()
    entry = app.cluster.nodes[0].url
    placed = [await app.join(entry, f"doomed-{i}", f"user-{i}") for i in range(3)]
    victim = app.cluster.node(placed[2].server)
    assert {app.cluster.node(c.server).node_id for c in placed} == {n.node_id for n in app.cluster.nodes}
    doomed = next(c for c in placed if c.server == victim.url)
    app.cluster.kill9(victim)
    killed = time.monotonic()
    assert len(await asyncio.to_thread(app.cluster.status)) == 3  # not dead before 10 s without a heartbeat
    assert (await with_deadline(doomed.ended, 10))["type"] == "connection_lost"

    def two_left() -> bool:
        return [n["node_id"] for n in app.cluster.status()] == sorted(
            n.node_id for n in app.cluster.nodes if n is not victim
        )

    await until(lambda: asyncio.to_thread(two_left), within=20, what="the killed node to be dead")
    assert time.monotonic() - killed >= 7  # its last heartbeat was at most 2 s before the kill
    # The dead node's room is placed on a live node by its next join, through any node.
    survivor = next(n for n in app.cluster.nodes if n is not victim)
    back = await app.join(survivor.url, doomed.room_id, doomed.user_id)
    try:
        assert back.server != victim.url
        [run] = await app.running_runs(doomed.room_id)
        assert run["node_id"] == app.cluster.node(back.server).node_id
    finally:
        for client in (*placed, back):
            await client.leave()
