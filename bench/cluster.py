"""Cluster placement and redirects: join-to-first-frame through a redirect against a direct join, and the
spread of participants over the nodes (issue 12, ``bench/cluster.py``).

Three ``ember serve`` nodes run with the test harness (``tests/support/cluster.py``): each in a network
namespace of its own as if on its own machine, with PostgreSQL and Redis in another, all on one bridge.
``--rooms`` rooms (30) of ``--size`` participants (4) are joined by Python clients (``RoomClient``), each
join through a node picked at random (``--seed``); a node that does not host the room answers ``redirect``
and the client joins again where the room lives. Clients run in ``--workers`` processes (3), each joining
its rooms one participant after another, so as many rooms fill at once as there are workers.

Each participant publishes a synthetic camera, video only, at a low resolution and frame rate (160x120 at
5 fps, ``--fps``; VP8) so that 120 Python clients, three Janus and three nodes fit on two cores at all, and
subscribes, as it joins, to every camera already live in the room (not to later ones: 6 subscriptions a
room of 4), reading its frames until the end. On two cores the clients still saturate the machine as the
cluster fills, so the figures are also printed by how full the cluster was when each join started.
A join is timed from just before its first WebSocket opens to the first decoded
frame of another participant (the first of each room has nobody to see and is not timed). Before the next
participant of a room starts, the previous one's camera is live (announced to the room), so each timed join
finds the room's cameras live; a join that did not (the first camera not yet announced) is counted apart.

After every join the participants per node are counted twice: where the clients ended up, and what the
nodes' heartbeats say (``ember cluster status``); spread = max / min of the nodes' counts (target <= 1.5).

Last line: ``join-to-first-frame redirected p50 X ms p95 Y ms (n=N), direct p50 X ms p95 Y ms (n=N);
participants per node A/B/C, spread S``.

Needs root (network namespaces), Janus, redis-server and PostgreSQL's server binaries, as the cluster tests.
Run it inside a test namespace, or as root anywhere (it then makes one, runs inside it and removes it):

    scripts/netns.sh up b && scripts/netns.sh exec b /work/main/.venv/bin/python bench/cluster.py
    scripts/netns.sh down b
    sudo .venv/bin/python bench/cluster.py [--rooms 30] [--size 4] [--workers 3] [--seed 1]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import multiprocessing as mp
import os
import random
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT))

WIDTH, HEIGHT = 160, 120
NODES = 3


# -- figures (pure; tests/bench/test_cluster_bench.py) --------------------------------------------------


def percentile(values: list[float], q: float) -> float:
    """The ``q`` quantile (0-1) by linear interpolation between the closest ranks (numpy's default)."""
    if not values:
        raise ValueError("no values")
    if not 0 <= q <= 1:
        raise ValueError(f"quantile {q} is not within 0-1")
    ordered = sorted(values)
    pos = q * (len(ordered) - 1)
    low = int(pos)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


def spread(per_node: dict[str, int], nodes: list[str]) -> float:
    """Max / min of the participants on each of ``nodes`` (a node absent from ``per_node`` has none);
    infinite when a node has nobody and another has somebody, 1.0 when all are empty."""
    counts = [per_node.get(n, 0) for n in nodes]
    if not counts:
        raise ValueError("no nodes")
    if max(counts) == 0:
        return 1.0
    if min(counts) == 0:
        return float("inf")
    return max(counts) / min(counts)


@dataclass
class Join:
    room: str
    user: str
    #: Its place in the room's order of joins (0: the first, not timed).
    index: int
    entry: str
    node: str
    redirected: bool
    #: Seconds from the start of the join to the ``joined`` answer (after any redirect).
    joined: float
    #: Seconds from the start of the join to the first decoded frame of another participant (None: first).
    first_frame: float | None
    #: Whether every camera of the room was live (announced) in the join answer.
    live_at_join: bool
    #: Participants already in the cluster (every worker's) when the join started.
    present: int = 0
    #: Seconds from the start of the join to its subscriptions negotiated (None: first), a diagnostic.
    subscribed: float | None = None


def summary(joins: list[Join]) -> dict[str, Any]:
    """p50/p95 (ms) of the timed joins that found the room's cameras live, redirected and direct apart."""
    out: dict[str, Any] = {}
    for name, redirected in (("redirected", True), ("direct", False)):
        times = [
            j.first_frame * 1000
            for j in joins
            if j.redirected == redirected and j.first_frame is not None and j.live_at_join
        ]
        joined = [j.joined * 1000 for j in joins if j.redirected == redirected]
        subscribed = [
            j.subscribed * 1000
            for j in joins
            if j.redirected == redirected and j.subscribed is not None and j.live_at_join
        ]
        out[name] = {
            "n": len(times),
            "p50": percentile(times, 0.5) if times else None,
            "p95": percentile(times, 0.95) if times else None,
            "joined_p50": percentile(joined, 0.5) if joined else None,
            "joins": len(joined),
            "subscribed_p50": percentile(subscribed, 0.5) if subscribed else None,
            "subscribed_p95": percentile(subscribed, 0.95) if subscribed else None,
        }
    out["not_live_at_join"] = sum(1 for j in joins if j.first_frame is not None and not j.live_at_join)
    return out


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}"


