"""Janus as Ember's media plane: rooms, participants, publishing, subscribing, removal and dismissal.

:class:`JanusMediaPlane` owns a supervised Janus (:class:`~emberrtc.media.janus_process.JanusProcess`) and
a :class:`~emberrtc.media.janus_client.JanusClient`, and keeps the live state of every room in memory:

- A room is one Janus videoroom per ``(app_id, room_id)``, with the Janus room ID ``"{app_id}/{room_id}"``
  (``/`` can be in neither, so rooms of different apps never collide). It is created on the first join
  and destroyed when its last participant goes. After Janus restarts it is created again on the next join.
- A participant is one user in one room. Presence lives here, not in Janus: Janus only sees the
  participant's published streams (one Janus publisher *feed* per stream, ``"{user_id}/{stream}/{tag}"``)
  and subscriptions. Subscriptions are Janus 1.x *multistream*: one subscriber handle, so one
  PeerConnection (one ICE, one DTLS handshake), per participant carries every stream it receives;
  subscribing and unsubscribing renegotiate it (Janus offers, the client answers).
- A stream is ``camera`` or ``screen``, each with optional audio. It is announced to the room once its
  PeerConnection is up (Janus ``webrtcup``).
- Each participant has a queue of :data:`RoomEvent` values for its signalling connection to deliver. A
  participant who is removed, replaced by a newer join of the same user, dismissed with the room, or cut
  off because Janus restarted receives a final :class:`Ended` and must not be used any more.

Janus does not tell subscribers when their publisher is kicked or the room destroyed (DESIGN.md), so the
plane hangs up those subscriber handles itself and tells the subscribers.

All Janus handles live in one Janus session per Janus run: one long poll carries every event.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import secrets
import shutil
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .ice_interfaces import ice_warning
from .janus_client import (
    JanusClient,
    JanusClientError,
    JanusError,
    JanusSession,
    NoSuchRoomError,
    RoomExistsError,
    RtpForwardStream,
    VideoRoomHandle,
)
from .janus_config import JanusConfig, free_loopback_ports
from .janus_process import Backoff, JanusNotInstalledError, JanusProcess

if TYPE_CHECKING:
    from emberrtc.config import Settings

__all__ = [
    "AlreadyPublishedError",
    "AlreadySubscribedError",
    "Ended",
    "EndReason",
    "Feed",
    "JanusMediaPlane",
    "MediaPlaneError",
    "MediaUnavailableError",
    "NegotiationError",
    "NotFoundError",
    "Participant",
    "PeerView",
    "RenegotiationPendingError",
    "RoomEvent",
    "StreamKind",
    "StreamPublished",
    "StreamUnpublished",
    "StreamView",
    "SubscriberClosed",
    "SubscriptionEnded",
    "SubscriptionView",
    "UserJoined",
    "UserLeft",
]

log = logging.getLogger(__name__)


class StreamKind(enum.StrEnum):
    """What a published stream carries: a camera (with its microphone) or a shared screen."""

    CAMERA = "camera"
    SCREEN = "screen"


#: The spec's ``video_type`` (Table 4-40 and others) for each kind of stream.
VIDEO_TYPES = {"CAMERASTREAM": StreamKind.CAMERA, "SCREENSTREAM": StreamKind.SCREEN}


class EndReason(enum.StrEnum):
    """Why a participant is no longer in its room."""

    #: The client asked to leave.
    LEFT = "left"
    #: The signalling connection dropped.
    DISCONNECTED = "disconnected"
    #: The application removed the user (spec 4.7.1 batch-remove-users).
    REMOVED = "removed"
    #: The same user joined the room again on another connection.
    REPLACED = "replaced"
    #: The application dismissed the room (spec 4.7.2).
    DISMISSED = "dismissed"
    #: Janus died; its rooms and PeerConnections are gone. The client may join again.
    MEDIA_RESTART = "media_restart"
    #: Ember is shutting down.
    SHUTDOWN = "shutdown"


_END_MESSAGES = {
    EndReason.LEFT: "you left the room",
    EndReason.DISCONNECTED: "the signalling connection was lost",
    EndReason.REMOVED: "the application removed you from the room",
    EndReason.REPLACED: "the same user joined the room from another connection",
    EndReason.DISMISSED: "the application dismissed the room",
    EndReason.MEDIA_RESTART: "the media server restarted; join again",
    EndReason.SHUTDOWN: "the server is shutting down",
}


# -- errors -------------------------------------------------------------------------------------------


class MediaPlaneError(Exception):
    """A signalling request the media plane could not carry out."""


class NotFoundError(MediaPlaneError):
    """No such participant, stream or subscription (a client mistake)."""


class AlreadyPublishedError(MediaPlaneError):
    """The participant already publishes a stream of that kind (a client mistake)."""


class AlreadySubscribedError(MediaPlaneError):
    """The participant already receives that stream (a client mistake)."""


class RenegotiationPendingError(MediaPlaneError):
    """The participant's subscriber PeerConnection has an offer still to answer (a client mistake: a
    client renegotiates one change at a time)."""


class NegotiationError(MediaPlaneError):
    """Janus refused the client's SDP (a client mistake, most often an unsupported codec)."""


class MediaUnavailableError(MediaPlaneError):
    """Janus is not running or failed to answer (a service fault)."""


class MediaNetworkError(MediaUnavailableError):
    """Janus could not set up ICE: it has no address a client could reach (a fault of the server's set-up)."""


