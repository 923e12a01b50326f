"""``ember bot``: join a room and publish a synthetic camera until stopped, removed or dismissed.

The camera is 640x360 at 30 fps: a solid colour with a white square sweeping across once a second, and
a sine tone. ``--screen`` adds a screen-share stream (the complementary colour, 15 fps). The bot signs its
own join with the app key, and receives every stream the others in the room publish. Every few seconds
it prints what each of its streams sends: frames handed to the encoder (counted on the tracks), bitrate
(the RTCPeerConnection's ``outbound-rtp`` bytes) and what the server acknowledges (``remote-inbound-rtp``,
from Janus's RTCP receiver reports); and what each received stream brings: frames decoded (counted as
they are read from the tracks) and packets (``inbound-rtp`` of its receivers); and the bitrate of all it
receives (the subscriber connection's transport bytes: every received stream shares it).

Exit status (:data:`EXIT_STATUSES`, printed by ``ember bot --help``): 0 when stopped (SIGINT/SIGTERM; it
leaves cleanly), 2 when the arguments are wrong, the server cannot be reached or the join is refused, 3
when removed, the room is dismissed, the connection ends or publishing fails (the reason is printed).
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TextIO

from aiortc import RTCPeerConnection
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from websockets.exceptions import WebSocketException

from emberrtc.client.room import JoinRefusedError, Publication, RoomClient, RoomError, Subscription
from emberrtc.client.synthetic import ColourVideoTrack, ToneAudioTrack, parse_colour
from emberrtc.domain.redaction import mask_url, mask_urls

EXIT_STOPPED, EXIT_REFUSED, EXIT_ENDED = 0, 2, 3
#: Python's status for an uncaught exception, and the shell's for Ctrl-C before the bot has joined.
EXIT_ERROR, EXIT_INTERRUPTED = 1, 130

#: Every status ``ember bot`` can end with, and why (the ``--help`` text lists them).
EXIT_STATUSES = {
    EXIT_STOPPED: "stopped with Ctrl-C or SIGTERM: it left the room cleanly",
    EXIT_ERROR: "an unexpected error (a bug: the traceback is printed)",
    EXIT_REFUSED: "bad arguments, the server cannot be reached, or the join is refused (the reason is printed)",
    EXIT_ENDED: "removed from the room, the room dismissed, the connection ended or publishing failed "
    "(the reason is printed)",
    EXIT_INTERRUPTED: "interrupted with Ctrl-C before it had joined",
}

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
    #: Seconds between the media lines (0: none).
    report_every: float = 5.0
    #: Receive (and count) every stream the others publish.
    receive: bool = True


class MediaMeter:
    """What one published stream sends, measured for real: frames the tracks handed to the encoder,
    bytes the RTCPeerConnection sent (``outbound-rtp``) and what the server says it received
    (``remote-inbound-rtp``, from its RTCP receiver reports). Rates are over the time since the last line."""

    def __init__(
        self,
        publication: Publication,
        video: ColourVideoTrack | None,
        audio: ToneAudioTrack | None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.publication = publication
        self.tracks = {"video": video, "audio": audio}
        self.clock = clock
        self._since = clock()
        self._last: dict[str, tuple[int, int]] = {}
        #: Whether every track has sent bytes yet (the first such line says media is flowing).
        self.flowing = False

    async def line(self) -> str:
        """One line: per kind, frames sent and their rate, bitrate, and the server's receiver report."""
        report = await self.publication.pc.getStats()
        sent = {stat.kind: stat for stat in report.values() if stat.type == "outbound-rtp"}
        received = {stat.kind: stat for stat in report.values() if stat.type == "remote-inbound-rtp"}
        now = self.clock()
        elapsed = max(now - self._since, 1e-6)
        parts = []
        flowing = True
        for kind, track in self.tracks.items():
            if track is None:
                continue
            frames = track.frames
            bytes_sent = int(sent[kind].bytesSent) if kind in sent else 0
            last_frames, last_bytes = self._last.get(kind, (0, 0))
            self._last[kind] = (frames, bytes_sent)
            fps = (frames - last_frames) / elapsed
            kbps = (bytes_sent - last_bytes) * 8 / 1000 / elapsed
            flowing = flowing and bytes_sent > last_bytes
            text = f"{kind} {frames} frames sent ({fps:.1f}/s, {kbps:.0f} kbit/s)"
            if kind in received:
                stat = received[kind]
                text += f", server received {stat.packetsReceived} packets, {stat.packetsLost} lost"
            else:
                text += ", no receiver report from the server yet"
            parts.append(text)
        self._since = now
        prefix = self.publication.stream
        if flowing and not self.flowing:
            prefix += " (media is flowing)"
        elif not flowing:
            prefix += " (NOT flowing: nothing sent since the last line)"
        self.flowing = flowing
        return f"{prefix}: " + "; ".join(parts)


