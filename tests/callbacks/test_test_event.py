"""The record callback's test event: one signed POST to a real receiver, made as a real event's attempt is
(the outbound policy included), its answer reported as it came."""

from __future__ import annotations

import json
import socket

from emberrtc.callbacks.delivery import CallbackDelivery
from emberrtc.callbacks.signature import verify
from emberrtc.callbacks.test_event import TEST_EVENT, send_test_event
from emberrtc.domain.clock import ManualClock
from emberrtc.domain.outbound import AllowList, OutboundPolicy
from emberrtc.domain.secrets import SecretBox
from emberrtc.store.database import Database
from tests.callbacks.test_delivery import make_delivery
from tests.support.http_receiver import HttpReceiver


def _delivery(db: Database, box: SecretBox, clock: ManualClock, **kw: object) -> CallbackDelivery:
    return make_delivery(db, box, clock, **kw)


async def test_a_signed_test_event_and_the_receivers_answer(
    db: Database, box: SecretBox, clock: ManualClock, receiver: HttpReceiver
) -> None:
    delivery = _delivery(db, box, clock)
    receiver.script.extend([204, 503])
    ok = await send_test_event(delivery, f"{receiver.url}/hook?token=abc", "k3y", "app1", clock)
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
    bad = await send_test_event(delivery, receiver.url, None, "app1", clock)
    assert not bad.delivered and bad.status == 503 and bad.error == "HTTP 503"
    assert "x-rtc-signature" not in receiver.received[1].headers  # no key: not signed


async def test_the_outbound_policy_applies(
    db: Database, box: SecretBox, clock: ManualClock, receiver: HttpReceiver
) -> None:
    strict = _delivery(db, box, clock, outbound=OutboundPolicy(AllowList.parse("none")))
    refused = await send_test_event(strict, f"{receiver.url}/hook", None, "app1", clock)
    assert refused.status is None and not refused.delivered
    assert refused.error is not None and "outbound policy" in refused.error
    assert receiver.received == []  # nothing was sent


async def test_no_answer_is_reported(db: Database, box: SecretBox, clock: ManualClock) -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    outcome = await send_test_event(_delivery(db, box, clock), f"http://127.0.0.1:{port}/x?sig=1", None, "a", clock)
    assert outcome.status is None and not outcome.delivered and outcome.error
    assert "sig=1" not in outcome.error
