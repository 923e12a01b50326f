"""The welcome page (``/``), the browser SDK (``/sdk/ember-rtc.js``) and a demo room page (``/demo``). Not
part of the SparkRTC API.

All three are static files shipped in the package (``emberrtc/api/static``); the demo page joins rooms through
the signalling WebSocket like any other client.
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
