"""The one place that chooses implementations from configuration and wires the services together."""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker

from emberrtc.api.ratelimit import RateLimiter
from emberrtc.config import Settings
from emberrtc.domain.app import AppService
from emberrtc.domain.clock import Clock, SystemClock
from emberrtc.domain.job import JobService, JobSupervisor
from emberrtc.domain.ports import MediaPlane, NoMediaPlane, RecordingEngine, UnavailableRecordingEngine
from emberrtc.domain.record_rule import RecordRuleService
from emberrtc.domain.room import RoomService
from emberrtc.domain.secrets import SecretBox
from emberrtc.domain.tenant import TenantService
from emberrtc.store import migrate
from emberrtc.store.db import default_url, make_engine, make_sessionmaker


@dataclass
class Services:
    settings: Settings
    clock: Clock
    engine: AsyncEngine
    sessions: async_sessionmaker
    tenants: TenantService
    apps: AppService
    rules: RecordRuleService
    jobs: JobService
    rooms: RoomService
    rate_limiter: RateLimiter
    supervisor: JobSupervisor
    background: list[object] = field(default_factory=list)

    async def start(self) -> None:
        """Begin background work (the job supervisor); the schema is already migrated."""
        self.supervisor.start()

    async def close(self) -> None:
        await self.supervisor.stop()
        await self.engine.dispose()


def database_url(settings: Settings) -> str:
    return settings.database_url or default_url(settings.data_dir)


async def build(
    settings: Settings,
    *,
    clock: Clock | None = None,
    media: MediaPlane | None = None,
    recorder: RecordingEngine | None = None,
) -> Services:
    """Create the data folder, migrate the database and assemble every service."""
    clock = clock or SystemClock()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    engine = make_engine(database_url(settings))
    await migrate.upgrade(engine)
    sessions = make_sessionmaker(engine)
    box = SecretBox.from_settings(settings.master_key, settings.data_dir)
    media = media or NoMediaPlane()
    apps = AppService(
        sessions,
        box,
        clock,
        settings.max_apps_per_tenant,
        cache_ttl=None if engine.dialect.name == "sqlite" else settings.app_cache_ttl,
    )
    jobs = JobService(sessions, clock, media, recorder or UnavailableRecordingEngine())
    return Services(
        settings=settings,
        clock=clock,
        engine=engine,
        sessions=sessions,
        tenants=TenantService(sessions, box, clock, settings.token_ttl),
        apps=apps,
        rules=RecordRuleService(sessions, clock, apps),
        jobs=jobs,
        rooms=RoomService(sessions, media, jobs),
        rate_limiter=RateLimiter(settings.rate_limits, clock, settings.rate_limits_enabled),
        supervisor=JobSupervisor(jobs, settings.job_tick),
    )
