from __future__ import annotations

from collections.abc import Iterator

import pytest

from emberrtc.domain.clock import ManualClock
from emberrtc.storage.download_link import DownloadLinks
from tests.support.database import db, db_url
from tests.support.s3 import MotoS3

__all__ = ["db", "db_url"]


@pytest.fixture(scope="session")
def moto_s3() -> Iterator[MotoS3]:
    """One S3 server for tests that do not take it down (each uses its own buckets)."""
    server = MotoS3().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(1_800_000_000.0)


@pytest.fixture
def links(clock: ManualClock) -> DownloadLinks:
    return DownloadLinks(b"k" * 32, "http://127.0.0.1:8080", 3600, clock)
