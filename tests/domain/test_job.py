"""Jobs beyond the API's view: automatic recording (spec 4.6) and what a restart makes of unfinished jobs.

Real services on the real database (SQLite and PostgreSQL); the media plane and the recording engine are
stand-ins that say which streams exist and record what the job service asks of them.
"""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field, replace

import pytest
from sqlalchemy import event, insert, select

from emberrtc.bootstrap import Services, build
from emberrtc.config import Settings
from emberrtc.domain.clock import ManualClock
from emberrtc.domain.job import JobService, JobSupervisor
from emberrtc.domain.ports import JobSpec
from emberrtc.domain.room_session import JoinRequest, join_signature
from emberrtc.domain.tenant import Principal
from emberrtc.store.models import Job
from tests.support.waiting import until

NOW = 1_800_000_000.0


@dataclass
class Media:
    """Which (app, room, user, video_type) streams are published."""

    streams: set[tuple[str, str, str | None, str]] = field(default_factory=set)

    async def has_stream(self, app_id: str, room_id: str, user_id: str | None, video_type: str | None) -> bool:
        if user_id is None:  # the port: any publisher in the room (a mixed job's media, a room with media)
            return any(s[:2] == (app_id, room_id) for s in self.streams)
        return (app_id, room_id, user_id, video_type or "CAMERASTREAM") in self.streams

    def live_rooms(self) -> set[tuple[str, str]]:
        return {(app_id, room_id) for app_id, room_id, _, _ in self.streams}

    async def remove_users(self, app_id: str, room_id: str, user_ids: list[str]) -> None:
        return None

    async def dismiss(self, app_id: str, room_id: str) -> bool:
        return False


@dataclass
class Engine:
    started: list[JobSpec] = field(default_factory=list)
    stopped: list[str] = field(default_factory=list)
    updated: list[JobSpec] = field(default_factory=list)

    async def start(self, job: JobSpec) -> None:
        self.started.append(job)

    async def update(self, job: JobSpec) -> None:
        self.updated.append(job)

    async def stop(self, job_id: str) -> None:
        self.stopped.append(job_id)


@dataclass
class Env:
    svc: Services
    clock: ManualClock
    media: Media
    engine: Engine
    principal: Principal
    app_id: str
    app_key: str
    rule_id: str

    @property
    def jobs(self) -> JobService:
        return self.svc.jobs

    async def join(self, room_id: str, user_id: str) -> None:
        ctime = str(int(self.clock.now()) + 600)
        signature = join_signature(self.app_key, self.app_id, room_id, user_id, ctime)
        await self.svc.room_sessions.admit(JoinRequest(self.app_id, room_id, user_id, ctime, signature))

    async def publish(self, room_id: str, user_id: str, stream: str = "camera") -> str | None:
        video_type = "CAMERASTREAM" if stream == "camera" else "SCREENSTREAM"
        self.media.streams.add((self.app_id, room_id, user_id, video_type))
        return await self.jobs.auto_record(self.app_id, room_id, user_id, stream)

    async def job(self, job_id: str) -> Job:
        job = await self.svc.db.run(lambda s: s.execute(select(Job).where(Job.job_id == job_id)).scalar_one())
        assert isinstance(job, Job)
        return job

    async def settle(self) -> None:
        """Let the background start of automatic jobs finish."""
        for task in list(self.jobs._starting):
            await task


async def make_env(settings: Settings, clock: ManualClock) -> tuple[Services, Media, Engine]:
    media, engine = Media(), Engine()
    svc = await build(settings, clock=clock, media=media, recorder=engine)
    return svc, media, engine


@pytest.fixture
async def env(backend: Settings, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Env]:
    clock = ManualClock(NOW)
    settings = replace(backend, data_dir=tmp_path_factory.mktemp("jobs"), auto_record_max_idle_time=20)
    svc, media, engine = await make_env(settings, clock)
    name = f"t{secrets.token_hex(6)}"
    principal = await svc.tenants.create_tenant(name, secrets.token_urlsafe(12))
    app = await svc.apps.create(principal, f"auto-{secrets.token_hex(4)}")
    app_id = app["app_id"]
    app_key = (await svc.apps.show(principal, app_id))["authentication"]["app_key"]
    rule = await svc.rules.create_or_replace(
        principal,
        app_id,
        {
            "obs_addr": {"location": "cn-north-4", "project_id": principal.project_id, "bucket": "auto"},
            "record_formats": ["MP4"],
            "mp4_config": {"record_cycle": 60},
        },
    )
    try:
        yield Env(svc, clock, media, engine, principal, app_id, app_key, rule["rule_id"])
    finally:
        await svc.db.close()


