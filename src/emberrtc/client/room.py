"""A participant in an Ember room, on aiortc: join, publish, subscribe, leave.

Speaks the signalling protocol of :mod:`emberrtc.api.routes.signalling` over one WebSocket; each
published stream is its own aiortc PeerConnection, and every subscription comes on one subscriber
PeerConnection that the server renegotiates (ICE servers: only the server's TURN relay handed in the
join answer, if it has one, so the client never contacts a public STUN server; bundled, so all media
shares one transport). :meth:`RoomClient.subscribe` calls made together
(``asyncio.gather``) are sent as one request, so one renegotiation.

    async with await RoomClient.join("http://127.0.0.1:8080", app_id=..., room_id="r1", user_id="alice",
                                     app_key=...) as room:
        await room.publish("camera", video=ColourVideoTrack((255, 0, 0)), audio=ToneAudioTrack(440))
        event = await room.wait_event(lambda e: e["type"] == "stream_published")
        sub = await room.subscribe(event["user_id"], event["stream"])
        frame = await sub.video.recv()

When the signalling connection is lost unexpectedly (the node died, the network broke; not after a leave,
a removal or a dismissal) the client rejoins on its own for up to ``rejoin`` seconds (30 by default), with
backoff, through the URL it was given (a load balancer) and the live nodes the cluster named in its join
answer (``nodes``); it publishes its streams again and subscribes again to those it received that are still
live. The events ``{"type": "reconnecting"}`` and ``{"type": "reconnected", "server", "subscriptions"}``
say so (:meth:`RoomClient.wait_event`); only when rejoining fails does :attr:`RoomClient.ended` resolve
(``connection_lost``).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import itertools
import json
import logging
import platform
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from aiortc import RTCConfiguration, RTCIceServer, RTCPeerConnection, RTCRtpSender, RTCSessionDescription
from aiortc.exceptions import InvalidStateError
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from aiortc.rtcconfiguration import RTCBundlePolicy
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from emberrtc.client.ice import choose_ice_servers
from emberrtc.client.qos import FrameMeter, QosReporter

__all__ = [
    "FINAL_EVENTS",
    "JoinRefusedError",
    "Publication",
    "RemoteParticipant",
    "RoomClient",
    "RoomError",
    "Subscription",
    "sign_join",
    "signalling_url",
]

log = logging.getLogger(__name__)

SIGNALLING_PATH = "/v1/rtc/signalling"
#: Events after which the server closes the connection.
FINAL_EVENTS = ("left", "removed", "dismissed", "disconnected")
#: Default signature validity: spec README recommends now + 2 h.
DEFAULT_VALIDITY = 2 * 3600
SDK_VERSION = "emberrtc-python/0.1.0"
#: Most ``redirect`` answers followed in one join (a cluster sends a join once, to the room's node; more
#: happen only while a room's placement moves, e.g. off a node that died).
MAX_REDIRECTS = 3
#: Seconds a client tries to rejoin after losing its connection (``RoomClient.join(rejoin=...)``).
DEFAULT_REJOIN = 30.0
#: First and longest wait between two rejoin attempts (doubling in between).
REJOIN_BACKOFF = (0.25, 2.0)


def sign_join(app_key: str, app_id: str, room_id: str, user_id: str, ctime: int | str) -> str:
    """``hex(HMAC-SHA256(key=app_key, msg=app_id + room_id + user_id + ctime))`` (spec README)."""
    message = f"{app_id}{room_id}{user_id}{ctime}".encode()
    return hmac.new(app_key.encode(), message, hashlib.sha256).hexdigest()


def signalling_url(server: str) -> str:
    """The WebSocket URL for a server given as ``http(s)://host:port`` or a full ``ws(s)://`` URL."""
    parts = urlsplit(server)
    scheme = {"http": "ws", "https": "wss"}.get(parts.scheme, parts.scheme)
    if scheme not in ("ws", "wss"):
        raise ValueError(f"server must be an http(s):// or ws(s):// URL, got {server!r}")
    path = parts.path.rstrip("/") if parts.path.rstrip("/").endswith(SIGNALLING_PATH) else SIGNALLING_PATH
    return urlunsplit((scheme, parts.netloc, path, "", ""))


