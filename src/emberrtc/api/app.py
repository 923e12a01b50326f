"""The HTTP application: routes, the error mapper and request ids."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from emberrtc.api import errors
from emberrtc.api.routes import apps, files, iam, jobs, record_rules, rooms, signalling, stats, web
from emberrtc.bootstrap import Services

DESCRIPTION = """Ember speaks the Huawei Cloud SparkRTC server API (v2 management, IAM token and AK/SK
authentication). Errors are `{"error_code": "RTC.xxxxxxxx", "error_msg": "..."}` with the codes of the
SparkRTC reference, and every response carries `X-request-Id`."""


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
    for module in (iam, apps, record_rules, jobs, rooms, stats, signalling, files, web):
        app.include_router(module.router)
    app.add_middleware(errors.RequestIdMiddleware)
    return app
