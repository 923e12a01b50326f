"""Signed, expiring links to locally stored files (the local backend's ``download_url``).

A link is ``{base}/files/{location}/{bucket}/{object}?expires=T&project=P&signature=S`` with
``S = hex(HMAC-SHA256(server key, location \\n P \\n bucket \\n object \\n T))``: whoever holds the link may
download that one object of project ``P``'s bucket until ``T`` (UNIX seconds); nothing else under ``/files``
is reachable. A local bucket belongs to one project (``storage.local_store``), so the project is part of
what is signed: a link of one project can never name another's object.

Links made before buckets were kept per project have no ``project`` (``S`` over ``location \\n bucket \\n
object \\n T``, four fields where project links sign five, and no signed field holds a line break, so one
kind can never verify as the other); they still reach the objects they were made for, in the shared
layout those objects were written to (``LocalStore.migrate_layout``).
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

    def _signature(self, location: str, bucket: str, name: str, expires: int, project: str | None) -> str:
        fields = (location, bucket, name) if project is None else (location, project, bucket, name)
        msg = "\n".join((*fields, str(expires))).encode()
        return hmac.new(self._key, msg, hashlib.sha256).hexdigest()

    def query(self, location: str, bucket: str, name: str, expires: int, project: str | None = None) -> str:
        """The query string that grants ``name`` (of ``project``'s bucket) until ``expires`` (UNIX seconds).
        Without ``project``: a link of the shared layout of old (``LocalStore.migrate_layout``)."""
        signature = self._signature(location, bucket, name, expires, project)
        scope = "" if project is None else f"&project={quote(project, safe='')}"
        return f"expires={expires}{scope}&signature={signature}"

    def url(
        self,
        location: str,
        bucket: str,
        name: str,
        *,
        project: str | None = None,
        expires_at: int | None = None,
        ttl: int | None = None,
    ) -> str:
        """A link valid until ``expires_at`` (UNIX seconds; default: now + ``ttl``, default ``self.ttl``)."""
        if expires_at is None:
            expires_at = int(self._clock.now()) + (self.ttl if ttl is None else ttl)
        path = "/".join(quote(p, safe="") for p in (location, bucket)) + "/" + quote(name, safe="/")
        return f"{self.base_url}{FILES_PREFIX}/{path}?{self.query(location, bucket, name, expires_at, project)}"

    def verify(
        self, location: str, bucket: str, name: str, expires: str, signature: str, project: str | None = None
    ) -> int:
        """The link's expiry (UNIX seconds); :class:`DownloadLinkInvalid` unless it is genuine and unexpired."""
        try:
            when = int(expires)
        except ValueError:
            raise DownloadLinkInvalid("the download link is malformed") from None
        if any("\n" in field for field in (location, bucket, name, project or "")):
            # Never signed (no name holds a control character): one kind of link must not pass for the other.
            raise DownloadLinkInvalid("the download link is malformed")
        expected = self._signature(location, bucket, name, when, project)
        if not hmac.compare_digest(expected.encode(), signature.lower().encode("utf-8", "replace")):
            raise DownloadLinkInvalid("the download link's signature does not verify")
        if self._clock.now() > when:
            raise DownloadLinkInvalid("the download link has expired")
        return when
