"""Acceptance tests for authentication (spec 3.1, 3.2, 6.3), tenant isolation and secrets at rest.

AK/SK requests are signed with the official SDK's own signer (``huaweicloudsdkcore.signer.signer.Signer``)
so that what the server accepts is exactly what real SparkRTC clients send.
"""

from __future__ import annotations

import asyncio
import re
import sqlite3
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from huaweicloudsdkcloudrtc.v2 import AppReq, CloudRTCClient, CreateAppRequest, ListAppsRequest, ShowAppRequest
from huaweicloudsdkcore.auth.credentials import BasicCredentials
from huaweicloudsdkcore.exceptions.exceptions import ClientRequestException
from huaweicloudsdkcore.http.http_config import HttpConfig
from huaweicloudsdkcore.region.region import Region
from huaweicloudsdkcore.sdk_request import SdkRequest
from huaweicloudsdkcore.signer.signer import Signer

from emberrtc.domain.clock import ManualClock
from tests.conftest import make_tenant, sdk_client, token_for
from tests.support.server import ServerThread, TenantInfo

SDK_DATE = "%Y%m%dT%H%M%SZ"


# --- helpers -----------------------------------------------------------------------------------


def token_request(name: str, password: str, domain: dict[str, str], project: str | None = "ember") -> dict[str, Any]:
    body: dict[str, Any] = {
        "auth": {
            "identity": {
                "methods": ["password"],
                "password": {"user": {"name": name, "password": password, "domain": domain}},
            }
        }
    }
    if project is not None:
        body["auth"]["scope"] = {"project": {"name": project}}
    return body


def parse_time(value: str) -> float:
    fmt = "%Y-%m-%dT%H:%M:%S.%fZ" if "." in value else "%Y-%m-%dT%H:%M:%SZ"
    return datetime.strptime(value, fmt).replace(tzinfo=UTC).timestamp()


def assert_401(r: httpx.Response) -> None:
    assert r.status_code == 401, r.text
    assert r.json()["error_code"] == "RTC.00001001", r.text
    assert r.json()["error_msg"]


def sign(
    srv: ServerThread,
    ak: str,
    sk: str,
    method: str,
    path: str,
    query: list[tuple[str, Any]] | None = None,
    body: bytes = b"",
    headers: dict[str, str] | None = None,
    signer: type[Signer] = Signer,
) -> SdkRequest:
    """Sign a request the way the official SDK does; returns the signed SdkRequest."""
    req = SdkRequest(
        method=method,
        schema="http",
        host=srv.url.split("://", 1)[1],
        resource_path=path,
        query_params=list(query or []),
        header_params={"Content-Type": "application/json", **(headers or {})},
        body=body,
    )
    return signer(BasicCredentials(ak, sk)).sign(req)


def send(
    srv: ServerThread, req: SdkRequest, *, path: str | None = None, query: str | None = None, body: bytes | None = None
) -> httpx.Response:
    """Send a signed request, optionally with a different path, raw query or body than was signed."""
    signed_query = Signer.process_canonical_query_string(req)
    q = signed_query if query is None else query
    url = srv.url + quote(path if path is not None else req.resource_path, safe="/") + (f"?{q}" if q else "")
    content = req.body if body is None else body
    return httpx.request(req.method, url, headers=dict(req.header_params), content=content or b"")


class NoDateSigner(Signer):
    """Signs correctly, but leaves ``x-sdk-date`` out of SignedHeaders (so the date could be replayed)."""

    @classmethod
    def _process_signed_headers(cls, request: SdkRequest) -> list[str]:
        return [h for h in super()._process_signed_headers(request) if h != "x-sdk-date"]


# --- IAM tokens (3.1, 3.2) -------------------------------------------------------------------------


