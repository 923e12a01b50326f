"""Storage failures, as errors of the one catalogue (``domain.errors``).

A caller's mistake (a location this server does not have, a bucket that does not exist, a bad object
name) is told apart from a service fault (storage unreachable), as STYLE.md asks.
"""

from __future__ import annotations

from emberrtc.domain.errors import BucketNotExist, InternalError, InvalidParameterValue, NoPermission, RouteNotFound

__all__ = [
    "BucketNotExist",
    "DownloadLinkInvalid",
    "InvalidObjectName",
    "ObjectExists",
    "ObjectNotExist",
    "StorageUnavailable",
    "UnknownStorageLocation",
]


class UnknownStorageLocation(InvalidParameterValue):
    """A record rule's ``obs_addr.location`` names no storage this server is configured with."""


class InvalidObjectName(InvalidParameterValue):
    """An object or bucket name that cannot be stored (empty, too long, or escaping its bucket)."""


class ObjectNotExist(RouteNotFound):
    """The object (or its download link's target) is not there."""


class DownloadLinkInvalid(NoPermission):
    """A download link whose signature does not verify, or that has expired."""


class StorageUnavailable(InternalError):
    """Storage could not be reached or answered with a fault: transient, retried by the uploader."""


class ObjectExists(InternalError):
    """A write found another object (other bytes) already stored under its name, and did not replace it:
    storage never overwrites what another job wrote (``ObjectStore.put_file``)."""
