"""The Janus client's protocol handling against a scripted Janus API WebSocket on loopback (no Janus needed)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import pytest
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.typing import Subprotocol

from emberrtc.media.janus_client import (
    JanusApiError,
    JanusClient,
    JanusTransportError,
    NoSuchFeedError,
    RtpForwardStream,
    SessionClosedError,
    VideoRoomError,
)

SESSION, HANDLE = 11, 22


class ScriptedJanus:
    """A Janus API WebSocket on loopback answering requests from a table; ``push`` sends an event."""

    def __init__(self, plugin: Callable[[dict[str, Any]], dict[str, Any]]) -> None:
        self.plugin = plugin
        self.requests: list[dict[str, Any]] = []
        self.subprotocols: list[str | None] = []
        self._server: Server | None = None
        self._connection: ServerConnection | None = None

    async def __aenter__(self) -> ScriptedJanus:
        self._server = await serve(self._serve, "127.0.0.1", 0, subprotocols=[Subprotocol("janus-protocol")])
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()

    @property
    def url(self) -> str:
        assert self._server is not None
        port = next(iter(self._server.sockets)).getsockname()[1]
        return f"ws://127.0.0.1:{port}"

    def push(self, event: dict[str, Any]) -> None:
        """Send an event down the client's connection, as Janus does for the sessions created on it."""
        assert self._connection is not None
        asyncio.get_running_loop().create_task(self._connection.send(json.dumps(event)))

    async def drop(self) -> None:
        """Close the client's connection, as a Janus that went away would."""
        assert self._connection is not None
        await self._connection.close()

    async def _serve(self, connection: ServerConnection) -> None:
        self._connection = connection
        self.subprotocols.append(connection.subprotocol)
        async for raw in connection:
            body = json.loads(raw)
            self.requests.append(body)
            kind = body["janus"]
            if kind == "create":
                answer: dict[str, Any] = {"janus": "success", "data": {"id": SESSION}}
            elif kind == "attach":
                answer = {"janus": "success", "session_id": SESSION, "data": {"id": HANDLE}}
            elif kind == "message":
                answer = self.plugin(body)
            elif kind in ("keepalive", "destroy"):
                answer = {"janus": "ack" if kind == "keepalive" else "success", "session_id": SESSION}
            else:
                answer = {"janus": "success"}
            await connection.send(json.dumps({"transaction": body["transaction"], **answer}))


def _client(janus: ScriptedJanus) -> JanusClient:
    return JanusClient(janus.url, api_secret="s3cret", room_admin_key="key")


def _plugin(data: dict[str, Any]) -> dict[str, Any]:
    return {"janus": "success", "sender": HANDLE, "plugindata": {"plugin": "janus.plugin.videoroom", "data": data}}


async def test_rtp_forward_request_uses_streams_syntax_and_admin_key() -> None:
    async with ScriptedJanus(
        lambda body: _plugin({"videoroom": "rtp_forward", "forwarders": [{"stream_id": 7}]})
    ) as janus:
        client = _client(janus)
        handle = await (await client.create_session()).attach_videoroom()

        forwarders = await handle.rtp_forward(
            "room", "alice", "127.0.0.1", [RtpForwardStream(mid="0", port=5004, pt=96), RtpForwardStream("1", 5006)]
        )
        assert forwarders == [{"stream_id": 7}]
        request = janus.requests[-1]
        # The secret and the addressing travel in the message; one connection, on Janus's subprotocol.
        assert (request["apisecret"], request["session_id"], request["handle_id"]) == ("s3cret", SESSION, HANDLE)
        assert janus.subprotocols == ["janus-protocol"]
        assert request["body"] == {
            "request": "rtp_forward",
            "room": "room",
            "publisher_id": "alice",
            "host": "127.0.0.1",
            "streams": [{"mid": "0", "port": 5004, "pt": 96}, {"mid": "1", "port": 5006}],
            "admin_key": "key",
        }
        await client.aclose()
        assert [request["janus"] for request in janus.requests] == ["create", "attach", "message", "destroy"]


async def test_plugin_errors_are_typed() -> None:
    async with ScriptedJanus(
        lambda body: _plugin({"videoroom": "event", "error_code": 428, "error": "No such feed"})
    ) as janus:
        client = _client(janus)
        handle = await (await client.create_session()).attach_videoroom()
        with pytest.raises(NoSuchFeedError) as error:
            await handle.kick("room", "bob")
        assert isinstance(error.value, VideoRoomError)
        assert (error.value.code, error.value.reason) == (428, "No such feed")
        await client.aclose()