def test_issue_token(server: ServerThread, tenant: TenantInfo, clock: ManualClock) -> None:
    r = httpx.post(
        f"{server.url}/v3/auth/tokens", json=token_request(tenant.name, tenant.password, {"name": tenant.name})
    )
    assert r.status_code == 201, r.text
    token = r.headers["X-Subject-Token"]
    assert len(token) >= 32
    body = r.json()["token"]
    assert abs(parse_time(body["expires_at"]) - (clock.now() + 24 * 3600)) < 5
    assert body["methods"] == ["password"]
    assert body["project"]["id"] == tenant.project_id
    assert body["project"]["domain"]["id"] == tenant.domain_id
    assert body["user"]["name"] == tenant.name
    # The token works, and the domain can be named by id as well.
    assert httpx.get(f"{server.url}/v2/apps", headers={"X-Auth-Token": token}).status_code == 200
    r = httpx.post(
        f"{server.url}/v3/auth/tokens", json=token_request(tenant.name, tenant.password, {"id": tenant.domain_id}, None)
    )
    assert r.status_code == 201, r.text
    assert r.headers["X-Subject-Token"] != token


def test_token_refused(server: ServerThread, tenant: TenantInfo) -> None:
    url = f"{server.url}/v3/auth/tokens"
    other = make_tenant(server)
    for body in (
        token_request(tenant.name, tenant.password + "x", {"name": tenant.name}),  # wrong password
        token_request("nobody-" + tenant.name, tenant.password, {"name": tenant.name}),  # unknown user
        token_request(tenant.name, tenant.password, {"name": other.name}),  # user of another account
        token_request(tenant.name, tenant.password, {"name": "no-such-account"}),
        token_request(tenant.name, tenant.password, {"name": tenant.name}, project="not-my-project"),
    ):
        r = httpx.post(url, json=body)
        assert_401(r)
        assert "X-Subject-Token" not in r.headers

    r = httpx.post(url, content=b"{not json", headers={"Content-Type": "application/json"})
    assert r.status_code == 400, r.text
    assert r.json()["error_code"] == "RTC.00001002"
    r = httpx.post(url, json={"auth": {"identity": {"methods": ["password"]}}})
    assert r.status_code == 400, r.text
    assert r.json()["error_code"].startswith("RTC.0000100")


def test_token_and_projects(server: ServerThread, tenant: TenantInfo) -> None:
    token = token_for(server, tenant)
    h = {"X-Auth-Token": token}
    r = httpx.get(f"{server.url}/v3/projects", headers=h)
    assert r.status_code == 200, r.text
    (project,) = r.json()["projects"]
    assert project["id"] == tenant.project_id
    assert project["domain_id"] == tenant.domain_id
    assert project["name"] == "ember"
    assert [p["id"] for p in httpx.get(f"{server.url}/v3/projects?name=ember", headers=h).json()["projects"]] == [
        tenant.project_id
    ]
    assert httpx.get(f"{server.url}/v3/projects?name=cn-north-4", headers=h).json()["projects"] == []

    # The same with AK/SK.
    r = send(server, sign(server, tenant.ak, tenant.sk, "GET", "/v3/projects", [("name", "ember")]))
    assert r.status_code == 200, r.text
    assert [p["id"] for p in r.json()["projects"]] == [tenant.project_id]

    assert_401(httpx.get(f"{server.url}/v3/projects"))
    assert_401(httpx.get(f"{server.url}/v3/projects", headers={"X-Auth-Token": "EMB" + "x" * 60}))
    assert_401(httpx.get(f"{server.url}/v2/apps", headers={"X-Auth-Token": token[:-2]}))


def test_sdk_discovers_project_id_through_iam(server: ServerThread, tenant: TenantInfo) -> None:
    """No project_id given: the official SDK asks GET /v3/projects?name=<region> for it."""
    config = HttpConfig.get_default_config()
    config.retry_times = 0
    creds = BasicCredentials(tenant.ak, tenant.sk).with_iam_endpoint(server.url)
    client = (
        CloudRTCClient.new_builder()
        .with_http_config(config)
        .with_credentials(creds)
        .with_region(Region("ember", server.url))
        .build()
    )
    app_id = client.create_app(CreateAppRequest(body=AppReq(app_name="discovered"))).app_id
    assert creds.project_id == tenant.project_id
    assert client.show_app(ShowAppRequest(app_id=app_id)).app_name == "discovered"


