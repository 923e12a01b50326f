"""Run an operation on the node hosting a room, whichever node the API call reached (issue 12, item 4).

Each node listens on a request channel of its own, ``calls:{node_id}`` (Redis pub/sub, through
:class:`~.subscriber.Subscriber`). A node that must act on a room hosted elsewhere publishes a request there
and waits (``BLPOP``) for the answer on a list key named by the request, ``reply:{call_id}``, which the host
pushes and lets expire; everything is bounded by one time budget (``EMBER_CLUSTER_CALL_TIMEOUT``, 1 s). The
answer is the host's result, or the host's error from the catalogue (``domain.errors``), raised here as it
would have been raised on the host.

Redis is trusted infrastructure (only the cluster's nodes reach it), but what comes from it is still checked:
a request's size, its fields and their types, the operation's name (only those registered with
:meth:`RoomCalls.handle`); a handler checks its own arguments. Nothing secret is carried or logged.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import secrets
import time
from collections.abc import Awaitable, Callable
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import RedisError

from emberrtc.api.schemas.common import is_id
from emberrtc.domain.errors import EmberError, InternalError

from .keyspace import Keyspace

log = logging.getLogger(__name__)

#: A handler: ``(app_id, room_id, args) -> JSON-able result``; it raises catalogue errors as usual.
Handler = Callable[[str, str, dict[str, Any]], Awaitable[Any]]

#: Requests and answers larger than this are refused (a request carries IDs, never media or files).
MAX_MESSAGE = 64 * 1024
#: Requests served at once by one node; beyond, a request is answered "busy" at once.
MAX_IN_FLIGHT = 64
#: How long an answer nobody took stays in Redis.
_REPLY_TTL_MS = 10_000
_CALL_ID = re.compile(r"[0-9a-f]{32}")
_VERSION = 1

# ARGV: key prefix, room member. The node hosting the room while it is alive, else nil.
_HOST = """
local current = redis.call('GET', ARGV[1] .. 'room:' .. ARGV[2])
if not current then return false end
if redis.call('EXISTS', ARGV[1] .. 'node:' .. current) == 0 then return false end
return current
"""


class NodeUnreachable(InternalError):
    """The node hosting the room did not take or answer the call in time (a service fault, 500)."""


def _errors_by_name() -> dict[str, type[EmberError]]:
    found: dict[str, type[EmberError]] = {}
    todo: list[type[EmberError]] = [EmberError]
    while todo:
        cls = todo.pop()
        found.setdefault(cls.__name__, cls)
        todo.extend(cls.__subclasses__())
    return found


def encode_error(exc: EmberError) -> dict[str, Any]:
    return {"type": type(exc).__name__, "code": exc.code, "detail": exc.detail}


def decode_error(data: Any, node_id: str) -> EmberError:
    """The catalogue error an answer names; one this node does not know (or a malformed one) is a fault."""
    if isinstance(data, dict):
        cls = _errors_by_name().get(str(data.get("type")))
        detail = data.get("detail")
        if cls is not None and cls.code == data.get("code") and (detail is None or isinstance(detail, str)):
            try:
                return cls(detail)
            except TypeError:
                pass
    return InternalError(f"node {node_id} answered with an error this node does not know")


def valid_name(value: Any) -> bool:
    """An app, room, user or node ID, as the API checks them (``api.schemas.common.is_id``)."""
    return is_id(value)


class RoomCalls:
    """This node's side of the calls: it sends calls to rooms' nodes and serves those sent to it.

    ``timeout`` bounds a call from its start to its answer (and a handler serving one)."""

    def __init__(self, redis: Redis, keys: Keyspace, node_id: str, *, timeout: float = 1.0) -> None:
        self._redis = redis
        self._keys = keys
        self.node_id = node_id
        self.timeout = timeout
        self._handlers: dict[str, Handler] = {}
        self._serving: set[asyncio.Task[None]] = set()

    @property
    def channel(self) -> str:
        """Where calls to this node arrive."""
        return self.channel_of(self.node_id)

    def channel_of(self, node_id: str) -> str:
        return f"{self._keys.prefix}calls:{node_id}"

    def _reply_key(self, call_id: str) -> str:
        return f"{self._keys.prefix}reply:{call_id}"

    def handle(self, op: str, handler: Handler) -> None:
        """Serve ``op``: run ``handler`` for it here, for calls from this node or from another."""
        self._handlers[op] = handler

    async def host(self, app_id: str, room_id: str) -> str | None:
        """The live node hosting the room (this one included), or None: no node hosts it. Never places it."""
        try:
            host = await self._redis.eval(  # type: ignore[misc]
                _HOST, 0, self._keys.prefix, Keyspace.room_member(app_id, room_id)
            )
        except (RedisError, OSError) as exc:
            raise InternalError(f"the cluster's Redis does not answer: {exc}") from exc
        return None if host is None else str(host)

    async def run(self, op: str, app_id: str, room_id: str, args: dict[str, Any]) -> Any:
        """Run ``op`` on the node hosting the room; here when that is this node or when no node hosts it
        (then this node's answer is that of a room that does not run)."""
        started = time.monotonic()
        try:
            async with asyncio.timeout(self.timeout):
                host = await self.host(app_id, room_id)
        except TimeoutError:
            raise InternalError(f"the cluster's Redis did not answer within {self.timeout:g} s") from None
        if host is None or host == self.node_id:
            return await self._handlers[op](app_id, room_id, args)
        return await self.call(host, op, app_id, room_id, args, started=started)

    async def call(
        self, node_id: str, op: str, app_id: str, room_id: str, args: dict[str, Any], *, started: float | None = None
    ) -> Any:
        """Send ``op`` to ``node_id`` and return its answer (raise its error), within ``timeout`` of
        ``started`` (``time.monotonic()``; default now)."""
        call_id = secrets.token_hex(16)
        request = json.dumps(
            {
                "v": _VERSION,
                "id": call_id,
                "op": op,
                "app_id": app_id,
                "room_id": room_id,
                "args": args,
                "from": self.node_id,
            }
        )
        if len(request) > MAX_MESSAGE:
            raise InternalError(f"the call {op} is too large to send to node {node_id}")
        started = time.monotonic() if started is None else started
        try:
            # A margin over the budget: BLPOP's own timeout ends the wait, without cutting a command short.
            async with asyncio.timeout(max(0.01, self.timeout - (time.monotonic() - started)) + 0.5):
                if not await self._redis.publish(self.channel_of(node_id), request):
                    raise NodeUnreachable(f"node {node_id}, hosting room {room_id}, takes no calls (stopping?)")
                left = max(0.01, self.timeout - (time.monotonic() - started))
                answer = await self._redis.blpop([self._reply_key(call_id)], timeout=left)  # type: ignore[misc]
        except TimeoutError:
            answer = None
        except (RedisError, OSError) as exc:
            raise InternalError(f"the cluster's Redis does not answer: {exc}") from exc
        if answer is None:
            raise NodeUnreachable(
                f"node {node_id}, hosting room {room_id}, did not answer {op} within {self.timeout:g} s"
            )
        return self._result(str(answer[1]), call_id, node_id)

    @staticmethod
    def _result(raw: str, call_id: str, node_id: str) -> Any:
        try:
            answer = json.loads(raw) if len(raw) <= MAX_MESSAGE else None
        except ValueError:
            answer = None
        if not isinstance(answer, dict) or answer.get("id") != call_id or not isinstance(answer.get("ok"), bool):
            raise InternalError(f"node {node_id} answered a call with a malformed message")
        if not answer["ok"]:
            raise decode_error(answer.get("error"), node_id)
        return answer.get("result")

    # --- serving calls from other nodes ---------------------------------------------------------

    def received(self, message: str) -> None:
        """A message on this node's channel (the subscriber calls this; it does not block): checked, then
        served in a task of its own."""
        request = self._parse(message)
        if request is None:
            return
        if len(self._serving) >= MAX_IN_FLIGHT:
            log.warning(
                "refusing call %s from node %s: %d calls in flight", request["op"], request["from"], MAX_IN_FLIGHT
            )
            reply = {
                "id": request["id"],
                "ok": False,
                "error": encode_error(InternalError(f"node {self.node_id} is busy")),
            }
            self._spawn(self._answer(request["id"], reply))
            return
        self._spawn(self._serve(request))

    def _spawn(self, work: Awaitable[None]) -> None:
        task = asyncio.ensure_future(work)
        self._serving.add(task)
        task.add_done_callback(self._serving.discard)

    def _parse(self, message: str) -> dict[str, Any] | None:
        """The request, or None (logged without its content) when it is not one this node serves."""
        try:
            request = json.loads(message) if len(message) <= MAX_MESSAGE else None
        except ValueError:
            request = None
        problem = None
        if not isinstance(request, dict) or request.get("v") != _VERSION:
            problem = "not a call of this version"
        elif not isinstance(request.get("id"), str) or not _CALL_ID.fullmatch(request["id"]):
            problem = "no valid call ID"
        elif request.get("op") not in self._handlers:
            problem = "an unknown operation"
        elif not all(valid_name(request.get(k)) for k in ("app_id", "room_id", "from")):
            problem = "invalid app, room or node ID"
        elif not isinstance(request.get("args"), dict):
            problem = "arguments that are not an object"
        if problem is not None:
            log.warning("ignoring a message on %s: %s (%d bytes)", self.channel, problem, len(message))
            return None
        assert isinstance(request, dict)
        return request

    async def _serve(self, request: dict[str, Any]) -> None:
        op, app_id, room_id = request["op"], request["app_id"], request["room_id"]
        try:
            async with asyncio.timeout(self.timeout):
                result = await self._handlers[op](app_id, room_id, request["args"])
            reply: dict[str, Any] = {"id": request["id"], "ok": True, "result": result}
        except EmberError as exc:
            reply = {"id": request["id"], "ok": False, "error": encode_error(exc)}
        except TimeoutError:
            log.warning(
                "call %s for room %s/%s from node %s took over %g s", op, app_id, room_id, request["from"], self.timeout
            )
            return  # the caller has given up
        except Exception:
            log.exception("call %s for room %s/%s from node %s failed", op, app_id, room_id, request["from"])
            fault = InternalError(f"node {self.node_id} failed to run {op}")
            reply = {"id": request["id"], "ok": False, "error": encode_error(fault)}
        await self._answer(request["id"], reply)

    async def _answer(self, call_id: str, reply: dict[str, Any]) -> None:
        key = self._reply_key(call_id)
        try:
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.rpush(key, json.dumps(reply))
                pipe.pexpire(key, _REPLY_TTL_MS)
                await pipe.execute()
        except (RedisError, OSError, TypeError, ValueError) as exc:
            log.warning("could not answer call %s: %s", call_id, exc)

    async def close(self) -> None:
        """Stop serving: calls in progress are cancelled (their callers time out)."""
        for task in list(self._serving):
            task.cancel()
        await asyncio.gather(*self._serving, return_exceptions=True)
