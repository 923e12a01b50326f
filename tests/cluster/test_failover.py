"""A dead node's rooms closed and jobs released by one live node (``cluster.failover``), on the real database
(SQLite and PostgreSQL) and the machine's Redis; "nodes" are services named apart on one database."""

# ruff: noqa: F811  (``env`` is test_job's fixture, imported)

from __future__ import annotations

import secrets

from redis.asyncio import Redis
from sqlalchemy import select

from emberrtc.cluster.failover import NodeFailover
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
