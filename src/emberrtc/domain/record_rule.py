"""Recording rules (spec 4.9): where and how recordings are written."""

from __future__ import annotations

import functools
import sqlite3
from types import SimpleNamespace
from typing import Any, cast

import orjson
from sqlalchemy import JSON, Table, bindparam, select
from sqlalchemy.dialects import sqlite as sqlite_dialect
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from emberrtc.domain.app import AUTO_INDIVIDUAL_RECORD, STOPPED, AppService, drop_none, load_app
from emberrtc.domain.clock import Clock, spec_time
from emberrtc.domain.errors import AppNotExist, InvalidParameterValue, RecordRuleExist, RecordRuleNotExist, RuleInUse
from emberrtc.domain.secrets import new_hex_id
from emberrtc.domain.tenant import Principal
from emberrtc.store.database import Database
from emberrtc.store.models import App, Job, RecordRule

# Tables 4-233/4-234: the default record_prefix
DEFAULT_PREFIX = "{app_id}/{record_format}/{stream}_{file_start_time}/{stream}_{file_start_time}"


def rule_view(rule: Any) -> dict[str, Any]:
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


def check_project(principal: Principal, obs_addr: dict[str, Any]) -> None:
    """Table 4-232 ``obs_addr.project_id`` names whose storage the files go to: only the caller's own
    project may be named (RTC.00001003), for every location, local or S3-compatible. (A local location
    keeps each project's buckets apart by the app's project in any case, ``storage.local_store``.)"""
    if obs_addr.get("project_id") != principal.project_id:
        raise InvalidParameterValue(
            f"obs_addr.project_id {obs_addr.get('project_id')!r} is not the caller's project: a rule may name "
            "only the project of the credentials it is created with"
        )


# A replaced rule keeps its id and creation time (and its app: the conflict is on app_id and location).
_KEPT = ("rule_id", "app_id", "create_time")


@functools.cache
def _upsert_statement(dialect: str) -> Any:
    """spec 4.9.1 create-or-replace as one statement, the unique (app_id, location) key deciding which.

    Built once with bind parameters: building a statement per call costs SQLAlchemy more than SQLite
    takes to run it.
    """
    table = cast(Table, RecordRule.__table__)
    insert = sqlite_insert if dialect == "sqlite" else pg_insert
    ins = insert(table).values({c.name: bindparam(c.name, type_=c.type) for c in table.c})
    return ins.on_conflict_do_update(
        index_elements=["app_id", "location"],
        set_={c.name: ins.excluded[c.name] for c in table.c if c.name not in _KEPT},
    ).returning(*table.c)


@functools.cache
def _sqlite_upsert() -> tuple[str, tuple[str, ...], frozenset[str]]:
    """The same statement as ``_upsert_statement("sqlite")``, as SQL for the DB-API connection: its SQL
    text, the column order of what it returns, and the JSON columns (stored as JSON text, as
    SQLAlchemy's JSON type stores them)."""
    table = cast(Table, RecordRule.__table__)
    stmt = _upsert_statement("sqlite")
    sql = str(stmt.compile(dialect=sqlite_dialect.dialect(paramstyle="named")))
    columns = tuple(c.name for c in table.c)
    return sql, columns, frozenset(c.name for c in table.c if isinstance(c.type, JSON))


def _sqlite_create_or_replace(sql: str, params: dict[str, Any], conn: sqlite3.Connection) -> tuple[Any, ...]:
    """The create-or-replace upsert through the DB-API connection (run by ``Database.run_sqlite``)."""
    try:
        # fetchall: step the statement to its end, so it is finished before the COMMIT
        (row,) = conn.execute(sql, params).fetchall()
    except sqlite3.IntegrityError as exc:  # the app was deleted meanwhile (foreign key)
        raise AppNotExist(f"app {params['app_id']} does not exist") from exc
    return tuple(row)


