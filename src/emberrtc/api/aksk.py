"""Verification of AK/SK-signed requests exactly as the official SDK signs them.

The reference is ``huaweicloudsdkcore/signer/signer.py`` (``SDK-HMAC-SHA256``)::

    CanonicalRequest = METHOD \\n CanonicalURI \\n CanonicalQuery \\n CanonicalHeaders \\n SignedHeaders
                       \\n HexHash(body)
    StringToSign     = "SDK-HMAC-SHA256" \\n X-Sdk-Date \\n HexHash(CanonicalRequest)
    Signature        = Hex(HMAC-SHA256(SK, StringToSign))
"""

from __future__ import annotations

import hashlib
import hmac
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import parse_qsl, quote, unquote

from emberrtc.domain.errors import Unauthenticated

ALGORITHM = "SDK-HMAC-SHA256"
EMPTY_HASH = hashlib.sha256(b"").hexdigest()
_AUTH_RE = re.compile(r"^SDK-HMAC-SHA256\s+Access=([^,\s]+),\s*SignedHeaders=([^,\s]+),\s*Signature=([0-9a-fA-F]+)\s*$")


@dataclass(frozen=True)
class SignedRequest:
    """The parts of an incoming request that the signature covers."""

    method: str
    raw_path: str  # percent-encoded, as sent
    raw_query: str  # percent-encoded, as sent
    headers: dict[str, str]  # lower-case names
    body: bytes


@dataclass(frozen=True)
class Authorization:
    access_key: str
    signed_headers: list[str]
    signature: str


def parse_authorization(value: str) -> Authorization:
    m = _AUTH_RE.match(value)
    if not m:
        raise Unauthenticated(
            "the Authorization header is not 'SDK-HMAC-SHA256 Access=..., SignedHeaders=..., Signature=...'"
        )
    return Authorization(m.group(1), m.group(2).split(";"), m.group(3).lower())


def _encode(s: str) -> str:
    return quote(s, safe="~")


# Paths of only unreserved characters and '/' (every path Ember serves, with its hex IDs) come out of
# unquote-then-quote unchanged, so they skip it: it runs per request.
_PLAIN_PATH = re.compile(r"[A-Za-z0-9_.~/-]*")


def canonical_uri(raw_path: str) -> str:
    # signer.py _process_canonical_uri: unquote, split on '/', quote each part, ensure trailing '/'
    if _PLAIN_PATH.fullmatch(raw_path):
        path = raw_path
    else:
        path = "/".join(_encode(p) for p in unquote(raw_path).split("/"))
    return path if path.endswith("/") else path + "/"


def canonical_query(raw_query: str) -> str:
    if not raw_query:
        return ""
    params = sorted(parse_qsl(raw_query, keep_blank_values=True))
    return "&".join(f"{_encode(k)}={_encode(v)}" for k, v in params)


def _header_text(value: str) -> str:
    # The SDK signs the str value, then sends it UTF-8 encoded; servers read header bytes as latin-1.
    try:
        return value.encode("latin-1").decode("utf-8").strip()
    except UnicodeError:
        return value.strip()


def payload_hash(req: SignedRequest) -> str:
    if not req.body:
        return EMPTY_HASH
    declared = req.headers.get("x-sdk-content-sha256")
    actual = hashlib.sha256(req.body).hexdigest()
    if declared is not None and declared != actual:
        # The SDK declares UNSIGNED-PAYLOAD only for non-JSON bodies; every body here is JSON, and a
        # body outside the signature could be changed in transit, so it is refused.
        raise Unauthenticated("the request body is not covered by the signature (X-Sdk-Content-Sha256)")
    return actual


def string_to_sign(req: SignedRequest, auth: Authorization) -> str:
    canonical_headers = "".join(f"{h}:{_header_text(req.headers.get(h, ''))}\n" for h in auth.signed_headers)
    canonical_request = "\n".join(
        [
            req.method.upper(),
            canonical_uri(req.raw_path),
            canonical_query(req.raw_query),
            canonical_headers,
            ";".join(auth.signed_headers),
            payload_hash(req),
        ]
    )
    digest = hashlib.sha256(canonical_request.encode()).hexdigest()
    return f"{ALGORITHM}\n{req.headers['x-sdk-date']}\n{digest}"


_DATE_RE = re.compile(r"^(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})Z$")


def _parse_sdk_date(value: str) -> float:
    """``20240102T150405Z`` -> UNIX time. (``strptime`` is several times slower, and this runs per request.)"""
    m = _DATE_RE.match(value)
    if not m:
        raise ValueError(value)
    y, mo, d, h, mi, sec = (int(g) for g in m.groups())
    return datetime(y, mo, d, h, mi, sec, tzinfo=UTC).timestamp()


def check_date(sdk_date: str | None, now: float, skew: float) -> None:
    if not sdk_date:
        raise Unauthenticated("X-Sdk-Date is missing")
    try:
        t = _parse_sdk_date(sdk_date)
    except ValueError as exc:
        raise Unauthenticated("X-Sdk-Date must look like 20240102T150405Z") from exc
    if abs(now - t) > skew:
        raise Unauthenticated(f"X-Sdk-Date is more than {int(skew // 60)} minutes away from the server's clock")


def preflight(req: SignedRequest, now: float, skew: float) -> Authorization:
    """Parse the header and check everything that needs no secret: form, date, signed-header set."""
    auth = parse_authorization(req.headers.get("authorization", ""))
    signed = set(auth.signed_headers)
    if not {"host", "x-sdk-date"} <= signed:
        raise Unauthenticated("SignedHeaders must include host and x-sdk-date")
    if any(h not in req.headers for h in auth.signed_headers):
        raise Unauthenticated("a header named in SignedHeaders is missing from the request")
    check_date(req.headers.get("x-sdk-date"), now, skew)
    return auth


def verify(req: SignedRequest, auth: Authorization, secret_key: str) -> None:
    """Raise :class:`Unauthenticated` unless the signature is the SK's signature of this request."""
    # hmac.new, not the one-shot hmac.digest: that one releases the GIL, and handing the GIL to the DB
    # thread and waiting to get it back costs more than the HMAC of a few hundred bytes.
    expected = hmac.new(secret_key.encode(), string_to_sign(req, auth).encode(), hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected, auth.signature):
        raise Unauthenticated("the request signature does not match (check the SK, clock and what was signed)")