def test_expired_token(server: ServerThread, tenant: TenantInfo, clock: ManualClock) -> None:
    token = token_for(server, tenant)
    h = {"X-Auth-Token": token}
    moved = 0.0
    try:
        clock.advance(24 * 3600 - 1)
        moved += 24 * 3600 - 1
        assert httpx.get(f"{server.url}/v2/apps", headers=h).status_code == 200
        clock.advance(2)
        moved += 2
        assert_401(httpx.get(f"{server.url}/v2/apps", headers=h))
        assert_401(httpx.get(f"{server.url}/v3/projects", headers=h))
    finally:
        clock.t -= moved


# --- AK/SK (3.2) ---------------------------------------------------------------------------------


def test_aksk_accepts_sdk_signatures(server: ServerThread, tenant: TenantInfo) -> None:
    r = send(server, sign(server, tenant.ak, tenant.sk, "GET", "/v2/apps", [("limit", 10)]))
    assert r.status_code == 200, r.text
    body = '{"app_name": "caf\u00e9 \u2615 signed"}'.encode()
    r = send(server, sign(server, tenant.ak, tenant.sk, "POST", "/v2/apps", body=body))
    assert r.status_code == 201, r.text
    app_id = r.json()["app_id"]
    r = send(server, sign(server, tenant.ak, tenant.sk, "GET", f"/v2/apps/{app_id}"))
    assert r.status_code == 200, r.text
    assert r.json()["app_name"] == "caf\u00e9 \u2615 signed"


def test_no_credentials(server: ServerThread) -> None:
    for method, path in (("GET", "/v2/apps"), ("POST", "/v2/apps"), ("GET", "/v2/apps/" + "a" * 32)):
        r = httpx.request(method, f"{server.url}{path}", json={"app_name": "x"})
        assert_401(r)
        assert r.headers["X-request-Id"]
    # A body the schema would refuse still gets 401 first: no hints to unauthenticated callers.
    assert_401(httpx.post(f"{server.url}/v2/apps", content=b"{broken"))


def test_aksk_tampering_is_refused(server: ServerThread, tenant: TenantInfo) -> None:
    ak, sk = tenant.ak, tenant.sk

    req = sign(server, ak, sk, "GET", "/v2/apps")
    auth = req.header_params["Authorization"]
    last = auth[-1]
    req.header_params["Authorization"] = auth[:-1] + ("0" if last != "0" else "1")
    assert_401(send(server, req))

    body = b'{"app_name": "signed-name"}'
    req = sign(server, ak, sk, "POST", "/v2/apps", body=body)
    assert_401(send(server, req, body=b'{"app_name": "other-name"}'))
    assert_401(send(server, req, body=b'{"app_name": "signed-name"} '))
    assert_401(send(server, req, body=b""))

    req = sign(server, ak, sk, "GET", "/v2/apps", [("limit", 10)])
    assert_401(send(server, req, query="limit=11"))
    assert_401(send(server, req, query="limit=10&offset=1"))
    assert_401(send(server, req, query=""))

    req = sign(server, ak, sk, "GET", "/v2/apps/" + "a" * 32)
    assert_401(send(server, req, path="/v2/apps/" + "b" * 32))
    assert_401(send(server, req, path="/v2/apps"))

    # The header set itself is covered: drop a signed header, or change the host.
    req = sign(server, ak, sk, "GET", "/v2/apps", headers={"X-Project-Id": tenant.project_id})
    headers = {k: v for k, v in req.header_params.items() if k != "X-Project-Id"}
    assert_401(httpx.get(f"{server.url}/v2/apps", headers=headers))
    req = sign(server, ak, sk, "GET", "/v2/apps")
    assert_401(httpx.get(f"{server.url}/v2/apps", headers={**req.header_params, "Host": "evil.example.com"}))

    # None of the refused POSTs created anything.
    names = [a["app_name"] for a in send(server, sign(server, ak, sk, "GET", "/v2/apps")).json()["apps"]]
    assert "signed-name" not in names and "other-name" not in names


