"""What a cluster node does for the others, put together: it serves calls for the rooms it hosts
(:mod:`.room_calls`, :mod:`.room_control`) and hears changes to what it caches (:mod:`.cache_changes`), on one pub/sub
connection (:mod:`.subscriber`); its rate limits count in Redis (:mod:`.rate_limit`)."""

from __future__ import annotations

from collections.abc import Callable

from redis.asyncio import Redis

from emberrtc.config import RateLimit, Settings
from emberrtc.domain.clock import Clock
from emberrtc.domain.job import JobService
from emberrtc.domain.ports import MediaPlane, MixPreviews

from .cache_changes import CacheChanges
from .keyspace import Keyspace
from .rate_limit import SharedRateLimiter, limiter_client
from .room_calls import RoomCalls
from .room_control import RoutedJobs, RoutedMediaPlane, RoutedPreviews
from .subscriber import Subscriber


class ClusterControl:
    def __init__(self, settings: Settings, redis: Redis) -> None:
        self.keys = Keyspace(settings.cluster_name)
        self.node_id = settings.node_id
        self._redis = redis
        self._settings = settings
        self.subscriber = Subscriber(redis)
        self.calls = RoomCalls(redis, self.keys, settings.node_id, timeout=settings.cluster_call_timeout)
        self.subscriber.on(self.calls.channel, self.calls.received)
        self._limiter_redis: Redis | None = None

    def media_plane(self, local: MediaPlane) -> RoutedMediaPlane:
        """The media plane room management goes through: remove users and dismiss on the room's node."""
        return RoutedMediaPlane(local, self.calls)

    def route_jobs(self, jobs: JobService) -> None:
        """Job changes made through this node reach the node hosting the job's room at once."""
        jobs.nodes = RoutedJobs(jobs, self.calls)

    def previews(self, local: MixPreviews) -> RoutedPreviews:
        """Mixed jobs' live previews, fetched from the node composing each (``local`` is this node's)."""
        return RoutedPreviews(local, self.calls)

    def cache_changes(self, name: str, forget: Callable[[str | None], None]) -> CacheChanges:
        """Changes to the cache ``name`` (``apps``, ``credentials``): published, and heard from every node."""
        changes = CacheChanges(
            self._redis, self.keys, self.node_id, name, forget, timeout=self._settings.cluster_call_timeout
        )
        changes.listen(self.subscriber)
        return changes

    def rate_limiter(
        self, limits: dict[str, RateLimit], clock: Clock, enabled: bool = True, *, name: str
    ) -> SharedRateLimiter:
        """A limiter counting across the cluster (``name`` keeps its buckets apart from another limiter's)."""
        if self._limiter_redis is None:
            self._limiter_redis = limiter_client(self._settings.redis_url)
        return SharedRateLimiter(limits, clock, enabled, redis=self._limiter_redis, keys=self.keys, name=name)

    async def start(self) -> None:
        await self.subscriber.start()

    async def close(self) -> None:
        await self.subscriber.close()
        await self.calls.close()
        if self._limiter_redis is not None:
            await self._limiter_redis.aclose()
            self._limiter_redis = None
