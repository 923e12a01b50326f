"""An S3-compatible backend (Huawei OBS speaks S3; so do MinIO, Ceph and AWS) through boto3.

boto3 blocks, so every call runs in a worker thread. Retries inside boto3 are kept to a minimum: the
uploader owns retrying (with backoff, durably), and a job start should learn quickly that a bucket is
missing or storage is unreachable.

Objects are never written over (``ObjectStore.put_file``): a write first looks whether the name is taken
(``HEAD``), then puts with ``If-None-Match: *`` (a conditional write: S3 since 2024, MinIO, Ceph), so
that storage itself refuses the name if someone else took it in between; a file large enough to go up in
parts carries the condition on the request that completes it. Where that cannot be used
(``conditional_writes: false``, or a service that answers it with ``NotImplemented``) the check comes
only from the ``HEAD``: another writer may take the name between the ``HEAD`` and the write
(milliseconds), and would then be overwritten. Ember's own jobs never are: they claim their names in the
database first (``storage.object_claims``).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import hmac
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import parse_qsl, quote, urlsplit

import boto3
from boto3.exceptions import S3UploadFailedError
from boto3.s3.transfer import TransferConfig
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from emberrtc.storage.download_link import DownloadLinks
from emberrtc.storage.errors import BucketNotExist, ObjectNotExist, StorageUnavailable
from emberrtc.storage.hls_playlist import is_playlist
from emberrtc.storage.object_store import (
    ObjectInfo,
    ObjectStore,
    already_there,
    file_digest,
    guess_content_type,
    validate_bucket,
    validate_object_name,
)

T = TypeVar("T")
log = logging.getLogger(__name__)

# SigV4 presigned URLs live at most 7 days.
MAX_PRESIGN_SECONDS = 7 * 24 * 3600
_NO_BUCKET = {"NoSuchBucket"}
_NO_OBJECT = {"NoSuchKey", "404", "NotFound"}
_TAKEN = {"PreconditionFailed", "412", "ConditionalRequestConflict", "409"}
_UNSUPPORTED = {"NotImplemented", "501"}


@dataclass(frozen=True)
class S3Settings:
    """How to reach one S3-compatible service (one ``location``)."""

    endpoint: str
    region: str
    access_key: str
    secret_key: str
    #: ``virtual`` (bucket.host, what OBS expects), ``path`` (host/bucket, MinIO and test servers) or ``auto``.
    addressing_style: str = "virtual"
    #: Lifetime of presigned download URLs (seconds).
    url_ttl: int = MAX_PRESIGN_SECONDS
    #: When the bucket is publicly readable: a URL template such as ``https://{bucket}.obs.example.com``
    #: that ``download_url`` uses instead of presigning.
    public_base_url: str = ""
    connect_timeout: float = 5.0
    read_timeout: float = 60.0
    #: Files above this size go up in parts (and their ETag is then not a plain MD5).
    multipart_threshold: int = 64 * 1024 * 1024
    #: Put with ``If-None-Match: *`` (see the module docstring); false for a service that rejects it.
    conditional_writes: bool = True


def _complete_only_if_absent(params: dict[str, Any], **_: Any) -> None:
    params.setdefault("IfNoneMatch", "*")


def _error_code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


class S3Store(ObjectStore):
    def __init__(self, location: str, settings: S3Settings, links: DownloadLinks | None = None) -> None:
        if settings.addressing_style not in ("virtual", "path", "auto"):
            raise ValueError(f"addressing_style must be virtual, path or auto, not {settings.addressing_style!r}")
        self.location = location
        self.settings = settings
        #: Ember's own links, for HLS playlists (served by Ember with presigned segment URLs).
        self.links = links
        config = Config(
            signature_version="s3v4",
            s3={"addressing_style": settings.addressing_style},
            retries={"max_attempts": 2, "mode": "standard"},
            connect_timeout=settings.connect_timeout,
            read_timeout=settings.read_timeout,
            # Newer botocore adds CRC32 trailers by default; S3-compatible services (OBS among them) do not
            # all accept them. Integrity comes from Content-MD5 and the ETag check instead.
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
        )
        self._client: Any = boto3.session.Session().client(
            "s3",
            endpoint_url=settings.endpoint or None,
            region_name=settings.region or None,
            aws_access_key_id=settings.access_key or None,
            aws_secret_access_key=settings.secret_key or None,
            config=config,
        )
        if settings.conditional_writes:
            # A multipart upload is made an object by CompleteMultipartUpload: that is where the condition goes
            # (boto3's transfer manager takes no If-None-Match of its own).
            self._client.meta.events.register(
                "before-parameter-build.s3.CompleteMultipartUpload", _complete_only_if_absent
            )
        self._transfer = TransferConfig(
            multipart_threshold=settings.multipart_threshold,
            multipart_chunksize=max(8 * 1024 * 1024, settings.multipart_threshold // 8),
            use_threads=False,
        )

    async def _call(self, what: str, bucket: str, fn: Callable[[], T]) -> T:
        """Run a blocking boto3 call in a thread and turn its failures into catalogue errors."""
        try:
            return await asyncio.to_thread(fn)
        except ClientError as exc:
            code = _error_code(exc)
            if code in _NO_BUCKET:
                raise BucketNotExist(f"bucket {bucket!r} does not exist in location {self.location!r}") from exc
            if code in _NO_OBJECT:
                raise ObjectNotExist(f"{what}: no such object in bucket {bucket!r}") from exc
            raise StorageUnavailable(f"{what} in location {self.location!r} failed: {code or exc}") from exc
        except BotoCoreError as exc:
            raise StorageUnavailable(f"{what} in location {self.location!r} failed: {exc}") from exc

    async def bucket_exists(self, bucket: str) -> bool:
        validate_bucket(bucket)
        try:
            await self._call("head bucket", bucket, lambda: self._client.head_bucket(Bucket=bucket))
        except (BucketNotExist, ObjectNotExist):  # HEAD has no body: a missing bucket is a bare 404
            return False
        return True

    async def put_file(self, bucket: str, name: str, path: Path, content_type: str | None = None) -> ObjectInfo:
        validate_bucket(bucket)
        validate_object_name(name)
        ctype = content_type or guess_content_type(name)
        size, md5_hex = await asyncio.to_thread(file_digest, path)
        existing = await self.head(bucket, name)
        if existing is not None:
            return already_there(bucket, name, existing, size, md5_hex)

        def upload() -> bool:
            """False when storage refused the write because the name was taken meanwhile."""
            if size >= self.settings.multipart_threshold:
                try:
                    self._client.upload_file(
                        str(path), bucket, name, ExtraArgs={"ContentType": ctype}, Config=self._transfer
                    )
                except S3UploadFailedError as exc:
                    # boto3 wraps the failed call's error (raised while handling it) in its own.
                    cause = exc.__context__
                    if isinstance(cause, ClientError):
                        if _error_code(cause) in _TAKEN:
                            return False
                        raise cause from exc
                    raise StorageUnavailable(f"upload in location {self.location!r} failed: {exc}") from exc
                return True
            # Content-MD5 makes storage refuse a body that was damaged on the way.
            md5_b64 = base64.b64encode(binascii.unhexlify(md5_hex)).decode()
            args = {"Bucket": bucket, "Key": name, "ContentType": ctype, "ContentMD5": md5_b64}
            if self.settings.conditional_writes:
                try:
                    with path.open("rb") as body:
                        self._client.put_object(Body=body, IfNoneMatch="*", **args)
                    return True
                except ClientError as exc:
                    if _error_code(exc) in _TAKEN:
                        return False
                    if _error_code(exc) not in _UNSUPPORTED:
                        raise
                    log.warning(
                        "location %r does not support conditional writes (If-None-Match); set"
                        " conditional_writes: false for it",
                        self.location,
                    )
            with path.open("rb") as body:
                self._client.put_object(Body=body, **args)
            return True

        if not await self._call("upload", bucket, upload):
            return already_there(bucket, name, await self.head(bucket, name), size, md5_hex)
        info = await self.head(bucket, name)
        if info is None:
            raise StorageUnavailable(f"upload of {name!r} to bucket {bucket!r} is not visible after it succeeded")
        return info

    async def head(self, bucket: str, name: str) -> ObjectInfo | None:
        validate_object_name(name)
        try:
            r = await self._call("head object", bucket, lambda: self._client.head_object(Bucket=bucket, Key=name))
        except ObjectNotExist:
            return None
        return ObjectInfo(
            size=int(r["ContentLength"]),
            etag=str(r.get("ETag", "")).strip('"'),
            content_type=str(r.get("ContentType") or guess_content_type(name)),
        )

    async def get(self, bucket: str, name: str) -> bytes:
        validate_object_name(name)

        def read() -> bytes:
            body = self._client.get_object(Bucket=bucket, Key=name)["Body"]
            try:
                return bytes(body.read())
            finally:
                body.close()

        return await self._call("download", bucket, read)

    async def download(self, bucket: str, name: str, dest: Path) -> ObjectInfo:
        validate_object_name(name)
        await self._call(
            "download", bucket, lambda: self._client.download_file(bucket, name, str(dest), Config=self._transfer)
        )
        info = await self.head(bucket, name)
        if info is None:
            raise ObjectNotExist(f"object {name!r} vanished from bucket {bucket!r}")
        return info

    async def delete(self, bucket: str, name: str) -> None:
        validate_object_name(name)
        await self._call("delete", bucket, lambda: self._client.delete_object(Bucket=bucket, Key=name))

    def download_url(self, bucket: str, name: str) -> str:
        validate_bucket(bucket)
        validate_object_name(name)
        if self.settings.public_base_url:
            base = self.settings.public_base_url.format(bucket=bucket).rstrip("/")
            return f"{base}/{quote(name, safe='/')}"
        ttl = min(self.settings.url_ttl, MAX_PRESIGN_SECONDS)
        if self.links is not None and is_playlist(name):
            # A presigned playlist names its segments relatively, and a player resolves those without the
            # playlist's query (no grant): Ember serves the playlist, with a presigned URL per segment.
            return self.links.url(self.location, bucket, name, ttl=ttl)
        return self.presigned_url(bucket, name, ttl)

    def presigned_url(self, bucket: str, name: str, expires_in: int) -> str:
        """A SigV4 presigned GET of one object, valid ``expires_in`` seconds (1 s to 7 days) from now."""
        url: str = self._client.generate_presigned_url(
            "get_object",
            Params={"Bucket": bucket, "Key": name},
            ExpiresIn=max(1, min(expires_in, MAX_PRESIGN_SECONDS)),
        )
        return url

    def segment_urls(self, bucket: str, segments: list[tuple[str, str]], expires: int) -> list[str]:
        if not segments:
            return []
        # Presigning counts from the wall clock (X-Amz-Date), so the time left is taken from it too.
        expires_in = expires - int(time.time())
        names = [name for _, name in segments]
        first = self.presigned_url(bucket, names[0], expires_in)
        # botocore takes ~0.2-0.9 ms a URL (an hour of 2 s segments: over a second); the same signature
        # for the other keys costs an HMAC each. Used only when it reproduces botocore's first URL exactly.
        signer = QuerySigner.like(first, names[0], self.settings.secret_key)
        if signer is None:
            return [first, *(self.presigned_url(bucket, name, expires_in) for name in names[1:])]
        return [first, *(signer.url(name) for name in names[1:])]


class QuerySigner:
    """SigV4 query-string signing of GETs of other keys of a bucket, with the very parameters (endpoint,
    addressing, credential scope, X-Amz-Date, X-Amz-Expires) of one URL botocore presigned.

    :meth:`like` checks itself first: it recomputes the given URL's signature and gives up (None) unless
    it is byte for byte botocore's, so any endpoint or setting it does not follow falls back to botocore.
    """

    _PARAMS = ("X-Amz-Algorithm", "X-Amz-Credential", "X-Amz-Date", "X-Amz-Expires", "X-Amz-SignedHeaders")

    def __init__(self, base: str, netloc: str, prefix: str, params: dict[str, str], key: bytes) -> None:
        self._base, self._netloc, self._prefix, self._key = base, netloc, prefix, key
        self._query = "&".join(f"{_aws_quote(k)}={_aws_quote(params[k])}" for k in self._PARAMS)
        self._date, self._scope = params["X-Amz-Date"], params["X-Amz-Credential"].split("/", 1)[1]

    @classmethod
    def like(cls, presigned: str, name: str, secret_key: str) -> QuerySigner | None:
        if not secret_key:
            return None  # credentials from the environment's chain: botocore keeps them
        parts = urlsplit(presigned)
        params = dict(parse_qsl(parts.query, keep_blank_values=True))
        quoted = quote(name, safe="/~")
        if (
            set(params) != {*cls._PARAMS, "X-Amz-Signature"}
            or params["X-Amz-Algorithm"] != "AWS4-HMAC-SHA256"
            or params["X-Amz-SignedHeaders"] != "host"
            or not parts.path.endswith("/" + quoted)
            or parts.fragment
        ):
            return None
        scope = params["X-Amz-Credential"].split("/")
        if len(scope) != 5 or scope[4] != "aws4_request":
            return None
        _, day, region, service, _ = scope
        key = f"AWS4{secret_key}".encode()
        for part in (day, region, service, "aws4_request"):
            key = hmac.new(key, part.encode(), hashlib.sha256).digest()
        signer = cls(f"{parts.scheme}://{parts.netloc}", parts.netloc, parts.path[: -len(quoted)], params, key)
        return signer if signer.url(name) == presigned else None

    def url(self, name: str) -> str:
        path = self._prefix + quote(name, safe="/~")
        canonical = f"GET\n{path}\n{self._query}\nhost:{self._netloc}\n\nhost\nUNSIGNED-PAYLOAD"
        digest = hashlib.sha256(canonical.encode()).hexdigest()
        signature = hmac.new(
            self._key, f"AWS4-HMAC-SHA256\n{self._date}\n{self._scope}\n{digest}".encode(), hashlib.sha256
        ).hexdigest()
        return f"{self._base}{path}?{self._query}&X-Amz-Signature={signature}"


def _aws_quote(value: str) -> str:
    return quote(value, safe="-_.~")
