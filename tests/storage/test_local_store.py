"""The local-folder backend: round trip, metadata, names that try to leave their bucket, buckets kept per
project, writes that never replace another's object, and the move of the shared buckets of old."""

from __future__ import annotations

import errno
import hashlib
import os
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

from emberrtc.storage.download_link import DownloadLinks
from emberrtc.storage.errors import BucketNotExist, DownloadLinkInvalid, InvalidObjectName, ObjectExists, ObjectNotExist
from emberrtc.storage.local_store import LocalStore, migrate_layout

PROJECT = "0123456789abcdef0123456789abcdef"
OTHER = "fedcba9876543210fedcba9876543210"


@pytest.fixture
def store(tmp_path: Path, links: DownloadLinks) -> LocalStore:
    return LocalStore("local", tmp_path / "storage", links, project=PROJECT)


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
    assert (tmp_path / "storage" / PROJECT / "records" / "app1/MP4/stream_1/stream_1.mp4").read_bytes() == data

    dest = tmp_path / "copy.mp4"
    assert (await store.download("records", "app1/MP4/stream_1/stream_1.mp4", dest)).size == len(data)
    assert dest.read_bytes() == data

    # The same bytes again (a retried upload) are the same object; other bytes never replace it, and
    # neither leaves temporary files behind.
    assert await store.put_file("records", "app1/MP4/stream_1/stream_1.mp4", _file(tmp_path, data, "again")) == info
    with pytest.raises(ObjectExists):
        await store.put_file("records", "app1/MP4/stream_1/stream_1.mp4", _file(tmp_path, b"new"), None)
    assert await store.get("records", "app1/MP4/stream_1/stream_1.mp4") == data
    assert await store.head("records", "app1/MP4/stream_1/stream_1.mp4") == info
    folder = tmp_path / "storage" / PROJECT / "records/app1/MP4/stream_1"
    assert sorted(p.name for p in folder.iterdir()) == ["stream_1.mp4"]

    await store.delete("records", "app1/MP4/stream_1/stream_1.mp4")
    assert await store.head("records", "app1/MP4/stream_1/stream_1.mp4") is None
    assert not (tmp_path / "storage" / PROJECT / "records/app1").exists()  # empty folders go with the object
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
    assert q["project"] == [PROJECT]
    links.verify("local", "records", "app 1/HLS/a#b?.m3u8", q["expires"][0], q["signature"][0], PROJECT)
    # The project is signed: the same link for another project, or for none, does not verify.
    for project in (OTHER, None):
        with pytest.raises(DownloadLinkInvalid):
            links.verify("local", "records", "app 1/HLS/a#b?.m3u8", q["expires"][0], q["signature"][0], project)


async def test_buckets(tmp_path: Path, links: DownloadLinks) -> None:
    src = _file(tmp_path, b"x")
    strict = LocalStore("local", tmp_path / "strict", links, create_buckets=False, project=PROJECT)
    assert not await strict.bucket_exists("records")
    with pytest.raises(BucketNotExist) as err:
        await strict.require_bucket("records")
    assert err.value.code == "RTC.00001014"
    with pytest.raises(BucketNotExist):
        await strict.put_file("records", "a.mp4", src)
    (tmp_path / "strict" / OTHER / "records").mkdir(parents=True)  # another project's bucket is not ours
    with pytest.raises(BucketNotExist):
        await strict.require_bucket("records")
    (tmp_path / "strict" / PROJECT / "records").mkdir(parents=True)
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
    (store.space / "records" / "link").symlink_to(outside)
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
    (store.space / "records" / "manual.mp4").write_bytes(b"hello")
    info = await store.head("records", "manual.mp4")
    assert info is not None
    assert (info.size, info.etag, info.content_type) == (5, hashlib.md5(b"hello").hexdigest(), "video/mp4")


