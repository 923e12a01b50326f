"""The Alembic migrations build exactly the schema the models declare, on SQLite and PostgreSQL, and the
newest steps can be undone and redone."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, inspect
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine

from emberrtc.store.database import alembic_config, normalise_url
from tests.support.database import database_url, open_database

T = TypeVar("T")


async def on_connection(url: str, fn: Callable[[Connection], T]) -> T:
    """``fn(connection)`` in one committed transaction, straight on the database at ``url``."""
    url = normalise_url(url)
    if url.startswith("sqlite"):
        engine = create_engine(url)
        try:
            with engine.begin() as conn:
                return fn(conn)
        finally:
            engine.dispose()
    aengine = create_async_engine(url)
    try:
        async with aengine.begin() as aconn:
            return await aconn.run_sync(fn)
    finally:
        await aengine.dispose()


@pytest.fixture(params=["sqlite", "postgres"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    with database_url(request.param, tmp_path) as u:
        yield u


def _differences(conn: Connection) -> list[Any]:
    from emberrtc.store.models import Base

    return list(compare_metadata(MigrationContext.configure(conn), Base.metadata))


async def test_migrations_match_the_models(url: str) -> None:
    db = await open_database(url)
    await db.close()
    assert await on_connection(url, _differences) == []


async def test_usage_table_comes_and_goes_with_its_revision(url: str) -> None:
    db = await open_database(url)
    await db.close()

    def down(conn: Connection) -> list[str]:
        command.downgrade(alembic_config(conn), "0004")
        return inspect(conn).get_table_names()

    tables = await on_connection(url, down)
    assert "usage_entries" not in tables and "apps" in tables

    db = await open_database(url)  # the server's start-up migration brings it back
    await db.close()

    def details(conn: Connection) -> tuple[list[str], list[list[str]], list[list[str]]]:
        i = inspect(conn)
        uniques = [u["column_names"] for u in i.get_unique_constraints("usage_entries")]
        indexes = [ix["column_names"] for ix in i.get_indexes("usage_entries")]
        return i.get_table_names(), uniques, indexes  # type: ignore[return-value]

    tables, uniques, indexes = await on_connection(url, details)
    assert "usage_entries" in tables
    assert ["job_id", "object_name", "day"] in uniques
    assert ["app_id", "day"] in indexes
    assert await on_connection(url, _differences) == []


async def test_revocation_columns_come_and_go_with_their_revision(url: str) -> None:
    from sqlalchemy import text

    db = await open_database(url)
    await db.close()

    def down(conn: Connection) -> tuple[list[str], list[str], list[str]]:
        conn.execute(
            text(
                "INSERT INTO tenants (domain_id, domain_name, project_id, project_name, user_name, password_hash,"
                " created_at) VALUES ('d1', 'acme', 'p1', 'ember', 'acme', 'h', 0)"
            )
        )
        conn.execute(
            text("INSERT INTO credentials (ak, domain_id, sk_encrypted, created_at) VALUES ('AK1', 'd1', 's', 0)")
        )
        command.downgrade(alembic_config(conn), "0006")
        i = inspect(conn)
        return (
            i.get_table_names(),
            [c["name"] for c in i.get_columns("credentials")],
            [c["name"] for c in i.get_columns("tokens")],
        )

    tables, credential_columns, token_columns = await on_connection(url, down)
    assert "revocation_epoch" not in tables
    assert "revoked_at" not in credential_columns and "last_used_at" not in credential_columns
    assert "revoked_at" not in token_columns

    db = await open_database(url)  # back up: the credential is kept, active, and the epoch starts at 0
    await db.close()

    def read(conn: Connection) -> tuple[Any, ...]:
        cred = conn.execute(text("SELECT ak, revoked_at, last_used_at FROM credentials")).one()
        epoch = conn.execute(text("SELECT id, epoch FROM revocation_epoch")).all()
        return tuple(cred), epoch

    cred, epoch = await on_connection(url, read)
    assert cred == ("AK1", None, None) and [tuple(r) for r in epoch] == [(1, 0)]
    assert await on_connection(url, _differences) == []


def _insert(conn: Connection, table: str, **given: Any) -> None:
    """A row of ``table`` with ``given`` values, and plain ones for the other required columns."""
    from sqlalchemy import JSON, Boolean, Float, Integer, MetaData, Numeric, Table

    t = Table(table, MetaData(), autoload_with=conn)
    values = dict(given)
    for c in t.columns:
        if c.name in values or c.nullable or c.server_default is not None:
            continue
        kind = c.type
        if isinstance(kind, JSON):
            values[c.name] = {}
        elif isinstance(kind, Boolean):
            values[c.name] = False
        elif isinstance(kind, Integer | Float | Numeric):
            values[c.name] = 0
        else:
            values[c.name] = f"{c.name[:8]}-x"
    conn.execute(t.insert().values(**values))


async def test_storage_revision_gives_pending_uploads_their_project(url: str) -> None:
    """0008_storage: an upload registered before buckets were kept per project goes to its job's app's
    project's bucket; one without a job keeps none (the shared buckets of old)."""
    from sqlalchemy import text

    db = await open_database(url)
    await db.close()

    def down(conn: Connection) -> list[str]:
        command.downgrade(alembic_config(conn), "0006")
        _insert(conn, "tenants", domain_id="d1", domain_name="acme", project_id="p" * 32)
        _insert(conn, "apps", app_id="a1", domain_id="d1", app_name="one")
        _insert(conn, "jobs", job_id="j1", app_id="a1", room_id="r", user_id="u", state="STOPPED")
        for upload_id, job_id in (("u1", "j1"), ("u2", None)):
            _insert(conn, "uploads", upload_id=upload_id, job_id=job_id, state="pending")
        return [c["name"] for c in inspect(conn).get_columns("uploads")]

    assert "project_id" not in await on_connection(url, down)
    db = await open_database(url)  # the server's start-up migration
    await db.close()

    def read(conn: Connection) -> dict[str, Any]:
        rows = conn.execute(text("SELECT upload_id, project_id FROM uploads")).all()
        return {r[0]: r[1] for r in rows}

    assert await on_connection(url, read) == {"u1": "p" * 32, "u2": None}
    assert await on_connection(url, _differences) == []
