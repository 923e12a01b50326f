"""Nodes register in Redis with a heartbeat carrying their load; a node not heard from is dead.

A node's hash ``node:{node_id}`` (:mod:`.keyspace`) expires ``node_ttl`` seconds (10) after its last
heartbeat (every ``heartbeat`` seconds, 2): Redis's clock decides death, so the nodes' clocks need not
agree. The hash carries the process's random ``instance`` token, so a second process started with a live
node's ID is refused rather than taking over its rooms.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import RedisError

from emberrtc.domain.errors import InternalError

from .keyspace import Keyspace
from .node_load import NodeLoad

log = logging.getLogger(__name__)

# KEYS: node hash, nodes set. ARGV: instance, ttl ms, node ID, then field/value pairs.
# Returns the instance holding the node ID afterwards: ours, or a live other process's.
_REGISTER = """
local holder = redis.call('HGET', KEYS[1], 'instance')
if holder and holder ~= ARGV[1] then return holder end
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], 'instance', ARGV[1], unpack(ARGV, 4))
redis.call('PEXPIRE', KEYS[1], ARGV[2])
redis.call('SADD', KEYS[2], ARGV[3])
return ARGV[1]
"""

# KEYS: node hash, nodes set, placing set. ARGV: instance, ttl ms, node ID, placing window ms, the count of
# field/value pairs, the pairs, then the rooms this node shows in this heartbeat.
# Returns 1, or 0 when the node's registration is gone (expired) or held by another instance.
_HEARTBEAT = """
local holder = redis.call('HGET', KEYS[1], 'instance')
if holder ~= ARGV[1] then return 0 end
local pairs_end = 5 + tonumber(ARGV[5]) * 2
redis.call('HSET', KEYS[1], unpack(ARGV, 6, pairs_end))
redis.call('PEXPIRE', KEYS[1], ARGV[2])
redis.call('SADD', KEYS[2], ARGV[3])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', now - tonumber(ARGV[4]))
for i = pairs_end + 1, #ARGV do redis.call('ZREM', KEYS[3], ARGV[i]) end
return 1
"""

# KEYS: node hash, nodes set. ARGV: instance, node ID.
_LEAVE = """
if redis.call('HGET', KEYS[1], 'instance') == ARGV[1] then
  redis.call('DEL', KEYS[1])
  redis.call('SREM', KEYS[2], ARGV[2])
end
return 1
"""


@dataclass(frozen=True)
class NodeInfo:
    """A live node as its last heartbeat described it."""

    node_id: str
    public_url: str
    media_ip: str
    load: NodeLoad
    #: UNIX time of its start and of its last heartbeat (its own clock).
    started_at: float
    heartbeat_at: float

    def as_json(self) -> dict[str, Any]:
        return {
            "node_id": self.node_id,
            "public_url": self.public_url,
            "media_ip": self.media_ip,
            "participants": self.load.participants,
            "rooms": self.load.rooms,
            "recording_workers": self.load.recording_workers,
            "cpu": self.load.cpu,
            "started_at": self.started_at,
            "heartbeat_at": self.heartbeat_at,
        }


def _node_info(node_id: str, h: dict[str, str]) -> NodeInfo:
    def number(name: str) -> float:
        try:
            return float(h.get(name) or 0)
        except ValueError:
            return 0.0

    load = NodeLoad(
        participants=int(number("participants")),
        rooms=int(number("rooms")),
        recording_workers=int(number("recording_workers")),
        cpu=number("cpu"),
    )
    return NodeInfo(
        node_id=node_id,
        public_url=h.get("public_url", ""),
        media_ip=h.get("media_ip", ""),
        load=load,
        started_at=number("started_at"),
        heartbeat_at=number("heartbeat_at"),
    )


async def live_nodes(redis: Redis, keys: Keyspace) -> list[NodeInfo]:
    """The cluster's live nodes, by node ID; members of ``nodes`` whose registration expired are pruned."""
    try:
        members = sorted(str(m) for m in await redis.smembers(keys.nodes))  # type: ignore[misc]
        async with redis.pipeline(transaction=False) as pipe:
            for node_id in members:
                pipe.hgetall(keys.node(node_id))
            hashes = await pipe.execute()
        dead = [node_id for node_id, h in zip(members, hashes, strict=True) if not h]
        if dead:
            await redis.srem(keys.nodes, *dead)  # type: ignore[misc]
    except RedisError as exc:
        raise InternalError(f"the cluster's Redis does not answer: {exc}") from exc
    return [_node_info(node_id, h) for node_id, h in zip(members, hashes, strict=True) if h]


