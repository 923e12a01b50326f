"""Who may join which room, and the record of who was there: room runs and user sessions.

Join checks (``spec/README.md``, "Room join signature"; spec 4.5.6):

- the app exists (else ``RTC.00001015``) and is enabled (else ``RTC.00001016``): a disabled app refuses
  new joins, so new rooms too, while people already in a room stay;
- when the app's ``authentication.enable`` is on, ``signature`` is
  ``hex(HMAC-SHA256(key=app_key, msg=app_id + room_id + user_id + ctime))`` and ``ctime`` (UNIX seconds,
  when the signature expires) is in the future and at most 12 hours ahead (else ``RTC.00001001``).

Records, for the statistics API (spec 5.1 rooms, 5.2 users): a room runs (``RUNNING``) from its first
join to its last leave (``CLOSED``, with end time and duration); every join attempt is a session, ``ONLINE``
then ``OFFLINE`` (with when and why), or ``FAIL`` with the reason the client was given. Refused joins to an
app that does not exist are not recorded: no tenant owns them, so no statistics query could show them.

The media plane keeps rooms in one process's memory. On a single node, at start
(:meth:`RoomSessionService.recover`) whatever a previous run left ``ONLINE``/``RUNNING`` is closed. In a
cluster (``node_id`` given) each room run records the node hosting it, and a starting node closes only its
own runs; a join on the node a room is now placed on finds a run still held by another node only when that
node lost the room (placement moves only off a dead node), and closes that run before opening its own.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from emberrtc.domain.app import AUTO_INDIVIDUAL_RECORD, require_active
from emberrtc.domain.clock import Clock
from emberrtc.domain.errors import AppNotExist, EmberError, Unauthenticated
from emberrtc.domain.secrets import SecretBox, new_hex_id
from emberrtc.store.database import Database
from emberrtc.store.models import App, Room, RoomSession

RUNNING, CLOSED = "RUNNING", "CLOSED"
ONLINE, OFFLINE, FAIL = "ONLINE", "OFFLINE", "FAIL"
#: spec README: ``ctime`` is at most now + 12 h.
MAX_CTIME_AHEAD = 12 * 3600
#: ``leave_reason`` of sessions a previous server run left open.
SERVER_RESTART = "server_restart"
#: ``leave_reason`` of sessions of a run whose node lost the room (the room was placed on another node).
NODE_LOST = "node_lost"


def join_signature(app_key: str, app_id: str, room_id: str, user_id: str, ctime: str) -> str:
    """``hex(HMAC-SHA256(key=app_key, msg=app_id + room_id + user_id + ctime))`` (spec README)."""
    message = (app_id + room_id + user_id + ctime).encode()
    return hmac.new(app_key.encode(), message, hashlib.sha256).hexdigest()


@dataclass(frozen=True)
class JoinRequest:
    """A client's request to join, syntax already checked (IDs, ``ctime`` as decimal digits)."""

    app_id: str
    room_id: str
    user_id: str
    ctime: str | None = None
    signature: str | None = None
    nickname: str | None = None
    platform: str | None = None
    sdk_version: str | None = None
    device_model: str | None = None
    client_ip: str | None = None


@dataclass(frozen=True)
class Admission:
    """A join that passed the checks: the user's session is ``ONLINE`` in the room run ``room_uid``."""

    session_id: str
    room_uid: str
    app_id: str
    room_id: str
    user_id: str


