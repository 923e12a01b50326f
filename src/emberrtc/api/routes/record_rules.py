"""spec 4.9 Recording rule management."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Response
from fastapi.responses import JSONResponse

from emberrtc.api.auth import authorise, services
from emberrtc.api.schemas.record_rules import ListRulesQuery, RecordRuleBody
from emberrtc.api.schemas.responses import ListRulesResponse, RecordRule, doc
from emberrtc.bootstrap import Services
from emberrtc.domain.tenant import Principal

router = APIRouter(prefix="/v2/apps/{app_id}/record-rules", tags=["Recording rule management"])
Svc = Annotated[Services, Depends(services)]
Who = authorise("record_rules")


@router.post(
    "", status_code=201, summary="Creating or Updating a Recording Rule (4.9.1)", responses=doc(RecordRule, 201)
)
async def create_record_rule(app_id: str, body: RecordRuleBody, svc: Svc, who: Principal = Who) -> JSONResponse:
    return JSONResponse(await svc.rules.create_or_replace(who, app_id, body.model_dump(mode="json")), status_code=201)


@router.get("", summary="Listing Recording Rules (4.9.2)", responses=doc(ListRulesResponse, 200))
async def list_record_rules(
    app_id: str, q: Annotated[ListRulesQuery, Query()], svc: Svc, who: Principal = Who
) -> JSONResponse:
    return JSONResponse(await svc.rules.list_rules(who, app_id, q.offset, q.limit))


@router.get("/{rule_id}", summary="Querying a Recording Rule (4.9.3)", responses=doc(RecordRule, 200))
async def show_record_rule(app_id: str, rule_id: str, svc: Svc, who: Principal = Who) -> JSONResponse:
    return JSONResponse(await svc.rules.show(who, app_id, rule_id))


@router.put("/{rule_id}", summary="Updating a Recording Rule (4.9.4)", responses=doc(RecordRule, 200))
async def update_record_rule(
    app_id: str, rule_id: str, body: RecordRuleBody, svc: Svc, who: Principal = Who
) -> JSONResponse:
    return JSONResponse(await svc.rules.update(who, app_id, rule_id, body.model_dump(mode="json")))


@router.delete("/{rule_id}", status_code=204, summary="Deleting a Recording Rule (4.9.5)", responses=doc(None, 204))
async def delete_record_rule(app_id: str, rule_id: str, svc: Svc, who: Principal = Who) -> Response:
    await svc.rules.delete(who, app_id, rule_id)
    return Response(status_code=204)