# --- automatic recording (spec 4.6) ------------------------------------------------------------------


async def test_only_rooms_created_after_the_setting_are_recorded_automatically(env: Env) -> None:
    await env.join("before", "ann")  # this room run opened while automatic recording was off
    await env.svc.apps.set_auto_record(env.principal, env.app_id, "AUTO_INDIVIDUAL_RECORD", env.rule_id)
    assert await env.publish("before", "ann") is None
    await env.join("after", "bob")
    job_id = await env.publish("after", "bob")
    assert job_id is not None
    await env.settle()

    job = await env.job(job_id)
    assert job.stream_name == f"{env.app_id}_after_bob_av_m"
    assert (job.kind, job.slot, job.state, job.record_rule_id) == ("individual", "auto_m", "INIT", env.rule_id)
    assert job.params["is_record_audio"] is True and job.params["video_type"] == "CAMERASTREAM"
    assert job.params["max_idle_time"] == 20
    # Started at once (the stream is there), not on the supervisor's next pass.
    assert [s.job_id for s in env.engine.started] == [job_id]
    assert env.engine.started[0].record_rule is not None
    assert env.engine.started[0].record_rule["rule_id"] == env.rule_id

    view = await env.jobs.show(env.principal, env.app_id, job_id, "individual")
    assert view["stream_name"] == job.stream_name and view["user_id"] == "bob"


async def test_a_screen_is_recorded_without_audio_beside_the_camera(env: Env) -> None:
    await env.svc.apps.set_auto_record(env.principal, env.app_id, "AUTO_INDIVIDUAL_RECORD", env.rule_id)
    await env.join("r", "cat")
    camera = await env.publish("r", "cat", "camera")
    screen = await env.publish("r", "cat", "screen")
    assert camera and screen and camera != screen
    await env.settle()
    job = await env.job(screen)
    assert job.stream_name == f"{env.app_id}_r_cat_v_a"
    assert job.params["is_record_audio"] is False and job.params["video_type"] == "SCREENSTREAM"
    assert {s.job_id for s in env.engine.started} == {camera, screen}
    # An API job for the same user is its own matter (RTC.00001006 counts API jobs only).
    api = await env.jobs.start_individual(
        env.principal, env.app_id, {"room_id": "r", "user_id": "cat", "record_param": {"record_rule_id": env.rule_id}}
    )
    assert api["state"] == "INIT"


async def test_a_republish_keeps_the_job_and_a_publish_after_it_stopped_makes_a_new_one(env: Env) -> None:
    await env.svc.apps.set_auto_record(env.principal, env.app_id, "AUTO_INDIVIDUAL_RECORD", env.rule_id)
    await env.join("r", "dan")
    first = await env.publish("r", "dan")
    assert first is not None
    assert await env.publish("r", "dan") is None  # still unfinished: the same job records the new stream
    await env.settle()

    env.media.streams.clear()  # dan left
    await env.jobs.mark_idle(first)
    env.clock.advance(21)
    await env.jobs.tick()
    stopped = await env.job(first)
    assert (stopped.state, stopped.stop_reason) == ("STOPPED", "IDLE_TIMEOUT")
    assert first in env.engine.stopped  # (the database may hold other tests' jobs too)

    second = await env.publish("r", "dan")
    assert second is not None and second != first


async def test_the_setting_turned_off_stops_nothing_running_and_records_no_new_room(env: Env) -> None:
    await env.svc.apps.set_auto_record(env.principal, env.app_id, "AUTO_INDIVIDUAL_RECORD", env.rule_id)
    await env.join("old", "eve")
    await env.svc.apps.set_auto_record(env.principal, env.app_id, "AUTO_RECORD_OFF", None)
    assert await env.publish("old", "eve") is not None  # the room opened with it on
    await env.join("new", "fay")
    assert await env.publish("new", "fay") is None


async def test_a_disabled_app_records_nothing_automatically(env: Env) -> None:
    await env.svc.apps.set_auto_record(env.principal, env.app_id, "AUTO_INDIVIDUAL_RECORD", env.rule_id)
    await env.join("r", "gus")
    await env.svc.apps.set_state(env.principal, env.app_id, "DEACTIVATION")
    assert await env.publish("r", "gus") is None


# --- after a restart ------------------------------------------------------------------------------------


