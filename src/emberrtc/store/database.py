"""Units of work: a synchronous function, given an ORM ``Session``, run inside one transaction.

Why synchronous functions: with SQLite, every awaited statement through an async driver is a round trip
between the event loop and the driver's thread, and a transaction is four to six of them, all queued
behind each other on SQLite's single writer. Running the whole unit of work on one dedicated thread with
one connection makes a transaction a single hop, serialises writers without SQLite's sleeping busy
handler, and keeps the event loop free. With PostgreSQL the same function runs through asyncpg
(``AsyncSession.run_sync``), which awaits natively, so one body serves both databases.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from alembic import command
from alembic.config import Config
from sqlalchemy import create_engine, event
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine
from sqlalchemy.orm import Session
from sqlalchemy.pool import QueuePool

MIGRATIONS = Path(__file__).parent / "migrations"
T = TypeVar("T")
Work = Callable[[Session], T]


def alembic_config(connection: Connection) -> Config:
    """Alembic driven with a live connection (no alembic.ini): see ``migrations/env.py``."""
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["connection"] = connection
    return cfg


def default_url(data_dir: Path) -> str:
    """The embedded default: ``ember.db`` in the data folder."""
    return f"sqlite:///{data_dir / 'ember.db'}"


def normalise_url(url: str) -> str:
    """Accept the usual spellings: ``postgres://``/``postgresql://`` (asyncpg is used), ``sqlite:///path``."""
    for prefix in ("postgresql://", "postgres://", "postgresql+psycopg2://", "postgresql+psycopg://"):
        if url.startswith(prefix):
            return "postgresql+asyncpg://" + url[len(prefix) :]
    if url.startswith("sqlite+aiosqlite://"):
        return "sqlite://" + url[len("sqlite+aiosqlite://") :]
    return url


class Database:
    """The one way the domain reaches the database: ``await db.run(work)``."""

    def __init__(self, url: str) -> None:
        self.url = normalise_url(url)
        self.dialect = "sqlite" if self.url.startswith("sqlite") else "postgresql"
        self._sync: Engine | None = None
        self._async: AsyncEngine | None = None
        if self.dialect == "sqlite":
            self._sync = self._sqlite_engine(self.url)
            self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ember-db")
        else:
            self._async = create_async_engine(self.url, pool_size=10, max_overflow=20, pool_pre_ping=True)
            self._sessions = async_sessionmaker(self._async, expire_on_commit=False)

    @staticmethod
    def _sqlite_engine(url: str) -> Engine:
        # One connection, used only by the one DB thread.
        engine = create_engine(
            url, poolclass=QueuePool, pool_size=1, max_overflow=0, connect_args={"check_same_thread": False}
        )

        @event.listens_for(engine, "connect")
        def _on_connect(dbapi_conn: Any, _record: Any) -> None:
            # Let SQLAlchemy, not the sqlite3 module, decide where transactions begin (the module's own
            # handling starts them lazily, so a read and a later write would not be one transaction).
            dbapi_conn.isolation_level = None
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA busy_timeout=30000")  # other processes (the CLI) writing at the same time
            cur.close()

        @event.listens_for(engine, "begin")
        def _on_begin(conn: Connection) -> None:
            # IMMEDIATE takes the write lock at once: no deadlock upgrading a read lock against another process.
            conn.exec_driver_sql("BEGIN IMMEDIATE")

        return engine

    async def run(self, work: Work[T]) -> T:
        """Run ``work(session)`` in one transaction: committed if it returns, rolled back if it raises."""
        if self._sync is not None:
            loop = asyncio.get_running_loop()
            return await loop.run_in_executor(self._executor, self._run_sqlite, work)
        async with self._sessions() as s, s.begin():
            return await s.run_sync(work)

    def _run_sqlite(self, work: Work[T]) -> T:
        assert self._sync is not None
        with Session(self._sync, expire_on_commit=False) as s, s.begin():
            return work(s)

    async def migrate(self) -> None:
        """Bring the schema to the newest Alembic revision (safe on every start)."""

        def upgrade(conn: Connection) -> None:
            command.upgrade(alembic_config(conn), "heads")

        if self._sync is not None:
            sync = self._sync

            def run() -> None:
                with sync.begin() as conn:
                    upgrade(conn)

            await asyncio.get_running_loop().run_in_executor(self._executor, run)
        else:
            assert self._async is not None
            async with self._async.begin() as conn:
                await conn.run_sync(upgrade)

    async def close(self) -> None:
        if self._sync is not None:
            await asyncio.get_running_loop().run_in_executor(self._executor, self._sync.dispose)
            self._executor.shutdown(wait=True)
        if self._async is not None:
            await self._async.dispose()
