"""Which backend serves which record-rule ``obs_addr.location``, chosen once from configuration.

Without configuration Ember has one location, ``local`` (a :class:`LocalStore` under
``data_dir/storage``, a folder per project and bucket). ``Settings.storage_config`` (a JSON file) and
``Settings.storage_locations`` (inline JSON) add or replace locations; see :class:`LocationConfig` for
their keys.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from emberrtc.config import Settings, absolute_path
from emberrtc.domain.clock import Clock
from emberrtc.storage.download_link import DownloadLinks, load_or_create_key
from emberrtc.storage.errors import InvalidObjectName, UnknownStorageLocation
from emberrtc.storage.local_store import LocalStore
from emberrtc.storage.object_store import ObjectStore, validate_bucket, validate_object_name
from emberrtc.storage.s3_store import MAX_PRESIGN_SECONDS, S3Settings, S3Store

DEFAULT_LOCATION = "local"


@dataclass(frozen=True)
class LocationConfig:
    """One location's configuration, as written in the storage JSON."""

    #: ``local`` or ``s3``.
    type: str
    # --- local ---
    #: Folder holding the buckets; default ``data_dir/storage`` (location ``local``) or
    #: ``data_dir/storage-{location}``.
    root: str = ""
    #: Make a bucket's folder on first use (True), or treat a missing folder as a missing bucket (False).
    create_buckets: bool = True
    # --- s3 ---
    endpoint: str = ""
    region: str = ""
    access_key: str = ""
    secret_key: str = ""
    addressing_style: str = "virtual"
    public_base_url: str = ""
    #: Presigned URL lifetime (seconds); default ``Settings.download_url_ttl`` (at most 7 days).
    url_ttl: int = 0
    #: Write objects with ``If-None-Match: *`` so that storage refuses a taken name (``s3_store``); set
    #: false for a service that rejects the header (Ember then checks with a HEAD before writing).
    conditional_writes: bool = True

    @classmethod
    def parse(cls, location: str, raw: Any) -> LocationConfig:
        if not isinstance(raw, dict):
            raise ValueError(f"storage location {location!r}: expected a JSON object")
        known = {f.name for f in fields(cls)}
        unknown = set(raw) - known
        if unknown:
            raise ValueError(f"storage location {location!r}: unknown keys {sorted(unknown)}")
        cfg = cls(**raw)
        if cfg.type not in ("local", "s3"):
            raise ValueError(f"storage location {location!r}: type must be 'local' or 's3', not {cfg.type!r}")
        if cfg.type == "s3" and not cfg.endpoint and not cfg.region:
            raise ValueError(f"storage location {location!r}: an s3 location needs an endpoint or a region")
        return cfg


def load_locations(settings: Settings) -> dict[str, LocationConfig]:
    """``local`` by default, then the file's locations, then the inline ones (each replacing by name)."""
    raw: dict[str, Any] = {DEFAULT_LOCATION: {"type": "local"}}
    for source, text in (
        (settings.storage_config, Path(settings.storage_config).read_text() if settings.storage_config else ""),
        ("storage_locations", settings.storage_locations),
    ):
        if not text.strip():
            continue
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise ValueError(f"storage configuration {source}: not valid JSON ({exc})") from exc
        if isinstance(data, dict) and set(data) == {"locations"}:
            data = data["locations"]
        if not isinstance(data, dict):
            raise ValueError(f"storage configuration {source}: expected an object of locations")
        raw.update(data)
    return {name: LocationConfig.parse(name, value) for name, value in raw.items()}


@dataclass(frozen=True)
class ObjectRef:
    """A stored object: which backend, bucket and name."""

    store: ObjectStore
    bucket: str
    name: str


