"""Every validation rule of the request schemas, with a negative case (and the boundary values that pass).

spec 6.2: malformed JSON -> RTC.00001002, a bad value -> RTC.00001003, a bad combination -> RTC.00001004,
a missing mandatory field -> RTC.00001005. A rejected request stores nothing.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from tests.conftest import make_tenant, token_for
from tests.support.server import ServerThread
from tests.support.spec_checks import (
    assert_error,
    assert_ok,
    create_app,
    create_rule,
    hls_rule,
    mp4_rule,
    unique,
)

MALFORMED, BAD, COMBO, MISSING = "RTC.00001002", "RTC.00001003", "RTC.00001004", "RTC.00001005"
OK = None
DROP = object()  # "leave this field out"


@dataclass
class Ctx:
    """One tenant, app and rule per backend, shared by this module's cases (rejected requests change nothing)."""

    http: httpx.Client
    app_id: str
    rule_id: str
    project_id: str


@pytest.fixture(scope="module")
def ctx(server: ServerThread) -> Iterator[Ctx]:
    tenant = make_tenant(server)
    with httpx.Client(base_url=server.url, headers={"X-Auth-Token": token_for(server, tenant)}) as c:
        app_id = create_app(c)
        rule_id = create_rule(c, app_id, mp4_rule("cn-north-4", project_id=tenant.project_id))["rule_id"]
        yield Ctx(c, app_id, rule_id, tenant.project_id)


def patched(base: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    """A deep copy of ``base`` with the dotted ``path`` (list indexes as numbers) set to ``value`` or dropped."""
    body = copy.deepcopy(base)
    *parents, last = path.split(".")
    node: Any = body
    for key in parents:
        node = node[int(key)] if isinstance(node, list) else node[key]
    if value is DROP:
        del node[last]
    else:
        node[last] = value
    return body


def lookup(obj: Any, path: str) -> Any:
    for key in path.split("."):
        obj = obj[int(key)] if isinstance(obj, list) else obj[key]
    return obj


def case(base: str, path: str, value: Any, code: str | None) -> Any:
    shown = "DROP" if value is DROP else repr(value)
    return pytest.param(base, path, value, code, id=f"{base}:{path}={shown[:40]}")


def check(r: httpx.Response, code: str | None, ok_status: int, path: str, value: Any) -> dict[str, Any] | None:
    """A failing case answers 400 with ``code``; a passing one answers ``ok_status`` and echoes the value."""
    if code is not None:
        assert_error(r, 400, code)
        return None
    body = assert_ok(r, ok_status)
    if value is not DROP and not isinstance(value, dict | list):
        assert lookup(body, path) == value
    return dict(body)


# --- malformed bodies -> RTC.00001002 ----------------------------------------------------------------

MALFORMED_BODIES = [
    b'{"app_name":',
    b"[]",
    b'[{"app_name": "x"}]',
    b'"text"',
    b"42",
    b"null",
    b"",
    b'{"app_name": "x",}',
    b"{'app_name': 'x'}",
    b"\xff\xfe{}",
]

BODY_ENDPOINTS = [
    ("POST", "/v2/apps"),
    ("POST", "/v2/apps/{app}/record-rules"),
    ("PUT", "/v2/apps/{app}/record-rules/{rule}"),
    ("PUT", "/v2/apps/{app}/record-callback"),
    ("PUT", "/v2/apps/{app}/auto-record-mode"),
    ("POST", "/v2/apps/{app}/individual-stream-jobs"),
    ("POST", "/v2/apps/{app}/mix-stream-jobs"),
    ("POST", "/v2/apps/{app}/rooms/room001/batch-remove-users"),
]


@pytest.mark.parametrize(("method", "path"), BODY_ENDPOINTS, ids=[f"{m} {p}" for m, p in BODY_ENDPOINTS])
@pytest.mark.parametrize("content", MALFORMED_BODIES)
def test_malformed_body(ctx: Ctx, method: str, path: str, content: bytes) -> None:
    url = path.format(app=ctx.app_id, rule=ctx.rule_id)
    r = ctx.http.request(method, url, content=content, headers={"Content-Type": "application/json"})
    assert_error(r, 400, MALFORMED)


@pytest.mark.parametrize(("method", "path"), BODY_ENDPOINTS, ids=[f"{m} {p}" for m, p in BODY_ENDPOINTS])
def test_a_body_that_is_not_sent_as_json_is_malformed(ctx: Ctx, method: str, path: str) -> None:
    url = path.format(app=ctx.app_id, rule=ctx.rule_id)
    r = ctx.http.request(method, url, content=b'{"app_name": "x"}', headers={"Content-Type": "text/plain"})
    assert_error(r, 400, MALFORMED)


# --- 4.5.1 app_name ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "code"),
    [
        (DROP, MISSING),
        (None, BAD),
        ("", BAD),
        ("   ", BAD),
        ("a" * 129, BAD),
        ("bad\x01name", BAD),
        ("line\nbreak", BAD),
        (["list"], BAD),
        ("a", OK),
        ("b" * 128, OK),
        ("应用 ü-1", OK),
    ],
)
def test_app_name(ctx: Ctx, value: Any, code: str | None) -> None:
    body = {} if value is DROP else {"app_name": value}
    created = check(ctx.http.post("/v2/apps", json=body), code, 201, "app_id", DROP)
    if created:
        shown = assert_ok(ctx.http.get(f"/v2/apps/{created['app_id']}"))
        assert shown["app_name"] == value
        assert ctx.http.delete(f"/v2/apps/{created['app_id']}").status_code == 204


