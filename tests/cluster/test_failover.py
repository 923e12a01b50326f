"""A dead node's rooms closed and jobs released by one live node (``cluster.failover``), on the real database
(SQLite and PostgreSQL) and the machine's Redis; "nodes" are services named apart on one database."""

# ruff: noqa: F811  (``env`` is test_job's fixture, imported)

from __future__ import annotations

import asyncio
import secrets
import socket

import pytest
from redis.asyncio import Redis
from sqlalchemy import select

from emberrtc.cluster import failover as failover_module
from emberrtc.cluster.failover import _FORGET, NodeFailover, refuses_connections
from emberrtc.cluster.keyspace import Keyspace
from emberrtc.domain.room_session import JoinRequest, RoomSessionService, join_signature
from emberrtc.store.models import Room, RoomSession
from tests.domain.test_job import Env, env  # noqa: F401  (the fixture)
from tests.domain.test_job_claims import Node, node, start_job


async def host(env: Env, node_id: str, room: str, user: str) -> tuple[RoomSessionService, Node, str]:
    """Node ``node_id`` hosts ``room`` with ``user`` in it, and records ``user``'s camera (job claimed)."""
    sessions = RoomSessionService(env.svc.db, env.svc.room_sessions._box, env.clock, node_id=node_id)
    ctime = str(int(env.clock.now()) + 600)
    signature = join_signature(env.app_key, env.app_id, room, user, ctime)
    await sessions.admit(JoinRequest(env.app_id, room, user, ctime, signature))
    n = node(env, node_id)
    job_id = await start_job(env, user, room)
    n.publishes(env.app_id, room, user)
    await n.jobs.start_woken()
    await n.jobs.mark_running(job_id)
    return sessions, n, job_id


async def run_of(env: Env, room: str) -> tuple[str, str | None, list[tuple[str, str | None]]]:
    def work(s):  # type: ignore[no-untyped-def]
        run = s.execute(select(Room).where(Room.app_id == env.app_id, Room.room_id == room)).scalar_one()
        people = s.execute(
            select(RoomSession.state, RoomSession.leave_reason).where(RoomSession.room_uid == run.room_uid)
        )
        return run.state, run.node_id, [tuple(p) for p in people]

    return await env.svc.db.run(work)


async def test_one_live_node_closes_a_dead_nodes_rooms_and_releases_its_jobs(
    env: Env, redis: Redis, keys: Keyspace
) -> None:
    tag = secrets.token_hex(3)
    dead, alive, watcher = f"dead-{tag}", f"alive-{tag}", f"watcher-{tag}"
    sessions, _, lost_job = await host(env, dead, f"r1-{tag}", "ann")
    _, _, kept_job = await host(env, alive, f"r2-{tag}", "bob")
    for live in (alive, watcher):  # registered and heartbeating; the dead node's registration expired
        await redis.hset(keys.node(live), mapping={"public_url": f"http://{live}"})  # type: ignore[misc]
        await redis.sadd(keys.nodes, live)  # type: ignore[misc]
    w = node(env, watcher)
    failover = NodeFailover(
        redis,
        keys,
        watcher,
        rooms=RoomSessionService(env.svc.db, sessions._box, env.clock, node_id=watcher),
        jobs=w.jobs,
    )

    # Another live node holds the dead node's lock: this one leaves it to that node.
    # (Other tests' nodes on the shared PostgreSQL database are dead too: only this test's are looked at.)
    await redis.set(keys.failover(dead), "someone-else", px=5000)
    assert dead not in await failover.sweep()
    assert (await run_of(env, f"r1-{tag}"))[0] == "RUNNING"
    await redis.delete(keys.failover(dead))

    swept = await failover.sweep()
    assert dead in swept and alive not in swept and watcher not in swept
    assert await run_of(env, f"r1-{tag}") == ("CLOSED", dead, [("OFFLINE", "node_lost")])
    lost = await env.job(lost_job)
    assert (lost.state, lost.node_id) == ("RUNNING", None)  # not recording anywhere: counting down
    assert lost.idle_deadline is not None and f"node {dead} was lost" in (lost.description or "")
    # The live node's room and job go on untouched.
    assert await run_of(env, f"r2-{tag}") == ("RUNNING", alive, [("ONLINE", None)])
    kept = await env.job(kept_job)
    assert (kept.state, kept.node_id, kept.idle_deadline) == ("RUNNING", alive, None)
    assert await redis.get(keys.failover(dead)) is None  # the lock is let go
    assert dead not in await failover.sweep()  # nothing left of the dead node

    # No media came back for the lost job: any node's pass stops it.
    env.clock.advance(11)
    await w.jobs.tick()
    assert (await env.job(lost_job)).stop_reason == "IDLE_TIMEOUT"


