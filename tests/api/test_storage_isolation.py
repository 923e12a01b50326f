"""Local storage kept per tenant, read back the way a user gets it: the completion callback's
``download_url``, followed over HTTP.

A running server records files as its engine reports them (``RecordingOutputs``, as in
``test_record_callback_delivery.py``) for apps, rules and callbacks set through the API: two tenants
with a bucket of the same name, two jobs arriving at the same object name, and a data folder of an
install from before buckets were kept per project.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import os
from dataclasses import replace
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx

from emberrtc.domain.clock import ManualClock
from emberrtc.recording.outputs import FileTarget, JobRef
from tests.conftest import make_settings, make_tenant, token_for
from tests.support.http_receiver import HttpReceiver
from tests.support.server import ServerThread, TenantInfo
from tests.support.spec_checks import assert_ok, create_app, mp4_rule
from tests.support.waiting import until

LOCATION = "cn-north-4"  # a local location in the test server (tests/conftest.py)
BUCKET = "recordings"


class Tenant:
    """A tenant's app, its rule on ``BUCKET`` and its record callback, set through the API."""

    def __init__(self, server: ServerThread, info: TenantInfo, receiver: HttpReceiver) -> None:
        self.info = info
        self.http = httpx.Client(base_url=server.url, headers={"X-Auth-Token": token_for(server, info)})
        self.app_id = create_app(self.http)
        rule = mp4_rule(LOCATION, BUCKET, project_id=info.project_id)
        assert_ok(self.http.post(f"/v2/apps/{self.app_id}/record-rules", json=rule), 201)
        cb = {"url": f"{receiver.url}/{self.app_id}"}
        assert_ok(self.http.put(f"/v2/apps/{self.app_id}/record-callback", json=cb))


async def record(
    server: ServerThread, app_id: str, name: str, data: bytes, *, job_id: str | None = None
) -> tuple[JobRef, bytes]:
    """One MP4 file of a new job of ``app_id``, reported as the recording engine reports it."""
    assert server.services is not None and server.clock is not None
    outputs = server.services.outputs
    job = JobRef(app_id=app_id, job_id=job_id or os.urandom(16).hex(), room_id="room1", stream_name="s1")
    target = FileTarget(LOCATION, BUCKET, name)
    path = outputs.spool.path_for(job.job_id, "f1.mp4")
    path.write_bytes(data)
    now = server.clock.now()

    async def work() -> None:
        await outputs.file_started(job, record_format="MP4", target=target, start_time=now - 60)
        await outputs.file_completed(
            job,
            record_format="MP4",
            path=path,
            target=target,
            start_time=now - 60,
            end_time=now,
            width=None,
            height=None,
        )

    await asyncio.to_thread(server.call, work())
    return job, data


def on(url: str) -> str:
    """A link's path and query, to follow on the test server (its links name the configured public URL)."""
    parts = urlsplit(url)
    return f"{parts.path}?{parts.query}"


def events(receiver: HttpReceiver, job: JobRef) -> dict[str, dict[str, Any]]:
    """The job's callbacks by event type."""
    bodies = [json.loads(r.body) for r in receiver.received]
    return {b["event_type"]: b for b in bodies if b["job_id"] == job.job_id}


async def completed(receiver: HttpReceiver, job: JobRef) -> dict[str, Any]:
    await until(lambda: "RECORD_FILE_COMPLETE" in events(receiver, job), what=f"the completion of {job.job_id}")
    return events(receiver, job)["RECORD_FILE_COMPLETE"]


