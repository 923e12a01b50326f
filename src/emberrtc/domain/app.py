"""Applications (spec 4.5), their recording callback (4.3) and automatic recording mode (4.6)."""

from __future__ import annotations

import secrets
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from emberrtc.domain.clock import Clock, spec_time
from emberrtc.domain.errors import AppDeactivation, AppExist, AppNotExist, AppsExceed, JobRunning, RecordRuleNotExist
from emberrtc.domain.outbound import HTTP_SCHEMES, OutboundPolicy, OutboundRefused
from emberrtc.domain.secrets import SecretBox, new_hex_id
from emberrtc.domain.tenant import Principal
from emberrtc.store.database import Database
from emberrtc.store.models import App, Job, RecordRule

T = TypeVar("T")

ACTIVATION, DEACTIVATION = "ACTIVATION", "DEACTIVATION"
AUTO_RECORD_OFF, AUTO_INDIVIDUAL_RECORD = "AUTO_RECORD_OFF", "AUTO_INDIVIDUAL_RECORD"
ALL_CALLBACK_EVENTS = ["RECORD_NEW_FILE_START", "RECORD_FILE_COMPLETE", "CLOUD_RECORD_OVER"]
# spec 4.5.2 Table 4-82: signature validity 300 s by default
DEFAULT_AUTH_EXPIRE = 300
STOPPED = "STOPPED"


def drop_none(d: dict[str, Any]) -> dict[str, Any]:
    """Responses leave out fields that have no value, as SparkRTC does."""
    return {k: v for k, v in d.items() if v is not None}


def load_app(s: Session, principal: Principal, app_id: str, *, for_update: bool = False) -> App:
    """The tenant's app, or 404 as if absent (tenants never see each other's apps)."""
    q = select(App).where(App.app_id == app_id, App.domain_id == principal.domain_id)
    if for_update:
        q = q.with_for_update()
    app = s.execute(q).scalar_one_or_none()
    if app is None:
        raise AppNotExist(f"app {app_id} does not exist")
    return app


def require_active(app: App) -> None:
    """spec 4.5.6: a disabled app refuses new rooms, jobs and recordings."""
    if app.state != ACTIVATION:
        raise AppDeactivation(f"app {app.app_id} is {app.state}")


