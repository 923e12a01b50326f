"""Object names held by recording files: a name another job holds, or storage already has, gives way; the
answer for one file never changes; projects' local buckets are apart, S3 buckets are shared. Runs on SQLite
and PostgreSQL, against the local backend and a real S3 wire peer."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from emberrtc.domain.clock import ManualClock
from emberrtc.storage.download_link import DownloadLinks
from emberrtc.storage.local_store import LocalStore
from emberrtc.storage.object_claims import ObjectClaims, alternative, playlist_of, rename_segments
from emberrtc.storage.registry import StorageRegistry
from emberrtc.storage.s3_store import S3Store
from emberrtc.store.database import Database
from tests.support.s3 import MotoS3

P1, P2 = "1" * 32, "2" * 32
JOB1, JOB2, JOB3 = (
    "a1b2c3d4e5f6a7b8c9d0e1f2a3b4c5d6",
    "f0e1d2c3b4a5968778695a4b3c2d1e0f",
    "0123456789abcdef0123456789abcdef",
)


def test_alternative_names() -> None:
    assert alternative("app/MP4/s_1/s_1.mp4", JOB1, 1) == "app/MP4/s_1/s_1-a1b2c3d4.mp4"
    assert alternative("app/MP4/s_1/s_1.mp4", JOB1, 3) == "app/MP4/s_1/s_1-a1b2c3d4-3.mp4"
    assert alternative("s.m3u8", JOB1, 1) == "s-a1b2c3d4.m3u8"
    assert alternative("a.b/noext", JOB1, 1) == "a.b/noext-a1b2c3d4"
    assert alternative("dir/.hidden", JOB1, 1) == "dir/.hidden-a1b2c3d4"


def test_segments_and_their_playlist() -> None:
    assert playlist_of("app/HLS/s_1/s_1_00012.ts") == ("app/HLS/s_1/s_1.m3u8", "00012")
    assert playlist_of("s_00000.ts") == ("s.m3u8", "00000")
    assert playlist_of("app/MP4/s.mp4") is None and playlist_of("x_abc.ts") is None


def test_a_playlist_is_rewritten_for_its_new_name() -> None:
    text = "#EXTM3U\n#EXTINF:2.0,\na%20b_00000.ts\n#EXTINF:2.0,\na%20b_00001.ts\nother_00000.ts\n#EXT-X-ENDLIST\n"
    out = rename_segments(text, "f/a b.m3u8", "f/a b-a1b2c3d4.m3u8")
    assert out == (
        "#EXTM3U\n#EXTINF:2.0,\na%20b-a1b2c3d4_00000.ts\n#EXTINF:2.0,\na%20b-a1b2c3d4_00001.ts\n"
        "other_00000.ts\n#EXT-X-ENDLIST\n"
    )
    assert rename_segments(out, "f/a b.m3u8", "f/a b-a1b2c3d4.m3u8") == out  # a replay changes nothing more


@pytest.fixture
def registry(tmp_path: Path, links: DownloadLinks, moto_s3: MotoS3) -> StorageRegistry:
    stores = {"local": LocalStore("local", tmp_path / "storage", links), "obs": S3Store("obs", moto_s3.settings())}
    return StorageRegistry(stores, links)


async def test_a_taken_name_gives_way(db: Database, registry: StorageRegistry, clock: ManualClock) -> None:
    claims = ObjectClaims(db, registry, clock)
    name = "app/MP4/s/s.mp4"
    assert await claims.claim(JOB1, "local", P1, "records", name) == name
    assert await claims.claim(JOB2, "local", P1, "records", name) == alternative(name, JOB2, 1)
    # The same file asks again (a replay after a restart): the same answer.
    assert await claims.claim(JOB2, "local", P1, "records", name) == alternative(name, JOB2, 1)
    assert await claims.claim(JOB1, "local", P1, "records", name) == name
    # Another project's bucket of the same name is another bucket.
    assert await claims.claim(JOB3, "local", P2, "records", name) == name


async def test_what_storage_holds_gives_way(
    db: Database, registry: StorageRegistry, clock: ManualClock, moto_s3: MotoS3, tmp_path: Path
) -> None:
    claims = ObjectClaims(db, registry, clock)
    src = tmp_path / "x"
    src.write_bytes(b"there before")
    local = registry.get("local", P1)
    await local.put_file("records", "a.mp4", src)
    await local.put_file("records", "h_00000.ts", src)  # an HLS recording of that name, by its segment
    assert await claims.claim(JOB1, "local", P1, "records", "a.mp4") == alternative("a.mp4", JOB1, 1)
    assert await claims.claim(JOB1, "local", P1, "records", "h.m3u8") == alternative("h.m3u8", JOB1, 1)
    # S3: a bucket is one for every project, so another project's claim holds there too.
    bucket = moto_s3.new_bucket()
    assert await claims.claim(JOB2, "obs", P1, bucket, "b.mp4") == "b.mp4"
    assert await claims.claim(JOB3, "obs", P2, bucket, "b.mp4") == alternative("b.mp4", JOB3, 1)


async def test_segments_follow_their_playlist(db: Database, registry: StorageRegistry, clock: ManualClock) -> None:
    claims = ObjectClaims(db, registry, clock)
    await claims.claim(JOB1, "local", P1, "records", "f/s.m3u8")
    # The second job's first piece arrives before its start was handled: it claims for the playlist.
    assert await claims.part(JOB2, "local", P1, "records", "f/s_00003.ts") == "f/s-f0e1d2c3_00003.ts"
    assert await claims.claim(JOB2, "local", P1, "records", "f/s.m3u8") == "f/s-f0e1d2c3.m3u8"
    assert await claims.part(JOB1, "local", P1, "records", "f/s_00000.ts") == "f/s_00000.ts"


async def test_jobs_claiming_at_once_get_different_names(
    db: Database, registry: StorageRegistry, clock: ManualClock
) -> None:
    claims = ObjectClaims(db, registry, clock)
    jobs = [f"{i:02d}" + JOB1[2:] for i in range(6)]
    names = await asyncio.gather(*(claims.claim(job, "local", P1, "records", "same.mp4") for job in jobs))
    assert len(set(names)) == len(jobs) and "same.mp4" in names