# -- participants (in worker processes) -----------------------------------------------------------------


async def _drain(track: Any) -> None:
    # aiortc queues every decoded frame for the application: read them so memory stays flat.
    with contextlib.suppress(Exception):
        while True:
            await track.recv()


async def _fill_room(
    urls: dict[str, str],
    app_id: str,
    app_key: str,
    room: str,
    size: int,
    rng: random.Random,
    held: list[Any],
    counter: Any,
    fps: float,
) -> list[Join]:
    from tests.support.waiting import until

    from emberrtc.client import ColourVideoTrack, RoomClient

    nodes = sorted(urls)
    by_url = {url.rstrip("/"): node for node, url in urls.items()}
    clients: list[Any] = []
    joins: list[Join] = []
    for index in range(size):
        user = f"u{index}"
        entry = rng.choice(nodes)
        colour = (rng.randrange(40, 220), rng.randrange(40, 220), rng.randrange(40, 220))
        present = counter.value
        t0 = time.perf_counter()
        client = await RoomClient.join(urls[entry], app_id=app_id, room_id=room, user_id=user, app_key=app_key)
        track = ColourVideoTrack(colour, width=WIDTH, height=HEIGHT, fps=fps)
        joined = time.perf_counter() - t0
        clients.append(client)
        held.append(client)
        with counter.get_lock():
            counter.value += 1
        live = [(p.user_id, "camera") for p in client.participants.values() if "camera" in p.streams]
        first_frame: float | None = None
        subscribed: float | None = None
        async with asyncio.timeout(60):
            publish = asyncio.create_task(client.publish("camera", video=track))
            if index > 0:
                others = list(client.participants)
                for other in others:  # a camera not live at the join: wait for it (counted apart)
                    await client.wait_stream(other)
                subs = await asyncio.gather(*(client.subscribe(u) for u in others))
                subscribed = time.perf_counter() - t0
                frames = [asyncio.create_task(s.video.recv()) for s in subs]
                await asyncio.wait(frames, return_when=asyncio.FIRST_COMPLETED)
                first_frame = time.perf_counter() - t0
                for task in frames:
                    with contextlib.suppress(Exception):
                        await task
                for sub in subs:
                    held.append(asyncio.create_task(_drain(sub.video)))
            await publish
            if index > 0:
                # The next participant finds this camera live: the room's first participant sees it announced.
                await clients[0].wait_stream(user)
        joins.append(
            Join(
                room=room,
                user=user,
                index=index,
                entry=entry,
                node=by_url[client.server.rstrip("/")],
                redirected=bool(client.redirects),
                joined=joined,
                first_frame=first_frame,
                live_at_join=index == 0 or len(live) == index,
                present=present,
                subscribed=subscribed,
            )
        )
        if index == 0 and size > 1:
            # Nobody sees the first camera yet; the next join measures its first frame from it, and says
            # (live_at_join) whether it was announced by then. Give it the time a camera takes to go live:
            # until its publisher's connection is up and a few frames are sent.
            pc = client.publications["camera"].pc
            await until(
                lambda pc=pc, track=track: pc.connectionState == "connected" and track.frames >= 5,
                within=20,
                what=f"{room}'s first camera to send",
            )
    return joins


