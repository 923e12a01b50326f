"""The console's pages and actions, under ``/console``.

Thin handlers: read the form, check the session and its CSRF token, one call to the same domain service
the v2 API calls (with the API's request models checking the input, so the rules and error messages are
the API's), render. A change is a POST answered with a redirect (303) to the page it was made on, or with
that page again showing the error next to the field it is about. Every read and change is scoped to the
signed-in tenant by the domain services (another tenant's app is ``RTC.00001015``, as on the API).
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlencode

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, Response, StreamingResponse

from emberrtc.api.auth import services_of
from emberrtc.api.routes.iam import limited_sign_in
from emberrtc.api.schemas.apps import AutoRecordBody, CreateAppBody, RecordCallbackBody, RemoveUsersBody
from emberrtc.api.schemas.common import RoomId, SpecModel, UserId
from emberrtc.api.schemas.jobs import ENCODE_TEMPLATES, MixJobBody
from emberrtc.api.schemas.record_rules import RecordRuleBody
from emberrtc.bootstrap import Services
from emberrtc.callbacks.test_event import TestOutcome, send_test_event
from emberrtc.console import pages
from emberrtc.console.charts import CategoryChart, Chart, Point
from emberrtc.console.forms import Form, FormError, read_form, validate
from emberrtc.console.session import (
    PRE_SESSION_COOKIE,
    SESSION_COOKIE,
    ConsoleSession,
    check_csrf,
    check_same_origin,
    clear_session_cookie,
    csrf_for,
    current_session,
    pre_session_csrf,
    set_pre_session_cookie,
    set_session_cookie,
)
from emberrtc.domain.app import ACTIVATION, ALL_CALLBACK_EVENTS, AUTO_RECORD_OFF, DEACTIVATION
from emberrtc.domain.errors import (
    EmberError,
    InternalError,
    InvalidParameterValue,
    MissingParameter,
    NoPermission,
    RateLimited,
    Unauthenticated,
)
from emberrtc.domain.job import INDIVIDUAL, MIX, STOPPED
from emberrtc.domain.live_room import live_rooms, room_nodes
from emberrtc.domain.mix_layout import AUDIO_ONLY, parse_encode_template
from emberrtc.domain.recording_file import STORED, RecordingFile, list_files
from emberrtc.domain.room_session import join_signature
from emberrtc.recording.mix_preview import PREVIEW_WIDTH
from emberrtc.stats.queries import AbnormalQuery, Days, SeriesQuery, UsageQuery, Window, spec_second, today
from emberrtc.stats.queries import Page as QueryPage

log = logging.getLogger(__name__)
router = APIRouter(prefix="/console", include_in_schema=False)

#: How often the live rooms page's event stream looks at the rooms (the page shows changes within this).
LIVE_INTERVAL = 1.0
#: How long one event stream lasts; the browser's EventSource reconnects by itself.
LIVE_STREAM_SECONDS = 300.0
#: How long a join link made on the "Try it" page is valid.
TRY_LINK_SECONDS = 3600
#: The mixed job form's choices: the reference's encode templates (Table 4-175), biggest first, and the
#: layouts (``custom`` with the panes editor's rows as its ``layout_panes``, Table 4-176).
ENCODE_TEMPLATE_CHOICES = [
    *sorted(
        (t.replace("*", "x") for t in ENCODE_TEMPLATES), key=lambda t: [-int(n) for n in t.replace("x", "_").split("_")]
    ),
    AUDIO_ONLY,
]
LAYOUT_CHOICES = [
    ("nine_grids_view", "Grid: everyone in equal cells"),
    ("screen_share_left", "Screen share left, cameras on the right"),
    ("screen_share_right", "Screen share right, cameras on the left"),
    ("custom", "Custom: the panes below"),
]
#: A pane row of the custom layout editor: its fields (Table 4-176), named ``pane_<field>`` in the form,
#: one value per row in order. A row whose typed fields are all blank is no pane (a spare row).
PANE_FIELDS = ("user_id", "video_type", "x", "y", "width", "height", "zorder", "crop_mode")
_PANE_TYPED = ("user_id", "x", "y", "width", "height", "zorder")
VIDEO_TYPES = ("CAMERASTREAM", "SCREENSTREAM")
CROP_MODES = ("KEEP_RATIO_CROP", "KEEP_RATIO_PADDING")
RECORD_RULE_FIELDS = {
    "mp4_config": ("record_cycle", "record_prefix", "record_max_duration_to_merge_file"),
    "hls_config": ("record_cycle", "record_prefix", "record_slice_duration", "record_max_duration_to_merge_file"),
}

Page = Callable[[Request, ConsoleSession], Awaitable[Response]]
Action = Callable[[Request, ConsoleSession, Form], Awaitable[Response]]


def _page(path: str) -> Callable[[Page], Page]:
    """A page for signed-in tenants: without a session, back to the sign-in page."""

    def register(fn: Page) -> Page:
        async def endpoint(request: Request) -> Response:
            session = await current_session(request)
            if session is None:
                return pages.redirect("/console")
            try:
                return await fn(request, session)
            except EmberError as exc:
                return pages.error_page(request, session, exc)

        endpoint.__name__ = fn.__name__
        router.add_api_route(path, endpoint, methods=["GET"])
        return fn

    return register


def _action(path: str, category: str | None) -> Callable[[Action], Action]:
    """A change: a signed-in session, a form with its CSRF token, counted against the tenant's API rate
    limit for ``category`` (spec Table 1-2), as the same change through the API would be."""

    def register(fn: Action) -> Action:
        async def endpoint(request: Request) -> Response:
            session = await current_session(request)
            try:
                if session is None:
                    check_same_origin(request)
                    raise Unauthenticated("sign in to the console first")
                form = await read_form(request)
                check_csrf(request, form.get("csrf"), session.csrf)
                if category is not None:
                    await services_of(request).rate_limiter.take(session.who.domain_id, category)
                return await fn(request, session, form)
            except EmberError as exc:
                return pages.error_page(request, session, exc)

        endpoint.__name__ = fn.__name__
        router.add_api_route(path, endpoint, methods=["POST"])
        return fn

    return register


def _app_id(request: Request) -> str:
    return str(request.path_params["app_id"])


async def _app(svc: Services, session: ConsoleSession, app_id: str) -> dict[str, Any]:
    """The tenant's app (the API's view); :class:`AppNotExist` for any other."""
    return await svc.apps.show(session.who, app_id)


def _app_url(app_id: str, page: str = "") -> str:
    return f"/console/apps/{quote(app_id, safe='')}" + (f"/{page}" if page else "")


# --- static files ---------------------------------------------------------------------------------------

_STATIC_TYPES = {"console.css": "text/css; charset=utf-8", "console.js": "text/javascript; charset=utf-8"}


@router.get("/static/{name}")
async def static(name: str) -> Response:
    """The console's stylesheet and script (shipped in the package; nothing is fetched from elsewhere)."""
    if name not in _STATIC_TYPES:
        return pages.secure(Response("not found", status_code=404, media_type="text/plain"))
    response = FileResponse(pages.STATIC / name, media_type=_STATIC_TYPES[name])
    return pages.secure(response)