def test_aksk_wrong_keys_are_refused(server: ServerThread, tenant: TenantInfo) -> None:
    assert_401(send(server, sign(server, "UNKNOWNAK1234567890", tenant.sk, "GET", "/v2/apps")))
    assert_401(send(server, sign(server, tenant.ak, tenant.sk + "x", "GET", "/v2/apps")))
    other = make_tenant(server)
    assert_401(send(server, sign(server, tenant.ak, other.sk, "GET", "/v2/apps")))

    with pytest.raises(ClientRequestException) as err:
        sdk_client(server, replace(tenant, sk="x" * 40)).list_apps(ListAppsRequest())
    assert err.value.status_code == 401
    assert err.value.error_code == "RTC.00001001"
    # The right keys through the same client code work.
    assert sdk_client(server, tenant).list_apps(ListAppsRequest()).count == 0


def test_aksk_date_is_checked(server: ServerThread, tenant: TenantInfo, clock: ManualClock) -> None:
    def at(offset: float) -> dict[str, str]:
        return {"X-Sdk-Date": datetime.fromtimestamp(clock.now() + offset, UTC).strftime(SDK_DATE)}

    def get(headers: dict[str, str]) -> httpx.Response:
        return send(server, sign(server, tenant.ak, tenant.sk, "GET", "/v2/apps", headers=headers))

    assert get(at(-14 * 60)).status_code == 200
    assert get(at(14 * 60)).status_code == 200
    assert_401(get(at(-16 * 60)))
    assert_401(get(at(16 * 60)))
    assert_401(get(at(-24 * 3600)))

    # Malformed dates (the SDK's signer cannot produce them, so a signed request is altered).
    for bad in ("2024-01-02T15:04:05Z", "yesterday", ""):
        req = sign(server, tenant.ak, tenant.sk, "GET", "/v2/apps")
        req.header_params["X-Sdk-Date"] = bad or req.header_params["X-Sdk-Date"][:-1]
        assert_401(send(server, req))

    # x-sdk-date must be among the signed headers.
    r = send(server, sign(server, tenant.ak, tenant.sk, "GET", "/v2/apps", signer=NoDateSigner))
    assert "x-sdk-date" not in r.request.headers["Authorization"].split("SignedHeaders=")[1].split(",")[0]
    assert_401(r)


def test_project_id_must_match(server: ServerThread, tenant: TenantInfo) -> None:
    other = make_tenant(server)
    with pytest.raises(ClientRequestException) as err:
        sdk_client(server, tenant, project_id=other.project_id).list_apps(ListAppsRequest())
    assert err.value.status_code == 401
    with pytest.raises(ClientRequestException) as err:
        sdk_client(server, tenant, project_id="0" * 32).list_apps(ListAppsRequest())
    assert err.value.status_code == 401
    r = send(server, sign(server, tenant.ak, tenant.sk, "GET", "/v2/apps", headers={"X-Project-Id": "0" * 32}))
    assert_401(r)
    token = token_for(server, tenant)
    assert_401(httpx.get(f"{server.url}/v2/apps", headers={"X-Auth-Token": token, "X-Project-Id": other.project_id}))
    ok = httpx.get(f"{server.url}/v2/apps", headers={"X-Auth-Token": token, "X-Project-Id": tenant.project_id})
    assert ok.status_code == 200


