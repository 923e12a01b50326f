"""What is happening now in an app's rooms: running rooms, who is in them, what they publish and how their
network is doing. Read from the database (room records and QoS samples), so any node can answer for
rooms that run on another; the console's live rooms page refreshes it every second.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import select
from sqlalchemy.orm import Session

from emberrtc.domain.app import load_app
from emberrtc.domain.room_session import ONLINE, RUNNING
from emberrtc.domain.tenant import Principal
from emberrtc.store.database import Database
from emberrtc.store.models import QosSample, Room, RoomSession

#: A participant's latest uplink sample older than this says nothing about the network now.
FRESH_SAMPLE_S = 30.0


@dataclass(frozen=True)
class Network:
    """The participant's latest uplink sample: loss (0-1), round-trip time (ms), Janus link quality (0-100)."""

    time: float
    source: str
    loss: float | None
    rtt_ms: float | None
    link_quality: float | None


@dataclass(frozen=True)
class Participant:
    user_id: str
    join_time: float
    streams: list[str]
    platform: str | None
    network: Network | None


@dataclass(frozen=True)
class LiveRoom:
    room_id: str
    start_time: float
    participants: list[Participant] = field(default_factory=list)


def _first(*values: float | None) -> float | None:
    return next((v for v in values if v is not None), None)


async def live_rooms(db: Database, principal: Principal, app_id: str, now: float) -> list[LiveRoom]:
    """The app's running rooms with their online participants, oldest room and earliest join first;
    :class:`AppNotExist` for another tenant's app."""

    def work(s: Session) -> list[LiveRoom]:
        load_app(s, principal, app_id)
        rooms = s.execute(
            select(Room).where(Room.app_id == app_id, Room.state == RUNNING).order_by(Room.start_time, Room.room_id)
        ).scalars()
        out = []
        for room in rooms:
            sessions = s.execute(
                select(RoomSession)
                .where(RoomSession.room_uid == room.room_uid, RoomSession.state == ONLINE)
                .order_by(RoomSession.join_time, RoomSession.user_id)
            ).scalars()
            participants = []
            for rs in sessions:
                sample = s.execute(
                    select(QosSample)
                    .where(
                        QosSample.app_id == app_id,
                        QosSample.room_id == room.room_id,
                        QosSample.user_id == rs.user_id,
                        QosSample.direction == "uplink",
                        QosSample.time >= max(rs.join_time, now - FRESH_SAMPLE_S),
                    )
                    .order_by(QosSample.time.desc())
                    .limit(1)
                ).scalar_one_or_none()
                network = None
                if sample is not None:
                    network = Network(
                        time=sample.time,
                        source=sample.source,
                        loss=_first(sample.vloss, sample.aloss, sample.dloss),
                        rtt_ms=_first(sample.vrtt, sample.artt, sample.drtt),
                        link_quality=sample.link_quality,
                    )
                participants.append(
                    Participant(rs.user_id, rs.join_time, list(rs.published_streams or []), rs.platform, network)
                )
            out.append(LiveRoom(room.room_id, room.start_time, participants))
        return out

    return await db.run(work)


async def room_nodes(db: Database, principal: Principal, app_id: str, room_ids: set[str]) -> dict[str, str | None]:
    """The node whose media plane holds each of the app's running rooms among ``room_ids`` (None on a single
    node); a room not running is left out. :class:`AppNotExist` for another tenant's app."""

    def work(s: Session) -> dict[str, str | None]:
        load_app(s, principal, app_id)
        if not room_ids:
            return {}
        q = select(Room.room_id, Room.node_id).where(
            Room.app_id == app_id, Room.state == RUNNING, Room.room_id.in_(sorted(room_ids))
        )
        return {room_id: node_id for room_id, node_id in s.execute(q)}

    return await db.run(work)