async def test_async_answer_arrives_as_an_event() -> None:
    def ack(body: dict[str, Any]) -> dict[str, Any]:
        # Like Janus: acknowledge now, answer later on the connection with the same transaction.
        janus.push(
            {
                "janus": "event",
                "session_id": SESSION,
                "sender": HANDLE,
                "transaction": body["transaction"],
                "plugindata": {"data": {"videoroom": "attached"}},
                "jsep": {"type": "offer", "sdp": "v=0"},
            }
        )
        return {"janus": "ack", "session_id": SESSION}

    async with ScriptedJanus(ack) as janus:
        client = _client(janus)
        session = await client.create_session()
        handle = await session.attach_videoroom()
        async with asyncio.timeout(5):
            response = await handle.join_subscriber("room", [{"feed": "alice"}])
            # An event without a pending transaction goes to the handle's queue.
            janus.push({"janus": "webrtcup", "session_id": SESSION, "sender": HANDLE})
            event = await handle.wait_event(lambda event: event["janus"] == "webrtcup")
        assert response.data == {"videoroom": "attached"}
        assert response.jsep == {"type": "offer", "sdp": "v=0"}
        assert event["sender"] == HANDLE
        await client.aclose()


async def test_core_errors_and_lost_janus() -> None:
    async with ScriptedJanus(lambda body: {}) as janus:
        client = JanusClient(janus.url, timeout=2)
        janus.requests.clear()
        # Janus refuses without the secret; the client has none here, so its requests carry none.
        async with asyncio.timeout(5):
            info = await client.info()
        assert info == {"janus": "success", "transaction": janus.requests[0]["transaction"]}
        assert "apisecret" not in janus.requests[0]
        await client.aclose()

    async def refuse(connection: ServerConnection) -> None:
        async for raw in connection:
            transaction = json.loads(raw)["transaction"]
            error = {"code": 403, "reason": "Unauthorized request (wrong or missing secret/token)"}
            await connection.send(json.dumps({"janus": "error", "transaction": transaction, "error": error}))

    async with serve(refuse, "127.0.0.1", 0) as server:
        port = next(iter(server.sockets)).getsockname()[1]
        client = JanusClient(f"ws://127.0.0.1:{port}", api_secret="wrong")
        with pytest.raises(JanusApiError) as error:
            await client.create_session()
        assert error.value.code == 403
        await client.aclose()

    # Nobody listening: a transport error, not a hang.
    client = JanusClient(f"ws://127.0.0.1:{port}", timeout=2)
    with pytest.raises(JanusTransportError):
        await client.info()
    await client.aclose()


async def test_sessions_close_when_janus_times_them_out_or_the_connection_drops() -> None:
    async with ScriptedJanus(lambda body: {"janus": "ack", "session_id": SESSION}) as janus:
        client = _client(janus)
        session = await client.create_session()
        handle = await session.attach_videoroom()
        pending = asyncio.create_task(handle.request("join", room="r", ptype="publisher"))
        # Janus reaped the session (no keepalive in time): it says so on the connection.
        janus.push({"janus": "timeout", "session_id": SESSION})
        async with asyncio.timeout(5):
            await session.wait_closed()
            with pytest.raises(SessionClosedError):
                await pending
        assert session.close_reason == "timed out by Janus"
        with pytest.raises(SessionClosedError):
            await handle.request("list")

        # Janus went away: every session on the connection is over, and the next request reconnects.
        second = await client.create_session()
        await janus.drop()
        async with asyncio.timeout(5):
            await second.wait_closed()
        assert second.close_reason is not None and "connection to Janus" in second.close_reason
        third = await client.create_session()
        assert not third.closed
        assert len(janus.subprotocols) == 2
        await client.aclose()


async def test_multistream_subscriber_requests() -> None:
    def updated(body: dict[str, Any]) -> dict[str, Any]:
        # Like Janus: subscribe/unsubscribe answer "updated", with an offer when the session changed; the
        # answer is an event after the request's ack.
        request = body["body"]["request"]
        data = {"videoroom": "updated" if request != "configure" else "event", "streams": []}
        event = {
            "janus": "event",
            "session_id": SESSION,
            "sender": HANDLE,
            "transaction": body["transaction"],
            "plugindata": {"data": data},
            **({"jsep": {"type": "offer", "sdp": "v=0"}} if request in ("join", "subscribe") else {}),
        }
        asyncio.get_running_loop().call_later(0.01, janus.push, event)
        return {"janus": "ack", "session_id": SESSION}

    async with ScriptedJanus(updated) as janus:
        client = _client(janus)
        handle = await (await client.create_session()).attach_videoroom()
        async with asyncio.timeout(5):
            await handle.join_subscriber("room", [{"feed": "alice"}], autoupdate=False)
            added = await handle.subscribe([{"feed": "bob"}, {"feed": "carol"}])
            removed = await handle.unsubscribe([{"sub_mid": "1"}])
            await handle.configure_streams([{"mid": "0", "send": False}])
        assert added.jsep == {"type": "offer", "sdp": "v=0"} and removed.jsep is None
        assert [r["body"] for r in janus.requests if r["janus"] == "message"] == [
            {
                "request": "join",
                "ptype": "subscriber",
                "room": "room",
                "streams": [{"feed": "alice"}],
                "autoupdate": False,
            },
            {"request": "subscribe", "streams": [{"feed": "bob"}, {"feed": "carol"}]},
            {"request": "unsubscribe", "streams": [{"sub_mid": "1"}]},
            {"request": "configure", "streams": [{"mid": "0", "send": False}]},
        ]
        await client.aclose()
