"""Async client for Janus's API (over its WebSocket transport) and admin API (over HTTP), with the
videoroom requests Ember uses.

Why a WebSocket for the Janus API: over HTTP, a session's events come from a long-poll ``GET`` that can
carry the API secret only in its query string (Janus reads it from nowhere else), so the secret would
sit in a URL every 30 s, where HTTP clients, proxies and access logs write URLs. Over the WebSocket
every request is a JSON message with the secret inside, and Janus pushes the events of the sessions
created on that connection down the same socket. Admin requests are POSTs with the secret in the body.

Layers, as Janus names them:

- :class:`JanusClient`: one Janus instance (its API WebSocket and admin API URLs and secrets): one
  WebSocket, opened at the first request and shared by every session. Admin requests
  (``list_sessions``, ``list_handles``, ``handle_info``) live here.
- :class:`JanusSession`: a Janus session. Its events (asynchronous plugin answers and notifications)
  arrive on the client's WebSocket; it sends keepalives so Janus does not reap it.
- :class:`PluginHandle`: a handle attached to a plugin; :class:`VideoRoomHandle` adds the videoroom
  requests (``create``, ``exists``, ``list``, ``listparticipants``, ``kick``, ``destroy``,
  ``rtp_forward``, ``stop_rtp_forward``, joins, ``publish``/``start`` and keyframe requests).

Failures raise :class:`JanusError` subclasses carrying Janus's numeric code: :class:`JanusApiError`
for the core API (``janus/apierror.h``) and :class:`VideoRoomError` for the plugin (its
``JANUS_VIDEOROOM_ERROR_*`` codes). Connection failures raise :class:`JanusTransportError`.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import json
import logging
import secrets
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import httpx
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, WebSocketException

from emberrtc.domain.redaction import mask_url

from .janus_config import JanusConfig

__all__ = [
    "JanusApiError",
    "JanusApiErrorCode",
    "JanusClient",
    "JanusClientError",
    "JanusError",
    "JanusSession",
    "JanusTransportError",
    "NoSuchFeedError",
    "NoSuchRoomError",
    "PluginHandle",
    "PluginResponse",
    "RoomExistsError",
    "RtpForwardStream",
    "SessionClosedError",
    "VideoRoomError",
    "VideoRoomErrorCode",
    "VideoRoomHandle",
    "VideoRoomUnauthorizedError",
]

log = logging.getLogger(__name__)

VIDEOROOM = "janus.plugin.videoroom"

#: Room and participant IDs: strings with the videoroom's ``string_ids`` (Ember's default), else ints.
RoomId = str | int
ParticipantId = str | int
Json = dict[str, Any]

# The WebSocket subprotocol of the Janus API (the admin API's is "janus-admin-protocol").
_SUBPROTOCOL = "janus-protocol"
# Unconsumed events per handle kept before the oldest are dropped: a handle nobody reads from
# must not grow without bound.
_EVENT_QUEUE_SIZE = 256


# -- errors ------------------------------------------------------------------------------------------


class JanusApiErrorCode(enum.IntEnum):
    """Janus core error codes (``janus/apierror.h``)."""

    UNAUTHORIZED = 403
    UNAUTHORIZED_PLUGIN = 405
    TRANSPORT_SPECIFIC = 450
    MISSING_REQUEST = 452
    UNKNOWN_REQUEST = 453
    INVALID_JSON = 454
    INVALID_JSON_OBJECT = 455
    MISSING_MANDATORY_ELEMENT = 456
    INVALID_REQUEST_PATH = 457
    SESSION_NOT_FOUND = 458
    HANDLE_NOT_FOUND = 459
    PLUGIN_NOT_FOUND = 460
    PLUGIN_ATTACH = 461
    PLUGIN_MESSAGE = 462
    PLUGIN_DETACH = 463
    JSEP_UNKNOWN_TYPE = 464
    JSEP_INVALID_SDP = 465
    TRICKLE_INVALID_STREAM = 466
    INVALID_ELEMENT_TYPE = 467
    SESSION_CONFLICT = 468
    UNEXPECTED_ANSWER = 469
    TOKEN_NOT_FOUND = 470
    WEBRTC_STATE = 471
    NOT_ACCEPTING_SESSIONS = 472
    UNKNOWN = 490


class VideoRoomErrorCode(enum.IntEnum):
    """Videoroom plugin error codes (``JANUS_VIDEOROOM_ERROR_*``)."""

    NO_MESSAGE = 421
    INVALID_JSON = 422
    INVALID_REQUEST = 423
    JOIN_FIRST = 424
    ALREADY_JOINED = 425
    NO_SUCH_ROOM = 426
    ROOM_EXISTS = 427
    NO_SUCH_FEED = 428
    MISSING_ELEMENT = 429
    INVALID_ELEMENT = 430
    INVALID_SDP_TYPE = 431
    PUBLISHERS_FULL = 432
    UNAUTHORIZED = 433
    ALREADY_PUBLISHED = 434
    NOT_PUBLISHED = 435
    ID_EXISTS = 436
    INVALID_SDP = 437
    UNKNOWN_ERROR = 499


class JanusClientError(Exception):
    """Base of every error this module raises."""


class JanusTransportError(JanusClientError):
    """Janus could not be reached, or answered with something that is not a Janus message."""


class SessionClosedError(JanusClientError):
    """The session is closed (destroyed, reaped by Janus, or Janus went away)."""


class JanusError(JanusClientError):
    """Janus refused a request; ``code`` is Janus's numeric error code, ``reason`` its text."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(f"{reason} (Janus error {code})")
        self.code = code
        self.reason = reason


