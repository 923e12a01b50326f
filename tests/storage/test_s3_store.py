"""The S3-compatible backend against a real S3 wire peer on loopback (moto's threaded server)."""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from emberrtc.storage.errors import BucketNotExist, InvalidObjectName, ObjectExists, ObjectNotExist, StorageUnavailable
from emberrtc.storage.s3_store import QuerySigner, S3Store
from tests.support.s3 import MotoS3


@pytest.fixture
def store(moto_s3: MotoS3) -> S3Store:
    return S3Store("cn-north-4", moto_s3.settings())


async def test_round_trip(store: S3Store, moto_s3: MotoS3, tmp_path: Path) -> None:
    bucket = moto_s3.new_bucket()
    await store.require_bucket(bucket)
    data = os.urandom(200_000)
    src = tmp_path / "f.mp4"
    src.write_bytes(data)
    name = "app1/MP4/stream_1/stream_1.mp4"

    info = await store.put_file(bucket, name, src)
    assert (info.size, info.etag, info.content_type) == (len(data), hashlib.md5(data).hexdigest(), "video/mp4")
    assert await store.head(bucket, name) == info
    assert await store.exists(bucket, name)
    assert not await store.exists(bucket, "nothing/here.mp4")
    assert await store.get(bucket, name) == data
    dest = tmp_path / "back.mp4"
    await store.download(bucket, name, dest)
    assert dest.read_bytes() == data
    # What storage holds, seen by another S3 client.
    assert moto_s3.client().get_object(Bucket=bucket, Key=name)["Body"].read() == data

    # The presigned download_url works for anyone holding it.
    async with httpx.AsyncClient(trust_env=False) as http:
        r = await http.get(store.download_url(bucket, name))
    assert r.status_code == 200 and r.content == data

    await store.delete(bucket, name)
    assert await store.head(bucket, name) is None
    with pytest.raises(ObjectNotExist):
        await store.get(bucket, name)


async def test_public_base_url(moto_s3: MotoS3) -> None:
    store = S3Store("cn-north-4", moto_s3.settings(public_base_url="https://{bucket}.obs.example.com"))
    assert store.download_url("records", "a b/c.mp4") == "https://records.obs.example.com/a%20b/c.mp4"


async def test_multipart_upload(moto_s3: MotoS3, tmp_path: Path) -> None:
    store = S3Store("cn-north-4", moto_s3.settings(multipart_threshold=6 * 1024 * 1024))
    bucket = moto_s3.new_bucket()
    data = os.urandom(9 * 1024 * 1024)
    src = tmp_path / "big.ts"
    src.write_bytes(data)
    info = await store.put_file(bucket, "big.ts", src)
    assert info.size == len(data) and "-" in info.etag  # parts: md5-of-md5s-N
    assert await store.get(bucket, "big.ts") == data


async def test_missing_bucket_is_bucket_not_exist(store: S3Store, tmp_path: Path) -> None:
    src = tmp_path / "f.mp4"
    src.write_bytes(b"x")
    assert not await store.bucket_exists("no-such-bucket")
    with pytest.raises(BucketNotExist) as err:
        await store.require_bucket("no-such-bucket")
    assert (err.value.code, err.value.status) == ("RTC.00001014", 404)
    with pytest.raises(BucketNotExist):
        await store.put_file("no-such-bucket", "a.mp4", src)


async def test_bad_names_never_reach_storage(store: S3Store, moto_s3: MotoS3, tmp_path: Path) -> None:
    src = tmp_path / "f.mp4"
    src.write_bytes(b"x")
    bucket = moto_s3.new_bucket()
    for name in ("../x", "a//b", "", "/abs"):
        with pytest.raises(InvalidObjectName):
            await store.put_file(bucket, name, src)
    assert moto_s3.client().list_objects_v2(Bucket=bucket).get("KeyCount") == 0


async def test_storage_down_is_unavailable(tmp_path: Path) -> None:
    s3 = MotoS3()  # never started: connections are refused
    store = S3Store("cn-north-4", s3.settings())
    src = tmp_path / "f.mp4"
    src.write_bytes(b"x")
    with pytest.raises(StorageUnavailable) as err:
        await store.put_file("records", "a.mp4", src)
    assert err.value.status == 500
    with pytest.raises(StorageUnavailable):
        await store.bucket_exists("records")


SEGMENT_NAMES = [f"app/HLS/a b#c~d+é/st_{i:05d}.ts" for i in range(40)]


def _same_second(make: Callable[[], list[str]], reference: Callable[[], list[str]]) -> tuple[list[str], list[str]]:
    """Both lists of presigned URLs, made within one X-Amz-Date second (tried again across a boundary)."""
    for _ in range(5):
        got, want = make(), reference()
        if {parse_qs(urlsplit(u).query)["X-Amz-Date"][0] for u in got + want} == {
            parse_qs(urlsplit(want[0]).query)["X-Amz-Date"][0]
        }:
            return got, want
    raise AssertionError("no two presignings within one second in five tries")


