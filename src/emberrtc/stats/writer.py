"""The batched statistics writer: rows are buffered in memory and written in one transaction per flush.

Signalling and the control plane never wait on a statistics write: they append rows to this node's buffer
(no I/O, no await) and a background task writes everything buffered once a second (``flush_interval``),
or sooner when ``max_batch`` rows wait. One flush is one unit of work: the samples and events as bulk
inserts (``executemany``), the session facts as inserts, then their updates.

What is buffered is this node's alone and is lost if the process dies before the next flush (at most
``flush_interval`` seconds of samples); :meth:`stop` flushes what is left. When the database cannot keep
up or is down, rows wait in the buffer up to ``max_pending`` and the oldest are dropped past it (counted
in :attr:`dropped`), so memory stays bounded.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import sqlite3
from collections import deque
from typing import Any

from sqlalchemy import insert, update
from sqlalchemy.orm import Session

from emberrtc.domain.background import BackgroundTask
from emberrtc.store.database import Database
from emberrtc.store.models import AbnormalEvent, QosSample, SessionStats

log = logging.getLogger(__name__)

_COLUMNS = {
    model.__tablename__: frozenset(c.name for c in model.__table__.columns)
    for model in (QosSample, AbnormalEvent, SessionStats)
}


@functools.cache
def _insert_sql(table: str, columns: tuple[str, ...]) -> str:
    """``INSERT`` with named parameters; the names are checked against the table (they come from code,
    but they are put in SQL text)."""
    unknown = set(columns) - _COLUMNS[table]
    if unknown:
        raise ValueError(f"not columns of {table}: {sorted(unknown)}")
    return f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join(':' + c for c in columns)})"


class StatsWriter:
    def __init__(
        self,
        db: Database,
        *,
        flush_interval: float = 1.0,
        max_batch: int = 5000,
        max_pending: int = 200_000,
    ) -> None:
        self._db = db
        self.flush_interval = flush_interval
        self.max_batch = max_batch
        self.max_pending = max_pending
        self._samples: deque[dict[str, Any]] = deque()
        self._events: deque[dict[str, Any]] = deque()
        self._sessions: deque[dict[str, Any]] = deque()
        #: session_id -> columns to set, merged (later values win).
        self._updates: dict[str, dict[str, Any]] = {}
        self._wake = asyncio.Event()
        self._lock = asyncio.Lock()
        self._task = BackgroundTask("stats-writer", self._loop)
        #: Rows dropped because the buffer was full (the database did not keep up).
        self.dropped = 0
        #: Rows written since start.
        self.written = 0

    # --- buffering (no I/O) ---------------------------------------------------------------------------

    @property
    def pending(self) -> int:
        return len(self._samples) + len(self._events) + len(self._sessions) + len(self._updates)

    def _trim(self) -> None:
        """Drop the oldest samples past ``max_pending`` (events and session facts are few and kept)."""
        excess = self.pending - self.max_pending
        while excess > 0 and self._samples:
            self._samples.popleft()
            self.dropped += 1
            excess -= 1

    def _added(self) -> None:
        if self.pending >= self.max_batch:
            self._wake.set()

    def add_samples(self, rows: list[dict[str, Any]]) -> None:
        """``stats_qos_samples`` rows (complete: see ``report.sample_row``)."""
        self._samples.extend(rows)
        self._trim()
        self._added()

    def add_events(self, rows: list[dict[str, Any]]) -> None:
        """``stats_abnormal_events`` rows."""
        self._events.extend(rows)
        self._trim()
        self._added()

    def add_session(self, row: dict[str, Any]) -> None:
        """A ``stats_sessions`` row (one per join attempt)."""
        self._sessions.append(row)
        self._added()

    def update_session(self, session_id: str, **columns: Any) -> None:
        """Set columns of a ``stats_sessions`` row (written after the row's insert, in the same flush or later)."""
        self._updates.setdefault(session_id, {}).update(columns)
        self._added()

    # --- writing --------------------------------------------------------------------------------------

    async def flush(self) -> int:
        """Write everything buffered now; the number of rows written. On failure the rows go back to the
        buffer (within ``max_pending``) and the error is raised."""
        async with self._lock:
            samples, self._samples = list(self._samples), deque()
            events, self._events = list(self._events), deque()
            sessions, self._sessions = list(self._sessions), deque()
            updates, self._updates = self._updates, {}
            if not (samples or events or sessions or updates):
                return 0

            def work(s: Session) -> None:
                if samples:
                    s.execute(insert(QosSample), samples)
                if events:
                    s.execute(insert(AbnormalEvent), events)
                if sessions:
                    s.execute(insert(SessionStats), sessions)
                for session_id, columns in updates.items():
                    s.execute(update(SessionStats).where(SessionStats.session_id == session_id).values(**columns))

            def raw_work(conn: sqlite3.Connection) -> None:
                # SQLite: the DB-API's executemany, without SQLAlchemy's per-row cost (docs/decisions.md).
                for table, rows in (("stats_qos_samples", samples), ("stats_abnormal_events", events)):
                    if rows:
                        conn.executemany(_insert_sql(table, tuple(rows[0])), rows)
                for row in sessions:
                    conn.execute(_insert_sql("stats_sessions", tuple(row)), row)
                for session_id, columns in updates.items():
                    if not columns.keys() <= _COLUMNS["stats_sessions"]:
                        raise ValueError(f"not columns of stats_sessions: {sorted(columns)}")
                    sets = ", ".join(f"{name} = :{name}" for name in columns)
                    conn.execute(
                        f"UPDATE stats_sessions SET {sets} WHERE session_id = :session_id__",
                        {**columns, "session_id__": session_id},
                    )

            try:
                if self._db.dialect == "sqlite":
                    await self._db.run_sqlite(raw_work)
                else:
                    await self._db.run(work)
            except Exception:
                self._samples.extendleft(reversed(samples))
                self._events.extendleft(reversed(events))
                self._sessions.extendleft(reversed(sessions))
                for session_id, columns in updates.items():
                    self._updates[session_id] = {**columns, **self._updates.get(session_id, {})}
                self._trim()
                raise
            count = len(samples) + len(events) + len(sessions) + len(updates)
            self.written += count
            return count

    async def _loop(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.flush_interval):
                    await self._wake.wait()
            self._wake.clear()
            try:
                await self.flush()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("writing statistics failed; %d rows wait for the next attempt", self.pending)

    def start(self) -> None:
        self._task.start()

    async def stop(self) -> None:
        """Stop the loop and write what is left."""
        await self._task.stop()
        try:
            await self.flush()
        except Exception:
            log.exception("the last statistics flush failed; %d rows are lost", self.pending)