class JanusApiError(JanusError):
    """An error from the Janus core API or admin API (codes in :class:`JanusApiErrorCode`)."""


class VideoRoomError(JanusError):
    """An error from the videoroom plugin (codes in :class:`VideoRoomErrorCode`)."""


class NoSuchRoomError(VideoRoomError):
    """The room does not exist (426)."""


class RoomExistsError(VideoRoomError):
    """A room with that ID already exists (427)."""


class NoSuchFeedError(VideoRoomError):
    """No such publisher in the room (428)."""


class VideoRoomUnauthorizedError(VideoRoomError):
    """Wrong secret, admin key, PIN or token (433)."""


_VIDEOROOM_ERRORS: dict[int, type[VideoRoomError]] = {
    VideoRoomErrorCode.NO_SUCH_ROOM: NoSuchRoomError,
    VideoRoomErrorCode.ROOM_EXISTS: RoomExistsError,
    VideoRoomErrorCode.NO_SUCH_FEED: NoSuchFeedError,
    VideoRoomErrorCode.UNAUTHORIZED: VideoRoomUnauthorizedError,
}


def videoroom_error(code: int, reason: str) -> VideoRoomError:
    """Build the most specific :class:`VideoRoomError` for ``code``."""
    return _VIDEOROOM_ERRORS.get(code, VideoRoomError)(code, reason)


# -- values ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PluginResponse:
    """A plugin's answer: its ``data`` object and, for offer/answer exchanges, the JSEP."""

    data: Json
    jsep: Json | None = None


@dataclass(frozen=True)
class RtpForwardStream:
    """One publisher stream to forward as plain RTP (videoroom ``rtp_forward``, Janus 1.x syntax)."""

    #: The publisher's stream, by its SDP ``mid``.
    mid: str
    #: UDP port the RTP goes to.
    port: int
    #: Payload type to rewrite to (None: keep the publisher's).
    pt: int | None = None
    #: SSRC to rewrite to (None: Janus picks one).
    ssrc: int | None = None
    #: Port on the receiver that sends RTCP (PLI/FIR) back to Janus (None: no RTCP latch).
    rtcp_port: int | None = None
    #: Destination for this stream alone (None: the request's ``host``).
    host: str | None = None

    def to_json(self) -> Json:
        """The entry of the ``streams`` array."""
        entry: Json = {"mid": self.mid, "port": self.port}
        for key in ("pt", "ssrc", "rtcp_port", "host"):
            value = getattr(self, key)
            if value is not None:
                entry[key] = value
        return entry


def _transaction() -> str:
    return secrets.token_hex(8)


# -- client ------------------------------------------------------------------------------------------


