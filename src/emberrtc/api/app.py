"""The HTTP application: routes, the error mapper and request ids."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import APIRouter, FastAPI
from fastapi.openapi.utils import get_openapi
from fastapi.routing import APIRoute

from emberrtc.api import errors
from emberrtc.api.body import DOCUMENTED_BODIES
from emberrtc.api.edge import EdgeMiddleware
from emberrtc.api.routes import apps, docs, files, iam, jobs, metrics, record_rules, rooms, signalling, stats, web
from emberrtc.api.schemas.responses import EDGE_ERRORS, ErrorBody
from emberrtc.bootstrap import Services
from emberrtc.console import routes as console
from emberrtc.stats.metrics import EmberMetrics, RequestTimer

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


def _error_response(text: str) -> dict[str, Any]:
    return {
        "description": text,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}},
    }


def openapi_document(app: FastAPI) -> dict[str, Any]:
    """FastAPI's document, made to say what the server does: a bad request is 400 with the catalogue's
    body (FastAPI would say 422), every operation lists the errors the edge and router can answer, and
    the bodies endpoints validate themselves (``body_doc``) have their schemas in the components."""
    if app.openapi_schema:
        return app.openapi_schema
    document = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
    schemas = document.setdefault("components", {}).setdefault("schemas", {})
    for model in sorted(DOCUMENTED_BODIES, key=lambda m: m.__name__):
        schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
        schemas.update(schema.pop("$defs", {}))
        schemas[model.__name__] = schema
    schemas.setdefault("ErrorBody", ErrorBody.model_json_schema())
    for name in ("HTTPValidationError", "ValidationError"):
        schemas.pop(name, None)
    for operations in document["paths"].values():
        for operation in operations.values():
            responses = operation.setdefault("responses", {})
            responses.pop("422", None)
            for status, text in EDGE_ERRORS.items():
                responses.setdefault(str(status), _error_response(text))
    app.openapi_schema = document
    return document


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

    # docs_url/redoc_url None: routes/docs.py serves both pages with their assets from the package (offline).
    app = FastAPI(
        title="Ember", version="0.1.0", description=DESCRIPTION, lifespan=lifespan, docs_url=None, redoc_url=None
    )
    app.state.services = services
    errors.install(app)
    for module in (iam, record_rules, apps):
        _add_routes(app, module.router)
    for module in (jobs, rooms, stats, signalling, files, web, docs, metrics):
        app.include_router(module.router)
    app.include_router(console.router)  # the web console, /console (not part of the SparkRTC API)
    app.openapi = lambda: openapi_document(app)  # type: ignore[method-assign]
    app.state.metrics = EmberMetrics(services)
    app.add_middleware(RequestTimer, metrics=app.state.metrics)
    app.add_middleware(EdgeMiddleware, services=services)
    app.add_middleware(errors.RequestIdMiddleware)  # outermost: edge refusals carry the id too
    return app
