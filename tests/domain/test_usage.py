"""Usage accounting: seconds split at UTC midnight, each file counted once, per-day totals per app, on the
real database (SQLite and PostgreSQL)."""

from __future__ import annotations

import asyncio
import math
from calendar import timegm
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from emberrtc.config import Settings
from emberrtc.domain.errors import AppNotExist, InvalidParameterValue
from emberrtc.domain.secrets import new_hex_id
from emberrtc.domain.tenant import Principal
from emberrtc.domain.usage import UsageService, day_of, record_file, split_by_day
from emberrtc.store.database import Database, default_url
from emberrtc.store.models import App, Tenant, UsageEntry

NOW = 1_700_000_000.0


def utc(y: int, mo: int, d: int, h: int = 0, mi: int = 0, s: float = 0.0) -> float:
    return timegm((y, mo, d, h, mi, 0, 0, 0, 0)) + s


# --- day splitting (pure) -------------------------------------------------------------------------------


def test_a_file_within_one_day_is_one_piece() -> None:
    assert split_by_day(utc(2027, 1, 15, 8), utc(2027, 1, 15, 8, 1, 1.5)) == [("2027-01-15", 61.5)]


def test_a_file_across_midnight_counts_on_each_day() -> None:
    pieces = split_by_day(utc(2026, 12, 31, 23, 59, 30), utc(2027, 1, 1, 0, 0, 30))
    assert pieces == [("2026-12-31", 30.0), ("2027-01-01", 30.0)]


def test_midnight_itself_belongs_to_the_day_it_starts() -> None:
    midnight = utc(2027, 3, 1)
    assert split_by_day(midnight - 10, midnight) == [("2027-02-28", 10.0)]  # ends at midnight: nothing on 1 March
    assert split_by_day(midnight, midnight + 10) == [("2027-03-01", 10.0)]
    assert day_of(midnight) == "2027-03-01" and day_of(midnight - 0.001) == "2027-02-28"


def test_a_file_over_several_midnights_has_whole_days_between() -> None:
    pieces = split_by_day(utc(2028, 2, 28, 23), utc(2028, 3, 1, 1))  # 2028 is a leap year
    assert pieces == [("2028-02-28", 3600.0), ("2028-02-29", 86400.0), ("2028-03-01", 3600.0)]


def test_fractions_add_up_to_the_whole() -> None:
    start, end = utc(2027, 5, 5, 23, 59, 59.25), utc(2027, 5, 6, 0, 0, 1.625)
    pieces = split_by_day(start, end)
    assert [d for d, _ in pieces] == ["2027-05-05", "2027-05-06"]
    assert pieces[0][1] == pytest.approx(0.75) and pieces[1][1] == pytest.approx(1.625)
    assert math.fsum(s for _, s in pieces) == pytest.approx(end - start)


def test_empty_or_reversed_spans_count_nothing() -> None:
    t = utc(2027, 1, 1, 12)
    assert split_by_day(t, t) == []
    assert split_by_day(t, t - 5) == []
    with pytest.raises(ValueError):
        split_by_day(t, math.inf)
    with pytest.raises(ValueError):
        split_by_day(math.nan, t)


# --- on the database ------------------------------------------------------------------------------------


@dataclass
class Env:
    db: Database
    usage: UsageService

    async def tenant_app(self) -> tuple[Principal, str]:
        domain_id, app_id = new_hex_id(), new_hex_id()
        principal = Principal(domain_id, f"t{domain_id[:12]}", new_hex_id(), "ember", "u")

        def work(s: Session) -> None:
            s.add(
                Tenant(
                    domain_id=domain_id,
                    domain_name=principal.domain_name,
                    project_id=principal.project_id,
                    project_name="ember",
                    user_name="u",
                    password_hash="x",
                    created_at=NOW,
                )
            )
            s.flush()
            s.add(
                App(
                    app_id=app_id,
                    domain_id=domain_id,
                    app_name="a",
                    state="ACTIVATION",
                    state_update_time=NOW,
                    scope="GLOBAL",
                    create_time=NOW,
                    auth_enable=False,
                    auth_expire=300,
                    app_key_encrypted="x",
                    auth_update_time=NOW,
                    auto_record_mode="AUTO_RECORD_OFF",
                    auto_record_update_time=NOW,
                )
            )

        await self.db.run(work)
        return principal, app_id

    async def record(
        self,
        app_id: str,
        job_id: str,
        obj: str,
        start: float,
        end: float,
        *,
        transcoded: bool,
        record_format: str = "MP4",
        size: tuple[int, int] | None = (640, 360),
    ) -> int:
        return await self.db.run(
            lambda s: record_file(
                s,
                app_id=app_id,
                job_id=job_id,
                object_name=obj,
                record_format=record_format,
                start_time=start,
                end_time=end,
                transcoded=transcoded,
                width=size[0] if size else None,
                height=size[1] if size else None,
                now=NOW,
            )
        )

    async def rows(self, app_id: str) -> list[UsageEntry]:
        q = select(UsageEntry).where(UsageEntry.app_id == app_id).order_by(UsageEntry.object_name, UsageEntry.day)
        return await self.db.run(lambda s: list(s.scalars(q)))


@pytest.fixture
async def env(backend: Settings) -> AsyncIterator[Env]:
    db = Database(backend.database_url or default_url(backend.data_dir))
    await db.migrate()
    try:
        yield Env(db, UsageService(db))
    finally:
        await db.close()


