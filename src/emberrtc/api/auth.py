"""Who is calling: IAM token (``X-Auth-Token``) or AK/SK signature (``Authorization: SDK-HMAC-SHA256``)."""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from dataclasses import replace
from typing import TYPE_CHECKING, Any, NamedTuple, TypeVar

from fastapi import Depends, Request, Response
from fastapi.routing import APIRoute

from emberrtc.api import aksk
from emberrtc.api.edge import PREFLIGHT
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
    return await _authenticate(request, services_of(request))


async def _authenticate(request: Request, svc: Services) -> Principal:
    scope = request.scope
    # Straight from the ASGI scope (names are lower-case there): one pass, no Headers object per lookup.
    headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
    token = headers.get("x-auth-token")
    if token:
        principal = await svc.tenants.principal_for_token(token)
    elif headers.get("authorization"):
        raw_path = scope.get("raw_path")
        signed = aksk.SignedRequest(
            method=scope["method"],
            raw_path=raw_path.decode("latin-1") if raw_path else request.url.path,
            raw_query=scope.get("query_string", b"").decode("latin-1"),
            headers=headers,
            body=b"",
        )
        # The header, the date and the AK are checked before the body is read (api/edge.py did the first
        # two already when the request has a body).
        auth = scope.get(PREFLIGHT) or aksk.preflight(signed, svc.clock.now(), svc.settings.sdk_date_skew)
        secret, principal = await svc.tenants.secret_for_ak(auth.access_key)
        signed = replace(signed, body=await request.body())  # read once; FastAPI's body parameter reuses it
        aksk.verify(signed, auth, secret)
        svc.tenants.note_used(auth.access_key)
    else:
        raise Unauthenticated("no credentials: send X-Auth-Token, or sign the request with AK/SK")
    project = headers.get("x-project-id")
    if project and project != principal.project_id:
        raise Unauthenticated("X-Project-Id is not the project of these credentials")
    return principal


def authorise(category: str) -> Principal:
    """Dependency: authenticate, then count the request against the tenant's limit for ``category``."""

    async def dependency(request: Request) -> Principal:
        svc = services_of(request)
        principal = await _authenticate(request, svc)
        await svc.rate_limiter.take(principal.domain_id, category)
        return principal

    return Depends(dependency)  # type: ignore[no-any-return]


class Caller(NamedTuple):
    """An authorised request's tenant and the services that answer it."""

    who: Principal
    svc: Services


_CALLER = "ember.caller"  # scope key
E = TypeVar("E", bound=Callable[..., Any])


def authorised(category: str) -> Callable[[E], E]:
    """Mark an endpoint of an :class:`AuthorisedRoute` router: its caller is authenticated and counted
    against the tenant's limit for ``category``; the endpoint gets them with :func:`caller`."""

    def mark(endpoint: E) -> E:
        endpoint.__ember_rate_category__ = category  # type: ignore[attr-defined]
        return endpoint

    return mark


def caller(request: Request) -> Caller:
    """The caller that :class:`AuthorisedRoute` authorised for this request."""
    return request.scope[_CALLER]  # type: ignore[no-any-return]


class AuthorisedRoute(APIRoute):
    """A route that authenticates and rate-limits before FastAPI handles the request: before the body is
    parsed or validated, so a caller without valid credentials gets 401 whatever it sent, and every request
    counts against the tenant's limit, well-formed or not. It does what the :func:`authorise` dependency
    does without FastAPI's per-dependency cost on every request (``docs/decisions.md``). Every endpoint must
    be marked with :func:`authorised`."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        category = getattr(self.endpoint, "__ember_rate_category__", None)
        if category is None:
            raise TypeError(f"{self.endpoint.__name__}: mark it @authorised(category)")
        handle = super().get_route_handler()

        async def authorised_handler(request: Request) -> Response:
            svc = services_of(request)
            principal = await _authenticate(request, svc)
            await svc.rate_limiter.take(principal.domain_id, category)
            request.scope[_CALLER] = Caller(principal, svc)
            return await handle(request)

        return authorised_handler
