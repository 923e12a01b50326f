"""spec 4.9 Recording rule management, through the official SDK and plain HTTP."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from huaweicloudsdkcloudrtc.v2 import (
    CreateRecordRuleRequest,
    DeleteRecordRuleRequest,
    HLSRecordConfig,
    ListRecordRulesRequest,
    MP4RecordConfig,
    RecordObsFileAddr,
    RecordRuleReq,
    ShowRecordRuleRequest,
    UpdateRecordRuleRequest,
)
from huaweicloudsdkcore.exceptions.exceptions import ClientRequestException

from tests.conftest import make_tenant
from tests.support.server import ServerThread, TenantInfo
from tests.support.spec_checks import (
    DEFAULT_PREFIX,
    assert_error,
    assert_ok,
    assert_request_id,
    assert_spec_time,
    create_app,
    create_rule,
    hls_rule,
    mp4_rule,
    start_individual_job,
    stop_individual_job,
    unique,
)

UNKNOWN_RULE = "f" * 32


NO_PROJECT = "0" * 32  # nobody's: for requests refused before the project is looked at


@pytest.fixture
def project(tenant: TenantInfo) -> str:
    """The caller's project (the ``http`` and ``sdk`` fixtures' tenant's)."""
    return tenant.project_id


def rules_path(app_id: str, rule_id: str | None = None) -> str:
    return f"/v2/apps/{app_id}/record-rules" + (f"/{rule_id}" if rule_id else "")


def list_rules(http: httpx.Client, app_id: str, **params: Any) -> list[dict[str, Any]]:
    return list(assert_ok(http.get(rules_path(app_id), params=params))["rules"])


@pytest.fixture
def app_id(http: httpx.Client) -> str:
    return create_app(http)


# --- through the official SDK -----------------------------------------------------------------


def test_sdk_rule_lifecycle(project: str, sdk: Any, http: httpx.Client, app_id: str) -> None:
    obs = RecordObsFileAddr(location="cn-north-4", project_id=project, bucket="ember-rec", object="record/")
    body = RecordRuleReq(
        obs_addr=obs,
        record_formats=["HLS", "MP4"],
        hls_config=HLSRecordConfig(record_cycle=0),
        mp4_config=MP4RecordConfig(record_cycle=3600, record_prefix="{app_id}/{stream}"),
    )
    created = sdk.create_record_rule(CreateRecordRuleRequest(app_id=app_id, body=body))
    rule_id = created.rule_id
    assert rule_id and created.app_id == app_id and created.x_request_id
    assert created.obs_addr.object == "record/"
    assert created.hls_config.record_slice_duration == 10
    assert created.mp4_config.record_prefix == "{app_id}/{stream}"
    assert_spec_time(created.create_time)

    shown = sdk.show_record_rule(ShowRecordRuleRequest(app_id=app_id, rule_id=rule_id))
    assert shown.to_json_object() == created.to_json_object()
    listed = sdk.list_record_rules(ListRecordRulesRequest(app_id=app_id, offset=0, limit=10))
    assert [r.rule_id for r in listed.rules] == [rule_id]

    body.record_formats = ["MP4"]
    body.hls_config = None
    body.mp4_config = MP4RecordConfig(record_cycle=120, record_max_duration_to_merge_file=30)
    updated = sdk.update_record_rule(UpdateRecordRuleRequest(app_id=app_id, rule_id=rule_id, body=body))
    assert updated.rule_id == rule_id
    assert updated.record_formats == ["MP4"]
    assert updated.hls_config is None
    assert updated.mp4_config.record_cycle == 120
    assert updated.mp4_config.record_max_duration_to_merge_file == 30
    assert updated.mp4_config.record_prefix == DEFAULT_PREFIX

    assert sdk.delete_record_rule(DeleteRecordRuleRequest(app_id=app_id, rule_id=rule_id)).x_request_id
    with pytest.raises(ClientRequestException) as err:
        sdk.show_record_rule(ShowRecordRuleRequest(app_id=app_id, rule_id=rule_id))
    assert (err.value.status_code, err.value.error_code) == (404, "RTC.00001011")
    assert err.value.request_id
    assert sdk.list_record_rules(ListRecordRulesRequest(app_id=app_id)).rules == []