def parse_s3_uri(uri: str) -> tuple[str, str]:
    """``s3://bucket/object`` (mix-job images, spec 4.8.1) -> (bucket, object)."""
    prefix = "s3://"
    if not uri.startswith(prefix):
        raise InvalidObjectName(f"{uri!r} is not of the form s3://bucket/object")
    bucket, sep, name = uri[len(prefix) :].partition("/")
    if not sep:
        raise InvalidObjectName(f"{uri!r} names no object (s3://bucket/object)")
    return validate_bucket(bucket), validate_object_name(name)


class StorageRegistry:
    """The configured backends by location."""

    def __init__(self, stores: dict[str, ObjectStore], links: DownloadLinks | None = None) -> None:
        self._stores = dict(stores)
        #: The signer of local download links (the ``/files`` route verifies with it).
        self.links = links

    @classmethod
    def from_settings(cls, settings: Settings, clock: Clock) -> StorageRegistry:
        links = DownloadLinks(
            load_or_create_key(settings.download_url_key, settings.data_dir),
            settings.public_url or f"http://{settings.host}:{settings.port}",
            settings.download_url_ttl,
            clock,
        )
        stores: dict[str, ObjectStore] = {}
        for name, cfg in load_locations(settings).items():
            if cfg.type == "local":
                default_root = "storage" if name == DEFAULT_LOCATION else f"storage-{name}"
                root = absolute_path(cfg.root) if cfg.root else settings.data_dir / default_root
                stores[name] = LocalStore(name, root, links, create_buckets=cfg.create_buckets)
            else:
                stores[name] = S3Store(
                    name,
                    S3Settings(
                        endpoint=cfg.endpoint,
                        region=cfg.region,
                        access_key=cfg.access_key,
                        secret_key=cfg.secret_key,
                        addressing_style=cfg.addressing_style,
                        public_base_url=cfg.public_base_url,
                        url_ttl=min(cfg.url_ttl or settings.download_url_ttl, MAX_PRESIGN_SECONDS),
                        conditional_writes=cfg.conditional_writes,
                    ),
                    links,
                )
        return cls(stores, links)

    @property
    def locations(self) -> list[str]:
        return sorted(self._stores)

    def migrate_layouts(self) -> int:
        """At start-up: the local locations' shared buckets of old moved aside (``local_store.migrate_layout``).
        Blocking; returns how many folders moved."""
        return sum(store.migrate_layout() for store in self._stores.values() if isinstance(store, LocalStore))

    def get(self, location: str, project: str | None = None) -> ObjectStore:
        """The backend for ``location`` as ``project`` sees it (``ObjectStore.for_project``; no project: a local
        location's shared buckets of old), or :class:`UnknownStorageLocation` (RTC.00001003)."""
        store = self._stores.get(location)
        if store is None:
            known = ", ".join(self.locations) or "none"
            raise UnknownStorageLocation(f"storage location {location!r} is not configured on this server ({known})")
        return store.for_project(project)

    def find(self, location: str, project: str | None = None) -> ObjectStore | None:
        """The backend for ``location`` as ``project`` sees it, else None."""
        store = self._stores.get(location)
        return None if store is None else store.for_project(project)

    def local(self, location: str, project: str | None = None) -> LocalStore | None:
        """The local backend for ``location`` as ``project`` sees it (what the ``/files`` route serves), else
        None."""
        store = self._stores.get(location)
        return store.for_project(project) if isinstance(store, LocalStore) else None

    async def check_target(self, location: str, bucket: str, project: str | None = None) -> ObjectStore:
        """At job start: the location must be configured and the bucket exist (RTC.00001003 / RTC.00001014)."""
        store = self.get(location, project)
        await store.require_bucket(bucket)
        return store

    def resolve_uri(self, uri: str, location: str = DEFAULT_LOCATION, project: str | None = None) -> ObjectRef:
        """An ``s3://bucket/object`` image URI, looked up in ``location``'s backend (the job's rule's), among
        ``project``'s buckets."""
        bucket, name = parse_s3_uri(uri)
        return ObjectRef(self.get(location, project), bucket, name)
