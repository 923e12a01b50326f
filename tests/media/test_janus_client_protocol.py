"""The Janus client's protocol handling against a scripted Janus (unit tests: no Janus needed)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest

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
    """Answers Janus API requests from a table; long polls return queued events."""

    def __init__(self, plugin: Callable[[dict[str, Any]], dict[str, Any]]) -> None:
        self.plugin = plugin
        self.requests: list[dict[str, Any]] = []
        self.events: asyncio.Queue[dict[str, Any]] = asyncio.Queue()

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        if request.method == "GET":
            # Long poll: hold until an event is queued (the test's deadline bounds it). Janus sends
            # events as an array (maxev) but a session-level error as a bare object.
            event = await self.events.get()
            return httpx.Response(200, json=event if event["janus"] == "error" else [event])
        body = json.loads(request.content)
        self.requests.append(body)
        kind = body["janus"]
        if kind == "create":
            answer: dict[str, Any] = {"janus": "success", "data": {"id": SESSION}}
        elif kind == "attach":
            answer = {"janus": "success", "data": {"id": HANDLE}}
        elif kind == "message":
            answer = self.plugin(body)
        else:
            answer = {"janus": "success"}
        return httpx.Response(200, json={"transaction": body["transaction"], **answer})


def _client(janus: ScriptedJanus) -> JanusClient:
    http = httpx.AsyncClient(transport=httpx.MockTransport(janus))
    return JanusClient("http://janus.invalid/janus", api_secret="s3cret", room_admin_key="key", http=http)


def _plugin(data: dict[str, Any]) -> dict[str, Any]:
    return {"janus": "success", "sender": HANDLE, "plugindata": {"plugin": "janus.plugin.videoroom", "data": data}}


async def test_rtp_forward_request_uses_streams_syntax_and_admin_key() -> None:
    janus = ScriptedJanus(lambda body: _plugin({"videoroom": "rtp_forward", "forwarders": [{"stream_id": 7}]}))
    client = _client(janus)
    handle = await (await client.create_session()).attach_videoroom()

    forwarders = await handle.rtp_forward(
        "room", "alice", "127.0.0.1", [RtpForwardStream(mid="0", port=5004, pt=96), RtpForwardStream("1", 5006)]
    )
    assert forwarders == [{"stream_id": 7}]
    request = janus.requests[-1]
    assert request["apisecret"] == "s3cret"
    assert request["body"] == {
        "request": "rtp_forward",
        "room": "room",
        "publisher_id": "alice",
        "host": "127.0.0.1",
        "streams": [{"mid": "0", "port": 5004, "pt": 96}, {"mid": "1", "port": 5006}],
        "admin_key": "key",
    }
    await client.aclose()


async def test_plugin_errors_are_typed() -> None:
    janus = ScriptedJanus(lambda body: _plugin({"videoroom": "event", "error_code": 428, "error": "No such feed"}))
    client = _client(janus)
    handle = await (await client.create_session()).attach_videoroom()
    with pytest.raises(NoSuchFeedError) as error:
        await handle.kick("room", "bob")
    assert isinstance(error.value, VideoRoomError)
    assert (error.value.code, error.value.reason) == (428, "No such feed")
    await client.aclose()


async def test_async_answer_arrives_through_the_event_poll() -> None:
    def ack(body: dict[str, Any]) -> dict[str, Any]:
        # Like Janus: acknowledge now, answer on the session's event stream with the same transaction.
        janus.events.put_nowait(
            {
                "janus": "event",
                "sender": HANDLE,
                "transaction": body["transaction"],
                "plugindata": {"data": {"videoroom": "attached"}},
                "jsep": {"type": "offer", "sdp": "v=0"},
            }
        )
        return {"janus": "ack"}

    janus = ScriptedJanus(ack)
    client = _client(janus)
    session = await client.create_session()
    handle = await session.attach_videoroom()
    async with asyncio.timeout(5):
        response = await handle.join_subscriber("room", [{"feed": "alice"}])
        # An event without a pending transaction goes to the handle's queue.
        janus.events.put_nowait({"janus": "webrtcup", "sender": HANDLE})
        event = await handle.wait_event(lambda event: event["janus"] == "webrtcup")
    assert response.data == {"videoroom": "attached"}
    assert response.jsep == {"type": "offer", "sdp": "v=0"}
    assert event["sender"] == HANDLE
    await client.aclose()


async def test_core_errors_and_lost_janus() -> None:
    async def refuse(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"janus": "error", "error": {"code": 458, "reason": "No such session"}})

    client = JanusClient("http://janus.invalid/janus", http=httpx.AsyncClient(transport=httpx.MockTransport(refuse)))
    with pytest.raises(JanusApiError) as error:
        await client.create_session()
    assert error.value.code == 458

    async def unreachable(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    client = JanusClient(
        "http://janus.invalid/janus", http=httpx.AsyncClient(transport=httpx.MockTransport(unreachable))
    )
    with pytest.raises(JanusTransportError):
        await client.info()


async def test_session_closes_when_the_poll_fails() -> None:
    janus = ScriptedJanus(lambda body: {"janus": "ack"})
    client = _client(janus)
    session = await client.create_session()
    handle = await session.attach_videoroom()
    pending = asyncio.create_task(handle.request("join", room="r", ptype="publisher"))
    # A session-level error on the long poll: the session is gone (e.g. Janus restarted).
    janus.events.put_nowait({"janus": "error", "error": {"code": 458, "reason": "No such session"}})
    async with asyncio.timeout(5):
        await session.wait_closed()
        with pytest.raises(SessionClosedError):
            await pending
    with pytest.raises(SessionClosedError):
        await handle.request("list")
    await client.aclose()


async def test_multistream_subscriber_requests() -> None:
    def updated(body: dict[str, Any]) -> dict[str, Any]:
        # Like Janus: subscribe/unsubscribe answer "updated", with an offer when the session changed.
        request = body["body"]["request"]
        data = {"videoroom": "updated" if request != "configure" else "event", "streams": []}
        janus.events.put_nowait(
            {
                "janus": "event",
                "sender": HANDLE,
                "transaction": body["transaction"],
                "plugindata": {"data": data},
                **({"jsep": {"type": "offer", "sdp": "v=0"}} if request in ("join", "subscribe") else {}),
            }
        )
        return {"janus": "ack"}

    janus = ScriptedJanus(updated)
    client = _client(janus)
    handle = await (await client.create_session()).attach_videoroom()
    async with asyncio.timeout(5):
        await handle.join_subscriber("room", [{"feed": "alice"}], autoupdate=False)
        added = await handle.subscribe([{"feed": "bob"}, {"feed": "carol"}])
        removed = await handle.unsubscribe([{"sub_mid": "1"}])
        await handle.configure_streams([{"mid": "0", "send": False}])
    assert added.jsep == {"type": "offer", "sdp": "v=0"} and removed.jsep is None
    assert [r["body"] for r in janus.requests if r["janus"] == "message"] == [
        {"request": "join", "ptype": "subscriber", "room": "room", "streams": [{"feed": "alice"}], "autoupdate": False},
        {"request": "subscribe", "streams": [{"feed": "bob"}, {"feed": "carol"}]},
        {"request": "unsubscribe", "streams": [{"sub_mid": "1"}]},
        {"request": "configure", "streams": [{"mid": "0", "send": False}]},
    ]
    await client.aclose()