def test_sdk_another_project_is_refused(project: str, sdk: Any, server: ServerThread, app_id: str) -> None:
    """obs_addr.project_id names whose storage the files go to: only the caller's own project (RTC.00001003),
    for a local location and an S3-compatible one alike; nothing is stored."""
    other = make_tenant(server).project_id  # a real project, of another tenant
    for location in ("local", "cn-north-4", "ap-southeast-1"):
        obs = RecordObsFileAddr(location=location, project_id=other, bucket="ember-rec")
        body = RecordRuleReq(obs_addr=obs, record_formats=["MP4"], mp4_config=MP4RecordConfig(record_cycle=60))
        with pytest.raises(ClientRequestException) as err:
            sdk.create_record_rule(CreateRecordRuleRequest(app_id=app_id, body=body))
        assert (err.value.status_code, err.value.error_code) == (400, "RTC.00001003")
        assert "project_id" in err.value.error_msg
    assert sdk.list_record_rules(ListRecordRulesRequest(app_id=app_id)).rules == []
    # An update may not move a rule to another project either.
    obs = RecordObsFileAddr(location="local", project_id=project, bucket="ember-rec")
    body = RecordRuleReq(obs_addr=obs, record_formats=["MP4"], mp4_config=MP4RecordConfig(record_cycle=60))
    rule = sdk.create_record_rule(CreateRecordRuleRequest(app_id=app_id, body=body))
    body.obs_addr = RecordObsFileAddr(location="local", project_id=other, bucket="ember-rec")
    with pytest.raises(ClientRequestException) as err:
        sdk.update_record_rule(UpdateRecordRuleRequest(app_id=app_id, rule_id=rule.rule_id, body=body))
    assert (err.value.status_code, err.value.error_code) == (400, "RTC.00001003")
    shown = sdk.show_record_rule(ShowRecordRuleRequest(app_id=app_id, rule_id=rule.rule_id))
    assert shown.obs_addr.project_id == project


def test_another_project_is_refused(project: str, http: httpx.Client, app_id: str) -> None:
    for bad in ("0" * 32, project.upper(), project + "x", "p0123456789"):
        for body in (mp4_rule("local", project_id=bad), mp4_rule("cn-north-4", project_id=bad)):
            assert_error(http.post(rules_path(app_id), json=body), 400, "RTC.00001003")
    assert list_rules(http, app_id) == []
    rule = create_rule(http, app_id, mp4_rule("local", project_id=project))
    r = http.put(rules_path(app_id, rule["rule_id"]), json=mp4_rule("local", bucket="new-b", project_id="0" * 32))
    assert_error(r, 400, "RTC.00001003")
    assert assert_ok(http.get(rules_path(app_id, rule["rule_id"]))) == rule


def test_sdk_unknown_rule_is_404(sdk: Any, app_id: str) -> None:
    for call in (
        lambda: sdk.show_record_rule(ShowRecordRuleRequest(app_id=app_id, rule_id=UNKNOWN_RULE)),
        lambda: sdk.delete_record_rule(DeleteRecordRuleRequest(app_id=app_id, rule_id=UNKNOWN_RULE)),
    ):
        with pytest.raises(ClientRequestException) as err:
            call()
        assert (err.value.status_code, err.value.error_code) == (404, "RTC.00001011")


# --- through plain HTTP -------------------------------------------------------------------------