async def test_a_silent_node_that_refuses_connections_is_taken_for_dead_before_its_registration_expires(
    redis: Redis, keys: Keyspace
) -> None:
    """A crashed process (its port closed) is known dead as soon as it has missed two heartbeats; a silent
    node still listening (busy, not dead) and a node that just beat keep their registrations."""
    listening = await asyncio.start_server(lambda r, w: w.close(), "127.0.0.1", 0)
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))  # bound, never listening: connections to it are refused
    try:
        open_port = listening.sockets[0].getsockname()[1]
        closed_port = closed.getsockname()[1]
        nodes = {
            # node ID: (its URL, milliseconds left of its registration: 10 s after its last heartbeat)
            "crashed": (f"http://127.0.0.1:{closed_port}", 5_000),
            "busy": (f"http://127.0.0.1:{open_port}", 5_000),
            "fresh": (f"http://127.0.0.1:{closed_port}", 9_500),
            "watcher": (f"http://127.0.0.1:{closed_port}", 5_000),  # itself: never probed
        }
        for node_id, (url, ttl_ms) in nodes.items():
            await redis.hset(keys.node(node_id), mapping={"instance": f"i-{node_id}", "public_url": url})  # type: ignore[misc]
            await redis.pexpire(keys.node(node_id), ttl_ms)
            await redis.sadd(keys.nodes, node_id)  # type: ignore[misc]
        failover = NodeFailover(redis, keys, "watcher", rooms=None, jobs=None, interval=2.0, node_ttl=10.0)  # type: ignore[arg-type]
        assert await failover.confirm_dead() == ["crashed"]
        assert not await redis.exists(keys.node("crashed"))
        assert set(await redis.smembers(keys.nodes)) == {"busy", "fresh", "watcher"}  # type: ignore[misc]
        # Started again under the same node ID meanwhile: the new process's registration stays.
        await redis.hset(keys.node("crashed"), mapping={"instance": "i-new", "public_url": nodes["crashed"][0]})  # type: ignore[misc]
        await redis.pexpire(keys.node("crashed"), 5_000)
        await redis.sadd(keys.nodes, "crashed")  # type: ignore[misc]
        assert await redis.eval(_FORGET, 2, keys.node("crashed"), keys.nodes, "i-crashed", "crashed") == 0  # type: ignore[misc]
        assert await redis.hget(keys.node("crashed"), "instance") == "i-new"  # type: ignore[misc]
    finally:
        listening.close()
        await listening.wait_closed()
        closed.close()


async def test_a_probe_proves_death_only_by_a_refused_connection(monkeypatch: pytest.MonkeyPatch) -> None:
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    try:
        assert await refuses_connections(f"http://127.0.0.1:{closed.getsockname()[1]}")
    finally:
        closed.close()
    assert not await refuses_connections("not a url")

    async def never_answers(*args: object, **kwargs: object) -> None:
        await asyncio.sleep(10)

    # A machine gone or a network cut: no answer at all, which proves nothing.
    monkeypatch.setattr(failover_module.asyncio, "open_connection", never_answers)
    assert not await refuses_connections("http://127.0.0.1:9", within=0.1)
