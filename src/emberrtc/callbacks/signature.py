"""The recording callback signature (``spec/README.md``).

``X-Rtc-Signature = lowercase hex(HMAC-SHA256(key=auth_key, msg=X-Rtc-Rand + X-Rtc-Timestamp + body))``,
``body`` being the exact bytes sent. Without an ``auth_key`` no signature headers are sent. Ember sends a
decimal random number and the UNIX time in seconds (the reference names the headers, not their format).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

RAND_HEADER = "X-Rtc-Rand"
TIMESTAMP_HEADER = "X-Rtc-Timestamp"
SIGNATURE_HEADER = "X-Rtc-Signature"


def signature(auth_key: str, rand: str, timestamp: str, body: bytes) -> str:
    msg = rand.encode() + timestamp.encode() + body
    return hmac.new(auth_key.encode(), msg, hashlib.sha256).hexdigest()


def signed_headers(auth_key: str | None, body: bytes, now: float) -> dict[str, str]:
    """The ``X-Rtc-*`` headers for one POST of ``body`` (empty without a key)."""
    if not auth_key:
        return {}
    rand = str(secrets.randbelow(10**10))
    timestamp = str(int(now))
    sig = signature(auth_key, rand, timestamp, body)
    return {RAND_HEADER: rand, TIMESTAMP_HEADER: timestamp, SIGNATURE_HEADER: sig}


def verify(auth_key: str, headers: dict[str, str], body: bytes) -> bool:
    """The receiving side's check (what an application does; used by the tests)."""
    h = {k.lower(): v for k, v in headers.items()}
    try:
        expected = signature(auth_key, h[RAND_HEADER.lower()], h[TIMESTAMP_HEADER.lower()], body)
        return hmac.compare_digest(expected, h[SIGNATURE_HEADER.lower()])
    except KeyError:
        return False