class JanusClient:
    """Talks to one Janus instance: its API over the WebSocket at ``url`` (``ws://host:port``), its admin
    API over HTTP at ``admin_url``.

    ``room_admin_key`` is the videoroom ``admin_key``; it is added to the requests that need it.
    Pass ``http`` to share an :class:`httpx.AsyncClient` for the admin API (it is then not closed by
    :meth:`aclose`). Requests wait ``timeout`` seconds at most for their answer.
    """

    def __init__(
        self,
        url: str,
        *,
        api_secret: str | None = None,
        admin_url: str | None = None,
        admin_secret: str | None = None,
        room_admin_key: str | None = None,
        timeout: float = 10.0,
        http: httpx.AsyncClient | None = None,
    ) -> None:
        self.url = url.rstrip("/")
        self.admin_url = admin_url.rstrip("/") if admin_url else None
        self.api_secret = api_secret
        self.admin_secret = admin_secret
        self.room_admin_key = room_admin_key
        self.timeout = timeout
        self._own_http = http is None
        # trust_env=False: a proxy from the environment must never see loopback API traffic.
        self._http = http or httpx.AsyncClient(timeout=timeout, trust_env=False)
        self._sessions: dict[int, JanusSession] = {}
        self._socket: ClientConnection | None = None
        self._socket_lock = asyncio.Lock()
        self._reader: asyncio.Task[None] | None = None
        #: Requests sent and not answered yet, by transaction.
        self._answers: dict[str, asyncio.Future[Json]] = {}

    @classmethod
    def from_config(cls, config: JanusConfig, **kwargs: Any) -> JanusClient:
        """A client for the Janus instance described by ``config``."""
        return cls(
            config.ws_url,
            api_secret=config.api_secret,
            admin_url=config.admin_url,
            admin_secret=config.admin_secret,
            room_admin_key=config.room_admin_key,
            **kwargs,
        )

    async def __aenter__(self) -> JanusClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Destroy the sessions this client created and close its connections."""
        for session in list(self._sessions.values()):
            with contextlib.suppress(JanusClientError):
                await session.destroy()
        socket, reader = self._socket, self._reader
        if socket is not None:
            await socket.close()
        if reader is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await reader
        if self._own_http:
            await self._http.aclose()

    # -- Janus API --

    async def info(self) -> Json:
        """The server's ``info`` answer (version, plugins, transports)."""
        return await self.post({"janus": "info"})

    async def create_session(self, *, keepalive_interval: float = 25.0) -> JanusSession:
        """Create a session and start its event poller and keepalive loop.

        ``keepalive_interval`` must stay below Janus's ``session_timeout`` (60 s by default).
        """
        answer = await self.post({"janus": "create"})
        session = JanusSession(self, int(answer["data"]["id"]), keepalive_interval)
        self._sessions[session.id] = session
        session._start()
        return session

    # -- admin API --

    async def list_sessions(self) -> list[int]:
        """IDs of every session Janus holds (admin ``list_sessions``)."""
        answer = await self._admin(None, None, {"janus": "list_sessions"})
        return [int(session_id) for session_id in answer.get("sessions", [])]

    async def list_handles(self, session_id: int) -> list[int]:
        """IDs of the handles in a session (admin ``list_handles``)."""
        answer = await self._admin(session_id, None, {"janus": "list_handles"})
        return [int(handle_id) for handle_id in answer.get("handles", [])]

    async def handle_info(self, session_id: int, handle_id: int) -> Json:
        """Everything Janus knows about a handle: plugin state, ICE/DTLS state, per-stream stats."""
        answer = await self._admin(session_id, handle_id, {"janus": "handle_info"})
        info: Json = answer["info"]
        return info

    # -- plumbing --

    async def post(self, message: Json) -> Json:
        """Send a Janus API message (adding transaction and secret) and return its answer; raise on a
        Janus error. Messages for a session or handle carry ``session_id`` and ``handle_id``."""
        # A plugin message brings its own transaction: its asynchronous answer is awaited by it.
        transaction = str(message.get("transaction") or _transaction())
        payload = {**message, "transaction": transaction}
        if self.api_secret is not None:
            payload["apisecret"] = self.api_secret
        answer = asyncio.get_running_loop().create_future()
        self._answers[transaction] = answer
        try:
            socket = await self._connected()
            await socket.send(json.dumps(payload))
            async with asyncio.timeout(self.timeout):
                reply = await answer
        except (ConnectionClosed, OSError) as exc:
            raise JanusTransportError(f"{message['janus']} to Janus at {mask_url(self.url)}: {exc!r}") from exc
        except TimeoutError as exc:
            raise JanusTransportError(f"{message['janus']}: no answer from Janus in {self.timeout} s") from exc
        finally:
            self._answers.pop(transaction, None)
        if reply.get("janus") == "error":
            error = reply.get("error", {})
            raise JanusApiError(int(error.get("code", JanusApiErrorCode.UNKNOWN)), str(error.get("reason", "")))
        return reply

    async def _connected(self) -> ClientConnection:
        async with self._socket_lock:
            if self._socket is None:
                try:
                    # proxy=None: a proxy from the environment must never see loopback API traffic.
                    self._socket = await connect(
                        self.url,
                        subprotocols=[_SUBPROTOCOL],  # type: ignore[list-item]
                        open_timeout=self.timeout,
                        max_size=None,  # Janus's answers carry whole SDPs; it is our own process
                        proxy=None,
                    )
                except (OSError, WebSocketException, TimeoutError) as exc:
                    raise JanusTransportError(f"cannot connect to Janus at {mask_url(self.url)}: {exc!r}") from exc
                self._reader = asyncio.create_task(self._read(self._socket), name="janus-api-socket")
            return self._socket

    async def _read(self, socket: ClientConnection) -> None:
        """Hand every message Janus sends to the request it answers, else to the session it is for."""
        reason = "connection to Janus closed"
        try:
            async for raw in socket:
                try:
                    message = json.loads(raw)
                except ValueError:
                    log.warning("janus sent a message that is not JSON; ignored")
                    continue
                if not isinstance(message, dict):
                    continue
                answer = self._answers.pop(message.get("transaction", ""), None)
                if answer is not None and not answer.done():
                    answer.set_result(message)
                    continue
                session = self._sessions.get(message.get("session_id", 0))
                if session is None:
                    log.debug("janus message for no session of ours: %r", message.get("janus"))
                elif message.get("janus") == "timeout":
                    log.info("janus timed out session %d", session.id)
                    await session._close("timed out by Janus")
                else:
                    session._dispatch(message)
        except ConnectionClosed as exc:
            reason = f"connection to Janus lost: {exc}"
        finally:
            if self._socket is socket:
                self._socket = None
            for answer in self._answers.values():
                if not answer.done():
                    answer.set_exception(JanusTransportError(reason))
            # Janus ends the sessions of a closed connection: nothing more will ever arrive for them.
            for session in list(self._sessions.values()):
                log.info("janus session %d lost: %s", session.id, reason)
                await session._close(reason)

    async def _admin(self, session_id: int | None, handle_id: int | None, message: Json) -> Json:
        if self.admin_url is None:
            raise JanusClientError("this client has no admin_url")
        url = self.admin_url
        if session_id is not None:
            url += f"/{session_id}"
            if handle_id is not None:
                url += f"/{handle_id}"
        payload = {"transaction": _transaction(), **message}
        if self.admin_secret is not None:
            payload["admin_secret"] = self.admin_secret
        return await self._request(url, payload)

    async def _request(self, url: str, payload: Json) -> Json:
        """POST an admin API message (the secret travels in the body, never in the URL)."""
        try:
            response = await self._http.post(url, json=payload, timeout=self.timeout)
            answer = response.json()
        except httpx.HTTPError as exc:
            raise JanusTransportError(f"POST {mask_url(url)}: {exc!r}") from exc
        except ValueError as exc:
            raise JanusTransportError(f"POST {mask_url(url)}: answer is not JSON ({response.status_code})") from exc
        if not isinstance(answer, dict):
            raise JanusTransportError(f"POST {mask_url(url)}: unexpected answer")
        if answer.get("janus") == "error":
            error = answer.get("error", {})
            raise JanusApiError(int(error.get("code", JanusApiErrorCode.UNKNOWN)), str(error.get("reason", "")))
        return answer

    def _forget(self, session: JanusSession) -> None:
        self._sessions.pop(session.id, None)


