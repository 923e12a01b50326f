"""spec 5 Statistical Analysis (the v1 paths the official SDK uses, and the reference's misspellings).

The statistics pipeline (QoS ingestion and rollups) is not built yet: these operations authenticate the
caller and answer 501 with a clear message rather than invent data.
"""

from __future__ import annotations

from fastapi import APIRouter

from emberrtc.api.auth import authorise
from emberrtc.domain.errors import NotImplementedYet
from emberrtc.domain.tenant import Principal

router = APIRouter(tags=["Statistical analysis"])
Who = authorise("stats")

PROJECT_PATHS = [
    "rooms",
    "users",
    "realtime/scale",
    "realtime/scale/dimension",
    "realtime/quality",
    "realtime/network",
    "history/usage",
    "history/scale",
    "history/quality",
    "client/qos/details",
    "client/abnormalevent",
    "client/event",
    # the reference's spellings (spec/README.md: accept them as aliases)
    "realtimetime/scale",
    "realtimetime/scale/dimension",
    "realtimetime/quality",
    "realtimetime/network",
]
GLOBAL_PATHS = ["abnormal-events", "abnormal-events/dimension", "abnormal-event", "abnormal-event/dimension"]


async def _not_built(who: Principal = Who) -> None:
    raise NotImplementedYet("the statistics API is not built yet in this version of Ember")


for _path in PROJECT_PATHS:
    router.add_api_route(f"/v1/{{project_id}}/rtc/{_path}", _not_built, methods=["GET"], include_in_schema=False)
for _path in GLOBAL_PATHS:
    router.add_api_route(f"/v1/rtc/data/{_path}", _not_built, methods=["GET"], include_in_schema=False)
