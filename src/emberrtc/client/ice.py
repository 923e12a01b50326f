"""Which TURN URL the Python client gives aiortc.

The join answer hands the client the server's relay as WebRTC ``iceServers`` (several URLs: UDP, TCP,
TLS). A browser tries them all; aiortc (aioice) uses only the first TURN URL it supports, and a client
whose network drops UDP would then never get a relayed candidate. So the client probes: it makes a real
TURN allocation on every URL at once (and deletes it), and keeps the first URL in the server's order of
preference that works, not waiting more than :data:`GRACE` for a preferred one once a later one has
succeeded. The probe runs once per client, at its first PeerConnection.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from typing import Any

from aioice import turn
from aiortc import RTCIceServer
from aiortc.rtcicetransport import parse_stun_turn_uri

__all__ = ["GRACE", "PROBE_TIMEOUT", "choose_ice_servers", "probe_turn"]

log = logging.getLogger(__name__)

#: Longest wait for a TURN allocation on one URL.
PROBE_TIMEOUT = 3.0
#: Once a URL has worked, how much longer a URL the server prefers (listed earlier) may take.
GRACE = 0.5


async def probe_turn(url: str, username: str, password: str, within: float = PROBE_TIMEOUT) -> bool:
    """True when the relay at ``url`` grants an allocation with these credentials (then deleted)."""
    parsed = parse_stun_turn_uri(url)
    try:
        async with asyncio.timeout(within):
            transport, _ = await turn.create_turn_endpoint(
                asyncio.DatagramProtocol,
                server_addr=(parsed["host"], parsed["port"]),
                username=username,
                password=password,
                ssl=parsed["scheme"] == "turns",
                transport=parsed["transport"],
            )
    except Exception as exc:  # refused, unreachable, TLS failure, timeout
        log.info("TURN relay %s not usable from here: %s", url, exc or type(exc).__name__)
        return False
    transport.close()  # deletes the allocation (Refresh with lifetime 0), in the background
    return True


def _candidates(ice_servers: Sequence[dict[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
    found = []
    for server in ice_servers:
        urls = server.get("urls", [])
        for url in [urls] if isinstance(urls, str) else urls:
            try:
                parsed = parse_stun_turn_uri(url)
            except ValueError:
                continue
            # What aioice can do: turn: over UDP or TCP, turns: over TCP.
            if parsed["scheme"] == "turn" or (parsed["scheme"] == "turns" and parsed["transport"] == "tcp"):
                found.append((url, server))
    return found


async def choose_ice_servers(ice_servers: Sequence[dict[str, Any]]) -> list[RTCIceServer]:
    """The one TURN server (as aiortc's ``iceServers``) to use from the join answer's ``ice_servers``, or
    ``[]`` when there is none or none works from here (the client then connects directly, or not at all)."""
    candidates = _candidates(ice_servers)
    if not candidates:
        return []
    tasks = [
        asyncio.create_task(probe_turn(url, str(server.get("username")), str(server.get("credential"))))
        for url, server in candidates
    ]
    loop = asyncio.get_running_loop()
    deadline = loop.time() + PROBE_TIMEOUT + 1

    def best(complete: bool) -> int | None:
        """The index of the most preferred URL that worked; with ``complete``, only if every URL before it
        has failed (so none preferred may still work)."""
        for index, task in enumerate(tasks):
            if not task.done():
                if complete:
                    return None
                continue
            if task.result():
                return index
        return None

    try:
        while True:
            chosen = best(complete=True)
            pending = [t for t in tasks if not t.done()]
            if chosen is None and not pending:
                return []  # every probe failed
            if chosen is None and best(complete=False) is not None:
                deadline = min(deadline, loop.time() + GRACE)
            remaining = deadline - loop.time()
            if chosen is None and remaining <= 0:
                chosen = best(complete=False)  # the preferred ones are too slow: the best that worked
                if chosen is None:
                    return []
            if chosen is not None:
                url, server = candidates[chosen]
                return [RTCIceServer(urls=url, username=server.get("username"), credential=server.get("credential"))]
            await asyncio.wait(pending, timeout=remaining, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
