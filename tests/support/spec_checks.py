"""Checks and request bodies shared by the API acceptance tests (apps, rules, callbacks, validation)."""

from __future__ import annotations

import re
import uuid
from typing import Any

import httpx

# spec: every time is UTC "YYYY-MM-DDThh:mm:ss.fffZ", e.g. 2006-01-02T15:04:05.075Z
SPEC_TIME_RE = re.compile(r"^\d{4}-(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01])T([01]\d|2[0-3]):[0-5]\d:[0-5]\d\.\d{3}Z$")

# Tables 4-233/4-234: the default record_prefix
DEFAULT_PREFIX = "{app_id}/{record_format}/{stream}_{file_start_time}/{stream}_{file_start_time}"


def assert_spec_time(value: Any) -> None:
    assert isinstance(value, str) and SPEC_TIME_RE.fullmatch(value), f"not a spec UTC time: {value!r}"


def assert_request_id(r: httpx.Response) -> str:
    """Every response, success or error, carries ``X-request-Id`` (spec: all operations)."""
    request_id = r.headers.get("X-request-Id")
    assert request_id, f"no X-request-Id on {r.request.method} {r.request.url} -> {r.status_code}"
    return request_id


def assert_error(r: httpx.Response, status: int, code: str) -> dict[str, Any]:
    """A catalogue error (spec 6.2): the status, ``{"error_code", "error_msg"}`` and ``X-request-Id``."""
    assert r.status_code == status, f"expected {status} {code}, got {r.status_code}: {r.text}"
    body = r.json()
    assert body["error_code"] == code, body
    assert isinstance(body["error_msg"], str) and body["error_msg"], body
    assert "Traceback" not in body["error_msg"]
    assert_request_id(r)
    return body


def assert_ok(r: httpx.Response, status: int = 200) -> Any:
    assert r.status_code == status, f"expected {status}, got {r.status_code}: {r.text}"
    assert_request_id(r)
    return r.json() if r.content else None


def unique(prefix: str = "x") -> str:
    return f"{prefix}{uuid.uuid4().hex[:12]}"


def create_app(http: httpx.Client, name: str | None = None) -> str:
    return str(assert_ok(http.post("/v2/apps", json={"app_name": name or unique("app-")}), 201)["app_id"])


def own_project(http: httpx.Client) -> str:
    """The caller's project (``GET /v3/projects``): the only one a rule's ``obs_addr.project_id`` may name."""
    (project,) = assert_ok(http.get("/v3/projects"))["projects"]
    return str(project["id"])


def mp4_rule(location: str = "cn-north-4", bucket: str = "ember-rec", *, project_id: str, **mp4: Any) -> dict[str, Any]:
    """A minimal valid MP4 rule body (Table 4-231) for the project ``project_id``."""
    return {
        "obs_addr": {"location": location, "project_id": project_id, "bucket": bucket},
        "record_formats": ["MP4"],
        "mp4_config": {"record_cycle": 60, **mp4},
    }


def hls_rule(location: str = "cn-north-4", bucket: str = "ember-rec", *, project_id: str, **hls: Any) -> dict[str, Any]:
    """A minimal valid HLS rule body (Table 4-231) for the project ``project_id``."""
    return {
        "obs_addr": {"location": location, "project_id": project_id, "bucket": bucket},
        "record_formats": ["HLS"],
        "hls_config": {"record_cycle": 60, **hls},
    }


def create_rule(http: httpx.Client, app_id: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
    body = body or mp4_rule(project_id=own_project(http))
    return dict(assert_ok(http.post(f"/v2/apps/{app_id}/record-rules", json=body), 201))


def individual_job(rule_id: str, **extra: Any) -> dict[str, Any]:
    """A single-stream job body (Table 4-26) that waits for media for 12 h: no test clock move stops it."""
    return {
        "room_id": unique("room-"),
        "user_id": "user1",
        "max_idle_time": 43200,
        "record_param": {"record_rule_id": rule_id},
        **extra,
    }


def start_individual_job(http: httpx.Client, app_id: str, rule_id: str) -> str:
    r = http.post(f"/v2/apps/{app_id}/individual-stream-jobs", json=individual_job(rule_id))
    return str(assert_ok(r, 201)["job_id"])


def stop_individual_job(http: httpx.Client, app_id: str, job_id: str) -> None:
    r = http.delete(f"/v2/apps/{app_id}/individual-stream-jobs/{job_id}")
    assert r.status_code == 204, r.text
