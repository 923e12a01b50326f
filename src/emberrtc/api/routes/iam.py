"""The IAM subset SparkRTC clients use (spec 3.1, 3.2, 6.3): password tokens and project discovery."""

from __future__ import annotations

import contextlib
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request

from emberrtc.api.auth import authenticate, services
from emberrtc.api.body import body_doc, parse_body
from emberrtc.api.json_response import JSONResponse
from emberrtc.api.schemas.iam import TokenRequest
from emberrtc.api.schemas.responses import TokenResponse, doc
from emberrtc.bootstrap import Services
from emberrtc.domain.clock import spec_time
from emberrtc.domain.errors import RateLimited, Unauthenticated
from emberrtc.domain.tenant import IssuedToken, Principal

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


def signin_keys(user: str, domain: str, request: Request) -> list[tuple[str, str]]:
    """What a failed sign-in counts against (``settings.signin_limits``): the user from this address, the
    address over all users, the user over all addresses. The client address is the peer's, or what a
    trusted proxy says (``EMBER_TRUSTED_PROXIES``)."""
    address = request.client.host if request.client else "unknown"
    who = f"{user}\x00{domain}"
    return [(f"{who}\x00{address}", "user_address"), (address, "address"), (who, "user")]


async def limited_sign_in(
    svc: Services,
    request: Request,
    user_name: str,
    password: str,
    domain_name: str | None,
    domain_id: str | None,
    project: tuple[str | None, str | None] | None = None,
) -> IssuedToken:
    """The password check of ``POST /v3/auth/tokens`` and of the console's sign-in, behind one limit on
    failed sign-ins (``signin_limits``): past it, :class:`RateLimited` without checking the password."""
    attempts = signin_keys(user_name, domain_name or f"id:{domain_id}", request)
    limiter = svc.signin_limiter
    waits = [w for key, category in attempts if (w := await limiter.peek(key, category)) is not None]
    if waits:  # refused without checking the password: a guess past the limit tells nothing
        wait = max(waits)
        raise RateLimited(f"too many failed sign-ins; retry after {wait:.0f} s", retry_after=wait)
    try:
        return await svc.tenants.issue_token(user_name, password, domain_name, domain_id, project)
    except Unauthenticated:
        for key, category in attempts:
            with contextlib.suppress(RateLimited):
                await limiter.take(key, category)
        raise


@router.post(
    "/v3/auth/tokens",
    status_code=201,
    summary="Obtaining a user token (password method)",
    openapi_extra=body_doc(TokenRequest),
    responses=doc(TokenResponse, 201),
)
async def issue_token(request: Request, svc: Svc) -> JSONResponse:
    """Body as in spec 3.1: ``auth.identity.password.user`` with ``name``, ``password`` and ``domain``
    (``name`` or ``id``); ``auth.scope.project`` (``name`` or ``id``) optional. Token in ``X-Subject-Token``.
    Failed sign-ins are limited per user and client address (``signin_limits``): 429 with ``Retry-After``."""
    body = await parse_body(TokenRequest, request)  # the whole body checked before anything is stored
    user = body.auth.identity.password.user
    project = body.auth.scope.project if body.auth.scope else None
    issued = await limited_sign_in(
        svc,
        request,
        user.name,
        user.password,
        user.domain.name,
        user.domain.id,
        (project.name, project.id) if project is not None else None,
    )
    p = issued.principal
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