_H = TypeVar("_H", bound="PluginHandle")


class JanusSession:
    """A Janus session: attaches handles, receives their events, keeps itself alive.

    Created by :meth:`JanusClient.create_session`. Once closed (see :attr:`closed`) every pending and
    later request raises :class:`SessionClosedError`.
    """

    def __init__(self, client: JanusClient, session_id: int, keepalive_interval: float) -> None:
        self.client = client
        self.id = session_id
        self.keepalive_interval = keepalive_interval
        self._handles: dict[int, PluginHandle] = {}
        self._pending: dict[str, asyncio.Future[Json]] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._closed = asyncio.Event()
        self.close_reason: str | None = None

    @property
    def closed(self) -> bool:
        """True once the session is destroyed or lost."""
        return self._closed.is_set()

    async def wait_closed(self) -> None:
        """Wait until the session is closed."""
        await self._closed.wait()

    def _start(self) -> None:
        self._tasks = [asyncio.create_task(self._keepalive_loop(), name=f"janus-session-{self.id}-keepalive")]

    async def attach(self, plugin: str) -> PluginHandle:
        """Attach a handle to ``plugin`` (a package name such as ``janus.plugin.videoroom``)."""
        return await self._attach(plugin, PluginHandle)

    async def attach_videoroom(self) -> VideoRoomHandle:
        """Attach a handle to the videoroom plugin."""
        return await self._attach(VIDEOROOM, VideoRoomHandle)

    async def keepalive(self) -> None:
        """Tell Janus the session is still in use (resets its ``session_timeout``)."""
        await self.post({"janus": "keepalive"})

    async def destroy(self) -> None:
        """Destroy the session in Janus (detaching its handles) and stop the background tasks."""
        if self.closed:
            return
        try:
            await self.post({"janus": "destroy"})
        finally:
            await self._close("destroyed")

    async def post(self, message: Json, handle_id: int | None = None) -> Json:
        """Send a message within this session (to one of its handles), failing fast if the session is
        closed."""
        if self.closed:
            raise SessionClosedError(f"session {self.id} is closed: {self.close_reason}")
        addressed = {**message, "session_id": self.id}
        if handle_id is not None:
            addressed["handle_id"] = handle_id
        return await self.client.post(addressed)

    async def _attach(self, plugin: str, kind: type[_H]) -> _H:
        answer = await self.post({"janus": "attach", "plugin": plugin})
        handle = kind(self, int(answer["data"]["id"]), plugin)
        self._handles[handle.id] = handle
        return handle

    async def _close(self, reason: str) -> None:
        if self.closed:
            return
        self.close_reason = reason
        self._closed.set()
        self.client._forget(self)
        for future in self._pending.values():
            if not future.done():
                future.set_exception(SessionClosedError(f"session {self.id} closed: {reason}"))
        self._pending.clear()
        current = asyncio.current_task()
        for task in self._tasks:
            if task is not current:
                task.cancel()
        for task in self._tasks:
            if task is not current:
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    async def _keepalive_loop(self) -> None:
        while True:
            await asyncio.sleep(self.keepalive_interval)
            try:
                await self.keepalive()
            except JanusClientError as exc:
                log.warning("keepalive for janus session %d failed: %s", self.id, exc)

    def _dispatch(self, event: Json) -> None:
        kind = event.get("janus")
        if kind == "keepalive":
            return
        future = self._pending.pop(event.get("transaction", ""), None)
        # The request's "ack" went to the request itself; what carries its transaction here is its real answer.
        if future is not None and not future.done():
            future.set_result(event)
            return
        handle = self._handles.get(event.get("sender", 0))
        if handle is None:
            log.debug("janus event for unknown handle: %r", event)
            return
        if kind == "detached":
            self._handles.pop(handle.id, None)
        handle._deliver(event)

    def _expect(self, transaction: str) -> asyncio.Future[Json]:
        future: asyncio.Future[Json] = asyncio.get_running_loop().create_future()
        self._pending[transaction] = future
        return future

    def _forget_handle(self, handle_id: int) -> None:
        self._handles.pop(handle_id, None)


