"""Who is calling: IAM token (``X-Auth-Token``) or AK/SK signature (``Authorization: SDK-HMAC-SHA256``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from fastapi import Depends, Request

from emberrtc.api import aksk
from emberrtc.domain.errors import Unauthenticated
from emberrtc.domain.tenant import Principal

if TYPE_CHECKING:
    from emberrtc.bootstrap import Services


def services_of(request: Request) -> Services:
    return request.app.state.services  # type: ignore[no-any-return]


async def services(request: Request) -> Services:
    """Dependency. async on purpose: FastAPI runs plain-def dependencies in a thread pool (a hop per request)."""
    return services_of(request)


async def authenticate(request: Request) -> Principal:
    """The caller's tenant, or :class:`Unauthenticated` (401)."""
    svc = services_of(request)
    token = request.headers.get("x-auth-token")
    if token:
        principal = await svc.tenants.principal_for_token(token)
    elif request.headers.get("authorization"):
        raw_path = request.scope.get("raw_path")
        signed = aksk.SignedRequest(
            method=request.method,
            raw_path=raw_path.decode("latin-1") if raw_path else request.url.path,
            raw_query=request.scope.get("query_string", b"").decode("latin-1"),
            headers={k.lower(): v for k, v in request.headers.items()},
            body=await request.body(),
        )
        auth = aksk.preflight(signed, svc.clock.now(), svc.settings.sdk_date_skew)
        secret, principal = await svc.tenants.secret_for_ak(auth.access_key)
        aksk.verify(signed, auth, secret)
    else:
        raise Unauthenticated("no credentials: send X-Auth-Token, or sign the request with AK/SK")
    project = request.headers.get("x-project-id")
    if project and project != principal.project_id:
        raise Unauthenticated("X-Project-Id is not the project of these credentials")
    return principal


def authorise(category: str) -> Principal:
    """Dependency: authenticate, then count the request against the tenant's limit for ``category``."""

    async def dependency(request: Request) -> Principal:
        principal = await authenticate(request)
        services_of(request).rate_limiter.check(principal.domain_id, category)
        return principal

    return Depends(dependency)  # type: ignore[no-any-return]
