"""Revocation over the API (issue 11, item 8): ``ember credential revoke`` and ``ember token revoke``, run as
the operator runs them (a subprocess on the shared database), take effect on two running servers that share
one database, on SQLite and on PostgreSQL, with the answer of an unknown AK or token."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import pytest
from huaweicloudsdkcloudrtc.v2 import ListAppsRequest
from huaweicloudsdkcore.exceptions.exceptions import ClientRequestException

from emberrtc.config import Settings
from tests.conftest import (
    _drop_postgres_database,
    _postgres_database,
    make_settings,
    make_tenant,
    sdk_client,
    token_for,
)
from tests.support.server import ServerThread, TenantInfo
from tests.support.waiting import wait_for

EMBER = str(Path(sys.executable).with_name("ember"))


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def nodes(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[ServerThread]]:
    """Two servers (two nodes) on one database of their own, both on the system clock like the CLI."""
    data_dir = tmp_path_factory.mktemp(f"revoke-{request.param}")
    url = ""
    if request.param == "postgres":
        url = _postgres_database() or ""
        if not url:
            if os.environ.get("CI"):
                pytest.fail("PostgreSQL is not reachable; CI must run the API suite on it")
            pytest.skip("PostgreSQL is not reachable")
    settings = make_settings(data_dir, url)
    started: list[ServerThread] = []
    try:
        started.append(ServerThread(settings).start())
        started.append(ServerThread(settings).start())
        yield started
    finally:
        for srv in started:
            srv.stop()
        if url:
            _drop_postgres_database(url)


def ember(settings: Settings, *args: str) -> dict[str, Any]:
    """``ember ARGS --json`` on the nodes' database, as an operator on one of the machines runs it."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("EMBER_")}
    if settings.database_url:
        env["EMBER_DATABASE_URL"] = settings.database_url
    r = subprocess.run(
        [EMBER, *args, "--json", "--data-dir", str(settings.data_dir)],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)  # type: ignore[no-any-return]


def sdk_status(srv: ServerThread, t: TenantInfo) -> tuple[int, str]:
    """List the tenant's apps through the official SDK (AK/SK): (200, "") or the refusal's status and code."""
    try:
        sdk_client(srv, t).list_apps(ListAppsRequest())
    except ClientRequestException as exc:
        return exc.status_code, exc.error_code
    return 200, ""


def token_status(srv: ServerThread, token: str) -> tuple[int, str]:
    r = httpx.get(f"{srv.url}/v2/apps", headers={"X-Auth-Token": token})
    return r.status_code, r.json().get("error_code", "") if r.status_code != 200 else ""


REFUSED = (401, "RTC.00001001")  # spec 6.1: what an unknown AK or token gets


def test_a_revoked_ak_is_refused_within_2_s_by_every_node_that_cached_it(nodes: list[ServerThread]) -> None:
    first, second = nodes
    tenant = make_tenant(first)
    assert first.services is not None
    ak2, sk2, _ = first.call(first.services.tenants.create_credential(tenant.name))
    spare = replace(tenant, ak=ak2, sk=sk2)
    for srv in nodes:  # each node now has both AKs in its cache
        assert sdk_status(srv, tenant) == (200, "") and sdk_status(srv, spare) == (200, "")
    assert sdk_status(first, replace(tenant, ak="UNKNOWNAK1234567890")) == REFUSED

    revoked = ember(first.settings, "credential", "revoke", tenant.ak)
    start = time.monotonic()
    assert revoked["ak"] == tenant.ak and revoked["state"] == "revoked" and not revoked["already_revoked"]
    assert "sk" not in revoked

    for srv in nodes:
        wait_for(lambda srv=srv: sdk_status(srv, tenant) == REFUSED, timeout=5, what=f"{srv.url} refusing the AK")
    assert time.monotonic() - start < 2.0
    for srv in nodes:  # and it stays refused; the tenant's other AK is untouched
        assert sdk_status(srv, tenant) == REFUSED
        assert sdk_status(srv, spare) == (200, "")

    again = ember(first.settings, "credential", "revoke", tenant.ak)
    assert again["already_revoked"] and again["revoked_at"] == revoked["revoked_at"]


def test_revoking_a_users_tokens_leaves_other_users_working(nodes: list[ServerThread]) -> None:
    first, second = nodes
    alice, bob = make_tenant(first), make_tenant(first)
    alice_tokens = [token_for(first, alice), token_for(second, alice)]
    bob_token = token_for(second, bob)
    for srv in nodes:
        assert all(token_status(srv, t) == (200, "") for t in [*alice_tokens, bob_token])

    done = ember(first.settings, "token", "revoke", "--user", alice.name)
    assert done == {"tenants": [alice.name], "revoked": 2}
    for srv in nodes:  # tokens are checked against the database on every request: refused at once
        assert [token_status(srv, t) for t in alice_tokens] == [REFUSED, REFUSED]
        assert token_status(srv, "EMB" + "x" * 64) == REFUSED  # what an unknown token gets
        assert token_status(srv, bob_token) == (200, "")
        assert sdk_status(srv, alice) == (200, "")  # her AK/SK is another credential: untouched

    fresh = token_for(second, alice)  # she can sign in again
    assert token_status(first, fresh) == (200, "")


def test_tenant_wide_token_revocation(nodes: list[ServerThread]) -> None:
    first, second = nodes
    acme, other = make_tenant(first), make_tenant(first)
    tokens = [token_for(first, acme), token_for(second, acme), token_for(first, acme)]
    other_token = token_for(first, other)

    done = ember(second.settings, "token", "revoke", "--tenant", acme.name)
    assert done == {"tenants": [acme.name], "revoked": 3}
    for srv in nodes:
        assert all(token_status(srv, t) == REFUSED for t in tokens)
        assert token_status(srv, other_token) == (200, "")
    assert ember(second.settings, "token", "revoke", "--tenant", acme.name)["revoked"] == 0


def test_credential_list_shows_use_and_state_but_no_secret(nodes: list[ServerThread]) -> None:
    first, second = nodes
    tenant = make_tenant(first)
    assert first.services is not None
    ak2, sk2, _ = first.call(first.services.tenants.create_credential(tenant.name))
    assert sdk_status(second, tenant) == (200, "")

    def listed() -> dict[str, dict[str, Any]]:
        return {c["ak"]: c for c in ember(first.settings, "credential", "list", "--tenant", tenant.name)["credentials"]}

    used = wait_for(lambda: (c := listed())[tenant.ak]["last_used_at"] and c, timeout=10, what="last use listed")
    assert set(used) == {tenant.ak, ak2}
    assert used[ak2]["last_used_at"] is None and used[ak2]["state"] == "active"
    assert used[tenant.ak]["tenant"] == tenant.name and used[tenant.ak]["user_name"] == tenant.name
    assert used[tenant.ak]["created_at"].endswith("Z")

    ember(first.settings, "credential", "revoke", ak2)
    env = {k: v for k, v in os.environ.items() if not k.startswith("EMBER_")}
    if first.settings.database_url:
        env["EMBER_DATABASE_URL"] = first.settings.database_url
    text = subprocess.run(
        [EMBER, "credential", "list", "--data-dir", str(first.settings.data_dir)],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert text.returncode == 0, text.stderr
    lines = {line.split()[0]: line for line in text.stdout.splitlines()[1:]}
    assert "revoked" in lines[ak2] and "active" in lines[tenant.ak]
    everything = json.dumps(ember(first.settings, "credential", "list")) + text.stdout
    for secret in (tenant.sk, sk2):
        assert secret not in everything