class Presence:
    """This node's registration and heartbeat.

    ``load`` is called at each heartbeat for the node's load; ``hosted`` for the rooms it holds (as
    :meth:`Keyspace.room_member` strings), which then no longer count as placements in flight; ``on_beat``
    (optional) is awaited after each heartbeat with those rooms (the room placements' refresh).
    """

    def __init__(
        self,
        redis: Redis,
        keys: Keyspace,
        node_id: str,
        *,
        public_url: str,
        media_ip: str,
        load: Callable[[], NodeLoad],
        hosted: Callable[[], Iterable[str]],
        heartbeat: float = 2.0,
        node_ttl: float = 10.0,
        on_beat: Callable[[list[str]], Any] | None = None,
    ) -> None:
        self._redis = redis
        self._keys = keys
        self.node_id = node_id
        self.public_url = public_url
        self.media_ip = media_ip
        self._load = load
        self._hosted = hosted
        self.heartbeat = heartbeat
        self.node_ttl = node_ttl
        self._on_beat = on_beat
        self.instance = secrets.token_hex(8)
        self.started_at = time.time()
        self._task: asyncio.Task[None] | None = None

    def _fields(self) -> dict[str, str]:
        load = self._load()
        return {
            "public_url": self.public_url,
            "media_ip": self.media_ip,
            "participants": str(load.participants),
            "rooms": str(load.rooms),
            "recording_workers": str(load.recording_workers),
            "cpu": str(load.cpu),
            "started_at": str(self.started_at),
            "heartbeat_at": str(time.time()),
        }

    async def _claim(self) -> str:
        flat = [v for pair in self._fields().items() for v in pair]
        keys = [self._keys.node(self.node_id), self._keys.nodes]
        argv: list[str | int] = [self.instance, int(self.node_ttl * 1000), self.node_id, *flat]
        return str(await self._redis.eval(_REGISTER, len(keys), *keys, *argv))  # type: ignore[misc]

    async def register(self) -> None:
        """Join the cluster. A registration of this node ID left by a process that died is waited out (it
        expires within ``node_ttl``); one that goes on being renewed belongs to a live node: refused."""
        deadline = time.monotonic() + self.node_ttl + self.heartbeat
        try:
            while (holder := await self._claim()) != self.instance:
                if time.monotonic() > deadline:
                    raise InternalError(
                        f"node ID {self.node_id!r} belongs to another live node of the cluster (instance "
                        f"{holder}); give each node its own EMBER_NODE_ID"
                    )
                log.warning("node ID %s is still registered by another process; waiting for it to expire", self.node_id)
                await asyncio.sleep(self.heartbeat)
        except RedisError as exc:
            raise InternalError(f"the cluster's Redis does not answer: {exc}") from exc
        log.info("joined cluster %s as node %s (%s)", self._keys.cluster_name, self.node_id, self.public_url)

    async def beat(self) -> None:
        """One heartbeat: the load, the registration renewed (claimed again if it had expired)."""
        hosted = list(self._hosted())
        fields = self._fields()
        flat = [v for pair in fields.items() for v in pair]
        keys = [self._keys.node(self.node_id), self._keys.nodes, self._keys.placing(self.node_id)]
        ttl = int(self.node_ttl * 1000)
        argv: list[str | int] = [self.instance, ttl, self.node_id, ttl, len(fields)]
        ok = await self._redis.eval(_HEARTBEAT, len(keys), *keys, *argv, *flat, *hosted)  # type: ignore[misc]
        if not ok:
            # Expired (this process was stopped, or Redis lost it): the cluster thought this node dead.
            log.warning("node %s's registration had expired; registering again", self.node_id)
            holder = await self._claim()
            if holder != self.instance:
                log.error("node ID %s is held by another process (instance %s)", self.node_id, holder)
                return
        if self._on_beat is not None:
            await self._on_beat(hosted)

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="cluster-heartbeat")

    async def _run(self) -> None:
        while True:
            try:
                await self.beat()
            except (RedisError, OSError) as exc:
                log.warning("cluster heartbeat of node %s failed: %s", self.node_id, exc)
            except Exception:
                log.exception("cluster heartbeat of node %s failed", self.node_id)
            await asyncio.sleep(self.heartbeat)

    async def stop(self) -> None:
        """Stop the heartbeat and leave the cluster at once (rather than after ``node_ttl``)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        keys = [self._keys.node(self.node_id), self._keys.nodes]
        with contextlib.suppress(RedisError, OSError):
            await self._redis.eval(_LEAVE, len(keys), *keys, self.instance, self.node_id)  # type: ignore[misc]
