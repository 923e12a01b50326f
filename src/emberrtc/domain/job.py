"""Recording jobs (spec 4.4 single-stream, 4.8 mixed-stream) as persisted state machines.

``INIT`` -> ``RUNNING`` -> ``STOPPED``. A job waits in ``INIT`` until there is media to record; a job
with no media for ``max_idle_time`` seconds stops by itself (``stop_reason`` ``IDLE_TIMEOUT``).

The supervisor's work is proportional to what is due, not to the jobs waiting (issue 11): a job starts
when a stream goes live in its room on this node (the media plane calls :meth:`JobService.stream_live`)
or when it is created while the media is there; deadlines are found with an indexed
``idle_deadline <= now``; what other nodes sharing the database did (a job created for a room whose media
is here, a job stopped that records here) with indexed queries on ``update_time`` and on the jobs this node
records. No pass loads every unfinished job (``docs/decisions.md``).

In a cluster (``cluster=True``) a node hands a job to its engine only after claiming it in the database
(``jobs.node_id``, a conditional UPDATE: free or already this node's), so exactly one node runs each job;
the node hosting the room is the one with its media, so it is the one that claims. A node's restart
(:meth:`JobService.recover`) releases only its own claims, and a live node releases a dead node's
(:meth:`JobService.release_node`, ``cluster.failover``): either way the jobs wait for their media again, and
whichever node hosts the room next claims them when the user publishes. A change made through another node
(``record_param``, a layout) reaches the recording node at its next pass, which notices the job's new
``update_time``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from typing import Any, Protocol

from sqlalchemy import ColumnElement, and_, func, or_, select, tuple_, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from emberrtc.domain import mix_layout
from emberrtc.domain.app import ACTIVATION, drop_none, load_app, require_active
from emberrtc.domain.background import BackgroundTask
from emberrtc.domain.clock import Clock, spec_time
from emberrtc.domain.errors import EmberError, JobDone, JobExceed, JobNotExist, JobRunning, RecordRuleNotExist
from emberrtc.domain.outbound import RTMP_SCHEMES, OutboundPolicy, OutboundRefused
from emberrtc.domain.ports import JobNodes, JobSpec, MediaPlane, RecordingEngine
from emberrtc.domain.record_rule import rule_view
from emberrtc.domain.secrets import new_hex_id
from emberrtc.domain.tenant import Principal
from emberrtc.store.database import Database
from emberrtc.store.models import App, Job, RecordRule, Room, Tenant

log = logging.getLogger(__name__)

INIT, RUNNING, STOPPED = "INIT", "RUNNING", "STOPPED"
#: Written as ``state IN (...)`` rather than ``!= STOPPED`` where the ``(app_id, state)`` index should serve:
#: an app's stopped jobs accumulate, its unfinished ones are few (``max_unfinished_jobs_per_app``).
UNFINISHED = (INIT, RUNNING)
#: Seconds back each supervisor pass looks for jobs created or changed by any node (``Job.update_time``,
#: each node's clock). A change later than this (clocks apart, a commit slower than this) is not lost: the
#: job starts when its stream next goes live here, or at its deadline if its media is here then.
CHANGE_WINDOW = 10.0
INDIVIDUAL, MIX = "individual", "mix"
# Job slots: one unfinished single-stream job per app, room, user and slot (uq_jobs_individual_active).
API_SLOT = "api"
AUTO_SLOTS = {"camera": "auto_m", "screen": "auto_a"}

# stop_reason values (the spec leaves them open; these say what happened)
# (a job that a restart finds unfinished resumes, or stops with IDLE_TIMEOUT when its media is gone)
STOPPED_BY_API = "STOPPED_BY_API"
IDLE_TIMEOUT = "IDLE_TIMEOUT"
ROOM_DISMISSED = "ROOM_DISMISSED"
FATAL_ERROR = "FATAL_ERROR"
#: ``node_id`` of jobs claimed on a single node (no cluster): claims are not checked there.
LOCAL_NODE = "local"


class StorageCheck(Protocol):
    async def check_target(self, location: str, bucket: str, project: str | None = None) -> None:
        """Raise RTC.00001003 for an unknown location, RTC.00001014 for a bucket that does not exist."""


def auto_stream_name(app_id: str, room_id: str, user_id: str, stream: str) -> str:
    """spec 4.6.1: ``{appid}_{roomid}_{userid}_{media_type}_{video_type}``: ``_av_m`` for a camera with its
    audio, ``_v_a`` for a shared screen (video only)."""
    return f"{app_id}_{room_id}_{user_id}_{'av_m' if stream == 'camera' else 'v_a'}"


def individual_view(job: Job) -> dict[str, Any]:
    """Table 4-30 / 4-41."""
    p = job.params
    return drop_none(
        {
            "job_id": job.job_id,
            "stream_name": job.stream_name,
            "app_id": job.app_id,
            "room_id": job.room_id,
            "user_id": job.user_id,
            "is_record_audio": p.get("is_record_audio"),
            "video_type": p.get("video_type"),
            "select_stream_type": p.get("select_stream_type"),
            "max_idle_time": p.get("max_idle_time"),
            "publish_param": p.get("publish_param"),
            "record_param": p.get("record_param"),
            **_state_fields(job),
        }
    )


def mix_view(job: Job) -> dict[str, Any]:
    """Table 4-181 / 4-195."""
    p = job.params
    return drop_none(
        {
            "job_id": job.job_id,
            "stream_name": job.stream_name,
            "app_id": job.app_id,
            "room_id": job.room_id,
            "mix_param": p.get("mix_param"),
            "publish_param": p.get("publish_param"),
            "record_param": p.get("record_param"),
            **_state_fields(job),
        }
    )


def _state_fields(job: Job) -> dict[str, Any]:
    return {
        "create_time": spec_time(job.create_time),
        "update_time": spec_time(job.update_time),
        "state": job.state,
        "stop_reason": job.stop_reason,
        "description": job.description,
        "start_time": spec_time(job.start_time),
        "stop_time": spec_time(job.stop_time),
    }


def view(job: Job) -> dict[str, Any]:
    return individual_view(job) if job.kind == INDIVIDUAL else mix_view(job)


class JobService:
    """Start, show, update and stop jobs; move them through their states."""

    def __init__(
        self,
        db: Database,
        clock: Clock,
        media: MediaPlane,
        engine: RecordingEngine,
        *,
        storage: StorageCheck | None = None,
        auto_max_idle_time: int = 30,
        outbound: OutboundPolicy,
        max_unfinished: int = 100,
        node_id: str = LOCAL_NODE,
        cluster: bool = False,
    ) -> None:
        self._db = db
        #: This node's ID, written into the jobs it claims; claims bind other nodes only in a ``cluster``.
        self.node_id = node_id
        self.cluster = cluster
        self._outbound = outbound
        self._clock = clock
        self.media = media
        self.engine = engine
        self._storage = storage
        self._auto_max_idle = auto_max_idle_time
        self._max_unfinished = max_unfinished
        self._starting: set[asyncio.Task[None]] = set()
        # Jobs handed to the engine by this process; after a restart the set is empty and INIT jobs
        # are handed over again, which is how they resume.
        self._handed_over: set[str] = set()
        # Of each job handed over here: the update_time last looked at, and the parameters the engine has
        # (a change made through another node is noticed by a pass, see tick).
        self._seen_update: dict[str, float] = {}
        self._applied: dict[str, str] = {}
        # Rooms whose unfinished jobs the next pass looks at (a stream went live, a job was created here),
        # and the event that ends the supervisor's wait for them.
        self._wake_rooms: set[tuple[str, str]] = set()
        self._woken = asyncio.Event()
        #: In a cluster (set by bootstrap): the node hosting a job's room applies changes made here.
        self.nodes: JobNodes | None = None

    # --- API operations -------------------------------------------------------------------

    async def start_individual(self, principal: Principal, app_id: str, body: dict[str, Any]) -> dict[str, Any]:
        """spec 4.4.1. Stream name ``s_{job_id}_{room_id}_{user_id}``."""
        await self._check_rtmp_urls(body)
        job_id = new_hex_id()
        job = Job(
            job_id=job_id,
            kind=INDIVIDUAL,
            room_id=body["room_id"],
            user_id=body["user_id"],
            stream_name=f"s_{job_id}_{body['room_id']}_{body['user_id']}",
            params=drop_none({k: v for k, v in body.items() if k not in ("room_id", "user_id")}),
        )
        return await self._create(principal, app_id, job)

    async def start_mix(self, principal: Principal, app_id: str, body: dict[str, Any]) -> dict[str, Any]:
        """spec 4.8.1. Stream name ``m_{job_id}_{room_id}``."""
        await self._check_rtmp_urls(body)
        job_id = new_hex_id()
        mix = drop_none(body["mix_param"])
        if mix.get("layout_panes"):
            mix["layout_panes"] = [drop_none(p) for p in mix["layout_panes"]]
        params = drop_none(
            {"mix_param": mix, "publish_param": body.get("publish_param"), "record_param": body.get("record_param")}
        )
        job = Job(
            job_id=job_id,
            kind=MIX,
            room_id=mix["room_id"],
            user_id=None,
            stream_name=f"m_{job_id}_{mix['room_id']}",
            params=params,
        )
        return await self._create(principal, app_id, job)

    async def show(self, principal: Principal, app_id: str, job_id: str, kind: str) -> dict[str, Any]:
        def work(s: Session) -> dict[str, Any]:
            load_app(s, principal, app_id)
            return view(self._load(s, app_id, job_id, kind))

        return await self._db.run(work)

    async def list_jobs(self, principal: Principal, app_id: str, limit: int = 100) -> list[dict[str, Any]]:
        """The app's jobs, single-stream and mixed, newest first (at most ``limit``): the console's list.
        The API has no list operation; each item is the job's API view plus its ``kind``."""

        def work(s: Session) -> list[dict[str, Any]]:
            load_app(s, principal, app_id)
            q = select(Job).where(Job.app_id == app_id).order_by(Job.create_time.desc(), Job.job_id).limit(limit)
            return [{"kind": job.kind, **view(job)} for job in s.execute(q).scalars()]

        return await self._db.run(work)

    async def update_individual(
        self, principal: Principal, app_id: str, job_id: str, body: dict[str, Any]
    ) -> dict[str, Any]:
        """spec 4.4.4: new ``record_param`` applies from the next file; new ``publish_param`` at once."""
        await self._check_rtmp_urls(body)

        def work(s: Session) -> tuple[dict[str, Any], JobSpec, str]:
            load_app(s, principal, app_id)
            job = self._load(s, app_id, job_id, INDIVIDUAL, for_update=True)
            self._require_not_stopped(job)
            params = dict(job.params)
            for key in ("publish_param", "record_param"):
                if body.get(key) is not None:
                    params[key] = body[key]
            if body.get("record_param") is not None:
                job.record_rule_id = self._check_rule(s, app_id, body["record_param"]["record_rule_id"])
            job.params = params
            job.update_time = self._clock.now()
            return individual_view(job), self._spec(s, job), job.state

        result, spec, state = await self._db.run(work)
        if not await self._on_room_node(spec.app_id, spec.room_id, job_id) and state == RUNNING:
            await self.engine.update(spec)
            self._note_applied(spec)
        return result

    async def update_mix(self, principal: Principal, app_id: str, job_id: str, body: dict[str, Any]) -> dict[str, Any]:
        """spec 4.8.3: change the layout (custom templates only), images or ``max_idle_time``."""
        update_param = drop_none(body["mix_param"])
        if update_param.get("layout_panes") is not None:
            update_param["layout_panes"] = [drop_none(p) for p in update_param["layout_panes"]]

        def work(s: Session) -> tuple[dict[str, Any], JobSpec, str]:
            load_app(s, principal, app_id)
            job = self._load(s, app_id, job_id, MIX, for_update=True)
            self._require_not_stopped(job)
            mix = dict(job.params["mix_param"])
            mix_layout.check_update(mix, update_param)
            mix.update(update_param)
            job.params = {**job.params, "mix_param": mix}
            if "max_idle_time" in update_param and job.idle_deadline is not None:
                job.idle_deadline = self._clock.now() + update_param["max_idle_time"]
            job.update_time = self._clock.now()
            return mix_view(job), self._spec(s, job), job.state

        result, spec, _ = await self._db.run(work)
        # RUNNING or still INIT (a recorder may be waiting for media): either way the recorder, if any, takes
        # the new layout and images now (the engine ignores jobs it does not run). On another node the room's
        # node is told at once, and its next pass would notice the change anyway.
        if not await self._on_room_node(spec.app_id, spec.room_id, job_id):
            await self.engine.update(spec)
            self._note_applied(spec)
        return result

    async def stop(self, principal: Principal, app_id: str, job_id: str, kind: str) -> None:
        """spec 4.4.3 / 4.8.4. Stopping a stopped job is a no-op (the request is safe to repeat)."""

        def work(s: Session) -> tuple[str, str]:
            load_app(s, principal, app_id)
            job = self._load(s, app_id, job_id, kind)
            return job.state, job.room_id

        state, room_id = await self._db.run(work)
        if state != STOPPED and await self.mark_stopped(job_id, STOPPED_BY_API, "stopped by a stop request"):
            await self._on_room_node(app_id, room_id, job_id)

    # --- automatic recording (spec 4.6) ----------------------------------------------------

    async def auto_record(self, app_id: str, room_id: str, user_id: str, stream: str) -> str | None:
        """A user published ``stream`` (``camera`` or ``screen``): with ``AUTO_INDIVIDUAL_RECORD`` in force
        when the room run opened, record it with that rule. Returns the job ID when a job was created; a
        publisher whose automatic job is still unfinished (a re-publish, a reconnect) keeps that job."""
        slot = AUTO_SLOTS.get(stream)
        if slot is None:
            return None
        now = self._clock.now()
        camera = stream == "camera"

        def work(s: Session) -> JobSpec | None:
            room = s.execute(
                select(Room).where(Room.app_id == app_id, Room.room_id == room_id, Room.state == "RUNNING")
            ).scalar_one_or_none()
            if room is None or room.auto_record_rule_id is None:
                return None
            app = s.get(App, app_id)
            if app is None or app.state != ACTIVATION:
                return None  # a disabled app starts no recordings (RTC.00001016)
            if s.get(RecordRule, room.auto_record_rule_id) is None:
                log.warning(
                    "app %s room %s: automatic recording rule %s no longer exists; %s's %s is not recorded",
                    app_id, room_id, room.auto_record_rule_id, user_id, stream,
                )  # fmt: skip
                return None
            unfinished = s.scalar(
                select(Job.job_id).where(
                    Job.app_id == app_id,
                    Job.room_id == room_id,
                    Job.user_id == user_id,
                    Job.slot == slot,
                    Job.state != STOPPED,
                )
            )
            if unfinished:
                return None
            job = Job(
                job_id=new_hex_id(),
                app_id=app_id,
                kind=INDIVIDUAL,
                slot=slot,
                room_id=room_id,
                user_id=user_id,
                stream_name=auto_stream_name(app_id, room_id, user_id, stream),
                params={
                    "is_record_audio": camera,
                    "video_type": "CAMERASTREAM" if camera else "SCREENSTREAM",
                    "max_idle_time": self._auto_max_idle,
                    "record_param": {"record_rule_id": room.auto_record_rule_id},
                },
                record_rule_id=room.auto_record_rule_id,
                state=INIT,
                description="automatic recording: waiting for media",
                create_time=now,
                update_time=now,
                start_time=now,
                idle_deadline=now + self._auto_max_idle,
            )
            s.add(job)
            try:
                with s.begin_nested():
                    s.flush()
            except IntegrityError:  # the same publish seen twice at once: the other made the job
                return None
            return self._spec(s, job)

        spec = await self._db.run(work)
        if spec is None:
            return None
        log.info(
            "app %s room %s: recording %s's %s automatically (job %s)", app_id, room_id, user_id, stream, spec.job_id
        )
        # Start at once rather than on the next supervisor pass, without holding up the publisher's answer.
        task = asyncio.create_task(self._start_when_present(spec), name=f"auto-record-{spec.job_id}")
        self._starting.add(task)
        task.add_done_callback(self._starting.discard)
        return spec.job_id

    async def close(self) -> None:
        """Server shutdown: automatic jobs being handed to the engine are left for the next run."""
        for task in list(self._starting):
            task.cancel()
        await asyncio.gather(*self._starting, return_exceptions=True)

    async def _start_when_present(self, spec: JobSpec) -> None:
        try:
            if await self.media.has_stream(spec.app_id, spec.room_id, spec.user_id, spec.params.get("video_type")):
                await self._start_engine(spec)
        except Exception:  # the supervisor's next pass tries again
            log.exception("job %s: starting the automatic recording failed", spec.job_id)

    # --- after a restart --------------------------------------------------------------------

    async def recover(self) -> int:
        """Reconcile what the previous server run left unfinished (before the supervisor starts).

        Every job that is not ``STOPPED`` lost its recorder with that run. A job that was recording (no
        countdown running) starts its ``max_idle_time`` countdown now; one already counting down (waiting in
        ``INIT``, or idle) keeps its deadline. If the user's stream is there (again) in time, the supervisor
        hands the job to the engine and it records on into new files; if not, it stops with ``IDLE_TIMEOUT``
        and a description saying so. In a cluster only this node's jobs (those it had claimed; their claims
        are released, so whichever node hosts the room next resumes them): a live node's jobs are left alone.
        Returns how many jobs were unfinished."""
        mine = None
        if self.cluster:
            # Its own; and jobs nobody claimed that no countdown watches (left RUNNING by a single node run
            # before the cluster: no live node runs a job without claiming it).
            orphaned = and_(Job.node_id.is_(None), Job.idle_deadline.is_(None))
            mine = or_(Job.node_id == self.node_id, orphaned)
        count, rooms = await self._release(mine, "the server restarted: waiting for media to resume")
        # Once, at start: the first pass looks at these rooms (from then on, streams going live wake them).
        self._wake(*rooms)
        if count:
            log.info("%d unfinished recording jobs from the previous run: resuming when their media is there", count)
        return count

    async def release_node(self, node_id: str) -> int:
        """Node ``node_id`` died (``cluster.failover``): its jobs are reconciled as after its restart: their
        claims released, their ``max_idle_time`` countdown started, to resume on the room's new node when the
        user publishes again there, or to stop with ``IDLE_TIMEOUT``. Returns how many jobs it held."""
        count, rooms = await self._release(
            Job.node_id == node_id, f"node {node_id} was lost: waiting for media to resume on another node"
        )
        self._wake(*rooms)  # their media may be here already (the users rejoined on this node)
        if count:
            log.warning("node %s was lost: %d of its recording jobs wait for their media to resume", node_id, count)
        return count

    async def claiming_nodes(self) -> set[str]:
        """The nodes holding unfinished jobs (the ``(node_id, state)`` index answers)."""
        q = select(Job.node_id).where(Job.node_id.is_not(None), Job.state.in_(UNFINISHED)).distinct()
        return await self._db.run(lambda s: {str(n) for n in s.execute(q).scalars()})

    async def _release(self, which: ColumnElement[bool] | None, description: str) -> tuple[int, set[tuple[str, str]]]:
        now = self._clock.now()

        def work(s: Session) -> tuple[int, set[tuple[str, str]]]:
            q = select(Job).where(Job.state.in_(UNFINISHED))
            if which is not None:
                q = q.where(which)
            jobs = list(s.execute(q.with_for_update()).scalars())
            for job in jobs:
                job.node_id = None
                if job.idle_deadline is None:
                    job.idle_deadline = now + self._max_idle(job)
                    job.description = description
                    job.update_time = now
            return len(jobs), {(job.app_id, job.room_id) for job in jobs}

        return await self._db.run(work)

    # --- state changes (the supervisor and the recording engine call these) --------------

    async def mark_running(self, job_id: str, description: str = "recording") -> None:
        now = self._clock.now()
        await self._db.run(
            lambda s: s.execute(
                update(Job)
                .where(Job.job_id == job_id, Job.state != STOPPED)
                .values(state=RUNNING, description=description, idle_deadline=None, update_time=now)
            )
        )

    async def mark_idle(self, job_id: str) -> None:
        """The job's media went away: the ``max_idle_time`` countdown starts again."""

        def work(s: Session) -> None:
            job = s.get(Job, job_id, with_for_update=True)
            if job is None or job.state == STOPPED:
                return
            job.idle_deadline = self._clock.now() + self._max_idle(job)
            job.description = "waiting for media"

        await self._db.run(work)

    async def describe(self, job_id: str, description: str) -> None:
        """A new ``description`` for a job that is not over (e.g. the state of its RTMP pushes)."""
        now = self._clock.now()
        await self._db.run(
            lambda s: s.execute(
                update(Job)
                .where(Job.job_id == job_id, Job.state != STOPPED)
                .values(description=description, update_time=now)
            )
        )

    async def mark_stopped(self, job_id: str, reason: str, description: str) -> bool:
        """Stop the job (once); tell the engine to finish its files. True if this call stopped it."""
        now = self._clock.now()
        stmt = (
            update(Job)
            .where(Job.job_id == job_id, Job.state != STOPPED)
            .values(
                state=STOPPED,
                stop_reason=reason,
                description=description,
                stop_time=now,
                update_time=now,
                idle_deadline=None,
            )
        )
        stopped = await self._db.run(lambda s: bool(s.execute(stmt).rowcount))  # type: ignore[attr-defined]
        if stopped:
            self._forget(job_id)
            await self._stop_engine(job_id)
        return stopped

    def _forget(self, job_id: str) -> None:
        self._handed_over.discard(job_id)
        self._seen_update.pop(job_id, None)
        self._applied.pop(job_id, None)

    async def _stop_engine(self, job_id: str) -> None:
        try:
            await self.engine.stop(job_id)
        except Exception:  # the job is stopped either way; the engine's fault is logged
            log.exception("recording engine failed to stop job %s", job_id)

    async def stop_room_jobs(self, app_id: str, room_id: str, reason: str, description: str) -> list[str]:
        """Stop every unfinished job recording a room (used when the room is dismissed)."""
        ids = await self._db.run(
            lambda s: list(
                s.execute(
                    select(Job.job_id).where(Job.app_id == app_id, Job.room_id == room_id, Job.state != STOPPED)
                ).scalars()
            )
        )
        stopped = [i for i in ids if await self.mark_stopped(i, reason, description)]
        for job_id in stopped:
            await self._on_room_node(app_id, room_id, job_id)
        return stopped

    async def _on_room_node(self, app_id: str, room_id: str, job_id: str) -> bool:
        """In a cluster, have the node hosting the room apply the job's change; False when it is for this
        node to apply (a single node, or the room is here or nowhere)."""
        return self.nodes is not None and await self.nodes.job_changed(app_id, room_id, job_id)

    async def apply_change(self, app_id: str, room_id: str, job_id: str) -> None:
        """A job of a room hosted here was started, changed or stopped through another node (the database
        holds the change): start it if its media is here, give its recorder the new parameters, or stop
        its recorder, now rather than at the next supervisor pass."""

        def work(s: Session) -> tuple[str, JobSpec] | None:
            job = s.get(Job, job_id)
            if job is None or (job.app_id, job.room_id) != (app_id, room_id):
                return None
            return job.state, self._spec(s, job)

        found = await self._db.run(work)
        if found is None:
            return
        state, spec = found
        if state == STOPPED:
            if job_id in self._handed_over:
                self._forget(job_id)
                await self._stop_engine(job_id)
        elif job_id in self._handed_over:
            if self._applied.get(job_id) != _fingerprint(spec):  # a change the recorder has not taken yet
                log.info("job %s was changed through another node: its recorder here takes the change", job_id)
                await self.engine.update(spec)
                self._note_applied(spec)
        else:
            self._wake((app_id, room_id))  # the supervisor starts it at once if its media is here

    def stream_live(self, app_id: str, room_id: str) -> None:
        """A stream went live in a room on this node (the media plane calls this, and it does not block):
        the supervisor's next pass, now, starts the room's jobs waiting for it."""
        self._wake((app_id, room_id))

    def _wake(self, *rooms: tuple[str, str]) -> None:
        if rooms:
            self._wake_rooms.update(rooms)
            self._woken.set()

    async def wait_for_work(self, seconds: float) -> None:
        """Until something wakes the supervisor (:meth:`stream_live`, a job created here), ``seconds`` at most."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self._woken.wait()
        self._woken.clear()

    async def start_woken(self) -> None:
        """Start the jobs of the rooms woken since the last pass whose media is here (no other work)."""
        rooms, self._wake_rooms = self._wake_rooms, set()
        await self._start_rooms(rooms)

    async def tick(self) -> None:
        """One supervisor pass; its work is proportional to what is due, not to the jobs waiting:

        - rooms woken since the last pass (a stream went live here, a job was created here), and, among the
          rooms with media on this node (none: no query), those with jobs any node created or changed in the
          last ``CHANGE_WINDOW`` seconds (indexed ``update_time``): their unfinished jobs start when their
          stream is there;
        - jobs whose ``max_idle_time`` ran out (indexed ``idle_deadline <= now``) stop with
          ``IDLE_TIMEOUT``, unless their media came just now;
        - jobs recording here that another node stopped: their recorders stop; and those another node changed
          (a new ``record_param``, a layout): their recorders take the change (the jobs this node records are
          looked up by ID).

        In a cluster, deadlines are acted on only for jobs claimed by this node or by none (a dead node's
        claims are released first, ``cluster.failover``)."""
        now = self._clock.now()
        rooms, self._wake_rooms = self._wake_rooms, set()
        here = sorted(self._handed_over)
        live = sorted(self.media.live_rooms())

        def work(
            s: Session,
        ) -> tuple[list[Job], dict[str, JobSpec], list[tuple[str, str, str]], list[str], list[JobSpec]]:
            due = select(Job).where(Job.idle_deadline <= now, Job.state.in_(UNFINISHED))
            if self.cluster:
                due = due.where(or_(Job.node_id.is_(None), Job.node_id == self.node_id))
            expired = list(s.execute(due).scalars())
            # Only rooms with media here can start a job here: none, no query.
            changed = (
                s.execute(
                    select(Job.job_id, Job.app_id, Job.room_id).where(
                        Job.update_time >= now - CHANGE_WINDOW,
                        Job.state.in_(UNFINISHED),
                        tuple_(Job.app_id, Job.room_id).in_(live),
                    )
                ).all()
                if live
                else []
            )
            ours = (
                s.execute(select(Job.job_id, Job.state, Job.update_time, Job.node_id).where(Job.job_id.in_(here))).all()
                if here
                else []
            )
            if self.cluster:
                # Released while this node still runs them (it was taken for dead: stalled, or cut off from
                # Redis, for over cluster_node_ttl): claimed back, so no other node starts a second recorder.
                lapsed = [job_id for job_id, state, _, node in ours if state != STOPPED and node is None]
                if lapsed:
                    s.execute(
                        update(Job)
                        .where(Job.job_id.in_(lapsed), Job.node_id.is_(None), Job.state != STOPPED)
                        .values(node_id=self.node_id)
                    )
                    log.warning(
                        "jobs %s recording here had been released (this node was thought dead): claimed back", lapsed
                    )
            stopped = [job_id for job_id, state, _, _ in ours if state == STOPPED]
            touched = [
                job_id for job_id, state, at, _ in ours if state != STOPPED and self._seen_update.get(job_id) != at
            ]
            for job_id, state, at, _ in ours:
                if state != STOPPED:
                    self._seen_update[job_id] = at
            updated = [self._spec(s, job) for job in s.execute(select(Job).where(Job.job_id.in_(touched))).scalars()]
            specs = {j.job_id: self._spec(s, j) for j in expired}
            return expired, specs, [(j, a, r) for j, a, r in changed], stopped, updated

        expired, specs, changed, stopped, updated = await self._db.run(work)
        for job_id in stopped:  # stopped by another node (here mark_stopped stops the engine itself)
            if job_id in self._handed_over:
                self._forget(job_id)
                await self._stop_engine(job_id)
        for spec in updated:  # changed, perhaps through another node: the recorder takes the change
            if spec.job_id in self._handed_over and self._applied.get(spec.job_id) != _fingerprint(spec):
                log.info("job %s was changed: its recorder here takes the change", spec.job_id)
                await self.engine.update(spec)
                self._note_applied(spec)
        rooms |= {(app_id, room_id) for job_id, app_id, room_id in changed if job_id not in self._handed_over}
        started = await self._start_rooms(rooms)
        for job in expired:
            if job.job_id in started:
                continue
            if job.job_id not in self._handed_over and await self._has_media(specs[job.job_id]):
                # Media came (perhaps just at the deadline): the job records rather than expiring.
                await self._start_engine(specs[job.job_id])
                continue
            what = f"user {job.user_id}'s stream" if job.user_id else "any publisher"
            await self.mark_stopped(
                job.job_id,
                IDLE_TIMEOUT,
                f"no media from {what} in room {job.room_id} for max_idle_time={self._max_idle(job)} s",
            )

    async def _start_rooms(self, rooms: set[tuple[str, str]]) -> set[str]:
        """Start the unfinished jobs of ``rooms`` whose media is on this node; the IDs of those started."""
        live = sorted(rooms & self.media.live_rooms())
        if not live:
            return set()

        def work(s: Session) -> list[JobSpec]:
            in_rooms = tuple_(Job.app_id, Job.room_id).in_(live)
            jobs = s.execute(select(Job).where(in_rooms, Job.state.in_(UNFINISHED))).scalars()
            return [self._spec(s, job) for job in jobs]

        started: set[str] = set()
        for spec in await self._db.run(work):
            if spec.job_id not in self._handed_over and await self._has_media(spec):
                await self._start_engine(spec)
                started.add(spec.job_id)
        return started

    async def _has_media(self, spec: JobSpec) -> bool:
        return await self.media.has_stream(spec.app_id, spec.room_id, spec.user_id, spec.params.get("video_type"))

    # --- helpers ---------------------------------------------------------------------------

    async def _start_engine(self, spec: JobSpec) -> None:
        if spec.job_id in self._handed_over:
            return
        self._handed_over.add(spec.job_id)
        try:
            claimed = await self._claim(spec.job_id, self._max_idle_of(spec.kind, spec.params))
        except BaseException:
            self._handed_over.discard(spec.job_id)
            raise
        if not claimed:
            self._handed_over.discard(spec.job_id)
            log.info("job %s is run by another node (or stopped): not started here", spec.job_id)
            return
        self._applied[spec.job_id] = _fingerprint(spec)
        try:
            await self.engine.start(spec)
        except EmberError as exc:
            await self.mark_stopped(spec.job_id, FATAL_ERROR, exc.message)
            return
        await self._db.run(
            lambda s: s.execute(update(Job).where(Job.job_id == spec.job_id).values(recorded_on=self.node_id))
        )

    async def _claim(self, job_id: str, max_idle: int) -> bool:
        """Take the job for this node's engine: one conditional UPDATE, so of nodes racing for it exactly one
        wins (in a cluster, a job another node claimed stays its until released). True if this node has it."""
        # The recorder needs a moment to report media: a deadline that passed must not stop it meanwhile.
        deadline = self._clock.now() + max_idle
        stmt = update(Job).where(Job.job_id == job_id, Job.state != STOPPED)
        if self.cluster:
            stmt = stmt.where(or_(Job.node_id.is_(None), Job.node_id == self.node_id))
        stmt = stmt.values(node_id=self.node_id, idle_deadline=deadline)
        return await self._db.run(lambda s: bool(s.execute(stmt).rowcount))  # type: ignore[attr-defined]

    def _note_applied(self, spec: JobSpec) -> None:
        if spec.job_id in self._handed_over:
            self._applied[spec.job_id] = _fingerprint(spec)

    async def _create(self, principal: Principal, app_id: str, job: Job) -> dict[str, Any]:
        await self._check_storage(principal, app_id, job)
        now = self._clock.now()

        def work(s: Session) -> dict[str, Any]:
            # The app's row, locked (PostgreSQL; SQLite's BEGIN IMMEDIATE serialises every writer): starts
            # in the same app, on any node, count and insert one after the other, so two cannot both take
            # the last place under the cap.
            app = load_app(s, principal, app_id, for_update=True)
            require_active(app)
            record_param = job.params.get("record_param")
            if record_param:
                job.record_rule_id = self._check_rule(s, app_id, record_param["record_rule_id"])
            if job.kind == INDIVIDUAL:
                self._check_no_duplicate(s, app_id, job)
            self._check_capacity(s, app_id)
            job.app_id = app_id
            job.state = INIT
            job.description = "waiting for media"
            job.create_time = job.update_time = job.start_time = now
            job.idle_deadline = now + self._max_idle(job)
            s.add(job)
            try:
                s.flush()
            except IntegrityError as exc:  # a concurrent start for the same room and user won
                raise JobRunning(f"a job for user {job.user_id} in room {job.room_id} is not over") from exc
            return view(job)

        result = await self._db.run(work)
        # Its media may be here (or on the room's node) already: start it now, not at a deadline.
        if not await self._on_room_node(app_id, job.room_id, job.job_id):
            self._wake((app_id, job.room_id))
        return result

    def _check_capacity(self, s: Session, app_id: str) -> None:
        """RTC.00001007: no more than ``max_unfinished`` jobs of the app unfinished (the ``(app_id, state)``
        index counts them)."""
        count = s.scalar(select(func.count()).select_from(Job).where(Job.app_id == app_id, Job.state.in_(UNFINISHED)))
        if count is not None and count >= self._max_unfinished:
            raise JobExceed(
                f"app {app_id} has {count} unfinished recording jobs, the most it may have: stop one to start another"
            )

    async def _check_storage(self, principal: Principal, app_id: str, job: Job) -> None:
        """spec 6.2 RTC.00001014: a rule whose bucket does not exist fails the start (nothing is stored)."""
        record_param = job.params.get("record_param")
        if self._storage is None or not record_param:
            return

        def work(s: Session) -> dict[str, Any]:
            load_app(s, principal, app_id)
            rule_id = self._check_rule(s, app_id, record_param["record_rule_id"])
            rule = s.get(RecordRule, rule_id)
            assert rule is not None
            return dict(rule.obs_addr)

        obs = await self._db.run(work)
        await self._storage.check_target(obs["location"], obs["bucket"], principal.project_id)

    async def _check_rtmp_urls(self, body: dict[str, Any]) -> None:
        """Every ``publish_param.rtmp_urls`` URL must lead somewhere the outbound policy allows
        (``domain.outbound``; each push checks again when it connects): RTC.00001003 naming the URL."""
        for i, url in enumerate((body.get("publish_param") or {}).get("rtmp_urls") or ()):
            try:
                await self._outbound.check(url, RTMP_SCHEMES)
            except OutboundRefused as exc:
                raise OutboundRefused(f"publish_param.rtmp_urls[{i}]: {exc.detail}") from None

    @staticmethod
    def _check_no_duplicate(s: Session, app_id: str, job: Job) -> None:
        other = s.scalar(
            select(Job.job_id).where(
                Job.app_id == app_id,
                Job.kind == INDIVIDUAL,
                Job.room_id == job.room_id,
                Job.user_id == job.user_id,
                Job.slot == API_SLOT,
                Job.state != STOPPED,
            )
        )
        if other:
            raise JobRunning(f"job {other} for user {job.user_id} in room {job.room_id} is not over")

    @staticmethod
    def _check_rule(s: Session, app_id: str, rule_id: str) -> str:
        if not s.scalar(select(RecordRule.rule_id).where(RecordRule.app_id == app_id, RecordRule.rule_id == rule_id)):
            raise RecordRuleNotExist(f"rule {rule_id} does not exist under app {app_id}")
        return rule_id

    @staticmethod
    def _load(s: Session, app_id: str, job_id: str, kind: str, for_update: bool = False) -> Job:
        q = select(Job).where(Job.job_id == job_id, Job.app_id == app_id, Job.kind == kind)
        if for_update:
            q = q.with_for_update()
        job = s.execute(q).scalar_one_or_none()
        if job is None:
            raise JobNotExist(f"job {job_id} does not exist under app {app_id}")
        return job

    @staticmethod
    def _require_not_stopped(job: Job) -> None:
        if job.state == STOPPED:
            raise JobDone(f"job {job.job_id} stopped at {spec_time(job.stop_time)} ({job.stop_reason})")

    @classmethod
    def _max_idle(cls, job: Job) -> int:
        return cls._max_idle_of(job.kind, job.params)

    @staticmethod
    def _max_idle_of(kind: str, params: dict[str, Any]) -> int:
        if kind == MIX:
            return int(params["mix_param"].get("max_idle_time", 30))
        return int(params.get("max_idle_time", 30))

    @staticmethod
    def _spec(s: Session, job: Job) -> JobSpec:
        rule = s.get(RecordRule, job.record_rule_id) if job.record_rule_id else None
        app = s.get(App, job.app_id)
        tenant = s.get(Tenant, app.domain_id) if app is not None else None
        return JobSpec(
            job.job_id,
            job.app_id,
            job.kind,
            job.room_id,
            job.user_id,
            job.stream_name,
            dict(job.params),
            rule_view(rule) if rule else None,
            tenant.project_id if tenant is not None else None,
        )


def _fingerprint(spec: JobSpec) -> str:
    """What of a job its recorder acts on, to tell a change from a mere new ``update_time``."""
    return json.dumps([spec.params, spec.record_rule], sort_keys=True, default=str)


class JobSupervisor:
    """Runs :meth:`JobService.tick` every ``interval`` seconds, and :meth:`JobService.start_woken` at once when
    something wakes it between passes (a stream went live, a job was created), until stopped (survives
    restarts: all state it acts on is in the database)."""

    def __init__(self, jobs: JobService, interval: float) -> None:
        self._jobs = jobs
        self._interval = interval
        self._loop = BackgroundTask("job-supervisor", self._run)

    def start(self) -> None:
        self._loop.start()

    async def stop(self) -> None:
        await self._loop.stop()

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        next_pass = loop.time()
        while True:
            try:
                if loop.time() >= next_pass:
                    next_pass = loop.time() + self._interval
                    await self._jobs.tick()
                else:  # woken between passes: only the rooms that woke it, no query for what is due
                    await self._jobs.start_woken()
            except Exception:
                log.exception("job supervisor pass failed")
            await self._jobs.wait_for_work(max(0.0, next_pass - loop.time()))
