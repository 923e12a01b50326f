"""spec 4.5 Application management, through the official SDK (AK/SK) and plain HTTP (IAM token)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from huaweicloudsdkcloudrtc.v2 import (
    AppReq,
    CreateAppRequest,
    CreateIndividualStreamJobRequest,
    DeleteAppRequest,
    IndividualStreamJobReq,
    ListAppsRequest,
    RecordParam,
    ShowAppRequest,
    StartAppRequest,
    StopAppRequest,
)
from huaweicloudsdkcore.exceptions.exceptions import ClientRequestException

from tests.conftest import make_tenant, sdk_client, token_for
from tests.support.server import ServerThread, TenantInfo
from tests.support.spec_checks import (
    assert_error,
    assert_ok,
    assert_request_id,
    assert_spec_time,
    create_app,
    create_rule,
    individual_job,
    start_individual_job,
    stop_individual_job,
    unique,
)

UNKNOWN_APP = "0" * 32


def assert_app_view(app: dict[str, Any], app_id: str, app_name: str, tenant: TenantInfo) -> None:
    """Tables 4-80 to 4-85 (and 4-93 to 4-98 for the query)."""
    assert app["app_id"] == app_id
    assert app["app_name"] == app_name
    assert app["state"]["state"] == "ACTIVATION"
    assert_spec_time(app["state"]["update_time"])
    assert app["scope"] in ("DOMESTIC", "OVERSEA", "GLOBAL")
    assert app["tenant_name"] == tenant.name
    assert isinstance(app["domain"], str) and app["domain"]
    assert_spec_time(app["create_time"])
    auth = app["authentication"]
    assert auth["enable"] is True
    assert auth["expire"] == 300
    assert isinstance(auth["app_key"], str) and len(auth["app_key"]) >= 16
    assert_spec_time(auth["update_time"])
    assert isinstance(app["callbacks"], dict)
    assert app["auto_record_mode"]["mode"] == "AUTO_RECORD_OFF"
    assert_spec_time(app["auto_record_mode"]["update_time"])


# --- through the official SDK -----------------------------------------------------------------


def test_sdk_full_lifecycle(sdk: Any, tenant: TenantInfo) -> None:
    name = unique("sdk-app-")
    created = sdk.create_app(CreateAppRequest(body=AppReq(app_name=name)))
    app_id = created.app_id
    assert len(app_id) == 32
    assert created.x_request_id

    shown = sdk.show_app(ShowAppRequest(app_id=app_id))
    assert shown.x_request_id
    assert_app_view(shown.to_json_object(), app_id, name, tenant)

    listed = sdk.list_apps(ListAppsRequest(state="ACTIVATION", offset=0, limit=10))
    assert listed.count == 1
    assert [a.app_id for a in listed.apps] == [app_id]
    assert listed.apps[0].authentication.app_key == shown.authentication.app_key

    disabled = sdk.stop_app(StopAppRequest(app_id=app_id))
    assert disabled.app_id == app_id
    assert disabled.state.state == "DEACTIVATION"
    assert_spec_time(disabled.state.update_time)
    assert sdk.list_apps(ListAppsRequest(state="ACTIVATION")).count == 0
    assert [a.app_id for a in sdk.list_apps(ListAppsRequest(state="DEACTIVATION")).apps] == [app_id]

    enabled = sdk.start_app(StartAppRequest(app_id=app_id))
    assert enabled.state.state == "ACTIVATION"
    assert sdk.show_app(ShowAppRequest(app_id=app_id)).state.state == "ACTIVATION"

    deleted = sdk.delete_app(DeleteAppRequest(app_id=app_id))
    assert deleted.x_request_id
    with pytest.raises(ClientRequestException) as err:
        sdk.show_app(ShowAppRequest(app_id=app_id))
    assert err.value.status_code == 404
    assert err.value.error_code == "RTC.00001015"
    assert err.value.request_id
    assert sdk.list_apps(ListAppsRequest()).count == 0


@pytest.mark.parametrize(
    "call",
    [
        lambda sdk: sdk.show_app(ShowAppRequest(app_id=UNKNOWN_APP)),
        lambda sdk: sdk.delete_app(DeleteAppRequest(app_id=UNKNOWN_APP)),
        lambda sdk: sdk.start_app(StartAppRequest(app_id=UNKNOWN_APP)),
        lambda sdk: sdk.stop_app(StopAppRequest(app_id=UNKNOWN_APP)),
    ],
    ids=["show", "delete", "enable", "disable"],
)
def test_sdk_unknown_app_is_404(sdk: Any, call: Any) -> None:
    with pytest.raises(ClientRequestException) as err:
        call(sdk)
    assert err.value.status_code == 404
    assert err.value.error_code == "RTC.00001015"
    assert err.value.request_id


def test_sdk_duplicate_name_is_400(sdk: Any) -> None:
    name = unique("dup-")
    sdk.create_app(CreateAppRequest(body=AppReq(app_name=name)))
    with pytest.raises(ClientRequestException) as err:
        sdk.create_app(CreateAppRequest(body=AppReq(app_name=name)))
    assert err.value.status_code == 400
    assert err.value.error_code == "RTC.00001020"
    assert sdk.list_apps(ListAppsRequest()).count == 1


def test_sdk_disabled_app_refuses_jobs(sdk: Any, http: httpx.Client) -> None:
    app_id = sdk.create_app(CreateAppRequest(body=AppReq(app_name=unique("off-")))).app_id
    rule_id = create_rule(http, app_id)["rule_id"]
    body = IndividualStreamJobReq(
        room_id=unique("room-"), user_id="u1", max_idle_time=43200, record_param=RecordParam(record_rule_id=rule_id)
    )
    sdk.stop_app(StopAppRequest(app_id=app_id))
    with pytest.raises(ClientRequestException) as err:
        sdk.create_individual_stream_job(CreateIndividualStreamJobRequest(app_id=app_id, body=body))
    assert err.value.status_code == 400
    assert err.value.error_code == "RTC.00001016"

    sdk.start_app(StartAppRequest(app_id=app_id))
    job = sdk.create_individual_stream_job(CreateIndividualStreamJobRequest(app_id=app_id, body=body))
    assert job.state == "INIT"
    stop_individual_job(http, app_id, job.job_id)


# --- through plain HTTP with an IAM token -------------------------------------------------------


def test_http_create_show_list(http: httpx.Client, tenant: TenantInfo) -> None:
    name = unique("http-app-")
    created = assert_ok(http.post("/v2/apps", json={"app_name": name}), 201)
    app_id = created["app_id"]
    assert set(created) == {"app_id"}

    shown = assert_ok(http.get(f"/v2/apps/{app_id}"))
    assert_app_view(shown, app_id, name, tenant)

    listed = assert_ok(http.get("/v2/apps"))
    assert listed["count"] == 1
    assert listed["apps"] == [shown]


def test_http_app_keys_differ_between_apps(http: httpx.Client) -> None:
    keys = {assert_ok(http.get(f"/v2/apps/{create_app(http)}"))["authentication"]["app_key"] for _ in range(3)}
    assert len(keys) == 3


def test_http_enable_disable(http: httpx.Client) -> None:
    app_id = create_app(http)
    off = assert_ok(http.post(f"/v2/apps/{app_id}/disable"))
    assert off["app_id"] == app_id
    assert off["state"]["state"] == "DEACTIVATION"
    assert_spec_time(off["state"]["update_time"])
    assert assert_ok(http.get(f"/v2/apps/{app_id}"))["state"]["state"] == "DEACTIVATION"
    # Disabling twice is harmless: the state stays.
    assert assert_ok(http.post(f"/v2/apps/{app_id}/disable"))["state"]["state"] == "DEACTIVATION"

    on = assert_ok(http.post(f"/v2/apps/{app_id}/enable"))
    assert on == {"app_id": app_id, "state": on["state"]}
    assert on["state"]["state"] == "ACTIVATION"
    assert_spec_time(on["state"]["update_time"])
    assert assert_ok(http.get(f"/v2/apps/{app_id}"))["state"]["state"] == "ACTIVATION"


def test_http_delete_then_show_is_404(http: httpx.Client) -> None:
    app_id = create_app(http)
    r = http.delete(f"/v2/apps/{app_id}")
    assert r.status_code == 204
    assert r.content == b""
    assert_request_id(r)
    assert_error(http.get(f"/v2/apps/{app_id}"), 404, "RTC.00001015")
    assert_error(http.delete(f"/v2/apps/{app_id}"), 404, "RTC.00001015")
    assert assert_ok(http.get("/v2/apps"))["count"] == 0
    # The name is free again.
    create_app(http)


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/v2/apps/{app}"),
        ("DELETE", "/v2/apps/{app}"),
        ("POST", "/v2/apps/{app}/enable"),
        ("POST", "/v2/apps/{app}/disable"),
    ],
)
def test_http_unknown_app_is_404(http: httpx.Client, method: str, path: str) -> None:
    assert_error(http.request(method, path.format(app=UNKNOWN_APP)), 404, "RTC.00001015")


def test_http_other_tenants_app_is_404(server: ServerThread, http: httpx.Client) -> None:
    """Tenants never see each other's apps: another tenant's app looks absent."""
    other = make_tenant(server)
    with httpx.Client(base_url=server.url, headers={"X-Auth-Token": token_for(server, other)}) as c:
        theirs = create_app(c)
    for method, path in [
        ("GET", f"/v2/apps/{theirs}"),
        ("DELETE", f"/v2/apps/{theirs}"),
        ("POST", f"/v2/apps/{theirs}/disable"),
    ]:
        assert_error(http.request(method, path), 404, "RTC.00001015")
    assert assert_ok(http.get("/v2/apps"))["count"] == 0


def test_http_duplicate_name_in_tenant_is_400_but_fine_in_another(server: ServerThread, http: httpx.Client) -> None:
    name = unique("same-")
    create_app(http, name)
    assert_error(http.post("/v2/apps", json={"app_name": name}), 400, "RTC.00001020")
    assert assert_ok(http.get("/v2/apps"))["count"] == 1

    other = make_tenant(server)
    with httpx.Client(base_url=server.url, headers={"X-Auth-Token": token_for(server, other)}) as c:
        create_app(c, name)
        assert assert_ok(c.get("/v2/apps"))["apps"][0]["app_name"] == name
    # The same name through the SDK of the other tenant: already taken there now.
    with pytest.raises(ClientRequestException) as err:
        sdk_client(server, other).create_app(CreateAppRequest(body=AppReq(app_name=name)))
    assert err.value.error_code == "RTC.00001020"


def test_http_app_limit(server: ServerThread, http: httpx.Client) -> None:
    """spec 6.2 RTC.00001017: at most ``max_apps_per_tenant`` (20 by default) applications."""
    limit = server.settings.max_apps_per_tenant
    assert limit == 20
    ids = [create_app(http, f"limit-{i}") for i in range(limit)]
    assert_error(http.post("/v2/apps", json={"app_name": "one-too-many"}), 400, "RTC.00001017")
    listed = assert_ok(http.get("/v2/apps"))
    assert listed["count"] == limit
    assert "one-too-many" not in {a["app_name"] for a in listed["apps"]}
    # Deleting one makes room for one.
    assert http.delete(f"/v2/apps/{ids[0]}").status_code == 204
    create_app(http, "one-more")
    assert_error(http.post("/v2/apps", json={"app_name": "and-another"}), 400, "RTC.00001017")


def test_http_list_pagination_and_state_filter(http: httpx.Client) -> None:
    ids = {create_app(http, f"page-{i}") for i in range(5)}

    def page(**params: Any) -> dict[str, Any]:
        return dict(assert_ok(http.get("/v2/apps", params=params)))

    first, second, third = page(offset=0, limit=2), page(offset=2, limit=2), page(offset=4, limit=2)
    assert [p["count"] for p in (first, second, third)] == [5, 5, 5]
    assert [len(p["apps"]) for p in (first, second, third)] == [2, 2, 1]
    seen = [a["app_id"] for p in (first, second, third) for a in p["apps"]]
    assert len(seen) == 5 and set(seen) == ids

    beyond = page(offset=5, limit=2)
    assert beyond == {"count": 5, "apps": []}
    assert len(page()["apps"]) == 5  # default limit 100
    assert len(page(limit=1)["apps"]) == 1
    assert len(page(limit=100)["apps"]) == 5

    disabled = sorted(ids)[:2]
    for app_id in disabled:
        assert_ok(http.post(f"/v2/apps/{app_id}/disable"))
    off = page(state="DEACTIVATION")
    assert off["count"] == 2
    assert sorted(a["app_id"] for a in off["apps"]) == disabled
    assert all(a["state"]["state"] == "DEACTIVATION" for a in off["apps"])
    on = page(state="ACTIVATION", limit=1)
    assert on["count"] == 3 and len(on["apps"]) == 1
    assert on["apps"][0]["state"]["state"] == "ACTIVATION"
    assert page(state="ARREARS") == {"count": 0, "apps": []}


def test_http_disabled_app_refuses_new_jobs(http: httpx.Client) -> None:
    """spec 4.5.6: a disabled app cannot record (RTC.00001016); enabling it again allows jobs."""
    app_id = create_app(http)
    rule_id = create_rule(http, app_id)["rule_id"]
    assert_ok(http.post(f"/v2/apps/{app_id}/disable"))
    job = individual_job(rule_id)
    assert_error(http.post(f"/v2/apps/{app_id}/individual-stream-jobs", json=job), 400, "RTC.00001016")
    mix = {
        "mix_param": {"room_id": job["room_id"], "encode_template": "audio_only", "max_idle_time": 43200},
        "record_param": {"record_rule_id": rule_id},
    }
    assert_error(http.post(f"/v2/apps/{app_id}/mix-stream-jobs", json=mix), 400, "RTC.00001016")

    assert_ok(http.post(f"/v2/apps/{app_id}/enable"))
    started = assert_ok(http.post(f"/v2/apps/{app_id}/individual-stream-jobs", json=job), 201)
    assert started["state"] == "INIT"
    mixed = assert_ok(http.post(f"/v2/apps/{app_id}/mix-stream-jobs", json=mix), 201)
    stop_individual_job(http, app_id, started["job_id"])
    assert http.delete(f"/v2/apps/{app_id}/mix-stream-jobs/{mixed['job_id']}").status_code == 204


def test_http_app_with_unstopped_job_cannot_be_deleted(http: httpx.Client) -> None:
    """spec 4.5.4: 400 when "the deletion condition is not met" (a job has not stopped)."""
    app_id = create_app(http)
    rule_id = create_rule(http, app_id)["rule_id"]
    job_id = start_individual_job(http, app_id, rule_id)
    assert_error(http.delete(f"/v2/apps/{app_id}"), 400, "RTC.00001006")
    assert_ok(http.get(f"/v2/apps/{app_id}"))
    stop_individual_job(http, app_id, job_id)
    assert http.delete(f"/v2/apps/{app_id}").status_code == 204


def test_request_ids_are_distinct(http: httpx.Client) -> None:
    ids = {assert_request_id(http.get("/v2/apps")) for _ in range(3)}
    ids.add(assert_request_id(http.get(f"/v2/apps/{UNKNOWN_APP}")))
    assert len(ids) == 4
