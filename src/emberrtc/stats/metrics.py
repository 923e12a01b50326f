"""Prometheus metrics at ``/metrics`` (the standard ``prometheus_client`` text format).

- ``ember_online_users``, ``ember_running_rooms``: sessions ``ONLINE`` and rooms ``RUNNING`` in the database
  (all nodes sharing it);
- ``ember_running_jobs{kind}``: recording jobs not ``STOPPED`` by kind (``individual``, ``mix``) and state;
- ``ember_callback_backlog``: callbacks not yet delivered or given up; ``ember_upload_backlog``: files in a
  spool waiting to be stored;
- ``ember_janus_up`` (1 while this node's Janus answers), ``ember_janus_restarts_total`` (unexpected
  exits, each followed by a restart);
- ``ember_turn_up``, ``ember_turn_restarts_total``: the same for this node's embedded TURN relay (only
  with ``EMBER_TURN=embedded``);
- ``ember_stats_pending_rows``, ``ember_stats_dropped_rows_total``: this node's statistics buffer;
- ``ember_http_request_duration_seconds{method,route,status}``: request latency by route template;
- ``ember_node_info{node_id,cluster}`` (1): which node answered (``EMBER_NODE_ID``), and whether it is part
  of a cluster (``EMBER_REDIS_URL``).

Database figures are read when scraped (one unit of work); the rest is this node's. Each app has its own
registry (several apps can live in one process, as in the tests).
"""

from __future__ import annotations

import time
from typing import Any

from prometheus_client import CollectorRegistry, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import func, select
from sqlalchemy.orm import Session
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from emberrtc.store.models import CallbackEvent, Job, Room, RoomSession, Upload

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class _NodeCollector(Collector):
    """This node's live figures, read at each scrape."""

    def __init__(self, services: Any) -> None:
        self._services = services

    def collect(self) -> Any:
        svc = self._services
        node = GaugeMetricFamily(
            "ember_node_info", "The node that answered this scrape (always 1)", labels=["node_id", "cluster"]
        )
        node.add_metric([svc.settings.node_id, "true" if svc.cluster is not None else "false"], 1.0)
        yield node
        plane = svc.plane
        up = GaugeMetricFamily("ember_janus_up", "1 while this node's Janus answers its API, else 0")
        restarts = CounterMetricFamily("ember_janus_restarts", "Unexpected Janus exits (each is restarted)")
        if plane is not None:
            up.add_metric([], 1.0 if plane.process.ready else 0.0)
            restarts.add_metric([], float(plane.process.unexpected_exits))
        yield up
        yield restarts
        relay = svc.turn_relay
        if relay is not None:  # only with EMBER_TURN=embedded: an external relay is not this node's
            yield GaugeMetricFamily(
                "ember_turn_up", "1 while this node's TURN relay answers STUN, else 0", value=float(relay.ready)
            )
            yield CounterMetricFamily(
                "ember_turn_restarts",
                "Unexpected exits (or hangs) of the TURN relay (each is restarted)",
                value=float(relay.unexpected_exits),
            )
        writer = svc.stats_collector.writer
        yield GaugeMetricFamily(
            "ember_stats_pending_rows", "Statistics rows waiting to be written", value=writer.pending
        )
        yield CounterMetricFamily(
            "ember_stats_dropped_rows", "Statistics rows dropped (the buffer was full)", value=writer.dropped
        )


class EmberMetrics:
    """The registry of one app and the gauges refreshed from the database at scrape time."""

    def __init__(self, services: Any) -> None:
        self._services = services
        self.registry = CollectorRegistry(auto_describe=True)
        self.online_users = Gauge("ember_online_users", "Users in rooms (sessions ONLINE)", registry=self.registry)
        self.running_rooms = Gauge("ember_running_rooms", "Rooms with at least one user", registry=self.registry)
        self.running_jobs = Gauge(
            "ember_running_jobs", "Recording jobs not stopped", ["kind", "state"], registry=self.registry
        )
        self.callback_backlog = Gauge(
            "ember_callback_backlog",
            "Callbacks waiting for delivery (not delivered, not given up)",
            registry=self.registry,
        )
        self.upload_backlog = Gauge(
            "ember_upload_backlog", "Recording files waiting to be stored", registry=self.registry
        )
        self.request_seconds = Histogram(
            "ember_http_request_duration_seconds",
            "HTTP request latency by route template",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.registry.register(_NodeCollector(services))

    async def render(self) -> bytes:
        """Refresh the database gauges and render the text format."""

        def work(s: Session) -> tuple[int, int, list[tuple[str, str, int]], int, int]:
            count = func.count()
            online = s.scalar(select(count).select_from(RoomSession).where(RoomSession.state == "ONLINE")) or 0
            rooms = s.scalar(select(count).select_from(Room).where(Room.state == "RUNNING")) or 0
            jobs = [
                (kind, state, int(n))
                for kind, state, n in s.execute(
                    select(Job.kind, Job.state, count).where(Job.state != "STOPPED").group_by(Job.kind, Job.state)
                )
            ]
            callbacks = s.scalar(select(count).select_from(CallbackEvent).where(CallbackEvent.finished.is_(False))) or 0
            uploads = s.scalar(select(count).select_from(Upload).where(Upload.state == "pending")) or 0
            return int(online), int(rooms), jobs, int(callbacks), int(uploads)

        online, rooms, jobs, callbacks, uploads = await self._services.db.run(work)
        self.online_users.set(online)
        self.running_rooms.set(rooms)
        self.running_jobs.clear()
        for kind in ("individual", "mix"):
            self.running_jobs.labels(kind=kind, state="RUNNING").set(0)
        for kind, state, n in jobs:
            self.running_jobs.labels(kind=kind, state=state).set(n)
        self.callback_backlog.set(callbacks)
        self.upload_backlog.set(uploads)
        return generate_latest(self.registry)


class RequestTimer:
    """ASGI middleware: the latency of each HTTP request into ``ember_http_request_duration_seconds``,
    labelled by route template (``/v2/{project_id}/apps``, never the concrete path: bounded labels)."""

    def __init__(self, app: ASGIApp, metrics: EmberMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", None) or "unmatched"
            self.metrics.request_seconds.labels(scope.get("method", ""), template, str(status)).observe(
                time.perf_counter() - started
            )