def test_create_fills_defaults(project: str, http: httpx.Client, app_id: str) -> None:
    r = http.post(
        rules_path(app_id),
        json={
            "obs_addr": {"location": "cn-north-4", "project_id": project, "bucket": "ember-rec"},
            "record_formats": ["HLS", "MP4"],
            "hls_config": {"record_cycle": 60},
            "mp4_config": {"record_cycle": 60},
        },
    )
    rule = assert_ok(r, 201)
    assert len(rule["rule_id"]) >= 8
    assert rule["app_id"] == app_id
    assert rule["obs_addr"] == {"location": "cn-north-4", "project_id": project, "bucket": "ember-rec"}
    assert rule["record_formats"] == ["HLS", "MP4"]
    assert rule["hls_config"] == {
        "record_cycle": 60,
        "record_prefix": DEFAULT_PREFIX,
        "record_slice_duration": 10,
        "record_max_duration_to_merge_file": 0,
    }
    assert rule["mp4_config"] == {
        "record_cycle": 60,
        "record_prefix": DEFAULT_PREFIX,
        "record_max_duration_to_merge_file": 0,
    }
    assert_spec_time(rule["create_time"])
    assert_spec_time(rule["update_time"])
    assert assert_ok(http.get(rules_path(app_id, rule["rule_id"]))) == rule


def test_create_keeps_given_values(project: str, http: httpx.Client, app_id: str) -> None:
    body = hls_rule(record_prefix="rec/{record_format}/{stream}", record_slice_duration=4, project_id=project)
    body["hls_config"]["record_max_duration_to_merge_file"] = -1
    body["obs_addr"]["object"] = "recordings/"
    rule = create_rule(http, app_id, body)
    assert rule["obs_addr"]["object"] == "recordings/"
    assert rule["hls_config"] == {
        "record_cycle": 60,
        "record_prefix": "rec/{record_format}/{stream}",
        "record_slice_duration": 4,
        "record_max_duration_to_merge_file": -1,
    }
    assert "mp4_config" not in rule or rule["mp4_config"] is None


def test_post_same_location_replaces_and_keeps_rule_id(project: str, http: httpx.Client, app_id: str) -> None:
    first = create_rule(
        http,
        app_id,
        {
            **hls_rule("cn-north-4", project_id=project),
            "record_formats": ["HLS", "MP4"],
            "mp4_config": {"record_cycle": 60},
        },
    )
    second = create_rule(
        http, app_id, mp4_rule("cn-north-4", bucket="other-bucket", record_cycle=600, project_id=project)
    )
    assert second["rule_id"] == first["rule_id"]
    assert second["create_time"] == first["create_time"]
    assert second["record_formats"] == ["MP4"]
    assert second.get("hls_config") is None
    assert second["obs_addr"]["bucket"] == "other-bucket"
    assert second["mp4_config"]["record_cycle"] == 600
    assert list_rules(http, app_id) == [second]
    assert assert_ok(http.get(rules_path(app_id, first["rule_id"]))) == second


def test_post_other_location_makes_a_second_rule(project: str, http: httpx.Client, app_id: str) -> None:
    north = create_rule(http, app_id, mp4_rule("cn-north-4", project_id=project))
    east = create_rule(http, app_id, mp4_rule("cn-east-3", project_id=project))
    assert north["rule_id"] != east["rule_id"]
    rules = list_rules(http, app_id)
    assert sorted(r["rule_id"] for r in rules) == sorted([north["rule_id"], east["rule_id"]])
    assert {r["obs_addr"]["location"] for r in rules} == {"cn-north-4", "cn-east-3"}


def test_rules_belong_to_their_app(project: str, http: httpx.Client, app_id: str) -> None:
    other_app = create_app(http)
    rule = create_rule(http, app_id, mp4_rule("cn-north-4", project_id=project))
    # The same location in another app is another rule.
    theirs = create_rule(http, other_app, mp4_rule("cn-north-4", project_id=project))
    assert theirs["rule_id"] != rule["rule_id"]
    assert_error(http.get(rules_path(other_app, rule["rule_id"])), 404, "RTC.00001011")
    assert_error(http.delete(rules_path(other_app, rule["rule_id"])), 404, "RTC.00001011")
    assert_error(
        http.put(rules_path(other_app, rule["rule_id"]), json=mp4_rule("x1", project_id=project)), 404, "RTC.00001011"
    )
    assert list_rules(http, app_id) == [rule]


