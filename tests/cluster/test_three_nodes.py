"""Three ``ember serve`` nodes, each in a network namespace of its own as if on its own machine, with
PostgreSQL and Redis in another (``tests/support/cluster.py``): placement by load, the redirect the
clients follow, racing first joins, presence and death (issue 12, items 1-3)."""

from __future__ import annotations

import asyncio
import contextlib
import json
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
from tests.support.cluster import CLIENT_IP, SERVICES_IP, Cluster
from tests.support.http_receiver import HttpReceiver
from tests.support.waiting import until

pytestmark = pytest.mark.cluster

RED, BLUE = (220, 30, 30), (30, 60, 220)


@dataclass
class ClusterApp:
    cluster: Cluster
    app_id: str
    app_key: str

    token: str = ""
    project_id: str = ""

    async def join(self, via: str, room: str, user: str, rejoin: float | None = None) -> RoomClient:
        """A client (rejoining on its own only when asked: most tests watch what a lost node does to it)."""
        return await RoomClient.join(
            via, app_id=self.app_id, room_id=room, user_id=user, app_key=self.app_key, rejoin=rejoin
        )

    async def api(self, method: str, path: str, body: dict[str, object] | None = None) -> httpx.Response:
        """The v2 API through the first live node."""
        node = next(n for n in self.cluster.nodes if n.serve.proc is not None and n.serve.proc.poll() is None)
        async with httpx.AsyncClient(base_url=node.url, trust_env=False, timeout=15) as http:
            return await http.request(method, path, json=body, headers={"X-Auth-Token": self.token})

    async def job_rows(self, *job_ids: str) -> dict[str, asyncpg.Record]:
        conn = await asyncpg.connect(f"postgresql://postgres@{SERVICES_IP}:5432/ember", timeout=5)
        try:
            rows = await conn.fetch(
                "SELECT job_id, state, node_id, stop_reason FROM jobs WHERE job_id = ANY($1)", list(job_ids)
            )
            return {r["job_id"]: r for r in rows}
        finally:
            await conn.close()

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
    # Callbacks go to the test's receiver on the bridge (tests/support/cluster.py: CLIENT_IP).
    extra = {"EMBER_OUTBOUND_ALLOW": CLIENT_IP}
    with Cluster.start(tmp_path_factory.mktemp("cluster"), nodes=3, extra_env=extra) as cluster:
        password = secrets.token_urlsafe(12)
        cluster.ember("tenant", "create", "acme", f"--password={password}")  # may start with "-"
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
            project_id = r.json()["token"]["project"]["id"]
        yield ClusterApp(cluster, app_id, app_key, headers["X-Auth-Token"], project_id)


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
    # Silent for two heartbeats and its port closed: taken for dead then, before its registration expires
    # (10 s after its last heartbeat, which was at most 2 s before the kill).
    assert time.monotonic() - killed < 8
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