def _refused(exc: JanusError, what: str, media_ip: str) -> MediaPlaneError:
    """The error for Janus refusing an SDP: the client's mistake, unless Janus could not set up ICE at all
    (``media_ip``: the plane's ``EMBER_MEDIA_IP``, to say why in the log)."""
    if "ICE" not in exc.reason:
        return NegotiationError(f"the media server refused the {what}: {exc.reason}")
    detail = ice_warning(media_ip) or "see janus.log in the data folder"
    log.error("Janus could not set up ICE for a client's %s (%s): %s", what, exc.reason, detail)
    return MediaNetworkError(
        f"the media server cannot carry media: it could not set up ICE ({exc.reason}). It has no network "
        "address clients can reach (Janus never uses loopback); the server's operator must run it on a "
        "reachable interface and set EMBER_MEDIA_IP (the server's log says more)"
    )


# -- events -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class UserJoined:
    user_id: str
    nickname: str | None


@dataclass(frozen=True)
class UserLeft:
    user_id: str
    reason: EndReason


@dataclass(frozen=True)
class StreamPublished:
    user_id: str
    stream: StreamKind
    audio: bool
    video: bool


@dataclass(frozen=True)
class StreamUnpublished:
    user_id: str
    stream: StreamKind


@dataclass(frozen=True)
class SubscriptionEnded:
    """A subscription of this participant was hung up (its publisher stopped, left or was removed)."""

    subscription: str
    user_id: str
    stream: StreamKind
    reason: str


@dataclass(frozen=True)
class SubscriberClosed:
    """The participant's subscriber PeerConnection is gone (Janus hung it up); every subscription on it
    ended (each told first with :class:`SubscriptionEnded`). The next subscription starts a new one."""

    reason: str


@dataclass(frozen=True)
class Ended:
    """The last event a participant receives: it is out of the room."""

    reason: EndReason
    message: str


RoomEvent = UserJoined | UserLeft | StreamPublished | StreamUnpublished | SubscriptionEnded | SubscriberClosed | Ended


@dataclass(frozen=True)
class StreamView:
    stream: StreamKind
    audio: bool
    video: bool


@dataclass(frozen=True)
class PeerView:
    """Another participant as a joining client first sees it: who, and which streams are live."""

    user_id: str
    nickname: str | None
    streams: list[StreamView]


@dataclass(frozen=True)
class SubscriptionView:
    """A subscription as its client sees it: its ID, whose stream, and its tracks in the participant's
    subscriber PeerConnection (``mid`` there, ``type``, ``codec``, and the publisher's ``feed_mid``)."""

    id: str
    user_id: str
    stream: StreamKind
    tracks: list[dict[str, Any]]


@dataclass(frozen=True)
class Feed:
    """A live published stream as Janus knows it (for RTP forwarding by the recording engine)."""

    user_id: str
    stream: StreamKind
    janus_room: str
    feed_id: str
    #: Janus's description of each track: ``mid``, ``type`` (audio/video), ``codec``.
    tracks: list[dict[str, Any]]

    @property
    def room(self) -> tuple[str, str]:
        """``(app_id, room_id)`` of the SparkRTC room (:func:`janus_room_id` backwards: neither has a ``/``)."""
        app_id, _, room_id = self.janus_room.partition("/")
        return app_id, room_id


@dataclass(frozen=True)
class HandleView:
    """A PeerConnection Janus holds for a participant, for the statistics' admin-API poll (``stats.janus``)."""

    app_id: str
    room_id: str
    user_id: str
    session_id: str
    #: ``uplink`` (one of the user's publications) or ``downlink`` (one of its subscriptions).
    direction: str
    #: ``"0"`` for uplink, else the publisher's user ID.
    peer_id: str
    stream: StreamKind
    janus_session: int
    janus_handle: int
    #: Downlink: the mids of this subscription's streams on the participant's one subscriber handle, which
    #: carries every stream it receives (Janus multistream); None: every m-line of the handle is this view's.
    mids: tuple[str, ...] | None = None


# -- state --------------------------------------------------------------------------------------------


@dataclass(eq=False)
class _Publication:
    kind: StreamKind
    feed_id: str
    handle: VideoRoomHandle
    tracks: list[dict[str, Any]]
    live: bool = False
    watcher: asyncio.Task[None] | None = None

    @property
    def audio(self) -> bool:
        return any(t.get("type") == "audio" for t in self.tracks)

    @property
    def video(self) -> bool:
        return any(t.get("type") == "video" for t in self.tracks)


@dataclass(eq=False)
class _Subscriber:
    """A participant's one subscriber PeerConnection: a Janus multistream subscriber handle."""

    handle: VideoRoomHandle
    watcher: asyncio.Task[None] | None = None
    #: Janus said ``webrtcup``: the PeerConnection is up (streams added later need a keyframe asked for).
    up: bool = False
    #: An offer went to the client and its answer has not come back yet.
    offer_pending: bool = False
    #: Publications the pending offer adds.
    adding: list[_Publication] = field(default_factory=list)
    #: Streams of ended subscriptions, paused in Janus but still on the PeerConnection: a later subscription
    #: to the same publication resumes them with no renegotiation. Janus drops them when their publisher
    #: goes. (Janus would reuse a removed m-line for the next stream, and aiortc's receiver does not survive
    #: its m-line going inactive and active again.)
    parked: dict[_Publication, list[dict[str, Any]]] = field(default_factory=dict)


@dataclass(eq=False)
class _Subscription:
    id: str
    subscriber: Participant
    publisher: Participant
    publication: _Publication
    #: Its tracks in the subscriber PeerConnection (see :class:`SubscriptionView`).
    tracks: list[dict[str, Any]]

    def view(self) -> SubscriptionView:
        return SubscriptionView(self.id, self.publisher.user_id, self.publication.kind, self.tracks)


