"""An app changed on one node drops it from every node's app cache at once (issue 12, item 6).

Each node caches apps for ``EMBER_APP_CACHE_TTL`` seconds (``domain.app.AppService``). A change to an app
(state, callback, automatic recording, deletion) is published on ``app-changes`` (Redis pub/sub) once its
transaction has ended; every node, the sender too, drops that app from its cache when the message arrives.

Failure is bounded by the TTL: when Redis does not take the message (logged), other nodes serve the old app
for ``EMBER_APP_CACHE_TTL`` at most, as without a cluster channel; a node whose subscription was lost drops
its whole cache when it subscribes again (what was published meanwhile is lost).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable

from redis.asyncio import Redis
from redis.exceptions import RedisError

from .keyspace import Keyspace
from .room_calls import valid_name
from .subscriber import Subscriber

log = logging.getLogger(__name__)


class AppChanges:
    """``forget(app_id)`` drops one app from this node's cache; ``forget(None)`` drops them all."""

    def __init__(
        self,
        redis: Redis,
        keys: Keyspace,
        node_id: str,
        forget: Callable[[str | None], None],
        *,
        timeout: float = 1.0,
    ) -> None:
        self._redis = redis
        self.channel = f"{keys.prefix}app-changes"
        self.node_id = node_id
        self._forget = forget
        self.timeout = timeout

    def listen(self, subscriber: Subscriber) -> None:
        subscriber.on(self.channel, self.received)
        subscriber.on_resubscribed(lambda: self._forget(None))

    async def changed(self, app_id: str) -> None:
        """Tell every node the app changed (this one included). Never raises: a failure is logged, and the
        other nodes' caches then expire after their TTL."""
        message = json.dumps({"app_id": app_id, "from": self.node_id})
        try:
            async with asyncio.timeout(self.timeout):
                await self._redis.publish(self.channel, message)
        except (RedisError, OSError, TimeoutError) as exc:
            log.warning(
                "could not tell the other nodes that app %s changed (%s): they serve it from their caches for up "
                "to EMBER_APP_CACHE_TTL",
                app_id,
                exc or "timed out",
            )

    def received(self, message: str) -> None:
        try:
            data = json.loads(message) if len(message) <= 1024 else None
        except ValueError:
            data = None
        if not isinstance(data, dict) or not valid_name(data.get("app_id")) or not valid_name(data.get("from")):
            log.warning("ignoring a malformed message on %s (%d bytes)", self.channel, len(message))
            return
        self._forget(str(data["app_id"]))
