"""This node as a member of a cluster: its presence (heartbeat with load) and the rooms' placement."""

from __future__ import annotations

import logging
from collections.abc import Callable
from urllib.parse import urlsplit

from redis.asyncio import Redis
from redis.exceptions import RedisError

from emberrtc.config import Settings
from emberrtc.domain.errors import InternalError

from .keyspace import Keyspace
from .node_load import CpuMeter, NodeLoad, recording_workers
from .placement import RoomHost, RoomPlacement
from .presence import NodeInfo, Presence, live_nodes

log = logging.getLogger(__name__)


def connect(settings: Settings) -> Redis:
    """A Redis client for the cluster's Redis (``EMBER_REDIS_URL``), answering ``str``."""
    return Redis.from_url(settings.redis_url, decode_responses=True, socket_timeout=5, socket_connect_timeout=5)


async def check_reachable(settings: Settings) -> None:
    """Raise :class:`InternalError` saying so when the cluster's Redis does not answer (named by host and
    port only: the URL may hold a password)."""
    redis = connect(settings)
    parts = urlsplit(settings.redis_url)
    where = f"{parts.hostname}:{parts.port or 6379}" if parts.hostname else "EMBER_REDIS_URL"
    try:
        await redis.ping()  # type: ignore[misc]
    except (RedisError, OSError) as exc:
        raise InternalError(f"the cluster's Redis at {where} does not answer: {exc}") from None
    finally:
        await redis.aclose()


class ClusterNode:
    """One node of the cluster. ``rooms`` is called at each heartbeat for the rooms this node holds, as
    ``(app_id, room_id) -> participants`` (the media plane's :meth:`~emberrtc.media.plane.JanusMediaPlane.hosted`)."""

    def __init__(self, settings: Settings, redis: Redis, rooms: Callable[[], dict[tuple[str, str], int]]) -> None:
        self.settings = settings
        self.node_id = settings.node_id
        self.public_url = settings.public_url.rstrip("/")
        self.keys = Keyspace(settings.cluster_name)
        self.redis = redis
        self._rooms = rooms
        self._started = False
        self._cpu = CpuMeter()
        # A placement outlives its host's heartbeats by a margin: three node lifetimes.
        self.placement = RoomPlacement(redis, self.keys, self.node_id, ttl=3 * settings.cluster_node_ttl)
        self.presence = Presence(
            redis,
            self.keys,
            self.node_id,
            public_url=self.public_url,
            media_ip=settings.media_ip,
            load=self.load,
            hosted=self._hosted,
            heartbeat=settings.cluster_heartbeat,
            node_ttl=settings.cluster_node_ttl,
            on_beat=self.placement.refresh,
        )

    def load(self) -> NodeLoad:
        rooms = self._rooms()
        return NodeLoad(
            participants=sum(rooms.values()),
            rooms=len(rooms),
            recording_workers=recording_workers(),
            cpu=self._cpu.percent(),
        )

    def _hosted(self) -> list[str]:
        return [Keyspace.room_member(app_id, room_id) for app_id, room_id in self._rooms()]

    async def start(self) -> None:
        """Register (refused if another live node has this node's ID), then beat every ``cluster_heartbeat``.
        Once: ``ember serve`` registers before it listens, and the app's start-up then finds it done."""
        if self._started:
            return
        await self.presence.register()
        self.presence.start()
        self._started = True

    async def close(self) -> None:
        await self.presence.stop()
        await self.redis.aclose()
        self._started = False

    async def host_of(self, app_id: str, room_id: str) -> RoomHost | None:
        """The node hosting the room when it is another node; None when it is this one (placing it first
        if no live node hosts it)."""
        host = await self.placement.place(app_id, room_id)
        return None if host.node_id == self.node_id else host

    async def nodes(self) -> list[NodeInfo]:
        return await live_nodes(self.redis, self.keys)
