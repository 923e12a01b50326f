"""Database engine and sessions: SQLite in the data folder by default, PostgreSQL by URL."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine


def default_url(data_dir: Path) -> str:
    """The embedded default: ``ember.db`` in the data folder."""
    return f"sqlite+aiosqlite:///{data_dir / 'ember.db'}"


def normalise_url(url: str) -> str:
    """Accept the usual spellings (``postgresql://``, ``postgres://``, ``sqlite://``) and pick async drivers."""
    for prefix in ("postgresql://", "postgres://", "postgresql+psycopg2://", "postgresql+psycopg://"):
        if url.startswith(prefix):
            return "postgresql+asyncpg://" + url[len(prefix) :]
    if url.startswith("sqlite://") and not url.startswith("sqlite+aiosqlite://"):
        return "sqlite+aiosqlite://" + url[len("sqlite://") :]
    return url


def make_engine(url: str) -> AsyncEngine:
    """Create the engine; SQLite gets WAL, foreign keys and a busy timeout (several processes may write)."""
    url = normalise_url(url)
    if url.startswith("sqlite"):
        # One connection per process: SQLite allows one writer at a time, and several pooled connections
        # contend for the write lock through SQLite's sleeping busy handler (seconds of latency under load).
        # A single connection queues writers in order instead. Other processes (the CLI) still wait on
        # the busy timeout, briefly.
        engine = create_async_engine(url, connect_args={"timeout": 30}, pool_size=1, max_overflow=0, pool_timeout=60)

        @event.listens_for(engine.sync_engine, "connect")
        def _sqlite_pragmas(dbapi_conn, _record):  # type: ignore[no-untyped-def]
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.close()

        return engine
    return create_async_engine(url, pool_size=10, max_overflow=20, pool_pre_ping=True)


def make_sessionmaker(engine: AsyncEngine) -> async_sessionmaker:
    return async_sessionmaker(engine, expire_on_commit=False)