def test_aksk_special_characters(server: ServerThread, tenant: TenantInfo) -> None:
    query: list[tuple[str, Any]] = [
        ("name", "ember"),
        ("q", "a b+c&d=e/f?g"),
        ("uni", "\u00fc\u00f1\u00ee\u00e7\u00f8d\u00e9 \u6d4b\u8bd5 \U0001f600"),
        ("tag", ["zeta", "alpha", "alpha"]),
        ("empty", ""),
        ("~tilde*", "!'()*"),
    ]
    req = sign(server, tenant.ak, tenant.sk, "GET", "/v3/projects", query)
    r = send(server, req)
    assert r.status_code == 200, r.text
    assert [p["id"] for p in r.json()["projects"]] == [tenant.project_id]

    # The signature covers the canonical (sorted) query, so the order on the wire does not matter.
    wire = Signer.process_canonical_query_string(req).split("&")
    r = send(server, req, query="&".join(reversed(wire)))
    assert r.status_code == 200, r.text
    # But a different value for a repeated key does.
    assert_401(send(server, req, query="&".join(wire).replace("tag=zeta", "tag=zeta2")))

    # Special characters in the path: the signature verifies, and the app is simply not there.
    req = sign(server, tenant.ak, tenant.sk, "GET", "/v2/apps/\u00fcn\u00efc\u00f8d\u00e9 app:1")
    r = send(server, req)
    assert r.status_code == 404, r.text
    assert r.json()["error_code"] == "RTC.00001015"


# --- tenant isolation ------------------------------------------------------------------------------


def test_tenant_isolation(server: ServerThread, http: httpx.Client, tenant: TenantInfo) -> None:
    # Tenant A: an app with a rule, a callback, auto-record and two jobs.
    app = http.post("/v2/apps", json={"app_name": "tenant-a-app"}).json()["app_id"]
    base = f"/v2/apps/{app}"
    rule_body = {
        "obs_addr": {"location": "cn-north-4", "project_id": tenant.project_id, "bucket": "tenant-a"},
        "record_formats": ["MP4"],
        "mp4_config": {"record_cycle": 60},
    }
    rule = http.post(f"{base}/record-rules", json=rule_body).json()["rule_id"]
    assert http.put(f"{base}/record-callback", json={"url": "http://127.0.0.1:9/cb"}).status_code == 200
    rec = {"record_param": {"record_rule_id": rule}}
    single = http.post(f"{base}/individual-stream-jobs", json={"room_id": "r", "user_id": "u", **rec}).json()["job_id"]
    mix_body = {"mix_param": {"room_id": "r", "encode_template": "audio_only"}, **rec}
    mixed = http.post(f"{base}/mix-stream-jobs", json=mix_body).json()["job_id"]
    before = {
        p: http.get(base + p).json()
        for p in ("", f"/record-rules/{rule}", "/record-callback", "/auto-record-mode")
        + (f"/individual-stream-jobs/{single}", f"/mix-stream-jobs/{mixed}")
    }

    # Tenant B, with a token and with the SDK.
    b = make_tenant(server)
    with httpx.Client(base_url=server.url, headers={"X-Auth-Token": token_for(server, b)}) as hb:
        b_app = hb.post("/v2/apps", json={"app_name": "tenant-b-app"}).json()["app_id"]
        attempts = [
            ("GET", base, None),
            ("DELETE", base, None),
            ("POST", f"{base}/enable", None),
            ("POST", f"{base}/disable", None),
            ("GET", f"{base}/record-callback", None),
            ("PUT", f"{base}/record-callback", {"url": "http://127.0.0.1:9/stolen"}),
            ("GET", f"{base}/auto-record-mode", None),
            ("PUT", f"{base}/auto-record-mode", {"mode": "AUTO_INDIVIDUAL_RECORD", "record_rule_id": rule}),
            ("GET", f"{base}/record-rules", None),
            ("POST", f"{base}/record-rules", rule_body),
            ("GET", f"{base}/record-rules/{rule}", None),
            ("PUT", f"{base}/record-rules/{rule}", rule_body),
            ("DELETE", f"{base}/record-rules/{rule}", None),
            ("POST", f"{base}/individual-stream-jobs", {"room_id": "r", "user_id": "v", **rec}),
            ("GET", f"{base}/individual-stream-jobs/{single}", None),
            ("PUT", f"{base}/individual-stream-jobs/{single}", rec),
            ("DELETE", f"{base}/individual-stream-jobs/{single}", None),
            ("POST", f"{base}/mix-stream-jobs", mix_body),
            ("GET", f"{base}/mix-stream-jobs/{mixed}", None),
            ("PUT", f"{base}/mix-stream-jobs/{mixed}", {"mix_param": {"max_idle_time": 60}}),
            ("DELETE", f"{base}/mix-stream-jobs/{mixed}", None),
        ]
        for method, path, body in attempts:
            r = hb.request(method, path, json=body)
            assert r.status_code == 404, f"{method} {path}: {r.status_code} {r.text}"
            assert r.json()["error_code"] == "RTC.00001015", f"{method} {path}: {r.text}"
        b_list = hb.get("/v2/apps").json()
        assert [a["app_id"] for a in b_list["apps"]] == [b_app]
        assert b_list["count"] == 1

    with pytest.raises(ClientRequestException) as err:
        sdk_client(server, b).show_app(ShowAppRequest(app_id=app))
    assert (err.value.status_code, err.value.error_code) == (404, "RTC.00001015")

    # A sees exactly what it had, and never B's app.
    a_list = http.get("/v2/apps").json()
    assert [a["app_id"] for a in a_list["apps"]] == [app]
    assert {p: http.get(base + p).json() for p in before} == before