async def _worker(
    urls: dict[str, str], app_id: str, app_key: str, rooms: list[str], size: int, seed: int, shared: Any
) -> None:
    out, release, counter, fps = shared
    rng = random.Random(seed)
    held: list[Any] = []
    try:
        joins: list[Join] = []
        for room in rooms:
            joins += await _fill_room(urls, app_id, app_key, room, size, rng, held, counter, fps)
        out.put([asdict(j) for j in joins])
        await asyncio.to_thread(release.wait)  # everyone stays until the spread is read
    finally:
        for item in held:
            if isinstance(item, asyncio.Task):
                item.cancel()
        for item in held:
            if not isinstance(item, asyncio.Task):
                with contextlib.suppress(Exception):
                    await item.leave()


def worker_main(
    urls: dict[str, str], app_id: str, app_key: str, rooms: list[str], size: int, seed: int, shared: Any
) -> None:
    try:
        asyncio.run(_worker(urls, app_id, app_key, rooms, size, seed, shared))
    except BaseException as exc:
        shared[0].put(f"worker {seed} failed: {exc!r}")
        raise


# -- the run ----------------------------------------------------------------------------------------------


def make_app(cluster: Any) -> tuple[str, str]:
    import httpx

    password = secrets.token_urlsafe(12)
    cluster.ember("tenant", "create", "bench", "--password", password)
    auth = {
        "identity": {
            "methods": ["password"],
            "password": {"user": {"name": "bench", "password": password, "domain": {"name": "bench"}}},
        },
        "scope": {"project": {"name": "ember"}},
    }
    with httpx.Client(base_url=cluster.nodes[0].url, trust_env=False, timeout=15) as http:
        token = http.post("/v3/auth/tokens", json={"auth": auth})
        token.raise_for_status()
        http.headers["X-Auth-Token"] = token.headers["X-Subject-Token"]
        created = http.post("/v2/apps", json={"app_name": "bench"})
        created.raise_for_status()
        app_id = str(created.json()["app_id"])
        app_key = str(http.get(f"/v2/apps/{app_id}").json()["authentication"]["app_key"])
    return app_id, app_key


