"""One Redis pub/sub connection per node, for every channel the node listens on (its calls, app changes).

Messages are handed to a callback per channel, which must not block (it starts a task when it has work).
When the connection drops, the subscriber logs it, connects again (waiting longer each time, up to 5 s) and
calls the ``on_resubscribed`` callbacks: whatever was published meanwhile is lost (pub/sub keeps nothing),
so a cache drops what it holds rather than trust it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

from redis.asyncio import Redis
from redis.asyncio.client import PubSub
from redis.exceptions import RedisError

from emberrtc.domain.errors import InternalError

log = logging.getLogger(__name__)

_RETRY_MAX = 5.0


class Subscriber:
    def __init__(self, redis: Redis, *, poll: float = 1.0) -> None:
        self._redis = redis
        self._poll = poll
        self._channels: dict[str, Callable[[str], None]] = {}
        self._resubscribed: list[Callable[[], None]] = []
        self._pubsub: PubSub | None = None
        self._task: asyncio.Task[None] | None = None

    def on(self, channel: str, callback: Callable[[str], None]) -> None:
        """Hand each message of ``channel`` to ``callback`` (before :meth:`start`)."""
        self._channels[channel] = callback

    def on_resubscribed(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` after the subscription was lost and made again (messages may be lost)."""
        self._resubscribed.append(callback)

    async def _subscribe(self) -> PubSub:
        pubsub = self._redis.pubsub(ignore_subscribe_messages=True)
        try:
            await pubsub.subscribe(*self._channels)
        except BaseException:
            with contextlib.suppress(RedisError, OSError):
                await pubsub.aclose()
            raise
        return pubsub

    async def start(self) -> None:
        """Subscribe (before the node takes part: nothing sent to it from then on is missed), then listen."""
        try:
            self._pubsub = await self._subscribe()
        except (RedisError, OSError) as exc:
            raise InternalError(f"the cluster's Redis does not answer: {exc}") from exc
        self._task = asyncio.create_task(self._run(), name="cluster-subscriber")

    async def _run(self) -> None:
        delay = 0.2
        me = asyncio.current_task()
        # redis-py can swallow a cancellation that lands in a command (presence.py): check for a stop too.
        while me is None or not me.cancelling():
            if self._pubsub is None:
                try:
                    self._pubsub = await self._subscribe()
                except (RedisError, OSError) as exc:
                    log.warning("cluster subscription: Redis does not answer (%s); again in %.1f s", exc, delay)
                    await asyncio.sleep(delay)
                    delay = min(_RETRY_MAX, delay * 2)
                    continue
                log.info("cluster subscription made again; what was published meanwhile is lost")
                delay = 0.2
                for callback in self._resubscribed:
                    self._call(callback)
            try:
                message = await self._pubsub.get_message(ignore_subscribe_messages=True, timeout=self._poll)
            except (RedisError, OSError) as exc:
                log.warning("cluster subscription lost: %s", exc)
                with contextlib.suppress(RedisError, OSError):
                    await self._pubsub.aclose()
                self._pubsub = None
                continue
            if message is None or message.get("type") != "message":
                continue
            handler = self._channels.get(str(message.get("channel")))
            data = message.get("data")
            if handler is not None and isinstance(data, str):
                self._call(handler, data)

    @staticmethod
    def _call(callback: Callable[..., None], *args: str) -> None:
        try:
            callback(*args)
        except Exception:
            log.exception("cluster message handler failed")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._pubsub is not None:
            with contextlib.suppress(RedisError, OSError):
                await self._pubsub.aclose()
            self._pubsub = None
