"""Bad input gets the spec's 400 with a clear message, never a 5xx or a dropped connection (issue 11, item 6).

Each case is one that a fuzz run or a review found answered with 500 (or a traceback) before.
"""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select
from websockets.asyncio.client import connect

from emberrtc.store.models import Token
from tests.support.server import ServerThread, TenantInfo


def token_rows(srv: ServerThread) -> int:
    assert srv.services is not None
    return int(srv.call(srv.services.db.run(lambda s: s.execute(select(func.count()).select_from(Token)).scalar_one())))


def sign_in(user: Any, scope: Any = None) -> dict[str, Any]:
    body: dict[str, Any] = {"auth": {"identity": {"methods": ["password"], "password": {"user": user}}}}
    if scope is not None:
        body["auth"]["scope"] = scope
    return body


def assert_400(r: httpx.Response, code: str | None = None) -> None:
    assert r.status_code == 400, r.text
    body = r.json()
    assert body["error_code"].startswith("RTC.0000100"), body
    if code:
        assert body["error_code"] == code, body
    assert body["error_msg"]


def test_offsets_beyond_64_bits_are_refused(http: httpx.Client) -> None:
    app_id = http.post("/v2/apps", json={"app_name": "offsets"}).json()["app_id"]
    for path in ("/v2/apps", f"/v2/apps/{app_id}/record-rules"):
        for offset in (2**63, 2**31, -1):
            assert_400(http.get(path, params={"offset": offset}), "RTC.00001003")
        assert http.get(path, params={"offset": 2**31 - 1}).status_code == 200


def test_malformed_sign_in_bodies_get_400_and_store_nothing(server: ServerThread, tenant: TenantInfo) -> None:
    url = f"{server.url}/v3/auth/tokens"
    good = {"name": tenant.name, "password": tenant.password, "domain": {"name": tenant.name}}
    before = token_rows(server)
    bodies: list[bytes] = [
        json.dumps(sign_in("x")).encode(),  # "user": "x"
        json.dumps(sign_in({**good, "domain": {"name": [tenant.name]}})).encode(),
        json.dumps(sign_in({**good, "name": 5})).encode(),
        json.dumps(sign_in({**good, "domain": {}})).encode(),
        json.dumps(sign_in({**good, "password": "\ud800"})).encode(),  # a lone surrogate, JSON-escaped
        b"[" * 1000 + b"]" * 1000,
        json.dumps({"auth": {"identity": {"methods": [[[[]]]]}}}).encode(),
        json.dumps(sign_in(good, scope={"project": "ember"})).encode(),  # the password is right
        json.dumps(sign_in(good, scope="ember")).encode(),
        json.dumps({"auth": {"identity": {"methods": ["token"], "password": {"user": good}}}}).encode(),
    ]
    for body in bodies:
        r = httpx.post(url, content=body, headers={"Content-Type": "application/json"})
        assert_400(r)
        assert "X-Subject-Token" not in r.headers
    assert token_rows(server) == before  # nothing stored for any of them
    assert httpx.post(url, json=sign_in(good)).status_code == 201


def test_405_names_the_allowed_methods(http: httpx.Client) -> None:
    r = http.patch("/v2/apps")
    assert r.status_code == 405 and r.json()["error_code"] == "RTC.00001025"
    assert {m.strip() for m in r.headers["Allow"].split(",")} == {"GET", "POST"}
    app_id = http.post("/v2/apps", json={"app_name": "allow"}).json()["app_id"]
    r = http.put(f"/v2/apps/{app_id}")
    assert {m.strip() for m in r.headers["Allow"].split(",")} == {"GET", "DELETE"}


def test_an_undecodable_body_on_a_fastapi_route_is_malformed(http: httpx.Client) -> None:
    app_id = http.post("/v2/apps", json={"app_name": "deep"}).json()["app_id"]
    r = http.post(
        f"/v2/apps/{app_id}/individual-stream-jobs",
        content=b"[" * 100_000 + b"]" * 100_000,
        headers={"Content-Type": "application/json"},
    )
    assert_400(r, "RTC.00001002")


@pytest.mark.parametrize(
    "message",
    [
        '{"type": "join", "app_id": "a", "room_id": "r", "user_id": "u", "ctime": "1", "signature": "\\u00e9\\u00e9"}',
        '{"type": "join", "x": ' + "[" * 100_000 + "]" * 100_000 + "}",
    ],
    ids=["non-ascii-signature", "deeply-nested"],
)
async def test_bad_signalling_messages_are_refused_with_a_record(server: ServerThread, message: str) -> None:
    url = server.url.replace("http://", "ws://") + "/v1/rtc/signalling"
    async with connect(url, proxy=None, max_size=None) as ws:
        await ws.send(message)
        reply = json.loads(await ws.recv())
        assert reply["type"] == "error" and reply["code"] in ("RTC.00001002", "RTC.00001003"), reply
        await ws.wait_closed()
        assert ws.close_code == 4403
