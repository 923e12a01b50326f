"""Acceptance tests for recording jobs: single-stream (spec 4.4) and mixed-stream (spec 4.8).

Every job here waits in INIT (no media plane is attached to the test server), so the idle timeout is
driven by moving the server's clock and waiting for the supervisor to notice.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from huaweicloudsdkcloudrtc.v2 import (
    AppReq,
    CreateAppRequest,
    CreateIndividualStreamJobRequest,
    CreateMixJobRequest,
    CreateRecordRuleRequest,
    IndividualStreamJobReq,
    MixJobReq,
    MixLayoutPane,
    MixParam,
    MP4RecordConfig,
    RecordObsFileAddr,
    RecordParam,
    RecordRuleReq,
    ShowIndividualStreamJobRequest,
    ShowMixJobRequest,
    StopIndividualStreamJobRequest,
    StopMixJobRequest,
    UpdateIndividualJobReq,
    UpdateIndividualStreamJobRequest,
    UpdateMixJobReq,
    UpdateMixJobRequest,
    UpdateMixParam,
)
from huaweicloudsdkcore.exceptions.exceptions import ClientRequestException
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from emberrtc.domain.clock import ManualClock
from emberrtc.store.models import Job
from tests import conftest
from tests.support.server import ServerThread, TenantInfo
from tests.support.waiting import wait_for

HEX32 = re.compile(r"^[0-9a-f]{32}$")
SPEC_TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{3})?Z$")
# A job that has not stopped has no stop time: left out, or the zero time of the spec's 4.8.1 example.
NOT_STOPPED = (None, "0001-01-01T00:00:00Z")
INDIVIDUAL = "individual-stream-jobs"
MIX = "mix-stream-jobs"

# --- helpers -----------------------------------------------------------------------------------


def parse_time(value: str) -> float:
    fmt = "%Y-%m-%dT%H:%M:%S.%fZ" if "." in value else "%Y-%m-%dT%H:%M:%SZ"
    return datetime.strptime(value, fmt).replace(tzinfo=UTC).timestamp()


def assert_error(r: httpx.Response, status: int, code: str) -> None:
    assert r.status_code == status, r.text
    assert r.json()["error_code"] == code, r.text
    assert r.json()["error_msg"]
    assert r.headers["X-request-Id"]


def rule_body(project_id: str, location: str = "cn-north-4") -> dict[str, Any]:
    return {
        "obs_addr": {"location": location, "project_id": project_id, "bucket": "ember-recordings"},
        "record_formats": ["MP4"],
        "mp4_config": {"record_cycle": 60},
    }


def new_app(http: httpx.Client) -> str:
    r = http.post("/v2/apps", json={"app_name": f"jobs-{time.monotonic_ns()}"})
    assert r.status_code == 201, r.text
    return str(r.json()["app_id"])


def new_rule(http: httpx.Client, app_id: str, project_id: str, location: str = "cn-north-4") -> str:
    r = http.post(f"/v2/apps/{app_id}/record-rules", json=rule_body(project_id, location))
    assert r.status_code == 201, r.text
    return str(r.json()["rule_id"])


def custom_panes(*users: str) -> list[dict[str, Any]]:
    n = len(users)
    return [
        {"id": i + 1, "user_id": u, "x": i / n, "y": 0.0, "width": 1 / n, "height": 1.0, "zorder": i}
        for i, u in enumerate(users)
    ]


@pytest.fixture
def app_rule(http: httpx.Client, tenant: TenantInfo) -> tuple[str, str]:
    app_id = new_app(http)
    return app_id, new_rule(http, app_id, tenant.project_id)


@pytest.fixture
def time_travel(clock: ManualClock) -> Iterator[Callable[[float], None]]:
    """Move the shared server clock forward; it is moved back by the same amount afterwards, so AK/SK
    date checks and other tests see the real time again."""
    moved = 0.0

    def advance(seconds: float) -> None:
        nonlocal moved
        clock.advance(seconds)
        moved += seconds

    try:
        yield advance
    finally:
        clock.t -= moved


def start_individual(http: httpx.Client, app_id: str, **body: Any) -> httpx.Response:
    return http.post(f"/v2/apps/{app_id}/{INDIVIDUAL}", json=body)


# --- single-stream jobs (4.4) --------------------------------------------------------------------


def test_individual_job_with_sdk(sdk, tenant: TenantInfo, clock: ManualClock) -> None:  # type: ignore[no-untyped-def]
    app_id = sdk.create_app(CreateAppRequest(body=AppReq(app_name="sdk-jobs"))).app_id
    rules = []
    for location in ("cn-north-4", "ap-southeast-1"):
        addr = RecordObsFileAddr(location=location, project_id=tenant.project_id, bucket="ember-recordings")
        req = RecordRuleReq(obs_addr=addr, record_formats=["MP4"], mp4_config=MP4RecordConfig(record_cycle=60))
        rules.append(sdk.create_record_rule(CreateRecordRuleRequest(app_id=app_id, body=req)).rule_id)

    before = clock.now()
    created = sdk.create_individual_stream_job(
        CreateIndividualStreamJobRequest(
            app_id=app_id,
            body=IndividualStreamJobReq(room_id="room-1", user_id="alice", record_param=RecordParam(rules[0])),
        )
    )
    job_id = created.job_id
    assert HEX32.fullmatch(job_id)
    assert created.stream_name == f"s_{job_id}_room-1_alice"
    assert (created.app_id, created.room_id, created.user_id) == (app_id, "room-1", "alice")
    # spec Table 4-26 defaults
    assert created.is_record_audio is True
    assert created.video_type == "CAMERASTREAM"
    assert created.select_stream_type == "FHD"
    assert created.max_idle_time == 30
    assert created.record_param.record_rule_id == rules[0]
    assert created.state == "INIT"
    assert abs(parse_time(created.create_time) - before) < 1
    assert abs(parse_time(created.start_time) - before) < 1
    assert created.stop_time in NOT_STOPPED

    shown = sdk.show_individual_stream_job(ShowIndividualStreamJobRequest(app_id=app_id, job_id=job_id))
    assert shown.job_id == job_id and shown.state == "INIT"
    assert shown.stream_name == created.stream_name
    assert shown.create_time == created.create_time

    updated = sdk.update_individual_stream_job(
        UpdateIndividualStreamJobRequest(
            app_id=app_id, job_id=job_id, body=UpdateIndividualJobReq(record_param=RecordParam(rules[1]))
        )
    )
    assert updated.record_param.record_rule_id == rules[1]
    shown = sdk.show_individual_stream_job(ShowIndividualStreamJobRequest(app_id=app_id, job_id=job_id))
    assert shown.record_param.record_rule_id == rules[1]

    sdk.stop_individual_stream_job(StopIndividualStreamJobRequest(app_id=app_id, job_id=job_id))
    sdk.stop_individual_stream_job(StopIndividualStreamJobRequest(app_id=app_id, job_id=job_id))  # idempotent
    shown = sdk.show_individual_stream_job(ShowIndividualStreamJobRequest(app_id=app_id, job_id=job_id))
    assert shown.state == "STOPPED"
    assert shown.stop_reason and shown.description
    assert parse_time(shown.stop_time) >= parse_time(shown.start_time)

    with pytest.raises(ClientRequestException) as err:
        sdk.update_individual_stream_job(
            UpdateIndividualStreamJobRequest(
                app_id=app_id, job_id=job_id, body=UpdateIndividualJobReq(record_param=RecordParam(rules[0]))
            )
        )
    assert (err.value.status_code, err.value.error_code) == (400, "RTC.00001009")

    with pytest.raises(ClientRequestException) as err:
        sdk.show_individual_stream_job(ShowIndividualStreamJobRequest(app_id=app_id, job_id="0" * 32))
    assert (err.value.status_code, err.value.error_code) == (404, "RTC.00001008")


def test_individual_job_with_http(http: httpx.Client, tenant: TenantInfo, app_rule: tuple[str, str]) -> None:
    app_id, rule_id = app_rule
    other_rule = new_rule(http, app_id, tenant.project_id, location="ap-southeast-1")
    # The spec's own example sends the room id as a number.
    r = start_individual(
        http,
        app_id,
        room_id=100,
        user_id="user001",
        is_record_audio=False,
        video_type="SCREENSTREAM",
        select_stream_type="HD",
        max_idle_time=600,
        publish_param={"rtmp_urls": ["rtmp://live.example.com/app/one"]},
        record_param={"record_rule_id": rule_id},
    )
    assert r.status_code == 201, r.text
    assert r.headers["X-request-Id"]
    job = r.json()
    job_id = job["job_id"]
    assert HEX32.fullmatch(job_id)
    assert job["stream_name"] == f"s_{job_id}_100_user001"
    assert job["room_id"] == "100"
    assert job["is_record_audio"] is False
    assert job["video_type"] == "SCREENSTREAM"
    assert job["select_stream_type"] == "HD"
    assert job["max_idle_time"] == 600
    assert job["publish_param"] == {"rtmp_urls": ["rtmp://live.example.com/app/one"]}
    assert job["record_param"] == {"record_rule_id": rule_id}
    assert job["state"] == "INIT"
    for key in ("create_time", "update_time", "start_time"):
        assert SPEC_TIME.fullmatch(job[key]), key
    assert job.get("stop_time") in NOT_STOPPED

    url = f"/v2/apps/{app_id}/{INDIVIDUAL}/{job_id}"
    r = http.get(url)
    assert r.status_code == 200, r.text
    assert r.json() == job

    r = http.put(url, json={"publish_param": {"rtmp_urls": ["rtmp://live.example.com/app/two"]}})
    assert r.status_code == 200, r.text
    assert r.json()["publish_param"] == {"rtmp_urls": ["rtmp://live.example.com/app/two"]}
    assert r.json()["record_param"] == {"record_rule_id": rule_id}  # untouched

    r = http.put(url, json={"record_param": {"record_rule_id": other_rule}})
    assert r.status_code == 200, r.text
    shown = http.get(url).json()
    assert shown["record_param"] == {"record_rule_id": other_rule}
    assert shown["publish_param"] == {"rtmp_urls": ["rtmp://live.example.com/app/two"]}
    assert shown["state"] == "INIT"

    r = http.put(url, json={"record_param": {"record_rule_id": "f" * 32}})
    assert_error(r, 404, "RTC.00001011")
    assert http.get(url).json()["record_param"] == {"record_rule_id": other_rule}

    for _ in range(2):  # stopping is safe to repeat
        r = http.delete(url)
        assert r.status_code == 204, r.text
        assert r.content == b""
    stopped = http.get(url).json()
    assert stopped["state"] == "STOPPED"
    assert stopped["stop_reason"]
    assert SPEC_TIME.fullmatch(stopped["stop_time"])
    assert stopped["job_id"] == job_id and stopped["create_time"] == job["create_time"]

    assert_error(http.put(url, json={"publish_param": {"rtmp_urls": ["rtmp://x.example.com/a"]}}), 400, "RTC.00001009")
    assert http.get(url).json()["publish_param"] == {"rtmp_urls": ["rtmp://live.example.com/app/two"]}


def test_individual_job_defaults_and_idle_timeout(
    server: ServerThread, http: httpx.Client, app_rule: tuple[str, str], time_travel: Callable[[float], None]
) -> None:
    app_id, rule_id = app_rule
    r = start_individual(http, app_id, room_id="idle-room", user_id="bob", record_param={"record_rule_id": rule_id})
    assert r.status_code == 201, r.text
    job = r.json()
    assert (job["is_record_audio"], job["video_type"], job["select_stream_type"], job["max_idle_time"]) == (
        True,
        "CAMERASTREAM",
        "FHD",
        30,
    )
    url = f"/v2/apps/{app_id}/{INDIVIDUAL}/{job['job_id']}"
    assert http.get(url).json()["state"] == "INIT"

    # Just short of max_idle_time a supervisor pass leaves the job alone.
    time_travel(29)
    assert server.services is not None
    server.call(server.services.jobs.tick())
    assert http.get(url).json()["state"] == "INIT"

    time_travel(2)
    stopped = wait_for(lambda: (b := http.get(url).json())["state"] == "STOPPED" and b, what="the idle job to stop")
    assert stopped["stop_reason"] == "IDLE_TIMEOUT"
    assert stopped["description"]
    assert parse_time(stopped["stop_time"]) - parse_time(stopped["start_time"]) >= 30
    assert_error(http.put(url, json={"record_param": {"record_rule_id": rule_id}}), 400, "RTC.00001009")


def test_second_job_for_same_room_and_user_refused_until_stopped(http: httpx.Client, app_rule: tuple[str, str]) -> None:
    app_id, rule_id = app_rule
    rec = {"record_param": {"record_rule_id": rule_id}}
    first = start_individual(http, app_id, room_id="dup", user_id="carol", **rec)
    assert first.status_code == 201, first.text
    assert_error(start_individual(http, app_id, room_id="dup", user_id="carol", **rec), 400, "RTC.00001006")
    # Other users in the room, and the same user in another room, are separate jobs.
    other_user = start_individual(http, app_id, room_id="dup", user_id="dave", **rec)
    assert other_user.status_code == 201, other_user.text
    other_room = start_individual(http, app_id, room_id="dup2", user_id="carol", **rec)
    assert other_room.status_code == 201, other_room.text

    assert http.delete(f"/v2/apps/{app_id}/{INDIVIDUAL}/{first.json()['job_id']}").status_code == 204
    again = start_individual(http, app_id, room_id="dup", user_id="carol", **rec)
    assert again.status_code == 201, again.text
    assert again.json()["job_id"] != first.json()["job_id"]
    assert again.json()["state"] == "INIT"


def test_a_missing_bucket_or_unknown_location_fails_the_start(
    http: httpx.Client, tenant: TenantInfo, server: ServerThread
) -> None:
    app_id = new_app(http)
    # ``vault`` (see tests/conftest.py) keeps buckets an operator creates: this one does not exist.
    body = {**rule_body(tenant.project_id, "vault")}
    body["obs_addr"] = {**body["obs_addr"], "bucket": "absent-bucket"}
    r = http.post(f"/v2/apps/{app_id}/record-rules", json=body)
    assert r.status_code == 201, r.text
    rec = {"record_param": {"record_rule_id": r.json()["rule_id"]}}
    assert_error(start_individual(http, app_id, room_id="b", user_id="u", **rec), 404, "RTC.00001014")
    mix = {"mix_param": {"room_id": "b", "encode_template": "audio_only"}, **rec}
    assert_error(http.post(f"/v2/apps/{app_id}/{MIX}", json=mix), 404, "RTC.00001014")
    # Nothing was stored: once the bucket exists, the same user's job starts (no RTC.00001006). A bucket is
    # a project's: the same name among the shared buckets of old, or another project's, is not this one.
    assert server.services is not None
    vault = server.services.settings.data_dir / "storage-vault"
    (vault / ".legacy" / "absent-bucket").mkdir(parents=True)
    (vault / ("0" * 32) / "absent-bucket").mkdir(parents=True)
    assert_error(start_individual(http, app_id, room_id="b", user_id="u", **rec), 404, "RTC.00001014")
    (vault / tenant.project_id / "absent-bucket").mkdir(parents=True)
    started = start_individual(http, app_id, room_id="b", user_id="u", **rec)
    assert started.status_code == 201, started.text

    unknown = http.post(f"/v2/apps/{app_id}/record-rules", json=rule_body(tenant.project_id, "eu-west-0"))
    assert unknown.status_code == 201, unknown.text  # a rule is only words until a job uses it
    rec = {"record_param": {"record_rule_id": unknown.json()["rule_id"]}}
    r = start_individual(http, app_id, room_id="b", user_id="v", **rec)
    assert_error(r, 400, "RTC.00001003")
    assert "eu-west-0" in r.json()["error_msg"]


def test_unknown_job_is_404(http: httpx.Client, app_rule: tuple[str, str]) -> None:
    app_id, _ = app_rule
    missing = "0123456789abcdef0123456789abcdef"
    for kind, update in ((INDIVIDUAL, {"publish_param": {"rtmp_urls": ["rtmp://a.example.com/x"]}}), (MIX, None)):
        url = f"/v2/apps/{app_id}/{kind}/{missing}"
        assert_error(http.get(url), 404, "RTC.00001008")
        assert_error(http.delete(url), 404, "RTC.00001008")
        body = update or {"mix_param": {"max_idle_time": 60}}
        assert_error(http.put(url, json=body), 404, "RTC.00001008")


def test_job_of_one_kind_is_not_visible_through_the_other_kind(http: httpx.Client, app_rule: tuple[str, str]) -> None:
    app_id, rule_id = app_rule
    rec = {"record_param": {"record_rule_id": rule_id}}
    single = start_individual(http, app_id, room_id="kinds", user_id="erin", **rec).json()["job_id"]
    r = http.post(
        f"/v2/apps/{app_id}/{MIX}",
        json={"mix_param": {"room_id": "kinds", "encode_template": "audio_only"}, **rec},
    )
    assert r.status_code == 201, r.text
    mixed = r.json()["job_id"]

    for job_id, wrong_kind, body in (
        (single, MIX, {"mix_param": {"max_idle_time": 60}}),
        (mixed, INDIVIDUAL, {"publish_param": {"rtmp_urls": ["rtmp://a.example.com/x"]}}),
    ):
        url = f"/v2/apps/{app_id}/{wrong_kind}/{job_id}"
        assert_error(http.get(url), 404, "RTC.00001008")
        assert_error(http.put(url, json=body), 404, "RTC.00001008")
        assert_error(http.delete(url), 404, "RTC.00001008")
    # The failed stop through the wrong URL stopped nothing.
    assert http.get(f"/v2/apps/{app_id}/{INDIVIDUAL}/{single}").json()["state"] == "INIT"
    assert http.get(f"/v2/apps/{app_id}/{MIX}/{mixed}").json()["state"] == "INIT"


def test_unknown_record_rule_is_404(http: httpx.Client, tenant: TenantInfo, app_rule: tuple[str, str]) -> None:
    app_id, _ = app_rule
    # A rule of another application of the same tenant is unknown here too.
    foreign_rule = new_rule(http, new_app(http), tenant.project_id)
    for rule_id in ("5f5e172b9016ed5b0961a43", foreign_rule):
        rec = {"record_param": {"record_rule_id": rule_id}}
        assert_error(start_individual(http, app_id, room_id="r", user_id="u", **rec), 404, "RTC.00001011")
        r = http.post(
            f"/v2/apps/{app_id}/{MIX}",
            json={"mix_param": {"room_id": "r", "encode_template": "audio_only"}, **rec},
        )
        assert_error(r, 404, "RTC.00001011")
    # Nothing was created by the refused starts: the user's job can still be started.
    ok = start_individual(
        http, app_id, room_id="r", user_id="u", publish_param={"rtmp_urls": ["rtmp://live.example.com/c"]}
    )
    assert ok.status_code == 201, ok.text


def test_unknown_app_is_404(http: httpx.Client) -> None:
    app_id = "a" * 32
    r = start_individual(
        http, app_id, room_id="r", user_id="u", publish_param={"rtmp_urls": ["rtmp://live.example.com/c"]}
    )
    assert_error(r, 404, "RTC.00001015")
    assert_error(http.get(f"/v2/apps/{app_id}/{MIX}/{'b' * 32}"), 404, "RTC.00001015")


# --- mixed-stream jobs (4.8) ---------------------------------------------------------------------


def test_mix_job_with_sdk(sdk, tenant: TenantInfo) -> None:  # type: ignore[no-untyped-def]
    app_id = sdk.create_app(CreateAppRequest(body=AppReq(app_name="sdk-mix"))).app_id
    addr = RecordObsFileAddr(location="cn-north-4", project_id=tenant.project_id, bucket="ember-recordings")
    req = RecordRuleReq(obs_addr=addr, record_formats=["MP4"], mp4_config=MP4RecordConfig(record_cycle=60))
    rule_id = sdk.create_record_rule(CreateRecordRuleRequest(app_id=app_id, body=req)).rule_id

    panes = [
        MixLayoutPane(id=1, user_id="user1", video_type="CAMERASTREAM", x=0, y=0, width=0.666, height=0.333),
        MixLayoutPane(id=2, user_id="user2", video_type="CAMERASTREAM", x=0.666, y=0, width=0.333, height=0.666),
    ]
    mix = MixParam(room_id="gigu", encode_template="1280x720_15_2260", layout_template="custom", layout_panes=panes)
    created = sdk.create_mix_job(
        CreateMixJobRequest(app_id=app_id, body=MixJobReq(mix_param=mix, record_param=RecordParam(rule_id)))
    )
    job_id = created.job_id
    assert HEX32.fullmatch(job_id)
    assert created.stream_name == f"m_{job_id}_gigu"
    assert (created.app_id, created.room_id) == (app_id, "gigu")
    assert created.state == "INIT"
    assert created.create_time and created.start_time and created.stop_time in NOT_STOPPED
    assert created.mix_param.encode_template == "1280x720_15_2260"  # echoed as sent
    assert created.mix_param.max_idle_time == 30
    assert [p.user_id for p in created.mix_param.layout_panes] == ["user1", "user2"]
    assert created.record_param.record_rule_id == rule_id

    new_panes = [MixLayoutPane(id=1, user_id="user3", x=0.25, y=0.25, width=0.5, height=0.5, zorder=1)]
    updated = sdk.update_mix_job(
        UpdateMixJobRequest(
            app_id=app_id,
            job_id=job_id,
            body=UpdateMixJobReq(mix_param=UpdateMixParam(layout_template="custom", layout_panes=new_panes)),
        )
    )
    assert [p.user_id for p in updated.mix_param.layout_panes] == ["user3"]
    shown = sdk.show_mix_job(ShowMixJobRequest(app_id=app_id, job_id=job_id))
    assert shown.mix_param.layout_template == "custom"
    assert [(p.user_id, p.x, p.width) for p in shown.mix_param.layout_panes] == [("user3", 0.25, 0.5)]
    assert shown.state == "INIT"

    with pytest.raises(ClientRequestException) as err:
        sdk.update_mix_job(
            UpdateMixJobRequest(
                app_id=app_id,
                job_id=job_id,
                body=UpdateMixJobReq(mix_param=UpdateMixParam(layout_template="nine_grids_view")),
            )
        )
    assert (err.value.status_code, err.value.error_code) == (400, "RTC.00001004")

    sdk.stop_mix_job(StopMixJobRequest(app_id=app_id, job_id=job_id))
    sdk.stop_mix_job(StopMixJobRequest(app_id=app_id, job_id=job_id))
    shown = sdk.show_mix_job(ShowMixJobRequest(app_id=app_id, job_id=job_id))
    assert shown.state == "STOPPED" and shown.stop_time
    assert [p.user_id for p in shown.mix_param.layout_panes] == ["user3"]


def test_mix_job_with_http(http: httpx.Client, app_rule: tuple[str, str]) -> None:
    app_id, rule_id = app_rule
    body = {
        "mix_param": {
            "room_id": "mixroom",
            "encode_template": "1920*1080_30_4620",
            "layout_template": "nine_grids_view",
        },
        "publish_param": {"rtmp_urls": ["rtmp://live.example.com/mix"]},
        "record_param": {"record_rule_id": rule_id},
    }
    r = http.post(f"/v2/apps/{app_id}/{MIX}", json=body)
    assert r.status_code == 201, r.text
    assert r.headers["X-request-Id"]
    job = r.json()
    job_id = job["job_id"]
    assert HEX32.fullmatch(job_id)
    assert job["stream_name"] == f"m_{job_id}_mixroom"
    assert job["room_id"] == "mixroom"
    assert job["mix_param"]["room_id"] == "mixroom"
    assert job["mix_param"]["encode_template"] == "1920*1080_30_4620"
    assert job["mix_param"]["layout_template"] == "nine_grids_view"
    assert job["mix_param"]["max_idle_time"] == 30
    assert job["record_param"] == {"record_rule_id": rule_id}
    assert job["state"] == "INIT"
    assert SPEC_TIME.fullmatch(job["create_time"]) and SPEC_TIME.fullmatch(job["start_time"])
    url = f"/v2/apps/{app_id}/{MIX}/{job_id}"
    assert http.get(url).json() == job

    # Only custom can be set by an update (Table 4-207).
    for template in ("nine_grids_view", "screen_share_left", "screen_share_right"):
        assert_error(http.put(url, json={"mix_param": {"layout_template": template}}), 400, "RTC.00001004")
    assert http.get(url).json()["mix_param"]["layout_template"] == "nine_grids_view"

    panes = custom_panes("ann", "ben", "cat")
    r = http.put(url, json={"mix_param": {"layout_template": "custom", "layout_panes": panes, "max_idle_time": 120}})
    assert r.status_code == 200, r.text
    shown = http.get(url).json()
    assert shown["mix_param"]["layout_template"] == "custom"
    assert [p["user_id"] for p in shown["mix_param"]["layout_panes"]] == ["ann", "ben", "cat"]
    assert shown["mix_param"]["layout_panes"][1]["x"] == pytest.approx(1 / 3)
    assert shown["mix_param"]["max_idle_time"] == 120
    assert shown["mix_param"]["encode_template"] == "1920*1080_30_4620"  # untouched
    assert shown["publish_param"] == body["publish_param"]
    assert shown["create_time"] == job["create_time"]

    # Panes alone (the job is custom now) replace the layout.
    r = http.put(url, json={"mix_param": {"layout_panes": custom_panes("dan")}})
    assert r.status_code == 200, r.text
    assert [p["user_id"] for p in http.get(url).json()["mix_param"]["layout_panes"]] == ["dan"]

    assert http.delete(url).status_code == 204
    assert http.delete(url).status_code == 204
    stopped = http.get(url).json()
    assert stopped["state"] == "STOPPED"
    assert stopped["stop_reason"]
    assert SPEC_TIME.fullmatch(stopped["stop_time"])
    assert [p["user_id"] for p in stopped["mix_param"]["layout_panes"]] == ["dan"]
    assert_error(http.put(url, json={"mix_param": {"layout_panes": custom_panes("eve")}}), 400, "RTC.00001009")


def test_mix_job_idle_timeout(
    http: httpx.Client, app_rule: tuple[str, str], time_travel: Callable[[float], None]
) -> None:
    app_id, rule_id = app_rule
    r = http.post(
        f"/v2/apps/{app_id}/{MIX}",
        json={
            "mix_param": {"room_id": "quiet", "encode_template": "audio_only", "max_idle_time": 5},
            "record_param": {"record_rule_id": rule_id},
        },
    )
    assert r.status_code == 201, r.text
    url = f"/v2/apps/{app_id}/{MIX}/{r.json()['job_id']}"
    assert http.get(url).json()["state"] == "INIT"
    time_travel(6)
    stopped = wait_for(lambda: (b := http.get(url).json())["state"] == "STOPPED" and b, what="the idle mix job to stop")
    assert stopped["stop_reason"] == "IDLE_TIMEOUT"
    assert stopped["description"]
    assert SPEC_TIME.fullmatch(stopped["stop_time"])
    assert http.delete(url).status_code == 204  # stopping a stopped job is still fine
    assert http.get(url).json()["stop_reason"] == "IDLE_TIMEOUT"  # and does not rewrite why it stopped


# --- unfinished jobs per app (issue 11: RTC.00001007) ----------------------------------------------------------


def test_unfinished_jobs_per_app_are_capped(  # type: ignore[no-untyped-def]
    server: ServerThread, http: httpx.Client, sdk, tenant: TenantInfo, app_rule: tuple[str, str]
) -> None:
    app_id, rule_id = app_rule
    assert server.services is not None
    cap = server.services.settings.max_unfinished_jobs_per_app
    assert cap == 100  # the default (EMBER_MAX_UNFINISHED_JOBS_PER_APP)
    rec = {"record_param": {"record_rule_id": rule_id}}
    mix = {"mix_param": {"room_id": "cap-mix", "encode_template": "audio_only"}, **rec}
    r = http.post(f"/v2/apps/{app_id}/{MIX}", json=mix)  # mixed jobs count with single-stream ones
    assert r.status_code == 201, r.text
    mix_url = f"/v2/apps/{app_id}/{MIX}/{r.json()['job_id']}"
    urls = [mix_url]
    for i in range(cap - 1):
        r = start_individual(http, app_id, room_id=f"cap{i}", user_id="u", **rec)
        assert r.status_code == 201, r.text
        urls.append(f"/v2/apps/{app_id}/{INDIVIDUAL}/{r.json()['job_id']}")

    over = start_individual(http, app_id, room_id="one-more", user_id="u", **rec)
    assert_error(over, 400, "RTC.00001007")
    assert over.json()["error_msg"].startswith("JobExceed")
    assert f"{cap} unfinished" in over.json()["error_msg"]
    assert_error(
        http.post(
            f"/v2/apps/{app_id}/{MIX}", json={**mix, "mix_param": {"room_id": "m2", "encode_template": "audio_only"}}
        ),
        400,
        "RTC.00001007",
    )
    with pytest.raises(ClientRequestException) as err:
        sdk.create_individual_stream_job(
            CreateIndividualStreamJobRequest(
                app_id=app_id,
                body=IndividualStreamJobReq(room_id="sdk-room", user_id="alice", record_param=RecordParam(rule_id)),
            )
        )
    assert (err.value.status_code, err.value.error_code) == (400, "RTC.00001007")
    # Nothing was made by the refused starts, and the jobs there are are untouched.
    assert {http.get(u).json()["state"] for u in urls} == {"INIT"}

    # The cap is per app: another app of the tenant starts jobs.
    other = new_app(http)
    r = start_individual(
        http,
        other,
        room_id="one-more",
        user_id="u",
        record_param={"record_rule_id": new_rule(http, other, tenant.project_id)},
    )
    assert r.status_code == 201, r.text

    # A stopped job frees its place, once.
    assert http.delete(mix_url).status_code == 204
    assert start_individual(http, app_id, room_id="one-more", user_id="u", **rec).status_code == 201
    assert_error(start_individual(http, app_id, room_id="two-more", user_id="u", **rec), 400, "RTC.00001007")


def test_concurrent_starts_never_pass_the_cap(
    server: ServerThread, tenant: TenantInfo, app_rule: tuple[str, str]
) -> None:
    """Starts racing for the last places (on PostgreSQL each in its own transaction and connection): exactly
    as many succeed as there are places."""
    app_id, rule_id = app_rule
    assert server.services is not None
    cap = server.services.settings.max_unfinished_jobs_per_app
    token = conftest.token_for(server, tenant)
    rec = {"record_param": {"record_rule_id": rule_id}}
    with httpx.Client(base_url=server.url, headers={"X-Auth-Token": token}) as http:
        for i in range(cap - 5):
            assert start_individual(http, app_id, room_id=f"fill{i}", user_id="u", **rec).status_code == 201

    def start(i: int) -> int:
        with httpx.Client(base_url=server.url, headers={"X-Auth-Token": token}) as client:
            return start_individual(client, app_id, room_id=f"race{i}", user_id="u", **rec).status_code

    with ThreadPoolExecutor(max_workers=20) as pool:
        statuses = list(pool.map(start, range(20)))
    assert sorted(statuses) == [201] * 5 + [400] * 15

    def unfinished(s: Session) -> int:
        q = select(func.count()).select_from(Job).where(Job.app_id == app_id, Job.state != "STOPPED")
        return int(s.scalar(q) or 0)

    assert server.call(server.services.db.run(unfinished)) == cap