# --- sign in, sign out ----------------------------------------------------------------------------------


def _sign_in_page(
    request: Request,
    *,
    status: int = 200,
    error: FormError | None = None,
    user: str = "",
    retry_after: float | None = None,
) -> Response:
    value, new = pre_session_csrf(request)
    headers = {} if retry_after is None else {"Retry-After": str(max(1, int(retry_after + 0.999)))}
    response = pages.render(
        request,
        "sign_in.html",
        session=None,
        status=status,
        headers=headers,
        sign_in_csrf=value,
        error=error,
        user=user,
        title="Sign in",
    )
    if new:
        set_pre_session_cookie(response, request, value)
    return response


@router.get("")
async def sign_in_page(request: Request) -> Response:
    """The sign-in page; signed in already: the applications."""
    if await current_session(request) is not None:
        return pages.redirect("/console/apps")
    return _sign_in_page(request)


@router.post("/sign-in")
async def sign_in(request: Request) -> Response:
    """The IAM password check of ``POST /v3/auth/tokens``, behind the same limit on failed sign-ins."""
    svc = services_of(request)
    try:
        check_same_origin(request)
        form = await read_form(request)
        expected = request.cookies.get(PRE_SESSION_COOKIE, "")
        if not expected or form.get("csrf") != expected:
            raise NoPermission("the sign-in form is stale or was not sent from this console: reload it")
    except EmberError as exc:
        return pages.error_page(request, None, exc)
    user = form.get("user").strip()
    password = form.get("password")
    if not user or not password:
        err = MissingParameter("the user name and the password are required")
        error = FormError.of(err, "user" if not user else "password")
        return _sign_in_page(request, status=400, error=error, user=user)
    try:
        # A tenant's IAM user has the account's name (ember tenant create); the project is the account's one.
        issued = await limited_sign_in(svc, request, user, password, user, None)
    except EmberError as exc:
        wait = exc.retry_after if isinstance(exc, RateLimited) else None
        error = FormError.of(exc, "password")
        return _sign_in_page(request, status=exc.status, error=error, user=user, retry_after=wait)
    response = pages.redirect("/console/apps")
    set_session_cookie(response, request, issued.token, int(issued.expires_at - svc.clock.now()))
    return response


