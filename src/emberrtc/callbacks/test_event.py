"""A test event sent once to an app's record callback, to check the receiver: what it answered, how fast.

The body has the shape of the recording events (``outbox.body_json``) with ``event_type`` ``TEST_EVENT``,
an ``event_id`` and a ``detail_message``; it is signed with the app's ``auth_key`` like a real event
(``X-Rtc-*``). It is sent now, once, outside the outbox: nothing is retried or recorded, and the receiver
may tell it from a real event by its type. Redirects are not followed (as for real events).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import httpx

from emberrtc.callbacks.delivery import USER_AGENT
from emberrtc.callbacks.outbox import body_json, valid_callback_url
from emberrtc.callbacks.signature import signed_headers
from emberrtc.domain.clock import Clock
from emberrtc.domain.errors import InvalidParameterValue
from emberrtc.domain.redaction import mask_urls
from emberrtc.domain.secrets import new_hex_id

TEST_EVENT = "TEST_EVENT"
#: Seconds the receiver has to answer, as for real events (spec 4.3: 10 s).
TIMEOUT = 10.0


@dataclass(frozen=True)
class TestOutcome:
    """What the receiver did with the test event."""

    __test__ = False  # not a pytest class

    event_id: str
    sent_at: float
    #: The receiver's HTTP status, or None when there was no answer (``error`` says why).
    status: int | None
    #: Seconds from sending to the answer (or to the failure).
    elapsed: float
    error: str | None

    @property
    def delivered(self) -> bool:
        """A 2xx answer: a real event would count as delivered."""
        return self.status is not None and 200 <= self.status < 300


async def send_test_event(
    url: str,
    auth_key: str | None,
    app_id: str,
    clock: Clock,
    *,
    transport: httpx.AsyncBaseTransport | None = None,
) -> TestOutcome:
    """POST one signed ``TEST_EVENT`` to ``url``; never raises for the receiver's failures."""
    if not valid_callback_url(url):
        raise InvalidParameterValue("the record callback URL must be an http:// or https:// URL")
    event_id = new_hex_id()
    fields = {
        "app_id": app_id,
        "event_type": TEST_EVENT,
        "event_id": event_id,
        "detail_message": "a test event sent from the Ember console; no recording is concerned",
    }
    body = body_json(fields).encode()
    now = clock.now()
    headers = {"Content-Type": "application/json", **signed_headers(auth_key, body, now)}
    started = time.monotonic()
    async with httpx.AsyncClient(
        transport=transport,
        follow_redirects=False,
        trust_env=False,
        timeout=httpx.Timeout(TIMEOUT),
        headers={"User-Agent": USER_AGENT},
    ) as client:
        try:
            response = await client.post(url, content=body, headers=headers)
        except httpx.HTTPError as exc:
            # The URL may carry credentials: the error names it masked (domain.redaction).
            reason = mask_urls(str(exc)) or type(exc).__name__
            return TestOutcome(event_id, now, None, time.monotonic() - started, reason)
    return TestOutcome(event_id, now, response.status_code, time.monotonic() - started, None)
