"""The Recording page: record rules (the API's validation errors next to their fields), automatic
recording, the record callback and its test event sent to a real receiver."""

from __future__ import annotations

import asyncio
import html
import json
import re
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from emberrtc.callbacks.signature import verify
from tests.conftest import token_for
from tests.console.conftest import Console
from tests.support.http_receiver import HttpReceiver
from tests.support.server import ServerThread, TenantInfo


@pytest.fixture
def api(server: ServerThread, tenant: TenantInfo) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, headers={"X-Auth-Token": token_for(server, tenant)}) as c:
        yield c


@pytest.fixture
def app_id(api: httpx.Client) -> str:
    return str(api.post("/v2/apps", json={"app_name": "recorder"}).json()["app_id"])


def _invalid(page: str) -> list[str]:
    return re.findall(r'name="([^"]+)"[^>]*aria-invalid="true"', page)


def _rule_form(**changes: Any) -> list[tuple[str, str]]:
    form = {
        "obs_addr.location": "cn-north-4",
        "obs_addr.bucket": "recordings",
        "record_formats": "MP4",
        "mp4_config.record_cycle": "120",
    }
    form.update(changes)
    return [(k, v) for k, v in form.items() if v is not None]


def _api_body(form: list[tuple[str, str]], project_id: str) -> dict[str, Any]:
    """The JSON body the API gets for the same input (numbers typed as the API's clients send them; a
    ticked format's config object is there, with the fields filled in)."""
    body: dict[str, Any] = {"obs_addr": {"project_id": project_id}, "record_formats": []}
    for key, value in form:
        if key == "record_formats":
            body["record_formats"].append(value)
            body.setdefault("mp4_config" if value == "MP4" else "hls_config", {})
            continue
        group, name = key.split(".")
        body.setdefault(group, {})[name] = int(value) if value.lstrip("-").isdigit() else value
    return body


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"mp4_config.record_cycle": "30"}, "mp4_config.record_cycle"),  # Table 4-234: [60, 10800]
        ({"mp4_config.record_cycle": None}, "mp4_config.record_cycle"),  # MP4 without its cycle
        ({"obs_addr.bucket": "Not_A_Bucket"}, "obs_addr.bucket"),
        ({"mp4_config.record_prefix": "{nope}/x"}, "mp4_config.record_prefix"),
        ({"record_formats": "HLS", "hls_config.record_cycle": "30"}, "hls_config.record_cycle"),
    ],
)
def test_a_bad_rule_shows_the_api_error_at_its_field(
    console: Console, api: httpx.Client, tenant: TenantInfo, app_id: str, changes: dict[str, Any], field: str
) -> None:
    form = _rule_form(**changes)
    expected = api.post(f"/v2/apps/{app_id}/record-rules", json=_api_body(form, tenant.project_id)).json()
    assert expected["error_code"].startswith("RTC.")
    r = console.post(f"/console/apps/{app_id}/rules", form)
    assert r.status_code == 400
    assert expected["error_code"] in r.text and expected["error_msg"] in html.unescape(r.text)
    assert _invalid(r.text) == [field]
    assert html.escape(form[0][1]) in r.text  # what was typed is kept
    assert api.get(f"/v2/apps/{app_id}/record-rules").json()["rules"] == []


def test_no_format_ticked_is_the_api_error_on_the_formats(console: Console, app_id: str) -> None:
    form = [(k, v) for k, v in _rule_form() if k != "record_formats"]
    r = console.post(f"/console/apps/{app_id}/rules", form)
    assert r.status_code == 400 and "RTC.00001003" in r.text and "record_formats" in r.text


def test_a_fixed_rule_is_saved_and_can_be_deleted(console: Console, api: httpx.Client, app_id: str) -> None:
    form = _rule_form(**{"record_formats": "MP4", "mp4_config.record_cycle": "30"})
    assert console.post(f"/console/apps/{app_id}/rules", form).status_code == 400
    form = _rule_form(**{"mp4_config.record_cycle": "600"}) + [
        ("record_formats", "HLS"),
        ("hls_config.record_cycle", "0"),
        ("hls_config.record_slice_duration", "4"),
    ]
    r = console.post(f"/console/apps/{app_id}/rules", form)
    assert r.status_code == 303 and r.headers["location"] == f"/console/apps/{app_id}/recording"
    (rule,) = api.get(f"/v2/apps/{app_id}/record-rules").json()["rules"]
    assert rule["record_formats"] == ["MP4", "HLS"]
    assert rule["mp4_config"]["record_cycle"] == 600 and rule["hls_config"]["record_slice_duration"] == 4
    page = console.get(f"/console/apps/{app_id}/recording").text
    assert rule["rule_id"] in page and "cycle 600 s" in page
    assert console.post(f"/console/apps/{app_id}/rules/{rule['rule_id']}/delete", {}).status_code == 303
    assert api.get(f"/v2/apps/{app_id}/record-rules").json()["rules"] == []