@router.post("/sign-out")
async def sign_out(request: Request) -> Response:
    """End the session: its token is deleted (on every node), the cookie cleared."""
    svc = services_of(request)
    token = request.cookies.get(SESSION_COOKIE)
    try:
        form = await read_form(request)
        check_csrf(request, form.get("csrf"), csrf_for(token) if token else "")
    except EmberError as exc:
        return pages.error_page(request, await current_session(request), exc)
    if token:
        await svc.tenants.revoke_token(token)
    response = pages.redirect("/console")
    clear_session_cookie(response, request)
    return response


# --- applications ---------------------------------------------------------------------------------------


async def _apps_page(
    request: Request, session: ConsoleSession, *, status: int = 200, error: FormError | None = None, name: str = ""
) -> Response:
    svc = services_of(request)
    listing = await svc.apps.list_apps(session.who, None, 0, 100)
    return pages.render(
        request,
        "apps.html",
        session=session,
        status=status,
        apps=listing["apps"],
        count=listing["count"],
        error=error,
        name=name,
        title="Applications",
    )


@_page("/apps")
async def apps_page(request: Request, session: ConsoleSession) -> Response:
    return await _apps_page(request, session)


@_action("/apps", "apps")
async def create_app(request: Request, session: ConsoleSession, form: Form) -> Response:
    name = form.get("app_name")
    body = validate(CreateAppBody, {"app_name": name})
    if isinstance(body, FormError):
        return await _apps_page(request, session, status=400, error=body, name=name)
    try:
        created = await services_of(request).apps.create(session.who, body.app_name)
    except EmberError as exc:
        return await _apps_page(request, session, status=exc.status, error=FormError.of(exc, "app_name"), name=name)
    return pages.redirect(_app_url(created["app_id"]))


async def _app_page(
    request: Request,
    session: ConsoleSession,
    *,
    show_key: bool = False,
    status: int = 200,
    error: FormError | None = None,
) -> Response:
    app = await _app(services_of(request), session, _app_id(request))
    return pages.render(
        request,
        "app.html",
        session=session,
        status=status,
        app=app,
        tab="overview",
        app_key=app["authentication"]["app_key"] if show_key else None,
        error=error,
        title=app["app_name"],
    )


@_page("/apps/{app_id}")
async def app_page(request: Request, session: ConsoleSession) -> Response:
    return await _app_page(request, session)


@_action("/apps/{app_id}/app-key", "apps")
async def show_app_key(request: Request, session: ConsoleSession, form: Form) -> Response:
    """The app key, on demand (a POST: it is never in a URL, a link or the browser's history)."""
    return await _app_page(request, session, show_key=True)


@_action("/apps/{app_id}/state", "apps")
async def set_app_state(request: Request, session: ConsoleSession, form: Form) -> Response:
    state = form.get("state")
    if state not in (ACTIVATION, DEACTIVATION):
        return await _app_page(
            request, session, status=400, error=FormError.of(InvalidParameterValue("state: unknown state"), "state")
        )
    try:
        await services_of(request).apps.set_state(session.who, _app_id(request), state)
    except EmberError as exc:
        return await _app_page(request, session, status=exc.status, error=FormError.of(exc))
    return pages.redirect(_app_url(_app_id(request)))


@_action("/apps/{app_id}/delete", "apps")
async def delete_app(request: Request, session: ConsoleSession, form: Form) -> Response:
    app_id = _app_id(request)
    if form.get("confirm") != app_id:
        err = InvalidParameterValue("confirm: type the app ID to delete the app")
        return await _app_page(request, session, status=400, error=FormError.of(err, "confirm"))
    try:
        await services_of(request).apps.delete(session.who, app_id)
    except EmberError as exc:
        return await _app_page(request, session, status=exc.status, error=FormError.of(exc))
    return pages.redirect("/console/apps")


# --- recording: rules, automatic recording, record callback ----------------------------------------------


async def _recording_page(
    request: Request,
    session: ConsoleSession,
    *,
    status: int = 200,
    errors: dict[str, FormError] | None = None,
    values: Form | None = None,
    form_id: str | None = None,
    outcome: TestOutcome | None = None,
) -> Response:
    svc = services_of(request)
    app_id = _app_id(request)
    app = await _app(svc, session, app_id)
    rules = (await svc.rules.list_rules(session.who, app_id, 0, 100))["rules"]
    callback = (await svc.apps.show_record_callback(session.who, app_id)).get("record_callback")
    return pages.render(
        request,
        "recording.html",
        session=session,
        status=status,
        app=app,
        tab="recording",
        rules=rules,
        callback=callback,
        locations=svc.storage.locations,
        errors=errors or {},
        values=values if values is not None else Form([]),
        form_id=form_id,
        outcome=outcome,
        all_events=ALL_CALLBACK_EVENTS,
        title=f"Recording - {app['app_name']}",
    )