async def test_a_node_killed_mid_recording_its_client_rejoins_and_its_files_are_reported_on_return(
    app: ClusterApp, tmp_path: Path
) -> None:
    """kill -9 of the node hosting a room whose user is recorded (issue 12 item 7): the client rejoins a live
    node on its own and exchanges media again; the other node's room and recording go on untouched; the job
    is not left RUNNING on the dead node: it resumes on the room's new node; its callbacks all arrive, and
    the file the dead node had journaled is reported when that node comes back. A browser in the room
    (the browser SDK, when Chromium is here) rejoins too and receives again."""
    from tests.media.chromium import Chromium, chromium_skip_reason

    for node in app.cluster.nodes:  # every node up (an earlier test killed one)
        if node.serve.proc is None or node.serve.proc.poll() is not None:
            node.serve.spawn()
            app.cluster.wait_answering(node)
    await app.idle()
    receiver = await HttpReceiver(host=CLIENT_IP).start()
    clients: list[RoomClient] = []
    browsing = contextlib.AsyncExitStack()
    try:
        body = {"url": receiver.url + "/record-events", "auth_key": "5f3c1a9e7b2d4c6a8e0f1b3d5a7c9e2f"}
        assert (await app.api("PUT", f"/v2/apps/{app.app_id}/record-callback", body)).status_code == 200
        rule = {
            "obs_addr": {"location": "local", "project_id": app.project_id, "bucket": "failover"},
            "record_formats": ["MP4"],
            # A stall of the media for over a second (three nodes, clients and a browser on two cores, one
            # node starting again) would otherwise start a new file: the count of files below is exact.
            "mp4_config": {"record_cycle": 60, "record_max_duration_to_merge_file": 30},
        }
        created = await app.api("POST", f"/v2/apps/{app.app_id}/record-rules", rule)
        assert created.status_code == 201, created.text
        rec = {"record_param": {"record_rule_id": created.json()["rule_id"]}, "max_idle_time": 60}

        entry = app.cluster.nodes[0]
        kai = await app.join(entry.url, "fo-doomed", "kai", rejoin=30)
        clients.append(kai)
        victim = app.cluster.node(kai.server)
        survivors = [n for n in app.cluster.nodes if n is not victim]
        # kai may have joined through the node about to die: it rejoins through a node the answer named then;
        # mo joins through a live node (redirected to the victim), its entry URL for rejoining.
        assert kai.nodes and set(kai.nodes) == {n.url for n in app.cluster.nodes}
        lia = await app.join(survivors[0].url, "fo-calm", "lia")
        clients.append(lia)
        calm = app.cluster.node(lia.server)
        assert calm is not victim, "placement put both rooms on one node"
        watcher = await app.join(survivors[0].url, "fo-doomed", "mo", rejoin=30)
        clients.append(watcher)
        page = None
        if chromium_skip_reason() is None:
            origins = ",".join(n.url for n in app.cluster.nodes)
            browser = await browsing.enter_async_context(
                Chromium(tmp_path / "bea", [f"--unsafely-treat-insecure-origin-as-secure={origins}"])
            )
            fields = {"app_id": app.app_id, "room": "fo-doomed", "user": "bea", "app_key": app.app_key}
            page = await browser.open(f"{survivors[1].url}/demo#{urlencode(fields)}")
            await page.evaluate("document.getElementById('join').click()")
            status = await page.wait_for(
                "['joined', 'failed'].includes(window.emberDemo.status) && window.emberDemo.status", 30
            )
            assert status == "joined", await page.evaluate("window.emberDemo.error")
            assert await page.evaluate("window.emberDemo.room.server") == victim.url
        for client, colour in ((kai, RED), (lia, BLUE)):
            await client.publish(
                "camera", video=ColourVideoTrack(colour, width=160, height=120), audio=ToneAudioTrack(440)
            )
        jobs = {}
        for room, user in (("fo-doomed", "kai"), ("fo-calm", "lia")):
            r = await app.api(
                "POST", f"/v2/apps/{app.app_id}/individual-stream-jobs", {"room_id": room, "user_id": user, **rec}
            )
            assert r.status_code == 201, r.text
            jobs[room] = r.json()["job_id"]
        doomed_job, calm_job = jobs["fo-doomed"], jobs["fo-calm"]

        def events(job_id: str, kind: str) -> list[dict[str, object]]:
            import json

            bodies = [json.loads(r.body) for r in receiver.answered()]
            return [b for b in bodies if b["job_id"] == job_id and b["event_type"] == kind]

        await until(
            lambda: len(events(doomed_job, "RECORD_NEW_FILE_START")) == 1, within=30, what="the doomed file to start"
        )
        await until(
            lambda: len(events(calm_job, "RECORD_NEW_FILE_START")) == 1, within=30, what="the calm file to start"
        )
        rows = await app.job_rows(doomed_job, calm_job)
        assert (rows[doomed_job]["state"], rows[doomed_job]["node_id"]) == ("RUNNING", victim.node_id)
        assert (rows[calm_job]["state"], rows[calm_job]["node_id"]) == ("RUNNING", calm.node_id)

        app.cluster.kill9(victim)
        killed = time.monotonic()
        await with_deadline(kai.wait_event(lambda e: e["type"] == "reconnecting"), 10)

        def dead() -> bool:
            return victim.node_id not in [n["node_id"] for n in app.cluster.status()]

        await until(lambda: asyncio.to_thread(dead), within=20, what="the killed node to be dead")
        seen_dead = time.monotonic()
        await with_deadline(kai.wait_event(lambda e: e["type"] == "reconnected"), 10)
        await with_deadline(watcher.wait_event(lambda e: e["type"] == "reconnected"), 10)
        rejoined = time.monotonic()
        # Rejoined as soon as the node is taken for dead (the redirect to it stops then), within 10 s of the kill.
        timing = f"killed -> seen dead {seen_dead - killed:.1f} s -> rejoined {rejoined - seen_dead:.1f} s"
        print(timing)
        assert rejoined - killed < 10, timing
        assert kai.server != victim.url and kai.server == watcher.server
        # Media again, between the two who rejoined: kai published again on its own.
        try:
            await with_deadline(watcher.wait_stream("kai"), 15)
        except TimeoutError:
            raise AssertionError(f"kai's stream not seen again: kai {kai.history}, mo {watcher.history}") from None
        # (generous: on a loaded machine the first frames through a fresh connection can take a while)
        seen = await with_deadline(video_report((await watcher.subscribe("kai")).video, frames=10), 45)
        assert_colour(seen.colour, RED)
        if page is not None:  # the browser rejoined on its own too, and receives kai's camera again
            await page.wait_for("window.emberDemo.reconnects >= 1 && window.emberDemo.status === 'joined'", 30)
            assert await page.evaluate("window.emberDemo.room.server") == kai.server
            await page.wait_for("window.emberDemo.room.framesDecoded().then((n) => n > 10)", 45)

        # The job left the dead node: released by a live node, resumed where kai publishes now.
        async def resumed() -> bool:
            row = (await app.job_rows(doomed_job))[doomed_job]
            return row["state"] == "RUNNING" and row["node_id"] == app.cluster.node(kai.server).node_id

        await until(resumed, within=30, what="the doomed job to resume on the room's new node")
        # The other node's room and recording went on untouched.
        assert "reconnecting" not in [e["type"] for e in lia.history] and not lia.ended.done()
        row = (await app.job_rows(calm_job))[calm_job]
        assert (row["state"], row["node_id"]) == ("RUNNING", calm.node_id)
        assert events(calm_job, "CLOUD_RECORD_OVER") == []

        # The dead node comes back: the file it had journaled is stored and reported.
        victim.serve.spawn()
        app.cluster.wait_answering(victim)
        await until(
            lambda: len(events(doomed_job, "RECORD_FILE_COMPLETE")) == 1, within=30, what="the journaled file's report"
        )
        [complete] = events(doomed_job, "RECORD_FILE_COMPLETE")
        assert complete["download_url"]
        # Stopped: every job STOPPED, each job's end reported once.
        for job_id in (doomed_job, calm_job):
            r = await app.api("DELETE", f"/v2/apps/{app.app_id}/individual-stream-jobs/{job_id}")
            assert r.status_code == 204, r.text
        for job_id in (doomed_job, calm_job):
            await until(lambda j=job_id: len(events(j, "CLOUD_RECORD_OVER")) == 1, within=30, what="CLOUD_RECORD_OVER")
        files = events(doomed_job, "RECORD_FILE_COMPLETE")
        # The dead node's file and the new node's.
        assert len(files) == 2, json.dumps(kai.history) + "\n" + "\n".join(json.dumps(f) for f in files)
        assert {r["state"] for r in (await app.job_rows(doomed_job, calm_job)).values()} == {"STOPPED"}
        assert len(events(doomed_job, "CLOUD_RECORD_OVER")) == 1
    finally:
        await browsing.aclose()
        for client in clients:
            await client.leave()
        await receiver.stop()