class RoomError(Exception):
    """The server answered a request with an error (``code`` from the SparkRTC catalogue)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


class JoinRefusedError(RoomError):
    """The server refused the join (bad signature, expired ``ctime``, unknown or disabled app...)."""


@dataclass
class RemoteParticipant:
    user_id: str
    nickname: str | None
    #: Live streams: kind (``camera``/``screen``) -> ``{"audio": bool, "video": bool}``.
    streams: dict[str, dict[str, bool]] = field(default_factory=dict)


@dataclass(eq=False)
class Publication:
    """A stream this client publishes."""

    stream: str
    pc: RTCPeerConnection
    #: Tracks as the server negotiated them: ``mid``, ``type``, ``codec``.
    tracks: list[dict[str, Any]]


class SubscribedTrack(MediaStreamTrack):
    """One subscription's track, received on the shared subscriber PeerConnection: its ``recv()`` raises
    ``MediaStreamError`` once the subscription ends, while the PeerConnection (and the receiver this reads
    from, which a later subscription to the same stream may use again) carries on."""

    def __init__(self, source: MediaStreamTrack) -> None:
        super().__init__()
        self.kind = source.kind
        self._source = source
        #: Tasks waiting in recv(), and those of them that stop() cancelled.
        self._readers: set[asyncio.Task[Any]] = set()
        self._stopped_readers: set[asyncio.Task[Any]] = set()

    async def recv(self) -> Any:
        if self.readyState != "live":
            raise MediaStreamError
        task = asyncio.current_task()
        assert task is not None
        self._readers.add(task)
        try:
            # Awaited directly (no task per frame: a room's worth of tracks reads hundreds a second).
            return await self._source.recv()
        except asyncio.CancelledError:
            if task not in self._stopped_readers:
                raise
            task.uncancel()  # stop()'s cancellation, not the caller's
            raise MediaStreamError from None
        finally:
            self._readers.discard(task)
            self._stopped_readers.discard(task)

    def stop(self) -> None:
        super().stop()
        for task in self._readers:
            self._stopped_readers.add(task)
            task.cancel()


@dataclass(eq=False)
class Subscription:
    """Another participant's stream this client receives. ``video``/``audio`` are its tracks; their
    ``recv()`` raises ``MediaStreamError`` once the subscription ends. ``pc`` is the subscriber
    PeerConnection, shared by every subscription of this client."""

    id: str
    user_id: str
    stream: str
    pc: RTCPeerConnection
    #: Its tracks in ``pc``: ``mid``, ``type``, ``codec`` (and the publisher's ``feed_mid``).
    tracks: list[dict[str, Any]] = field(default_factory=list)
    video: MediaStreamTrack | None = None
    audio: MediaStreamTrack | None = None
    ended: asyncio.Event = field(default_factory=asyncio.Event)
    end_reason: str | None = None


def _peer_connection(ice_servers: list[RTCIceServer]) -> RTCPeerConnection:
    # Only the server's TURN relay (from the join answer), if any: with iceServers left out aiortc would
    # ask a public STUN server. MAX_BUNDLE: see DESIGN.md.
    return RTCPeerConnection(RTCConfiguration(iceServers=ice_servers, bundlePolicy=RTCBundlePolicy.MAX_BUNDLE))


async def _connect(
    server: str, message: dict[str, Any], request_timeout: float
) -> tuple[ClientConnection, dict[str, Any], str, list[dict[str, Any]]]:
    """Send ``join`` to ``server``, following ``redirect`` answers: the open connection, the ``joined``
    answer, the server joined and the redirects. Raises :class:`JoinRefusedError` if refused."""
    redirects: list[dict[str, Any]] = []
    while True:
        # proxy=None: never send signalling through a proxy from the environment.
        url = signalling_url(server)
        ws = await connect(url, proxy=None, max_size=4 * 1024 * 1024, open_timeout=request_timeout)
        try:
            await ws.send(json.dumps({k: v for k, v in message.items() if v is not None}))
            async with asyncio.timeout(request_timeout):
                reply = json.loads(await ws.recv())
            if reply.get("type") == "error":
                raise JoinRefusedError(reply.get("code", ""), reply.get("message", ""))
            if reply.get("type") == "redirect":
                server = _redirect_target(reply, redirects)
                await ws.close()
                continue
            if reply.get("type") != "joined":
                raise RoomError("RTC.00002000", f"unexpected answer to join: {reply!r}")
        except BaseException:
            await ws.close()
            raise
        return ws, reply, server, redirects


def _redirect_target(reply: dict[str, Any], redirects: list[dict[str, Any]]) -> str:
    """Where a ``redirect`` answer sends the join (a node of a cluster hosting the room), after checks: at
    most :data:`MAX_REDIRECTS` in a row, and an http(s) or ws(s) URL."""
    redirects.append(reply)
    if len(redirects) > MAX_REDIRECTS:
        raise RoomError("RTC.00002000", f"redirected more than {MAX_REDIRECTS} times: {redirects!r}")
    target = reply.get("url")
    try:
        signalling_url(str(target))
    except ValueError:
        raise RoomError("RTC.00002000", f"redirected to an unusable URL: {target!r}") from None
    return str(target)


class RoomClient:
    """One participant's connection to a room. Create it with :meth:`join`."""

    #: The server it joined through: the one given to :meth:`join`, or the node a cluster sent it to.
    server: str = ""
    #: The ``redirect`` answers that led there (a cluster's node hosting the room), in order.
    redirects: list[dict[str, Any]]

    def __init__(
        self,
        ws: ClientConnection,
        joined: dict[str, Any],
        *,
        request_timeout: float = 15.0,
        stats_interval: float | None = 5.0,
        join_ms: float | None = None,
    ) -> None:
        self._ws = ws
        self.redirects = []
        self.room_id: str = joined["room_id"]
        self.user_id: str = joined["user_id"]
        self._ice_choice = asyncio.Lock()
        self.request_timeout = request_timeout
        self._take_answer(joined)
        #: Rejoining after a lost connection: for how long (None: never), with which join, through which URL.
        self.rejoin: float | None = None
        self._join_message: dict[str, Any] = {}
        self._entry = ""
        self._leaving = False
        #: What to publish and subscribe to again after a rejoin: stream -> (video, audio, codec); (user, stream).
        self._published: dict[str, tuple[MediaStreamTrack | None, MediaStreamTrack | None, str | None]] = {}
        self._subscribed: set[tuple[str, str]] = set()
        self._rejoining: asyncio.Task[None] | None = None
        #: Every event received, in order.
        self.history: list[dict[str, Any]] = []
        #: The final event (``left``, ``removed``, ``dismissed``, ``disconnected``, or ``connection_lost``).
        self.ended: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self.publications: dict[str, Publication] = {}
        self.subscriptions: dict[str, Subscription] = {}
        #: The subscriber PeerConnection (made by the first subscription; None again if the server closes it).
        self.subscriber_pc: RTCPeerConnection | None = None
        #: One renegotiation of the subscriber PeerConnection at a time.
        self._negotiation = asyncio.Lock()
        #: Subscriptions asked for and not yet requested: (user_id, stream, future).
        self._wanted: list[tuple[str, str, asyncio.Future[Subscription]]] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self._changed = asyncio.Condition()
        self._pending: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._ids = itertools.count(2)
        self._reader = asyncio.create_task(self._read(), name=f"room-client-{self.user_id}")
        #: QoS reports over signalling every ``stats_interval`` seconds (None: none are sent).
        self.qos = QosReporter(self, self._request, stats_interval or 5.0)
        if join_ms is not None:
            self.qos.joined(join_ms)
        if stats_interval is not None:
            self.qos.start()

    def _take_answer(self, joined: dict[str, Any]) -> None:
        """The session a ``joined`` answer describes (at the join, and again at each rejoin)."""
        self.session_id: str = joined["session_id"]
        #: The server's TURN relay with this session's credential (``RTCIceServer`` dicts), or [].
        self.ice_servers: list[dict[str, Any]] = list(joined.get("ice_servers") or [])
        #: The one TURN URL aiortc is given (aioice uses one): chosen by a probe at the first PeerConnection.
        self._rtc_ice_servers: list[RTCIceServer] | None = None
        #: In a cluster, the live nodes' public URLs at the join: where to rejoin if this node is lost.
        self.nodes: list[str] = [str(u) for u in joined.get("nodes") or []]
        #: Who else is in the room, kept up to date from the events.
        self.participants: dict[str, RemoteParticipant] = {
            p["user_id"]: RemoteParticipant(
                p["user_id"],
                p.get("nickname"),
                {s["stream"]: {"audio": s["audio"], "video": s["video"]} for s in p["streams"]},
            )
            for p in joined["participants"]
        }

    # -- joining --------------------------------------------------------------------------------------

    @classmethod
    async def join(
        cls,
        server: str,
        *,
        app_id: str,
        room_id: str,
        user_id: str,
        app_key: str | None = None,
        ctime: int | None = None,
        signature: str | None = None,
        nickname: str | None = None,
        platform_name: str | None = None,
        sdk_version: str | None = SDK_VERSION,
        device_model: str | None = None,
        request_timeout: float = 15.0,
        stats_interval: float | None = 5.0,
        rejoin: float | None = DEFAULT_REJOIN,
    ) -> RoomClient:
        """Connect and join. With ``app_key`` the client signs its own join (``ctime`` defaulting to now
        + 2 h); otherwise pass ``ctime`` and ``signature`` made by the application's server, or nothing
        when the app has authentication off. Raises :class:`JoinRefusedError` if the server refuses. A
        node of a cluster that does not host the room answers ``redirect``: the join goes to the node
        named (:attr:`server`, :attr:`redirects`). A connection lost later is rejoined for ``rejoin``
        seconds (None: not at all; see the module docstring)."""
        if app_key is not None:
            ctime = ctime if ctime is not None else int(time.time()) + DEFAULT_VALIDITY
            signature = sign_join(app_key, app_id, room_id, user_id, ctime)
        message: dict[str, Any] = {
            "type": "join",
            "id": 1,
            "app_id": app_id,
            "room_id": room_id,
            "user_id": user_id,
            "ctime": ctime,
            "signature": signature,
            "nickname": nickname,
            "platform": platform_name or f"python-{sys.platform}",
            "sdk_version": sdk_version,
            "device_model": device_model or platform.machine() or None,
        }
        started = time.monotonic()
        ws, reply, joined_at, redirects = await _connect(server, message, request_timeout)
        join_ms = (time.monotonic() - started) * 1000
        client = cls(ws, reply, request_timeout=request_timeout, stats_interval=stats_interval, join_ms=join_ms)
        client.server = joined_at
        client.redirects = redirects
        client.rejoin = rejoin
        client._join_message = message
        client._entry = server
        return client

    async def __aenter__(self) -> RoomClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.leave()

    # -- events ---------------------------------------------------------------------------------------

    async def wait_event(self, predicate: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
        """The first event (already received or still to come) for which ``predicate`` holds.

        Bound the wait with ``asyncio.timeout``.
        """
        async with self._changed:
            seen = 0
            while True:
                for event in self.history[seen:]:
                    if predicate(event):
                        return event
                seen = len(self.history)
                await self._changed.wait()

    async def wait_stream(self, user_id: str, stream: str = "camera") -> dict[str, bool]:
        """Wait until ``user_id``'s ``stream`` is live (announced, or already live at join); return what it
        carries (``{"audio": bool, "video": bool}``). Bound the wait with ``asyncio.timeout``."""

        def live() -> bool:
            peer = self.participants.get(user_id)
            return peer is not None and stream in peer.streams

        async with self._changed:
            await self._changed.wait_for(live)
        return self.participants[user_id].streams[stream]

    async def _read(self) -> None:
        final: dict[str, Any] | None = None
        try:
            async for raw in self._ws:
                message = json.loads(raw)
                future = self._pending.pop(message["id"], None) if "id" in message else None
                if future is not None:
                    if not future.done():
                        future.set_result(message)
                    continue
                await self._on_event(message)
                if message.get("type") in FINAL_EVENTS:
                    final = message
        except ConnectionClosed:
            pass
        except Exception:
            log.exception("room client %s: signalling read failed", self.user_id)
        finally:
            task = asyncio.current_task()
            cancelled = task is not None and task.cancelling() > 0
            if final is None and self.rejoin and not self._leaving and not cancelled:
                # Lost unexpectedly: rejoin rather than end (the requests in flight fail).
                self._fail_pending("the connection was lost; rejoining")
                self._rejoining = asyncio.create_task(
                    self._rejoin(self._ws.close_code), name=f"room-client-{self.user_id}-rejoin"
                )
            else:
                await self._end_read(final, cancelled)

    def _fail_pending(self, why: str) -> None:
        for future in self._pending.values():
            if not future.done():
                future.set_exception(RoomError("RTC.00002000", why))
        self._pending.clear()

    async def _end_read(self, final: dict[str, Any] | None, cancelled: bool) -> None:
        if final is None:
            final = {"type": "connection_lost", "code": self._ws.close_code}
            await self._on_event(final)
        self._fail_pending(f"not in the room any more ({final['type']})")
        if not self.ended.done():
            self.ended.set_result(final)
        if not cancelled:
            # Not while being cancelled (loop shutdown): aiortc's own tasks are going away too.
            await self._hang_up()

    async def _on_event(self, event: dict[str, Any]) -> None:
        kind = event.get("type")
        if kind == "user_joined":
            self.participants[event["user_id"]] = RemoteParticipant(event["user_id"], event.get("nickname"))
        elif kind == "user_left":
            self.participants.pop(event["user_id"], None)
        elif kind == "stream_published":
            peer = self.participants.setdefault(event["user_id"], RemoteParticipant(event["user_id"], None))
            peer.streams[event["stream"]] = {"audio": event["audio"], "video": event["video"]}
        elif kind == "stream_unpublished":
            peer_or_none = self.participants.get(event["user_id"])
            if peer_or_none is not None:
                peer_or_none.streams.pop(event["stream"], None)
        elif kind == "subscription_ended":
            sub = self.subscriptions.pop(event["subscription"], None)
            if sub is not None:
                self._end_subscription(sub, event.get("reason", "ended"))
        elif kind == "subscriber_closed":
            pc, self.subscriber_pc = self.subscriber_pc, None
            if pc is not None:
                await pc.close()
        async with self._changed:
            self.history.append(event)
            self._changed.notify_all()

    # -- requests -------------------------------------------------------------------------------------

    async def _request(self, message: dict[str, Any]) -> dict[str, Any]:
        if self.ended.done():
            raise RoomError("RTC.00002000", f"not in the room any more ({self.ended.result()['type']})")
        request_id = next(self._ids)
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[request_id] = future
        try:
            await self._ws.send(json.dumps({**message, "id": request_id}))
            async with asyncio.timeout(self.request_timeout):
                reply = await future
        finally:
            self._pending.pop(request_id, None)
        if reply.get("type") == "error":
            raise RoomError(reply.get("code", ""), reply.get("message", ""))
        return reply

    async def _new_peer_connection(self) -> RTCPeerConnection:
        async with self._ice_choice:
            if self._rtc_ice_servers is None:
                self._rtc_ice_servers = await choose_ice_servers(self.ice_servers)
                if self.ice_servers:
                    chosen = self._rtc_ice_servers[0].urls if self._rtc_ice_servers else "none works from here"
                    log.info("room client %s: TURN relay %s", self.user_id, chosen)
        return _peer_connection(self._rtc_ice_servers)

    async def ping(self) -> None:
        await self._request({"type": "ping"})

    async def publish(
        self,
        stream: str = "camera",
        *,
        video: MediaStreamTrack | None = None,
        audio: MediaStreamTrack | None = None,
        codec: str | None = None,
    ) -> Publication:
        """Publish ``video`` and/or ``audio`` as the ``camera`` or ``screen`` stream; ``codec`` (``vp8``,
        ``h264``) restricts the video codec offered. Others see it once its media flows."""
        if video is None and audio is None:
            raise ValueError("publish needs a video or an audio track")
        pc = await self._new_peer_connection()
        try:
            if video is not None:
                transceiver = pc.addTransceiver(video, direction="sendonly")
                if codec is not None:
                    wanted = f"video/{codec}".lower()
                    codecs = [c for c in RTCRtpSender.getCapabilities("video").codecs if c.mimeType.lower() == wanted]
                    if not codecs:
                        raise ValueError(f"unsupported video codec {codec!r}")
                    transceiver.setCodecPreferences(codecs)
            if audio is not None:
                pc.addTransceiver(audio, direction="sendonly")
            await pc.setLocalDescription(await pc.createOffer())
            reply = await self._request({"type": "publish", "stream": stream, "sdp": pc.localDescription.sdp})
            await pc.setRemoteDescription(RTCSessionDescription(reply["sdp"], "answer"))
        except BaseException:
            await pc.close()
            raise
        publication = Publication(stream, pc, reply.get("tracks", []))
        self.publications[stream] = publication
        self._published[stream] = (video, audio, codec)
        return publication

    async def unpublish(self, stream: str = "camera") -> None:
        """Stop publishing a stream."""
        publication = self.publications.pop(stream, None)
        self._published.pop(stream, None)
        try:
            await self._request({"type": "unpublish", "stream": stream})
        finally:
            if publication is not None:
                await publication.pc.close()

    async def subscribe(self, user_id: str, stream: str = "camera") -> Subscription:
        """Receive another participant's stream; its tracks are ready when this returns. Calls made
        together go to the server as one request, so they cost one renegotiation between them."""
        future: asyncio.Future[Subscription] = asyncio.get_running_loop().create_future()
        self._wanted.append((user_id, stream, future))
        if len(self._wanted) == 1:
            task = asyncio.create_task(self._subscribe_wanted(), name=f"room-client-{self.user_id}-subscribe")
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        sub = await future
        self._subscribed.add((user_id, stream))
        return sub

    async def _subscribe_wanted(self) -> None:
        async with self._negotiation:
            # Taken once the lock is held: every subscribe() made meanwhile joins this request.
            wanted, self._wanted = self._wanted, []
            if not wanted:
                return
            try:
                if len(wanted) == 1:
                    user_id, stream, _ = wanted[0]
                    request: dict[str, Any] = {"type": "subscribe", "user_id": user_id, "stream": stream}
                else:
                    request = {"type": "subscribe", "streams": [{"user_id": u, "stream": s} for u, s, _ in wanted]}
                subs = await self._renegotiate(request, "subscriptions")
            except RoomError as exc:
                if len(wanted) > 1 and not self.ended.done():
                    # All or none: ask one by one so that one stream gone does not fail the others.
                    for user_id, stream, future in wanted:
                        await self._subscribe_one(user_id, stream, future)
                    return
                for *_, future in wanted:
                    if not future.done():
                        future.set_exception(exc)
                return
            except Exception as exc:
                for *_, future in wanted:
                    if not future.done():
                        future.set_exception(exc)
                return
            except BaseException:
                for *_, future in wanted:
                    future.cancel()
                raise
            for (*_, future), sub in zip(wanted, subs, strict=True):
                if not future.done():
                    future.set_result(sub)

    async def _subscribe_one(self, user_id: str, stream: str, future: asyncio.Future[Subscription]) -> None:
        try:
            [sub] = await self._renegotiate(
                {"type": "subscribe", "user_id": user_id, "stream": stream}, "subscriptions"
            )
        except Exception as exc:
            if not future.done():
                future.set_exception(exc)
            return
        if not future.done():
            future.set_result(sub)

    async def _renegotiate(self, request: dict[str, Any], what: str) -> list[Subscription]:
        """Send a request whose reply may carry Janus's offer for the subscriber PeerConnection, answer it,
        and return the subscriptions the reply lists under ``what`` (made ready: tracks attached)."""
        reply = await self._request(request)
        pc = self.subscriber_pc
        if pc is None and reply.get("sdp"):
            pc = self.subscriber_pc = await self._new_peer_connection()
            pc.on("connectionstatechange", lambda pc=pc: self._on_subscriber_state(pc))
        subs: list[Subscription] = []
        for entry in reply.get(what, []):
            assert pc is not None
            sub = Subscription(entry["subscription"], entry["user_id"], entry["stream"], pc, entry.get("tracks", []))
            self.subscriptions[sub.id] = sub
            subs.append(sub)
        if reply.get("sdp"):
            assert pc is not None
            try:
                await pc.setRemoteDescription(RTCSessionDescription(reply["sdp"], "offer"))
                self._attach_tracks(pc, subs)
                answer = await pc.createAnswer()
                # DTLS server, not client (RFC 5763 5: the answerer picks). As client, aiortc sends its
                # ClientHello the moment its ICE check succeeds, which can be before Janus has set up DTLS
                # for the PeerConnection; the lost hello is resent after OpenSSL's 1 s timer (bench/rooms.py
                # saw this in a quarter of joins). As server it waits for Janus's hello.
                sdp = answer.sdp.replace("a=setup:active", "a=setup:passive")
                await pc.setLocalDescription(RTCSessionDescription(sdp, "answer"))
                await self._request({"type": "answer", "sdp": pc.localDescription.sdp})
            except BaseException as exc:
                for sub in subs:
                    self.subscriptions.pop(sub.id, None)
                    self._end_subscription(sub, "negotiation failed")
                if isinstance(exc, InvalidStateError):
                    # Closed meanwhile: the server dropped it (subscriber_closed) or the client reset it.
                    raise RoomError("RTC.00002000", "the subscriber connection closed while negotiating") from exc
                raise
        elif pc is not None:
            # Streams resumed on the PeerConnection as it is (an earlier subscription's, paused since).
            self._attach_tracks(pc, subs)
        return subs

    def _on_subscriber_state(self, pc: RTCPeerConnection) -> None:
        # A subscriber PeerConnection that fails (ICE consent lost, DTLS failed) carries nothing more: end
        # its subscriptions and have the server drop its side, so the next subscription starts afresh.
        if pc.connectionState in ("failed", "closed") and pc is self.subscriber_pc and not self.ended.done():
            task = asyncio.create_task(self._reset_subscriber(pc), name=f"room-client-{self.user_id}-reset")
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _reset_subscriber(self, pc: RTCPeerConnection) -> None:
        async with self._negotiation:
            if pc is not self.subscriber_pc:
                return
            self.subscriber_pc = None
            for sub in [s for s in self.subscriptions.values() if s.pc is pc]:
                del self.subscriptions[sub.id]
                self._end_subscription(sub, "connection failed")
            with contextlib.suppress(RoomError):
                await self._request({"type": "close_subscriber"})
            await pc.close()

    def _attach_tracks(self, pc: RTCPeerConnection, subs: list[Subscription]) -> None:
        by_mid = {t.mid: t for t in pc.getTransceivers()}
        for sub in subs:
            for track in sub.tracks:
                transceiver = by_mid.get(str(track["mid"]))
                if transceiver is None:
                    continue
                # Wrapped to measure frame rate, size and freezes for the QoS reports.
                received = FrameMeter(SubscribedTrack(transceiver.receiver.track), self.qos.first_frame)
                if received.kind == "video" and sub.video is None:
                    sub.video = received
                elif received.kind == "audio" and sub.audio is None:
                    sub.audio = received

    async def unsubscribe(self, sub: Subscription) -> None:
        """Stop receiving a stream."""
        self._subscribed.discard((sub.user_id, sub.stream))
        if self.subscriptions.pop(sub.id, None) is None:
            return
        try:
            async with self._negotiation:
                await self._renegotiate({"type": "unsubscribe", "subscription": sub.id}, "none")
        finally:
            self._end_subscription(sub, "unsubscribed")

    def _end_subscription(self, sub: Subscription, reason: str) -> None:
        sub.end_reason = reason
        sub.ended.set()
        for track in (sub.video, sub.audio):
            if track is not None:
                track.stop()

    # -- leaving --------------------------------------------------------------------------------------

    # -- rejoining -----------------------------------------------------------------------------------

    async def _rejoin(self, close_code: int | None) -> None:
        """The connection was lost: join again (see the module docstring), or end with ``connection_lost``."""
        lost = self.server
        await self._on_event({"type": "reconnecting", "server": lost, "code": close_code})
        await self._drop_media()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + (self.rejoin or 0.0)
        # Elsewhere first (the node lost may be down for good), the lost one last (it may come back).
        order = [u.rstrip("/") for u in (self._entry, *self.nodes, lost)]
        candidates = sorted(dict.fromkeys(order), key=lambda u: u == lost.rstrip("/"))
        delay, final = REJOIN_BACKOFF[0], None
        while not self._leaving:
            for url in candidates:
                remaining = deadline - loop.time()
                if remaining <= 0:
                    break
                try:
                    ws, reply, server, redirects = await _connect(
                        url, self._join_message, min(self.request_timeout, remaining)
                    )
                except JoinRefusedError as exc:  # refused now (app disabled, signature expired): give up
                    final = {"type": "connection_lost", "code": close_code, "error": f"{exc.code}: {exc}"}
                    break
                except Exception as exc:  # that node is down or unreachable: the next one
                    log.info("room client %s: rejoining through %s failed: %s", self.user_id, url, exc)
                    continue
                if self._leaving:
                    await ws.close()
                    break
                await self._resume(ws, reply, server, redirects)
                return
            remaining = deadline - loop.time()
            if final is not None or remaining <= 0:
                break
            await asyncio.sleep(min(delay, remaining))
            delay = min(delay * 2, REJOIN_BACKOFF[1])
        final = final or {"type": "connection_lost", "code": close_code}
        await self._on_event(final)
        if not self.ended.done():
            self.ended.set_result(final)
        await self._hang_up()

    async def _drop_media(self) -> None:
        """Close the PeerConnections of the session lost (its Janus is gone); remember what to restore."""
        pcs = [p.pc for p in self.publications.values()]
        for pc in pcs:
            for sender in pc.getSenders():
                # aiortc stops a sender's track when the sender ends: taken off first, it stays live for
                # the new session's publication.
                sender.replaceTrack(None)
        if self.subscriber_pc is not None:
            pcs.append(self.subscriber_pc)
        for sub in self.subscriptions.values():
            self._end_subscription(sub, "reconnecting")
        self.publications.clear()
        self.subscriptions.clear()
        self.subscriber_pc = None
        await asyncio.gather(*(pc.close() for pc in pcs), return_exceptions=True)

    async def _resume(
        self, ws: ClientConnection, reply: dict[str, Any], server: str, redirects: list[dict[str, Any]]
    ) -> None:
        """Joined again: the new session, its streams published again, its subscriptions made again."""
        self._ws = ws
        self.server, self.redirects = server, redirects
        self._take_answer(reply)
        self._reader = asyncio.create_task(self._read(), name=f"room-client-{self.user_id}")
        for stream, (video, audio, codec) in list(self._published.items()):
            try:
                await self.publish(stream, video=video, audio=audio, codec=codec)
            except Exception as exc:
                log.warning("room client %s: publishing %s again failed: %s", self.user_id, stream, exc)
        live = [(u, st) for u, st in sorted(self._subscribed) if st in getattr(self.participants.get(u), "streams", {})]
        subs = await asyncio.gather(*(self.subscribe(u, st) for u, st in live), return_exceptions=True)
        ids = [sub.id for sub in subs if isinstance(sub, Subscription)]
        await self._on_event({"type": "reconnected", "server": server, "subscriptions": ids})

    # -- leaving --------------------------------------------------------------------------------------

    async def leave(self) -> dict[str, Any]:
        """Leave the room (if still in it), hang up every PeerConnection and close; return the final event."""
        self._leaving = True
        rejoining = self._rejoining
        if rejoining is not None and not rejoining.done():
            rejoining.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await rejoining
            if not self.ended.done():
                final = {"type": "left", "reason": "left while rejoining"}
                self.ended.set_result(final)
        if not self.ended.done():
            with contextlib.suppress(ConnectionClosed):
                await self._ws.send(json.dumps({"type": "leave"}))
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.request_timeout):
                    await asyncio.shield(self.ended)
        await self._ws.close()
        with contextlib.suppress(asyncio.CancelledError):
            await self._reader
        await self._hang_up()
        return self.ended.result()

    async def _hang_up(self) -> None:
        await self.qos.stop()
        pcs = [p.pc for p in self.publications.values()]
        if self.subscriber_pc is not None:
            pcs.append(self.subscriber_pc)
        subs = list(self.subscriptions.values())
        self.publications.clear()
        self.subscriptions.clear()
        self.subscriber_pc = None
        for sub in subs:
            self._end_subscription(sub, sub.end_reason or "left the room")
        for _, _, future in self._wanted:
            if not future.done():
                future.set_exception(RoomError("RTC.00002000", "not in the room any more"))
        self._wanted.clear()
        await asyncio.gather(*(pc.close() for pc in pcs), return_exceptions=True)