# --- 4.9 record rules (POST and PUT take the same body) -------------------------------------------------


def rule_bases(project_id: str) -> dict[str, dict[str, Any]]:
    return {"mp4": mp4_rule("cn-north-4", project_id=project_id), "hls": hls_rule("cn-north-4", project_id=project_id)}


RULE_CASES = [
    # Table 4-234 MP4 record_cycle [60, 10800]
    case("mp4", "mp4_config.record_cycle", 59, BAD),
    case("mp4", "mp4_config.record_cycle", 10801, BAD),
    case("mp4", "mp4_config.record_cycle", 0, BAD),
    case("mp4", "mp4_config.record_cycle", "sixty", BAD),
    case("mp4", "mp4_config.record_cycle", DROP, MISSING),
    case("mp4", "mp4_config.record_cycle", 60, OK),
    case("mp4", "mp4_config.record_cycle", 10800, OK),
    # Table 4-233 HLS record_cycle 0 or [60, 43200]
    case("hls", "hls_config.record_cycle", 59, BAD),
    case("hls", "hls_config.record_cycle", 1, BAD),
    case("hls", "hls_config.record_cycle", -1, BAD),
    case("hls", "hls_config.record_cycle", 43201, BAD),
    case("hls", "hls_config.record_cycle", DROP, MISSING),
    case("hls", "hls_config.record_cycle", 0, OK),
    case("hls", "hls_config.record_cycle", 60, OK),
    case("hls", "hls_config.record_cycle", 43200, OK),
    # record_slice_duration [2, 60]
    case("hls", "hls_config.record_slice_duration", 1, BAD),
    case("hls", "hls_config.record_slice_duration", 61, BAD),
    case("hls", "hls_config.record_slice_duration", 2, OK),
    case("hls", "hls_config.record_slice_duration", 60, OK),
    # merge threshold: MP4 [0, 300], HLS [-1, 300]
    case("mp4", "mp4_config.record_max_duration_to_merge_file", -1, BAD),
    case("mp4", "mp4_config.record_max_duration_to_merge_file", 301, BAD),
    case("mp4", "mp4_config.record_max_duration_to_merge_file", 0, OK),
    case("mp4", "mp4_config.record_max_duration_to_merge_file", 300, OK),
    case("hls", "hls_config.record_max_duration_to_merge_file", -2, BAD),
    case("hls", "hls_config.record_max_duration_to_merge_file", 301, BAD),
    case("hls", "hls_config.record_max_duration_to_merge_file", -1, OK),
    case("hls", "hls_config.record_max_duration_to_merge_file", 300, OK),
    # record_formats and their config objects
    case("mp4", "record_formats", DROP, MISSING),
    case("mp4", "record_formats", [], BAD),
    case("mp4", "record_formats", ["FLV"], BAD),
    case("mp4", "record_formats", ["mp4"], BAD),
    case("mp4", "record_formats", "MP4", BAD),
    case("mp4", "record_formats", ["HLS"], COMBO),
    case("hls", "record_formats", ["MP4"], COMBO),
    case("hls", "record_formats", ["HLS", "MP4"], COMBO),
    case("mp4", "record_formats", ["MP4", "MP4"], COMBO),
    case("mp4", "mp4_config", DROP, COMBO),
    case("hls", "hls_config", DROP, COMBO),
    case("mp4", "mp4_config", "60", BAD),
    # record_prefix: stays inside the bucket, uses only known variables
    case("mp4", "mp4_config.record_prefix", "../x", BAD),
    case("mp4", "mp4_config.record_prefix", "/abs", BAD),
    case("mp4", "mp4_config.record_prefix", "a/../../b", BAD),
    case("mp4", "mp4_config.record_prefix", "a/./b", BAD),
    case("mp4", "mp4_config.record_prefix", "a\\b", BAD),
    case("mp4", "mp4_config.record_prefix", "dir/", BAD),
    case("mp4", "mp4_config.record_prefix", "", BAD),
    case("mp4", "mp4_config.record_prefix", "{unknown}/x", BAD),
    case("mp4", "mp4_config.record_prefix", "{app_id}/{streams}", BAD),
    case("mp4", "mp4_config.record_prefix", "{app_id/x", BAD),
    case("hls", "hls_config.record_prefix", "../x", BAD),
    case("hls", "hls_config.record_prefix", "{nope}", BAD),
    case("mp4", "mp4_config.record_prefix", "{app_id}/{record_format}/{stream}_{file_start_time}", OK),
    case("hls", "hls_config.record_prefix", "rec/{stream}", OK),
    case("mp4", "mp4_config.record_prefix", "plain-name", OK),
    # Table 4-232 obs_addr; OBS bucket names: 3-63 of [a-z0-9.-], starting and ending with a letter or digit
    case("mp4", "obs_addr", DROP, MISSING),
    case("mp4", "obs_addr", "s3://ember-rec", BAD),
    case("mp4", "obs_addr.bucket", DROP, MISSING),
    case("mp4", "obs_addr.bucket", "", BAD),
    case("mp4", "obs_addr.bucket", "ab", BAD),
    case("mp4", "obs_addr.bucket", "a" * 64, BAD),
    case("mp4", "obs_addr.bucket", "Bad_Bucket", BAD),
    case("mp4", "obs_addr.bucket", "UPPER", BAD),
    case("mp4", "obs_addr.bucket", "-bucket", BAD),
    case("mp4", "obs_addr.bucket", "bucket-", BAD),
    case("mp4", "obs_addr.bucket", "my bucket", BAD),
    case("mp4", "obs_addr.bucket", "my/bucket", BAD),
    case("mp4", "obs_addr.bucket", "abc", OK),
    case("mp4", "obs_addr.bucket", "a" * 63, OK),
    case("mp4", "obs_addr.bucket", "my.bucket-1", OK),
    case("mp4", "obs_addr.location", DROP, MISSING),
    case("mp4", "obs_addr.location", "", BAD),
    case("mp4", "obs_addr.location", "cn north", BAD),
    case("mp4", "obs_addr.project_id", DROP, MISSING),
    case("mp4", "obs_addr.project_id", "", BAD),
    case("mp4", "obs_addr.object", "../x", BAD),
    case("mp4", "obs_addr.object", "/abs", BAD),
    case("mp4", "obs_addr.object", "record/2024", OK),
]


