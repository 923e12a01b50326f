"""The HTTP application: routes, the error mapper and request ids."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import APIRouter, FastAPI
from fastapi.routing import APIRoute

from emberrtc.api import errors
from emberrtc.api.edge import EdgeMiddleware
from emberrtc.api.routes import apps, files, iam, jobs, record_rules, rooms, signalling, stats, web
from emberrtc.bootstrap import Services

DESCRIPTION = """Ember speaks the Huawei Cloud SparkRTC server API (v2 management, IAM token and AK/SK
authentication). Errors are `{"error_code": "RTC.xxxxxxxx", "error_msg": "..."}` with the codes of the
SparkRTC reference, and every response carries `X-request-Id`."""


def _add_routes(app: FastAPI, router: APIRouter) -> None:
    """Put a router's routes in the app's own route list, as ``@app.get`` would, instead of
    ``include_router``: through an included router every request re-walks that router's routes (twice for
    the router that matches, with per-route context switching), which cost the hot management endpoints
    more than their AK/SK check (``docs/decisions.md``). Only for plain routers: the route objects already
    carry the router's prefix and tags, and there is nothing else an inclusion would add."""
    assert not router.dependencies and router.include_in_schema, "include_router it instead"
    assert all(isinstance(r, APIRoute) for r in router.routes), "include_router it instead"
    app.router.routes.extend(router.routes)


def create_app(services: Services, *, manage_lifecycle: bool = True) -> FastAPI:
    """Build the app around ready services; with ``manage_lifecycle`` it starts and closes them."""

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        if manage_lifecycle:
            await services.start()
        try:
            yield
        finally:
            if manage_lifecycle:
                await services.close()

    app = FastAPI(title="Ember", version="0.1.0", description=DESCRIPTION, lifespan=lifespan)
    app.state.services = services
    errors.install(app)
    for module in (iam, record_rules, apps):
        _add_routes(app, module.router)
    for module in (jobs, rooms, stats, signalling, files, web):
        app.include_router(module.router)
    app.add_middleware(EdgeMiddleware, services=services)
    app.add_middleware(errors.RequestIdMiddleware)  # outermost: edge refusals carry the id too
    return app
