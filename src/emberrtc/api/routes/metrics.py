"""``GET /metrics``: Prometheus metrics (``stats.metrics``); off with ``EMBER_METRICS_ENABLED=false``.
``GET /healthz``: this node is up, and which node it is."""

from __future__ import annotations

from typing import Any

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


@router.get("/healthz", include_in_schema=False)
async def healthz(request: Request) -> dict[str, Any]:
    """Liveness for a load balancer: 200 while the server answers, saying which node answered
    (``EMBER_NODE_ID``), whether it is part of a cluster, and whether its media plane (Janus) is up."""
    services = request.app.state.services
    plane = services.plane
    return {
        "status": "ok",
        "node_id": services.settings.node_id,
        "cluster": services.cluster is not None,
        "media": plane is not None and plane.process.ready,
    }
