"""The one place that chooses implementations from configuration and wires the services together."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from emberrtc.api.ratelimit import RateLimiter
from emberrtc.config import Settings
from emberrtc.domain.app import AppService
from emberrtc.domain.clock import Clock, SystemClock
from emberrtc.domain.job import JobService, JobSupervisor
from emberrtc.domain.ports import MediaPlane, NoMediaPlane, RecordingEngine, UnavailableRecordingEngine
from emberrtc.domain.record_rule import RecordRuleService
from emberrtc.domain.room import RoomService
from emberrtc.domain.room_session import RoomSessionService
from emberrtc.domain.secrets import SecretBox
from emberrtc.domain.tenant import TenantService
from emberrtc.domain.usage import UsageService
from emberrtc.media.plane import JanusMediaPlane
from emberrtc.media.recording_source import PlaneMediaSource
from emberrtc.recording.outputs import RecordingOutputs
from emberrtc.recording.supervisor import RecordingSupervisor
from emberrtc.stats.collector import StatsCollector
from emberrtc.stats.janus import JanusStatsPoller
from emberrtc.stats.queries import StatsQueries
from emberrtc.stats.region import RegionLocator
from emberrtc.stats.rollup import StatsRollup
from emberrtc.stats.writer import StatsWriter
from emberrtc.storage.registry import StorageRegistry
from emberrtc.store.database import Database, default_url


@dataclass
class Services:
    settings: Settings
    clock: Clock
    db: Database
    tenants: TenantService
    apps: AppService
    rules: RecordRuleService
    jobs: JobService
    rooms: RoomService
    rate_limiter: RateLimiter
    #: Failed IAM sign-ins per user and client address (``settings.signin_limits``), always on.
    signin_limiter: RateLimiter
    supervisor: JobSupervisor
    room_sessions: RoomSessionService
    #: Object storage by ``obs_addr.location``; recording outputs (spool uploads, callback outbox delivery).
    storage: StorageRegistry
    outputs: RecordingOutputs
    #: Recorded and transcoded seconds per app and day (counted by ``outputs`` as files complete).
    usage: UsageService
    #: Statistics: what signalling reports (buffered, written in batches) and the roll-ups with pruning.
    stats_collector: StatsCollector
    stats_rollup: StatsRollup
    #: The statistics API's reads (spec section 5).
    stats_queries: StatsQueries
    background: list[object] = field(default_factory=list)
    #: The media plane (Janus) when ``settings.media_enabled``; None: no room can run.
    plane: JanusMediaPlane | None = None
    #: The recording engine fed by the media plane (None without a media plane: jobs cannot record).
    recorder: RecordingSupervisor | None = None
    media_source: PlaneMediaSource | None = None
    #: The SFU's statistics of every leg (polled from Janus's admin API) when there is a media plane.
    stats_janus: JanusStatsPoller | None = None

    async def start(self) -> None:
        """Begin background work (the job supervisor, Janus); the schema is already migrated."""
        # Rooms live in this process: whatever a previous run left open ended with it.
        await self.room_sessions.recover()
        # Recordings of the previous run: its workers' last files are stored and reported, then its
        # unfinished jobs wait for their media to resume.
        if self.recorder is not None:
            await self.recorder.recover()
        await self.jobs.recover()
        if self.plane is not None:
            await self.plane.start()
        self.supervisor.start()
        self.outputs.start()
        self.stats_collector.writer.start()
        self.stats_rollup.start()
        if self.stats_janus is not None:
            self.stats_janus.start()

    async def close(self) -> None:
        # No new job starts; running ones finish their files (reported to the outputs) and stay resumable.
        await self.supervisor.stop()
        await self.jobs.close()
        if self.recorder is not None:
            await self.recorder.close()
        if self.media_source is not None:
            await self.media_source.close()
        await self.outputs.stop()
        if self.stats_janus is not None:
            await self.stats_janus.stop()
        await self.stats_rollup.stop()
        await self.stats_collector.writer.stop()
        if self.plane is not None:
            await self.plane.stop()
        await self.db.close()


def _public_host(settings: Settings) -> str:
    """The host name clients reach this server by (``public_url``'s, else the listening address)."""
    return urlsplit(settings.public_url).hostname or settings.host if settings.public_url else settings.host


def database_url(settings: Settings) -> str:
    return settings.database_url or default_url(settings.data_dir)


def private_folder(folder: Path) -> None:
    """Create the data folder owner-only (0700), or make an existing one so: it holds the database, its
    WAL, the keys, recordings and Janus's log. (``ember`` also runs with umask 077, so what is created in
    it is 0600/0700 too.)"""
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    if folder.stat().st_uid == os.getuid() and folder.stat().st_mode & 0o077:
        folder.chmod(0o700)


async def build(
    settings: Settings,
    *,
    clock: Clock | None = None,
    media: MediaPlane | None = None,
    recorder: RecordingEngine | None = None,
) -> Services:
    """Create the data folder, migrate the database and assemble every service."""
    clock = clock or SystemClock()
    private_folder(settings.data_dir)
    db = Database(database_url(settings))
    await db.migrate()
    box = SecretBox.from_settings(settings.master_key, settings.data_dir)
    plane = media if isinstance(media, JanusMediaPlane) else None
    if media is None and settings.media_enabled:
        plane = media = JanusMediaPlane.from_settings(settings)
    media = media or NoMediaPlane()
    storage = StorageRegistry.from_settings(settings, clock)
    apps = AppService(
        db,
        box,
        clock,
        settings.max_apps_per_tenant,
        cache_ttl=None if db.dialect == "sqlite" else settings.app_cache_ttl,
    )
    outputs = RecordingOutputs.from_settings(settings, db, box, clock, storage)
    engine: RecordingSupervisor | None = None
    source: PlaneMediaSource | None = None
    if recorder is None and plane is not None:
        source = PlaneMediaSource(plane)
        recorder = engine = RecordingSupervisor(outputs, source, spool_root=outputs.spool.root)
        source.attach(engine)
    jobs = JobService(
        db,
        clock,
        media,
        recorder or UnavailableRecordingEngine(),
        storage=outputs,
        auto_max_idle_time=settings.auto_record_max_idle_time,
        max_unfinished=settings.max_unfinished_jobs_per_app,
    )
    if engine is not None:
        engine.attach(jobs)
    if plane is not None:
        # A stream going live wakes the job supervisor for its room: jobs waiting for media start then,
        # without any pass over the jobs that wait.
        plane.feed_listeners.append(lambda feed: jobs.stream_live(*feed.room))
    locator = RegionLocator(Path(settings.ip_database) if settings.ip_database else None)
    collector = StatsCollector(StatsWriter(db), clock, locator)
    return Services(
        settings=settings,
        clock=clock,
        db=db,
        tenants=TenantService(
            db,
            box,
            clock,
            settings.token_ttl,
            scrypt_n=settings.password_scrypt_n,
            hash_concurrency=settings.password_hash_concurrency,
        ),
        apps=apps,
        rules=RecordRuleService(db, clock, apps),
        jobs=jobs,
        rooms=RoomService(apps, media, jobs),
        rate_limiter=RateLimiter(settings.rate_limits, clock, settings.rate_limits_enabled),
        signin_limiter=RateLimiter(settings.signin_limits, clock),
        supervisor=JobSupervisor(jobs, settings.job_tick),
        room_sessions=RoomSessionService(db, box, clock),
        storage=storage,
        outputs=outputs,
        usage=UsageService(db),
        stats_collector=collector,
        stats_rollup=StatsRollup.from_settings(settings, db, clock),
        stats_queries=StatsQueries(db, clock, _public_host(settings)),
        plane=plane,
        recorder=engine,
        media_source=source,
        stats_janus=None
        if plane is None
        else JanusStatsPoller(
            plane, collector.writer, clock, collector.sdk_type_of_session, settings.stats_janus_interval
        ),
    )