class Participant:
    """One user in one room, as seen by its signalling connection.

    Read :attr:`events` and deliver them; after an :class:`Ended` event nothing more comes. Once the
    connection has recorded the departure it calls :meth:`settle`, which lets :meth:`JanusMediaPlane.dismiss`
    and :meth:`JanusMediaPlane.remove_users` return only when their effect is complete.
    """

    def __init__(self, room: _Room, user_id: str, nickname: str | None, session_id: str) -> None:
        self.room = room
        self.user_id = user_id
        self.nickname = nickname
        self.session_id = session_id
        self.events: asyncio.Queue[RoomEvent] = asyncio.Queue()
        self.end_reason: EndReason | None = None
        self._publications: dict[StreamKind, _Publication] = {}
        self._subscriptions: dict[str, _Subscription] = {}
        self._subscriber: _Subscriber | None = None
        self._settled = asyncio.Event()

    @property
    def app_id(self) -> str:
        return self.room.app_id

    @property
    def room_id(self) -> str:
        return self.room.room_id

    @property
    def published(self) -> list[StreamKind]:
        """Kinds of the streams this participant publishes now."""
        return list(self._publications)

    def settle(self) -> None:
        """Say that the departure has been fully handled (recorded, client told)."""
        self._settled.set()

    def _view(self) -> PeerView:
        streams = [StreamView(p.kind, p.audio, p.video) for p in self._publications.values() if p.live]
        return PeerView(self.user_id, self.nickname, streams)


class _Room:
    def __init__(self, app_id: str, room_id: str) -> None:
        self.app_id = app_id
        self.room_id = room_id
        self.janus_id = janus_room_id(app_id, room_id)
        self.participants: dict[str, Participant] = {}
        self.lock = asyncio.Lock()
        #: The Janus run (start count) the Janus room was created in; 0: not created.
        self.janus_generation = 0

    @property
    def key(self) -> tuple[str, str]:
        return (self.app_id, self.room_id)


def janus_room_id(app_id: str, room_id: str) -> str:
    """The Janus videoroom ID of a SparkRTC room; neither ID may contain ``/``, so apps never collide."""
    return f"{app_id}/{room_id}"


# -- the plane ----------------------------------------------------------------------------------------


def _port_range(text: str) -> tuple[int, int] | None:
    if not text:
        return None
    low, _, high = text.partition("-")
    return (int(low), int(high or low))


