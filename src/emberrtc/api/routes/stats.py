"""spec 5 Statistical Analysis (the v1 paths the official SDK uses, and the reference's misspellings).

Thin handlers: authorise (rate category ``stats``, spec Table 1-2: 30 a minute), parse the query string
(``api.schemas.stats``: DATA.100011001 for a missing parameter), one read in ``stats.queries``, serialise.
The two operations the official SDK has beyond the reference's twelve (``client/abnormalevent``,
``client/event``) are not built and answer 501.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import APIRouter, Request

from emberrtc.api.auth import authorise, services_of
from emberrtc.api.json_response import JSONResponse
from emberrtc.api.schemas import stats as q
from emberrtc.domain.errors import NotImplementedYet, Unauthenticated
from emberrtc.domain.tenant import Principal
from emberrtc.stats.queries import StatsQueries

router = APIRouter(tags=["Statistical analysis"])
Who = authorise("stats")

Handler = Callable[[StatsQueries, Request, float, Principal], Awaitable[dict[str, Any]]]


def _project_paths(path: str) -> list[str]:
    """The SDK's path and the reference's misspellings of it (spec/README.md: accept them as aliases)."""
    paths = [f"/v1/{{project_id}}/rtc/{path}"]
    if path.startswith("realtime/"):
        rest = path.removeprefix("realtime/")
        paths += [f"/v1/{{project_id}}/rtc/{alias}/{rest}" for alias in ("realtimetime", "realtme")]
    return paths


def _route(paths: list[str], handler: Handler, summary: str) -> None:
    async def endpoint(request: Request, who: Principal = Who) -> JSONResponse:
        project = request.path_params.get("project_id")
        if project is not None and project != who.project_id:
            # as X-Project-Id (api.auth): a project in the path that the credentials do not belong to
            raise Unauthenticated("the project in the path is not the project of these credentials")
        svc = services_of(request)
        body = await handler(svc.stats_queries, request, svc.clock.now(), who)
        return JSONResponse(body)

    endpoint.__name__ = handler.__name__
    for i, path in enumerate(paths):
        router.add_api_route(path, endpoint, methods=["GET"], summary=summary, include_in_schema=i == 0)


async def rooms(s: StatsQueries, r: Request, now: float, who: Principal) -> dict[str, Any]:
    return await s.rooms(who, q.parse_rooms(r.query_params, now))


async def users(s: StatsQueries, r: Request, now: float, who: Principal) -> dict[str, Any]:
    return await s.users(who, q.parse_users(r.query_params, now))


async def realtime_scale(s: StatsQueries, r: Request, now: float, who: Principal) -> dict[str, Any]:
    return await s.realtime_scale(who, q.parse_series(r.query_params, now, q.SCALE_METRICS, with_sdk_type=False))


async def realtime_dimension(s: StatsQueries, r: Request, now: float, who: Principal) -> dict[str, Any]:
    return await s.realtime_dimension(who, q.parse_dimension(r.query_params))


async def realtime_quality(s: StatsQueries, r: Request, now: float, who: Principal) -> dict[str, Any]:
    series = q.parse_series(r.query_params, now, q.QUALITY_METRICS, with_sdk_type=True)
    return {"quality": await s.realtime_rate(who, series)}


async def realtime_network(s: StatsQueries, r: Request, now: float, who: Principal) -> dict[str, Any]:
    series = q.parse_series(r.query_params, now, q.NETWORK_METRICS, with_sdk_type=True)
    return {"network": await s.realtime_rate(who, series)}


async def usage(s: StatsQueries, r: Request, now: float, who: Principal) -> dict[str, Any]:
    return await s.usage(who, q.parse_usage(r.query_params, now))


async def history_scale(s: StatsQueries, r: Request, now: float, who: Principal) -> dict[str, Any]:
    return await s.history_scale(who, q.parse_history(r.query_params, now, q.HISTORY_SCALE_METRICS))


async def history_quality(s: StatsQueries, r: Request, now: float, who: Principal) -> dict[str, Any]:
    return await s.history_quality(who, q.parse_history(r.query_params, now, q.HISTORY_QUALITY_METRICS))


async def qos_details(s: StatsQueries, r: Request, now: float, who: Principal) -> dict[str, Any]:
    return await s.qos_details(who, q.parse_qos(r.query_params, now))


async def abnormal_events(s: StatsQueries, r: Request, now: float, who: Principal) -> dict[str, Any]:
    return await s.abnormal_events(who, q.parse_abnormal(r.query_params, now, grouped=False))


async def abnormal_dimension(s: StatsQueries, r: Request, now: float, who: Principal) -> dict[str, Any]:
    return await s.abnormal_dimension(who, q.parse_abnormal(r.query_params, now, grouped=True))


_route(_project_paths("rooms"), rooms, "Listing rooms (5.1)")
_route(_project_paths("users"), users, "Listing users (5.2)")
_route(_project_paths("realtime/scale"), realtime_scale, "Querying real-time scale data (5.3)")
_route(_project_paths("realtime/scale/dimension"), realtime_dimension, "Real-time scale distribution (5.4)")
_route(_project_paths("realtime/quality"), realtime_quality, "Querying real-time quality data (5.5)")
_route(_project_paths("realtime/network"), realtime_network, "Querying real-time network data (5.6)")
_route(["/v1/{project_id}/rtc/realtimedata"], realtime_scale, "Real-time scale data (5.3, the reference's path)")
_route(_project_paths("history/usage"), usage, "Querying usage (5.7)")
_route(_project_paths("history/scale"), history_scale, "Querying historical scale data (5.8)")
_route(_project_paths("history/quality"), history_quality, "Querying historical quality data (5.9)")
_route(_project_paths("client/qos/details"), qos_details, "Querying user call indicators (5.10)")
_route(
    ["/v1/rtc/data/abnormal-events", "/v1/rtc/data/abnormal-event"],
    abnormal_events,
    "Abnormal user experience events (5.11)",
)
_route(
    ["/v1/rtc/data/abnormal-event/dimension", "/v1/rtc/data/abnormal-events/dimension"],
    abnormal_dimension,
    "Distribution of users with abnormal events (5.12)",
)


async def _not_built(who: Principal = Who) -> None:
    raise NotImplementedYet("this statistics operation (beyond spec section 5) is not built in this version of Ember")


for _path in ("client/abnormalevent", "client/event"):
    router.add_api_route(f"/v1/{{project_id}}/rtc/{_path}", _not_built, methods=["GET"], include_in_schema=False)
