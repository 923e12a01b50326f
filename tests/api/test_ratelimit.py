"""Acceptance tests for throttling (spec Table 1-2): 60/min for management APIs, 10/s for job APIs,
per tenant and per API category. The server's clock only moves when a test moves it, so the buckets
refill exactly when told to."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import httpx
import pytest
from huaweicloudsdkcloudrtc.v2 import ListAppsRequest
from huaweicloudsdkcore.exceptions.exceptions import ClientRequestException

from emberrtc.domain.clock import ManualClock
from tests.conftest import make_tenant, sdk_client, token_for
from tests.support.server import ServerThread, TenantInfo


@pytest.fixture
def limited(server: ServerThread, clock: ManualClock) -> Iterator[Callable[[float], None]]:
    """Rate limiting on for one test; yields a function that moves the clock (moved back afterwards)."""
    assert server.services is not None
    limiter = server.services.rate_limiter
    moved = 0.0

    def advance(seconds: float) -> None:
        nonlocal moved
        clock.advance(seconds)
        moved += seconds

    limiter.enabled = True
    try:
        yield advance
    finally:
        limiter.enabled = False
        clock.t -= moved


def calls_until_throttled(call: Callable[[], httpx.Response], limit: int = 200) -> tuple[int, httpx.Response]:
    """How many calls succeed before the first 429 (and that 429)."""
    for n in range(limit):
        r = call()
        if r.status_code == 429:
            return n, r
        assert r.status_code < 400, r.text
    pytest.fail(f"no 429 after {limit} calls")


def assert_throttled(r: httpx.Response) -> None:
    assert r.status_code == 429, r.text
    assert int(r.headers["Retry-After"]) >= 1
    assert r.headers["X-request-Id"]
    body = r.json()
    assert body["error_code"].startswith("RTC.")
    assert body["error_msg"]


def test_management_limit_per_tenant_and_category(
    server: ServerThread, http: httpx.Client, tenant: TenantInfo, limited: Callable[[float], None]
) -> None:
    app_id = http.post("/v2/apps", json={"app_name": "limited"}).json()["app_id"]  # 1 of 60
    n, r = calls_until_throttled(lambda: http.get("/v2/apps"))
    assert n == 59
    assert_throttled(r)
    assert int(r.headers["Retry-After"]) <= 2  # one token comes back every second
    # Every app-management operation shares the bucket, whatever the credential.
    assert_throttled(http.get(f"/v2/apps/{app_id}"))
    assert_throttled(http.post(f"/v2/apps/{app_id}/disable"))
    with pytest.raises(ClientRequestException) as err:
        sdk_client(server, tenant).list_apps(ListAppsRequest())
    assert err.value.status_code == 429

    # Another tenant is not affected.
    other = make_tenant(server)
    r = httpx.get(f"{server.url}/v2/apps", headers={"X-Auth-Token": token_for(server, other)})
    assert r.status_code == 200, r.text
    # Another category of the same tenant is not affected.
    rule = {
        "obs_addr": {"location": "cn-north-4", "project_id": tenant.project_id, "bucket": "limited"},
        "record_formats": ["MP4"],
        "mp4_config": {"record_cycle": 60},
    }
    assert http.post(f"/v2/apps/{app_id}/record-rules", json=rule).status_code == 201
    assert http.get(f"/v2/apps/{app_id}/record-rules").status_code == 200
    assert http.get(f"/v2/apps/{app_id}/auto-record-mode").status_code == 200

    # Time refills the bucket: one token a second, up to 60.
    limited(1.0)
    assert http.get("/v2/apps").status_code == 200
    assert_throttled(http.get("/v2/apps"))
    limited(60.0)
    n, r = calls_until_throttled(lambda: http.get("/v2/apps"))
    assert n == 60
    assert_throttled(r)


def test_job_limit_is_ten_per_second(http: httpx.Client, limited: Callable[[float], None]) -> None:
    app_id = http.post("/v2/apps", json={"app_name": "limited-jobs"}).json()["app_id"]
    r = http.post(
        f"/v2/apps/{app_id}/individual-stream-jobs",
        json={"room_id": "r", "user_id": "u", "publish_param": {"rtmp_urls": ["rtmp://live.example.com/a"]}},
    )
    assert r.status_code == 201, r.text  # 1 of 10
    url = f"/v2/apps/{app_id}/individual-stream-jobs/{r.json()['job_id']}"
    n, r = calls_until_throttled(lambda: http.get(url))
    assert n == 9
    assert_throttled(r)
    assert_throttled(http.delete(url))

    # Mixed-stream jobs are a category of their own.
    r = http.post(
        f"/v2/apps/{app_id}/mix-stream-jobs",
        json={
            "mix_param": {"room_id": "r", "encode_template": "audio_only"},
            "publish_param": {"rtmp_urls": ["rtmp://live.example.com/m"]},
        },
    )
    assert r.status_code == 201, r.text

    # A tenth of a second brings one request back (a little more: the clock is a float near 1.7e9);
    # a second brings all ten.
    limited(0.15)
    assert http.get(url).status_code == 200
    assert_throttled(http.get(url))
    limited(1.0)
    n, _ = calls_until_throttled(lambda: http.get(url))
    assert n == 10
    assert http.get("/v2/apps").status_code == 200  # the management bucket was never touched


def test_limits_off_by_default_in_tests(server: ServerThread, http: httpx.Client) -> None:
    """The fixture restores the server's setting: without it, 70 quick calls all succeed."""
    assert server.services is not None and server.services.rate_limiter.enabled is False
    assert all(http.get("/v2/apps").status_code == 200 for _ in range(70))


def test_blocked_peeks_without_taking_and_full_buckets_are_forgotten() -> None:
    from emberrtc.api import ratelimit
    from emberrtc.api.ratelimit import RateLimiter
    from emberrtc.config import RateLimit
    from emberrtc.domain.errors import RateLimited

    clock = ManualClock(1000.0)
    limiter = RateLimiter({"refused_joins": RateLimit(2, 10.0)}, clock)
    assert limiter.blocked("10.0.0.9", "refused_joins") is None
    limiter.check("10.0.0.9", "refused_joins")
    assert limiter.blocked("10.0.0.9", "refused_joins") is None  # peeking takes nothing
    limiter.check("10.0.0.9", "refused_joins")
    assert limiter.blocked("10.0.0.9", "refused_joins") == pytest.approx(5.0)
    with pytest.raises(RateLimited):
        limiter.check("10.0.0.9", "refused_joins")
    clock.advance(5.0)
    assert limiter.blocked("10.0.0.9", "refused_joins") is None
    assert limiter.blocked("elsewhere", "unknown-category") is None

    # Many addresses: once their buckets refill they are dropped, so the map does not grow without end.
    n = ratelimit._PRUNE_AT
    for i in range(n + 5):
        limiter.check(f"a{i}", "refused_joins")
    clock.advance(10.0)  # every one of those buckets is full again
    for i in range(n + 5):
        limiter.check(f"b{i}", "refused_joins")
    assert len(limiter._buckets) <= n + 5  # the a-buckets are gone; the b-buckets are still in use