@_page("/apps/{app_id}/recording")
async def recording_page(request: Request, session: ConsoleSession) -> Response:
    return await _recording_page(request, session)


def _rule_data(form: Form, project_id: str) -> dict[str, Any]:
    """The form as the API's record rule body (Table 4-231): a format's config is sent when the format is
    ticked or any of its fields is filled in, so the API's rules decide what is missing."""
    formats = form.all("record_formats")
    obs: dict[str, Any] = {
        "location": form.get("obs_addr.location"),
        "project_id": project_id,
        "bucket": form.get("obs_addr.bucket").strip(),
    }
    if (obj := form.optional("obs_addr.object")) is not None:
        obs["object"] = obj
    data: dict[str, Any] = {"obs_addr": obs, "record_formats": formats}
    for key, names in RECORD_RULE_FIELDS.items():
        fields = {n: v for n in names if (v := form.optional(f"{key}.{n}")) is not None}
        if fields or ("MP4" if key == "mp4_config" else "HLS") in formats:
            data[key] = fields
    return data


@_action("/apps/{app_id}/rules", "record_rules")
async def save_rule(request: Request, session: ConsoleSession, form: Form) -> Response:
    """spec 4.9.1 create-or-replace (one rule per storage location), checked by the API's body model."""
    body = validate(RecordRuleBody, _rule_data(form, session.who.project_id))
    if isinstance(body, FormError):
        return await _recording_page(request, session, status=400, errors={"rule": body}, values=form, form_id="rule")
    try:
        await services_of(request).rules.create_or_replace(session.who, _app_id(request), body.model_dump(mode="json"))
    except EmberError as exc:
        errors = {"rule": FormError.of(exc)}
        return await _recording_page(request, session, status=exc.status, errors=errors, values=form, form_id="rule")
    return pages.redirect(_app_url(_app_id(request), "recording"))


@_action("/apps/{app_id}/rules/{rule_id}/delete", "record_rules")
async def delete_rule(request: Request, session: ConsoleSession, form: Form) -> Response:
    try:
        await services_of(request).rules.delete(session.who, _app_id(request), str(request.path_params["rule_id"]))
    except EmberError as exc:
        return await _recording_page(request, session, status=exc.status, errors={"rules": FormError.of(exc)})
    return pages.redirect(_app_url(_app_id(request), "recording"))


@_action("/apps/{app_id}/auto-record", "auto_record")
async def save_auto_record(request: Request, session: ConsoleSession, form: Form) -> Response:
    data = {"mode": form.get("mode"), "record_rule_id": form.optional("record_rule_id")}
    body = validate(AutoRecordBody, data)
    if isinstance(body, FormError):
        return await _recording_page(request, session, status=400, errors={"auto": body}, values=form, form_id="auto")
    rule_id = body.record_rule_id if body.mode.value != AUTO_RECORD_OFF else None
    try:
        await services_of(request).apps.set_auto_record(session.who, _app_id(request), body.mode.value, rule_id)
    except EmberError as exc:
        errors = {"auto": FormError.of(exc, "record_rule_id")}
        return await _recording_page(request, session, status=exc.status, errors=errors, values=form, form_id="auto")
    return pages.redirect(_app_url(_app_id(request), "recording"))


@_action("/apps/{app_id}/callback", "record_callback")
async def save_callback(request: Request, session: ConsoleSession, form: Form) -> Response:
    """spec 4.3.1. A blank ``auth_key`` keeps the current one (it is never shown); ``remove_auth_key``
    removes it, so events are no longer signed."""
    svc = services_of(request)
    app_id = _app_id(request)
    auth_key = form.optional("auth_key")
    if auth_key is None and form.get("remove_auth_key") != "on":
        current = (await svc.apps.show_record_callback(session.who, app_id)).get("record_callback")
        auth_key = (current or {}).get("auth_key") or None
    data = {"url": form.get("url").strip(), "auth_key": auth_key, "notify_event_subscription": form.all("events")}
    body = validate(RecordCallbackBody, data)
    if isinstance(body, FormError):
        errors = {"callback": body}
        return await _recording_page(request, session, status=400, errors=errors, values=form, form_id="callback")
    events = [e.value for e in body.notify_event_subscription] if body.notify_event_subscription else None
    try:
        await svc.apps.set_record_callback(session.who, app_id, body.url, body.auth_key, events)
    except EmberError as exc:
        errors = {"callback": FormError.of(exc)}
        status = exc.status
        return await _recording_page(request, session, status=status, errors=errors, values=form, form_id="callback")
    return pages.redirect(_app_url(app_id, "recording"))