async def test_projects_buckets_are_apart(store: LocalStore, tmp_path: Path) -> None:
    """Two projects with a bucket of the same name: neither sees, reads, replaces nor deletes the other's."""
    other = store.for_project(OTHER)
    legacy = store.for_project(None)
    await store.put_file("records", "a.mp4", _file(tmp_path, b"mine"))
    assert await other.head("records", "a.mp4") is None and await legacy.head("records", "a.mp4") is None
    with pytest.raises(ObjectNotExist):
        await other.get("records", "a.mp4")
    await other.put_file("records", "a.mp4", _file(tmp_path, b"theirs"))  # their own object, no conflict
    await other.delete("records", "a.mp4")
    assert await store.get("records", "a.mp4") == b"mine"
    assert (tmp_path / "storage" / PROJECT / "records" / "a.mp4").read_bytes() == b"mine"
    with pytest.raises(InvalidObjectName):
        store.for_project("../" + OTHER)
    with pytest.raises(InvalidObjectName):
        store.for_project(".legacy")


def _old_install(root: Path) -> None:
    """Buckets as Ember wrote them before they were kept per project (``root/{bucket}``, ``root/.meta``)."""
    (root / "records" / "app" / "MP4").mkdir(parents=True)
    (root / "records" / "app" / "MP4" / "a.mp4").write_bytes(b"old")
    (root / "other-bucket").mkdir()
    (root / "other-bucket" / "b.mp4").write_bytes(b"old too")
    (root / ".meta" / "records").mkdir(parents=True)
    (root / ".meta" / "records" / "x.json").write_text("{}")


async def test_the_shared_buckets_of_old_move_aside_once(tmp_path: Path, links: DownloadLinks) -> None:
    root = tmp_path / "storage"
    _old_install(root)
    (root / "README.txt").write_text("an operator's note")  # not a bucket: left alone
    assert migrate_layout(root) == 3
    assert sorted(p.name for p in root.iterdir()) == [".layout", ".legacy", "README.txt"]
    legacy = LocalStore("local", root, links)  # no project: the shared buckets of old
    assert await legacy.get("records", "app/MP4/a.mp4") == b"old"
    assert await legacy.get("other-bucket", "b.mp4") == b"old too"
    # Done once: a later bucket-named folder is a project's, and stays.
    (root / PROJECT / "records").mkdir(parents=True)
    assert migrate_layout(root) == 0
    assert (root / PROJECT / "records").is_dir()


async def test_an_interrupted_move_is_finished_by_the_next_start(
    tmp_path: Path, links: DownloadLinks, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "storage"
    _old_install(root)
    real_rename = os.rename
    calls = []

    def crash_after_one(src: Path, dst: Path) -> None:
        calls.append(src)
        if len(calls) == 2:
            raise OSError("power cut")
        real_rename(src, dst)

    monkeypatch.setattr(os, "rename", crash_after_one)
    with pytest.raises(OSError):
        migrate_layout(root)
    monkeypatch.setattr(os, "rename", real_rename)
    assert not (root / ".layout").exists()  # not marked done: the next start carries on
    assert migrate_layout(root) == 2
    legacy = LocalStore("local", root, links)
    assert await legacy.get("records", "app/MP4/a.mp4") == b"old"
    assert await legacy.get("other-bucket", "b.mp4") == b"old too"
    assert (root / ".legacy" / ".meta" / "records" / "x.json").exists()
    assert migrate_layout(root) == 0


def test_a_fresh_root_is_marked_at_once(tmp_path: Path) -> None:
    root = tmp_path / "new"
    assert migrate_layout(root) == 0
    assert (root / ".layout").is_file() and not (root / ".legacy").exists()


async def test_without_hard_links_a_name_is_still_taken_once(
    store: LocalStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A file system without hard links (some network and FUSE ones): the name is created exclusively."""

    def no_links(src: Path, dst: Path) -> None:
        raise PermissionError(errno.EPERM, "Operation not permitted")

    monkeypatch.setattr(os, "link", no_links)
    info = await store.put_file("records", "a.mp4", _file(tmp_path, b"first"))
    assert await store.put_file("records", "a.mp4", _file(tmp_path, b"first", "again")) == info
    with pytest.raises(ObjectExists):
        await store.put_file("records", "a.mp4", _file(tmp_path, b"second"))
    assert await store.get("records", "a.mp4") == b"first"
    assert sorted(p.name for p in (store.space / "records").iterdir()) == ["a.mp4"]
