"""The IAM subset SparkRTC clients use (spec 3.1, 3.2, 6.3): password tokens and project discovery."""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request

from emberrtc.api.auth import authenticate, services
from emberrtc.api.json_response import JSONResponse
from emberrtc.bootstrap import Services
from emberrtc.domain.clock import spec_time
from emberrtc.domain.errors import InvalidParameterValue, MalformedRequestBody, MissingParameter, Unauthenticated
from emberrtc.domain.tenant import Principal

router = APIRouter(tags=["IAM"])
Svc = Annotated[Services, Depends(services)]


def _project(p: Principal, base: str) -> dict[str, Any]:
    return {
        "id": p.project_id,
        "name": p.project_name,
        "domain_id": p.domain_id,
        "parent_id": p.domain_id,
        "is_domain": False,
        "enabled": True,
        "description": "",
        "links": {"self": f"{base}/v3/projects/{p.project_id}", "next": None, "previous": None},
    }


def _get(d: Any, *path: str) -> Any:
    for key in path:
        if not isinstance(d, dict):
            return None
        d = d.get(key)
    return d


@router.post("/v3/auth/tokens", status_code=201, summary="Obtaining a user token (password method)")
async def issue_token(request: Request, svc: Svc) -> JSONResponse:
    """Body as in spec 3.1: ``auth.identity.password.user`` with ``name``, ``password`` and ``domain``
    (``name`` or ``id``); ``auth.scope.project`` (``name`` or ``id``) optional. Token in ``X-Subject-Token``."""
    try:
        body = json.loads(await request.body())
    except (ValueError, UnicodeDecodeError) as exc:
        raise MalformedRequestBody("the body is not JSON") from exc
    methods = _get(body, "auth", "identity", "methods")
    if methods != ["password"]:
        raise InvalidParameterValue('auth.identity.methods must be ["password"]')
    user = _get(body, "auth", "identity", "password", "user") or {}
    name, password = user.get("name"), user.get("password")
    domain_name, domain_id = _get(user, "domain", "name"), _get(user, "domain", "id")
    if not isinstance(name, str) or not isinstance(password, str) or not (domain_name or domain_id):
        raise MissingParameter("auth.identity.password.user needs name, password and domain.name (or domain.id)")
    issued = await svc.tenants.issue_token(name, password, domain_name, domain_id)
    p = issued.principal
    scope = _get(body, "auth", "scope", "project") or {}
    wrong_name = scope.get("name") not in (None, p.project_name)
    wrong_id = scope.get("id") not in (None, p.project_id)
    if wrong_name or wrong_id:
        raise Unauthenticated("the scoped project does not belong to this account")
    token = {
        "expires_at": spec_time(issued.expires_at),
        "issued_at": spec_time(issued.issued_at),
        "methods": ["password"],
        "user": {"id": p.domain_id, "name": p.user_name, "domain": {"id": p.domain_id, "name": p.domain_name}},
        "project": {"id": p.project_id, "name": p.project_name, "domain": {"id": p.domain_id, "name": p.domain_name}},
        "catalog": [],
        "roles": [{"id": "0", "name": "rtc_adm"}],
    }
    return JSONResponse({"token": token}, status_code=201, headers={"X-Subject-Token": issued.token})


@router.get("/v3/projects", summary="Querying project information")
@router.get("/v3/auth/projects", include_in_schema=False)
async def list_projects(request: Request, name: str | None = None) -> JSONResponse:
    """spec 6.3: the caller's projects (one per tenant), filtered by ``name`` as the SDK does."""
    p = await authenticate(request)
    base = str(request.base_url).rstrip("/")
    projects = [_project(p, base)] if name in (None, p.project_name) else []
    return JSONResponse(
        {"projects": projects, "links": {"self": f"{base}/v3/projects", "next": None, "previous": None}}
    )