@_action("/apps/{app_id}/callback/test", "record_callback")
async def test_callback(request: Request, session: ConsoleSession, form: Form) -> Response:
    """Send one signed ``TEST_EVENT`` to the record callback now and show what the receiver answered."""
    svc = services_of(request)
    current = (await svc.apps.show_record_callback(session.who, _app_id(request))).get("record_callback")
    if not current:
        err = InvalidParameterValue("the app has no record callback URL: save one first")
        return await _recording_page(request, session, status=400, errors={"test": FormError.of(err)})
    auth_key = current.get("auth_key") or None
    outcome = await send_test_event(svc.outputs.delivery, current["url"], auth_key, _app_id(request), svc.clock)
    return await _recording_page(request, session, outcome=outcome)


# --- jobs and recordings --------------------------------------------------------------------------------


def _download_url(svc: Services, f: RecordingFile) -> str | None:
    """A signed, expiring link to a stored file (the callback's ``download_url``), or None."""
    if f.state != STORED or f.location is None or f.bucket is None:
        return None
    store = svc.storage.find(f.location, f.project_id)  # the project the file was stored for, as the callback
    if store is None:
        return None
    try:
        return store.download_url(f.bucket, f.object_name)
    except EmberError:
        return None


@dataclass(frozen=True)
class Preview:
    """Where a running mixed job's live picture is: ``here`` (this node's worker writes it: the page shows
    it), ``node`` (another node's worker does: the page says which), or neither (no media yet)."""

    job_id: str
    room_id: str
    shown: bool  # a picture can be had through this node (composed here, or on a node of its cluster)
    node: str | None  # the node composing it, when another
    width: int  # the preview's size (mix_preview: 320 wide, the canvas's ratio), for the page's layout
    height: int