class AppService:
    def __init__(
        self,
        db: Database,
        box: SecretBox,
        clock: Clock,
        max_apps: int,
        cache_ttl: float | None,
        *,
        outbound: OutboundPolicy,
    ) -> None:
        self._db = db
        self._outbound = outbound
        self._box = box
        self._clock = clock
        self._max_apps = max_apps
        # app_id -> (domain_id, view, cached at). Every write to an app goes through this service and
        # drops its entry, so with one process (SQLite) entries never go stale: cache_ttl None keeps
        # them. Several nodes on one PostgreSQL each cache for cache_ttl seconds at most.
        self._cache: dict[str, tuple[str, dict[str, Any], float]] = {}
        self._cache_ttl = cache_ttl
        #: In a cluster (set by bootstrap): tells every node's cache that an app changed
        #: (``cluster.cache_changes``), so none serves the old app until its TTL runs out.
        self.changed: Callable[[str], Awaitable[None]] | None = None

    def _cached(self, principal: Principal, app_id: str) -> dict[str, Any] | None:
        hit = self._cache.get(app_id)
        if hit is None or hit[0] != principal.domain_id:
            return None
        if self._cache_ttl is not None and self._clock.now() - hit[2] > self._cache_ttl:
            return None
        return hit[1]

    def forget(self, app_id: str | None) -> None:
        """Drop a cached app (called on every change to it); None: every cached app."""
        if app_id is None:
            self._cache.clear()
        else:
            self._cache.pop(app_id, None)

    async def _changing(self, app_id: str, work: Callable[[Session], T]) -> T:
        """Run a write to one app; its cache entry is dropped once the transaction has ended, so a read
        racing with the commit cannot put the old row back."""
        try:
            return await self._db.run(work)
        finally:
            self.forget(app_id)
            if self.changed is not None:
                await self.changed(app_id)

    async def exists(self, principal: Principal, app_id: str) -> bool:
        """Cheap ownership check for hot paths (cached); the database's foreign keys back it up."""
        if self._cached(principal, app_id) is not None:
            return True
        try:
            await self.show(principal, app_id)
        except AppNotExist:
            return False
        return True

    # --- representations -------------------------------------------------------------

    def callback_view(self, app: App) -> dict[str, Any] | None:
        if app.record_callback_url is None:
            return None
        auth_key = (
            self._box.open(app.record_callback_auth_key_encrypted) if app.record_callback_auth_key_encrypted else ""
        )
        return {
            "url": app.record_callback_url,
            "auth_key": auth_key,
            "notify_event_subscription": list(app.record_callback_events or []),
            "update_time": spec_time(app.record_callback_update_time),
        }

    @staticmethod
    def auto_record_view(app: App) -> dict[str, Any]:
        return drop_none(
            {
                "mode": app.auto_record_mode,
                "record_rule_id": app.auto_record_rule_id,
                "update_time": spec_time(app.auto_record_update_time),
            }
        )

    @staticmethod
    def state_view(app: App) -> dict[str, Any]:
        return {"state": app.state, "update_time": spec_time(app.state_update_time)}

    def view(self, app: App, principal: Principal) -> dict[str, Any]:
        """Table 4-80 App."""
        callbacks = drop_none({"record_callback": self.callback_view(app)})
        return {
            "app_name": app.app_name,
            "app_id": app.app_id,
            "state": self.state_view(app),
            "scope": app.scope,
            "tenant_name": principal.domain_name,
            "domain": f"{app.app_id} rtc.ember.local",
            "create_time": spec_time(app.create_time),
            "authentication": {
                "enable": app.auth_enable,
                "expire": app.auth_expire,
                "app_key": self.app_key(app),
                "update_time": spec_time(app.auth_update_time),
            },
            "callbacks": callbacks,
            "auto_record_mode": self.auto_record_view(app),
        }

    def app_key(self, app: App) -> str:
        return self._box.open(app.app_key_encrypted)

    # --- operations ----------------------------------------------------------------------

    async def create(self, principal: Principal, app_name: str) -> dict[str, Any]:
        now = self._clock.now()

        def work(s: Session) -> dict[str, Any]:
            count = s.scalar(select(func.count()).select_from(App).where(App.domain_id == principal.domain_id))
            if count is not None and count >= self._max_apps:
                raise AppsExceed(f"a tenant may have at most {self._max_apps} applications")
            if s.scalar(select(App.app_id).where(App.domain_id == principal.domain_id, App.app_name == app_name)):
                raise AppExist(f"an app named {app_name!r} exists already")
            app = App(
                app_id=new_hex_id(),
                domain_id=principal.domain_id,
                app_name=app_name,
                state=ACTIVATION,
                state_update_time=now,
                scope="GLOBAL",
                create_time=now,
                auth_enable=True,
                auth_expire=DEFAULT_AUTH_EXPIRE,
                app_key_encrypted=self._box.seal(secrets.token_hex(16)),
                auth_update_time=now,
                auto_record_mode=AUTO_RECORD_OFF,
                auto_record_update_time=now,
            )
            s.add(app)
            try:
                s.flush()
            except IntegrityError as exc:  # a concurrent create with the same name won the race
                raise AppExist(f"an app named {app_name!r} exists already") from exc
            return {"app_id": app.app_id}

        return await self._db.run(work)

    async def list_apps(self, principal: Principal, state: str | None, offset: int, limit: int) -> dict[str, Any]:
        """spec 4.5.2: ``offset`` is a record offset; ``count`` is the total matching."""

        def work(s: Session) -> dict[str, Any]:
            q = select(App).where(App.domain_id == principal.domain_id)
            c = select(func.count()).select_from(App).where(App.domain_id == principal.domain_id)
            if state:
                q, c = q.where(App.state == state), c.where(App.state == state)
            total = s.scalar(c)
            apps = s.execute(q.order_by(App.create_time, App.app_id).offset(offset).limit(limit)).scalars()
            return {"count": total or 0, "apps": [self.view(a, principal) for a in apps]}

        return await self._db.run(work)

    async def show(self, principal: Principal, app_id: str) -> dict[str, Any]:
        hit = self._cached(principal, app_id)
        if hit is not None:
            return hit
        result = await self._db.run(lambda s: self.view(load_app(s, principal, app_id), principal))
        self._cache[app_id] = (principal.domain_id, result, self._clock.now())
        return result

    async def delete(self, principal: Principal, app_id: str) -> None:
        """spec 4.5.4: refused (400) while any of the app's jobs has not stopped."""

        def work(s: Session) -> None:
            app = load_app(s, principal, app_id, for_update=True)
            running = s.scalar(select(Job.job_id).where(Job.app_id == app_id, Job.state != STOPPED).limit(1))
            if running:
                raise JobRunning(f"job {running} of this app has not stopped; stop it before deleting the app")
            s.delete(app)

        await self._changing(app_id, work)

    async def set_state(self, principal: Principal, app_id: str, state: str) -> dict[str, Any]:
        def work(s: Session) -> dict[str, Any]:
            app = load_app(s, principal, app_id, for_update=True)
            if app.state != state:
                app.state = state
                app.state_update_time = self._clock.now()
            return {"app_id": app.app_id, "state": self.state_view(app)}

        return await self._changing(app_id, work)

    async def set_record_callback(
        self, principal: Principal, app_id: str, url: str, auth_key: str | None, events: list[str] | None
    ) -> dict[str, Any]:
        """spec 4.3.1. The URL must lead somewhere the outbound policy allows (``domain.outbound``; checked
        again at every delivery): RTC.00001003 saying why not."""
        try:
            await self._outbound.check(url, HTTP_SCHEMES)
        except OutboundRefused as exc:
            raise OutboundRefused(f"url: {exc.detail}") from None

        def work(s: Session) -> dict[str, Any]:
            app = load_app(s, principal, app_id, for_update=True)
            app.record_callback_url = url
            app.record_callback_auth_key_encrypted = self._box.seal(auth_key) if auth_key else None
            app.record_callback_events = (
                sorted(set(events), key=ALL_CALLBACK_EVENTS.index) if events else list(ALL_CALLBACK_EVENTS)
            )
            app.record_callback_update_time = self._clock.now()
            return {"app_id": app.app_id, "record_callback": self.callback_view(app)}

        return await self._changing(app_id, work)

    async def show_record_callback(self, principal: Principal, app_id: str) -> dict[str, Any]:
        def work(s: Session) -> dict[str, Any]:
            app = load_app(s, principal, app_id)
            return drop_none({"app_id": app.app_id, "record_callback": self.callback_view(app)})

        return await self._db.run(work)

    async def set_auto_record(
        self, principal: Principal, app_id: str, mode: str, record_rule_id: str | None
    ) -> dict[str, Any]:
        """spec 4.6.1: ``AUTO_INDIVIDUAL_RECORD`` needs an existing rule of this app."""

        def work(s: Session) -> dict[str, Any]:
            app = load_app(s, principal, app_id, for_update=True)
            if record_rule_id is not None:
                exists = s.scalar(
                    select(RecordRule.rule_id).where(RecordRule.app_id == app_id, RecordRule.rule_id == record_rule_id)
                )
                if not exists:
                    raise RecordRuleNotExist(f"rule {record_rule_id} does not exist under app {app_id}")
            app.auto_record_mode = mode
            app.auto_record_rule_id = record_rule_id
            app.auto_record_update_time = self._clock.now()
            return {"app_id": app.app_id, "auto_record_mode": self.auto_record_view(app)}

        return await self._changing(app_id, work)

    async def show_auto_record(self, principal: Principal, app_id: str) -> dict[str, Any]:
        def work(s: Session) -> dict[str, Any]:
            app = load_app(s, principal, app_id)
            return {"app_id": app.app_id, "auto_record_mode": self.auto_record_view(app)}

        return await self._db.run(work)