def test_list_pagination(project: str, http: httpx.Client, app_id: str) -> None:
    ids = {create_rule(http, app_id, mp4_rule(f"region-{i}", project_id=project))["rule_id"] for i in range(3)}
    assert len(ids) == 3
    first, second = list_rules(http, app_id, offset=0, limit=2), list_rules(http, app_id, offset=2, limit=2)
    assert len(first) == 2 and len(second) == 1
    assert {r["rule_id"] for r in first + second} == ids
    assert list_rules(http, app_id, offset=3) == []
    assert len(list_rules(http, app_id, limit=1)) == 1
    assert len(list_rules(http, app_id, limit=100)) == 3
    assert len(list_rules(http, app_id)) == 3


def test_update_with_put(project: str, http: httpx.Client, app_id: str) -> None:
    rule = create_rule(http, app_id, mp4_rule("cn-north-4", project_id=project))
    body = hls_rule("cn-north-4", bucket="new-bucket", record_cycle=0, project_id=project)
    updated = assert_ok(http.put(rules_path(app_id, rule["rule_id"]), json=body))
    assert updated["rule_id"] == rule["rule_id"]
    assert updated["create_time"] == rule["create_time"]
    assert_spec_time(updated["update_time"])
    assert updated["record_formats"] == ["HLS"]
    assert updated["obs_addr"]["bucket"] == "new-bucket"
    assert updated["hls_config"] == {
        "record_cycle": 0,
        "record_prefix": DEFAULT_PREFIX,
        "record_slice_duration": 10,
        "record_max_duration_to_merge_file": 0,
    }
    assert updated.get("mp4_config") is None
    assert assert_ok(http.get(rules_path(app_id, rule["rule_id"]))) == updated


def test_update_can_move_a_rule_to_a_free_location_only(project: str, http: httpx.Client, app_id: str) -> None:
    north = create_rule(http, app_id, mp4_rule("cn-north-4", project_id=project))
    east = create_rule(http, app_id, mp4_rule("cn-east-3", project_id=project))
    moved = assert_ok(
        http.put(rules_path(app_id, north["rule_id"]), json=mp4_rule("ap-southeast-1", project_id=project))
    )
    assert moved["obs_addr"]["location"] == "ap-southeast-1"
    # One rule per location (4.9.1): taking a location another rule holds is refused, and changes nothing.
    r = http.put(rules_path(app_id, north["rule_id"]), json=mp4_rule("cn-east-3", record_cycle=900, project_id=project))
    assert_error(r, 400, "RTC.00001019")
    assert assert_ok(http.get(rules_path(app_id, north["rule_id"]))) == moved
    assert assert_ok(http.get(rules_path(app_id, east["rule_id"]))) == east
    # The freed location takes a new rule.
    again = create_rule(http, app_id, mp4_rule("cn-north-4", project_id=project))
    assert again["rule_id"] not in (north["rule_id"], east["rule_id"])
    assert len(list_rules(http, app_id)) == 3


def test_delete(project: str, http: httpx.Client, app_id: str) -> None:
    keep = create_rule(http, app_id, mp4_rule("cn-east-3", project_id=project))
    rule = create_rule(http, app_id, mp4_rule("cn-north-4", project_id=project))
    r = http.delete(rules_path(app_id, rule["rule_id"]))
    assert r.status_code == 204 and r.content == b""
    assert_request_id(r)
    assert_error(http.get(rules_path(app_id, rule["rule_id"])), 404, "RTC.00001011")
    assert_error(http.delete(rules_path(app_id, rule["rule_id"])), 404, "RTC.00001011")
    assert list_rules(http, app_id) == [keep]