class JanusMediaPlane:
    """The media plane over one supervised Janus. Implements the domain's ``MediaPlane`` port."""

    def __init__(
        self,
        config: JanusConfig,
        config_dir: Path | str,
        *,
        binary: str = "janus",
        backoff: Backoff | None = None,
        max_streams: int = 64,
        settle_timeout: float = 1.0,
        keepalive: float = 25.0,
    ) -> None:
        """``max_streams`` caps the streams published at once in one room; ``settle_timeout`` bounds how
        long :meth:`remove_users` and :meth:`dismiss` wait for the connections to record departures;
        ``keepalive`` is the seconds between the keepalives of the plane's Janus session."""
        self.process = JanusProcess(
            config,
            config_dir,
            binary=binary,
            backoff=backoff,
            on_ready=self._on_janus_ready,
            on_exit=self._on_janus_exit,
        )
        self.client = JanusClient.from_config(config)
        self.max_streams = max_streams
        self.settle_timeout = settle_timeout
        self.keepalive = keepalive
        self._rooms: dict[tuple[str, str], _Room] = {}
        self._session: JanusSession | None = None
        self._control: VideoRoomHandle | None = None
        self._session_lock = asyncio.Lock()
        #: Start count of the Janus run in use; rooms created in an earlier run are gone.
        self._generation = 0
        #: Called with the :class:`Feed` of every stream that goes live (its PeerConnection is up), from
        #: the publisher's event task: a listener must not block (the recording source schedules its work).
        self.feed_listeners: list[Callable[[Feed], None]] = []
        #: Called with the :class:`Feed` of every live stream that ends (unpublished, its connection gone,
        #: its publisher out of the room), with the room locked: a listener must not block either.
        self.feed_ended_listeners: list[Callable[[Feed], None]] = []

    @classmethod
    def from_settings(cls, settings: Settings) -> JanusMediaPlane:
        """A plane on fresh loopback ports, with its private Janus config in ``data_dir/janus``."""
        from emberrtc.config import public_ip_list

        http_port, admin_port, ws_port = free_loopback_ports(3)
        config = JanusConfig(
            http_port=http_port,
            admin_port=admin_port,
            ws_port=ws_port,
            ice_enforce_list=settings.media_ip or None,
            rtp_port_range=_port_range(settings.media_ports),
            nat_1_1_mapping=",".join(public_ip_list(settings.media_public_ip)) or None,
            ice_tcp=settings.media_ice_tcp,
        )
        return cls(
            config,
            settings.data_dir / "janus",
            binary=settings.janus_binary,
            max_streams=settings.room_max_streams,
            keepalive=settings.janus_keepalive,
        )

    @staticmethod
    def check_installed(binary: str = "janus") -> None:
        """Raise :class:`JanusNotInstalledError` (which says how to install Janus) if it is missing."""
        if shutil.which(binary) is None:
            raise JanusNotInstalledError(
                f"the Janus WebRTC server ({binary!r}) is not installed; Ember's media plane needs it: "
                "install it with `apt-get install janus` (or start Ember with EMBER_MEDIA_ENABLED=false)"
            )

    # -- lifecycle ------------------------------------------------------------------------------------

    async def start(self) -> None:
        """Start Janus and wait until it answers; warn in the log when no client could reach its media."""
        self.check_installed(self.process.binary)
        warning = await asyncio.to_thread(ice_warning, self.process.config.ice_enforce_list or "")
        if warning:
            log.warning("%s", warning)
        await self.process.start()

    async def stop(self) -> None:
        """Tell every participant the server is going away, then stop Janus."""
        await self._end_everyone(EndReason.SHUTDOWN, janus_alive=False)
        session, self._session, self._control = self._session, None, None
        if session is not None:
            with contextlib.suppress(JanusClientError):
                await session.destroy()
        await self.client.aclose()
        await self.process.stop()

    async def _on_janus_ready(self, starts: int) -> None:
        self._generation = starts

    async def _on_janus_exit(self, status: int) -> None:
        # Every room, handle and PeerConnection died with Janus: nothing to tear down there, only
        # participants to tell. Rooms are created again by the next join.
        self._session, self._control = None, None
        # Not waiting for the connections to settle: the supervisor restarts Janus meanwhile.
        await self._end_everyone(EndReason.MEDIA_RESTART, janus_alive=False, settle=False)

    async def _end_everyone(self, reason: EndReason, *, janus_alive: bool, settle: bool = True) -> None:
        ended: list[Participant] = []
        for room in list(self._rooms.values()):
            async with room.lock:
                for p in list(room.participants.values()):
                    handles = self._end_locked(room, p, reason)
                    if janus_alive:
                        await self._detach(handles)
                    ended.append(p)
                await self._drop_if_empty(room, janus_alive=janus_alive)
        if settle:
            await self._wait_settled(ended)

    # -- Janus plumbing -------------------------------------------------------------------------------

    async def _janus(self) -> tuple[JanusSession, VideoRoomHandle]:
        """The session of the current Janus run (created on first use) and its room-management handle."""
        async with self._session_lock:
            if self._session is None or self._session.closed or self._control is None:
                if not self.process.ready:
                    raise MediaUnavailableError("the media server is not running")
                try:
                    self._session = await self.client.create_session(keepalive_interval=self.keepalive)
                    self._control = await self._session.attach_videoroom()
                except JanusClientError as exc:
                    raise MediaUnavailableError(f"the media server did not answer: {exc}") from exc
            return self._session, self._control

    async def _ensure_janus_room(self, room: _Room) -> None:
        if room.janus_generation == self._generation:
            return
        _, control = await self._janus()
        generation = self._generation
        try:
            await control.create_room(
                room.janus_id,
                description=room.janus_id,
                publishers=self.max_streams,
                videocodecs=("h264", "vp8"),
                audiocodecs=("opus",),
                is_private=True,
            )
        except RoomExistsError:
            pass
        except JanusClientError as exc:
            raise MediaUnavailableError(f"the media server could not create the room: {exc}") from exc
        room.janus_generation = generation

    async def _detach(self, handles: Iterable[VideoRoomHandle]) -> None:
        async def one(handle: VideoRoomHandle) -> None:
            try:
                await handle.detach()
            except JanusClientError as exc:
                log.debug("detaching janus handle %d: %s", handle.id, exc)

        await asyncio.gather(*(one(h) for h in handles))

    @contextlib.asynccontextmanager
    async def _locked(self, app_id: str, room_id: str, *, create: bool) -> AsyncIterator[_Room | None]:
        """The room, locked; None when it does not exist and ``create`` is false."""
        key = (app_id, room_id)
        while True:
            room = self._rooms.get(key)
            if room is None:
                if not create:
                    yield None
                    return
                room = self._rooms[key] = _Room(app_id, room_id)
            async with room.lock:
                # The room may have emptied and gone while this waited for its lock.
                if self._rooms.get(key) is room:
                    yield room
                    return

    @contextlib.asynccontextmanager
    async def _participant_room(self, p: Participant) -> AsyncIterator[_Room]:
        async with p.room.lock:
            if p.end_reason is not None:
                raise NotFoundError(f"you are no longer in the room ({p.end_reason})")
            yield p.room

    async def _drop_if_empty(self, room: _Room, *, janus_alive: bool = True) -> None:
        if room.participants or self._rooms.get(room.key) is not room:
            return
        # Destroyed while still registered (and locked): a join arriving meanwhile waits for this room's
        # lock, then finds it gone and creates the Janus room afresh, never racing this destroy.
        if janus_alive and room.janus_generation == self._generation and self.process.ready:
            try:
                _, control = await self._janus()
                await control.destroy_room(room.janus_id)
            except (NoSuchRoomError, MediaPlaneError, JanusClientError) as exc:
                log.debug("destroying janus room %s: %s", room.janus_id, exc)
        del self._rooms[room.key]

    async def _wait_settled(self, participants: list[Participant]) -> None:
        pending = [p for p in participants if not p._settled.is_set()]
        if not pending or self.settle_timeout <= 0:
            return
        tasks = [asyncio.create_task(p._settled.wait()) for p in pending]
        _, late = await asyncio.wait(tasks, timeout=self.settle_timeout)
        for task in late:
            task.cancel()

    # -- participants ---------------------------------------------------------------------------------

    async def join(
        self, app_id: str, room_id: str, user_id: str, *, session_id: str, nickname: str | None = None
    ) -> tuple[Participant, list[PeerView]]:
        """Put the user in the room (creating it, in Janus too, if needed); return the participant and
        the others already there. A participant of the same user already in the room is replaced."""
        replaced: Participant | None = None
        async with self._locked(app_id, room_id, create=True) as room:
            assert room is not None
            try:
                await self._ensure_janus_room(room)
            except MediaPlaneError:
                await self._drop_if_empty(room, janus_alive=False)
                raise
            replaced = room.participants.get(user_id)
            if replaced is not None:
                await self._detach(self._end_locked(room, replaced, EndReason.REPLACED))
            p = Participant(room, user_id, nickname, session_id)
            peers = [q._view() for q in room.participants.values()]
            room.participants[user_id] = p
            self._broadcast(room, UserJoined(user_id, nickname), exclude=p)
        if replaced is not None:
            await self._wait_settled([replaced])
        return p, peers

    async def leave(self, p: Participant, reason: EndReason = EndReason.LEFT) -> None:
        """Take the participant out of its room (idempotent)."""
        async with p.room.lock:
            if p.end_reason is not None:
                return
            await self._detach(self._end_locked(p.room, p, reason))
            await self._drop_if_empty(p.room)

    def _end_locked(self, room: _Room, p: Participant, reason: EndReason) -> list[VideoRoomHandle]:
        """Take ``p`` out of the room and tell everyone; return the Janus handles to detach."""
        p.end_reason = reason
        if room.participants.get(p.user_id) is p:
            del room.participants[p.user_id]
        handles: list[VideoRoomHandle] = []
        for kind in list(p._publications):
            handles += self._unpublish_locked(room, p, kind, "the publisher left")
        p._subscriptions.clear()
        handles += self._drop_subscriber(p)
        p.events.put_nowait(Ended(reason, _END_MESSAGES[reason]))
        self._broadcast(room, UserLeft(p.user_id, reason), exclude=p)
        return handles

    def _broadcast(self, room: _Room, event: RoomEvent, *, exclude: Participant | None = None) -> None:
        for q in room.participants.values():
            if q is not exclude:
                q.events.put_nowait(event)

    # -- publishing -----------------------------------------------------------------------------------

    def handles(self) -> list[HandleView]:
        """Every live publication and subscription handle, now (a snapshot; statistics only)."""
        views = []
        for room in list(self._rooms.values()):
            for p in list(room.participants.values()):
                common = (room.app_id, room.room_id, p.user_id, p.session_id)
                for pub in list(p._publications.values()):
                    h = pub.handle
                    views.append(HandleView(*common, "uplink", "0", pub.kind, h.session.id, h.id))
                subscriber = p._subscriber
                if subscriber is None:
                    continue
                h = subscriber.handle
                for sub in list(p._subscriptions.values()):
                    mids = tuple(str(t["mid"]) for t in sub.tracks)
                    views.append(
                        HandleView(
                            *common, "downlink", sub.publisher.user_id, sub.publication.kind, h.session.id, h.id, mids
                        )
                    )
        return views

    async def publish(self, p: Participant, kind: StreamKind, offer_sdp: str) -> tuple[str, list[dict[str, Any]]]:
        """Publish a stream from the client's SDP offer; return Janus's SDP answer and its track list
        (``mid``, ``type``, ``codec``). Others hear of the stream once its PeerConnection is up."""
        async with self._participant_room(p) as room:
            if kind in p._publications:
                raise AlreadyPublishedError(f"you already publish a {kind} stream; unpublish it first")
            await self._ensure_janus_room(room)
            session, _ = await self._janus()
            try:
                handle = await session.attach_videoroom()
            except JanusClientError as exc:
                raise MediaUnavailableError(f"the media server did not answer: {exc}") from exc
            feed_id = f"{p.user_id}/{kind}/{secrets.token_hex(4)}"
            try:
                await handle.join_publisher(room.janus_id, participant=feed_id, display=p.user_id)
                published = await handle.publish({"type": "offer", "sdp": offer_sdp})
            except JanusError as exc:
                await self._detach([handle])
                raise _refused(exc, "offer", self.process.config.ice_enforce_list or "") from exc
            except JanusClientError as exc:
                await self._detach([handle])
                raise MediaUnavailableError(f"the media server did not answer: {exc}") from exc
            assert published.jsep is not None
            tracks = [
                {k: s.get(k) for k in ("mid", "type", "codec")}
                for s in published.data.get("streams", [])
                if not s.get("disabled")
            ]
            pub = _Publication(kind, feed_id, handle, tracks)
            p._publications[kind] = pub
            pub.watcher = asyncio.create_task(self._watch_publisher(p, pub), name=f"publisher-{feed_id}")
            return str(published.jsep["sdp"]), tracks

    async def unpublish(self, p: Participant, kind: StreamKind) -> None:
        """Stop publishing a stream; its subscribers are hung up and told."""
        async with self._participant_room(p) as room:
            if kind not in p._publications:
                raise NotFoundError(f"you do not publish a {kind} stream")
            await self._detach(self._unpublish_locked(room, p, kind, "the publisher stopped the stream"))

    def _unpublish_locked(self, room: _Room, p: Participant, kind: StreamKind, why: str) -> list[VideoRoomHandle]:
        pub = p._publications.pop(kind)
        _cancel(pub.watcher)
        # Janus drops the feed's streams from every subscriber PeerConnection itself when its handle goes;
        # the subscribers' handles have autoupdate off, so the m-lines go inactive at their next
        # renegotiation instead of each subscriber getting an offer now.
        handles = [pub.handle]
        for q in room.participants.values():
            for sub in list(q._subscriptions.values()):
                if sub.publication is pub:
                    del q._subscriptions[sub.id]
                    q.events.put_nowait(SubscriptionEnded(sub.id, p.user_id, kind, why))
            if q._subscriber is not None:
                q._subscriber.parked.pop(pub, None)
        if pub.live:
            self._broadcast(room, StreamUnpublished(p.user_id, kind), exclude=p)
            feed = Feed(p.user_id, pub.kind, room.janus_id, pub.feed_id, list(pub.tracks))
            for listener in list(self.feed_ended_listeners):
                try:
                    listener(feed)
                except Exception:
                    log.exception("feed listener failed")
        return handles

    async def _watch_publisher(self, p: Participant, pub: _Publication) -> None:
        while True:
            event = await pub.handle.events.get()
            kind = event.get("janus")
            if kind == "webrtcup":
                went_live = False
                async with p.room.lock:
                    if p._publications.get(pub.kind) is pub and not pub.live:
                        pub.live = went_live = True
                        self._broadcast(p.room, StreamPublished(p.user_id, pub.kind, pub.audio, pub.video), exclude=p)
                if went_live:
                    feed = Feed(p.user_id, pub.kind, p.room.janus_id, pub.feed_id, list(pub.tracks))
                    for listener in list(self.feed_listeners):
                        try:
                            listener(feed)
                        except Exception:
                            log.exception("feed listener failed")
            elif kind in ("hangup", "detached"):
                # The client's PeerConnection went away without an unpublish.
                async with p.room.lock:
                    if p._publications.get(pub.kind) is pub:
                        pub.watcher = None  # this task: not to be cancelled by itself
                        await self._detach(
                            self._unpublish_locked(p.room, p, pub.kind, "the publisher's connection ended")
                        )
                return

    # -- subscribing ----------------------------------------------------------------------------------

    async def subscribe(
        self, p: Participant, user_id: str, kind: StreamKind
    ) -> tuple[str, str | None, list[dict[str, Any]]]:
        """Subscribe to one stream: :meth:`subscribe_many` with one, as (subscription ID, offer, tracks)."""
        [view], offer = await self.subscribe_many(p, [(user_id, kind)])
        return view.id, offer, view.tracks

    async def subscribe_many(
        self, p: Participant, wanted: Sequence[tuple[str, StreamKind]]
    ) -> tuple[list[SubscriptionView], str | None]:
        """Subscribe to other participants' streams on the participant's one subscriber PeerConnection
        (created by the first subscription); return the subscriptions and Janus's SDP offer (None if the
        PeerConnection did not change), which the client answers with :meth:`answer`.

        Several streams in one request make one offer, so one renegotiation (at the first subscription,
        one ICE and one DTLS handshake) for all of them."""
        async with self._participant_room(p) as room:
            subscriber = p._subscriber
            if subscriber is not None and subscriber.offer_pending:
                raise RenegotiationPendingError("answer the last subscription offer before subscribing again")
            targets: list[tuple[Participant, _Publication]] = []
            for user_id, kind in dict.fromkeys(wanted):
                target = room.participants.get(user_id)
                pub = target._publications.get(kind) if target is not None else None
                if target is None or pub is None:
                    raise NotFoundError(f"{user_id} publishes no {kind} stream in this room")
                if any(sub.publication is pub for sub in p._subscriptions.values()):
                    raise AlreadySubscribedError(f"you already receive {user_id}'s {kind} stream")
                targets.append((target, pub))
            if not targets:
                raise NotFoundError("no stream to subscribe to")
            parked = subscriber.parked if subscriber is not None else {}
            resumed = [(target, pub) for target, pub in targets if pub in parked]
            added = [(target, pub) for target, pub in targets if pub not in parked]
            if subscriber is not None and resumed:
                await self._resume(subscriber, [pub for _, pub in resumed])
            views: list[SubscriptionView] = []
            for target, pub in resumed:
                sub = _Subscription(secrets.token_hex(8), p, target, pub, parked.pop(pub))
                p._subscriptions[sub.id] = sub
                views.append(sub.view())
            if not added:
                return views, None
            streams = [{"feed": pub.feed_id} for _, pub in added]
            fresh = subscriber is None
            try:
                if subscriber is None:
                    session, _ = await self._janus()
                    handle = await session.attach_videoroom()
                    try:
                        response = await handle.join_subscriber(room.janus_id, streams, autoupdate=False)
                    except JanusClientError:
                        await self._detach([handle])
                        raise
                    subscriber = p._subscriber = _Subscriber(handle)
                    subscriber.watcher = asyncio.create_task(
                        self._watch_subscriber(p, subscriber), name=f"subscriber-{p.user_id}"
                    )
                else:
                    response = await subscriber.handle.subscribe(streams)
            except JanusError as exc:
                raise NotFoundError(f"the media server refused the subscription: {exc.reason}") from exc
            except JanusClientError as exc:
                raise MediaUnavailableError(f"the media server did not answer: {exc}") from exc
            # Janus lists every stream of the PeerConnection; the new ones are the active streams of each
            # feed on a mid no subscription holds yet.
            taken = {t["mid"] for sub in p._subscriptions.values() for t in sub.tracks}
            taken.update(t["mid"] for tracks in subscriber.parked.values() for t in tracks)
            for target, pub in added:
                codecs = {t.get("mid"): t.get("codec") for t in pub.tracks}
                tracks = [
                    {
                        "mid": str(s["mid"]),
                        "type": s.get("type"),
                        "codec": codecs.get(s.get("feed_mid")),
                        "feed_mid": s.get("feed_mid"),
                    }
                    for s in response.data.get("streams", [])
                    if s.get("feed_id") == pub.feed_id and s.get("active", True) and str(s["mid"]) not in taken
                ]
                taken.update(t["mid"] for t in tracks)
                sub = _Subscription(secrets.token_hex(8), p, target, pub, tracks)
                p._subscriptions[sub.id] = sub
                views.append(sub.view())
            if response.jsep is None:
                if fresh:
                    raise MediaUnavailableError(f"the media server offered no SDP: {response.data!r}")
                return views, None
            subscriber.offer_pending = True
            subscriber.adding = [pub for _, pub in added]
            return views, str(response.jsep["sdp"])

    async def _resume(self, subscriber: _Subscriber, publications: list[_Publication]) -> None:
        """Relay parked streams again (no renegotiation) and ask their publishers for a keyframe."""
        mids = [t["mid"] for pub in publications for t in subscriber.parked[pub]]
        try:
            await subscriber.handle.configure_streams([{"mid": mid, "send": True} for mid in mids])
        except JanusError as exc:
            raise NotFoundError(f"the media server refused the subscription: {exc.reason}") from exc
        except JanusClientError as exc:
            raise MediaUnavailableError(f"the media server did not answer: {exc}") from exc
        await self._request_keyframes(publications)

    async def answer(self, p: Participant, subscription: str | None, answer_sdp: str) -> None:
        """Complete the last renegotiation of the participant's subscriber PeerConnection with the client's
        SDP answer; media then flows. ``subscription`` (optional) names a subscription it was made for."""
        async with self._participant_room(p):
            subscriber = p._subscriber
            pending = subscriber is not None and subscriber.offer_pending
            if subscriber is None or not pending:
                if subscription is not None and subscription not in p._subscriptions:
                    raise NotFoundError(f"no subscription {subscription}")
                raise NotFoundError("no subscription offer to answer")
            try:
                await subscriber.handle.start({"type": "answer", "sdp": answer_sdp})
            except JanusError as exc:
                # Janus would wait for an answer forever: start the next subscription on a new handle.
                await self._detach(self._close_subscriber(p, "the answer was refused"))
                raise _refused(exc, "answer", self.process.config.ice_enforce_list or "") from exc
            except JanusClientError as exc:
                raise MediaUnavailableError(f"the media server did not answer: {exc}") from exc
            subscriber.offer_pending = False
            adding, subscriber.adding = subscriber.adding, []
            if subscriber.up:
                # Janus asks publishers for a keyframe when a subscriber's PeerConnection comes up, not when
                # streams join one that is up: without one the new streams show nothing until the next.
                await self._request_keyframes(adding)

    async def unsubscribe(self, p: Participant, subscription: str) -> str | None:
        """End a subscription. Its streams are paused, not removed, so no renegotiation is needed (None is
        returned; an SDP offer to answer would be returned otherwise); subscribing to the same stream again
        resumes them."""
        async with self._participant_room(p):
            sub = p._subscriptions.get(subscription)
            subscriber = p._subscriber
            if sub is None or subscriber is None:
                raise NotFoundError(f"no subscription {subscription}")
            del p._subscriptions[sub.id]
            if not sub.tracks:
                return None
            try:
                await subscriber.handle.configure_streams([{"mid": t["mid"], "send": False} for t in sub.tracks])
            except JanusError as exc:
                # The feed went away meanwhile: Janus already dropped its streams.
                log.debug("unsubscribing %s: %s", sub.id, exc)
                return None
            except JanusClientError as exc:
                raise MediaUnavailableError(f"the media server did not answer: {exc}") from exc
            subscriber.parked[sub.publication] = sub.tracks
            return None

    async def close_subscriber(self, p: Participant) -> None:
        """Drop the participant's subscriber PeerConnection and every subscription on it, at the client's
        request (its side of the PeerConnection failed); the next subscription starts a new one."""
        async with self._participant_room(p):
            p._subscriptions.clear()
            await self._detach(self._drop_subscriber(p))

    async def _request_keyframes(self, publications: Iterable[_Publication]) -> None:
        async def one(pub: _Publication) -> None:
            if not pub.video:
                return
            try:
                await pub.handle.request_keyframe()
            except JanusClientError as exc:  # the publisher is going away: nothing to ask for
                log.debug("keyframe request to %s: %s", pub.feed_id, exc)

        await asyncio.gather(*(one(pub) for pub in publications))

    def _drop_subscriber(self, p: Participant) -> list[VideoRoomHandle]:
        subscriber, p._subscriber = p._subscriber, None
        if subscriber is None:
            return []
        _cancel(subscriber.watcher)
        return [subscriber.handle]

    async def _watch_subscriber(self, p: Participant, subscriber: _Subscriber) -> None:
        while True:
            event = await subscriber.handle.events.get()
            kind = event.get("janus")
            if kind == "webrtcup":
                subscriber.up = True
            elif kind in ("hangup", "detached"):
                async with p.room.lock:
                    if p._subscriber is subscriber:
                        subscriber.watcher = None  # this task: not to be cancelled by itself
                        await self._detach(self._close_subscriber(p, "the subscriber connection ended"))
                return

    def _close_subscriber(self, p: Participant, why: str) -> list[VideoRoomHandle]:
        """End every subscription of ``p`` and its subscriber PeerConnection, telling the client; return the
        handle to detach."""
        for sub in list(p._subscriptions.values()):
            p.events.put_nowait(SubscriptionEnded(sub.id, sub.publisher.user_id, sub.publication.kind, why))
        p._subscriptions.clear()
        p.events.put_nowait(SubscriberClosed(why))
        return self._drop_subscriber(p)

    # -- the MediaPlane port (room management, recording) -----------------------------------------------

    async def has_stream(self, app_id: str, room_id: str, user_id: str | None, video_type: str | None) -> bool:
        """Is a matching stream live: the user's (``user_id`` given) or anyone's in the room?"""
        wanted = VIDEO_TYPES.get(video_type or "")
        kinds = {wanted} if wanted is not None else set(StreamKind)
        return any(f.stream in kinds and (user_id is None or f.user_id == user_id) for f in self.feeds(app_id, room_id))

    def live_rooms(self) -> set[tuple[str, str]]:
        """``(app_id, room_id)`` of every room with a live stream on this plane."""
        return {
            key
            for key, room in self._rooms.items()
            if any(pub.live for p in room.participants.values() for pub in p._publications.values())
        }

    def feeds(self, app_id: str, room_id: str) -> list[Feed]:
        """The room's live streams, as Janus feeds."""
        room = self._rooms.get((app_id, room_id))
        if room is None:
            return []
        return [
            Feed(p.user_id, pub.kind, room.janus_id, pub.feed_id, list(pub.tracks))
            for p in room.participants.values()
            for pub in p._publications.values()
            if pub.live
        ]

    def live_feed(self, app_id: str, room_id: str, user_id: str, kind: StreamKind) -> Feed | None:
        """The user's live stream of that kind, or None."""
        return next(
            (f for f in self.feeds(app_id, room_id) if f.user_id == user_id and f.stream == kind),
            None,
        )

    async def rtp_forward(self, feed: Feed, host: str, streams: list[RtpForwardStream]) -> list[int]:
        """Forward the feed's tracks (by ``mid``) as plain RTP to ``host``; the Janus forwarder IDs."""
        _, control = await self._janus()
        forwarders = await control.rtp_forward(feed.janus_room, feed.feed_id, host, streams)
        return [int(f["stream_id"]) for f in forwarders]

    async def stop_rtp_forward(self, feed: Feed, stream_ids: Iterable[int]) -> None:
        """Stop forwarders made by :meth:`rtp_forward`; those already gone with their publisher are ignored."""
        if not self.process.ready:
            return  # Janus is down: its forwarders died with it
        _, control = await self._janus()
        for stream_id in stream_ids:
            try:
                await control.stop_rtp_forward(feed.janus_room, feed.feed_id, stream_id)
            except JanusError as exc:
                log.debug("stopping forwarder %d of %s: %s", stream_id, feed.feed_id, exc)

    async def forwarders(self, app_id: str, room_id: str) -> dict[str, int]:
        """How many RTP forwarders each publisher (feed ID) of the room has in Janus now."""
        _, control = await self._janus()
        try:
            publishers = await control.list_forwarders(janus_room_id(app_id, room_id))
        except NoSuchRoomError:
            return {}
        return {str(p["publisher_id"]): len(p.get("forwarders", [])) for p in publishers}

    async def request_keyframe(self, feed: Feed) -> bool:
        """Ask the feed's publisher for a keyframe; False when the feed is no longer published."""
        room = self._rooms.get(self._room_key(feed.janus_room))
        if room is None:
            return False
        for p in room.participants.values():
            for pub in p._publications.values():
                if pub.feed_id == feed.feed_id:
                    await pub.handle.request_keyframe()
                    return True
        return False

    @staticmethod
    def _room_key(janus_room: str) -> tuple[str, str]:
        app_id, _, room_id = janus_room.partition("/")
        return (app_id, room_id)

    def running(self, app_id: str, room_id: str) -> bool:
        """Is anybody in the room?"""
        room = self._rooms.get((app_id, room_id))
        return room is not None and bool(room.participants)

    def hosted(self) -> dict[tuple[str, str], int]:
        """The rooms this plane holds with anybody in them: ``(app_id, room_id)`` -> participants."""
        return {key: len(room.participants) for key, room in self._rooms.items() if room.participants}

    def participants(self, app_id: str, room_id: str) -> list[str]:
        """User IDs of the room's participants."""
        room = self._rooms.get((app_id, room_id))
        return list(room.participants) if room is not None else []

    async def remove_users(self, app_id: str, room_id: str, user_ids: list[str]) -> None:
        """spec 4.7.1: disconnect the named users now; their subscribers are hung up and told."""
        removed: list[Participant] = []
        async with self._locked(app_id, room_id, create=False) as room:
            if room is None:
                return
            handles: list[VideoRoomHandle] = []
            for user_id in dict.fromkeys(user_ids):
                p = room.participants.get(user_id)
                if p is not None:
                    handles += self._end_locked(room, p, EndReason.REMOVED)
                    removed.append(p)
            await self._detach(handles)
            await self._drop_if_empty(room)
        await self._wait_settled(removed)

    async def dismiss(self, app_id: str, room_id: str) -> bool:
        """spec 4.7.2: disconnect everyone and close the room; False if nobody is in it."""
        async with self._locked(app_id, room_id, create=False) as room:
            if room is None or not room.participants:
                return False
            ended = list(room.participants.values())
            handles = [h for p in ended for h in self._end_locked(room, p, EndReason.DISMISSED)]
            await self._detach(handles)
            await self._drop_if_empty(room)
        await self._wait_settled(ended)
        return True


def _cancel(task: asyncio.Task[None] | None) -> None:
    if task is not None and task is not asyncio.current_task():
        task.cancel()