def test_automatic_recording(console: Console, api: httpx.Client, app_id: str) -> None:
    r = console.post(f"/console/apps/{app_id}/auto-record", {"mode": "AUTO_INDIVIDUAL_RECORD", "record_rule_id": ""})
    assert r.status_code == 400 and "RTC.00001005" in r.text and "record_rule_id is required" in r.text
    missing = console.post(
        f"/console/apps/{app_id}/auto-record", {"mode": "AUTO_INDIVIDUAL_RECORD", "record_rule_id": "nope"}
    )
    assert missing.status_code == 404 and "RTC.00001011" in missing.text
    assert console.post(f"/console/apps/{app_id}/rules", _rule_form()).status_code == 303
    rule_id = api.get(f"/v2/apps/{app_id}/record-rules").json()["rules"][0]["rule_id"]
    ok = console.post(
        f"/console/apps/{app_id}/auto-record", {"mode": "AUTO_INDIVIDUAL_RECORD", "record_rule_id": rule_id}
    )
    assert ok.status_code == 303
    mode = api.get(f"/v2/apps/{app_id}/auto-record-mode").json()["auto_record_mode"]
    assert mode["mode"] == "AUTO_INDIVIDUAL_RECORD" and mode["record_rule_id"] == rule_id
    assert console.post(f"/console/apps/{app_id}/auto-record", {"mode": "AUTO_RECORD_OFF"}).status_code == 303
    assert api.get(f"/v2/apps/{app_id}/auto-record-mode").json()["auto_record_mode"]["mode"] == "AUTO_RECORD_OFF"


@pytest.fixture
def receiver() -> Iterator[tuple[HttpReceiver, asyncio.AbstractEventLoop]]:
    loop = asyncio.new_event_loop()
    import threading

    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    r = asyncio.run_coroutine_threadsafe(HttpReceiver().start(), loop).result(10)
    try:
        yield r, loop
    finally:
        asyncio.run_coroutine_threadsafe(r.stop(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)


def test_the_record_callback_and_its_test_event(
    console: Console, api: httpx.Client, app_id: str, receiver: tuple[HttpReceiver, asyncio.AbstractEventLoop]
) -> None:
    rx, _ = receiver
    bad = console.post(f"/console/apps/{app_id}/callback", {"url": "ftp://example.com/x", "auth_key": ""})
    assert bad.status_code == 400 and "RTC.00001003" in bad.text and _invalid(bad.text) == ["url"]
    url = f"{rx.url}/ember-events"
    form = [("url", url), ("auth_key", "s3cret-key"), ("events", "RECORD_FILE_COMPLETE")]
    assert console.post(f"/console/apps/{app_id}/callback", form).status_code == 303
    cb = api.get(f"/v2/apps/{app_id}/record-callback").json()["record_callback"]
    assert cb["url"] == url and cb["notify_event_subscription"] == ["RECORD_FILE_COMPLETE"]
    page = console.get(f"/console/apps/{app_id}/recording").text
    assert "s3cret-key" not in page  # the signing key is never shown
    # Saved again with the key left blank: the key is kept.
    assert console.post(f"/console/apps/{app_id}/callback", [("url", url), ("auth_key", "")]).status_code == 303
    assert api.get(f"/v2/apps/{app_id}/record-callback").json()["record_callback"]["auth_key"] == "s3cret-key"

    rx.script.append(202)
    r = console.post(f"/console/apps/{app_id}/callback/test", {})
    assert r.status_code == 200 and "Delivered" in r.text and '<span id="test-status">202</span>' in r.text
    (got,) = rx.received
    event = json.loads(got.body)
    assert event["event_type"] == "TEST_EVENT" and event["app_id"] == app_id and event["event_id"] in r.text
    assert got.path == "/ember-events" and verify("s3cret-key", got.headers, got.body)

    rx.script.append(500)
    r = console.post(f"/console/apps/{app_id}/callback/test", {})
    assert "Not delivered" in r.text and '<span id="test-status">500</span>' in r.text


def test_a_test_event_without_a_callback_says_so(console: Console, app_id: str) -> None:
    r = console.post(f"/console/apps/{app_id}/callback/test", {})
    assert r.status_code == 400 and "no record callback URL" in r.text