@pytest.mark.parametrize("method", ["POST", "PUT"])
@pytest.mark.parametrize(("base", "path", "value", "code"), RULE_CASES)
def test_record_rule_body(ctx: Ctx, method: str, base: str, path: str, value: Any, code: str | None) -> None:
    body = patched(rule_bases(ctx.project_id)[base], path, value)
    url = f"/v2/apps/{ctx.app_id}/record-rules" + (f"/{ctx.rule_id}" if method == "PUT" else "")
    rule = check(ctx.http.request(method, url, json=body), code, 201 if method == "POST" else 200, path, value)
    if rule:
        assert rule["rule_id"] == ctx.rule_id  # same location: the shared rule was replaced, not added to


# --- list parameters -------------------------------------------------------------------------------------

LIST_CASES = [
    ("limit", 0, BAD),
    ("limit", 101, BAD),
    ("limit", -1, BAD),
    ("limit", "abc", BAD),
    ("limit", "", BAD),
    ("offset", -1, BAD),
    ("offset", "x", BAD),
    ("limit", 1, OK),
    ("limit", 100, OK),
    ("offset", 0, OK),
    ("offset", 1000, OK),
]


@pytest.mark.parametrize(("param", "value", "code"), LIST_CASES)
@pytest.mark.parametrize("what", ["apps", "rules"])
def test_list_paging(ctx: Ctx, what: str, param: str, value: Any, code: str | None) -> None:
    url = "/v2/apps" if what == "apps" else f"/v2/apps/{ctx.app_id}/record-rules"
    r = ctx.http.get(url, params={param: value})
    if code:
        assert_error(r, 400, code)
        return
    listed = assert_ok(r)
    items = listed["apps" if what == "apps" else "rules"]
    if param == "limit":
        assert 1 <= len(items) <= value
    elif value == 0:
        assert len(items) >= 1
    else:
        assert items == []


