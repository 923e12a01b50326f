"""Units of work: a synchronous function, given an ORM ``Session``, run inside one transaction.

Why synchronous functions: with SQLite, every awaited statement through an async driver is a round trip
between the event loop and the driver's thread, and a transaction is four to six of them, all queued
behind each other on SQLite's single writer. Running the whole unit of work on one dedicated thread with
one connection makes a transaction a single hop, serialises writers without SQLite's sleeping busy
handler, and keeps the event loop free. With PostgreSQL the same function runs through asyncpg
(``AsyncSession.run_sync``), which awaits natively, so one body serves both databases.

On SQLite a hot statement may skip the ORM: :meth:`Database.run_sqlite` gives the function the DB-API
connection itself (``docs/decisions.md``: SQLAlchemy's session and execution cost ten times what SQLite
takes to run the statement).
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from queue import SimpleQueue
from typing import Any, TypeVar

from alembic import command
from alembic.config import Config
from sqlalchemy import create_engine, event, text
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine
from sqlalchemy.orm import Session
from sqlalchemy.pool import QueuePool

MIGRATIONS = Path(__file__).parent / "migrations"
#: The PostgreSQL advisory lock key migrations hold (any constant of Ember's own: "ember" in ASCII).
MIGRATION_LOCK = 0x656D626572
T = TypeVar("T")
Work = Callable[[Session], T]
RawWork = Callable[[sqlite3.Connection], T]


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


_Done = tuple["asyncio.Future[Any]", bool, Any]  # (future, ok, result or exception)


@dataclass(slots=True)
class _Job:
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[Any]
    run: Callable[[Any], Any]
    #: ``run`` takes the DB-API connection and may share a transaction (see ``_SqliteThread``);
    #: otherwise it takes the SQLAlchemy connection and manages its own transaction.
    raw: bool


def _settle(done: list[_Done]) -> None:
    """On the event loop: hand each finished job's result (or exception) to its awaiting future."""
    for fut, ok, value in done:
        if fut.cancelled():
            continue
        if ok:
            fut.set_result(value)
        else:
            fut.set_exception(value)


