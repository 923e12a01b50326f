"""The local-folder backend: round trip, metadata, and names that try to leave their bucket."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

from emberrtc.storage.download_link import DownloadLinks
from emberrtc.storage.errors import BucketNotExist, InvalidObjectName, ObjectNotExist
from emberrtc.storage.local_store import LocalStore


@pytest.fixture
def store(tmp_path: Path, links: DownloadLinks) -> LocalStore:
    return LocalStore("local", tmp_path / "storage", links)


def _file(tmp_path: Path, data: bytes, name: str = "src.bin") -> Path:
    p = tmp_path / name
    p.write_bytes(data)
    return p


async def test_round_trip(store: LocalStore, tmp_path: Path) -> None:
    data = os.urandom(300_000)
    src = _file(tmp_path, data)
    info = await store.put_file("records", "app1/MP4/stream_1/stream_1.mp4", src, "video/mp4")
    assert info.size == len(data)
    assert info.etag == hashlib.md5(data).hexdigest()

    head = await store.head("records", "app1/MP4/stream_1/stream_1.mp4")
    assert head == info
    assert head.content_type == "video/mp4"
    assert await store.exists("records", "app1/MP4/stream_1/stream_1.mp4")
    assert not await store.exists("records", "app1/MP4/stream_1/other.mp4")
    assert await store.get("records", "app1/MP4/stream_1/stream_1.mp4") == data
    assert (tmp_path / "storage" / "records" / "app1/MP4/stream_1/stream_1.mp4").read_bytes() == data

    dest = tmp_path / "copy.mp4"
    assert (await store.download("records", "app1/MP4/stream_1/stream_1.mp4", dest)).size == len(data)
    assert dest.read_bytes() == data

    # Replacing keeps one object with the new bytes and description, and leaves no temporary files.
    info2 = await store.put_file("records", "app1/MP4/stream_1/stream_1.mp4", _file(tmp_path, b"new"), None)
    assert info2.size == 3 and info2.content_type == "video/mp4"  # guessed from the name
    assert sorted(p.name for p in (tmp_path / "storage/records/app1/MP4/stream_1").iterdir()) == ["stream_1.mp4"]

    await store.delete("records", "app1/MP4/stream_1/stream_1.mp4")
    assert await store.head("records", "app1/MP4/stream_1/stream_1.mp4") is None
    assert not (tmp_path / "storage/records/app1").exists()  # empty folders go with the object
    await store.delete("records", "app1/MP4/stream_1/stream_1.mp4")  # deleting twice is fine, as in S3
    with pytest.raises(ObjectNotExist):
        await store.get("records", "app1/MP4/stream_1/stream_1.mp4")


async def test_content_types_of_recording_formats(store: LocalStore, tmp_path: Path) -> None:
    src = _file(tmp_path, b"x")
    for name, ctype in (("a.m3u8", "application/vnd.apple.mpegurl"), ("a.ts", "video/mp2t"), ("a.mp4", "video/mp4")):
        assert (await store.put_file("records", name, src)).content_type == ctype


async def test_download_url_is_a_signed_link(store: LocalStore, links: DownloadLinks) -> None:
    url = store.download_url("records", "app 1/HLS/a#b?.m3u8")
    parts = urlsplit(url)
    assert parts.path == "/files/local/records/app%201/HLS/a%23b%3F.m3u8"
    q = parse_qs(parts.query)
    links.verify("local", "records", "app 1/HLS/a#b?.m3u8", q["expires"][0], q["signature"][0])


async def test_buckets(tmp_path: Path, links: DownloadLinks) -> None:
    src = _file(tmp_path, b"x")
    strict = LocalStore("local", tmp_path / "strict", links, create_buckets=False)
    assert not await strict.bucket_exists("records")
    with pytest.raises(BucketNotExist) as err:
        await strict.require_bucket("records")
    assert err.value.code == "RTC.00001014"
    with pytest.raises(BucketNotExist):
        await strict.put_file("records", "a.mp4", src)
    (tmp_path / "strict" / "records").mkdir(parents=True)
    await strict.require_bucket("records")
    assert (await strict.put_file("records", "a.mp4", src)).size == 1

    lenient = LocalStore("local", tmp_path / "lenient", links)
    await lenient.require_bucket("records")
    assert await lenient.bucket_exists("records")


ESCAPES = [
    "../outside.mp4",
    "a/../../outside.mp4",
    "a/../b.mp4",
    "/etc/passwd",
    "a//b.mp4",
    "a/./b.mp4",
    ".",
    "..",
    "",
    "a\\..\\..\\b",
    "a\x00b",
    "line\nbreak",
    "a/" * 600,
    "x" * 1025,
]


@pytest.mark.parametrize("name", ESCAPES)
async def test_names_that_would_escape_are_refused(store: LocalStore, tmp_path: Path, name: str) -> None:
    src = _file(tmp_path, b"secret")
    with pytest.raises(InvalidObjectName) as err:
        await store.put_file("records", name, src)
    assert err.value.code == "RTC.00001003"
    for op in (store.head, store.get, store.delete):
        with pytest.raises(InvalidObjectName):
            await op("records", name)
    with pytest.raises(InvalidObjectName):
        store.download_url("records", name)
    assert not (tmp_path / "outside.mp4").exists()


@pytest.mark.parametrize("bucket", ["..", "../x", "a/b", "A-Upper", "ab", ".hidden", "x" * 64, "a..b"])
async def test_bad_buckets_are_refused(store: LocalStore, tmp_path: Path, bucket: str) -> None:
    with pytest.raises(InvalidObjectName):
        await store.put_file(bucket, "a.mp4", _file(tmp_path, b"x"))
    with pytest.raises(InvalidObjectName):
        await store.bucket_exists(bucket)


async def test_symlink_inside_a_bucket_does_not_lead_out(store: LocalStore, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text("secret")
    await store.require_bucket("records")
    (tmp_path / "storage" / "records" / "link").symlink_to(outside)
    with pytest.raises(InvalidObjectName):
        await store.get("records", "link/secret.txt")
    with pytest.raises(InvalidObjectName):
        await store.put_file("records", "link/planted.txt", _file(tmp_path, b"x"))
    assert not (outside / "planted.txt").exists()


async def test_object_and_prefix_conflict_is_a_clear_error(store: LocalStore, tmp_path: Path) -> None:
    src = _file(tmp_path, b"x")
    await store.put_file("records", "a/b.mp4", src)
    with pytest.raises(InvalidObjectName):
        await store.put_file("records", "a", src)  # a folder on disk: cannot also be a file
    await store.put_file("records", "c", src)
    with pytest.raises(InvalidObjectName):
        await store.put_file("records", "c/d.mp4", src)
    assert await store.get("records", "c") == b"x"


async def test_a_file_put_there_by_hand_is_described_from_its_bytes(store: LocalStore) -> None:
    await store.require_bucket("records")
    (store.root / "records" / "manual.mp4").write_bytes(b"hello")
    info = await store.head("records", "manual.mp4")
    assert info is not None
    assert (info.size, info.etag, info.content_type) == (5, hashlib.md5(b"hello").hexdigest(), "video/mp4")