@pytest.mark.parametrize(
    ("value", "code"),
    [
        ("ENABLED", BAD),
        ("activation", BAD),
        ("DELETED", BAD),
        ("", BAD),
        ("ACTIVATION", OK),
        ("DEACTIVATION", OK),
        ("ARREARS", OK),
    ],
)
def test_list_apps_state(ctx: Ctx, value: str, code: str | None) -> None:
    r = ctx.http.get("/v2/apps", params={"state": value})
    if code:
        assert_error(r, 400, code)
        return
    listed = assert_ok(r)
    assert all(a["state"]["state"] == value for a in listed["apps"])
    # The module's tenant has active apps and no disabled ones.
    assert (listed["count"] >= 1) if value == "ACTIVATION" else (listed["count"] == 0)


# --- 4.4.1 single-stream jobs ----------------------------------------------------------------------------

JOB_CASES = [
    # Table 4-26 max_idle_time [5, 43200]
    ("max_idle_time", 4, BAD),
    ("max_idle_time", 43201, BAD),
    ("max_idle_time", 0, BAD),
    ("max_idle_time", "soon", BAD),
    ("max_idle_time", 5, OK),
    ("max_idle_time", 43200, OK),
    ("video_type", "CAMERA", BAD),
    ("video_type", "camerastream", BAD),
    ("video_type", "SCREENSTREAM", OK),
    ("select_stream_type", "UHD", BAD),
    ("select_stream_type", "ld", BAD),
    ("select_stream_type", "LD", OK),
    ("select_stream_type", "HD", OK),
    ("is_record_audio", "maybe", BAD),
    ("is_record_audio", False, OK),
    ("room_id", DROP, MISSING),
    ("room_id", "", BAD),
    ("room_id", "room 1", BAD),
    ("room_id", "../etc", BAD),
    ("room_id", "r" * 65, BAD),
    ("user_id", DROP, MISSING),
    ("user_id", "", BAD),
    ("user_id", "bad/user", BAD),
    ("user_id", "user-1@example.com", OK),
    ("record_param", DROP, MISSING),  # no output at all
    ("record_param", {}, MISSING),
    ("record_param.record_rule_id", "", BAD),
    ("publish_param", {}, MISSING),
    ("publish_param", {"rtmp_urls": []}, BAD),
    ("publish_param", {"rtmp_urls": ["http://example.com/live/s"]}, BAD),
    ("publish_param", {"rtmp_urls": ["rtmp://"]}, BAD),
    ("publish_param", {"rtmp_urls": ["rtmp://live.example.com/app/stream"]}, OK),
]


