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


def test_nodes_starting_together_migrate_one_after_the_other(tmp_path: Path) -> None:
    """Cluster nodes started at once on an empty PostgreSQL database: every one starts (no duplicate
    ``CREATE TABLE``), and the schema is the models'."""
    import asyncio

    from emberrtc.store.database import Database

    async def start_together(url: str) -> list[Any]:
        nodes = [Database(url) for _ in range(3)]
        try:
            # Bounded: without the lock, racing migrations fail or wait on each other forever.
            await asyncio.wait_for(asyncio.gather(*(db.migrate() for db in nodes)), 60)
        finally:
            for db in nodes:
                await db.close()
        return await on_connection(url, _differences)

    with database_url("postgres", tmp_path) as url:
        assert asyncio.run(start_together(url)) == []


async def test_cluster_revision_adds_the_rooms_node(url: str) -> None:
    db = await open_database(url)
    await db.close()

    def columns(conn: Connection) -> list[str]:
        return [c["name"] for c in inspect(conn).get_columns("rooms")]

    assert "node_id" in await on_connection(url, columns)

    def down(conn: Connection) -> list[str]:
        command.downgrade(alembic_config(conn), "0006")
        return columns(conn)

    assert "node_id" not in await on_connection(url, down)
    db = await open_database(url)
    await db.close()
    assert "node_id" in await on_connection(url, columns)
