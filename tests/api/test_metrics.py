"""``/metrics``: the Prometheus text format, with figures read back from the database and request latency
labelled by route template."""

from __future__ import annotations

import httpx
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from emberrtc.store.models import CallbackEvent, Room, RoomSession
from tests.support.server import ServerThread


def _scrape(server: ServerThread) -> dict[str, list[tuple[dict[str, str], float]]]:
    with httpx.Client(base_url=server.url, trust_env=False) as client:
        r = client.get("/metrics")
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/plain")
    out: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(r.text):
        for sample in family.samples:
            out.setdefault(sample.name, []).append((dict(sample.labels), float(sample.value)))
    return out


def test_metrics_report_the_database_and_request_latency(server: ServerThread, http: httpx.Client) -> None:
    created = http.post("/v2/apps", json={"app_name": "metrics"})
    assert created.status_code == 201
    app_id = created.json()["app_id"]
    assert http.get(f"/v2/apps/{app_id}").status_code == 200

    assert server.services is not None
    db = server.services.db

    def counts(s: Session) -> tuple[int, int, int]:
        online = s.scalar(select(func.count()).select_from(RoomSession).where(RoomSession.state == "ONLINE"))
        rooms = s.scalar(select(func.count()).select_from(Room).where(Room.state == "RUNNING"))
        backlog = s.scalar(select(func.count()).select_from(CallbackEvent).where(CallbackEvent.finished.is_(False)))
        return int(online or 0), int(rooms or 0), int(backlog or 0)

    online, rooms, backlog = server.call(db.run(counts))
    metrics = _scrape(server)
    assert metrics["ember_online_users"] == [({}, online)]
    assert metrics["ember_running_rooms"] == [({}, rooms)]
    assert metrics["ember_callback_backlog"] == [({}, backlog)]
    assert {labels["kind"] for labels, _ in metrics["ember_running_jobs"]} >= {"individual", "mix"}
    assert "ember_upload_backlog" in metrics and "ember_stats_pending_rows" in metrics
    # Latency by route template, never by concrete path (bounded labels).
    counted = {
        (labels["method"], labels["route"], labels["status"]): value
        for labels, value in metrics["ember_http_request_duration_seconds_count"]
    }
    assert counted[("GET", "/v2/apps/{app_id}", "200")] >= 1
    assert counted[("POST", "/v2/apps", "201")] >= 1
    assert not any(app_id in route for _, route, _ in counted)


def test_healthz_and_metrics_say_which_node_answered(server: ServerThread) -> None:
    assert server.services is not None
    node_id = server.services.settings.node_id
    with httpx.Client(base_url=server.url, trust_env=False) as client:
        health = client.get("/healthz")
    assert health.status_code == 200
    # A single node (no EMBER_REDIS_URL) without a media plane, as the API suite runs.
    assert health.json() == {"status": "ok", "node_id": node_id, "cluster": False, "media": False}
    assert _scrape(server)["ember_node_info"] == [({"node_id": node_id, "cluster": "false"}, 1.0)]
