"""Acceptance test: everything Ember was told survives a restart (SQLite data folder and PostgreSQL).

A server is started on a fresh database, given a tenant, apps, a rule, a callback, the auto-record mode
and jobs, and stopped; a new server on the same data folder and database must answer every read the
same way, accept the same credentials and tokens, and keep supervising the jobs that had not stopped.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from huaweicloudsdkcloudrtc.v2 import ListAppsRequest, ShowIndividualStreamJobRequest

from emberrtc.config import Settings
from emberrtc.domain.clock import ManualClock
from tests import conftest
from tests.support.server import ServerThread
from tests.support.waiting import wait_for


@pytest.fixture(params=["sqlite", "postgres"])
def fresh_settings(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Settings]:
    """Settings for a private, empty database of each kind (and its own data folder)."""
    if request.param == "sqlite":
        yield conftest.make_settings(tmp_path)
        return
    url = conftest._postgres_database()
    if url is None:
        if os.environ.get("CI"):
            pytest.fail(f"PostgreSQL is not reachable at {conftest.POSTGRES_ADMIN_URL}")
        pytest.skip(f"PostgreSQL is not reachable at {conftest.POSTGRES_ADMIN_URL}")
    try:
        yield conftest.make_settings(tmp_path, url)
    finally:
        conftest._drop_postgres_database(url)


def ok(r: httpx.Response, status: int = 200) -> dict[str, Any]:
    assert r.status_code == status, f"{r.request.method} {r.request.url}: {r.status_code} {r.text}"
    return r.json() if r.content else {}


def populate(h: httpx.Client, project_id: str) -> tuple[list[str], dict[str, str]]:
    """Create one of everything; return the paths to compare and the jobs by role."""
    a1 = ok(h.post("/v2/apps", json={"app_name": "restart-main"}), 201)["app_id"]
    a2 = ok(h.post("/v2/apps", json={"app_name": "restart-disabled"}), 201)["app_id"]
    ok(h.post(f"/v2/apps/{a2}/disable"))
    rule = ok(
        h.post(
            f"/v2/apps/{a1}/record-rules",
            json={
                "obs_addr": {"location": "cn-north-4", "project_id": project_id, "bucket": "restart", "object": "rec"},
                "record_formats": ["HLS", "MP4"],
                "hls_config": {"record_cycle": 0, "record_slice_duration": 6},
                "mp4_config": {"record_cycle": 120, "record_prefix": "{app_id}/{stream}_{file_start_time}"},
            },
        ),
        201,
    )["rule_id"]
    ok(
        h.put(
            f"/v2/apps/{a1}/record-callback",
            json={"url": "http://127.0.0.1:9/hook", "auth_key": "restart-auth-key"},
        )
    )
    ok(h.put(f"/v2/apps/{a1}/auto-record-mode", json={"mode": "AUTO_INDIVIDUAL_RECORD", "record_rule_id": rule}))

    rec = {"record_param": {"record_rule_id": rule}}
    jobs = f"/v2/apps/{a1}/individual-stream-jobs"
    mix = f"/v2/apps/{a1}/mix-stream-jobs"
    short = ok(h.post(jobs, json={"room_id": "r1", "user_id": "u1", **rec}), 201)["job_id"]
    long = ok(h.post(jobs, json={"room_id": "r1", "user_id": "u2", "max_idle_time": 600, **rec}), 201)["job_id"]
    done = ok(h.post(jobs, json={"room_id": "r1", "user_id": "u3", **rec}), 201)["job_id"]
    ok(h.delete(f"{jobs}/{done}"), 204)
    panes = [{"id": 1, "user_id": "u1", "x": 0, "y": 0, "width": 0.5, "height": 1, "crop_mode": "KEEP_RATIO_CROP"}]
    mixed = ok(
        h.post(
            mix,
            json={
                "mix_param": {
                    "room_id": "r1",
                    "encode_template": "640x480_15_500",
                    "layout_template": "custom",
                    "layout_panes": panes,
                    "background_image": "s3://restart/bg.png",
                },
                "publish_param": {"rtmp_urls": ["rtmp://live.example.com/restart"]},
                **rec,
            },
        ),
        201,
    )["job_id"]
    paths = [
        "/v2/apps",
        "/v2/apps?state=DEACTIVATION",
        f"/v2/apps/{a1}",
        f"/v2/apps/{a2}",
        f"/v2/apps/{a1}/record-rules",
        f"/v2/apps/{a1}/record-rules/{rule}",
        f"/v2/apps/{a1}/record-callback",
        f"/v2/apps/{a1}/auto-record-mode",
        f"{jobs}/{short}",
        f"{jobs}/{long}",
        f"{jobs}/{done}",
        f"{mix}/{mixed}",
    ]
    return paths, {"app": a1, "short": f"{jobs}/{short}", "long": f"{jobs}/{long}", "mix": f"{mix}/{mixed}"}


def test_everything_survives_a_restart(fresh_settings: Settings) -> None:
    clock = ManualClock(time.time())
    first = ServerThread(fresh_settings, clock=clock).start()
    try:
        tenant = conftest.make_tenant(first)
        token = conftest.token_for(first, tenant)
        with httpx.Client(base_url=first.url, headers={"X-Auth-Token": token}) as h:
            paths, jobs = populate(h, tenant.project_id)
            before = {p: ok(h.get(p)) for p in paths}
    finally:
        first.stop()
    with pytest.raises(httpx.TransportError):
        httpx.get(f"{first.url}/openapi.json", timeout=2)

    # Sanity: what is compared is what was made.
    assert before["/v2/apps"]["count"] == 2
    assert before[f"/v2/apps/{jobs['app']}/record-callback"]["record_callback"]["auth_key"] == "restart-auth-key"
    assert {before[jobs[k]]["state"] for k in ("short", "long", "mix")} == {"INIT"}

    second = ServerThread(fresh_settings, clock=clock).start()
    try:
        with httpx.Client(base_url=second.url, headers={"X-Auth-Token": token}) as h:
            after = {p: ok(h.get(p)) for p in paths}
            assert after == before

            # The AK/SK made before the restart, and a new token, work.
            sdk = conftest.sdk_client(second, tenant)
            assert sdk.list_apps(ListAppsRequest()).count == 2
            job_id = jobs["short"].rsplit("/", 1)[1]
            shown = sdk.show_individual_stream_job(ShowIndividualStreamJobRequest(app_id=jobs["app"], job_id=job_id))
            assert shown.state == "INIT"
            new_token = conftest.token_for(second, tenant)
            assert httpx.get(f"{second.url}/v2/apps", headers={"X-Auth-Token": new_token}).status_code == 200

            # Jobs that were waiting are still supervised: past max_idle_time they stop by themselves.
            clock.advance(31)

            def stopped(path: str) -> dict[str, Any] | None:
                body = ok(h.get(path))
                return body if body["state"] == "STOPPED" else None

            for key in ("short", "mix"):
                body = wait_for(lambda k=key: stopped(jobs[k]), what=f"the {key} job to stop after the restart")
                assert body["stop_reason"] == "IDLE_TIMEOUT"
                assert body["description"]
            assert second.services is not None
            second.call(second.services.jobs.tick())
            assert ok(h.get(jobs["long"]))["state"] == "INIT"  # its max_idle_time (600 s) has not passed
            clock.advance(600)
            body = wait_for(lambda: stopped(jobs["long"]), what="the long job to stop")
            assert body["stop_reason"] == "IDLE_TIMEOUT"
    finally:
        second.stop()
