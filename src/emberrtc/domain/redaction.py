"""URLs fit for logs, reports and error messages: their secrets masked.

A URL Ember is given can carry credentials in three places: its user-info (``https://user:pass@host``),
its query string (``?token=...``, pre-signed S3 links) and, for RTMP, the path after the application
(the stream key). :func:`mask_url` masks them in one URL; :func:`mask_urls` in every URL inside a text
(an exception's message, a line a library logs); :class:`MaskUrlsFilter` applies it to every log record,
third-party libraries' included, so a URL that reaches a log without passing through Ember's code is
masked too. Host, port and path stay: they are what one needs to tell where a request went.
"""

from __future__ import annotations

import logging
import re
from urllib.parse import urlsplit

__all__ = ["MASK", "MaskUrlsFilter", "mask_url", "mask_urls"]

MASK = "***"

# scheme://rest-of-url, up to whitespace, a quote or a closing bracket (how URLs end inside messages).
_URL = re.compile(r"\b[A-Za-z][A-Za-z0-9+.-]*://[^\s'\"<>()\[\]{}]+")


def mask_url(url: str, *, keep_segments: int | None = None) -> str:
    """``url`` with its user-info and query replaced by ``***`` and its fragment dropped:
    ``https://u:p@host:8443/cb?token=t#x`` -> ``https://***@host:8443/cb?***``.

    With ``keep_segments``, the path segments after the first ``keep_segments`` become one ``***``
    (RTMP: ``rtmp://host/app/streamkey`` -> ``rtmp://host/app/***``). Text that is not a URL with a
    scheme and a host is returned masked whole, since nothing tells which part of it is secret.
    """
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return MASK
    if not parts.scheme or not parts.netloc:
        return MASK
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = (f"{MASK}@" if "@" in parts.netloc else "") + host + (f":{port}" if port is not None else "")
    path = parts.path
    if keep_segments is not None:
        segments = [segment for segment in path.split("/") if segment]
        kept = segments[:keep_segments] + ([MASK] if len(segments) > keep_segments else [])
        path = "/" + "/".join(kept) if kept else ""
    query = f"?{MASK}" if parts.query else ""
    return f"{parts.scheme}://{netloc}{path}{query}"


def mask_urls(text: str) -> str:
    """``text`` with every ``scheme://...`` URL in it masked by :func:`mask_url`."""
    if "://" not in text:
        return text
    return _URL.sub(lambda match: _mask_in_text(match.group(0)), text)


def _mask_in_text(url: str) -> str:
    # Punctuation that ends a sentence is not part of the URL.
    trailing = len(url) - len(url.rstrip(".,;:!"))
    body, tail = (url[:-trailing], url[-trailing:]) if trailing else (url, "")
    return mask_url(body) + tail


class MaskUrlsFilter(logging.Filter):
    """Masks the URLs in a log record's message and traceback (install it on the handlers)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        masked = mask_urls(message)
        if masked != message:
            record.msg, record.args = masked, None
        if record.exc_info and not record.exc_text:
            record.exc_text = mask_urls(logging.Formatter().formatException(record.exc_info))
        elif record.exc_text:
            record.exc_text = mask_urls(record.exc_text)
        return True