class RoomSessionService:
    def __init__(self, db: Database, box: SecretBox, clock: Clock, *, node_id: str | None = None) -> None:
        """``node_id``: this node's ID in cluster mode (room runs record it); None for a single node."""
        self._db = db
        self._box = box
        self._clock = clock
        self._node_id = node_id

    # --- joining -------------------------------------------------------------------------------------

    def _check(self, app: App, req: JoinRequest, now: float) -> None:
        require_active(app)
        if not app.auth_enable:
            return
        if not req.ctime or not req.signature:
            raise Unauthenticated("this app requires ctime and signature to join a room")
        expected = join_signature(
            self._box.open(app.app_key_encrypted), req.app_id, req.room_id, req.user_id, req.ctime
        )
        if not hmac.compare_digest(expected.encode(), req.signature.lower().encode()):  # str: ASCII only
            raise Unauthenticated("the join signature does not match")
        ctime = int(req.ctime)
        if ctime <= now:
            raise Unauthenticated(f"the join signature has expired (ctime {ctime} is not in the future)")
        if ctime > now + MAX_CTIME_AHEAD:
            raise Unauthenticated(f"ctime {ctime} is more than 12 hours ahead")

    async def refusal(self, req: JoinRequest) -> EmberError | None:
        """The error :meth:`admit` would refuse this join with, or None; records nothing. (In a cluster a
        join is checked before the client is told which node hosts the room.)"""
        now = self._clock.now()

        def work(s: Session) -> EmberError | None:
            app = s.get(App, req.app_id)
            if app is None:
                return AppNotExist(f"app {req.app_id} does not exist")
            try:
                self._check(app, req, now)
            except EmberError as exc:
                return exc
            return None

        return await self._db.run(work)

    async def admit(self, req: JoinRequest) -> Admission:
        """Check the join; on success the session is ``ONLINE`` (the room run starts if it was not
        running). A refused join is recorded as ``FAIL`` and raised as the catalogue error."""
        now = self._clock.now()

        def work(s: Session) -> Admission | EmberError:
            app = s.get(App, req.app_id)
            if app is None:
                return AppNotExist(f"app {req.app_id} does not exist")
            try:
                self._check(app, req, now)
            except EmberError as exc:
                # Returned, not raised, so the FAIL record commits.
                running = self._running_room(s, req.app_id, req.room_id, lock=False)
                s.add(self._session(req, now, FAIL, running, fail_reason=f"{exc.code}: {exc.message}"))
                return exc
            room = self._running_room(s, req.app_id, req.room_id, lock=True)
            if room is not None and self._node_id is not None and room.node_id != self._node_id:
                self._close_lost(s, room, now)
                room = None
            room = room or self._open_room(s, app, req, now)
            session = self._session(req, now, ONLINE, room)
            s.add(session)
            return Admission(session.session_id, room.room_uid, req.app_id, req.room_id, req.user_id)

        result = await self._db.run(work)
        if isinstance(result, EmberError):
            raise result
        return result

    @staticmethod
    def _session(
        req: JoinRequest, now: float, state: str, room: Room | None, fail_reason: str | None = None
    ) -> RoomSession:
        return RoomSession(
            session_id=new_hex_id(),
            app_id=req.app_id,
            room_uid=room.room_uid if room is not None else None,
            room_id=req.room_id,
            user_id=req.user_id,
            nickname=req.nickname,
            state=state,
            fail_reason=fail_reason,
            join_time=now,
            client_ip=req.client_ip,
            platform=req.platform,
            sdk_version=req.sdk_version,
            device_model=req.device_model,
            published_streams=[],
        )

    @staticmethod
    def _running_room(s: Session, app_id: str, room_id: str, *, lock: bool) -> Room | None:
        q = select(Room).where(Room.app_id == app_id, Room.room_id == room_id, Room.state == RUNNING)
        if lock:
            # Joins and leaves of one room queue on its row: the last leave closes it exactly once.
            q = q.with_for_update()
        return s.execute(q).scalar_one_or_none()

    def _open_room(self, s: Session, app: App, req: JoinRequest, now: float) -> Room:
        # spec 4.6: automatic recording applies to rooms created after it was set, so the run keeps the
        # rule in force when it opened.
        auto_rule = app.auto_record_rule_id if app.auto_record_mode == AUTO_INDIVIDUAL_RECORD else None
        room = Room(
            room_uid=new_hex_id(),
            app_id=req.app_id,
            room_id=req.room_id,
            state=RUNNING,
            start_time=now,
            auto_record_rule_id=auto_rule,
            node_id=self._node_id,
        )
        try:
            with s.begin_nested():
                s.add(room)
        except IntegrityError:
            # Another node's first join opened it at the same moment (uq_rooms_running).
            running = self._running_room(s, req.app_id, req.room_id, lock=True)
            if running is None:
                raise
            return running
        return room

    # --- while in the room ---------------------------------------------------------------------------

    async def publish(self, session_id: str, stream: str) -> None:
        """Note that the session published a stream of this kind (``camera``, ``screen``)."""

        def work(s: Session) -> None:
            session = s.get(RoomSession, session_id)
            if session is not None and stream not in session.published_streams:
                session.published_streams = [*session.published_streams, stream]

        await self._db.run(work)

    async def leave(self, session_id: str, reason: str) -> None:
        """The user left (``reason``: left, removed, dismissed, ...): ``OFFLINE``; the room closes with
        its last user. Idempotent."""
        await self._end(session_id, OFFLINE, reason=reason)

    async def fail(self, session_id: str, reason: str) -> None:
        """An admitted join could not be completed (the media plane refused it): ``FAIL``."""
        await self._end(session_id, FAIL, fail_reason=reason)

    async def _end(
        self, session_id: str, state: str, *, reason: str | None = None, fail_reason: str | None = None
    ) -> None:
        now = self._clock.now()

        def work(s: Session) -> None:
            session = s.get(RoomSession, session_id)
            if session is None or session.state != ONLINE:
                return
            room = None
            if session.room_uid is not None:
                room = s.execute(select(Room).where(Room.room_uid == session.room_uid).with_for_update()).scalar_one()
            session.state = state
            if state == OFFLINE:
                session.leave_time = now
                session.leave_reason = reason
            else:
                session.fail_reason = fail_reason
            s.flush()
            if room is not None and room.state == RUNNING:
                online = s.scalar(
                    select(func.count())
                    .select_from(RoomSession)
                    .where(RoomSession.room_uid == room.room_uid, RoomSession.state == ONLINE)
                )
                if not online:
                    self._close(room, now)

        await self._db.run(work)

    @staticmethod
    def _close(room: Room, now: float) -> None:
        room.state = CLOSED
        room.end_time = max(now, room.start_time)
        room.duration = int(room.end_time - room.start_time)

    def _close_lost(self, s: Session, room: Room, now: float) -> None:
        """Close a run another node held and lost (the room is placed here now), with its sessions."""
        s.execute(
            update(RoomSession)
            .where(RoomSession.room_uid == room.room_uid, RoomSession.state == ONLINE)
            .values(state=OFFLINE, leave_time=now, leave_reason=NODE_LOST)
        )
        self._close(room, now)
        s.flush()  # the run is CLOSED before the new one is added (uq_rooms_running)

    async def recover(self) -> int:
        """Close what a previous server run left open (its rooms died with it); return how many rooms. In a
        cluster only this node's runs: the other nodes' rooms live on."""
        now = self._clock.now()

        def work(s: Session) -> int:
            q = select(Room).where(Room.state == RUNNING)
            if self._node_id is not None:
                q = q.where(Room.node_id == self._node_id)
            rooms = list(s.execute(q.with_for_update()).scalars())
            sessions = update(RoomSession).where(RoomSession.state == ONLINE)
            if self._node_id is not None:
                sessions = sessions.where(RoomSession.room_uid.in_([r.room_uid for r in rooms]))
            s.execute(sessions.values(state=OFFLINE, leave_time=now, leave_reason=SERVER_RESTART))
            for room in rooms:
                self._close(room, now)
            return len(rooms)

        return await self._db.run(work)

    async def close_node(self, node_id: str) -> int:
        """Node ``node_id`` died (``cluster.failover``): close its open runs and their sessions (``node_lost``),
        as its restart would; return how many runs."""
        now = self._clock.now()

        def work(s: Session) -> int:
            q = select(Room).where(Room.state == RUNNING, Room.node_id == node_id).with_for_update()
            rooms = list(s.execute(q).scalars())
            for room in rooms:
                self._close_lost(s, room, now)
            return len(rooms)

        return await self._db.run(work)

    async def hosting_nodes(self) -> set[str]:
        """The nodes with open room runs (the ``(node_id, state)`` index answers)."""
        q = select(Room.node_id).where(Room.node_id.is_not(None), Room.state == RUNNING).distinct()
        return await self._db.run(lambda s: {str(n) for n in s.execute(q).scalars()})

    # --- reading the records -------------------------------------------------------------------------

    async def rooms(self, app_id: str, room_id: str | None = None) -> list[dict[str, Any]]:
        """The app's room runs (optionally of one room ID), oldest first."""

        def work(s: Session) -> list[dict[str, Any]]:
            q = select(Room).where(Room.app_id == app_id)
            if room_id is not None:
                q = q.where(Room.room_id == room_id)
            return [_row(r) for r in s.execute(q.order_by(Room.start_time, Room.room_uid)).scalars()]

        return await self._db.run(work)

    async def sessions(
        self, app_id: str, room_id: str | None = None, user_id: str | None = None
    ) -> list[dict[str, Any]]:
        """The app's user sessions (optionally of one room or user), oldest first."""

        def work(s: Session) -> list[dict[str, Any]]:
            q = select(RoomSession).where(RoomSession.app_id == app_id)
            if room_id is not None:
                q = q.where(RoomSession.room_id == room_id)
            if user_id is not None:
                q = q.where(RoomSession.user_id == user_id)
            q = q.order_by(RoomSession.join_time, RoomSession.session_id)
            return [_row(r) for r in s.execute(q).scalars()]

        return await self._db.run(work)


def _row(obj: Room | RoomSession) -> dict[str, Any]:
    return {c.key: getattr(obj, c.key) for c in obj.__table__.columns}
