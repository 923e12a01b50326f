"""Shared fixtures: a real server (SQLite, and PostgreSQL when reachable), tenants, the official SDK."""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import time
import uuid
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import httpx
import pytest

from emberrtc.config import Settings
from emberrtc.domain.clock import ManualClock
from tests.support.server import ServerThread, TenantInfo

POSTGRES_ADMIN_URL = os.environ.get("EMBER_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")


def _postgres_database() -> str | None:
    """Create a private database on the test PostgreSQL server; None when there is no server."""
    try:
        import asyncpg
    except ImportError:
        return None
    name = f"ember_test_{uuid.uuid4().hex[:12]}"
    dsn = POSTGRES_ADMIN_URL

    async def create() -> None:
        conn = await asyncpg.connect(dsn, timeout=5)
        try:
            await conn.execute(f'CREATE DATABASE "{name}"')
        finally:
            await conn.close()

    try:
        asyncio.run(create())
    except (OSError, asyncpg.PostgresError, TimeoutError):
        return None
    return dsn.rsplit("/", 1)[0] + "/" + name


def _drop_postgres_database(url: str) -> None:
    import asyncpg

    name = url.rsplit("/", 1)[1]

    async def drop() -> None:
        conn = await asyncpg.connect(POSTGRES_ADMIN_URL, timeout=5)
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await conn.close()

    asyncio.run(drop())


def make_settings(data_dir: Path, database_url: str = "") -> Settings:
    return replace(
        Settings(),
        data_dir=data_dir,
        database_url=database_url,
        rate_limits_enabled=False,
        job_tick=0.05,
        port=0,
        media_enabled=False,  # the control-plane suite needs no Janus; tests/media runs with it
        # scrypt at its lowest accepted cost: every test signs in; tests/domain/test_passwords.py checks
        # the default cost and the re-hash.
        password_scrypt_n=2**14,
        # The API tests' rules name Huawei Cloud's region, as SparkRTC code does: here it is a local folder.
        # ``vault`` has buckets an operator must create (a missing one is RTC.00001014 at job start).
        storage_locations=json.dumps(
            {"cn-north-4": {"type": "local"}, "vault": {"type": "local", "create_buckets": False}}
        ),
        # Callbacks and RTMP pushes go to the tests' own receivers on 127.0.0.1 (not the rest of loopback),
        # and the API tests' URLs name example.com hosts, which are never resolved (or reached) here.
        outbound_allow="127.0.0.1,example.com,*.example.com",
    )


@pytest.fixture(scope="session", params=["sqlite", "postgres"])
def backend(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    """The database the API suite runs against: every API test runs once on each."""
    data_dir = tmp_path_factory.mktemp(f"ember-{request.param}")
    if request.param == "sqlite":
        yield make_settings(data_dir)
        return
    url = _postgres_database()
    if url is None:
        if os.environ.get("CI"):
            pytest.fail(f"PostgreSQL is not reachable at {POSTGRES_ADMIN_URL}; CI must run the API suite on it")
        pytest.skip(f"PostgreSQL is not reachable at {POSTGRES_ADMIN_URL}")
    try:
        yield make_settings(data_dir, url)
    finally:
        _drop_postgres_database(url)


@pytest.fixture(scope="session")
def clock() -> ManualClock:
    """The server's clock: real time at the start, moved forward by tests that need time to pass."""
    return ManualClock(time.time())


@pytest.fixture(scope="session")
def server(backend: Settings, clock: ManualClock) -> Iterator[ServerThread]:
    srv = ServerThread(backend, clock=clock).start()
    try:
        yield srv
    finally:
        srv.stop()


def make_tenant(srv: ServerThread) -> TenantInfo:
    """A fresh tenant with a credential, created the way the CLI does it (through the services)."""
    assert srv.services is not None
    name = f"t{secrets.token_hex(6)}"
    password = secrets.token_urlsafe(12)
    p = srv.call(srv.services.tenants.create_tenant(name, password))
    ak, sk, _ = srv.call(srv.services.tenants.create_credential(name))
    return TenantInfo(name=name, password=password, domain_id=p.domain_id, project_id=p.project_id, ak=ak, sk=sk)


@pytest.fixture
def tenant(server: ServerThread) -> TenantInfo:
    return make_tenant(server)


def sdk_client(srv: ServerThread, t: TenantInfo, project_id: str | None = None):  # type: ignore[no-untyped-def]
    """The official SparkRTC v2 client pointed at Ember, signing with the tenant's AK/SK."""
    from huaweicloudsdkcloudrtc.v2 import CloudRTCClient
    from huaweicloudsdkcore.auth.credentials import BasicCredentials
    from huaweicloudsdkcore.http.http_config import HttpConfig

    config = HttpConfig.get_default_config()
    config.retry_times = 0
    creds = BasicCredentials(t.ak, t.sk, project_id if project_id is not None else t.project_id)
    return (
        CloudRTCClient.new_builder().with_http_config(config).with_credentials(creds).with_endpoints([srv.url]).build()
    )


@pytest.fixture
def sdk(server: ServerThread, tenant: TenantInfo):  # type: ignore[no-untyped-def]
    return sdk_client(server, tenant)


def token_for(srv: ServerThread, t: TenantInfo) -> str:
    r = httpx.post(
        f"{srv.url}/v3/auth/tokens",
        json={
            "auth": {
                "identity": {
                    "methods": ["password"],
                    "password": {"user": {"name": t.name, "password": t.password, "domain": {"name": t.name}}},
                },
                "scope": {"project": {"name": "ember"}},
            }
        },
    )
    assert r.status_code == 201, r.text
    return r.headers["X-Subject-Token"]


@pytest.fixture
def http(server: ServerThread, tenant: TenantInfo) -> Iterator[httpx.Client]:
    """Plain HTTP with an IAM token, as curl users call the API."""
    with httpx.Client(base_url=server.url, headers={"X-Auth-Token": token_for(server, tenant)}) as c:
        yield c
