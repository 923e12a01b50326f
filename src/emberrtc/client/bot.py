"""``ember bot``: join a room and publish a synthetic camera until stopped, removed or dismissed.

The camera is 640x360 at 30 fps: a solid colour with a white square sweeping across once a second, and
a sine tone. ``--screen`` adds a screen-share stream (the complementary colour, 15 fps). The bot signs its
own join with the app key. Exit status: 0 when stopped (SIGINT/SIGTERM; it leaves cleanly), 2 when the
join is refused or the server cannot be reached, 3 when removed, the room is dismissed, or the connection
ends (the reason is printed).
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
from dataclasses import dataclass
from typing import TextIO

from websockets.exceptions import InvalidHandshake, InvalidURI

from emberrtc.client.room import JoinRefusedError, RoomClient, RoomError
from emberrtc.client.synthetic import ColourVideoTrack, ToneAudioTrack, parse_colour

EXIT_STOPPED, EXIT_REFUSED, EXIT_ENDED = 0, 2, 3

CAMERA_SIZE, CAMERA_FPS = (640, 360), 30
SCREEN_SIZE, SCREEN_FPS = (640, 360), 15


@dataclass(frozen=True)
class BotOptions:
    server: str
    app_id: str
    app_key: str
    room: str
    user: str
    colour: str = "red"
    tone: float = 440.0
    screen: bool = False
    codec: str | None = None


def _why(final: dict[str, object]) -> str:
    kind = final.get("type")
    if kind == "removed":
        return f"removed from the room: {final.get('message')} ({final.get('reason')})"
    if kind == "dismissed":
        return f"the room was dismissed: {final.get('message')}"
    if kind == "disconnected":
        return f"disconnected: {final.get('message')} ({final.get('reason')})"
    return f"the connection to the server ended (close code {final.get('code')})"


async def run_bot(options: BotOptions, *, out: TextIO = sys.stdout, stop: asyncio.Event | None = None) -> int:
    """Run the bot until ``stop`` is set (or SIGINT/SIGTERM), or the server ends its participation."""
    rgb = parse_colour(options.colour)

    def say(text: str) -> None:
        print(f"ember bot: {text}", file=out, flush=True)

    try:
        room = await RoomClient.join(
            options.server,
            app_id=options.app_id,
            room_id=options.room,
            user_id=options.user,
            app_key=options.app_key,
            nickname=f"bot {options.user}",
            platform_name="ember-bot",
        )
    except JoinRefusedError as exc:
        say(f"join refused: {exc}")
        return EXIT_REFUSED
    except (OSError, InvalidHandshake, InvalidURI, TimeoutError) as exc:
        say(f"cannot reach {options.server}: {exc}")
        return EXIT_REFUSED

    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    signals = (signal.SIGINT, signal.SIGTERM)
    for sig in signals:
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(sig, stop.set)
    try:
        say(f"joined room {options.room} as {options.user} (session {room.session_id})")
        try:
            width, height = CAMERA_SIZE
            await room.publish(
                "camera",
                video=ColourVideoTrack(rgb, width=width, height=height, fps=CAMERA_FPS),
                audio=ToneAudioTrack(options.tone),
                codec=options.codec,
            )
            colour = "#{:02x}{:02x}{:02x}".format(*rgb)
            codec = options.codec or "the server's codec"
            say(f"publishing camera: {colour} with a moving marker, {options.tone:g} Hz tone, {codec}")
            if options.screen:
                width, height = SCREEN_SIZE
                complement = (255 - rgb[0], 255 - rgb[1], 255 - rgb[2])
                await room.publish(
                    "screen",
                    video=ColourVideoTrack(complement, width=width, height=height, fps=SCREEN_FPS),
                    codec=options.codec,
                )
                say("publishing screen: #{:02x}{:02x}{:02x}".format(*complement))
        except RoomError as exc:
            if not room.ended.done():
                say(f"publishing failed: {exc}")
                await room.leave()
                return EXIT_ENDED
        stopped: asyncio.Future[object] = asyncio.ensure_future(stop.wait())
        ended: asyncio.Future[object] = asyncio.ensure_future(asyncio.shield(room.ended))
        try:
            await asyncio.wait({stopped, ended}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopped.cancel()
            ended.cancel()
        if room.ended.done():
            say(_why(room.ended.result()))
            await room.leave()
            return EXIT_ENDED
        await room.leave()
        say("left the room")
        return EXIT_STOPPED
    finally:
        for sig in signals:
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                loop.remove_signal_handler(sig)