# --- secrets at rest -------------------------------------------------------------------------------


async def _postgres_dump(url: str) -> str:
    import asyncpg

    conn = await asyncpg.connect(url, timeout=10)
    try:
        tables = [
            r["table_name"]
            for r in await conn.fetch(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public' "
                "AND table_type = 'BASE TABLE'"
            )
        ]
        rows = []
        for t in tables:
            rows += [r[0] for r in await conn.fetch(f'SELECT row_to_json(x)::text FROM "{t}" x')]
        return "\n".join(rows)
    finally:
        await conn.close()


def test_secrets_are_not_stored_in_clear(server: ServerThread, http: httpx.Client, tenant: TenantInfo) -> None:
    token = http.headers["X-Auth-Token"]
    app_id = http.post("/v2/apps", json={"app_name": "secret-app"}).json()["app_id"]
    app_key = http.get(f"/v2/apps/{app_id}").json()["authentication"]["app_key"]
    auth_key = "callback-auth-key-" + tenant.sk[:8]
    r = http.put(f"/v2/apps/{app_id}/record-callback", json={"url": "http://127.0.0.1:9/cb", "auth_key": auth_key})
    assert r.status_code == 200, r.text
    assert len(app_key) >= 16

    if server.settings.database_url:
        dump = asyncio.run(_postgres_dump(server.settings.database_url))
        raw = dump.encode()
    else:
        db = server.settings.data_dir / "ember.db"
        conn = sqlite3.connect(db)
        try:
            dump = "\n".join(conn.iterdump())
        finally:
            conn.close()
        # The raw files too (WAL included): nothing hides in free pages or the log.
        raw = b"".join(p.read_bytes() for p in sorted(db.parent.glob("ember.db*")))
        raw += dump.encode()

    # The dump really holds this tenant's rows...
    for visible in (tenant.ak, tenant.domain_id, app_id, "http://127.0.0.1:9/cb"):
        assert visible in dump, visible
    # ...but none of its secrets in clear.
    for name, secret in (
        ("SK", tenant.sk),
        ("password", tenant.password),
        ("token", token),
        ("app_key", app_key),
        ("callback auth_key", auth_key),
    ):
        assert secret not in dump, f"the {name} is stored in clear"
        assert secret.encode() not in raw, f"the {name} is stored in clear"
    assert re.search(r"scrypt\$", dump), "password hashes are expected to be scrypt"
