"""A node that died: a live node closes its rooms and releases its recording jobs (docs/scaling.md).

Every live node looks, every ``interval`` seconds (the heartbeat's), for nodes the database says hold
something (open room runs, claimed unfinished jobs) that Redis no longer lists as alive (their registration
expired: ``cluster_node_ttl``, 10 s, without a heartbeat). For each such node one live node, the one that
takes a short lock in Redis (``failover:{node_id}``), then:

- closes its open room runs and their sessions (``leave_reason`` ``node_lost``), as its restart would
  (``RoomSessionService.close_node``);
- releases its recording jobs as after its restart (``JobService.release_node``): their ``max_idle_time``
  countdown starts, they resume on the room's new node when the user publishes again there (that node
  claims them), or stop with ``IDLE_TIMEOUT``; none stays ``RUNNING`` on a node that is gone.

A node whose process died while its machine lives (a crash, ``kill -9``, a restart) is known dead sooner:
a node that has missed its heartbeats for ``2 * interval`` seconds is probed at its public URL, and if
nothing listens there (the connection is refused) its registration is removed at once, so that its rooms
are placed afresh and its clients' rejoins land on a live node seconds after the crash rather than at the
end of the 10 s. A probe that times out (a machine gone, a network cut) proves nothing: the registration's
expiry decides then, as before.

What the dead node had in its spool (files not uploaded, callbacks not enqueued) is on its own disk: it is
stored and reported when the node comes back (``RecordingSupervisor.recover``). The database writes are
conditional, so a second node doing the same work (after the lock expired) changes nothing; the lock only
keeps the live nodes from all doing it at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Protocol
from urllib.parse import urlsplit

from redis.asyncio import Redis
from redis.exceptions import RedisError

from emberrtc.domain.background import BackgroundTask
from emberrtc.domain.errors import InternalError

from .keyspace import Keyspace
from .presence import live_nodes

log = logging.getLogger(__name__)

# KEYS: the lock. ARGV: its holder. Deletes the lock only if this node still holds it.
_UNLOCK = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


# KEYS: node hash, nodes set. ARGV: the instance that was probed, its node ID. Removes the registration only
# if that same process still holds it (not one started since under the same node ID).
_FORGET = """
if redis.call('HGET', KEYS[1], 'instance') == ARGV[1] then
  redis.call('DEL', KEYS[1])
  redis.call('SREM', KEYS[2], ARGV[2])
  return 1
end
return 0
"""

#: How long a probe of a silent node's public URL may take to be refused.
PROBE_TIMEOUT = 0.5


async def refuses_connections(url: str, within: float = PROBE_TIMEOUT) -> bool:
    """Does nothing listen at ``url``'s host and port (the connection is refused)? A timeout or any other
    failure proves nothing (False)."""
    parts = urlsplit(url)
    if not parts.hostname:
        return False
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
        _, writer = await asyncio.wait_for(asyncio.open_connection(parts.hostname, port), within)
    except ConnectionRefusedError:
        return True
    except (OSError, TimeoutError, ValueError):
        return False
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return False


class NodeRooms(Protocol):
    """The part of ``domain.room_session.RoomSessionService`` failover uses."""

    async def hosting_nodes(self) -> set[str]: ...

    async def close_node(self, node_id: str) -> int: ...


class NodeJobs(Protocol):
    """The part of ``domain.job.JobService`` failover uses."""

    async def claiming_nodes(self) -> set[str]: ...

    async def release_node(self, node_id: str) -> int: ...


class NodeFailover:
    """This node's watch over the others (see the module docstring)."""

    def __init__(
        self,
        redis: Redis,
        keys: Keyspace,
        node_id: str,
        *,
        rooms: NodeRooms,
        jobs: NodeJobs,
        interval: float = 2.0,
        node_ttl: float = 10.0,
        lock_ttl: float = 30.0,
    ) -> None:
        self._redis = redis
        self._keys = keys
        self.node_id = node_id
        self._rooms = rooms
        self._jobs = jobs
        self.interval = interval
        self.node_ttl = node_ttl
        self.lock_ttl = lock_ttl
        self._loop = BackgroundTask("cluster-failover", self._run)

    def start(self) -> None:
        self._loop.start()

    async def stop(self) -> None:
        await self._loop.stop()

    async def sweep(self) -> list[str]:
        """One look: the dead nodes whose rooms and jobs this node reconciled now."""
        await self.confirm_dead()
        holding = await self._rooms.hosting_nodes() | await self._jobs.claiming_nodes()
        holding.discard(self.node_id)  # this node's own are its restart's (it is alive: it is running this)
        if not holding:
            return []
        dead = holding - {n.node_id for n in await live_nodes(self._redis, self._keys)}
        return [node for node in sorted(dead) if await self._take_over(node)]

    async def confirm_dead(self) -> list[str]:
        """The nodes silent for ``2 * interval`` seconds whose public URL refuses connections: their
        registrations removed now (see the module docstring)."""
        silent_below_ms = (self.node_ttl - 2 * self.interval) * 1000
        try:
            members = sorted(str(m) for m in await self._redis.smembers(self._keys.nodes))  # type: ignore[misc]
            async with self._redis.pipeline(transaction=False) as pipe:
                for node in members:
                    pipe.pttl(self._keys.node(node))
                    pipe.hmget(self._keys.node(node), "instance", "public_url")
                answers = await pipe.execute()
        except RedisError as exc:
            raise InternalError(f"the cluster's Redis does not answer: {exc}") from exc
        forgotten = []
        for i, node in enumerate(members):
            pttl, (instance, url) = answers[2 * i], answers[2 * i + 1]
            if node == self.node_id or instance is None or url is None or not 0 <= pttl < silent_below_ms:
                continue
            if not await refuses_connections(str(url)):
                continue
            keys = [self._keys.node(node), self._keys.nodes]
            try:
                removed = await self._redis.eval(_FORGET, 2, *keys, instance, node)  # type: ignore[misc]
            except RedisError as exc:
                raise InternalError(f"the cluster's Redis does not answer: {exc}") from exc
            if removed:
                log.warning(
                    "node %s missed its heartbeats for %.0f s and nothing listens at %s: taken for dead now",
                    node,
                    self.node_ttl - pttl / 1000,
                    url,
                )
                forgotten.append(node)
        return forgotten

    async def _take_over(self, node: str) -> bool:
        lock = self._keys.failover(node)
        try:
            if not await self._redis.set(lock, self.node_id, nx=True, px=int(self.lock_ttl * 1000)):
                return False  # another live node is on it
            try:
                # Checked again under the lock: a node that came back reconciles its own (its restart).
                if await self._redis.exists(self._keys.node(node)):
                    return False
                rooms = await self._rooms.close_node(node)
                jobs = await self._jobs.release_node(node)
            finally:
                await self._redis.eval(_UNLOCK, 1, lock, self.node_id)  # type: ignore[misc]
        except RedisError as exc:
            raise InternalError(f"the cluster's Redis does not answer: {exc}") from exc
        log.warning(
            "node %s is dead: node %s closed its %d room runs and released its %d jobs", node, self.node_id, rooms, jobs
        )
        return True

    async def _run(self) -> None:
        while True:
            try:
                await self.sweep()
            except Exception:
                log.exception("cluster failover pass of node %s failed", self.node_id)
            await asyncio.sleep(self.interval)