class _SqliteThread:
    """The one thread that talks to SQLite, holding one connection for its whole life.

    Jobs that queue up while the thread is busy are taken together. Consecutive raw jobs
    (:meth:`Database.run_sqlite`) share one transaction, a group commit: one ``BEGIN IMMEDIATE`` and
    one ``COMMIT`` for all of them, and no future is settled before that ``COMMIT`` returns. If any of
    them raises (or the commit fails), the group is rolled back and each job runs again in its own
    transaction, so one job's failure never touches another's result. The results go back to the event
    loop in one wake-up. Under load this turns several cross-thread hand-offs per request (each a GIL
    switch, each SQLite call releasing the GIL) into a few per group."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._queue: SimpleQueue[list[_Job] | None] = SimpleQueue()
        # Jobs submitted during the current pass of each event loop, handed over together at its end.
        self._pending: dict[asyncio.AbstractEventLoop, list[_Job]] = {}
        self._conn: Connection | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def submit(self, run: Callable[[Any], T], *, raw: bool) -> asyncio.Future[T]:
        """Queue ``run`` (on the event loop): jobs from one pass of the loop reach the thread together,
        one wake-up for all of them."""
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[T] = loop.create_future()
        if self._thread is None:
            with self._lock:
                if self._thread is None:
                    self._thread = threading.Thread(target=self._main, name="ember-db", daemon=True)
                    self._thread.start()
        pending = self._pending.get(loop)
        if pending is None:
            pending = self._pending[loop] = []
            loop.call_soon(self._hand_over, loop)
        pending.append(_Job(loop, fut, run, raw))
        return fut

    def _hand_over(self, loop: asyncio.AbstractEventLoop) -> None:
        jobs = self._pending.pop(loop, None)
        if jobs:  # (stop() may have handed them over already)
            self._queue.put(jobs)

    def _connection(self) -> Connection:
        conn = self._conn
        if conn is None or conn.closed or conn.invalidated:
            if conn is not None:
                conn.close()
            conn = self._conn = self._engine.connect()
        return conn

    def _raw_connection(self) -> sqlite3.Connection:
        raw = self._connection().connection.dbapi_connection
        assert raw is not None
        return raw  # type: ignore[return-value]

    def _one(self, job: _Job) -> _Done:
        try:
            if not job.raw:
                return (job.future, True, job.run(self._connection()))
            raw = self._raw_connection()
            raw.execute("BEGIN IMMEDIATE")
            try:
                result = job.run(raw)
                raw.execute("COMMIT")
            except BaseException:
                if raw.in_transaction:
                    raw.execute("ROLLBACK")
                raise
            return (job.future, True, result)
        except BaseException as exc:
            return (job.future, False, exc)

    def _group(self, jobs: list[_Job]) -> list[_Done]:
        if len(jobs) == 1:
            return [self._one(jobs[0])]
        try:
            raw = self._raw_connection()
            raw.execute("BEGIN IMMEDIATE")
            try:
                results = [job.run(raw) for job in jobs]
                raw.execute("COMMIT")
            except BaseException:
                if raw.in_transaction:
                    raw.execute("ROLLBACK")
                raise
        except BaseException:  # one of them failed: each on its own, so only that one fails
            return [self._one(job) for job in jobs]
        return [(job.future, True, result) for job, result in zip(jobs, results, strict=True)]

    def _run(self, batch: list[_Job]) -> list[tuple[_Job, _Done]]:
        """Run a batch in order, consecutive raw jobs as one group."""
        out: list[tuple[_Job, _Done]] = []
        group: list[_Job] = []
        for job in [*batch, None]:
            if job is not None and job.raw:
                group.append(job)
                continue
            if group:
                out.extend(zip(group, self._group(group), strict=True))
                group = []
            if job is not None:
                out.append((job, self._one(job)))
        return out

    def _main(self) -> None:
        queue = self._queue
        stop = False
        while not stop:
            items = [queue.get()]  # wait for work, then take everything queued behind it
            while not queue.empty():
                items.append(queue.get())
            batch = [job for jobs in items if jobs is not None for job in jobs]
            stop = None in items
            done: dict[asyncio.AbstractEventLoop, list[_Done]] = {}
            for job, result in self._run(batch):
                done.setdefault(job.loop, []).append(result)
            for loop, results in done.items():
                try:
                    loop.call_soon_threadsafe(_settle, results)
                except RuntimeError:  # that loop is closed: nobody is waiting any more
                    pass
        if self._conn is not None:
            self._conn.close()
            self._conn = None
        self._engine.dispose()

    async def stop(self) -> None:
        thread = self._thread
        if thread is None:
            self._engine.dispose()
            return
        for loop in list(self._pending):  # jobs not handed over yet go before the stop
            self._hand_over(loop)
        self._queue.put(None)
        await asyncio.get_running_loop().run_in_executor(None, thread.join)
        self._thread = None


class Database:
    """The one way the domain reaches the database: ``await db.run(work)``."""

    def __init__(self, url: str) -> None:
        self.url = normalise_url(url)
        self.dialect = "sqlite" if self.url.startswith("sqlite") else "postgresql"
        self._sqlite: _SqliteThread | None = None
        self._async: AsyncEngine | None = None
        if self.dialect == "sqlite":
            self._sqlite = _SqliteThread(self._sqlite_engine(self.url))
        else:
            self._async = create_async_engine(self.url, pool_size=10, max_overflow=20, pool_pre_ping=True)
            self._sessions = async_sessionmaker(self._async, expire_on_commit=False)

    @staticmethod
    def _sqlite_engine(url: str) -> Engine:
        # One connection, held by the one DB thread.
        engine = create_engine(
            url, poolclass=QueuePool, pool_size=1, max_overflow=0, connect_args={"check_same_thread": False}
        )

        @event.listens_for(engine, "connect")
        def _on_connect(dbapi_conn: Any, _record: Any) -> None:
            # Let SQLAlchemy (or run_sqlite), not the sqlite3 module, decide where transactions begin (the
            # module's own handling starts them lazily, so a read and a later write would not be one
            # transaction).
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
        if self._sqlite is not None:

            def job(conn: Connection) -> T:
                with Session(conn, expire_on_commit=False) as s, s.begin():
                    return work(s)

            return await self._sqlite.submit(job, raw=False)
        async with self._sessions() as s, s.begin():
            return await s.run_sync(work)

    async def run_sqlite(self, work: RawWork[T]) -> T:
        """SQLite only: run ``work(connection)`` on the DB-API connection inside a ``BEGIN IMMEDIATE``
        transaction, committed before this returns, rolled back if it raises. For hot statements whose
        SQLAlchemy overhead shows; every other unit of work goes through :meth:`run`.

        ``work`` may share its transaction with other ``run_sqlite`` calls queued at the same moment (a
        group commit), and is run again on its own if one of them fails: it must touch nothing but the
        connection, and must not commit or roll back itself."""
        if self._sqlite is None:
            raise RuntimeError("run_sqlite needs SQLite; use run()")
        return await self._sqlite.submit(work, raw=True)

    async def migrate(self) -> None:
        """Bring the schema to the newest Alembic revision (safe on every start)."""

        def upgrade(conn: Connection) -> None:
            command.upgrade(alembic_config(conn), "heads")

        if self._sqlite is not None:

            def job(conn: Connection) -> None:
                with conn.begin():
                    upgrade(conn)

            await self._sqlite.submit(job, raw=False)
        else:
            assert self._async is not None
            async with self._async.begin() as conn:
                # Nodes of a cluster starting together on one database migrate one after the other: the
                # lock is held to the end of the migration's transaction (PostgreSQL's DDL is transactional,
                # so the next node finds the schema at its head and has nothing to do).
                await conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK})
                await conn.run_sync(upgrade)

    async def close(self) -> None:
        if self._sqlite is not None:
            await self._sqlite.stop()
        if self._async is not None:
            await self._async.dispose()
