"""Two Python clients calling each other, run by the TURN tests inside a client network namespace.

    python -m tests.media.turn_peers SERVER_URL APP_ID APP_KEY ROOM

Both join ROOM, publish a coloured camera with a tone, subscribe to each other and read the other's
frames; it prints one JSON line: the colour each received, the ICE servers of the join answer, the TURN
URL each client chose, and the type of the local and remote candidate of every PeerConnection's selected
pair (``relay`` when the media went through the TURN relay). Exit status 0 once both have seen the other's
colour, 1 on any failure (with the traceback on stderr).
"""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any

from aiortc import RTCPeerConnection
from tests.media.media_checks import video_report

from emberrtc.client import ColourVideoTrack, RoomClient, ToneAudioTrack

COLOURS = {"alice": (220, 30, 30), "bob": (30, 60, 220)}


def selected_pair(pc: RTCPeerConnection) -> dict[str, str] | None:
    """The types of the candidates of ``pc``'s nominated ICE pair (aioice's, through aiortc's)."""
    for transceiver in pc.getTransceivers():
        ice = transceiver.receiver.transport.transport
        pair = ice._connection._nominated.get(1)  # component 1 (RTP; bundled, rtcp-mux)
        if pair is not None:
            return {
                "local": pair.local_candidate.type,
                "remote": pair.remote_candidate.type,
                "local_address": pair.local_candidate.host,
            }
    return None


async def main(server: str, app_id: str, app_key: str, room: str) -> dict[str, Any]:
    clients = {
        name: await RoomClient.join(server, app_id=app_id, room_id=room, user_id=name, app_key=app_key)
        for name in COLOURS
    }
    try:
        for name, client in clients.items():
            await client.publish(
                "camera", video=ColourVideoTrack(COLOURS[name], width=160, height=120), audio=ToneAudioTrack(440)
            )
        received: dict[str, list[int]] = {}
        subs = {}
        for name, client in clients.items():
            other = next(n for n in COLOURS if n != name)
            async with asyncio.timeout(30):
                await client.wait_stream(other, "camera")
            subs[name] = await client.subscribe(other, "camera")
        async with asyncio.timeout(60):
            reports = await asyncio.gather(*(video_report(sub.video, frames=30) for sub in subs.values()))
        for name, report in zip(subs, reports, strict=True):
            received[name] = list(report.colour)
        pairs = {}
        for name, client in clients.items():
            pairs[f"{name}/publish"] = selected_pair(client.publications["camera"].pc)
            assert client.subscriber_pc is not None
            pairs[f"{name}/subscribe"] = selected_pair(client.subscriber_pc)
        first = clients["alice"]
        return {
            "received": received,
            "pairs": pairs,
            "ice_servers": first.ice_servers,
            "usernames": {name: client.ice_servers[0]["username"] for name, client in clients.items()},
            "chosen": {name: [s.urls for s in (client._rtc_ice_servers or [])] for name, client in clients.items()},
        }
    finally:
        for client in clients.values():
            await client.leave()


if __name__ == "__main__":
    result = asyncio.run(main(*sys.argv[1:5]))
    print(json.dumps(result))