async def test_a_restart_resumes_jobs_whose_media_is_there_and_stops_the_others(env: Env) -> None:
    rec = {"record_param": {"record_rule_id": env.rule_id}, "max_idle_time": 10}
    back = await env.jobs.start_individual(env.principal, env.app_id, {"room_id": "r", "user_id": "hal", **rec})
    gone = await env.jobs.start_individual(env.principal, env.app_id, {"room_id": "r", "user_id": "ida", **rec})
    for job in (back, gone):
        await env.jobs.mark_running(job["job_id"])  # both were recording when the server died

    # The next server run on the same database: the same jobs, a fresh engine.
    svc, media, engine = await make_env(env.svc.settings, env.clock)
    try:
        assert await svc.jobs.recover() >= 2
        media.streams.add((env.app_id, "r", "hal", "CAMERASTREAM"))  # hal is publishing again; ida is not
        await svc.jobs.tick()
        assert back["job_id"] in [s.job_id for s in engine.started]
        assert gone["job_id"] not in [s.job_id for s in engine.started]
        await svc.jobs.mark_running(back["job_id"])  # what the engine reports once media is written
        env.clock.advance(11)
        await svc.jobs.tick()
        resumed, stopped = await env.job(back["job_id"]), await env.job(gone["job_id"])
        assert resumed.state == "RUNNING"
        assert (stopped.state, stopped.stop_reason) == ("STOPPED", "IDLE_TIMEOUT")
        assert "ida" in (stopped.description or "")
    finally:
        await svc.db.close()


async def test_media_that_comes_at_the_deadline_starts_the_job(env: Env) -> None:
    rec = {"record_param": {"record_rule_id": env.rule_id}, "max_idle_time": 10}
    job = await env.jobs.start_individual(env.principal, env.app_id, {"room_id": "r", "user_id": "jan", **rec})
    env.clock.advance(10)
    env.media.streams.add((env.app_id, "r", "jan", "CAMERASTREAM"))
    await env.jobs.tick()
    assert job["job_id"] in [s.job_id for s in env.engine.started]
    assert (await env.job(job["job_id"])).state == "INIT"  # not stopped: the engine reports RUNNING
    await env.jobs.tick()
    assert (await env.job(job["job_id"])).state == "INIT"


# --- the supervisor's cost: what is due, not what waits (issue 11) ---------------------------------------


def _waiting_job(app_id: str, rule_id: str, i: int, deadline: float) -> dict[str, object]:
    """A row as ``start_individual`` leaves it, created an hour ago."""
    job_id = secrets.token_hex(16)
    return {
        "job_id": job_id,
        "app_id": app_id,
        "kind": "individual",
        "slot": "api",
        "room_id": f"idle{i}",
        "user_id": "u",
        "stream_name": f"s_{job_id}_idle{i}_u",
        "params": {"max_idle_time": int(deadline - (NOW - 3600)), "record_param": {"record_rule_id": rule_id}},
        "record_rule_id": rule_id,
        "state": "INIT",
        "description": "waiting for media",
        "create_time": NOW - 3600,
        "update_time": NOW - 3600,
        "start_time": NOW - 3600,
        "idle_deadline": deadline,
    }


@contextlib.contextmanager
def loaded_jobs(app_id: str) -> Iterator[list[str]]:
    """The IDs of the app's jobs the ORM loads from the database meanwhile (one entry per row loaded)."""
    seen: list[str] = []

    def on_load(job: Job, _context: object) -> None:
        if job.app_id == app_id:
            seen.append(job.job_id)

    event.listen(Job, "load", on_load)
    try:
        yield seen
    finally:
        event.remove(Job, "load", on_load)


async def test_a_pass_over_2000_waiting_jobs_loads_only_what_is_due(env: Env) -> None:
    rows = [_waiting_job(env.app_id, env.rule_id, i, NOW + 3600) for i in range(2000)]
    for row in rows[:3]:
        row["idle_deadline"] = NOW + 5
    await env.svc.db.run(lambda s: s.execute(insert(Job), rows))
    due = {str(row["job_id"]) for row in rows[:3]}

    with loaded_jobs(env.app_id) as loaded:
        await env.jobs.tick()
    assert loaded == []  # nothing due, nothing changed, nothing woken: no job read

    env.clock.advance(6)
    with loaded_jobs(env.app_id) as loaded:
        await env.jobs.tick()
    assert set(loaded) == due and len(loaded) == 3
    for job_id in due:
        job = await env.job(job_id)
        assert (job.state, job.stop_reason) == ("STOPPED", "IDLE_TIMEOUT")
    assert (await env.job(str(rows[3]["job_id"]))).state == "INIT"

    # A stream goes live for one waiting job: its room's jobs are read, and it starts, between passes.
    env.media.streams.add((env.app_id, "idle1500", "u", "CAMERASTREAM"))
    env.jobs.stream_live(env.app_id, "idle1500")
    with loaded_jobs(env.app_id) as loaded:
        await env.jobs.start_woken()
    assert loaded == [rows[1500]["job_id"]]
    assert [s.job_id for s in env.engine.started] == [rows[1500]["job_id"]]