@pytest.mark.parametrize(
    ("endpoint", "style"),
    [("moto", "path"), ("https://obs.cn-north-4.example.com", "virtual"), ("https://s3.example.com:8443", "path")],
)
def test_segment_urls_are_exactly_botocores_presigned_urls(moto_s3: MotoS3, endpoint: str, style: str) -> None:
    settings = moto_s3.settings(addressing_style=style)
    if endpoint != "moto":
        settings = replace(settings, endpoint=endpoint)
    store = S3Store("cn-north-4", settings)
    expires = int(time.time()) + 600

    def ours() -> list[str]:
        return store.segment_urls("bkt-1", [("x", n) for n in SEGMENT_NAMES], expires)

    def botocores() -> list[str]:
        return [store.presigned_url("bkt-1", n, expires - int(time.time())) for n in SEGMENT_NAMES]

    got, want = _same_second(ours, botocores)
    assert got == want
    # The HMAC signer made them (it reproduced botocore's first URL), not botocore key by key.
    assert QuerySigner.like(want[0], SEGMENT_NAMES[0], settings.secret_key) is not None
    assert QuerySigner.like(want[0], SEGMENT_NAMES[0], "another secret") is None
    assert QuerySigner.like(want[0], SEGMENT_NAMES[1], settings.secret_key) is None


async def test_segment_urls_fetch_the_segments(store: S3Store, moto_s3: MotoS3, tmp_path: Path) -> None:
    bucket = moto_s3.new_bucket()
    await store.require_bucket(bucket)
    for i, name in enumerate(SEGMENT_NAMES[:3]):
        src = tmp_path / f"s{i}"
        src.write_bytes(b"segment %d" % i)
        await store.put_file(bucket, name, src)
    urls = store.segment_urls(bucket, [("x", n) for n in SEGMENT_NAMES[:3]], int(time.time()) + 60)
    async with httpx.AsyncClient(trust_env=False) as http:
        for i, url in enumerate(urls):
            r = await http.get(url)
            assert r.status_code == 200 and r.content == b"segment %d" % i


async def test_an_object_is_never_written_over(store: S3Store, moto_s3: MotoS3, tmp_path: Path) -> None:
    bucket = moto_s3.new_bucket()
    first, second = tmp_path / "first.mp4", tmp_path / "second.mp4"
    first.write_bytes(b"first job's file")
    second.write_bytes(b"second job's file")
    info = await store.put_file(bucket, "a.mp4", first)
    # The same bytes again (a retried upload that had gone through) are that object.
    assert await store.put_file(bucket, "a.mp4", first) == info
    with pytest.raises(ObjectExists):
        await store.put_file(bucket, "a.mp4", second)
    assert moto_s3.client().get_object(Bucket=bucket, Key="a.mp4")["Body"].read() == b"first job's file"


@pytest.mark.parametrize(("conditional", "multipart"), [(True, False), (True, True), (False, False)])
async def test_a_name_taken_between_the_check_and_the_write(
    moto_s3: MotoS3, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, conditional: bool, multipart: bool
) -> None:
    """Someone else writes the name after the HEAD found it free: a conditional write (If-None-Match: *,
    for a multipart upload on its completion) leaves their object; without one (``conditional_writes:
    false``) it is overwritten (the documented window)."""
    threshold = 5 * 1024 * 1024
    store = S3Store("cn-north-4", moto_s3.settings(conditional_writes=conditional, multipart_threshold=threshold))
    bucket = moto_s3.new_bucket()
    src = tmp_path / "ours.mp4"
    src.write_bytes(os.urandom(threshold + 1000) if multipart else b"ours")
    real_head = store.head
    looked = []

    async def head_then_theirs(b: str, name: str):  # type: ignore[no-untyped-def]
        found = await real_head(b, name)
        if not looked:  # the check before the write: then another writer takes the name
            looked.append(name)
            moto_s3.client().put_object(Bucket=b, Key=name, Body=b"theirs")
        return found

    monkeypatch.setattr(store, "head", head_then_theirs)
    if conditional:
        with pytest.raises(ObjectExists):
            await store.put_file(bucket, "race.mp4", src)
        assert looked == ["race.mp4"]
        assert moto_s3.client().get_object(Bucket=bucket, Key="race.mp4")["Body"].read() == b"theirs"
    else:
        await store.put_file(bucket, "race.mp4", src)
        assert moto_s3.client().get_object(Bucket=bucket, Key="race.mp4")["Body"].read() == src.read_bytes()


async def test_a_large_file_goes_up_in_parts_once(moto_s3: MotoS3, tmp_path: Path) -> None:
    threshold = 5 * 1024 * 1024
    store = S3Store("cn-north-4", moto_s3.settings(multipart_threshold=threshold))
    bucket = moto_s3.new_bucket()
    big = tmp_path / "big.mp4"
    big.write_bytes(os.urandom(threshold + 1000))
    info = await store.put_file(bucket, "big.mp4", big)
    assert info.size == threshold + 1000 and "-" in info.etag  # a multipart ETag
    assert await store.put_file(bucket, "big.mp4", big) == info  # a retry: the same object
    other = tmp_path / "other.mp4"
    other.write_bytes(os.urandom(threshold + 2000))
    with pytest.raises(ObjectExists):
        await store.put_file(bucket, "big.mp4", other)