async def _previews(svc: Services, session: ConsoleSession, app_id: str, jobs: list[dict[str, Any]]) -> list[Preview]:
    """The app's unfinished mixed jobs with a picture, and where their previews are."""
    mixed = [
        j
        for j in jobs
        if j["kind"] == MIX and j["state"] != STOPPED and j["mix_param"].get("encode_template") != AUDIO_ONLY
    ]
    if not mixed:
        return []
    nodes = await room_nodes(svc.db, session.who, app_id, {j["room_id"] for j in mixed})
    out = []
    for j in mixed:
        here = svc.recorder is not None and svc.recorder.records_here(j["job_id"])
        node = nodes.get(j["room_id"])
        elsewhere = node if node is not None and node != svc.settings.node_id else None  # rooms name nodes in a cluster
        size = parse_encode_template(j["mix_param"]["encode_template"]) or (PREVIEW_WIDTH, PREVIEW_WIDTH * 9 // 16)
        height = round(size[1] * PREVIEW_WIDTH / size[0])
        # Composed here, or on another node that this one can ask (a cluster): the page shows the picture.
        shown = here or (elsewhere is not None and svc.previews.across_nodes)
        out.append(Preview(j["job_id"], j["room_id"], shown, None if here else elsewhere, PREVIEW_WIDTH, height))
    return out


def pane_rows(form: Form) -> list[dict[str, str]]:
    """The panes editor's rows that are not blank, in order, each field stripped ("" when not sent)."""
    columns = {f: form.all(f"pane_{f}") for f in PANE_FIELDS}
    count = max(len(values) for values in columns.values())
    rows = [{f: (v[i] if i < len(v) else "").strip() for f, v in columns.items()} for i in range(count)]
    return [row for row in rows if any(row[f] for f in _PANE_TYPED)]


def _panes_error(form: Form, error: FormError | None) -> FormError | None:
    """The error to show in the panes editor: about a pane, or the layout rules' (``mix_param``) with custom."""
    if error is None:
        return None
    if error.about("mix_param.layout_panes"):
        return error
    if error.field == "mix_param" and form.get("layout_template") == "custom":
        return error
    return None


def _pane_field_error(error: FormError | None) -> bool:
    """Is the error about one field of one row (shown next to it), rather than the panes as a whole?"""
    if error is None:
        return False
    match = re.fullmatch(r"mix_param\.layout_panes\.\d+\.(\w+)", error.field)
    return match is not None and match.group(1) in PANE_FIELDS


async def _jobs_page(
    request: Request,
    session: ConsoleSession,
    *,
    status: int = 200,
    error: FormError | None = None,
    mix_error: FormError | None = None,
    values: Form | None = None,
) -> Response:
    svc = services_of(request)
    app_id = _app_id(request)
    app = await _app(svc, session, app_id)
    jobs = await svc.jobs.list_jobs(session.who, app_id)
    rules = (await svc.rules.list_rules(session.who, app_id, 0, 100))["rules"]
    files: dict[str, list[RecordingFile]] = {}
    for f in await list_files(svc.db, session.who, app_id):
        files.setdefault(f.job_id, []).append(f)
    return pages.render(
        request,
        "jobs.html",
        session=session,
        status=status,
        app=app,
        tab="jobs",
        jobs=jobs,
        previews=await _previews(svc, session, app_id, jobs),
        files=files,
        error=error,
        mix_error=mix_error,
        values=values if values is not None else Form([]),
        panes=pane_rows(values) if values is not None else [],
        panes_error=_panes_error(values or Form([]), mix_error),
        panes_error_in_row=_pane_field_error(mix_error),
        pane_video_types=VIDEO_TYPES,
        pane_crop_modes=CROP_MODES,
        rules=rules,
        encode_templates=ENCODE_TEMPLATE_CHOICES,
        layouts=LAYOUT_CHOICES,
        title=f"Jobs - {app['app_name']}",
    )


@_page("/apps/{app_id}/jobs")
async def jobs_page(request: Request, session: ConsoleSession) -> Response:
    return await _jobs_page(request, session)


@_action("/apps/{app_id}/jobs/mix", "mix_jobs")
async def start_mix_job(request: Request, session: ConsoleSession, form: Form) -> Response:
    """spec 4.8.1 with a layout from the picker, checked by the API's body model and the domain's rules."""
    mix: dict[str, Any] = {"room_id": form.get("room_id").strip(), "encode_template": form.get("encode_template")}
    if (layout := form.optional("layout_template")) is not None:
        mix["layout_template"] = layout
    if layout == "custom":  # the editor's rows, blanks left out: the API's model and rules check them
        mix["layout_panes"] = [{f: v for f, v in row.items() if v} for row in pane_rows(form)]
    if (idle := form.optional("max_idle_time")) is not None:
        mix["max_idle_time"] = idle
    data: dict[str, Any] = {"mix_param": mix}
    if (rule_id := form.optional("record_rule_id")) is not None:
        data["record_param"] = {"record_rule_id": rule_id}
    body = validate(MixJobBody, data)
    if isinstance(body, FormError):
        return await _jobs_page(request, session, status=400, mix_error=body, values=form)
    try:
        await services_of(request).jobs.start_mix(session.who, _app_id(request), body.model_dump(mode="json"))
    except EmberError as exc:
        return await _jobs_page(request, session, status=exc.status, mix_error=FormError.of(exc), values=form)
    return pages.redirect(_app_url(_app_id(request), "jobs"))


@_page("/apps/{app_id}/jobs/{job_id}/preview.jpg")
async def job_preview(request: Request, session: ConsoleSession) -> Response:
    """The live preview of the tenant's own running mixed job (a JPEG a few seconds old), from the worker
    that composes it: this node's, or in a cluster the room's node's (``svc.previews``); 404 (plain text)
    when there is no picture. Another tenant's or app's job is ``RTC.00001008`` (JobNotExist), as on the
    API. The file is found by the job's ID (and its app and room, read from the database) in the recorder:
    nothing from the request names a path."""
    svc = services_of(request)
    job = await svc.jobs.show(session.who, _app_id(request), str(request.path_params["job_id"]), MIX)
    data = None
    if job["state"] != STOPPED:
        try:
            data = await svc.previews.get(job["app_id"], job["room_id"], job["job_id"])
        except InternalError as exc:  # the room's node did not answer in time: no picture this round
            log.info("preview of job %s: %s", job["job_id"], exc.detail)
    if data is None:
        return pages.secure(Response("no preview now", status_code=404, media_type="text/plain"))
    return pages.secure(Response(data, media_type="image/jpeg"))


@_action("/apps/{app_id}/jobs/{job_id}/stop", None)
async def stop_job(request: Request, session: ConsoleSession, form: Form) -> Response:
    kind = form.get("kind")
    svc = services_of(request)
    try:
        if kind not in (INDIVIDUAL, MIX):
            raise InvalidParameterValue("kind: must be individual or mix")
        await svc.rate_limiter.take(session.who.domain_id, "individual_jobs" if kind == INDIVIDUAL else "mix_jobs")
        await svc.jobs.stop(session.who, _app_id(request), str(request.path_params["job_id"]), kind)
    except EmberError as exc:
        return await _jobs_page(request, session, status=exc.status, error=FormError.of(exc))
    return pages.redirect(_app_url(_app_id(request), "jobs"))


@_page("/apps/{app_id}/recordings")
async def recordings_page(request: Request, session: ConsoleSession) -> Response:
    svc = services_of(request)
    app_id = _app_id(request)
    app = await _app(svc, session, app_id)
    files = [(f, _download_url(svc, f)) for f in await list_files(svc.db, session.who, app_id)]
    origins = {o for _, url in files if url and (o := pages.origin_of(url))}
    return pages.render(
        request,
        "recordings.html",
        session=session,
        media_origins=origins,
        app=app,
        tab="recordings",
        files=files,
        title=f"Recordings - {app['app_name']}",
    )


# --- live rooms ------------------------------------------------------------------------------------------


async def _rooms_fragment(request: Request, session: ConsoleSession, app_id: str) -> str:
    svc = services_of(request)
    now = svc.clock.now()
    rooms = await live_rooms(svc.db, session.who, app_id, now)
    return pages.fragment(
        "rooms_live.html", session=session, app_id=app_id, rooms=rooms, now=now, live_enabled=svc.plane is not None
    )


async def _rooms_page(
    request: Request, session: ConsoleSession, *, status: int = 200, error: FormError | None = None
) -> Response:
    svc = services_of(request)
    app_id = _app_id(request)
    app = await _app(svc, session, app_id)
    return pages.render(
        request,
        "rooms.html",
        session=session,
        status=status,
        app=app,
        tab="rooms",
        live=await _rooms_fragment(request, session, app_id),
        error=error,
        title=f"Rooms - {app['app_name']}",
    )


@_page("/apps/{app_id}/rooms")
async def rooms_page(request: Request, session: ConsoleSession) -> Response:
    return await _rooms_page(request, session)


@_page("/apps/{app_id}/rooms/events")
async def rooms_events(request: Request, session: ConsoleSession) -> Response:
    """Server-sent events: the rooms table (``event: rooms``, HTML) whenever it changes, checked every
    ``LIVE_INTERVAL`` s. The stream ends after ``LIVE_STREAM_SECONDS`` (the browser reconnects) or when the
    session ends (signed out elsewhere)."""
    app_id = _app_id(request)
    await _app(services_of(request), session, app_id)  # AppNotExist before the stream starts

    async def stream() -> AsyncIterator[bytes]:
        last = ""
        started = time.monotonic()
        yield b"retry: 1000\n\n"
        while time.monotonic() - started < LIVE_STREAM_SECONDS and not await request.is_disconnected():
            if await current_session(request) is None:
                yield b"event: signed-out\ndata: \n\n"
                return
            html = await _rooms_fragment(request, session, app_id)
            if html != last:
                last = html
                data = "".join(f"data: {line}\n" for line in html.splitlines() or [""])
                yield f"event: rooms\n{data}\n".encode()
            else:
                yield b": still here\n\n"
            await asyncio.sleep(LIVE_INTERVAL)

    response = StreamingResponse(stream(), media_type="text/event-stream")
    response.headers["X-Accel-Buffering"] = "no"  # proxies: pass each event on at once
    return pages.secure(response)


class _RoomUser(SpecModel):
    room_id: RoomId
    user_id: UserId


@_action("/apps/{app_id}/rooms/remove", "rooms")
async def remove_user(request: Request, session: ConsoleSession, form: Form) -> Response:
    """spec 4.7.1 for one user, with the API's checks of the room and user IDs."""
    target = validate(_RoomUser, {"room_id": form.get("room_id"), "user_id": form.get("user_id")})
    if isinstance(target, FormError):
        return await _rooms_page(request, session, status=400, error=target)
    users = validate(RemoveUsersBody, {"user_ids": [target.user_id]})
    assert not isinstance(users, FormError)
    try:
        await services_of(request).rooms.remove_users(session.who, _app_id(request), target.room_id, users.user_ids)
    except EmberError as exc:
        return await _rooms_page(request, session, status=exc.status, error=FormError.of(exc))
    return pages.redirect(_app_url(_app_id(request), "rooms"))


class _Room(SpecModel):
    room_id: RoomId


@_action("/apps/{app_id}/rooms/dismiss", "rooms")
async def dismiss_room(request: Request, session: ConsoleSession, form: Form) -> Response:
    """spec 4.7.2: everyone leaves, jobs recording the room stop."""
    target = validate(_Room, {"room_id": form.get("room_id")})
    if isinstance(target, FormError):
        return await _rooms_page(request, session, status=400, error=target)
    try:
        await services_of(request).rooms.dismiss(session.who, _app_id(request), target.room_id)
    except EmberError as exc:
        return await _rooms_page(request, session, status=exc.status, error=FormError.of(exc))
    return pages.redirect(_app_url(_app_id(request), "rooms"))


# --- usage and quality -----------------------------------------------------------------------------------


#: Short names of the abnormal event types (spec 5.11 Table 5-75) for chart rows; the table lists the full ones.
ABNORMAL_SHORT = {1: "Slow join", 2: "Video freeze", 3: "Audio freeze"}


def _minute_label(text: str) -> str:
    return text[11:16]  # "YYYY-MM-DDThh:mm:ssZ" -> "hh:mm"


@_page("/apps/{app_id}/usage")
async def usage_page(request: Request, session: ConsoleSession) -> Response:
    """The statistics API's reads (spec 5.3, 5.5, 5.7) for the last hour and the last 14 days, as charts,
    and the last hour's abnormal events: users by cause (5.12) as a chart, the events (5.11) as a table."""
    svc = services_of(request)
    app_id = _app_id(request)
    app = await _app(svc, session, app_id)
    now = svc.clock.now()
    q = svc.stats_queries
    hour = Window(now - 3600, now)
    charts = []
    for metric, title in (("OnlineUsers", "Users online"), ("RoomCount", "Rooms with someone in them")):
        scale = await q.realtime_scale(session.who, SeriesQuery(app_id, None, metric, None, hour))
        charts.append(
            Chart(
                f"{title}, per minute, last hour",
                "",
                [Point(_minute_label(p["time"]), p["value"]) for p in scale["scale"]],
            )
        )
    for metric, title in (("JoinSuccessRate", "Join success rate"), ("VideoFreezeRate", "Video freeze rate")):
        rate = await q.realtime_rate(session.who, SeriesQuery(app_id, None, metric, None, hour))
        points = [Point(_minute_label(p["time"]), 100 * p["value"]) for p in rate]
        charts.append(Chart(f"{title}, per minute, last hour (%)", "%", points))
    last = today(now)
    days = Days(last.fromordinal(last.toordinal() - 13), last)
    for metric, title in (("RecordDuration", "Recorded"), ("CommunicationDuration", "Communication")):
        usage = await q.usage(session.who, UsageQuery(app_id, metric, days))
        charts.append(
            Chart(
                f"{title} minutes per day, last 14 days",
                "min",
                [Point(d["date"][5:], d["total_duration"] / 60) for d in usage["usage"]],
            )
        )
    abnormal = await q.abnormal_events(session.who, AbnormalQuery(app_id, None, None, hour, QueryPage(50, 0), ()))
    by_cause = await q.abnormal_dimension(
        session.who, AbnormalQuery(app_id, None, None, hour, QueryPage(50, 0), ("abnormal_type", "abnormal_factor"))
    )
    abnormal_chart = CategoryChart(
        "Users with abnormal events, by cause, last hour",
        "users",
        [
            Point(
                f"{ABNORMAL_SHORT.get(d['abnormal_type'], 'Other')}: {d['abnormal_factor_desc']}",
                d["user_count"],
            )
            for d in by_cause["dimensions"]
        ],
    )
    return pages.render(
        request,
        "usage.html",
        session=session,
        app=app,
        tab="usage",
        charts=charts,
        abnormal=abnormal,
        abnormal_chart=abnormal_chart,
        as_of=spec_second(now),
        title=f"Usage - {app['app_name']}",
    )


# --- try it ----------------------------------------------------------------------------------------------


@_page("/apps/{app_id}/try")
async def try_page(request: Request, session: ConsoleSession) -> Response:
    app = await _app(services_of(request), session, _app_id(request))
    return pages.render(
        request, "try.html", session=session, app=app, tab="try", link=None, error=None, values=Form([]), title="Try it"
    )


@_action("/apps/{app_id}/try", None)
async def make_try_link(request: Request, session: ConsoleSession, form: Form) -> Response:
    """A link to the demo room page with a join signed by the server for this app, room and user, valid
    for an hour. It travels in the URL's fragment, which the browser never sends to a server; the app key
    itself never leaves the server."""
    svc = services_of(request)
    app = await _app(svc, session, _app_id(request))
    target = validate(_RoomUser, {"room_id": form.get("room_id"), "user_id": form.get("user_id")})
    if isinstance(target, FormError):
        return pages.render(
            request,
            "try.html",
            session=session,
            status=400,
            app=app,
            tab="try",
            link=None,
            error=target,
            values=form,
            title="Try it",
        )
    ctime = str(int(svc.clock.now()) + TRY_LINK_SECONDS)
    signature = join_signature(app["authentication"]["app_key"], app["app_id"], target.room_id, target.user_id, ctime)
    join = {"app_id": app["app_id"], "room": target.room_id, "user": target.user_id}
    fragment = urlencode({**join, "ctime": ctime, "signature": signature})
    return pages.render(
        request,
        "try.html",
        session=session,
        app=app,
        tab="try",
        link=f"/demo#{fragment}",
        error=None,
        values=form,
        expires=int(ctime),
        title="Try it",
    )
