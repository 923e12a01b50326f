"""The welcome page (``/``), the browser SDK (``/sdk/ember-rtc.js``), a demo room page (``/demo``) and a
recording player (``/player``). Not part of the SparkRTC API.

All are static files shipped in the package (``emberrtc/api/static``); the demo page joins rooms through
the signalling WebSocket like any other client. The player plays a recording's ``download_url``: HLS
through hls.js (vendored, ``static/vendor/README.md`` says from where) where the browser has no HLS of
its own, MP4 natively.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse

router = APIRouter(tags=["Browser SDK"], include_in_schema=False)

STATIC = Path(__file__).resolve().parent.parent / "static"


@router.get("/")
async def welcome() -> FileResponse:
    """What this server is, and where to go from here: the API documentation and the demo room."""
    return FileResponse(STATIC / "index.html", media_type="text/html; charset=utf-8")


@router.get("/sdk/ember-rtc.js")
async def sdk() -> FileResponse:
    """The browser SDK, an ES module."""
    return FileResponse(STATIC / "ember-rtc.js", media_type="text/javascript; charset=utf-8")


@router.get("/demo")
async def demo() -> FileResponse:
    """A page to join a room with camera and microphone, see and hear the others and share the screen."""
    return FileResponse(STATIC / "demo.html", media_type="text/html; charset=utf-8")


@router.get("/player")
async def player() -> FileResponse:
    """A page that plays a recording from its ``download_url`` (given after ``#url=``)."""
    return FileResponse(STATIC / "player.html", media_type="text/html; charset=utf-8")


@router.get("/player/hls.light.min.js")
async def hls_js() -> FileResponse:
    """hls.js (Apache-2.0), for browsers without HLS of their own."""
    return FileResponse(STATIC / "vendor" / "hls.light.min.js", media_type="text/javascript; charset=utf-8")
