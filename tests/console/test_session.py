"""Signing in and out of the console, its cookies, CSRF and cross-site refusals, the failed sign-in limit
shared with ``POST /v3/auth/tokens``, and the security headers of its pages."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import replace

import httpx
import pytest

from emberrtc.config import RateLimit
from emberrtc.domain.clock import ManualClock
from tests.conftest import make_settings, make_tenant, token_for
from tests.console.conftest import Console, csrf_of
from tests.support.server import ServerThread, TenantInfo


def test_the_sign_in_page_carries_a_csrf_cookie_and_the_security_headers(server: ServerThread) -> None:
    r = httpx.get(f"{server.url}/console")
    assert r.status_code == 200
    assert 'name="password"' in r.text and 'type="password"' in r.text
    cookie = r.headers["set-cookie"].lower()
    assert cookie.startswith("ember_console_csrf=") and "httponly" in cookie and "samesite=strict" in cookie
    assert csrf_of(r.text) in r.headers["set-cookie"]
    csp = r.headers["content-security-policy"]
    assert "default-src 'none'" in csp and "script-src 'self'" in csp and "frame-ancestors 'none'" in csp
    assert r.headers["x-frame-options"] == "DENY" and r.headers["cache-control"] == "no-store"


def test_signing_in_sets_a_strict_http_only_session_cookie(server: ServerThread, tenant: TenantInfo) -> None:
    c = Console(server.url)
    r = c.sign_in(tenant.name, tenant.password)
    assert r.status_code == 303 and r.headers["location"] == "/console/apps"
    cookie = next(v for k, v in r.headers.multi_items() if k == "set-cookie" and v.startswith("ember_console="))
    attrs = [a.strip().lower() for a in cookie.split(";")]
    assert "httponly" in attrs and "samesite=strict" in attrs and "path=/console" in attrs
    assert "secure" not in attrs  # plain HTTP here: a Secure cookie would never come back
    token = cookie.split(";")[0].split("=", 1)[1]
    assert token not in r.headers["location"]
    page = c.get("/console/apps")
    assert page.status_code == 200 and tenant.name in page.text
    assert token not in page.text  # the session token is in the cookie only
    c.close()


def test_a_wrong_password_is_refused_in_place(server: ServerThread, tenant: TenantInfo) -> None:
    c = Console(server.url)
    r = c.sign_in(tenant.name, "not-the-password")
    assert r.status_code == 401
    assert "RTC.00001001" in r.text and "the user name, password or account name is wrong" in r.text
    assert 'aria-invalid="true"' in r.text
    assert "ember_console=" not in r.headers.get("set-cookie", "")
    assert c.get("/console/apps").status_code == 303  # still signed out
    c.close()


def test_signing_out_ends_the_session_everywhere(server: ServerThread, tenant: TenantInfo) -> None:
    c = Console(server.url)
    c.sign_in(tenant.name, tenant.password)
    token = c.http.cookies.get("ember_console")
    assert token
    # The session's token is an IAM token: it works on the API until the user signs out.
    assert httpx.get(f"{server.url}/v2/apps", headers={"X-Auth-Token": token}).status_code == 200
    r = c.post("/console/sign-out", {})
    assert r.status_code == 303 and r.headers["location"] == "/console"
    assert "ember_console=" in r.headers["set-cookie"] and "max-age=0" in r.headers["set-cookie"].lower()
    assert httpx.get(f"{server.url}/v2/apps", headers={"X-Auth-Token": token}).status_code == 401
    replay = httpx.get(f"{server.url}/console/apps", cookies={"ember_console": token})
    assert replay.status_code == 303 and replay.headers["location"] == "/console"
    c.close()


def test_a_change_without_the_csrf_token_is_refused(console: Console, server: ServerThread, tenant: TenantInfo) -> None:
    http = httpx.Client(base_url=server.url, headers={"X-Auth-Token": token_for(server, tenant)})
    for csrf in ("", "0" * 64):
        r = console.post("/console/apps", {"csrf": csrf, "app_name": "forged"})
        assert r.status_code == 403 and "RTC.00001021" in r.text
    assert http.get("/v2/apps").json()["count"] == 0  # nothing was created
    r = console.post("/console/apps", {"app_name": "genuine"})
    assert r.status_code == 303
    assert [a["app_name"] for a in http.get("/v2/apps").json()["apps"]] == ["genuine"]


def test_a_cross_site_form_post_is_refused_even_with_the_token(
    console: Console, server: ServerThread, tenant: TenantInfo
) -> None:
    http = httpx.Client(base_url=server.url, headers={"X-Auth-Token": token_for(server, tenant)})
    for headers in ({"Origin": "https://evil.example"}, {"Sec-Fetch-Site": "cross-site"}):
        r = console.post("/console/apps", {"app_name": "from-elsewhere"}, headers=headers)
        assert r.status_code == 403 and "cross-site request refused" in r.text
    assert http.get("/v2/apps").json()["count"] == 0
    own = {"Origin": server.url, "Sec-Fetch-Site": "same-origin"}
    assert console.post("/console/apps", {"app_name": "from-here"}, headers=own).status_code == 303


def test_the_sign_in_form_needs_its_own_csrf_cookie(server: ServerThread, tenant: TenantInfo) -> None:
    # A login form posted from another site (no cookie of ours: SameSite=Strict) does not sign anyone in.
    data = {"csrf": "x" * 43, "user": tenant.name, "password": tenant.password}
    r = httpx.post(f"{server.url}/console/sign-in", data=data)
    assert r.status_code == 403 and "ember_console=" not in r.headers.get("set-cookie", "")


def test_pages_need_a_session(server: ServerThread) -> None:
    for path in ("/console/apps", "/console/apps/0123/recording", "/console/apps/0123/rooms/events"):
        r = httpx.get(f"{server.url}{path}")
        assert r.status_code == 303 and r.headers["location"] == "/console"
    r = httpx.post(f"{server.url}/console/apps", data={"app_name": "x", "csrf": "x"})
    assert r.status_code == 401 and "RTC.00001001" in r.text


# --- the failed sign-in limit, shared with POST /v3/auth/tokens ------------------------------------------

LIMITS = {"user_address": RateLimit(3, 60.0), "address": RateLimit(6, 60.0), "user": RateLimit(8, 80.0)}


@pytest.fixture(scope="module")
def limited(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServerThread, ManualClock]]:
    clock = ManualClock(time.time())
    settings = replace(
        make_settings(tmp_path_factory.mktemp("console-signin")), signin_limits=LIMITS, trusted_proxies="127.0.0.1"
    )
    srv = ServerThread(settings, clock=clock).start()
    try:
        yield srv, clock
    finally:
        srv.stop()


def _api_sign_in(srv: ServerThread, t: TenantInfo, password: str) -> httpx.Response:
    user = {"name": t.name, "password": password, "domain": {"name": t.name}}
    body = {"auth": {"identity": {"methods": ["password"], "password": {"user": user}}}}
    return httpx.post(f"{srv.url}/v3/auth/tokens", json=body, timeout=30)


def test_failed_sign_ins_are_limited_as_on_the_api(limited: tuple[ServerThread, ManualClock]) -> None:
    srv, clock = limited
    t = make_tenant(srv)
    c = Console(srv.url)
    for _ in range(3):
        assert c.sign_in(t.name, "wrong-password").status_code == 401
    r = c.sign_in(t.name, t.password)  # the right password, past the limit: refused without checking it
    assert r.status_code == 429 and "RTC.00001023" in r.text and int(r.headers["Retry-After"]) >= 1
    # One limit: the API refuses this user from this address too.
    assert _api_sign_in(srv, t, t.password).status_code == 429
    clock.advance(30)  # a token back (3 per 60 s)
    assert c.sign_in(t.name, t.password).status_code == 303
    c.close()


def test_the_api_failures_count_against_the_console_too(limited: tuple[ServerThread, ManualClock]) -> None:
    srv, _ = limited
    t = make_tenant(srv)
    for _ in range(3):
        assert _api_sign_in(srv, t, "wrong-password").status_code == 401
    c = Console(srv.url)
    assert c.sign_in(t.name, t.password).status_code == 429
    c.close()


def test_the_session_cookie_is_secure_over_https(limited: tuple[ServerThread, ManualClock]) -> None:
    srv, _ = limited
    t = make_tenant(srv)
    c = Console(srv.url)
    form = c.get("/console")
    # Behind a TLS-terminating proxy (trusted here: EMBER_TRUSTED_PROXIES=127.0.0.1).
    data = {"csrf": csrf_of(form.text), "user": t.name, "password": t.password}
    r = c.http.post("/console/sign-in", data=data, headers={"X-Forwarded-Proto": "https"})
    assert r.status_code == 303
    cookie = next(v for k, v in r.headers.multi_items() if k == "set-cookie" and v.startswith("ember_console="))
    assert "secure" in [a.strip().lower() for a in cookie.split(";")]
    c.close()


def test_the_live_stream_ends_when_the_session_does(console: Console, api_app: str) -> None:
    with console.http.stream("GET", f"/console/apps/{api_app}/rooms/events", timeout=10) as events:
        lines = events.iter_lines()
        assert next(lines).startswith("retry:")
        assert console.post("/console/sign-out", {}).status_code == 303
        started = time.monotonic()
        assert "event: signed-out" in lines  # reads until the server says it, or the stream ends
        assert time.monotonic() - started < 5


def test_the_console_is_not_in_the_api_description(server: ServerThread) -> None:
    paths = httpx.get(f"{server.url}/openapi.json").json()["paths"]
    assert paths and not [p for p in paths if p.startswith("/console")]


@pytest.fixture
def api_app(server: ServerThread, tenant: TenantInfo) -> str:
    with httpx.Client(base_url=server.url, headers={"X-Auth-Token": token_for(server, tenant)}) as api:
        return str(api.post("/v2/apps", json={"app_name": "streamed"}).json()["app_id"])
