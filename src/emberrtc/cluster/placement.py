"""Which node hosts each room: placed by its first join on the least loaded live node, atomically.

One Lua script (:data:`_PLACE`) reads the room's placement and, when there is none or its node is dead,
chooses the live node with the least load and records it, all in one step inside Redis: two first joins
racing on two nodes run the script one after the other, and the second finds the first's placement.

Load, for placement, is a node's participants from its last heartbeat plus the rooms placed on it since
that heartbeat (the ``placing:`` set of :mod:`.keyspace`), so placements between two heartbeats spread too;
ties go to the node with fewer rooms, then to the lower node ID. The machine's CPU is reported with the
load (``ember cluster status``) but does not steer placement.

A placement expires ``ttl`` seconds after its host last refreshed it: the host refreshes the placements of
the rooms it holds at each heartbeat (:meth:`RoomPlacement.refresh`) and when a join of the room reaches
it, so a room lives on its node while anybody is in it, and a room left empty (or placed and never joined)
is placed afresh by its next join.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from redis.asyncio import Redis
from redis.exceptions import RedisError

from emberrtc.domain.errors import InternalError

from .keyspace import Keyspace

log = logging.getLogger(__name__)

# ARGV: key prefix, room member, ttl ms, the asking node's ID.
# Returns {node ID, its public URL, 1 if placed now else 0}, or {} when no node is alive.
_PLACE = """
local prefix = ARGV[1]
local key = prefix .. 'room:' .. ARGV[2]
local current = redis.call('GET', key)
if current then
  local url = redis.call('HGET', prefix .. 'node:' .. current, 'public_url')
  if url then
    if current == ARGV[4] then redis.call('PEXPIRE', key, ARGV[3]) end
    return {current, url, 0}
  end
end
local best, best_url, best_score, best_rooms
for _, id in ipairs(redis.call('SMEMBERS', prefix .. 'nodes')) do
  local h = redis.call('HMGET', prefix .. 'node:' .. id, 'public_url', 'participants', 'rooms')
  if h[1] then
    local placing = redis.call('ZCARD', prefix .. 'placing:' .. id)
    local score = (tonumber(h[2]) or 0) + placing
    local rooms = (tonumber(h[3]) or 0) + placing
    if best == nil or score < best_score or (score == best_score and (rooms < best_rooms
        or (rooms == best_rooms and id < best))) then
      best, best_url, best_score, best_rooms = id, h[1], score, rooms
    end
  end
end
if best == nil then return {} end
redis.call('SET', key, best, 'PX', ARGV[3])
local t = redis.call('TIME')
redis.call('ZADD', prefix .. 'placing:' .. best, tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000), ARGV[2])
return {best, best_url, 1}
"""

# ARGV: key prefix, ttl ms, this node's ID, then the room members it holds.
# Keeps (or takes back, if expired) each room's placement; returns the rooms placed on another node.
_REFRESH = """
local lost = {}
for i = 4, #ARGV do
  local key = ARGV[1] .. 'room:' .. ARGV[i]
  local current = redis.call('GET', key)
  if current == ARGV[3] then
    redis.call('PEXPIRE', key, ARGV[2])
  elseif not current then
    redis.call('SET', key, ARGV[3], 'PX', ARGV[2])
  else
    table.insert(lost, ARGV[i])
  end
end
return lost
"""


@dataclass(frozen=True)
class RoomHost:
    """The node hosting a room."""

    node_id: str
    #: Its ``EMBER_PUBLIC_URL``: where the room's clients join.
    public_url: str
    #: Placed by this call (the room's first join), rather than found placed.
    placed_now: bool


class RoomPlacement:
    def __init__(self, redis: Redis, keys: Keyspace, node_id: str, *, ttl: float = 30.0) -> None:
        self._redis = redis
        self._keys = keys
        self.node_id = node_id
        self.ttl = ttl

    async def place(self, app_id: str, room_id: str) -> RoomHost:
        """The node hosting the room, placing it first if it has no live host."""
        member = Keyspace.room_member(app_id, room_id)
        try:
            result = await self._redis.eval(  # type: ignore[misc]
                _PLACE, 0, self._keys.prefix, member, int(self.ttl * 1000), self.node_id
            )
        except RedisError as exc:
            raise InternalError(f"the cluster's Redis does not answer: {exc}") from exc
        if not result:
            raise InternalError("no node of the cluster is alive to host the room")
        node_id, url, placed = result
        if placed:
            log.info("room %s placed on node %s", member, node_id)
        return RoomHost(str(node_id), str(url), bool(placed))

    async def refresh(self, rooms: list[str]) -> list[str]:
        """Keep the placements of the rooms this node holds (``Keyspace.room_member`` strings); return
        those placed on another node meanwhile (this node lost them: it was thought dead)."""
        if not rooms:
            return []
        lost = await self._redis.eval(  # type: ignore[misc]
            _REFRESH, 0, self._keys.prefix, int(self.ttl * 1000), self.node_id, *rooms
        )
        for member in lost:
            log.error("room %s is placed on another node while this node %s holds it", member, self.node_id)
        return [str(m) for m in lost]
