"""The object store interface every storage backend implements, and the naming rules they share.

Names follow S3/OBS (a bucket holds objects named by ``/``-separated keys). Ember is stricter than S3
about object names: no empty, ``.`` or ``..`` segment, no backslash, no control character, so a name
means the same file on every backend and can never step out of its bucket on the local one.
"""

from __future__ import annotations

import hashlib
import mimetypes
import re
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path

from emberrtc.storage.errors import BucketNotExist, InvalidObjectName, ObjectExists

# OBS/S3 bucket naming: 3-63 characters, lowercase letters, digits, '-' and '.', starting and ending
# with a letter or digit (the record-rule schema checks the same at the edge).
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9]$")
# S3: an object key is at most 1024 bytes of UTF-8.
MAX_OBJECT_NAME_BYTES = 1024
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")

# What players expect for the recording formats; mimetypes does not know all of them everywhere.
_CONTENT_TYPES = {
    ".m3u8": "application/vnd.apple.mpegurl",
    ".ts": "video/mp2t",
    ".mp4": "video/mp4",
    ".flv": "video/x-flv",
    ".json": "application/json",
}
DEFAULT_CONTENT_TYPE = "application/octet-stream"


@dataclass(frozen=True)
class ObjectInfo:
    """What storage says about a stored object. ``etag`` is the MD5 (hex) of single-part uploads."""

    size: int
    etag: str
    content_type: str


def validate_bucket(bucket: str) -> str:
    if not _BUCKET.fullmatch(bucket) or ".." in bucket:
        raise InvalidObjectName(f"bucket name {bucket!r} is not a valid OBS/S3 bucket name")
    return bucket


def validate_object_name(name: str) -> str:
    """Return ``name`` when it is a safe object name, else raise :class:`InvalidObjectName`."""
    if not name:
        raise InvalidObjectName("object name is empty")
    if len(name.encode("utf-8", "surrogatepass")) > MAX_OBJECT_NAME_BYTES:
        raise InvalidObjectName(f"object name is longer than {MAX_OBJECT_NAME_BYTES} bytes")
    if _CONTROL.search(name) or "\\" in name:
        raise InvalidObjectName(f"object name {name!r} holds a control character or a backslash")
    try:
        name.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InvalidObjectName("object name is not valid Unicode") from exc
    for part in name.split("/"):
        if part in ("", ".", ".."):
            raise InvalidObjectName(f"object name {name!r} has an empty, '.' or '..' segment")
    return name


def same_bytes(existing: ObjectInfo | None, size: int, md5: str) -> bool:
    """Is ``existing`` exactly these bytes? A multipart ETag (``md5-of-parts-N``) is checked by size only."""
    if existing is None or existing.size != size:
        return False
    return "-" in existing.etag or existing.etag.lower() == md5.lower()


def already_there(bucket: str, name: str, existing: ObjectInfo | None, size: int, md5: str) -> ObjectInfo:
    """After a create-exclusive write found ``name`` taken: the object when it is these bytes, else
    :class:`ObjectExists`."""
    if existing is not None and same_bytes(existing, size, md5):
        return existing
    raise ObjectExists(f"object {name!r} in bucket {bucket!r} already holds other bytes: not overwritten")


def guess_content_type(name: str) -> str:
    suffix = Path(name).suffix.lower()
    return _CONTENT_TYPES.get(suffix) or mimetypes.guess_type(name)[0] or DEFAULT_CONTENT_TYPE


def file_digest(path: Path) -> tuple[int, str]:
    """Size and MD5 (hex) of a file: what a single-part S3 upload's ETag must match. Blocking."""
    md5 = hashlib.md5(usedforsecurity=False)
    size = 0
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            md5.update(chunk)
            size += len(chunk)
    return size, md5.hexdigest()


class ObjectStore(ABC):
    """One storage backend (a ``location``): buckets of named objects.

    Methods that touch storage are coroutines and never block the event loop; ``download_url`` only
    computes a link.
    """

    #: The record-rule ``obs_addr.location`` this backend serves.
    location: str

    @abstractmethod
    async def bucket_exists(self, bucket: str) -> bool:
        """Does the bucket exist (and may Ember use it)?"""

    async def require_bucket(self, bucket: str) -> None:
        """Raise :class:`BucketNotExist` (RTC.00001014) unless the bucket can be written to."""
        validate_bucket(bucket)
        if not await self.bucket_exists(bucket):
            raise BucketNotExist(f"bucket {bucket!r} does not exist in location {self.location!r}")

    @property
    def namespace(self) -> str:
        """What, besides the location and bucket, tells this store's object names from others' (``for_project``'s
        project where projects' buckets are apart; empty where buckets are shared)."""
        return ""

    def for_project(self, project: str | None) -> ObjectStore:
        """This location as the project ``project`` sees it. A backend whose buckets are shared by the
        projects (S3: buckets belong to the storage account) returns itself; the local backend keeps each
        project's buckets apart (``LocalStore``)."""
        return self

    @abstractmethod
    async def put_file(self, bucket: str, name: str, path: Path, content_type: str | None = None) -> ObjectInfo:
        """Store the local file ``path`` as ``name``, never replacing another object: when ``name`` is taken
        by other bytes, raise :class:`ObjectExists`; when it holds these very bytes (a retried upload that
        had succeeded), return its description."""

    @abstractmethod
    async def head(self, bucket: str, name: str) -> ObjectInfo | None:
        """Size, ETag and content type of the object; None when there is no such object."""

    async def exists(self, bucket: str, name: str) -> bool:
        return await self.head(bucket, name) is not None

    @abstractmethod
    async def get(self, bucket: str, name: str) -> bytes:
        """The object's bytes (for small objects such as layout images); :class:`ObjectNotExist` if absent."""

    @abstractmethod
    async def download(self, bucket: str, name: str, dest: Path) -> ObjectInfo:
        """Copy the object into the local file ``dest``; :class:`ObjectNotExist` if absent."""

    @abstractmethod
    async def delete(self, bucket: str, name: str) -> None:
        """Remove the object; removing an absent object is not an error (as in S3)."""

    @abstractmethod
    def download_url(self, bucket: str, name: str) -> str:
        """A URL from which the application can download the object (the callback's ``download_url``)."""

    @abstractmethod
    def segment_urls(self, bucket: str, segments: list[tuple[str, str]], expires: int) -> list[str]:
        """Where a player fetches each of a playlist's segments (``(as the playlist writes it, object name)``)
        until ``expires`` (UNIX seconds), in the playlist as Ember serves it (``storage.hls_playlist``)."""