async def test_two_tenants_with_one_bucket_name_keep_apart(server: ServerThread, tenant: TenantInfo) -> None:
    receiver = await HttpReceiver().start()
    try:
        other = await asyncio.to_thread(make_tenant, server)
        a = await asyncio.to_thread(Tenant, server, tenant, receiver)
        b = await asyncio.to_thread(Tenant, server, other, receiver)
        # The same bucket, the same object name: each tenant's templates would give the same.
        name = f"rec/{os.urandom(4).hex()}/s1.mp4"
        job_a, data_a = await record(server, a.app_id, name, os.urandom(20_000))
        done_a = await completed(receiver, job_a)
        job_b, data_b = await record(server, b.app_id, name, os.urandom(30_000))
        done_b = await completed(receiver, job_b)
    finally:
        await receiver.stop()
    # Neither file was renamed: the names are in different projects' buckets.
    assert done_a["obs_object"] == done_b["obs_object"] == name
    assert done_a["obs_bucket"] == done_b["obs_bucket"] == BUCKET
    url_a, url_b = done_a["download_url"], done_b["download_url"]
    async with httpx.AsyncClient(base_url=server.url, trust_env=False) as http:
        # Each link gives its own tenant's bytes: B's file did not overwrite A's.
        assert (await http.get(on(url_a))).content == data_a
        assert (await http.get(on(url_b))).content == data_b
        assert parse_qs(urlsplit(url_a).query)["project"] == [tenant.project_id]
        assert parse_qs(urlsplit(url_b).query)["project"] == [other.project_id]
        # A's link pointed at B's project (or at none) is not a link at all.
        for forged in (
            url_a.replace(tenant.project_id, other.project_id),
            url_a.replace(f"&project={tenant.project_id}", ""),
        ):
            r = await http.get(on(forged))
            assert r.status_code == 403 and r.json()["error_code"] == "RTC.00001021"
    a.http.close()
    b.http.close()
    # On disk: a folder per project.
    assert server.services is not None
    root = server.services.settings.data_dir / f"storage-{LOCATION}"
    assert (root / tenant.project_id / BUCKET / name).read_bytes() == data_a
    assert (root / other.project_id / BUCKET / name).read_bytes() == data_b


async def test_two_jobs_with_one_object_name_keep_both_files(server: ServerThread, tenant: TenantInfo) -> None:
    assert server.services is not None
    receiver = await HttpReceiver().start()
    try:
        a = await asyncio.to_thread(Tenant, server, tenant, receiver)
        name = f"rec/{os.urandom(4).hex()}/s1_20270101000000.mp4"
        first, data1 = await record(server, a.app_id, name, os.urandom(20_000))
        second, data2 = await record(server, a.app_id, name, os.urandom(25_000))
        done1, done2 = await completed(receiver, first), await completed(receiver, second)
        async with httpx.AsyncClient(base_url=server.url, trust_env=False) as http:
            assert (await http.get(on(done1["download_url"]))).content == data1  # not replaced by the second
            assert (await http.get(on(done2["download_url"]))).content == data2
        # An object someone put in the bucket: a file starting under its name does not replace it either.
        store = server.services.storage.local(LOCATION, tenant.project_id)
        assert store is not None
        there = name.replace(".mp4", "-by-hand.mp4")
        src = server.services.settings.data_dir / "by-hand.mp4"
        src.write_bytes(b"put there by hand")
        await asyncio.to_thread(server.call, store.put_file(BUCKET, there, src))
        third, data3 = await record(server, a.app_id, there, os.urandom(15_000))
        done3 = await completed(receiver, third)
    finally:
        await receiver.stop()
    a.http.close()
    renamed = name.replace(".mp4", f"-{second.job_id[:8]}.mp4")
    assert done1["obs_object"] == name and done2["obs_object"] == renamed
    # Every callback of the file names the object written.
    assert events(receiver, second)["RECORD_NEW_FILE_START"]["obs_object"] == renamed
    assert done3["obs_object"] == there.replace(".mp4", f"-{third.job_id[:8]}.mp4")
    async with httpx.AsyncClient(base_url=server.url, trust_env=False) as http:
        assert (await http.get(on(done3["download_url"]))).content == data3
        assert (await http.get(on(store.download_url(BUCKET, there)))).content == b"put there by hand"


SEGMENTS = 2


async def record_hls(server: ServerThread, app_id: str, name: str) -> tuple[JobRef, list[bytes]]:
    """One HLS recording (a playlist and its segments, named as ``HlsWriter`` names them) of a new job."""
    assert server.services is not None and server.clock is not None
    outputs = server.services.outputs
    job = JobRef(app_id=app_id, job_id=os.urandom(16).hex(), room_id="room1", stream_name="s1")
    stem = name.removesuffix(".m3u8")
    base = stem.rpartition("/")[2]
    now = server.clock.now()
    group = f"{job.job_id}-file1"
    data = [os.urandom(5_000 + i) for i in range(SEGMENTS)]
    lines = ["#EXTM3U", "#EXT-X-VERSION:3", "#EXT-X-TARGETDURATION:2", "#EXT-X-PLAYLIST-TYPE:VOD"]

    async def work() -> None:
        await outputs.file_started(job, record_format="HLS", target=FileTarget(LOCATION, BUCKET, name), start_time=now)
        for i, chunk in enumerate(data):
            seg = outputs.spool.path_for(job.job_id, f"f1-{i:05d}.ts")
            seg.write_bytes(chunk)
            target = FileTarget(LOCATION, BUCKET, f"{stem}_{i:05d}.ts")
            await outputs.store_part(job, path=seg, target=target, group=group)
            lines.extend(["#EXTINF:2.000,", f"{base}_{i:05d}.ts"])
        playlist = outputs.spool.path_for(job.job_id, "f1.m3u8")
        playlist.write_text("\n".join([*lines, "#EXT-X-ENDLIST"]) + "\n")
        await outputs.file_completed(
            job,
            record_format="HLS",
            path=playlist,
            target=FileTarget(LOCATION, BUCKET, name),
            start_time=now,
            end_time=now + 2 * SEGMENTS,
            width=None,
            height=None,
            group=group,
        )

    await asyncio.to_thread(server.call, work())
    return job, data


