"""A migrated database of either kind for tests that drive services directly (no HTTP server)."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from emberrtc.domain.secrets import SecretBox, hash_password, new_hex_id
from emberrtc.store.database import Database
from emberrtc.store.models import App, Tenant
from tests.conftest import POSTGRES_ADMIN_URL, _drop_postgres_database, _postgres_database

KINDS = ["sqlite", "postgres"]


@contextmanager
def database_url(kind: str, tmp_path: Path) -> Iterator[str]:
    """SQLite in ``tmp_path``, or a private database on the test PostgreSQL (skipped when absent)."""
    if kind == "sqlite":
        yield f"sqlite:///{tmp_path / 'ember.db'}"
        return
    url = _postgres_database()
    if url is None:
        if os.environ.get("CI"):
            pytest.fail(f"PostgreSQL is not reachable at {POSTGRES_ADMIN_URL}")
        pytest.skip(f"PostgreSQL is not reachable at {POSTGRES_ADMIN_URL}")
    try:
        yield url
    finally:
        _drop_postgres_database(url)


async def open_database(url: str) -> Database:
    db = Database(url)
    await db.migrate()
    return db


@pytest.fixture(params=KINDS)
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """Fixture (import it into a conftest): every test using it runs on SQLite and on PostgreSQL."""
    with database_url(request.param, tmp_path) as url:
        yield url


@pytest.fixture
async def db(db_url: str) -> AsyncIterator[Database]:
    """Fixture: the migrated database at ``db_url``."""
    database = await open_database(db_url)
    try:
        yield database
    finally:
        await database.close()


async def seed_app(
    db: Database,
    box: SecretBox,
    *,
    callback_url: str | None,
    auth_key: str | None = None,
    events: list[str] | None = None,
    now: float = 0.0,
) -> str:
    """A tenant with one app whose record callback is set as given (as ``AppService`` stores it)."""
    app_id = new_hex_id()

    def work(s):  # type: ignore[no-untyped-def]
        domain_id = new_hex_id()
        s.add(
            Tenant(
                domain_id=domain_id,
                domain_name=f"t{domain_id[:12]}",
                project_id=new_hex_id(),
                project_name="ember",
                user_name="u",
                password_hash=hash_password("x"),
                created_at=now,
            )
        )
        s.flush()
        s.add(
            App(
                app_id=app_id,
                domain_id=domain_id,
                app_name="app",
                state="ACTIVATION",
                state_update_time=now,
                scope="GLOBAL",
                create_time=now,
                auth_enable=False,
                auth_expire=300,
                app_key_encrypted=box.seal("k"),
                auth_update_time=now,
                record_callback_url=callback_url,
                record_callback_auth_key_encrypted=box.seal(auth_key) if auth_key else None,
                record_callback_events=events,
                record_callback_update_time=now if callback_url else None,
                auto_record_mode="AUTO_RECORD_OFF",
                auto_record_update_time=now,
            )
        )

    await db.run(work)
    return app_id


async def set_callback(db: Database, app_id: str, url: str | None) -> None:
    def work(s):  # type: ignore[no-untyped-def]
        s.get(App, app_id).record_callback_url = url

    await db.run(work)
