"""Signed, expiring links to locally stored files (the local backend's ``download_url``).

A link is ``{base}/files/{location}/{bucket}/{object}?expires=T&signature=S`` with
``S = hex(HMAC-SHA256(server key, location \\n bucket \\n object \\n T))``: whoever holds the link may
download that one object until ``T`` (UNIX seconds); nothing else under ``/files`` is reachable.
An HLS playlist's link reaches its segments too: the playlist is served with a link of this kind for
each of its own segments, with the same ``T`` (``storage.hls_playlist``).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from pathlib import Path
from urllib.parse import quote

from emberrtc.domain.clock import Clock
from emberrtc.domain.secrets import private_key_file
from emberrtc.storage.errors import DownloadLinkInvalid

FILES_PREFIX = "/files"


def load_or_create_key(configured: str, data_dir: Path) -> bytes:
    """The configured key, else ``download.key`` in the data folder (random, created 0600 on first use)."""
    if configured:
        return configured.encode()
    return private_key_file(data_dir / "download.key", lambda: secrets.token_hex(32).encode())


class DownloadLinks:
    """Makes and checks download links. ``base_url`` may be set once the server knows its address."""

    def __init__(self, key: bytes, base_url: str, ttl: int, clock: Clock) -> None:
        if not key:
            raise ValueError("the download link key must not be empty")
        self._key = key
        self.base_url = base_url.rstrip("/")
        self.ttl = ttl
        self._clock = clock

    def _signature(self, location: str, bucket: str, name: str, expires: int) -> str:
        msg = f"{location}\n{bucket}\n{name}\n{expires}".encode()
        return hmac.new(self._key, msg, hashlib.sha256).hexdigest()

    def query(self, location: str, bucket: str, name: str, expires: int) -> str:
        """The query string that grants ``name`` until ``expires`` (UNIX seconds)."""
        return f"expires={expires}&signature={self._signature(location, bucket, name, expires)}"

    def url(
        self, location: str, bucket: str, name: str, *, expires_at: int | None = None, ttl: int | None = None
    ) -> str:
        """A link valid until ``expires_at`` (UNIX seconds; default: now + ``ttl``, default ``self.ttl``)."""
        if expires_at is None:
            expires_at = int(self._clock.now()) + (self.ttl if ttl is None else ttl)
        path = "/".join(quote(p, safe="") for p in (location, bucket)) + "/" + quote(name, safe="/")
        return f"{self.base_url}{FILES_PREFIX}/{path}?{self.query(location, bucket, name, expires_at)}"

    def verify(self, location: str, bucket: str, name: str, expires: str, signature: str) -> int:
        """The link's expiry (UNIX seconds); :class:`DownloadLinkInvalid` unless it is genuine and unexpired."""
        try:
            when = int(expires)
        except ValueError:
            raise DownloadLinkInvalid("the download link is malformed") from None
        expected = self._signature(location, bucket, name, when)
        if not hmac.compare_digest(expected.encode(), signature.lower().encode("utf-8", "replace")):
            raise DownloadLinkInvalid("the download link's signature does not verify")
        if self._clock.now() > when:
            raise DownloadLinkInvalid("the download link has expired")
        return when
