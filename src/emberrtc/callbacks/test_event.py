"""A test event sent once to an app's record callback, to check the receiver: what it answered, how fast.

The body has the shape of the recording events (``outbox.body_json``) with ``event_type`` ``TEST_EVENT``,
an ``event_id`` and a ``detail_message``. It goes out as one attempt of a real event does
(``CallbackDelivery.post_once``: the outbound policy, ``EMBER_OUTBOUND_ALLOW``, vets the URL; signed with
the app's ``auth_key``; 10 s; redirects not followed), but now, once, outside the outbox: nothing is
retried or recorded, and the receiver may tell it from a real event by its type.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from emberrtc.callbacks.delivery import CallbackDelivery
from emberrtc.callbacks.outbox import body_json
from emberrtc.domain.clock import Clock
from emberrtc.domain.secrets import new_hex_id

TEST_EVENT = "TEST_EVENT"


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
    #: Why this would not count as delivery (None: a 2xx answer).
    error: str | None

    @property
    def delivered(self) -> bool:
        """A 2xx answer: a real event would count as delivered."""
        return self.error is None and self.status is not None and 200 <= self.status < 300


async def send_test_event(
    delivery: CallbackDelivery, url: str, auth_key: str | None, app_id: str, clock: Clock
) -> TestOutcome:
    """POST one ``TEST_EVENT`` to ``url``; the receiver's failures are reported, never raised."""
    event_id = new_hex_id()
    fields = {
        "app_id": app_id,
        "event_type": TEST_EVENT,
        "event_id": event_id,
        "detail_message": "a test event sent from the Ember console; no recording is concerned",
    }
    now = clock.now()
    started = time.monotonic()
    status, error = await delivery.post_once(url, auth_key, body_json(fields).encode())
    return TestOutcome(event_id, now, status, time.monotonic() - started, error)
