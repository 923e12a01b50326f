"""The embedded default backend: a folder per bucket under one root, served back by Ember itself.

``root/{bucket}/{object name}`` holds the bytes; ``root/.meta/{bucket}/{sha256(name)}.json`` holds the
content type and MD5 (bucket names start with a letter or digit, so ``.meta`` is never a bucket).
Every path is checked, after resolving symlinks, to lie inside its bucket folder.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import secrets
import shutil
from pathlib import Path

from emberrtc.storage.download_link import DownloadLinks
from emberrtc.storage.errors import BucketNotExist, InvalidObjectName, ObjectNotExist
from emberrtc.storage.object_store import (
    ObjectInfo,
    ObjectStore,
    file_digest,
    guess_content_type,
    validate_bucket,
    validate_object_name,
)

_CHUNK = 1 << 20


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class LocalStore(ObjectStore):
    """Objects as files. With ``create_buckets`` (the default) a bucket is a folder made on first use;
    without it, buckets are folders an operator creates and a missing one is ``BucketNotExist``."""

    def __init__(self, location: str, root: Path, links: DownloadLinks, *, create_buckets: bool = True) -> None:
        self.location = location
        self.root = root
        self.links = links
        self.create_buckets = create_buckets

    # --- paths -----------------------------------------------------------------------------------

    def _bucket_dir(self, bucket: str) -> Path:
        return self.root / validate_bucket(bucket)

    def object_path(self, bucket: str, name: str) -> Path:
        """The file that holds ``name``; raises :class:`InvalidObjectName` for anything outside the bucket."""
        base = self._bucket_dir(bucket)
        path = base / validate_object_name(name)
        # Belt and braces: the name rules forbid '..', but a symlink planted inside the tree must not
        # lead out either.
        if not path.resolve().is_relative_to(base.resolve()):
            raise InvalidObjectName(f"object name {name!r} leads outside bucket {bucket!r}")
        return path

    def _meta_path(self, bucket: str, name: str) -> Path:
        digest = hashlib.sha256(name.encode()).hexdigest()
        return self.root / ".meta" / validate_bucket(bucket) / f"{digest}.json"

    # --- blocking helpers (run in a worker thread) ----------------------------------------------------

    def _put(self, bucket: str, name: str, src: Path, content_type: str) -> ObjectInfo:
        dest = self.object_path(bucket, name)
        base = self._bucket_dir(bucket)
        if not base.is_dir():
            raise BucketNotExist(f"bucket {bucket!r} does not exist in location {self.location!r}")
        try:
            dest.parent.mkdir(parents=True, exist_ok=True)
        except (FileExistsError, NotADirectoryError) as exc:
            raise InvalidObjectName(f"object name {name!r} runs through an existing object") from exc
        if dest.is_dir():
            raise InvalidObjectName(f"object name {name!r} is a prefix of other objects")
        tmp = dest.parent / f".{dest.name}.{secrets.token_hex(6)}.part"
        md5 = hashlib.md5(usedforsecurity=False)
        size = 0
        try:
            with src.open("rb") as fin, tmp.open("wb") as fout:
                while chunk := fin.read(_CHUNK):
                    md5.update(chunk)
                    size += len(chunk)
                    fout.write(chunk)
                fout.flush()
                os.fsync(fout.fileno())
            info = ObjectInfo(size=size, etag=md5.hexdigest(), content_type=content_type)
            # Bytes first, then the description: a crash in between leaves a stale ETag, which an
            # upload's verification rejects (and retries), never a stale file described as new.
            os.replace(tmp, dest)
            _fsync_dir(dest.parent)
            self._write_meta(bucket, name, info)
        finally:
            tmp.unlink(missing_ok=True)
        return info

    def _write_meta(self, bucket: str, name: str, info: ObjectInfo) -> None:
        meta = self._meta_path(bucket, name)
        meta.parent.mkdir(parents=True, exist_ok=True)
        tmp = meta.with_suffix(f".{secrets.token_hex(6)}.part")
        tmp.write_text(json.dumps({"name": name, "etag": info.etag, "content_type": info.content_type}))
        os.replace(tmp, meta)

    def _head(self, bucket: str, name: str) -> ObjectInfo | None:
        path = self.object_path(bucket, name)
        if not path.is_file():
            return None
        size = path.stat().st_size
        try:
            meta = json.loads(self._meta_path(bucket, name).read_text())
            etag, content_type = str(meta["etag"]), str(meta["content_type"])
        except (OSError, ValueError, KeyError):
            # A file put there by hand: describe it from its bytes.
            _, etag = file_digest(path)
            content_type = guess_content_type(name)
        return ObjectInfo(size=size, etag=etag, content_type=content_type)

    def _existing(self, bucket: str, name: str) -> Path:
        path = self.object_path(bucket, name)
        if not path.is_file():
            raise ObjectNotExist(f"object {name!r} does not exist in bucket {bucket!r}")
        return path

    def _delete(self, bucket: str, name: str) -> None:
        path = self.object_path(bucket, name)
        if path.is_file():
            path.unlink()
        self._meta_path(bucket, name).unlink(missing_ok=True)
        # Drop folders the object leaves empty, as S3 has no folders to leave behind.
        base = self._bucket_dir(bucket)
        parent = path.parent
        while parent != base and parent.is_relative_to(base):
            try:
                parent.rmdir()
            except OSError:
                break
            parent = parent.parent

    # --- ObjectStore -----------------------------------------------------------------------------

    async def bucket_exists(self, bucket: str) -> bool:
        return await asyncio.to_thread(self._bucket_dir(bucket).is_dir)

    async def require_bucket(self, bucket: str) -> None:
        if self.create_buckets:
            await asyncio.to_thread(self._bucket_dir(bucket).mkdir, parents=True, exist_ok=True)
        await super().require_bucket(bucket)

    async def put_file(self, bucket: str, name: str, path: Path, content_type: str | None = None) -> ObjectInfo:
        if self.create_buckets:
            await self.require_bucket(bucket)
        return await asyncio.to_thread(self._put, bucket, name, path, content_type or guess_content_type(name))

    async def head(self, bucket: str, name: str) -> ObjectInfo | None:
        return await asyncio.to_thread(self._head, bucket, name)

    async def get(self, bucket: str, name: str) -> bytes:
        return await asyncio.to_thread(lambda: self._existing(bucket, name).read_bytes())

    async def download(self, bucket: str, name: str, dest: Path) -> ObjectInfo:
        def copy() -> ObjectInfo:
            shutil.copyfile(self._existing(bucket, name), dest)
            info = self._head(bucket, name)
            assert info is not None
            return info

        return await asyncio.to_thread(copy)

    async def delete(self, bucket: str, name: str) -> None:
        await asyncio.to_thread(self._delete, bucket, name)

    def open_path(self, bucket: str, name: str) -> tuple[Path, str]:
        """The file behind an object and its content type, for serving it (blocking; small calls)."""
        info = self._head(bucket, name)
        if info is None:
            raise ObjectNotExist(f"object {name!r} does not exist in bucket {bucket!r}")
        return self.object_path(bucket, name), info.content_type

    def download_url(self, bucket: str, name: str) -> str:
        validate_bucket(bucket)
        validate_object_name(name)
        return self.links.url(self.location, bucket, name)

    def segment_urls(self, bucket: str, segments: list[tuple[str, str]], expires: int) -> list[str]:
        # Relative, as the playlist wrote them: resolved against the playlist's own link, wherever it is served.
        return [f"{written}?{self.links.query(self.location, bucket, name, expires)}" for written, name in segments]