async def test_the_supervisor_starts_a_job_when_its_stream_goes_live_not_at_its_next_pass(env: Env) -> None:
    rec = {"record_param": {"record_rule_id": env.rule_id}}
    job = await env.jobs.start_individual(env.principal, env.app_id, {"room_id": "r", "user_id": "kai", **rec})
    passes: list[float] = []
    tick = env.jobs.tick

    async def counted_tick() -> None:
        await tick()
        passes.append(env.clock.now())

    env.jobs.tick = counted_tick  # type: ignore[method-assign]
    supervisor = JobSupervisor(env.jobs, interval=3600)  # one pass now, the next in an hour
    supervisor.start()
    try:
        await until(lambda: passes, within=5, what="the supervisor's first pass")
        assert env.engine.started == []  # no media yet
        env.media.streams.add((env.app_id, "r", "kai", "CAMERASTREAM"))
        env.jobs.stream_live(env.app_id, "r")
        await until(lambda: env.engine.started, within=5, what="the job to start")
        assert [s.job_id for s in env.engine.started] == [job["job_id"]]
        assert len(passes) == 1  # started by the event, between passes
    finally:
        await supervisor.stop()


async def test_another_node_starts_and_stops_what_it_records(env: Env) -> None:
    """Two nodes on one database: the job is started through node A, the user publishes on node B."""
    rec = {"record_param": {"record_rule_id": env.rule_id}}
    other, media, engine = await make_env(env.svc.settings, env.clock)
    try:
        media.streams.add((env.app_id, "r", "lea", "CAMERASTREAM"))
        job = await env.jobs.start_individual(env.principal, env.app_id, {"room_id": "r", "user_id": "lea", **rec})
        await env.jobs.tick()
        assert env.engine.started == []  # no media on node A
        await other.jobs.tick()  # node B sees the new job (changed since), its media is there
        assert [s.job_id for s in engine.started] == [job["job_id"]]
        await other.jobs.mark_running(job["job_id"])

        await env.jobs.stop(env.principal, env.app_id, job["job_id"], "individual")  # through node A
        assert engine.stopped == []
        await other.jobs.tick()
        assert engine.stopped == [job["job_id"]]
        await other.jobs.tick()
        assert engine.stopped == [job["job_id"]]  # once
    finally:
        await other.db.close()


@dataclass
class RoomOn:
    """The cluster's job routing between two nodes, in process: every room is hosted by ``host`` (the Redis
    carriage of the call is tested in tests/cluster/test_room_calls.py)."""

    host: JobService
    calls: list[str] = field(default_factory=list)

    async def job_changed(self, app_id: str, room_id: str, job_id: str) -> bool:
        self.calls.append(job_id)
        await self.host.apply_change(app_id, room_id, job_id)
        return True


async def test_a_job_changed_through_another_node_is_applied_at_once_by_the_rooms_node(env: Env) -> None:
    """Node A takes the API calls; node B hosts the room and records: it starts, updates and stops the job
    when told, without waiting for a pass."""
    rec = {"record_param": {"record_rule_id": env.rule_id}}
    other, media, engine = await make_env(env.svc.settings, env.clock)
    try:
        env.jobs.nodes = RoomOn(other.jobs)
        media.streams.add((env.app_id, "r", "lea", "CAMERASTREAM"))
        job = await env.jobs.start_individual(env.principal, env.app_id, {"room_id": "r", "user_id": "lea", **rec})
        job_id = job["job_id"]
        await other.jobs.start_woken()  # what B's supervisor runs at once when woken: no pass, no deadline
        assert [s.job_id for s in engine.started] == [job_id] and env.engine.started == []
        await other.jobs.mark_running(job_id)

        publish = {"publish_param": {"rtmp_urls": []}}
        await env.jobs.update_individual(env.principal, env.app_id, job_id, publish)
        assert [(u.job_id, u.params["publish_param"]) for u in engine.updated] == [(job_id, {"rtmp_urls": []})]
        assert env.engine.updated == []

        await env.jobs.stop(env.principal, env.app_id, job_id, "individual")
        assert engine.stopped == [job_id]  # at once, not at B's next pass
        await other.jobs.tick()
        assert engine.stopped == [job_id]  # once
        # A job of another room, or one that does not exist, changes nothing.
        await other.jobs.apply_change(env.app_id, "elsewhere", job_id)
        await other.jobs.apply_change(env.app_id, "r", "0" * 32)
        assert (len(engine.started), len(engine.updated), len(engine.stopped)) == (1, 1, 1)
    finally:
        await other.db.close()
