"""spec 4.9 Recording rule management."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request, Response

from emberrtc.api.auth import AuthorisedRoute, authorised, caller
from emberrtc.api.body import body_doc, parse_body
from emberrtc.api.json_response import JSONResponse
from emberrtc.api.schemas.record_rules import ListRulesQuery, RecordRuleBody
from emberrtc.api.schemas.responses import ListRulesResponse, RecordRule, doc

router = APIRouter(
    prefix="/v2/apps/{app_id}/record-rules", tags=["Recording rule management"], route_class=AuthorisedRoute
)
RULES = "record_rules"  # spec Table 1-2: the rate-limit category


@router.post(
    "",
    status_code=201,
    summary="Creating or Updating a Recording Rule (4.9.1)",
    responses=doc(RecordRule, 201),
    openapi_extra=body_doc(RecordRuleBody, "app_id"),
)
@authorised(RULES)
async def create_record_rule(request: Request) -> JSONResponse:
    # The hottest write: no parameters for FastAPI to solve, the body validated from its bytes (api/body.py).
    who, svc = caller(request)
    body = await parse_body(RecordRuleBody, request)
    rule = await svc.rules.create_or_replace(who, request.path_params["app_id"], body.model_dump(mode="json"))
    return JSONResponse(rule, status_code=201)


@router.get("", summary="Listing Recording Rules (4.9.2)", responses=doc(ListRulesResponse, 200))
@authorised(RULES)
async def list_record_rules(app_id: str, q: Annotated[ListRulesQuery, Query()], request: Request) -> JSONResponse:
    who, svc = caller(request)
    return JSONResponse(await svc.rules.list_rules(who, app_id, q.offset, q.limit))


@router.get("/{rule_id}", summary="Querying a Recording Rule (4.9.3)", responses=doc(RecordRule, 200))
@authorised(RULES)
async def show_record_rule(app_id: str, rule_id: str, request: Request) -> JSONResponse:
    who, svc = caller(request)
    return JSONResponse(await svc.rules.show(who, app_id, rule_id))


@router.put("/{rule_id}", summary="Updating a Recording Rule (4.9.4)", responses=doc(RecordRule, 200))
@authorised(RULES)
async def update_record_rule(app_id: str, rule_id: str, body: RecordRuleBody, request: Request) -> JSONResponse:
    who, svc = caller(request)
    return JSONResponse(await svc.rules.update(who, app_id, rule_id, body.model_dump(mode="json")))


@router.delete("/{rule_id}", status_code=204, summary="Deleting a Recording Rule (4.9.5)", responses=doc(None, 204))
@authorised(RULES)
async def delete_record_rule(app_id: str, rule_id: str, request: Request) -> Response:
    who, svc = caller(request)
    await svc.rules.delete(who, app_id, rule_id)
    return Response(status_code=204)
