"""Failed sign-ins are limited per user and client address (issue 11, item 7), and the client address is
the peer's unless a trusted proxy says otherwise (item 9: ``X-Forwarded-For`` from anyone else is ignored).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import pytest

from emberrtc.config import RateLimit
from emberrtc.domain.clock import ManualClock
from tests.conftest import make_settings, make_tenant
from tests.support.server import ServerThread, TenantInfo

LIMITS = {"user_address": RateLimit(3, 60.0), "address": RateLimit(6, 60.0), "user": RateLimit(8, 80.0)}


def start(tmp: Path, **changes: Any) -> tuple[ServerThread, ManualClock]:
    clock = ManualClock(time.time())
    settings = replace(make_settings(tmp), signin_limits=LIMITS, **changes)
    return ServerThread(settings, clock=clock).start(), clock


@pytest.fixture(scope="module")
def direct(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServerThread, ManualClock]]:
    srv, clock = start(tmp_path_factory.mktemp("signin"))
    try:
        yield srv, clock
    finally:
        srv.stop()


@pytest.fixture(scope="module")
def proxied(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServerThread, ManualClock]]:
    srv, clock = start(tmp_path_factory.mktemp("signin-proxy"), trusted_proxies="127.0.0.1")
    try:
        yield srv, clock
    finally:
        srv.stop()


def sign_in(srv: ServerThread, user: str, password: str, forwarded: str | None = None) -> httpx.Response:
    body = {
        "auth": {
            "identity": {
                "methods": ["password"],
                "password": {"user": {"name": user, "password": password, "domain": {"name": user}}},
            }
        }
    }
    headers = {"X-Forwarded-For": forwarded} if forwarded else {}
    return httpx.post(f"{srv.url}/v3/auth/tokens", json=body, headers=headers, timeout=30)


def assert_limited(r: httpx.Response) -> float:
    assert r.status_code == 429, r.text
    assert r.json()["error_code"] == "RTC.00001023"
    return float(r.headers["Retry-After"])


def test_wrong_passwords_from_one_address_are_limited(direct: tuple[ServerThread, ManualClock]) -> None:
    srv, clock = direct
    t: TenantInfo = make_tenant(srv)
    for _ in range(3):
        assert sign_in(srv, t.name, "wrong-password").status_code == 401
    # Past the limit even the right password is refused without being checked; Retry-After says when.
    wait = assert_limited(sign_in(srv, t.name, t.password))
    assert 0 < wait <= 20  # 3 per 60 s: a token every 20 s
    clock.advance(wait)
    assert sign_in(srv, t.name, t.password).status_code == 201
    clock.advance(3600)  # leave the limiter as it was for the other tests


def test_forwarded_for_from_an_untrusted_peer_is_ignored(direct: tuple[ServerThread, ManualClock]) -> None:
    srv, clock = direct
    # Six failures for six users, each claiming another address: all from 127.0.0.1 all the same.
    for i in range(6):
        assert sign_in(srv, f"nobody{i}", "wrong-password", forwarded=f"203.0.113.{i}").status_code == 401
    assert_limited(sign_in(srv, "nobody-else", "wrong-password", forwarded="198.51.100.7"))
    clock.advance(3600)


def test_a_trusted_proxy_names_the_client(proxied: tuple[ServerThread, ManualClock]) -> None:
    srv, clock = proxied
    t = make_tenant(srv)
    # Through the proxy, each client address has its own count ...
    for i in range(6):
        assert sign_in(srv, f"nobody{i}", "wrong-password", forwarded=f"203.0.113.{i}").status_code == 401
    assert sign_in(srv, "nobody-else", "wrong-password", forwarded="198.51.100.7").status_code == 401
    # ... so a guesser at one address does not lock the user out at another.
    for _ in range(3):
        assert sign_in(srv, t.name, "wrong-password", forwarded="203.0.113.50").status_code == 401
    assert_limited(sign_in(srv, t.name, t.password, forwarded="203.0.113.50"))
    assert sign_in(srv, t.name, t.password, forwarded="198.51.100.8").status_code == 201
    clock.advance(3600)


def test_a_distributed_guesser_locks_a_user_out_only_briefly(proxied: tuple[ServerThread, ManualClock]) -> None:
    srv, clock = proxied
    t = make_tenant(srv)
    for i in range(8):  # the per-user limit, from eight addresses
        assert sign_in(srv, t.name, "wrong-password", forwarded=f"192.0.2.{i}").status_code == 401
    wait = assert_limited(sign_in(srv, t.name, t.password, forwarded="198.51.100.9"))
    assert wait <= 10  # 8 per 80 s: open again 10 s after the guessing stops
    clock.advance(wait)
    assert sign_in(srv, t.name, t.password, forwarded="198.51.100.9").status_code == 201
    clock.advance(3600)