class ReceivedBytes:
    """The bitrate of everything received: the subscriber RTCPeerConnection's transport bytes."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._pc: RTCPeerConnection | None = None
        self._bytes = 0
        self._since = clock()

    async def line(self, pc: RTCPeerConnection) -> str:
        report = await pc.getStats()
        received = sum(int(stat.bytesReceived) for stat in report.values() if stat.type == "transport")
        if pc is not self._pc:  # a new subscriber connection (the old one failed): count from zero
            self._pc, self._bytes = pc, 0
        now = self.clock()
        kbps = (received - self._bytes) * 8 / 1000 / max(now - self._since, 1e-6)
        self._bytes, self._since = received, now
        return f"receiving {kbps:.0f} kbit/s in all"


class ReceiveMeter:
    """What one received stream brings, measured for real: frames decoded from its tracks (counted as they
    are read), packets and losses (``inbound-rtp`` of its own receivers)."""

    def __init__(self, subscription: Subscription, clock: Callable[[], float] = time.monotonic) -> None:
        self.subscription = subscription
        self.clock = clock
        self.frames = {"video": 0, "audio": 0}
        self._since = clock()
        self._last: dict[str, int] = {}
        tracks = {"video": subscription.video, "audio": subscription.audio}
        self._readers = [
            asyncio.create_task(self._read(kind, track), name=f"bot-receive-{subscription.user_id}-{kind}")
            for kind, track in tracks.items()
            if track is not None
        ]

    @property
    def name(self) -> str:
        return f"{self.subscription.user_id}/{self.subscription.stream}"

    async def _read(self, kind: str, track: MediaStreamTrack) -> None:
        # Reading is what decodes the frames (and keeps aiortc's queue from growing).
        with contextlib.suppress(MediaStreamError):
            while True:
                await track.recv()
                self.frames[kind] += 1

    async def line(self) -> str:
        """One line: per kind, frames received and their rate, packets and losses of this stream's own
        receivers (every stream shares the one subscriber RTCPeerConnection: its bytes are counted once, by
        :class:`ReceivedBytes`)."""
        mids = {str(t.get("mid")) for t in self.subscription.tracks}
        inbound = {}
        for transceiver in self.subscription.pc.getTransceivers():
            if transceiver.mid is not None and str(transceiver.mid) in mids:
                report = await transceiver.receiver.getStats()
                inbound.update({stat.kind: stat for stat in report.values() if stat.type == "inbound-rtp"})
        now = self.clock()
        elapsed = max(now - self._since, 1e-6)
        parts = []
        for kind, frames in self.frames.items():
            if kind not in inbound and not frames:
                continue
            fps = (frames - self._last.get(kind, 0)) / elapsed
            self._last[kind] = frames
            text = f"{kind} {frames} frames received ({fps:.1f}/s)"
            if kind in inbound:
                text += f", {inbound[kind].packetsReceived} packets, {inbound[kind].packetsLost} lost"
            parts.append(text)
        self._since = now
        return f"from {self.name}: " + "; ".join(parts)

    async def close(self) -> None:
        for reader in self._readers:
            reader.cancel()
        for reader in self._readers:
            with contextlib.suppress(asyncio.CancelledError):
                await reader


async def _receive_new_streams(
    room: RoomClient, receiving: dict[tuple[str, str], ReceiveMeter], say: Callable[[str], None]
) -> None:
    """Subscribe to every stream of the others not received yet; forget the ones that ended."""
    for key, meter in list(receiving.items()):
        if meter.subscription.ended.is_set():
            await meter.close()
            del receiving[key]
            say(f"stopped receiving {meter.name} ({meter.subscription.end_reason})")
    for user, peer in list(room.participants.items()):
        for stream in list(peer.streams):
            if (user, stream) in receiving:
                continue
            try:
                subscription = await room.subscribe(user, stream)
            except RoomError as exc:
                say(f"cannot receive {user}/{stream}: {exc}")
                continue
            receiving[(user, stream)] = ReceiveMeter(subscription)
            say(f"receiving {user}/{stream}")


async def _report_media(
    room: RoomClient,
    meters: list[MediaMeter],
    receiving: dict[tuple[str, str], ReceiveMeter] | None,
    every: float,
    say: Callable[[str], None],
) -> None:
    """Every ``every`` seconds: pick up the streams published since, then one line per stream, and the
    bitrate of all that is received."""
    received = ReceivedBytes()
    while True:
        if receiving is not None:
            await _receive_new_streams(room, receiving, say)
        await asyncio.sleep(every)  # the reporting period, not a synchronisation
        for meter in meters:
            say(await meter.line())
        live = [r for r in (receiving or {}).values() if not r.subscription.ended.is_set()]
        for receiver in live:
            say(await receiver.line())
        if live:
            say(await received.line(live[0].subscription.pc))


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
    except (OSError, WebSocketException, TimeoutError) as exc:
        say(f"cannot reach {mask_url(options.server)}: {mask_urls(str(exc))}")
        return EXIT_REFUSED
    except RoomError as exc:
        say(f"join failed: {exc}")
        return EXIT_REFUSED

    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    signals = (signal.SIGINT, signal.SIGTERM)
    for sig in signals:
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(sig, stop.set)
    meters: list[MediaMeter] = []
    receiving: dict[tuple[str, str], ReceiveMeter] | None = {} if options.receive else None
    reporter: asyncio.Task[None] | None = None
    try:
        say(f"joined room {options.room} as {options.user} (session {room.session_id})")
        try:
            width, height = CAMERA_SIZE
            video = ColourVideoTrack(rgb, width=width, height=height, fps=CAMERA_FPS)
            audio = ToneAudioTrack(options.tone)
            camera = await room.publish("camera", video=video, audio=audio, codec=options.codec)
            meters.append(MediaMeter(camera, video, audio))
            colour = "#{:02x}{:02x}{:02x}".format(*rgb)
            codec = options.codec or "the server's codec"
            say(f"publishing camera: {colour} with a moving marker, {options.tone:g} Hz tone, {codec}")
            if options.screen:
                width, height = SCREEN_SIZE
                complement = (255 - rgb[0], 255 - rgb[1], 255 - rgb[2])
                shared = ColourVideoTrack(complement, width=width, height=height, fps=SCREEN_FPS)
                screen = await room.publish("screen", video=shared, codec=options.codec)
                meters.append(MediaMeter(screen, shared, None))
                say("publishing screen: #{:02x}{:02x}{:02x}".format(*complement))
        except RoomError as exc:
            if not room.ended.done():
                say(f"publishing failed: {exc}")
                await room.leave()
                return EXIT_ENDED
        if options.report_every > 0:
            reporter = asyncio.create_task(
                _report_media(room, meters, receiving, options.report_every, say), name="bot-media-lines"
            )
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
        if reporter is not None:
            reporter.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reporter
        for receiver in (receiving or {}).values():
            await receiver.close()
        for sig in signals:
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                loop.remove_signal_handler(sig)
