"""Recording jobs claimed through the database (issue 12 item 5): two "nodes" are two job services on one
database (SQLite and PostgreSQL); only one runs a job, a restart reconciles only its own jobs, a dead node's
jobs are released for another node to resume, and a change made through one node reaches the recorder on
the other. The media planes and engines are the stand-ins of ``test_job``."""

# ruff: noqa: F811  (``env`` is test_job's fixture, imported)

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest
from sqlalchemy import update

from emberrtc.domain.job import JobService
from emberrtc.domain.ports import JobSpec
from emberrtc.store.models import Job
from tests.domain.test_job import Engine, Env, Media, env  # noqa: F401  (the fixture)


@dataclass
class UpdatingEngine(Engine):
    updated: list[JobSpec] = field(default_factory=list)

    async def update(self, job: JobSpec) -> None:
        self.updated.append(job)


@dataclass
class Node:
    jobs: JobService
    media: Media
    engine: UpdatingEngine

    def publishes(self, app_id: str, room_id: str, user_id: str) -> None:
        self.media.streams.add((app_id, room_id, user_id, "CAMERASTREAM"))
        self.jobs.stream_live(app_id, room_id)

    def started(self) -> list[str]:
        return [s.job_id for s in self.engine.started]


def node(env: Env, node_id: str) -> Node:
    """A node of a cluster on the test's database (its own media plane and engine)."""
    media, engine = Media(), UpdatingEngine()
    jobs = JobService(env.svc.db, env.clock, media, engine, outbound=env.svc.outbound, node_id=node_id, cluster=True)
    return Node(jobs, media, engine)


@pytest.fixture
async def two(env: Env) -> AsyncIterator[tuple[Node, Node]]:
    """Nodes A and B, named apart from other tests' (PostgreSQL's database is shared by the session)."""
    tag = secrets.token_hex(3)
    yield node(env, f"node-a-{tag}"), node(env, f"node-b-{tag}")


async def start_job(env: Env, user: str, room: str = "r") -> str:
    body = {"room_id": room, "user_id": user, "record_param": {"record_rule_id": env.rule_id}, "max_idle_time": 10}
    return str((await env.jobs.start_individual(env.principal, env.app_id, body))["job_id"])


async def test_of_two_nodes_with_the_media_only_one_runs_the_job(env: Env, two: tuple[Node, Node]) -> None:
    a, b = two
    job_id = await start_job(env, "amy")
    for n in (a, b):  # both see the stream (say, during a move): both try, at once
        n.publishes(env.app_id, "r", "amy")
    await asyncio.gather(a.jobs.start_woken(), b.jobs.start_woken())
    assert len(a.started() + b.started()) == 1
    winner = a.jobs.node_id if a.started() else b.jobs.node_id
    assert (await env.job(job_id)).node_id == winner
    assert (await env.job(job_id)).recorded_on == winner
    # Later passes do not take it either.
    await asyncio.gather(a.jobs.tick(), b.jobs.tick())
    assert len(a.started() + b.started()) == 1


async def test_a_job_for_a_room_nobody_hosts_waits_in_init_unclaimed(env: Env, two: tuple[Node, Node]) -> None:
    a, b = two
    job_id = await start_job(env, "bea")
    await asyncio.gather(a.jobs.tick(), b.jobs.tick())
    job = await env.job(job_id)
    assert (job.state, job.node_id) == ("INIT", None)
    b.publishes(env.app_id, "r", "bea")
    await b.jobs.start_woken()
    assert b.started() == [job_id] and a.started() == []
    assert (await env.job(job_id)).node_id == b.jobs.node_id


async def test_a_restart_reconciles_only_its_own_jobs(env: Env, two: tuple[Node, Node]) -> None:
    a, b = two
    mine, theirs = await start_job(env, "cal"), await start_job(env, "dan")
    a.publishes(env.app_id, "r", "cal")
    b.publishes(env.app_id, "r", "dan")
    await a.jobs.start_woken()
    await b.jobs.start_woken()
    await a.jobs.mark_running(mine)
    await b.jobs.mark_running(theirs)

    restarted = node(env, a.jobs.node_id)  # node A's next run: same ID, a fresh engine
    assert await restarted.jobs.recover() == 1
    released, untouched = await env.job(mine), await env.job(theirs)
    assert released.node_id is None and released.idle_deadline is not None
    assert "restarted" in (released.description or "")
    assert (untouched.state, untouched.node_id, untouched.idle_deadline) == ("RUNNING", b.jobs.node_id, None)

    # Node B's idle deadline passes: A's pass does not stop B's job (B is alive and holds it).
    await b.jobs.mark_idle(theirs)
    env.clock.advance(11)
    await restarted.jobs.tick()
    assert (await env.job(theirs)).state == "RUNNING"
    assert (await env.job(mine)).stop_reason == "IDLE_TIMEOUT"  # its own, released and not resumed