@pytest.mark.parametrize(("path", "value", "code"), JOB_CASES, ids=[f"{p}={v!r}"[:50] for p, v, _ in JOB_CASES])
def test_individual_job_body(ctx: Ctx, path: str, value: Any, code: str | None) -> None:
    base = {
        "room_id": unique("room-"),
        "user_id": "user1",
        "max_idle_time": 43200,
        "record_param": {"record_rule_id": ctx.rule_id},
    }
    url = f"/v2/apps/{ctx.app_id}/individual-stream-jobs"
    job = check(ctx.http.post(url, json=patched(base, path, value)), code, 201, path, value)
    if job:
        assert job["state"] == "INIT"
        assert ctx.http.delete(f"{url}/{job['job_id']}").status_code == 204


# --- 4.8.1 mixed-stream jobs -----------------------------------------------------------------------------

# Table 4-175: the twelve templates; spec/README.md: written with '*' (tables) or 'x' (examples)
TEMPLATES = [
    "1920*1080_30_4620",
    "1920*1080_30_3150",
    "1920*1080_15_3460",
    "1920*1080_15_2080",
    "1280*720_30_3420",
    "1280*720_30_1710",
    "1280*720_15_2260",
    "1280*720_15_1130",
    "640*480_30_1000",
    "640*480_15_500",
    "480*360_30_490",
    "480*360_15_320",
]


def pane(**fields: Any) -> dict[str, Any]:
    return {"id": 1, "user_id": "user1", "x": 0, "y": 0, "width": 0.5, "height": 0.5, **fields}


MIX_BASES: dict[str, dict[str, Any]] = {
    "grid": {"encode_template": "1280x720_15_2260", "layout_template": "nine_grids_view"},
    "custom": {"encode_template": "1280x720_15_2260", "layout_template": "custom", "layout_panes": [pane()]},
    "share": {
        "encode_template": "1280*720_15_2260",
        "layout_template": "screen_share_left",
        "layout_panes": [{"id": 1, "user_id": "", "video_type": "SCREENSTREAM", "filling_policy": "SHARED_SCREEN"}],
    },
    "audio": {"encode_template": "audio_only"},
}

P = "mix_param.layout_panes.0"
IMAGE_FIELDS = ["background_image", "default_user_background_image", "screen_background_image"]
BAD_IMAGES = [
    "http://bucket/x.png",
    "s3://bucket",
    "s3://bucket/",
    "s3://Bad_Bucket/x",
    "s3://ab/x",
    "s3://bucket/../x",
    "s3:/bucket/x",
    "",
]

