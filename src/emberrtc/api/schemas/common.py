"""Shared pieces of the request schemas: base model, identifiers, URLs, ``s3://`` URIs, combination errors.

Syntax is checked here (field types, ranges and enums from the spec's tables); meaning (the app exists,
the rule exists, the job's state) is checked in the domain services.
"""

from __future__ import annotations

import re
from typing import Annotated, Any
from urllib.parse import urlsplit

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints
from pydantic_core import PydanticCustomError


class SpecModel(BaseModel):
    """Base of every request body: unknown fields are ignored, as SparkRTC does; numbers given for
    string fields (``"room_id": 100`` in the spec's own example) are taken as their decimal text."""

    model_config = ConfigDict(extra="ignore", coerce_numbers_to_str=True)


def combination_error(message: str) -> PydanticCustomError:
    """A bad combination of otherwise valid fields: mapped to RTC.00001004."""
    return PydanticCustomError("invalid_combination", message)


def missing_error(message: str) -> PydanticCustomError:
    """A field that this combination makes mandatory: mapped to RTC.00001005."""
    return PydanticCustomError("missing", message)


# Room and user IDs end up in stream names and object names, so they are kept to a safe alphabet.
_ID_RE = re.compile(r"^[A-Za-z0-9_@.\-]{1,64}$")


def is_id(value: object) -> bool:
    """Is ``value`` an ID of the API's alphabet (apps, rooms, users; node IDs keep to it too)?"""
    return isinstance(value, str) and _ID_RE.fullmatch(value) is not None and set(value) != {"."}


def check_id(value: str) -> str:
    if not is_id(value):
        raise ValueError("must be 1-64 characters of letters, digits, '_', '-', '.', '@'")
    return value


def documented(pattern: str, max_length: int, min_length: int = 1) -> Any:
    """The rule a validator below keeps, stated in the OpenAPI schema (the validator gives the message)."""
    return Field(json_schema_extra={"pattern": pattern, "minLength": min_length, "maxLength": max_length})


_ID_DOC = documented(r"^[A-Za-z0-9_@.\-]{1,64}$", 64)
RoomId = Annotated[str, AfterValidator(check_id), _ID_DOC]
UserId = Annotated[str, AfterValidator(check_id), _ID_DOC]
RuleId = Annotated[str, StringConstraints(min_length=1, max_length=64)]


def _check_http_url(value: str) -> str:
    # spec 4.3.1 Table 4-3: must start with http:// or https://
    if any(c.isspace() or ord(c) < 0x20 for c in value) or len(value) > 2048:
        raise ValueError("must be an http:// or https:// URL without spaces, at most 2048 characters")
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("must be an http:// or https:// URL with a host")
    try:
        parts.port  # noqa: B018 - raises on a bad port
    except ValueError as exc:
        raise ValueError("has an invalid port") from exc
    return value


HttpUrl = Annotated[
    str, AfterValidator(_check_http_url), documented(r"^https?://[^\s/?#@:]+(:[0-9]{1,5})?([/?#]\S*)?$", 2048)
]


def _check_rtmp_url(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("rtmp", "rtmps") or not parts.hostname or any(c.isspace() for c in value):
        raise ValueError("must be an rtmp:// or rtmps:// URL with a host")
    return value


RtmpUrl = Annotated[
    str, AfterValidator(_check_rtmp_url), documented(r"^rtmps?://[^\s/?#@:]+(:[0-9]{1,5})?([/?#]\S*)?$", 2048)
]

# OBS/S3 bucket names: 3-63 characters, lowercase letters, digits, '-' and '.', starting and ending
# with a letter or digit.
BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9]$")


def check_object_path(value: str, what: str) -> str:
    """An object key (or key prefix) that stays inside its bucket: no '..' or '.' segment, no leading
    '/', no backslash or control characters."""
    if value.startswith("/") or "\\" in value or any(ord(c) < 0x20 or ord(c) == 0x7F for c in value):
        raise ValueError(f"{what} must be a relative object path without '\\' or control characters")
    if any(seg in (".", "..") for seg in value.split("/")):
        raise ValueError(f"{what} must not contain '.' or '..' path segments")
    if len(value.encode()) > 1024:
        raise ValueError(f"{what} must be at most 1024 bytes")
    return value


def _check_s3_uri(value: str) -> str:
    # spec 4.8.1 Table 4-175: images are given as s3://bucket/object
    if not value.startswith("s3://"):
        raise ValueError("must be an s3://bucket/object URI")
    bucket, sep, key = value[len("s3://") :].partition("/")
    if not BUCKET_RE.fullmatch(bucket) or not sep or not key or key.endswith("/"):
        raise ValueError("must be an s3://bucket/object URI naming a valid bucket and an object")
    check_object_path(key, "the object")
    return value


S3Uri = Annotated[
    str,
    AfterValidator(_check_s3_uri),
    documented(r"^s3://[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9]/[^/\\\s][^\\\s]*[^/\s]$", 1100),
]