async def test_a_dead_nodes_jobs_resume_on_the_rooms_new_node_or_time_out(env: Env, two: tuple[Node, Node]) -> None:
    a, b = two
    back, gone = await start_job(env, "eve"), await start_job(env, "fay")
    for user in ("eve", "fay"):
        a.publishes(env.app_id, "r", user)
    await a.jobs.start_woken()
    for job_id in (back, gone):
        await a.jobs.mark_running(job_id)
    # Node A dies: while it holds the jobs, node B cannot take them even with the media.
    b.publishes(env.app_id, "r", "eve")
    await b.jobs.start_woken()
    assert b.started() == []

    dead = a.jobs.node_id
    assert dead in await b.jobs.claiming_nodes()
    assert await b.jobs.release_node(dead) == 2
    assert await b.jobs.release_node(dead) == 0  # once
    assert dead not in await b.jobs.claiming_nodes()
    await b.jobs.start_woken()  # eve publishes on B (her room's new node): her job resumes there
    assert b.started() == [back]
    await b.jobs.mark_running(back)
    env.clock.advance(11)
    await b.jobs.tick()
    resumed, stopped = await env.job(back), await env.job(gone)
    assert (resumed.state, resumed.node_id) == ("RUNNING", b.jobs.node_id)
    assert (stopped.state, stopped.stop_reason) == ("STOPPED", "IDLE_TIMEOUT")
    assert "was lost" not in (stopped.description or "")  # says why it stopped: no media from fay
    assert "fay" in (stopped.description or "")


async def test_a_change_through_another_node_reaches_the_recorder(env: Env, two: tuple[Node, Node]) -> None:
    a, b = two
    job_id = await start_job(env, "gus")
    b.publishes(env.app_id, "r", "gus")
    await b.jobs.start_woken()
    await b.jobs.mark_running(job_id)
    await b.jobs.tick()
    assert b.engine.updated == []  # nothing changed yet (its own update_time moves are not changes)

    env.clock.advance(1)
    rtmp = {"publish_param": {"rtmp_urls": []}, "record_param": {"record_rule_id": env.rule_id}}
    await a.jobs.update_individual(env.principal, env.app_id, job_id, rtmp)  # through node A
    await b.jobs.tick()
    assert [s.job_id for s in b.engine.updated] == [job_id]
    assert b.engine.updated[0].params["publish_param"] == {"rtmp_urls": []}
    await b.jobs.describe(job_id, "recording; all well")  # the recorder's own description: no change
    await b.jobs.tick()
    assert len(b.engine.updated) == 1


async def test_a_node_taken_for_dead_while_recording_claims_its_jobs_back(env: Env, two: tuple[Node, Node]) -> None:
    a, b = two
    job_id = await start_job(env, "hal")
    a.publishes(env.app_id, "r", "hal")
    await a.jobs.start_woken()
    await a.jobs.mark_running(job_id)
    assert await b.jobs.release_node(a.jobs.node_id) == 1  # A stalled past the node TTL: released
    await a.jobs.tick()  # A's next pass: it still records the job
    assert (await env.job(job_id)).node_id == a.jobs.node_id
    b.publishes(env.app_id, "r", "hal")  # B cannot start a second recorder
    await b.jobs.start_woken()
    assert b.started() == []


async def test_a_job_left_running_unclaimed_is_reconciled_by_the_first_node_to_start(
    env: Env, two: tuple[Node, Node]
) -> None:
    """A job RUNNING from a single-node run before the cluster (no claim, no countdown) is nobody's: the first
    node to start reconciles it, rather than leaving it RUNNING for ever."""
    a, _ = two
    job_id = await start_job(env, "ivy")
    await env.jobs.mark_running(job_id)  # recorded by a single node (claims unchecked there) ...
    await env.svc.db.run(lambda s: s.execute(update(Job).where(Job.job_id == job_id).values(node_id=None)))
    assert await a.jobs.recover() >= 1
    job = await env.job(job_id)
    assert job.idle_deadline is not None and "restarted" in (job.description or "")


async def test_a_mixed_job_is_claimed_by_one_node_too(env: Env, two: tuple[Node, Node]) -> None:
    a, b = two
    body = {"mix_param": {"room_id": "mixed", "layout_template": "1"}, "record_param": {"record_rule_id": env.rule_id}}
    job_id = str((await env.jobs.start_mix(env.principal, env.app_id, body))["job_id"])
    for n in (a, b):
        n.publishes(env.app_id, "mixed", "jo")
    await asyncio.gather(a.jobs.start_woken(), b.jobs.start_woken())
    assert len(a.started() + b.started()) == 1
    assert (await env.job(job_id)).node_id in (a.jobs.node_id, b.jobs.node_id)