def bench(args: argparse.Namespace) -> None:
    from tests.support.cluster import Cluster, skip_reason

    reason = skip_reason()
    if reason is not None:
        raise SystemExit(f"bench/cluster.py cannot run here: {reason}")
    # The nodes run this checkout's sources, as the bench does.
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT / "src"), os.environ.get("PYTHONPATH")]))
    root = Path(tempfile.mkdtemp(prefix="ember-bench-cluster-"))
    rooms = [f"room-{i:03d}" for i in range(args.rooms)]
    with Cluster.start(root, nodes=NODES) as cluster:
        app_id, app_key = make_app(cluster)
        urls = {n.node_id: n.url for n in cluster.nodes}
        ctx = mp.get_context("spawn")
        out, release, counter = ctx.Queue(), ctx.Event(), ctx.Value("i", 0)
        workers = []
        started = time.monotonic()
        for w in range(args.workers):
            share = rooms[w :: args.workers]
            proc = ctx.Process(
                target=worker_main,
                args=(urls, app_id, app_key, share, args.size, args.seed * 1000 + w, (out, release, counter, args.fps)),
            )
            proc.start()
            workers.append(proc)
        joins: list[Join] = []
        failed: str | None = None
        try:
            for _ in workers:
                got = out.get(timeout=args.rooms * args.size * 60 / args.workers + 120)
                if isinstance(got, str):
                    failed = got
                    break
                joins += [Join(**j) for j in got]
            if failed is None:
                filled = time.monotonic() - started
                expected = len(joins)
                by_client = {n: sum(1 for j in joins if j.node == n) for n in urls}

                # The heartbeats (every 2 s) catch up with the joins.
                deadline = time.monotonic() + 20
                while True:
                    status = cluster.status()
                    by_status = {n["node_id"]: int(n["participants"]) for n in status}
                    if sum(by_status.values()) == expected or time.monotonic() > deadline:
                        break
                    time.sleep(0.5)
        finally:
            release.set()
            for proc in workers:
                proc.join(60)
                if proc.is_alive():
                    proc.kill()
        if failed is not None:
            for node in cluster.nodes:
                print(f"--- {node.node_id} log tail ---\n{node.serve.output()[-2000:]}", file=sys.stderr)
            raise SystemExit(f"{failed} (the nodes' data folders and logs are kept in {root})")
    shutil.rmtree(root, ignore_errors=True)

    nodes = sorted(urls)
    figures = summary(joins)
    timed = {
        f"{kind}_ms": [round(j.first_frame * 1000) for j in joins if j.first_frame and j.redirected == redirected]
        for kind, redirected in (("redirected", True), ("direct", False))
    }
    print(json.dumps(timed))
    print(
        f"cores: {os.cpu_count()}, {NODES} nodes, {args.rooms} rooms of {args.size} ({expected} participants) in "
        f"{filled:.0f} s by {args.workers} worker processes, {WIDTH}x{HEIGHT}@{args.fps:g} VP8 video only"
    )
    for name in ("redirected", "direct"):
        f = figures[name]
        print(
            f"{name}: {f['joins']} joins (joined answer p50 {_ms(f['joined_p50'])} ms), "
            f"{f['n']} timed: subscriptions negotiated p50 {_ms(f['subscribed_p50'])} ms "
            f"p95 {_ms(f['subscribed_p95'])} ms, first frame p50 {_ms(f['p50'])} ms p95 {_ms(f['p95'])} ms"
        )
    # The clients share the machine's two cores with the nodes: the more participants, the slower each
    # client's event loop, and the later a first frame is decoded. The same figures by how full it was:
    half = expected // 2
    for name, part in (
        (f"with < {half} participants in", [j for j in joins if j.present < half]),
        (f"with >= {half} participants in", [j for j in joins if j.present >= half]),
    ):
        f = summary(part)
        print(
            f"{name}: redirected p50 {_ms(f['redirected']['p50'])} ms p95 {_ms(f['redirected']['p95'])} ms "
            f"(n={f['redirected']['n']}), direct p50 {_ms(f['direct']['p50'])} ms p95 {_ms(f['direct']['p95'])} ms "
            f"(n={f['direct']['n']})"
        )
    if figures["not_live_at_join"]:
        print(f"timed joins left out (a camera not yet live at the join): {figures['not_live_at_join']}")
    print(f"participants per node, by the clients: {by_client}; by the heartbeats: {by_status}")
    if by_status != by_client:
        print("the heartbeats disagree with where the clients are", file=sys.stderr)
    r, d = figures["redirected"], figures["direct"]
    counts = "/".join(str(by_client[n]) for n in nodes)
    print(
        f"join-to-first-frame redirected p50 {_ms(r['p50'])} ms p95 {_ms(r['p95'])} ms (n={r['n']}), "
        f"direct p50 {_ms(d['p50'])} ms p95 {_ms(d['p95'])} ms (n={d['n']}); "
        f"participants per node {counts}, spread {spread(by_client, nodes):.2f}"
    )


def _inside_named_namespace() -> bool:
    r = subprocess.run(["ip", "netns", "identify"], capture_output=True, text=True)
    return r.returncode == 0 and bool(r.stdout.strip())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rooms", type=int, default=30)
    ap.add_argument("--size", type=int, default=4, help="participants per room")
    ap.add_argument("--workers", type=int, default=3, help="client processes (rooms filled at once)")
    ap.add_argument("--fps", type=float, default=5, help="frame rate of the synthetic cameras")
    ap.add_argument("--seed", type=int, default=1, help="seed of the random entry nodes")
    args = ap.parse_args()
    if args.rooms < 1 or args.size < 2 or args.workers < 1 or not 1 <= args.fps <= 30:
        ap.error("--rooms >= 1, --size >= 2, --workers >= 1 and --fps within 1-30")
    args.workers = min(args.workers, args.rooms)
    if os.geteuid() == 0 and not _inside_named_namespace():
        netns = str(ROOT / "scripts" / "netns.sh")
        name = f"ember-bench-cluster-{os.getpid()}"
        subprocess.run([netns, "up", name], check=True)
        try:
            rc = subprocess.run([netns, "exec", name, sys.executable, __file__, *sys.argv[1:]], cwd=ROOT).returncode
        finally:
            subprocess.run([netns, "down", name], check=False)
        raise SystemExit(rc)
    bench(args)


if __name__ == "__main__":
    main()