class PluginHandle:
    """A handle attached to a Janus plugin: send it messages and trickle candidates, read its events.

    Unsolicited events (``webrtcup``, ``media``, ``hangup``, ``slowlink``, plugin notifications) are
    queued in :attr:`events`; at most 256 are kept, the oldest dropped first.
    """

    def __init__(self, session: JanusSession, handle_id: int, plugin: str) -> None:
        self.session = session
        self.id = handle_id
        self.plugin = plugin
        self.events: asyncio.Queue[Json] = asyncio.Queue(maxsize=_EVENT_QUEUE_SIZE)

    async def message(self, body: Json, jsep: Json | None = None) -> PluginResponse:
        """Send a plugin message; return the plugin's answer, waiting for it if it comes as an event.

        Synchronous plugin requests answer in the HTTP response; asynchronous ones answer ``ack`` and
        the result arrives on the session's event stream (tagged with the same transaction), waited
        for at most the client's ``timeout``.
        """
        transaction = _transaction()
        future = self.session._expect(transaction)
        message: Json = {"janus": "message", "transaction": transaction, "body": body}
        if jsep is not None:
            message["jsep"] = jsep
        try:
            answer = await self.session.post(message, self.id)
            if answer.get("janus") == "ack":
                async with asyncio.timeout(self.session.client.timeout):
                    answer = await future
        finally:
            self.session._pending.pop(transaction, None)
        return self._plugin_response(answer)

    async def trickle(self, candidate: Json | Sequence[Json] | None) -> None:
        """Send ICE candidates; ``None`` says gathering is complete."""
        message: Json = {"janus": "trickle"}
        if candidate is None:
            message["candidate"] = {"completed": True}
        elif isinstance(candidate, Mapping):
            message["candidate"] = dict(candidate)
        else:
            message["candidates"] = list(candidate)
        await self.session.post(message, self.id)

    async def hangup(self) -> None:
        """Close the handle's PeerConnection, keeping the handle."""
        await self.session.post({"janus": "hangup"}, self.id)

    async def detach(self) -> None:
        """Detach from the plugin; the handle is unusable afterwards."""
        try:
            await self.session.post({"janus": "detach"}, self.id)
        finally:
            self.session._forget_handle(self.id)

    async def wait_event(self, predicate: Callable[[Json], bool]) -> Json:
        """Return the next queued event satisfying ``predicate`` (others are discarded).

        Bound the wait with ``asyncio.timeout``.
        """
        while True:
            event = await self.events.get()
            if predicate(event):
                return event

    def _deliver(self, event: Json) -> None:
        if self.events.full():
            dropped = self.events.get_nowait()
            log.debug("handle %d event queue full; dropped %r", self.id, dropped.get("janus"))
        self.events.put_nowait(event)

    def _plugin_response(self, answer: Json) -> PluginResponse:
        if answer.get("janus") == "error":
            error = answer.get("error", {})
            raise JanusApiError(int(error.get("code", JanusApiErrorCode.UNKNOWN)), str(error.get("reason", "")))
        data = answer.get("plugindata", {}).get("data", {})
        if "error_code" in data:
            raise self._plugin_error(int(data["error_code"]), str(data.get("error", "")))
        return PluginResponse(data=data, jsep=answer.get("jsep"))

    def _plugin_error(self, code: int, reason: str) -> JanusError:
        return JanusError(code, reason)