@pytest.mark.parametrize(
    ("method", "body"),
    [("GET", None), ("PUT", mp4_rule(project_id=NO_PROJECT)), ("DELETE", None)],
)
def test_unknown_rule_is_404(http: httpx.Client, app_id: str, method: str, body: Any) -> None:
    assert_error(http.request(method, rules_path(app_id, UNKNOWN_RULE), json=body), 404, "RTC.00001011")
    assert list_rules(http, app_id) == []


@pytest.mark.parametrize(
    ("method", "sub", "body"),
    [
        ("POST", "", mp4_rule(project_id=NO_PROJECT)),
        ("GET", "", None),
        ("GET", UNKNOWN_RULE, None),
        ("PUT", UNKNOWN_RULE, mp4_rule(project_id=NO_PROJECT)),
        ("DELETE", UNKNOWN_RULE, None),
    ],
)
def test_rules_of_unknown_app_are_404(http: httpx.Client, method: str, sub: str, body: Any) -> None:
    path = rules_path("0" * 32, sub or None)
    assert_error(http.request(method, path, json=body), 404, "RTC.00001015")


def test_rule_used_by_auto_record_cannot_be_deleted(project: str, http: httpx.Client, app_id: str) -> None:
    used = create_rule(http, app_id, mp4_rule("cn-north-4", project_id=project))
    spare = create_rule(http, app_id, mp4_rule("cn-east-3", project_id=project))
    mode = {"mode": "AUTO_INDIVIDUAL_RECORD", "record_rule_id": used["rule_id"]}
    assert_ok(http.put(f"/v2/apps/{app_id}/auto-record-mode", json=mode))

    assert_error(http.delete(rules_path(app_id, used["rule_id"])), 400, "RTC.00001013")
    assert assert_ok(http.get(rules_path(app_id, used["rule_id"]))) == used
    # Other rules are not protected by it.
    assert http.delete(rules_path(app_id, spare["rule_id"])).status_code == 204

    assert_ok(http.put(f"/v2/apps/{app_id}/auto-record-mode", json={"mode": "AUTO_RECORD_OFF"}))
    assert http.delete(rules_path(app_id, used["rule_id"])).status_code == 204
    assert list_rules(http, app_id) == []


def test_rule_used_by_individual_job_cannot_be_deleted_until_it_stops(
    project: str, http: httpx.Client, app_id: str
) -> None:
    rule = create_rule(http, app_id)
    job_id = start_individual_job(http, app_id, rule["rule_id"])
    assert_error(http.delete(rules_path(app_id, rule["rule_id"])), 400, "RTC.00001013")
    # A rule in use may still be updated (4.9.4: running streams keep the rule they started with).
    assert_ok(http.put(rules_path(app_id, rule["rule_id"]), json=mp4_rule(record_cycle=120, project_id=project)))
    assert_error(http.delete(rules_path(app_id, rule["rule_id"])), 400, "RTC.00001013")

    stop_individual_job(http, app_id, job_id)
    job = assert_ok(http.get(f"/v2/apps/{app_id}/individual-stream-jobs/{job_id}"))
    assert job["state"] == "STOPPED"
    assert http.delete(rules_path(app_id, rule["rule_id"])).status_code == 204


def test_rule_used_by_mix_job_cannot_be_deleted_until_it_stops(http: httpx.Client, app_id: str) -> None:
    rule = create_rule(http, app_id)
    body = {
        "mix_param": {"room_id": unique("room-"), "encode_template": "audio_only", "max_idle_time": 43200},
        "record_param": {"record_rule_id": rule["rule_id"]},
    }
    job_id = assert_ok(http.post(f"/v2/apps/{app_id}/mix-stream-jobs", json=body), 201)["job_id"]
    assert_error(http.delete(rules_path(app_id, rule["rule_id"])), 400, "RTC.00001013")
    assert http.delete(f"/v2/apps/{app_id}/mix-stream-jobs/{job_id}").status_code == 204
    assert http.delete(rules_path(app_id, rule["rule_id"])).status_code == 204