class RecordRuleService:
    def __init__(self, db: Database, clock: Clock, apps: AppService) -> None:
        self._db = db
        self._clock = clock
        self._apps = apps

    async def create_or_replace(self, principal: Principal, app_id: str, body: dict[str, Any]) -> dict[str, Any]:
        """spec 4.9.1: one rule per app and ``obs_addr.location``; a POST for an existing location replaces it
        (keeping its ``rule_id``, so jobs and the auto-record mode that use it keep working)."""
        data = _normalise(body)
        now = self._clock.now()
        if not await self._apps.exists(principal, app_id):
            raise AppNotExist(f"app {app_id} does not exist")
        check_project(principal, data["obs_addr"])
        params = {
            **data,
            "rule_id": new_hex_id(),
            "app_id": app_id,
            "location": data["obs_addr"]["location"],
            "create_time": now,
            "update_time": now,
        }
        if self._db.dialect == "sqlite":
            # The same SQL and stored values as the SQLAlchemy path below, without its per-call cost
            # (~20 us against ~270 us through a session; docs/decisions.md).
            sql, columns, json_columns = _sqlite_upsert()
            # JSON text as SQLAlchemy's JSON type reads it (orjson: compact, and ten times faster than json).
            stored = {k: orjson.dumps(v).decode() if k in json_columns else v for k, v in params.items()}
            row = await self._db.run_sqlite(functools.partial(_sqlite_create_or_replace, sql, stored))
            # The row is ``params`` but for the columns a replace keeps (the statement sets every other
            # column from ``params``): decoding the JSON columns back would only give ``params`` again.
            kept = {k: v for k, v in zip(columns, row, strict=True) if k in _KEPT}
            return rule_view(SimpleNamespace(**{**params, **kept}))
        stmt = _upsert_statement(self._db.dialect)

        def work(s: Session) -> dict[str, Any]:
            try:
                row = s.connection().execute(stmt, params).one()
            except IntegrityError as exc:  # the app was deleted meanwhile (foreign key)
                raise AppNotExist(f"app {app_id} does not exist") from exc
            return rule_view(row)  # a Row has the same attribute names as the model

        return await self._db.run(work)

    async def list_rules(self, principal: Principal, app_id: str, offset: int, limit: int) -> dict[str, Any]:
        def work(s: Session) -> dict[str, Any]:
            load_app(s, principal, app_id)
            rules = s.execute(
                select(RecordRule)
                .where(RecordRule.app_id == app_id)
                .order_by(RecordRule.create_time, RecordRule.rule_id)
                .offset(offset)
                .limit(limit)
            ).scalars()
            return {"rules": [rule_view(r) for r in rules]}

        return await self._db.run(work)

    async def show(self, principal: Principal, app_id: str, rule_id: str) -> dict[str, Any]:
        def work(s: Session) -> dict[str, Any]:
            load_app(s, principal, app_id)
            return rule_view(self._load(s, app_id, rule_id))

        return await self._db.run(work)

    async def update(self, principal: Principal, app_id: str, rule_id: str, body: dict[str, Any]) -> dict[str, Any]:
        """spec 4.9.4: replace the rule's content; jobs already recording keep the rule they started with."""
        data = _normalise(body)

        def work(s: Session) -> dict[str, Any]:
            load_app(s, principal, app_id, for_update=True)
            rule = self._load(s, app_id, rule_id)
            check_project(principal, data["obs_addr"])
            location = data["obs_addr"]["location"]
            if location != rule.location:
                clash = s.scalar(
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

        return await self._db.run(work)

    async def delete(self, principal: Principal, app_id: str, rule_id: str) -> None:
        """spec 4.9.5: rules in use (auto-record mode, or a job not stopped) cannot be deleted."""

        def work(s: Session) -> None:
            app: App = load_app(s, principal, app_id, for_update=True)
            rule = self._load(s, app_id, rule_id)
            if app.auto_record_mode == AUTO_INDIVIDUAL_RECORD and app.auto_record_rule_id == rule_id:
                raise RuleInUse(f"rule {rule_id} is used by the app's automatic recording; switch it off first")
            job = s.scalar(select(Job.job_id).where(Job.record_rule_id == rule_id, Job.state != STOPPED).limit(1))
            if job:
                raise RuleInUse(f"rule {rule_id} is used by job {job}, which has not stopped")
            s.delete(rule)

        await self._db.run(work)

    @staticmethod
    def _load(s: Session, app_id: str, rule_id: str) -> RecordRule:
        rule = s.execute(
            select(RecordRule).where(RecordRule.app_id == app_id, RecordRule.rule_id == rule_id)
        ).scalar_one_or_none()
        if rule is None:
            raise RecordRuleNotExist(f"rule {rule_id} does not exist under app {app_id}")
        return rule