class VideoRoomHandle(PluginHandle):
    """A handle on ``janus.plugin.videoroom`` with typed wrappers for the requests Ember uses.

    Room-management requests can go through any handle; a handle used to ``join`` becomes that
    participant's publisher or subscriber handle (one PeerConnection each; a subscriber handle may carry
    the streams of several publishers).
    """

    def _plugin_error(self, code: int, reason: str) -> JanusError:
        return videoroom_error(code, reason)

    def _admin_key(self, admin_key: str | None) -> Json:
        key = admin_key if admin_key is not None else self.session.client.room_admin_key
        return {"admin_key": key} if key is not None else {}

    async def request(self, request: str, **fields: Any) -> Json:
        """Send a videoroom request (``None`` fields are left out) and return the plugin's data."""
        body = {"request": request, **{key: value for key, value in fields.items() if value is not None}}
        return (await self.message(body)).data

    # -- room management (synchronous requests) --

    async def create_room(
        self,
        room: RoomId | None = None,
        *,
        description: str | None = None,
        publishers: int = 16,
        allowed: Iterable[str] | None = None,
        videocodecs: Sequence[str] = ("h264", "vp8"),
        audiocodecs: Sequence[str] = ("opus",),
        secret: str | None = None,
        pin: str | None = None,
        is_private: bool = True,
        bitrate: int | None = None,
        fir_freq: int | None = None,
        notify_joining: bool = False,
        admin_key: str | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> RoomId:
        """Create a room; return its ID (Janus picks one when ``room`` is None).

        ``allowed`` restricts joins to those tokens (each join must carry one). Codecs are listed in
        order of preference: the first one a publisher's offer contains wins. ``publishers`` caps the
        number of concurrent publishers. ``extra`` adds raw ``create`` fields.
        """
        fields: Json = {
            "room": room,
            "description": description,
            "publishers": publishers,
            "videocodec": ",".join(videocodecs),
            "audiocodec": ",".join(audiocodecs),
            "secret": secret,
            "pin": pin,
            "is_private": is_private,
            "bitrate": bitrate,
            "fir_freq": fir_freq,
            "notify_joining": notify_joining,
            "permanent": False,
            **self._admin_key(admin_key),
            **(extra or {}),
        }
        if allowed is not None:
            fields["allowed"] = list(allowed)
        data = await self.request("create", **fields)
        room_id: RoomId = data["room"]
        return room_id

    async def room_exists(self, room: RoomId) -> bool:
        """Whether the room exists (``exists``)."""
        return bool((await self.request("exists", room=room))["exists"])

    async def list_rooms(self, *, admin_key: str | None = None) -> list[Json]:
        """Every room (``list``); private rooms are included when the admin key is known."""
        rooms: list[Json] = (await self.request("list", **self._admin_key(admin_key)))["list"]
        return rooms

    async def list_participants(self, room: RoomId) -> list[Json]:
        """The room's participants (``listparticipants``): ``id``, ``display``, ``publisher``..."""
        participants: list[Json] = (await self.request("listparticipants", room=room))["participants"]
        return participants

    async def kick(self, room: RoomId, participant: ParticipantId, *, secret: str | None = None) -> None:
        """Kick a participant (``kick``). Janus does not tell that publisher's subscribers."""
        await self.request("kick", room=room, id=participant, secret=secret)

    async def destroy_room(self, room: RoomId, *, secret: str | None = None) -> None:
        """Destroy the room (``destroy``). Janus does not notify subscribers' handles."""
        await self.request("destroy", room=room, secret=secret, permanent=False)

    async def rtp_forward(
        self,
        room: RoomId,
        publisher: ParticipantId,
        host: str,
        streams: Sequence[RtpForwardStream],
        *,
        host_family: str | None = None,
        secret: str | None = None,
        admin_key: str | None = None,
    ) -> list[Json]:
        """Forward a publisher's streams as plain RTP to ``host`` (``rtp_forward``, ``streams`` syntax).

        Returns Janus's ``forwarders`` entries (``stream_id``, ``type``, ``host``, ``port``, ...).
        Janus sends no keyframe request when forwarding starts: call :meth:`request_keyframe` on the
        publisher's handle, or answer the forwarder's RTCP latch with a PLI.
        """
        data = await self.request(
            "rtp_forward",
            room=room,
            publisher_id=publisher,
            host=host,
            host_family=host_family,
            streams=[stream.to_json() for stream in streams],
            secret=secret,
            **self._admin_key(admin_key),
        )
        forwarders: list[Json] = data.get("forwarders", [])
        return forwarders

    async def stop_rtp_forward(
        self,
        room: RoomId,
        publisher: ParticipantId,
        stream_id: int,
        *,
        secret: str | None = None,
        admin_key: str | None = None,
    ) -> None:
        """Stop one forwarder (``stop_rtp_forward``) by the ``stream_id`` :meth:`rtp_forward` gave."""
        await self.request(
            "stop_rtp_forward",
            room=room,
            publisher_id=publisher,
            stream_id=stream_id,
            secret=secret,
            **self._admin_key(admin_key),
        )

    async def list_forwarders(self, room: RoomId, *, secret: str | None = None) -> list[Json]:
        """Active RTP forwarders of the room, per publisher (``listforwarders``)."""
        publishers: list[Json] = (await self.request("listforwarders", room=room, secret=secret))["publishers"]
        return publishers

    # -- participation (asynchronous requests) --

    async def join_publisher(
        self,
        room: RoomId,
        *,
        participant: ParticipantId | None = None,
        display: str | None = None,
        token: str | None = None,
        pin: str | None = None,
    ) -> Json:
        """Join as a publisher (not yet sending); returns ``joined`` data (``id``, ``private_id``,
        ``publishers``)."""
        return await self.request(
            "join", ptype="publisher", room=room, id=participant, display=display, token=token, pin=pin
        )

    async def publish(self, offer: Json, **settings: Any) -> PluginResponse:
        """Publish with an SDP offer (``publish``); return the ``configured`` data (with the
        negotiated ``streams``: ``mid``, ``type``, ``codec``) and Janus's SDP answer."""
        response = await self.message({"request": "publish", **settings}, jsep=offer)
        if response.jsep is None:
            raise JanusTransportError(f"publish answered without SDP: {response.data!r}")
        return response

    async def join_subscriber(
        self,
        room: RoomId,
        streams: Sequence[Mapping[str, Any]],
        *,
        private_id: int | None = None,
        token: str | None = None,
        pin: str | None = None,
        autoupdate: bool | None = None,
    ) -> PluginResponse:
        """Subscribe to ``streams`` (``[{"feed": publisher_id, "mid": ...}]``, ``mid`` optional);
        returns the ``attached`` data (its ``streams``: the subscriber's ``mid`` of each, with ``feed_id``,
        ``feed_mid``, ``type``) and Janus's SDP offer, to be answered with :meth:`start`.

        One subscriber handle (one PeerConnection) can carry streams of many publishers (Janus 1.x
        multistream); :meth:`subscribe` and :meth:`unsubscribe` change them later. ``autoupdate=False``
        stops Janus from sending a new offer by itself when a subscribed publisher goes away (its streams
        are then dropped at the next renegotiation)."""
        body: Json = {
            "request": "join",
            "ptype": "subscriber",
            "room": room,
            "streams": [dict(stream) for stream in streams],
        }
        for key, value in (("private_id", private_id), ("token", token), ("pin", pin), ("autoupdate", autoupdate)):
            if value is not None:
                body[key] = value
        response = await self.message(body)
        if response.jsep is None:
            raise JanusTransportError(f"subscription answered without SDP: {response.data!r}")
        return response

    async def subscribe(self, streams: Sequence[Mapping[str, Any]]) -> PluginResponse:
        """Add ``streams`` (as in :meth:`join_subscriber`) to this subscriber handle (``subscribe``).

        Returns the ``updated`` data (every stream of the handle, old and new) and, when the session
        changed, a new SDP offer to answer with :meth:`start`. While an earlier offer is unanswered Janus
        postpones the change (``updating``, no offer): answer first."""
        return await self.message({"request": "subscribe", "streams": [dict(stream) for stream in streams]})

    async def unsubscribe(self, streams: Sequence[Mapping[str, Any]]) -> PluginResponse:
        """Remove streams (``[{"sub_mid": mid}]`` or ``[{"feed": publisher_id}]``) from this subscriber
        handle (``unsubscribe``); answered like :meth:`subscribe`."""
        return await self.message({"request": "unsubscribe", "streams": [dict(stream) for stream in streams]})

    async def configure_streams(self, streams: Sequence[Mapping[str, Any]]) -> Json:
        """Change streams of this subscriber handle without a renegotiation (``configure`` with
        ``streams``: ``[{"mid": subscriber mid, "send": bool}]``); ``send`` false pauses a stream's relay."""
        return (await self.message({"request": "configure", "streams": [dict(stream) for stream in streams]})).data

    async def start(self, answer: Json) -> Json:
        """Answer a subscription's offer (``start``); media then flows to the subscriber."""
        return (await self.message({"request": "start"}, jsep=answer)).data

    async def request_keyframe(self) -> None:
        """Ask this handle's publisher for a keyframe (``configure`` with ``"keyframe": true``)."""
        await self.message({"request": "configure", "keyframe": True})

    async def leave(self) -> None:
        """Leave the room (``leave``): unpublishes, or ends the subscription."""
        await self.message({"request": "leave"})