MIX_CASES = [
    *[case("grid", "mix_param.encode_template", t, OK) for t in TEMPLATES],
    *[case("grid", "mix_param.encode_template", t.replace("*", "x"), OK) for t in TEMPLATES],
    case("audio", "mix_param.encode_template", "audio_only", OK),
    case("grid", "mix_param.encode_template", "1280x720_15_9999", BAD),
    case("grid", "mix_param.encode_template", "1280X720_15_2260", BAD),
    case("grid", "mix_param.encode_template", "1920x1080_60_4620", BAD),
    case("grid", "mix_param.encode_template", "1280*720", BAD),
    case("grid", "mix_param.encode_template", "1280x720_15_2260 ", BAD),
    case("grid", "mix_param.encode_template", "", BAD),
    case("audio", "mix_param.encode_template", "AUDIO_ONLY", BAD),
    case("grid", "mix_param.encode_template", DROP, MISSING),
    # max_idle_time [5, 43200]
    case("grid", "mix_param.max_idle_time", 4, BAD),
    case("grid", "mix_param.max_idle_time", 43201, BAD),
    case("grid", "mix_param.max_idle_time", 5, OK),
    case("grid", "mix_param.max_idle_time", 43200, OK),
    # layout_template and its combinations with encode_template and panes
    case("grid", "mix_param.layout_template", "grid", BAD),
    case("grid", "mix_param.layout_template", "NINE_GRIDS_VIEW", BAD),
    case("grid", "mix_param.layout_template", DROP, COMBO),
    case("audio", "mix_param.layout_template", "nine_grids_view", COMBO),
    case("audio", "mix_param.layout_panes", [pane()], COMBO),
    case("custom", "mix_param.layout_panes", DROP, COMBO),
    case("custom", "mix_param.layout_panes", [], COMBO),
    case("custom", f"{P}.x", DROP, COMBO),
    case("custom", f"{P}.y", DROP, COMBO),
    case("custom", f"{P}.width", DROP, COMBO),
    case("custom", f"{P}.height", DROP, COMBO),
    case("custom", "mix_param.layout_panes", [pane(), pane()], COMBO),  # two panes with id 1
    case("share", f"{P}.filling_policy", DROP, COMBO),
    case("share", f"{P}.filling_policy", "FIXED_USER", COMBO),  # FIXED_USER needs a user_id
    case("share", f"{P}.filling_policy", "ANY", BAD),
    case("share", f"{P}.filling_policy", "shared_screen", BAD),
    case("share", "mix_param.layout_panes", [{"id": 1, "user_id": "u1", "filling_policy": "FIXED_USER"}], OK),
    case("share", f"{P}.video_type", "SCREEN", BAD),
    # panes: coordinates and sizes in [0, 1], zorder [0, 25], id from 1, at most 25 panes
    case("custom", f"{P}.x", -0.1, BAD),
    case("custom", f"{P}.x", 1.1, BAD),
    case("custom", f"{P}.y", -0.01, BAD),
    case("custom", f"{P}.y", 1.01, BAD),
    case("custom", f"{P}.width", 1.5, BAD),
    case("custom", f"{P}.width", -0.5, BAD),
    case("custom", f"{P}.height", -1, BAD),
    case("custom", f"{P}.height", 2, BAD),
    case("custom", f"{P}.x", "left", BAD),
    case("custom", f"{P}.x", 0.0, OK),
    case("custom", f"{P}.x", 1.0, OK),
    case("custom", f"{P}.width", 1.0, OK),
    case("custom", f"{P}.height", 0.0, OK),
    case("custom", f"{P}.zorder", -1, BAD),
    case("custom", f"{P}.zorder", 26, BAD),
    case("custom", f"{P}.zorder", 0, OK),
    case("custom", f"{P}.zorder", 25, OK),
    case("custom", f"{P}.id", 0, BAD),
    case("custom", f"{P}.crop_mode", "STRETCH", BAD),
    case("custom", f"{P}.crop_mode", "KEEP_RATIO_PADDING", OK),
    case("custom", f"{P}.crop_mode", "KEEP_RATIO_CROP", OK),
    case("custom", f"{P}.video_type", "camerastream", BAD),
    case("custom", f"{P}.user_id", "bad user", BAD),
    case("custom", "mix_param.layout_panes", [pane(id=i, user_id=f"u{i}") for i in range(1, 27)], BAD),
    case("custom", "mix_param.layout_panes", [pane(id=i, user_id=f"u{i}") for i in range(1, 26)], OK),
    # images: s3://bucket/object
    *[case("grid", f"mix_param.{f}", uri, BAD) for f in IMAGE_FIELDS for uri in BAD_IMAGES],
    *[case("grid", f"mix_param.{f}", "s3://ember-img/bg/room.png", OK) for f in IMAGE_FIELDS],
    case("grid", "mix_param.user_background_images", [{"user_id": "u1", "image_uri": "http://x/y.png"}], BAD),
    case("grid", "mix_param.user_background_images", [{"user_id": "u1", "image_uri": "s3://bucket"}], BAD),
    case("grid", "mix_param.user_background_images", [{"user_id": "u1"}], MISSING),
    case("grid", "mix_param.user_background_images", [{"image_uri": "s3://ember-img/u.png"}], MISSING),
    case("grid", "mix_param.user_background_images", [{"user_id": "u1", "image_uri": "s3://ember-img/u.png"}], OK),
    # mandatory parts
    case("grid", "mix_param", DROP, MISSING),
    case("grid", "mix_param.room_id", DROP, MISSING),
    case("grid", "mix_param.room_id", "room 1", BAD),
    case("grid", "record_param", DROP, MISSING),
    case("grid", "record_param.record_rule_id", DROP, MISSING),
]


