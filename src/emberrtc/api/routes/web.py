"""The browser SDK (``/sdk/ember-rtc.js``) and a demo room page (``/demo``). Not part of the SparkRTC API.

Both are static files shipped in the package (``emberrtc/api/static``); the demo page joins rooms through
the signalling WebSocket like any other client.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse

router = APIRouter(tags=["Browser SDK"], include_in_schema=False)

STATIC = Path(__file__).resolve().parent.parent / "static"


@router.get("/sdk/ember-rtc.js")
async def sdk() -> FileResponse:
    """The browser SDK, an ES module."""
    return FileResponse(STATIC / "ember-rtc.js", media_type="text/javascript; charset=utf-8")


@router.get("/demo")
async def demo() -> FileResponse:
    """A page to join a room with camera and microphone, see and hear the others and share the screen."""
    return FileResponse(STATIC / "demo.html", media_type="text/html; charset=utf-8")
