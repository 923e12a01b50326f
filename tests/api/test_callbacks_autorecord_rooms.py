"""spec 4.3 record callback, 4.6 automatic recording mode and 4.7 room management.

No media plane is attached in these tests, so no room is running: removing users is accepted (202, they
are already not in the room) and dismissing a room answers 404.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from huaweicloudsdkcloudrtc.v2 import (
    AppCallbackUrlReq,
    AutoRecordModeReq,
    RemoveRoomRequest,
    RemoveUsersReq,
    RemoveUsersRequest,
    ShowAppRequest,
    ShowAutoRecordRequest,
    ShowRecordCallbackRequest,
    UpdateAutoRecordRequest,
    UpdateRecordCallbackRequest,
)
from huaweicloudsdkcore.exceptions.exceptions import ClientRequestException

from emberrtc.domain.errors import RoomNotExist
from tests.support.spec_checks import (
    assert_error,
    assert_ok,
    assert_request_id,
    assert_spec_time,
    create_app,
    create_rule,
    mp4_rule,
    own_project,
)

UNKNOWN_APP = "0" * 32
ALL_EVENTS = {"RECORD_NEW_FILE_START", "RECORD_FILE_COMPLETE", "CLOUD_RECORD_OVER"}


@pytest.fixture
def app_id(http: httpx.Client) -> str:
    return create_app(http)


def callback_path(app_id: str) -> str:
    return f"/v2/apps/{app_id}/record-callback"


def auto_path(app_id: str) -> str:
    return f"/v2/apps/{app_id}/auto-record-mode"


# --- 4.3 record callback --------------------------------------------------------------------------


def test_callback_not_configured(http: httpx.Client, app_id: str) -> None:
    shown = assert_ok(http.get(callback_path(app_id)))
    assert shown["app_id"] == app_id
    assert not (shown.get("record_callback") or {}).get("url")


def test_callback_put_get(http: httpx.Client, app_id: str) -> None:
    body = {"url": "https://hooks.example.com/rtc?x=1", "auth_key": "8923ab8c2dcef4538923ab8c2dcef453"}
    put = assert_ok(http.put(callback_path(app_id), json=body))
    assert put["app_id"] == app_id
    cb = put["record_callback"]
    assert cb["url"] == body["url"]
    assert cb["auth_key"] == body["auth_key"]
    # Not subscribing to specific events means all recording events (Table 4-6).
    assert set(cb["notify_event_subscription"]) >= {"RECORD_NEW_FILE_START", "RECORD_FILE_COMPLETE"}
    assert set(cb["notify_event_subscription"]) <= ALL_EVENTS
    assert_spec_time(cb["update_time"])

    assert assert_ok(http.get(callback_path(app_id))) == put
    app = assert_ok(http.get(f"/v2/apps/{app_id}"))
    assert app["callbacks"]["record_callback"] == cb


def test_callback_event_subscription_and_replacing(http: httpx.Client, app_id: str) -> None:
    body = {"url": "http://127.0.0.1:9/cb", "notify_event_subscription": ["RECORD_FILE_COMPLETE"]}
    cb = assert_ok(http.put(callback_path(app_id), json=body))["record_callback"]
    assert cb["notify_event_subscription"] == ["RECORD_FILE_COMPLETE"]
    # No auth_key: no signature (spec: "not set or left empty").
    assert not cb.get("auth_key")

    with_key = assert_ok(http.put(callback_path(app_id), json={"url": "http://a.example.com/x", "auth_key": "k1"}))
    assert with_key["record_callback"]["auth_key"] == "k1"
    assert with_key["record_callback"]["url"] == "http://a.example.com/x"
    # A later PUT replaces the whole configuration: leaving auth_key out clears it.
    cleared = assert_ok(http.put(callback_path(app_id), json={"url": "http://b.example.com/y"}))["record_callback"]
    assert cleared["url"] == "http://b.example.com/y"
    assert not cleared.get("auth_key")
    assert assert_ok(http.get(callback_path(app_id)))["record_callback"] == cleared


def test_callback_with_sdk(sdk: Any, app_id: str) -> None:
    body = AppCallbackUrlReq(url="https://hooks.example.com/rtc", auth_key="78912374ae8cdb38")
    put = sdk.update_record_callback(UpdateRecordCallbackRequest(app_id=app_id, body=body))
    assert put.app_id == app_id and put.x_request_id
    assert put.record_callback.url == "https://hooks.example.com/rtc"
    assert put.record_callback.auth_key == "78912374ae8cdb38"
    assert "RECORD_FILE_COMPLETE" in put.record_callback.notify_event_subscription
    assert_spec_time(put.record_callback.update_time)
    shown = sdk.show_record_callback(ShowRecordCallbackRequest(app_id=app_id))
    assert shown.record_callback.url == put.record_callback.url
    app = sdk.show_app(ShowAppRequest(app_id=app_id))
    assert app.callbacks.record_callback.url == put.record_callback.url


@pytest.mark.parametrize("method", ["GET", "PUT"])
def test_callback_of_unknown_app_is_404(http: httpx.Client, method: str) -> None:
    body = {"url": "http://example.com/cb"} if method == "PUT" else None
    assert_error(http.request(method, callback_path(UNKNOWN_APP), json=body), 404, "RTC.00001015")


def test_sdk_callback_of_unknown_app_is_404(sdk: Any) -> None:
    with pytest.raises(ClientRequestException) as err:
        sdk.show_record_callback(ShowRecordCallbackRequest(app_id=UNKNOWN_APP))
    assert (err.value.status_code, err.value.error_code) == (404, "RTC.00001015")


# --- 4.6 automatic recording ------------------------------------------------------------------------


def test_auto_record_defaults_to_off(http: httpx.Client, app_id: str) -> None:
    shown = assert_ok(http.get(auto_path(app_id)))
    assert shown["app_id"] == app_id
    assert shown["auto_record_mode"]["mode"] == "AUTO_RECORD_OFF"
    assert not shown["auto_record_mode"].get("record_rule_id")
    assert_spec_time(shown["auto_record_mode"]["update_time"])


def test_auto_record_on_and_off(http: httpx.Client, app_id: str) -> None:
    rule_id = create_rule(http, app_id)["rule_id"]
    on = assert_ok(http.put(auto_path(app_id), json={"mode": "AUTO_INDIVIDUAL_RECORD", "record_rule_id": rule_id}))
    assert on["app_id"] == app_id
    assert on["auto_record_mode"]["mode"] == "AUTO_INDIVIDUAL_RECORD"
    assert on["auto_record_mode"]["record_rule_id"] == rule_id
    assert_spec_time(on["auto_record_mode"]["update_time"])
    assert assert_ok(http.get(auto_path(app_id))) == on
    assert assert_ok(http.get(f"/v2/apps/{app_id}"))["auto_record_mode"] == on["auto_record_mode"]

    off = assert_ok(http.put(auto_path(app_id), json={"mode": "AUTO_RECORD_OFF"}))
    assert off["auto_record_mode"]["mode"] == "AUTO_RECORD_OFF"
    assert assert_ok(http.get(auto_path(app_id)))["auto_record_mode"]["mode"] == "AUTO_RECORD_OFF"


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"mode": "AUTO_INDIVIDUAL_RECORD"}, 400, "RTC.00001005"),
        ({"mode": "AUTO_INDIVIDUAL_RECORD", "record_rule_id": ""}, 400, "RTC.00001005"),
        ({"mode": "AUTO_INDIVIDUAL_RECORD", "record_rule_id": "f" * 32}, 404, "RTC.00001011"),
    ],
    ids=["no-rule", "empty-rule", "unknown-rule"],
)
def test_auto_record_refusals_change_nothing(
    http: httpx.Client, app_id: str, body: dict[str, Any], status: int, code: str
) -> None:
    rule_id = create_rule(http, app_id)["rule_id"]
    before = assert_ok(http.put(auto_path(app_id), json={"mode": "AUTO_INDIVIDUAL_RECORD", "record_rule_id": rule_id}))
    assert_error(http.put(auto_path(app_id), json=body), status, code)
    assert assert_ok(http.get(auto_path(app_id))) == before


def test_auto_record_rule_of_another_app_is_404(http: httpx.Client, app_id: str) -> None:
    other_rule = create_rule(http, create_app(http))["rule_id"]
    body = {"mode": "AUTO_INDIVIDUAL_RECORD", "record_rule_id": other_rule}
    assert_error(http.put(auto_path(app_id), json=body), 404, "RTC.00001011")
    assert assert_ok(http.get(auto_path(app_id)))["auto_record_mode"]["mode"] == "AUTO_RECORD_OFF"


def test_auto_record_rule_deleted_is_404(http: httpx.Client, app_id: str) -> None:
    rule_id = create_rule(http, app_id, mp4_rule("cn-east-3", project_id=own_project(http)))["rule_id"]
    assert http.delete(f"/v2/apps/{app_id}/record-rules/{rule_id}").status_code == 204
    body = {"mode": "AUTO_INDIVIDUAL_RECORD", "record_rule_id": rule_id}
    assert_error(http.put(auto_path(app_id), json=body), 404, "RTC.00001011")


def test_auto_record_with_sdk(sdk: Any, http: httpx.Client, app_id: str) -> None:
    rule_id = create_rule(http, app_id)["rule_id"]
    put = sdk.update_auto_record(
        UpdateAutoRecordRequest(
            app_id=app_id, body=AutoRecordModeReq(mode="AUTO_INDIVIDUAL_RECORD", record_rule_id=rule_id)
        )
    )
    assert put.app_id == app_id and put.x_request_id
    assert put.auto_record_mode.mode == "AUTO_INDIVIDUAL_RECORD"
    assert put.auto_record_mode.record_rule_id == rule_id
    shown = sdk.show_auto_record(ShowAutoRecordRequest(app_id=app_id))
    assert shown.auto_record_mode.record_rule_id == rule_id

    with pytest.raises(ClientRequestException) as err:
        sdk.update_auto_record(
            UpdateAutoRecordRequest(app_id=app_id, body=AutoRecordModeReq(mode="AUTO_INDIVIDUAL_RECORD"))
        )
    assert (err.value.status_code, err.value.error_code) == (400, "RTC.00001005")
    with pytest.raises(ClientRequestException) as err:
        sdk.update_auto_record(
            UpdateAutoRecordRequest(
                app_id=app_id, body=AutoRecordModeReq(mode="AUTO_INDIVIDUAL_RECORD", record_rule_id="f" * 32)
            )
        )
    assert (err.value.status_code, err.value.error_code) == (404, "RTC.00001011")

    off = sdk.update_auto_record(UpdateAutoRecordRequest(app_id=app_id, body=AutoRecordModeReq(mode="AUTO_RECORD_OFF")))
    assert off.auto_record_mode.mode == "AUTO_RECORD_OFF"


@pytest.mark.parametrize("method", ["GET", "PUT"])
def test_auto_record_of_unknown_app_is_404(http: httpx.Client, method: str) -> None:
    body = {"mode": "AUTO_RECORD_OFF"} if method == "PUT" else None
    assert_error(http.request(method, auto_path(UNKNOWN_APP), json=body), 404, "RTC.00001015")


# --- 4.7 rooms -----------------------------------------------------------------------------------------


def test_batch_remove_users_is_accepted(http: httpx.Client, app_id: str) -> None:
    r = http.post(f"/v2/apps/{app_id}/rooms/room001/batch-remove-users", json={"user_ids": ["user001", "user002"]})
    assert r.status_code == 202, r.text
    assert_request_id(r)
    # Repeating it (and naming a user twice) is just as fine.
    r = http.post(f"/v2/apps/{app_id}/rooms/room001/batch-remove-users", json={"user_ids": ["user001", "user001"]})
    assert r.status_code == 202, r.text


def test_batch_remove_users_with_sdk(sdk: Any, app_id: str) -> None:
    resp = sdk.remove_users(RemoveUsersRequest(app_id=app_id, room_id="room001", body=RemoveUsersReq(user_ids=["u1"])))
    assert resp.x_request_id


def test_dismiss_room_that_is_not_running_is_404(http: httpx.Client, app_id: str) -> None:
    r = http.post(f"/v2/apps/{app_id}/rooms/room001/dismiss")
    assert_error(r, 404, RoomNotExist.code)


def test_dismiss_with_sdk_is_404(sdk: Any, app_id: str) -> None:
    with pytest.raises(ClientRequestException) as err:
        sdk.remove_room(RemoveRoomRequest(app_id=app_id, room_id="room001"))
    assert err.value.status_code == 404
    assert err.value.error_code == RoomNotExist.code
    assert err.value.request_id


@pytest.mark.parametrize(
    ("action", "body"), [("batch-remove-users", {"user_ids": ["u1"]}), ("dismiss", None)], ids=["remove", "dismiss"]
)
def test_rooms_of_unknown_app_are_404(http: httpx.Client, action: str, body: Any) -> None:
    assert_error(http.post(f"/v2/apps/{UNKNOWN_APP}/rooms/room001/{action}", json=body), 404, "RTC.00001015")