@pytest.mark.parametrize(("base", "path", "value", "code"), MIX_CASES)
def test_mix_job_body(ctx: Ctx, base: str, path: str, value: Any, code: str | None) -> None:
    mix = {"room_id": unique("room-"), "max_idle_time": 43200, **copy.deepcopy(MIX_BASES[base])}
    body = patched({"mix_param": mix, "record_param": {"record_rule_id": ctx.rule_id}}, path, value)
    url = f"/v2/apps/{ctx.app_id}/mix-stream-jobs"
    job = check(ctx.http.post(url, json=body), code, 201, path, value)
    if job:
        # Templates are echoed back as sent ('*' or 'x'), by the start and by the query.
        shown = assert_ok(ctx.http.get(f"{url}/{job['job_id']}"))
        assert shown["mix_param"]["encode_template"] == lookup(body, "mix_param.encode_template")
        assert ctx.http.delete(f"{url}/{job['job_id']}").status_code == 204


# --- 4.3.1 record callback -------------------------------------------------------------------------------

CALLBACK_CASES = [
    ("url", DROP, MISSING),
    ("url", "", BAD),
    ("url", "ftp://example.com/cb", BAD),
    ("url", "http://", BAD),
    ("url", "https:///path", BAD),
    ("url", "http://exa mple.com/cb", BAD),
    ("url", "http://example.com/a b", BAD),
    ("url", " http://example.com/cb", BAD),
    ("url", "example.com/cb", BAD),
    ("url", "javascript:alert(1)", BAD),
    ("url", "http://example.com:99999/cb", BAD),
    ("url", 42, BAD),
    ("url", "http://example.com/cb", OK),
    ("url", "https://example.com:8443/cb?x=1", OK),
    ("url", "http://127.0.0.1:9000/", OK),
    ("auth_key", "k" * 257, BAD),
    ("auth_key", "k" * 256, OK),
    ("notify_event_subscription", ["BOGUS"], BAD),
    ("notify_event_subscription", "RECORD_FILE_COMPLETE", BAD),
]


@pytest.mark.parametrize(
    ("path", "value", "code"), CALLBACK_CASES, ids=[f"{p}={v!r}"[:50] for p, v, _ in CALLBACK_CASES]
)
def test_record_callback_body(ctx: Ctx, path: str, value: Any, code: str | None) -> None:
    body = patched({"url": "http://example.com/cb"}, path, value)
    r = ctx.http.put(f"/v2/apps/{ctx.app_id}/record-callback", json=body)
    check(r, code, 200, f"record_callback.{path}", value)


# --- 4.6.1 auto-record mode ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({}, MISSING),
        ({"mode": "ON"}, BAD),
        ({"mode": "auto_record_off"}, BAD),
        ({"mode": ""}, BAD),
        ({"mode": "AUTO_MIX_RECORD"}, BAD),
        ({"mode": "AUTO_INDIVIDUAL_RECORD"}, MISSING),
        ({"mode": "AUTO_INDIVIDUAL_RECORD", "record_rule_id": None}, MISSING),
        ({"mode": "AUTO_INDIVIDUAL_RECORD", "record_rule_id": "r" * 65}, BAD),
        ({"mode": "AUTO_RECORD_OFF"}, OK),
    ],
)
def test_auto_record_body(ctx: Ctx, body: dict[str, Any], code: str | None) -> None:
    r = ctx.http.put(f"/v2/apps/{ctx.app_id}/auto-record-mode", json=body)
    check(r, code, 200, "auto_record_mode.mode", body.get("mode", DROP))


# --- 4.7 rooms ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({}, MISSING),
        ({"user_ids": []}, BAD),
        ({"user_ids": "u1"}, BAD),
        ({"user_ids": [""]}, BAD),
        ({"user_ids": ["bad user"]}, BAD),
        ({"user_ids": [None]}, BAD),
        ({"user_ids": ["u1", "user-2"]}, OK),
    ],
)
def test_batch_remove_users_body(ctx: Ctx, body: dict[str, Any], code: str | None) -> None:
    r = ctx.http.post(f"/v2/apps/{ctx.app_id}/rooms/room001/batch-remove-users", json=body)
    if code:
        assert_error(r, 400, code)
    else:
        assert r.status_code == 202, r.text


@pytest.mark.parametrize("action", ["batch-remove-users", "dismiss"])
def test_room_id_in_path(ctx: Ctx, action: str) -> None:
    r = ctx.http.post(f"/v2/apps/{ctx.app_id}/rooms/bad%20room/{action}", json={"user_ids": ["u1"]})
    assert_error(r, 400, BAD)


