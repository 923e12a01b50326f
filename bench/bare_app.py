"""The baseline for bench/api.py: the same framework returning the same JSON, with no auth and no database.

Started as ``uvicorn bench.bare_app:app``; the JSON it returns is read from ``EMBER_BENCH_BARE_JSON``.
"""

from __future__ import annotations

import json
import os

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

with open(os.environ["EMBER_BENCH_BARE_JSON"]) as f:
    _BODIES = json.load(f)

app = FastAPI()


@app.get("/v2/apps/{app_id}")
async def show_app(app_id: str) -> JSONResponse:
    return JSONResponse(_BODIES["app"])


@app.post("/v2/apps/{app_id}/record-rules", status_code=201)
async def create_rule(app_id: str, request: Request) -> JSONResponse:
    json.loads(await request.body())  # read and parse the body, as any endpoint must
    return JSONResponse(_BODIES["rule"], status_code=201)
