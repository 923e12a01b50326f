"""An HLS recording's playlist, served with a signed link for each of its own segments.

A recording's ``download_url`` names its playlist (``{folder}/{stem}.m3u8``), and the playlist names its
segments relative to itself (``{stem}_00000.ts``, written by ``recording.writers.HlsWriter``). A player
resolves those names against the playlist's URL and drops its query string, so a link signed for the
playlist alone reaches nothing else. When a genuine playlist link is followed, the playlist is served
rewritten: each line naming one of the recording's own segments gets a link signed for that segment,
expiring when the playlist's link does. The grant is exactly the files the playlist lists:

- a segment must be a bare file name beside the playlist (no scheme, no ``/`` even encoded, no ``..``, no
  query or fragment) named exactly ``{stem}_{digits}.ts`` after the playlist's stem, as the writer names
  them: no segment of a sibling recording in the same folder can match, even one whose stem starts with
  this one's (``{stem}_x_00000.ts``);
- any other line is served as it was, unsigned (a player cannot follow it: the ``/files`` route asks
  for a signature over each object).

On the local backend a segment's link is relative (``{stem}_00000.ts?expires=T&signature=S``, the
``/files`` route's own kind); on an S3 location without a public base URL the playlist's
``download_url`` is an Ember link too, and each segment's is an S3 presigned URL valid until ``T``
(so segments go from S3 straight to the player; Ember serves only the playlist).

(The alternative, one signature over the recording's folder prefix, was not taken: record prefixes are
the user's, and several recordings may share a folder.)
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Callable
from urllib.parse import unquote

from emberrtc.storage.errors import InvalidObjectName, ObjectNotExist
from emberrtc.storage.object_store import ObjectStore, validate_object_name

log = logging.getLogger(__name__)

PLAYLIST_SUFFIX = ".m3u8"
PLAYLIST_CONTENT_TYPE = "application/vnd.apple.mpegurl"
SEGMENT_SUFFIX = ".ts"
#: A playlist bigger than this is not served signed (12 h of 2 s segments is ~1.5 MB).
MAX_PLAYLIST_BYTES = 16 * 1024 * 1024

# What may appear, as written, in a segment line: an RFC 3986 path segment without ':' (so never a
# scheme), '/', '?' or '#'. Percent-escapes are decoded and checked again below.
_BARE_NAME = re.compile(r"[A-Za-z0-9._~!$&'()*+,;=@%-]+")


class PlaylistTooLarge(InvalidObjectName):
    """A playlist too large to serve with signed segment links."""


def is_playlist(name: str) -> bool:
    return name.lower().endswith(PLAYLIST_SUFFIX)


def segment_object(playlist_name: str, uri: str) -> str | None:
    """The object a playlist line names, when it is one of the recording's own segments; else None."""
    return _OwnSegments(playlist_name).object(uri)


class _OwnSegments:
    """Tells the segments of one playlist (its folder and stem worked out once, for every line)."""

    def __init__(self, playlist_name: str) -> None:
        self.folder, sep, name = playlist_name.rpartition("/")
        self.folder += sep
        self.prefix = f"{name[: -len(PLAYLIST_SUFFIX)]}_"

    def object(self, uri: str) -> str | None:
        if not _BARE_NAME.fullmatch(uri):
            return None
        try:
            name = unquote(uri, errors="strict") if "%" in uri else uri
        except UnicodeDecodeError:
            return None
        # Exactly ``{stem}_{digits}.ts``: the stem is the playlist's own (so no '/' either), and the
        # digits-only index means no sibling's segment matches, even one whose stem starts with this one's.
        if not (name.startswith(self.prefix) and name.endswith(SEGMENT_SUFFIX)):
            return None
        index = name[len(self.prefix) : -len(SEGMENT_SUFFIX)]
        if not (index.isascii() and index.isdigit()):
            return None
        try:
            return validate_object_name(self.folder + name)
        except InvalidObjectName:
            return None


def sign_playlist(text: str, playlist_name: str, links: Callable[[list[tuple[str, str]]], list[str]]) -> str:
    """``text`` with each of the recording's own segment lines replaced by its link: ``links`` gets the
    ``(uri, object name)`` of every own segment, in order, and returns their links in the same order."""
    own = _OwnSegments(playlist_name)
    out = text.splitlines()
    signed: list[int] = []
    segments: list[tuple[str, str]] = []
    unsigned = 0
    for i, line in enumerate(out):
        uri = line.strip()
        if not uri or uri.startswith("#"):
            continue
        obj = own.object(uri)
        if obj is None:
            unsigned += 1
        else:
            signed.append(i)
            segments.append((uri, obj))
    made = links(segments) if segments else []
    if len(made) != len(segments):
        raise ValueError(f"{len(segments)} segment links asked for, {len(made)} made")
    for i, link in zip(signed, made, strict=True):
        out[i] = link
    if unsigned:
        log.warning(
            "playlist %r names %d line(s) that are not its own segments: served unsigned", playlist_name, unsigned
        )
    return "\n".join(out) + "\n"


async def read_playlist(store: ObjectStore, bucket: str, name: str) -> str:
    """A stored playlist's text (:class:`ObjectNotExist` if absent, :class:`PlaylistTooLarge` if too big)."""
    info = await store.head(bucket, name)
    if info is None:
        raise ObjectNotExist(f"object {name!r} does not exist in bucket {bucket!r}")
    if info.size > MAX_PLAYLIST_BYTES:
        raise PlaylistTooLarge(f"playlist {name!r} is larger than {MAX_PLAYLIST_BYTES} bytes")
    data = await store.get(bucket, name)
    if len(data) > MAX_PLAYLIST_BYTES:  # replaced meanwhile
        raise PlaylistTooLarge(f"playlist {name!r} is larger than {MAX_PLAYLIST_BYTES} bytes")
    return data.decode("utf-8", "replace")


async def signed_playlist(store: ObjectStore, bucket: str, name: str, expires: int) -> str:
    """The playlist ``name`` with a link for each of its own segments, valid until ``expires``."""
    text = await read_playlist(store, bucket, name)
    # Off the event loop: ~6-15 us a segment for local links (an hour of 2 s segments ~10 ms).
    return await asyncio.to_thread(
        sign_playlist, text, name, lambda segments: store.segment_urls(bucket, segments, expires)
    )