# --- a rejected request stores nothing ------------------------------------------------------------------


def test_rejected_apps_are_not_stored(ctx: Ctx) -> None:
    before = assert_ok(ctx.http.get("/v2/apps"))
    for body in ({"app_name": ""}, {"app_name": "x" * 129}, {}, {"app_name": "bad\x00"}):
        assert ctx.http.post("/v2/apps", json=body).status_code == 400
    assert assert_ok(ctx.http.get("/v2/apps")) == before


def test_rejected_rules_are_not_stored(ctx: Ctx) -> None:
    app_id = create_app(ctx.http)
    url = f"/v2/apps/{app_id}/record-rules"
    rejected = [
        mp4_rule(record_cycle=59, project_id=ctx.project_id),
        mp4_rule(bucket="Bad_Bucket", project_id=ctx.project_id),
        mp4_rule(record_prefix="../x", project_id=ctx.project_id),
        {**mp4_rule(project_id=ctx.project_id), "record_formats": ["HLS"]},
        hls_rule(record_slice_duration=61, project_id=ctx.project_id),
        mp4_rule(project_id="0" * 32),  # another project
    ]
    for body in rejected:
        assert ctx.http.post(url, json=body).status_code == 400
    assert assert_ok(ctx.http.get(url))["rules"] == []

    # A rejected replace (same location) or update leaves the stored rule as it was.
    rule = create_rule(ctx.http, app_id, mp4_rule("cn-north-4", record_cycle=600, project_id=ctx.project_id))
    for body in rejected:
        assert ctx.http.post(url, json=body).status_code == 400
        assert ctx.http.put(f"{url}/{rule['rule_id']}", json=body).status_code == 400
    assert assert_ok(ctx.http.get(url))["rules"] == [rule]


def test_rejected_jobs_are_not_stored(ctx: Ctx) -> None:
    app_id = create_app(ctx.http)
    rule_id = create_rule(ctx.http, app_id)["rule_id"]
    url = f"/v2/apps/{app_id}/individual-stream-jobs"
    job = {"room_id": "room-a", "user_id": "u1", "max_idle_time": 4, "record_param": {"record_rule_id": rule_id}}
    assert_error(ctx.http.post(url, json=job), 400, BAD)
    mix = {
        "mix_param": {"room_id": "room-a", "encode_template": "1280x720_15_2260"},
        "record_param": {"record_rule_id": rule_id},
    }
    assert_error(ctx.http.post(f"/v2/apps/{app_id}/mix-stream-jobs", json=mix), 400, COMBO)
    # No job holds the rule (it can be deleted) ...
    assert ctx.http.delete(f"/v2/apps/{app_id}/record-rules/{rule_id}").status_code == 204
    # ... and none holds the room and user (a valid start is not refused as a duplicate).
    rule_id = create_rule(ctx.http, app_id)["rule_id"]
    job = {**job, "max_idle_time": 43200, "record_param": {"record_rule_id": rule_id}}
    started = assert_ok(ctx.http.post(url, json=job), 201)
    assert ctx.http.delete(f"{url}/{started['job_id']}").status_code == 204


def test_rejected_callback_and_auto_record_are_not_stored(ctx: Ctx) -> None:
    app_id = create_app(ctx.http)
    cb_url, auto_url = f"/v2/apps/{app_id}/record-callback", f"/v2/apps/{app_id}/auto-record-mode"
    callback = assert_ok(ctx.http.put(cb_url, json={"url": "https://example.com/cb", "auth_key": "k"}))
    for body in ({"url": "ftp://example.com/cb"}, {"url": "https://example.com/cb", "auth_key": "k" * 257}, {}):
        assert ctx.http.put(cb_url, json=body).status_code == 400
    assert assert_ok(ctx.http.get(cb_url)) == callback

    auto = assert_ok(ctx.http.get(auto_url))
    for body in ({"mode": "ON"}, {"mode": "AUTO_INDIVIDUAL_RECORD"}, {}):
        assert ctx.http.put(auto_url, json=body).status_code == 400
    assert assert_ok(ctx.http.get(auto_url)) == auto
