"""``GET /metrics``: Prometheus metrics (``stats.metrics``); off with ``EMBER_METRICS_ENABLED=false``."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from emberrtc.domain import errors as E
from emberrtc.stats.metrics import CONTENT_TYPE

router = APIRouter(tags=["Metrics"])


@router.get("/metrics", include_in_schema=False)
async def metrics(request: Request) -> Response:
    """The Prometheus text format. Unauthenticated, like any scrape target: expose the port only to the
    monitoring network, or turn it off (``metrics_enabled``)."""
    services = request.app.state.services
    if not services.settings.metrics_enabled:
        raise E.RouteNotFound("metrics are turned off on this server")
    return Response(await request.app.state.metrics.render(), media_type=CONTENT_TYPE)
