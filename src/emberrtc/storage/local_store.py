"""The embedded default backend: a folder per project and bucket under one root, served back by Ember.

``root/{project_id}/{bucket}/{object name}`` holds the bytes; ``root/{project_id}/.meta/{bucket}/
{sha256(name)}.json`` the content type and MD5 (bucket names start with a letter or digit, so ``.meta`` is
never a bucket). Each project has its own buckets: two tenants may both name a bucket ``recordings``
and never see each other's objects. Every path is checked, after resolving symlinks, to lie inside its
bucket folder.

Before buckets were kept per project they were ``root/{bucket}``, shared by every tenant. At start-up
:func:`migrate_layout` moves such folders, as they are, to ``root/.legacy/`` (once: ``root/.layout``
records that it is done); the links handed out for them (links without a project,
``storage.download_link``) keep working, served from there. See docs/decisions.md.

Objects are written create-exclusive (a hard link of the finished temporary file): a name another job
wrote is never replaced (``ObjectExists``).
"""

from __future__ import annotations

import asyncio
import errno
import hashlib
import json
import logging
import os
import re
import secrets
import shutil
from pathlib import Path

from emberrtc.storage.download_link import DownloadLinks
from emberrtc.storage.errors import BucketNotExist, InvalidObjectName, ObjectNotExist
from emberrtc.storage.object_store import (
    ObjectInfo,
    ObjectStore,
    already_there,
    file_digest,
    guess_content_type,
    validate_bucket,
    validate_object_name,
)

log = logging.getLogger(__name__)

_CHUNK = 1 << 20
_NO_HARD_LINKS = {errno.EPERM, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EMLINK, errno.ENOSYS}
#: Where the shared buckets of old (``root/{bucket}``) are kept, and the marker that they were moved.
LEGACY_FOLDER = ".legacy"
LAYOUT_MARKER = ".layout"
_LAYOUT = "per-project 1\n"
# A project's folder: tenants' project ids are 32 hex digits; never a dot file (.legacy, .meta, .layout).
_PROJECT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_\-]{0,63}$")
_OLD_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9]$")


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_write(path: Path, text: str) -> None:
    tmp = path.with_name(f"{path.name}.{secrets.token_hex(6)}.part")
    with tmp.open("w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    _fsync_dir(path.parent)


def migrate_layout(root: Path) -> int:
    """Move the shared buckets of old (``root/{bucket}`` and ``root/.meta``) to ``root/.legacy/``, where
    links made for them still find them; returns how many folders moved. Blocking; run at start-up, before
    anything is stored.

    Idempotent and crash-safe: each folder moves by one ``rename`` (it is in one place or the other, never
    both, never half), and ``root/.layout`` is written, durably, only after the last one. Until then every
    bucket-named folder in ``root`` is an old bucket (no project folder is made before the marker), so a
    run interrupted anywhere is finished by the next. A fresh root gets the marker at once.
    """
    marker = root / LAYOUT_MARKER
    if marker.is_file():
        return 0
    root.mkdir(parents=True, exist_ok=True)
    legacy = root / LEGACY_FOLDER
    moved = 0
    for entry in sorted(root.iterdir()):
        if not (entry.name == ".meta" or _OLD_BUCKET.fullmatch(entry.name)) or not entry.is_dir():
            continue
        legacy.mkdir(exist_ok=True)
        target = legacy / entry.name
        if target.exists():
            raise RuntimeError(f"cannot move old bucket folder {entry} to {target}: the target exists")
        os.rename(entry, target)
        moved += 1
    if moved:
        _fsync_dir(legacy)
        _fsync_dir(root)
        log.warning("moved %d shared bucket folder(s) of %s to %s (their links still work)", moved, root, legacy)
    _fsync_write(marker, _LAYOUT)
    return moved


class LocalStore(ObjectStore):
    """Objects as files, one project's buckets (``project``), or the shared buckets of old (no project:
    served for the links made for them, see the module docstring). With ``create_buckets`` (the default) a
    bucket is a folder made on first use; without it, buckets are folders an operator creates
    (``root/{project_id}/{bucket}``) and a missing one is ``BucketNotExist``."""

    def __init__(
        self,
        location: str,
        root: Path,
        links: DownloadLinks,
        *,
        create_buckets: bool = True,
        project: str | None = None,
    ) -> None:
        if project is not None and not _PROJECT.fullmatch(project):
            raise InvalidObjectName(f"project id {project!r} cannot name a storage folder")
        self.location = location
        self.root = root
        self.links = links
        self.create_buckets = create_buckets
        self.project = project
        #: The folder holding this view's buckets.
        self.space = root / (project if project is not None else LEGACY_FOLDER)

    @property
    def namespace(self) -> str:
        return self.project or ""

    def for_project(self, project: str | None) -> LocalStore:
        if project == self.project:
            return self
        return LocalStore(self.location, self.root, self.links, create_buckets=self.create_buckets, project=project)

    def migrate_layout(self) -> int:
        """See :func:`migrate_layout`. Blocking."""
        return migrate_layout(self.root)

    # --- paths -----------------------------------------------------------------------------------

    def _bucket_dir(self, bucket: str) -> Path:
        return self.space / validate_bucket(bucket)

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
        return self.space / ".meta" / validate_bucket(bucket) / f"{digest}.json"

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
            self._place(tmp, dest, bucket, name, size, info.etag)
            _fsync_dir(dest.parent)
            # Bytes first, then the description: a crash in between leaves a file without one, which is
            # then described from its bytes (``_head``).
            self._write_meta(bucket, name, info)
        finally:
            tmp.unlink(missing_ok=True)
        return info

    def _place(self, tmp: Path, dest: Path, bucket: str, name: str, size: int, md5: str) -> None:
        """Give the finished ``tmp`` the name ``dest``, create-exclusive: a link fails when the name is taken,
        where a rename would replace. When it is taken, it is ours already (a retried upload whose first try
        succeeded) or another's, never replaced (``ObjectExists``)."""
        try:
            os.link(tmp, dest)
            return
        except FileExistsError:
            already_there(bucket, name, self._head(bucket, name), size, md5)
            return
        except OSError as exc:
            if exc.errno not in _NO_HARD_LINKS:
                raise
        # A file system without hard links: the name is taken create-exclusive first, then the bytes moved
        # in (a reader may see it empty for that moment).
        try:
            fd = os.open(dest, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
        except FileExistsError:
            already_there(bucket, name, self._head(bucket, name), size, md5)
            return
        os.close(fd)
        os.replace(tmp, dest)

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
        return self.links.url(self.location, bucket, name, project=self.project)

    def segment_urls(self, bucket: str, segments: list[tuple[str, str]], expires: int) -> list[str]:
        # Relative, as the playlist wrote them: resolved against the playlist's own link, wherever it is served.
        return [
            f"{written}?{self.links.query(self.location, bucket, name, expires, self.project)}"
            for written, name in segments
        ]
