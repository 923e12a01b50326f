"""Run inside a loopback-only network namespace by ``test_first_run``: make an app on the server at ``argv[1]``
(the tenant ``lonely`` in ``EMBER_DATA_DIR`` must exist), join a room and publish; print the error as JSON."""

from __future__ import annotations

import asyncio
import json
import sys

import httpx

from emberrtc.client import ColourVideoTrack, RoomClient, ToneAudioTrack
from emberrtc.client.room import RoomError


async def main(url: str) -> None:
    identity = {
        "methods": ["password"],
        "password": {"user": {"name": "lonely", "password": "first-run-pw", "domain": {"name": "lonely"}}},
    }
    async with httpx.AsyncClient(base_url=url, trust_env=False) as c:
        r = await c.post(
            "/v3/auth/tokens", json={"auth": {"identity": identity, "scope": {"project": {"name": "ember"}}}}
        )
        headers = {"X-Auth-Token": r.headers["X-Subject-Token"]}
        app = (await c.post("/v2/apps", headers=headers, json={"app_name": "lo"})).json()
        shown = (await c.get(f"/v2/apps/{app['app_id']}", headers=headers)).json()
    room = await RoomClient.join(
        url, app_id=app["app_id"], room_id="r", user_id="u", app_key=shown["authentication"]["app_key"]
    )
    try:
        await room.publish("camera", video=ColourVideoTrack((255, 0, 0)), audio=ToneAudioTrack(440.0))
        print(json.dumps({"code": None, "message": "published"}))
    except RoomError as exc:
        print(json.dumps({"code": exc.code, "message": exc.message}))
    finally:
        await room.leave()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
