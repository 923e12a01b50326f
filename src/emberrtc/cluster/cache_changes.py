"""A change on one node drops what every node caches of it, at once (issue 12, item 6).

Two caches are kept per node: apps (``domain.app.AppService``, ``EMBER_APP_CACHE_TTL``) and access keys
(``domain.tenant.TenantService``, re-checked against the database's revocation epoch every
``EMBER_REVOCATION_CHECK_INTERVAL``). A change to an app (state, callback, automatic recording, deletion)
or the revocation of an access key is published on ``changes:{cache}`` (Redis pub/sub) once its
transaction has ended; every node, the sender too, drops that entry from its cache when the message arrives.

Failure is bounded as without Redis: when Redis does not take the message (logged), other nodes serve the
old entry until their TTL or revocation check; a node whose subscription was lost drops its whole cache
when it subscribes again (what was published meanwhile is lost).
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

#: What bounds a cache's staleness when a change does not reach it (said in the log line).
_FALLBACK = {"apps": "EMBER_APP_CACHE_TTL", "credentials": "EMBER_REVOCATION_CHECK_INTERVAL"}


class CacheChanges:
    """Changes to one cache (``name``: ``apps`` or ``credentials``). ``forget(key)`` drops one entry from
    this node's cache; ``forget(None)`` drops them all."""

    def __init__(
        self,
        redis: Redis,
        keys: Keyspace,
        node_id: str,
        name: str,
        forget: Callable[[str | None], None],
        *,
        timeout: float = 1.0,
    ) -> None:
        self._redis = redis
        self.name = name
        self.channel = f"{keys.prefix}changes:{name}"
        self.node_id = node_id
        self._forget = forget
        self.timeout = timeout

    def listen(self, subscriber: Subscriber) -> None:
        subscriber.on(self.channel, self.received)
        subscriber.on_resubscribed(lambda: self._forget(None))

    async def changed(self, key: str) -> None:
        """Tell every node that ``key`` changed (this one included). Never raises: a failure is logged, and
        the other nodes' entries then last until their TTL or check."""
        message = json.dumps({"key": key, "from": self.node_id})
        try:
            async with asyncio.timeout(self.timeout):
                await self._redis.publish(self.channel, message)
        except (RedisError, OSError, TimeoutError) as exc:
            log.warning(
                "could not tell the other nodes that %s %s changed (%s): they may serve it from their caches "
                "for up to %s",
                self.name,
                key,
                exc or "timed out",
                _FALLBACK.get(self.name, "their TTL"),
            )

    def received(self, message: str) -> None:
        try:
            data = json.loads(message) if len(message) <= 1024 else None
        except ValueError:
            data = None
        if not isinstance(data, dict) or not valid_name(data.get("key")) or not valid_name(data.get("from")):
            log.warning("ignoring a malformed message on %s (%d bytes)", self.channel, len(message))
            return
        self._forget(str(data["key"]))
