"""The record callback's test event: one signed POST to a real receiver, its answer reported as it came."""

from __future__ import annotations

import json
import socket

import pytest

from emberrtc.callbacks.signature import verify
from emberrtc.callbacks.test_event import TEST_EVENT, send_test_event
from emberrtc.domain.clock import ManualClock
from emberrtc.domain.errors import InvalidParameterValue
from tests.support.http_receiver import HttpReceiver


async def test_a_signed_test_event_and_the_receivers_answer(receiver: HttpReceiver, clock: ManualClock) -> None:
    receiver.script.extend([204, 503])
    ok = await send_test_event(f"{receiver.url}/hook?token=abc", "k3y", "app1", clock)
    assert ok.delivered and ok.status == 204 and ok.error is None and ok.sent_at == clock.now()
    (got,) = receiver.received
    assert got.method == "POST" and got.path == "/hook?token=abc"
    body = json.loads(got.body)
    assert body == {
        "app_id": "app1",
        "event_type": TEST_EVENT,
        "detail_message": "a test event sent from the Ember console; no recording is concerned",
        "event_id": ok.event_id,
    }
    assert verify("k3y", got.headers, got.body)
    bad = await send_test_event(receiver.url, None, "app1", clock)
    assert not bad.delivered and bad.status == 503
    assert "x-rtc-signature" not in receiver.received[1].headers  # no key: not signed


async def test_no_answer_is_reported_with_the_url_masked(clock: ManualClock) -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    outcome = await send_test_event(f"http://user:secret@127.0.0.1:{port}/x?sig=1", None, "app1", clock)
    assert outcome.status is None and not outcome.delivered and outcome.error
    assert "secret" not in outcome.error


async def test_only_http_urls(clock: ManualClock) -> None:
    with pytest.raises(InvalidParameterValue):
        await send_test_event("file:///etc/passwd", None, "app1", clock)
