"""spec 4.5 Application management, 4.3 record callback, 4.6 automatic recording."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request, Response

from emberrtc.api.auth import AuthorisedRoute, authorised, caller
from emberrtc.api.json_response import JSONResponse
from emberrtc.api.schemas.apps import AutoRecordBody, CreateAppBody, ListAppsQuery, RecordCallbackBody
from emberrtc.api.schemas.responses import (
    App,
    AppStateResponse,
    AutoRecordResponse,
    CreateAppResponse,
    ListAppsResponse,
    RecordCallbackResponse,
    doc,
)
from emberrtc.domain.app import ACTIVATION, DEACTIVATION

router = APIRouter(prefix="/v2/apps", route_class=AuthorisedRoute)


@router.post(
    "",
    status_code=201,
    tags=["Application management"],
    summary="Creating an Application (4.5.1)",
    responses=doc(CreateAppResponse, 201),
)
@authorised("apps")
async def create_app(body: CreateAppBody, request: Request) -> JSONResponse:
    who, svc = caller(request)
    return JSONResponse(await svc.apps.create(who, body.app_name), status_code=201)


@router.get(
    "", tags=["Application management"], summary="Listing Applications (4.5.2)", responses=doc(ListAppsResponse, 200)
)
@authorised("apps")
async def list_apps(q: Annotated[ListAppsQuery, Query()], request: Request) -> JSONResponse:
    who, svc = caller(request)
    return JSONResponse(await svc.apps.list_apps(who, q.state.value if q.state else None, q.offset, q.limit))


@router.get(
    "/{app_id}", tags=["Application management"], summary="Querying an Application (4.5.3)", responses=doc(App, 200)
)
@authorised("apps")
async def show_app(app_id: str, request: Request) -> JSONResponse:
    who, svc = caller(request)
    return JSONResponse(await svc.apps.show(who, app_id))


@router.delete(
    "/{app_id}",
    status_code=204,
    tags=["Application management"],
    summary="Deleting an Application (4.5.4)",
    responses=doc(None, 204),
)
@authorised("apps")
async def delete_app(app_id: str, request: Request) -> Response:
    who, svc = caller(request)
    await svc.apps.delete(who, app_id)
    return Response(status_code=204)


@router.post(
    "/{app_id}/enable",
    tags=["Application management"],
    summary="Enabling an Application (4.5.5)",
    responses=doc(AppStateResponse, 200),
)
@authorised("apps")
async def enable_app(app_id: str, request: Request) -> JSONResponse:
    who, svc = caller(request)
    return JSONResponse(await svc.apps.set_state(who, app_id, ACTIVATION))


@router.post(
    "/{app_id}/disable",
    tags=["Application management"],
    summary="Disabling an Application (4.5.6)",
    responses=doc(AppStateResponse, 200),
)
@authorised("apps")
async def disable_app(app_id: str, request: Request) -> JSONResponse:
    who, svc = caller(request)
    return JSONResponse(await svc.apps.set_state(who, app_id, DEACTIVATION))


@router.put(
    "/{app_id}/record-callback",
    tags=["Application callback management"],
    summary="Configuring a Recording Event Callback (4.3.1)",
    responses=doc(RecordCallbackResponse, 200),
)
@authorised("record_callback")
async def update_record_callback(app_id: str, body: RecordCallbackBody, request: Request) -> JSONResponse:
    who, svc = caller(request)
    events = [e.value for e in body.notify_event_subscription] if body.notify_event_subscription else None
    return JSONResponse(await svc.apps.set_record_callback(who, app_id, body.url, body.auth_key, events))


@router.get(
    "/{app_id}/record-callback",
    tags=["Application callback management"],
    summary="Querying a Recording Event Callback (4.3.2)",
    responses=doc(RecordCallbackResponse, 200),
)
@authorised("record_callback")
async def show_record_callback(app_id: str, request: Request) -> JSONResponse:
    who, svc = caller(request)
    return JSONResponse(await svc.apps.show_record_callback(who, app_id))


@router.put(
    "/{app_id}/auto-record-mode",
    tags=["Automatic recording configuration"],
    summary="Updating the Automatic Recording Configuration (4.6.1)",
    responses=doc(AutoRecordResponse, 200),
)
@authorised("auto_record")
async def update_auto_record(app_id: str, body: AutoRecordBody, request: Request) -> JSONResponse:
    who, svc = caller(request)
    return JSONResponse(await svc.apps.set_auto_record(who, app_id, body.mode.value, body.record_rule_id))


@router.get(
    "/{app_id}/auto-record-mode",
    tags=["Automatic recording configuration"],
    summary="Querying the Automatic Recording Configuration (4.6.2)",
    responses=doc(AutoRecordResponse, 200),
)
@authorised("auto_record")
async def show_auto_record(app_id: str, request: Request) -> JSONResponse:
    who, svc = caller(request)
    return JSONResponse(await svc.apps.show_auto_record(who, app_id))