async def test_a_file_is_counted_once_however_often_its_completion_comes(env: Env) -> None:
    _, app = await env.tenant_app()
    start, end = utc(2027, 1, 15, 23, 59, 30), utc(2027, 1, 16, 0, 0, 30)
    assert await env.record(app, "job1", "a/f.mp4", start, end, transcoded=True) == 2  # one row per day
    assert await env.record(app, "job1", "a/f.mp4", start, end, transcoded=True) == 0  # replayed: nothing new
    rows = await env.rows(app)
    assert [(r.day, r.recorded_seconds, r.transcoded_seconds) for r in rows] == [
        ("2027-01-15", 30.0, 30.0),
        ("2027-01-16", 30.0, 30.0),
    ]
    assert all((r.job_id, r.record_format, r.width, r.height) == ("job1", "MP4", 640, 360) for r in rows)
    days = await env.usage.days(None, app, None, None)
    assert days == [
        {"day": "2027-01-15", "recorded_seconds": 30.0, "transcoded_seconds": 30.0, "files": 1},
        {"day": "2027-01-16", "recorded_seconds": 30.0, "transcoded_seconds": 30.0, "files": 1},
    ]


async def test_concurrent_duplicates_are_counted_once(env: Env) -> None:
    _, app = await env.tenant_app()
    start = utc(2027, 2, 1, 10)
    added = await asyncio.gather(
        *(env.record(app, "job1", "dup.mp4", start, start + 60, transcoded=False) for _ in range(6))
    )
    assert sorted(added) == [0, 0, 0, 0, 0, 1]
    assert await env.usage.days(None, app, "2027-02-01", "2027-02-01") == [
        {"day": "2027-02-01", "recorded_seconds": 60.0, "transcoded_seconds": 0.0, "files": 1}
    ]


async def test_totals_per_day_sum_files_of_the_app_only(env: Env) -> None:
    principal, app = await env.tenant_app()
    _, other = await env.tenant_app()
    day1 = utc(2027, 6, 1)
    # Two files of one job (a VP8 camera MP4 and its HLS playlist), a passthrough file of another job,
    # an audio-only file, and one that crosses into the next day.
    await env.record(app, "job1", "j1/a.mp4", day1 + 100, day1 + 160.5, transcoded=True)
    await env.record(app, "job1", "j1/a.m3u8", day1 + 100, day1 + 160.5, transcoded=True, record_format="HLS")
    await env.record(app, "job2", "j2/b.mp4", day1 + 200, day1 + 300.25, transcoded=False)
    await env.record(app, "job3", "j3/c.mp4", day1 + 400, day1 + 410, transcoded=False, size=None)
    await env.record(app, "job2", "j2/d.mp4", day1 + 86_400 - 20, day1 + 86_400 + 40, transcoded=True)
    await env.record(other, "job9", "x/e.mp4", day1 + 100, day1 + 1_000, transcoded=True)
    # A file of the same job under the same name on another day is another row, not a duplicate.
    await env.record(app, "job1", "j1/a.mp4", day1 + 3 * 86_400, day1 + 3 * 86_400 + 5, transcoded=False)

    days = await env.usage.days(principal, app, None, None)
    assert days == [
        {
            "day": "2027-06-01",
            "recorded_seconds": 60.5 + 60.5 + 100.25 + 10 + 20,
            "transcoded_seconds": 141.0,
            "files": 5,
        },
        {"day": "2027-06-02", "recorded_seconds": 40.0, "transcoded_seconds": 40.0, "files": 1},
        {"day": "2027-06-04", "recorded_seconds": 5.0, "transcoded_seconds": 0.0, "files": 1},
    ]  # 2027-06-03 had nothing: left out
    assert [d["day"] for d in await env.usage.days(principal, app, "2027-06-02", None)] == ["2027-06-02", "2027-06-04"]
    assert [d["day"] for d in await env.usage.days(principal, app, None, "2027-06-02")] == ["2027-06-01", "2027-06-02"]
    assert await env.usage.days(principal, app, "2027-06-03", "2027-06-03") == []
    assert (await env.usage.days(None, other, None, None))[0]["recorded_seconds"] == 900.0


async def test_reading_checks_the_app_and_the_days(env: Env) -> None:
    principal, app = await env.tenant_app()
    stranger, _ = await env.tenant_app()
    with pytest.raises(AppNotExist):
        await env.usage.days(stranger, app, None, None)  # another tenant's app is as good as absent
    with pytest.raises(AppNotExist):
        await env.usage.days(None, new_hex_id(), None, None)
    for bad in ("2027-13-01", "2027-02-30", "27-01-01", "2027-1-1", "yesterday"):
        with pytest.raises(InvalidParameterValue):
            await env.usage.days(principal, app, bad, None)
    with pytest.raises(InvalidParameterValue):
        await env.usage.days(principal, app, "2027-01-02", "2027-01-01")
    assert await env.usage.days(principal, app, "2027-01-01", "2027-01-01") == []


async def test_files_of_a_deleted_app_are_not_counted_and_its_usage_goes_with_it(env: Env) -> None:
    _, app = await env.tenant_app()
    await env.record(app, "job1", "f.mp4", NOW, NOW + 10, transcoded=False)
    assert len(await env.rows(app)) == 1

    def drop(s: Session) -> None:
        s.execute(delete(App).where(App.app_id == app))

    await env.db.run(drop)
    assert await env.rows(app) == []  # ON DELETE CASCADE
    # A late completion for the deleted app neither fails (its upload and callback are in the same
    # transaction) nor counts.
    assert await env.record(app, "job1", "g.mp4", NOW, NOW + 10, transcoded=False) == 0
    count = await env.db.run(
        lambda s: s.scalar(select(func.count()).select_from(UsageEntry).where(UsageEntry.app_id == app))
    )
    assert count == 0