async def test_two_hls_recordings_with_one_name_keep_both(server: ServerThread, tenant: TenantInfo) -> None:
    receiver = await HttpReceiver().start()
    try:
        a = await asyncio.to_thread(Tenant, server, tenant, receiver)
        name = f"rec/{os.urandom(4).hex()}/s1.m3u8"
        first, data1 = await record_hls(server, a.app_id, name)
        second, data2 = await record_hls(server, a.app_id, name)
        done1, done2 = await completed(receiver, first), await completed(receiver, second)
    finally:
        await receiver.stop()
    a.http.close()
    assert done1["obs_object"] == name
    assert done2["obs_object"] == name.replace(".m3u8", f"-{second.job_id[:8]}.m3u8")
    async with httpx.AsyncClient(base_url=server.url, trust_env=False) as http:
        for done, data in ((done1, data1), (done2, data2)):
            # As a player: the playlist from its link, then each segment line resolved against it.
            playlist = await http.get(on(done["download_url"]))
            assert playlist.status_code == 200
            uris = [line for line in playlist.text.splitlines() if line and not line.startswith("#")]
            stem = done["obs_object"].rpartition("/")[2].removesuffix(".m3u8")
            assert [u.split("?")[0] for u in uris] == [f"{stem}_{i:05d}.ts" for i in range(SEGMENTS)]
            base = urlsplit(done["download_url"]).path.rpartition("/")[0]
            assert [(await http.get(f"{base}/{u}")).content for u in uris] == data


def _old_link(key: bytes, base: str, location: str, bucket: str, name: str, expires: int) -> str:
    """A download link as Ember made them before buckets were kept per project."""
    signature = hmac.new(key, f"{location}\n{bucket}\n{name}\n{expires}".encode(), hashlib.sha256).hexdigest()
    return f"{base}/files/{location}/{bucket}/{name}?expires={expires}&signature={signature}"


def test_files_of_the_shared_layout_of_old_stay_reachable(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    old = data_dir / "storage" / "records" / "app" / "MP4"
    old.mkdir(parents=True)
    (old / "old.mp4").write_bytes(b"recorded before the upgrade")
    settings = replace(make_settings(data_dir), download_url_key="the-key-of-the-install")
    clock = ManualClock(1_800_000_000.0)
    srv = ServerThread(settings, clock=clock).start()
    try:
        root = data_dir / "storage"
        assert (root / ".legacy" / "records" / "app" / "MP4" / "old.mp4").is_file()
        assert not (root / "records").exists()
        link = _old_link(b"the-key-of-the-install", "", "local", "records", "app/MP4/old.mp4", 1_800_003_600)
        with httpx.Client(trust_env=False) as http:
            r = http.get(srv.url + link)
            assert r.status_code == 200 and r.content == b"recorded before the upgrade"
            # A project's bucket of the same name is another bucket: the old object is not in it.
            assert srv.services is not None and srv.services.storage.links is not None
            tenant = make_tenant(srv)
            scoped = srv.services.storage.links.url("local", "records", "app/MP4/old.mp4", project=tenant.project_id)
            assert http.get(srv.url + on(scoped)).status_code == 404
    finally:
        srv.stop()
    # A second start finds the move done and changes nothing.
    srv = ServerThread(settings, clock=clock).start()
    try:
        with httpx.Client(trust_env=False) as http:
            assert http.get(srv.url + link).content == b"recorded before the upgrade"
    finally:
        srv.stop()
