"""Client signalling: one WebSocket per participant at ``/v1/rtc/signalling``. Clients never reach Janus.

Every message is a JSON object with a ``type``. A request may carry an ``id`` (number or string); its reply
(or ``error``) echoes it. Events carry no ``id``. Streams are ``"camera"`` or ``"screen"``; each may have
audio and/or video. SDP is exchanged whole (no trickle): both sides put their ICE candidates in it.

Each published stream has its own PeerConnection. Everything a participant receives comes on ONE subscriber
PeerConnection (Janus multistream): the first subscription creates it, later ones renegotiate it. The
server always offers and the client answers; one renegotiation at a time (a ``subscribe`` while an offer
is unanswered is refused). Ending a subscription pauses its streams without a renegotiation; subscribing
to the same stream again resumes them (a reply without ``sdp``: the tracks are already there). Ask for
several streams in one ``subscribe`` to get them in one renegotiation. A subscription's ``tracks`` give its
``mid`` in that PeerConnection (and the publisher's ``feed_mid``), so the client knows which track is whose.

Client -> server:

======================================================== ==================================================
``{"type": "join", "app_id", "room_id", "user_id",``       First message, within 10 s. ``ctime`` (UNIX
``"ctime", "signature", "nickname"?, "platform"?,``        seconds, number or digits) and ``signature`` as in
``"sdk_version"?, "device_model"?}``                       ``spec/README.md``; needed when the app has
                                                           authentication on. Reply ``joined``.
``{"type": "publish", "stream", "sdp"}``                   SDP offer (send-only). Reply ``published``.
``{"type": "unpublish", "stream"}``                        Reply ``unpublished``.
``{"type": "subscribe", "user_id", "stream"}`` or          Reply ``subscription`` with Ember's SDP offer
``{"type": "subscribe", "streams": [{"user_id",``           for the subscriber PeerConnection. At most 64
``"stream"}, ...]}``                                       streams; all are subscribed, or none.
``{"type": "answer", "sdp", "subscription"?}``             SDP answer to the last offer. Reply
                                                           ``subscribed``.
``{"type": "unsubscribe", "subscription"}``                Reply ``unsubscribed`` (if it carries an
                                                           ``sdp`` offer, answer it).
``{"type": "close_subscriber"}``                           The client's subscriber PeerConnection failed:
                                                           every subscription ends (no events for them).
                                                           Reply ``subscriber_closed``.
``{"type": "leave"}``                                      Final event ``left``; the server closes (1000).
``{"type": "ping"}``                                       Reply ``pong``.
``{"type": "stats", "interval", ...}``                     QoS report every few seconds (``stats.report``).
                                                           Reply ``stats_ok`` ``{"stored"}`` (False: sooner
                                                           than 1 s after the last one, not stored).
======================================================== ==================================================

Server -> client replies:

- ``{"type": "joined", "session_id", "room_id", "user_id", "participants": [{"user_id", "nickname",
  "streams": [{"stream", "audio", "video"}]}], "ice_servers": [{"urls", "username", "credential"}]}``: the
  others already in the room and their live streams; ``ice_servers`` (WebRTC ``RTCIceServer`` objects,
  ``[]`` when the server has no TURN relay) is for every PeerConnection of this session: a time-limited
  TURN credential (``EMBER_TURN_CREDENTIAL_TTL``) for when direct media fails. In a cluster it also has
  ``"nodes"``: the live nodes' public URLs, where the SDKs rejoin if this node is lost.
- ``{"type": "redirect", "room_id", "node_id", "url", "message"}``, in a cluster (``EMBER_REDIS_URL``)
  instead of ``joined`` when the room is hosted by another node (``url``: that node's ``EMBER_PUBLIC_URL``);
  the server closes (4302), and the client sends the same ``join`` to ``url``'s signalling endpoint. The
  join is checked (signature, app) before it is redirected; nothing is recorded for it on this node.
- ``{"type": "published", "stream", "sdp", "tracks": [{"mid", "type", "codec"}]}``: the SDP answer.
- ``{"type": "subscription", "sdp", "subscriptions": [{"subscription", "user_id", "stream", "tracks":
  [{"mid", "type", "codec", "feed_mid"}]}]}``: the SDP offer (``null`` if nothing changed) and each new
  subscription; a ``subscribe`` naming one stream also gets that one's fields at the top level.
- ``{"type": "unsubscribed", "subscription", "sdp"?}``: ``sdp`` is an offer to answer, when present.
- ``unpublished`` ``{"stream"}``, ``subscribed`` ``{"subscription"?}``, ``pong``.
- ``{"type": "error", "code", "message"}``: ``code`` from the SparkRTC catalogue (``RTC.00001001`` bad
  signature or ``ctime``, ``RTC.00001015`` unknown app, ``RTC.00001016`` disabled app, ``RTC.00001002``/
  ``RTC.00001003``/``RTC.00001005`` malformed, bad or missing fields, ``RTC.00002000`` server fault).
  Errors in the room leave the connection open. A ``join`` refused by the checks (or malformed) is followed
  by close code 4403, a first message that is not ``join`` (or none within 10 s) by 4400, a join the media
  plane cannot take (Janus down, or none configured) by 4500. Refusals are recorded as failed joins,
  except a malformed join, a join to an app that does not exist (no tenant owns that record) and any join
  to a server running without a media plane.

Server -> client events:

- ``{"type": "user_joined", "user_id", "nickname"}``, ``{"type": "user_left", "user_id", "reason"}``
- ``{"type": "stream_published", "user_id", "stream", "audio", "video"}`` (once its media flows),
  ``{"type": "stream_unpublished", "user_id", "stream"}``
- ``{"type": "subscription_ended", "subscription", "user_id", "stream", "reason"}``: that subscription's
  tracks carry nothing more (its m-lines go inactive at the next renegotiation; no offer comes for it).
- ``{"type": "subscriber_closed", "reason"}``: the subscriber PeerConnection is gone (after a
  ``subscription_ended`` for each subscription on it): close it; the next ``subscribe`` starts a new one.
- Final events, after which the server closes the WebSocket: ``{"type": "removed", "reason": "removed" |
  "replaced", "message"}`` (close 4001: the application removed the user, or the same user joined again
  elsewhere), ``{"type": "dismissed", "message"}`` (close 4002), ``{"type": "disconnected", "reason":
  "media_restart" | "shutdown", "message"}`` (close 4003: the client may join again). A final event is sent
  once the departure is recorded, so the room and session records already say what happened.

``user_left`` reasons: ``left``, ``disconnected``, ``removed``, ``replaced``, ``dismissed``,
``media_restart``, ``shutdown``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
from typing import Annotated, Any, Literal

from fastapi import APIRouter, WebSocket, WebSocketDisconnect
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    TypeAdapter,
    ValidationError,
    field_validator,
    model_validator,
)
from starlette.websockets import WebSocketState

from emberrtc.api.errors import validation_error
from emberrtc.api.schemas.common import RoomId, UserId, combination_error, missing_error
from emberrtc.bootstrap import Services
from emberrtc.domain import errors as E
from emberrtc.domain.room_session import Admission, JoinRequest
from emberrtc.media.plane import (
    Ended,
    EndReason,
    JanusMediaPlane,
    MediaPlaneError,
    MediaUnavailableError,
    Participant,
    RoomEvent,
    StreamKind,
    StreamPublished,
    StreamUnpublished,
    SubscriberClosed,
    SubscriptionEnded,
    SubscriptionView,
    UserJoined,
    UserLeft,
)
from emberrtc.stats.collector import SessionStatsContext
from emberrtc.stats.report import StatsReport

log = logging.getLogger(__name__)

router = APIRouter(tags=["Signalling"])

#: The first message (join) must arrive within this many seconds.
JOIN_TIMEOUT = 10.0
#: Largest message accepted (an SDP with many candidates is a few kB).
MAX_MESSAGE = 256 * 1024
#: Most streams one ``subscribe`` may ask for (a room holds at most ``room_max_streams``, 64 by default).
MAX_SUBSCRIBE_STREAMS = 64
#: How long a leaving connection waits to flush its last events.
FLUSH_TIMEOUT = 2.0

CLOSE_NORMAL = 1000
CLOSE_REMOVED, CLOSE_DISMISSED, CLOSE_DISCONNECTED = 4001, 4002, 4003
CLOSE_PROTOCOL, CLOSE_REFUSED, CLOSE_FAULT = 4400, 4403, 4500
CLOSE_REDIRECT = 4302

_CTIME = re.compile(r"^\d{1,12}$")

Text = Annotated[str, StringConstraints(max_length=256)]
Sdp = Annotated[str, StringConstraints(min_length=1, max_length=MAX_MESSAGE)]
RequestId = int | Annotated[str, StringConstraints(max_length=64)] | None


class _Message(BaseModel):
    model_config = ConfigDict(extra="ignore", coerce_numbers_to_str=False)
    id: RequestId = None


class JoinMessage(_Message):
    type: Literal["join"]
    app_id: Annotated[str, StringConstraints(min_length=1, max_length=64)]
    room_id: RoomId
    user_id: UserId
    ctime: int | str | None = None
    signature: Annotated[str, StringConstraints(max_length=128, pattern=r"^[0-9A-Fa-f]*$")] | None = None  # hex
    nickname: Text | None = None
    platform: Annotated[str, StringConstraints(max_length=128)] | None = None
    sdk_version: Annotated[str, StringConstraints(max_length=64)] | None = None
    device_model: Annotated[str, StringConstraints(max_length=128)] | None = None

    @field_validator("ctime")
    @classmethod
    def _ctime_digits(cls, value: int | str | None) -> str | None:
        # Signed as its decimal text (spec README), so the text is kept exactly as sent.
        if value is None:
            return None
        text = str(value)
        if isinstance(value, bool) or not _CTIME.fullmatch(text):
            raise ValueError("ctime must be a UNIX time in seconds")
        return text


class PublishMessage(_Message):
    type: Literal["publish"]
    stream: StreamKind
    sdp: Sdp


class UnpublishMessage(_Message):
    type: Literal["unpublish"]
    stream: StreamKind


class StreamRef(BaseModel):
    model_config = ConfigDict(extra="ignore")
    user_id: UserId
    stream: StreamKind


class SubscribeMessage(_Message):
    type: Literal["subscribe"]
    user_id: UserId | None = None
    stream: StreamKind | None = None
    streams: Annotated[list[StreamRef], Field(min_length=1, max_length=MAX_SUBSCRIBE_STREAMS)] | None = None

    @model_validator(mode="after")
    def _one_form(self) -> SubscribeMessage:
        single = self.user_id is not None or self.stream is not None
        if self.streams is not None and single:
            raise combination_error("give either user_id and stream, or streams")
        if self.streams is None and (self.user_id is None or self.stream is None):
            raise missing_error("user_id and stream (or streams) are required")
        return self

    def wanted(self) -> list[tuple[str, StreamKind]]:
        if self.streams is not None:
            return [(ref.user_id, ref.stream) for ref in self.streams]
        assert self.user_id is not None and self.stream is not None
        return [(self.user_id, self.stream)]


class AnswerMessage(_Message):
    type: Literal["answer"]
    subscription: Annotated[str, StringConstraints(min_length=1, max_length=64)] | None = None
    sdp: Sdp


class UnsubscribeMessage(_Message):
    type: Literal["unsubscribe"]
    subscription: Annotated[str, StringConstraints(min_length=1, max_length=64)]


class CloseSubscriberMessage(_Message):
    type: Literal["close_subscriber"]


class LeaveMessage(_Message):
    type: Literal["leave"]


class PingMessage(_Message):
    type: Literal["ping"]


InRoomMessage = Annotated[
    StatsReport
    | PublishMessage
    | UnpublishMessage
    | SubscribeMessage
    | AnswerMessage
    | UnsubscribeMessage
    | CloseSubscriberMessage
    | LeaveMessage
    | PingMessage
    | JoinMessage,
    Field(discriminator="type"),
]
_IN_ROOM = TypeAdapter(InRoomMessage)


class _ProtocolError(Exception):
    def __init__(self, error: E.EmberError, request_id: Any = None) -> None:
        super().__init__(error.message)
        self.error = error
        self.request_id = request_id


def _parse(text: str) -> Any:
    """The message as a model, or :class:`_ProtocolError` carrying the catalogue error."""
    if len(text) > MAX_MESSAGE:
        raise _ProtocolError(E.InvalidParameterValue(f"message larger than {MAX_MESSAGE} bytes"))
    try:
        data = json.loads(text)
    except (ValueError, RecursionError):  # RecursionError: nested deeper than the parser goes
        raise _ProtocolError(E.MalformedRequestBody("messages must be JSON objects")) from None
    if not isinstance(data, dict):
        raise _ProtocolError(E.MalformedRequestBody("messages must be JSON objects"))
    request_id = data.get("id") if isinstance(data.get("id"), int | str) else None
    try:
        return _IN_ROOM.validate_python(data)
    except ValidationError as exc:
        errors: list[dict[str, Any]] = [dict(e) for e in exc.errors()]
        if errors[0]["type"] in ("union_tag_invalid", "union_tag_not_found"):
            unknown = E.InvalidParameterValue(f"unknown message type {data.get('type')!r}")
            raise _ProtocolError(unknown, request_id) from None
        # The discriminator's name leads each location; the field is what the client needs.
        for e in errors:
            e["loc"] = tuple(e["loc"][1:])
        raise _ProtocolError(validation_error(errors), request_id) from None


def _event_json(event: RoomEvent) -> dict[str, Any]:
    if isinstance(event, UserJoined):
        return {"type": "user_joined", "user_id": event.user_id, "nickname": event.nickname}
    if isinstance(event, UserLeft):
        return {"type": "user_left", "user_id": event.user_id, "reason": str(event.reason)}
    if isinstance(event, StreamPublished):
        return {
            "type": "stream_published",
            "user_id": event.user_id,
            "stream": str(event.stream),
            "audio": event.audio,
            "video": event.video,
        }
    if isinstance(event, StreamUnpublished):
        return {"type": "stream_unpublished", "user_id": event.user_id, "stream": str(event.stream)}
    if isinstance(event, SubscriptionEnded):
        return {
            "type": "subscription_ended",
            "subscription": event.subscription,
            "user_id": event.user_id,
            "stream": str(event.stream),
            "reason": event.reason,
        }
    if isinstance(event, SubscriberClosed):
        return {"type": "subscriber_closed", "reason": event.reason}
    return _final_json(event)[0]


def _subscription_json(view: SubscriptionView) -> dict[str, Any]:
    return {"subscription": view.id, "user_id": view.user_id, "stream": str(view.stream), "tracks": view.tracks}


def _final_json(event: Ended) -> tuple[dict[str, Any], int]:
    if event.reason == EndReason.LEFT:
        return {"type": "left"}, CLOSE_NORMAL
    if event.reason in (EndReason.REMOVED, EndReason.REPLACED):
        return {"type": "removed", "reason": str(event.reason), "message": event.message}, CLOSE_REMOVED
    if event.reason == EndReason.DISMISSED:
        return {"type": "dismissed", "message": event.message}, CLOSE_DISMISSED
    return {"type": "disconnected", "reason": str(event.reason), "message": event.message}, CLOSE_DISCONNECTED


def _plane_error(exc: MediaPlaneError) -> E.EmberError:
    # Service faults apart from client mistakes (STYLE.md).
    if isinstance(exc, MediaUnavailableError):
        return E.InternalError(str(exc))
    return E.InvalidParameterValue(str(exc))


class _Connection:
    """One client's signalling connection: join, then requests and events until the end."""

    def __init__(self, ws: WebSocket, svc: Services) -> None:
        self.ws = ws
        self.svc = svc
        self._send_lock = asyncio.Lock()
        self._stats: SessionStatsContext | None = None

    async def send(self, message: dict[str, Any], request_id: Any = None) -> None:
        if request_id is not None:
            message = {**message, "id": request_id}
        async with self._send_lock:
            if self.ws.application_state != WebSocketState.CONNECTED:
                raise WebSocketDisconnect(1006)
            try:
                await self.ws.send_text(json.dumps(message))
            except (RuntimeError, OSError) as exc:  # the client went away mid-send
                raise WebSocketDisconnect(1006) from exc

    async def receive(self) -> str:
        message = await self.ws.receive()
        if message["type"] == "websocket.disconnect":
            raise WebSocketDisconnect(message.get("code", 1000))
        if message.get("text") is not None:
            return str(message["text"])
        return bytes(message.get("bytes") or b"").decode("utf-8", "replace")

    async def send_error(self, error: E.EmberError, request_id: Any = None) -> None:
        await self.send({"type": "error", "code": error.code, "message": error.message}, request_id)

    async def close(self, code: int) -> None:
        async with self._send_lock:
            if self.ws.application_state == WebSocketState.CONNECTED:
                with contextlib.suppress(RuntimeError, WebSocketDisconnect):
                    await self.ws.close(code)

    async def run(self) -> None:
        try:
            async with asyncio.timeout(JOIN_TIMEOUT):
                message = _parse(await self.receive())
        except TimeoutError:
            await self.send_error(E.MissingParameter(f"send join within {JOIN_TIMEOUT:.0f} s"))
            await self.close(CLOSE_PROTOCOL)
            return
        except _ProtocolError as exc:
            await self.send_error(exc.error, exc.request_id)
            await self.close(CLOSE_REFUSED)
            return
        if not isinstance(message, JoinMessage):
            await self.send_error(E.InvalidParameterValue("the first message must be join"), message.id)
            await self.close(CLOSE_PROTOCOL)
            return
        await self.join(message)

    async def join(self, message: JoinMessage) -> None:
        started = self.svc.clock.now()
        plane = self.svc.plane
        if plane is None:
            await self.send_error(E.InternalError("this server runs without a media plane"), message.id)
            await self.close(CLOSE_FAULT)
            return
        request = JoinRequest(
            app_id=message.app_id,
            room_id=message.room_id,
            user_id=message.user_id,
            ctime=message.ctime if isinstance(message.ctime, str) else None,
            signature=message.signature,
            nickname=message.nickname,
            platform=message.platform,
            sdk_version=message.sdk_version,
            device_model=message.device_model,
            client_ip=self.ws.client.host if self.ws.client else None,
        )
        # A client refused again and again is refused at once, without the checks and the FAIL record each
        # refusal costs (the limiter's ``refused_joins`` category, per app and client address: one address's
        # bad joins to one app do not lock out its joins to another). The address is the peer's, or what a
        # proxy in ``EMBER_TRUSTED_PROXIES`` says (api/edge.py).
        address = request.client_ip or "unknown"
        limited = f"{message.app_id} {address}"
        wait = await self.svc.rate_limiter.peek(limited, "refused_joins")
        if wait is not None:
            throttled = E.RateLimited(
                f"too many refused joins from {address} to this app; retry after {wait:.0f} s", retry_after=wait
            )
            await self.send_error(throttled, message.id)
            await self.close(CLOSE_REFUSED)
            return
        if self.svc.cluster is not None and await self.redirected(request, message):
            return
        try:
            admission = await self.svc.room_sessions.admit(request)
        except E.EmberError as exc:
            with contextlib.suppress(E.RateLimited):
                await self.svc.rate_limiter.take(limited, "refused_joins")
            if not isinstance(exc, E.AppNotExist):  # no tenant owns a join to an unknown app
                self._join_refused(request, exc, started)
            await self.send_error(exc, message.id)
            await self.close(CLOSE_REFUSED)
            return
        try:
            participant, peers = await plane.join(
                message.app_id,
                message.room_id,
                message.user_id,
                session_id=admission.session_id,
                nickname=message.nickname,
            )
        except MediaPlaneError as exc:
            error = _plane_error(exc)
            await self.svc.room_sessions.fail(admission.session_id, f"{error.code}: {error.message}")
            self._join_refused(request, error, started)
            await self.send_error(error, message.id)
            await self.close(CLOSE_FAULT)
            return
        final: Ended | None = None
        try:
            await self.send(
                {
                    "type": "joined",
                    "session_id": admission.session_id,
                    "room_id": message.room_id,
                    "user_id": message.user_id,
                    "participants": [
                        {
                            "user_id": peer.user_id,
                            "nickname": peer.nickname,
                            "streams": [
                                {"stream": str(s.stream), "audio": s.audio, "video": s.video} for s in peer.streams
                            ],
                        }
                        for peer in peers
                    ],
                    # The TURN relay and a credential for this session ([] without one): clients use it when
                    # direct media to Janus fails (media/turn_credentials.py).
                    "ice_servers": self.svc.ice_servers.for_user(admission.session_id, self.svc.clock.now()),
                    **await self.cluster_nodes(),
                },
                message.id,
            )
            self._stats = self.svc.stats_collector.joined(
                session_id=admission.session_id,
                app_id=admission.app_id,
                room_id=admission.room_id,
                user_id=admission.user_id,
                platform=request.platform,
                client_ip=request.client_ip,
                started=started,
            )
            final = await self.in_room(plane, participant, admission)
        finally:
            # Shielded: the record must be written even when this task is being cancelled.
            await asyncio.shield(self.depart(plane, participant, admission))
        # Told last, so a client that sees its final event can rely on the records being written.
        if final is not None and final.reason != EndReason.DISCONNECTED:
            reply, code = _final_json(final)
            with contextlib.suppress(WebSocketDisconnect, RuntimeError):
                await self.send(reply)
            await self.close(code)

    async def cluster_nodes(self) -> dict[str, list[str]]:
        """In a cluster, ``{"nodes": [public URLs of the live nodes]}`` for the join answer: where the SDKs
        rejoin when this node is lost (none if Redis does not answer now: they use the URL they joined by)."""
        if self.svc.cluster is None:
            return {}
        try:
            return {"nodes": [n.public_url for n in await self.svc.cluster.nodes()]}
        except E.InternalError as exc:
            log.warning("the live nodes are unknown for a join answer: %s", exc)
            return {"nodes": []}

    async def redirected(self, request: JoinRequest, message: JoinMessage) -> bool:
        """In a cluster: when the room lives on another node (placed now if it had no live host), tell the
        client where and close; True if so. A join the checks refuse is not placed: it goes on to be
        refused (and recorded) here."""
        assert self.svc.cluster is not None
        if await self.svc.room_sessions.refusal(request) is not None:
            return False
        try:
            host = await self.svc.cluster.host_of(request.app_id, request.room_id)
        except E.EmberError as exc:
            log.error("placing room %s/%s: %s", request.app_id, request.room_id, exc.message)
            await self.send_error(exc, message.id)
            await self.close(CLOSE_FAULT)
            return True
        if host is None:
            return False
        reply = {
            "type": "redirect",
            "room_id": request.room_id,
            "node_id": host.node_id,
            "url": host.public_url,
            "message": f"room {request.room_id} is hosted by node {host.node_id}: join it at {host.public_url}",
        }
        await self.send(reply, message.id)
        await self.close(CLOSE_REDIRECT)
        return True

    def _join_refused(self, request: JoinRequest, error: E.EmberError, started: float) -> None:
        self.svc.stats_collector.join_refused(
            app_id=request.app_id,
            room_id=request.room_id,
            user_id=request.user_id,
            platform=request.platform,
            client_ip=request.client_ip,
            fail_code=error.code,
            started=started,
        )

    async def depart(self, plane: JanusMediaPlane, participant: Participant, admission: Admission) -> None:
        if self._stats is not None:
            self.svc.stats_collector.left(self._stats)
        try:
            if participant.end_reason is None:
                await plane.leave(participant, EndReason.DISCONNECTED)
            await self.svc.room_sessions.leave(admission.session_id, str(participant.end_reason))
        finally:
            participant.settle()

    async def in_room(self, plane: JanusMediaPlane, participant: Participant, admission: Admission) -> Ended | None:
        """Serve requests and deliver events; return the final event (None if the client went away)."""
        reader = asyncio.create_task(self.read(plane, participant, admission), name="signalling-read")
        pump = asyncio.create_task(self.pump(participant), name="signalling-events")
        try:
            done, _ = await asyncio.wait({reader, pump}, return_when=asyncio.FIRST_COMPLETED)
            if pump in done:
                return pump.result() if pump.exception() is None else None
            if reader.exception() is not None:
                return None
            # The client left: deliver what is queued, up to the final event.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(FLUSH_TIMEOUT):
                    return await asyncio.shield(pump)
            return None
        finally:
            for task in (reader, pump):
                task.cancel()
            for task in (reader, pump):
                with contextlib.suppress(asyncio.CancelledError, WebSocketDisconnect, RuntimeError):
                    await task

    async def pump(self, participant: Participant) -> Ended:
        """Deliver room events until the final one, which is returned, not sent."""
        while True:
            event = await participant.events.get()
            if isinstance(event, Ended):
                return event
            await self.send(_event_json(event))

    async def read(self, plane: JanusMediaPlane, participant: Participant, admission: Admission) -> None:
        """Serve the client's requests until it leaves (returns) or goes away (raises)."""
        while True:
            text = await self.receive()
            try:
                message = _parse(text)
                if isinstance(message, LeaveMessage):
                    await plane.leave(participant, EndReason.LEFT)
                    return
                reply = await self.handle(plane, participant, admission, message)
            except _ProtocolError as exc:
                await self.send_error(exc.error, exc.request_id)
                continue
            except MediaPlaneError as exc:
                await self.send_error(_plane_error(exc), message.id)
                continue
            await self.send(reply, message.id)

    async def handle(
        self, plane: JanusMediaPlane, participant: Participant, admission: Admission, message: Any
    ) -> dict[str, Any]:
        if isinstance(message, PublishMessage):
            sdp, tracks = await plane.publish(participant, message.stream, message.sdp)
            await self.svc.room_sessions.publish(admission.session_id, str(message.stream))
            try:
                await self.svc.jobs.auto_record(
                    admission.app_id, admission.room_id, admission.user_id, str(message.stream)
                )
            except Exception:  # recording must never cost the publisher its stream; the fault is logged
                log.exception("automatic recording of %s's %s failed", admission.user_id, message.stream)
            return {"type": "published", "stream": str(message.stream), "sdp": sdp, "tracks": tracks}
        if isinstance(message, UnpublishMessage):
            await plane.unpublish(participant, message.stream)
            return {"type": "unpublished", "stream": str(message.stream)}
        if isinstance(message, SubscribeMessage):
            views, offer_sdp = await plane.subscribe_many(participant, message.wanted())
            subscriptions = [_subscription_json(view) for view in views]
            reply: dict[str, Any] = {"type": "subscription", "sdp": offer_sdp, "subscriptions": subscriptions}
            if message.streams is None:
                reply.update(subscriptions[0])
            return reply
        if isinstance(message, AnswerMessage):
            await plane.answer(participant, message.subscription, message.sdp)
            answered: dict[str, Any] = {"type": "subscribed"}
            if message.subscription is not None:
                answered["subscription"] = message.subscription
            return answered
        if isinstance(message, UnsubscribeMessage):
            offer = await plane.unsubscribe(participant, message.subscription)
            unsubscribed: dict[str, Any] = {"type": "unsubscribed", "subscription": message.subscription}
            if offer is not None:
                unsubscribed["sdp"] = offer
            return unsubscribed
        if isinstance(message, CloseSubscriberMessage):
            await plane.close_subscriber(participant)
            return {"type": "subscriber_closed", "reason": "closed by the client"}
        if isinstance(message, PingMessage):
            return {"type": "pong"}
        if isinstance(message, StatsReport):
            stored = self._stats is not None and self.svc.stats_collector.report(self._stats, message)
            return {"type": "stats_ok", "stored": stored}
        raise _ProtocolError(E.InvalidParameterValue("already joined"), message.id)


@router.websocket("/v1/rtc/signalling")
async def signalling(ws: WebSocket) -> None:
    """Join a room and exchange SDP and room events (protocol in this module's docstring)."""
    await ws.accept()
    connection = _Connection(ws, ws.app.state.services)
    with contextlib.suppress(WebSocketDisconnect):
        await connection.run()
