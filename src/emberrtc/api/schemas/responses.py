"""Response bodies, for the OpenAPI description (``/openapi.json``, ``/docs``).

Handlers return the domain's dictionaries directly (no second validation pass per response); these models
document the same shapes, table by table, and a test checks real responses against them.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict


class Doc(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ErrorBody(Doc):
    """Every error: spec 6.2 code and message."""

    error_code: str
    error_msg: str


class AppState(Doc):
    state: str
    update_time: str | None = None


class AppAuth(Doc):
    enable: bool
    expire: int
    app_key: str
    update_time: str | None = None


class AppCallbackUrl(Doc):
    url: str
    auth_key: str | None = None
    notify_event_subscription: list[str] | None = None
    update_time: str | None = None


class AppCallbacks(Doc):
    push_callback: AppCallbackUrl | None = None
    record_callback: AppCallbackUrl | None = None


class AppAutoRecordMode(Doc):
    mode: str
    record_rule_id: str | None = None
    update_time: str | None = None


class App(Doc):
    """Table 4-80."""

    app_name: str
    app_id: str
    state: AppState
    scope: str
    tenant_name: str
    domain: str
    create_time: str
    authentication: AppAuth
    callbacks: AppCallbacks
    auto_record_mode: AppAutoRecordMode


class CreateAppResponse(Doc):
    app_id: str


class ListAppsResponse(Doc):
    count: int
    apps: list[App]


class AppStateResponse(Doc):
    app_id: str
    state: AppState


class RecordCallbackResponse(Doc):
    app_id: str
    record_callback: AppCallbackUrl | None = None


class AutoRecordResponse(Doc):
    app_id: str
    auto_record_mode: AppAutoRecordMode


class RecordRule(Doc):
    """Table 4-251."""

    rule_id: str
    app_id: str
    obs_addr: dict[str, Any]
    record_formats: list[str]
    hls_config: dict[str, Any] | None = None
    mp4_config: dict[str, Any] | None = None
    create_time: str
    update_time: str


class ListRulesResponse(Doc):
    rules: list[RecordRule]


class JobState(Doc):
    create_time: str
    update_time: str
    state: str
    stop_reason: str | None = None
    description: str | None = None
    start_time: str | None = None
    stop_time: str | None = None


class IndividualJob(JobState):
    """Table 4-30."""

    job_id: str
    stream_name: str
    app_id: str
    room_id: str
    user_id: str
    is_record_audio: bool
    video_type: str
    select_stream_type: str
    max_idle_time: int
    publish_param: dict[str, Any] | None = None
    record_param: dict[str, Any] | None = None


class MixJob(JobState):
    """Table 4-181."""

    job_id: str
    stream_name: str
    app_id: str
    room_id: str
    mix_param: dict[str, Any]
    publish_param: dict[str, Any] | None = None
    record_param: dict[str, Any] | None = None


class TokenDomain(Doc):
    id: str
    name: str


class TokenUser(Doc):
    id: str
    name: str
    domain: TokenDomain


class TokenRole(Doc):
    id: str
    name: str


class IssuedToken(Doc):
    """spec 3.1 response: the token itself is in the ``X-Subject-Token`` header."""

    expires_at: str
    issued_at: str
    methods: list[str]
    user: TokenUser
    project: TokenUser
    catalog: list[Any]
    roles: list[TokenRole]


class TokenResponse(Doc):
    token: IssuedToken


def doc(model: type[BaseModel] | None, status: int) -> dict[int | str, dict[str, Any]]:
    """``responses=`` for a route: its success body (or none) and the catalogue's error body."""
    ok: dict[str, Any] = {"description": "success"}
    if model is not None:
        ok["model"] = model
    return {status: ok, **ERRORS}


ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorBody, "description": text}
    for status, text in (
        (400, "bad request (RTC.000010xx)"),
        (401, "no or bad credentials"),
        (404, "not found"),
        (429, "rate limited (Retry-After)"),
        (500, "server fault"),
    )
}

#: What any request may get from the edge (api/edge.py) or the router, whatever its route: the OpenAPI
#: document lists them on every operation.
EDGE_ERRORS: dict[int, str] = {
    400: "bad request (RTC.000010xx)",
    401: "no or bad credentials",
    404: "not found",
    405: "method not allowed (Allow lists the path's methods)",
    408: "headers or body too slow (RTC.00001031)",
    413: "body over the limit (RTC.00001032)",
    429: "rate limited (Retry-After)",
    431: "headers over the limit (RTC.00001033)",
    500: "server fault",
    503: "too many connections or requests at once",
}
