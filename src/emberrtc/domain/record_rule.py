"""Recording rules (spec 4.9): where and how recordings are written."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import async_sessionmaker

from emberrtc.domain.app import AUTO_INDIVIDUAL_RECORD, STOPPED, AppService, drop_none, load_app
from emberrtc.domain.clock import Clock, spec_time
from emberrtc.domain.errors import AppNotExist, InvalidParameterValue, RecordRuleExist, RecordRuleNotExist, RuleInUse
from emberrtc.domain.secrets import new_hex_id
from emberrtc.domain.tenant import Principal
from emberrtc.store.models import App, Job, RecordRule

# Tables 4-233/4-234: the default record_prefix
DEFAULT_PREFIX = "{app_id}/{record_format}/{stream}_{file_start_time}/{stream}_{file_start_time}"


def rule_view(rule: RecordRule) -> dict[str, Any]:
    """Table 4-251 RecordRule."""
    return drop_none(
        {
            "rule_id": rule.rule_id,
            "app_id": rule.app_id,
            "obs_addr": rule.obs_addr,
            "record_formats": rule.record_formats,
            "hls_config": rule.hls_config,
            "mp4_config": rule.mp4_config,
            "create_time": spec_time(rule.create_time),
            "update_time": spec_time(rule.update_time),
        }
    )


def _normalise(body: dict[str, Any]) -> dict[str, Any]:
    """Fill the spec's defaults so stored rules are complete (record_prefix, slice, merge threshold)."""
    formats = body["record_formats"]
    out: dict[str, Any] = {
        "obs_addr": drop_none(body["obs_addr"]),
        "record_formats": formats,
        "hls_config": None,
        "mp4_config": None,
    }
    # A config object for a format that is not listed is kept as sent: it does no harm and echoes back.
    for fmt, key in (("HLS", "hls_config"), ("MP4", "mp4_config")):
        cfg = body.get(key)
        if cfg is not None:
            cfg = drop_none(cfg)
            cfg.setdefault("record_prefix", DEFAULT_PREFIX)
            out[key] = cfg
        elif fmt in formats:  # the schema makes this impossible; keep the domain honest on its own
            raise InvalidParameterValue(f"{key} is required for {fmt}")
    return out


class RecordRuleService:
    def __init__(self, sessions: async_sessionmaker, clock: Clock, apps: AppService) -> None:
        self._sessions = sessions
        self._clock = clock
        self._apps = apps

    async def create_or_replace(self, principal: Principal, app_id: str, body: dict[str, Any]) -> dict[str, Any]:
        """spec 4.9.1: one rule per app and ``obs_addr.location``; a POST for an existing location replaces it
        (keeping its ``rule_id``, so jobs and the auto-record mode that use it keep working)."""
        data = _normalise(body)
        now = self._clock.now()
        if not await self._apps.exists(principal, app_id):
            raise AppNotExist(f"app {app_id} does not exist")
        values = {**data, "location": data["obs_addr"]["location"], "update_time": now}
        async with self._sessions() as s, s.begin():
            # One statement for create-or-replace: the unique (app_id, location) key decides which.
            dialect = s.bind.dialect.name
            insert = sqlite_insert if dialect == "sqlite" else pg_insert
            stmt = (
                insert(RecordRule)
                .values(rule_id=new_hex_id(), app_id=app_id, create_time=now, **values)
                .on_conflict_do_update(index_elements=["app_id", "location"], set_=values)
                .returning(*RecordRule.__table__.c)
            )
            try:
                row = (await s.execute(stmt)).one()
            except IntegrityError as exc:  # the app was deleted meanwhile (foreign key)
                raise AppNotExist(f"app {app_id} does not exist") from exc
        return rule_view(RecordRule(**row._mapping))

    async def list_rules(self, principal: Principal, app_id: str, offset: int, limit: int) -> dict[str, Any]:
        async with self._sessions() as s:
            await load_app(s, principal, app_id)
            rules = (
                await s.execute(
                    select(RecordRule)
                    .where(RecordRule.app_id == app_id)
                    .order_by(RecordRule.create_time, RecordRule.rule_id)
                    .offset(offset)
                    .limit(limit)
                )
            ).scalars()
            return {"rules": [rule_view(r) for r in rules]}

    async def show(self, principal: Principal, app_id: str, rule_id: str) -> dict[str, Any]:
        async with self._sessions() as s:
            await load_app(s, principal, app_id)
            return rule_view(await self._load(s, app_id, rule_id))

    async def update(self, principal: Principal, app_id: str, rule_id: str, body: dict[str, Any]) -> dict[str, Any]:
        """spec 4.9.4: replace the rule's content; jobs already recording keep the rule they started with."""
        data = _normalise(body)
        async with self._sessions() as s, s.begin():
            await load_app(s, principal, app_id, for_update=True)
            rule = await self._load(s, app_id, rule_id)
            location = data["obs_addr"]["location"]
            if location != rule.location:
                clash = await s.scalar(
                    select(RecordRule.rule_id).where(
                        RecordRule.app_id == app_id, RecordRule.location == location, RecordRule.rule_id != rule_id
                    )
                )
                if clash:
                    raise RecordRuleExist(f"rule {clash} already holds location {location} for this app")
                rule.location = location
            for k, v in data.items():
                setattr(rule, k, v)
            rule.update_time = self._clock.now()
            return rule_view(rule)

    async def delete(self, principal: Principal, app_id: str, rule_id: str) -> None:
        """spec 4.9.5: rules in use (auto-record mode, or a job not stopped) cannot be deleted."""
        async with self._sessions() as s, s.begin():
            app: App = await load_app(s, principal, app_id, for_update=True)
            rule = await self._load(s, app_id, rule_id)
            if app.auto_record_mode == AUTO_INDIVIDUAL_RECORD and app.auto_record_rule_id == rule_id:
                raise RuleInUse(f"rule {rule_id} is used by the app's automatic recording; switch it off first")
            job = await s.scalar(select(Job.job_id).where(Job.record_rule_id == rule_id, Job.state != STOPPED).limit(1))
            if job:
                raise RuleInUse(f"rule {rule_id} is used by job {job}, which has not stopped")
            await s.delete(rule)

    @staticmethod
    async def _load(s: Any, app_id: str, rule_id: str) -> RecordRule:
        rule = (
            await s.execute(select(RecordRule).where(RecordRule.app_id == app_id, RecordRule.rule_id == rule_id))
        ).scalar_one_or_none()
        if rule is None:
            raise RecordRuleNotExist(f"rule {rule_id} does not exist under app {app_id}")
        return rule
