"""Locally stored recordings served for ``download_url``: only through a genuine, unexpired signed link."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import parse_qs, urljoin, urlsplit

import av
import httpx
import pytest

from emberrtc.domain.clock import ManualClock
from emberrtc.storage.local_store import LocalStore
from emberrtc.storage.s3_store import S3Store
from emberrtc.synthetic import ColourVideo, colour_distance, median_rgb
from tests.conftest import make_settings
from tests.support.s3 import ACCESS_KEY, REGION, SECRET_KEY, MotoS3
from tests.support.server import ServerThread, free_port


def _path(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.path}?{parts.query}"


@pytest.fixture
def stored(server: ServerThread, tmp_path: Path) -> tuple[LocalStore, str, bytes]:
    assert server.services is not None
    store = server.services.storage.local("local")
    assert store is not None
    data = os.urandom(50_000)
    src = tmp_path / "f.mp4"
    src.write_bytes(data)
    name = f"app/MP4/{os.urandom(4).hex()} a#b.mp4"
    server.call(store.put_file("records", name, src))
    return store, name, data


def test_valid_link(server: ServerThread, stored: tuple[LocalStore, str, bytes]) -> None:
    store, name, data = stored
    link = _path(store.download_url("records", name))
    with httpx.Client(base_url=server.url) as http:
        r = http.get(link)
        assert r.status_code == 200 and r.content == data
        assert r.headers["content-type"] == "video/mp4"
        head = http.head(link)
        assert head.status_code == 200 and int(head.headers["content-length"]) == len(data)
        part = http.get(link, headers={"Range": "bytes=0-9"})
        assert part.status_code == 206 and part.content == data[:10]


def test_expired_and_tampered_links(server: ServerThread, stored: tuple[LocalStore, str, bytes]) -> None:
    store, name, _ = stored
    links = store.links
    assert server.clock is not None
    expired = _path(links.url("local", "records", name, expires_at=int(server.clock.now()) - 1))
    good = _path(links.url("local", "records", name))
    sig = good.rsplit("signature=", 1)[1]
    other_sig = ("0" if sig[0] != "0" else "1") + sig[1:]
    later = int(good.split("expires=")[1].split("&")[0]) + 3600
    cases = {
        "expired": expired,
        "signature changed": good.replace(sig, other_sig),
        "expiry moved": good.replace("expires=", f"expires={later}&x=").replace(f"x={later - 3600}", ""),
        "other object": good.replace("/records/app/", "/records/app2/"),
        "other location": good.replace("/files/local/", "/files/cn-north-4/"),
        "no signature": good.split("&signature=")[0],
        "no query": good.split("?")[0],
        "garbage": good.split("?")[0] + "?expires=soon&signature=%FF",
    }
    with httpx.Client(base_url=server.url) as http:
        for what, link in cases.items():
            r = http.get(link)
            assert r.status_code == 403, what
            assert r.json()["error_code"] == "RTC.00001021", what
        assert "expired" in http.get(expired).json()["error_msg"]
        # A genuine link to an object that is gone.
        server.call(store.delete("records", name))
        r = http.get(good)
        assert r.status_code == 404 and r.json()["error_code"] == "RTC.00001024"


def test_even_a_signed_link_cannot_leave_the_bucket(server: ServerThread) -> None:
    assert server.services is not None
    links = server.services.storage.links
    assert links is not None
    # Signed with the server's key (as no caller could), and still refused by the store's name rules.
    link = _path(links.url("local", "records", "../../master.key")).replace("/../../", "/%2E%2E/%2E%2E/")
    with httpx.Client(base_url=server.url) as http:
        r = http.get(link)
    assert r.status_code == 400 and r.json()["error_code"] == "RTC.00001003"


# --- HLS: the playlist's link reaches its own segments, and nothing else -------------------------------


def _put(server: ServerThread, store: LocalStore, tmp_path: Path, name: str, data: bytes) -> None:
    src = tmp_path / "upload"
    src.write_bytes(data)
    server.call(store.put_file("records", name, src))


def _playlist(*uris: str) -> bytes:
    lines = ["#EXTM3U", "#EXT-X-VERSION:3", "#EXT-X-TARGETDURATION:2", "#EXT-X-PLAYLIST-TYPE:VOD"]
    for uri in uris:
        lines += ["#EXTINF:2.000,", uri]
    return ("\n".join([*lines, "#EXT-X-ENDLIST"]) + "\n").encode()


@pytest.fixture
def hls(server: ServerThread, tmp_path: Path) -> tuple[LocalStore, str, dict[str, bytes]]:
    """A recording (playlist and two segments, a stem that needs escaping) and a sibling in its folder."""
    assert server.services is not None
    store = server.services.storage.local("local")
    assert store is not None
    folder = f"app/HLS/{os.urandom(4).hex()}"
    stem, sibling = "s 1#a", "s 1#ab"  # the sibling's stem starts with the recording's
    segments = {f"{folder}/{stem}_{i:05d}.ts": os.urandom(3000 + i) for i in range(2)}
    for name, data in segments.items():
        _put(server, store, tmp_path, name, data)
    _put(server, store, tmp_path, f"{folder}/{stem}.m3u8", _playlist("s%201%23a_00000.ts", "s%201%23a_00001.ts"))
    _put(server, store, tmp_path, f"{folder}/{sibling}.m3u8", _playlist("s%201%23ab_00000.ts"))
    _put(server, store, tmp_path, f"{folder}/{sibling}_00000.ts", b"sibling")
    return store, f"{folder}/{stem}.m3u8", segments


def _segment_links(text: str, playlist_url: str) -> list[str]:
    return [urljoin(playlist_url, line) for line in text.splitlines() if line and not line.startswith("#")]


def test_an_hls_link_reaches_the_playlist_and_every_segment(
    server: ServerThread, hls: tuple[LocalStore, str, dict[str, bytes]]
) -> None:
    store, playlist, segments = hls
    url = store.download_url("records", playlist)
    with httpx.Client(base_url=server.url) as http:
        r = http.get(_path(url))
        assert r.status_code == 200
        assert r.headers["content-type"] == "application/vnd.apple.mpegurl"
        assert r.headers["cache-control"] == "private, no-store"
        assert r.headers["access-control-allow-origin"] == "*"
        assert r.text.startswith("#EXTM3U\n") and r.text.rstrip().endswith("#EXT-X-ENDLIST")
        expires = url.split("expires=")[1].split("&")[0]
        links = _segment_links(r.text, url)
        assert len(links) == 2 and all(f"expires={expires}&" in link for link in links)  # expire with it
        for link, data in zip(links, segments.values(), strict=True):
            got = http.get(_path(link))
            assert got.status_code == 200 and got.content == data
            assert got.headers["content-type"] == "video/mp2t"
            assert http.head(_path(link)).status_code == 200
        head = http.head(_path(url))
        assert head.status_code == 200 and head.content == b""


def test_an_hls_link_reaches_nothing_else(server: ServerThread, hls: tuple[LocalStore, str, dict[str, bytes]]) -> None:
    store, playlist, _ = hls
    url = store.download_url("records", playlist)
    with httpx.Client(base_url=server.url) as http:
        text = http.get(_path(url)).text
        first = _path(_segment_links(text, url)[0])
        path, query = first.split("?")
        folder = path.rsplit("/", 1)[0]
        sig = query.rsplit("signature=", 1)[1]
        later = int(query.split("expires=")[1].split("&")[0]) + 3600
        grant = _path(url).split("?")[1]  # the playlist's own
        cases = {
            "a segment without a query": path,
            "a segment with the playlist's query": f"{path}?{grant}",
            "the sibling's playlist with the segment's grant": f"{folder}/s%201%23ab.m3u8?{query}",
            "the sibling's segment with the segment's grant": f"{folder}/s%201%23ab_00000.ts?{query}",
            "the sibling's segment with the playlist's grant": f"{folder}/s%201%23ab_00000.ts?{grant}",
            "the next segment with the first one's grant": path.replace("_00000.ts", "_00001.ts") + f"?{query}",
            "signature changed": f"{path}?{query.replace(sig, ('0' if sig[0] != '0' else '1') + sig[1:])}",
            "expiry moved": f"{path}?expires={later}&signature={sig}",
            "encoded slashes out of the folder": f"{folder}%2F..%2Fs%201%23a_00000.ts?{query}",
            "dot segments": f"{folder}/%2E%2E/{folder.rsplit('/', 1)[1]}/s%201%23a_00000.ts?{query}",
        }
        for what, link in cases.items():
            r = http.get(link)
            assert r.status_code == 403, what
            assert r.json()["error_code"] == "RTC.00001021", what


def test_an_hls_link_and_its_segments_expire_together(
    server: ServerThread, hls: tuple[LocalStore, str, dict[str, bytes]]
) -> None:
    store, playlist, _ = hls
    assert server.clock is not None and isinstance(server.clock, ManualClock)
    now = int(server.clock.now())
    url = store.links.url("local", "records", playlist, expires_at=now + 5)
    with httpx.Client(base_url=server.url) as http:
        r = http.get(_path(url))
        assert r.status_code == 200
        segment = _path(_segment_links(r.text, url)[1])
        assert http.get(segment).status_code == 200
        server.clock.advance(6)
        for link in (_path(url), segment):
            r = http.get(link)
            assert r.status_code == 403 and "expired" in r.json()["error_msg"]


def test_a_playlist_signs_only_its_own_segments(server: ServerThread, tmp_path: Path) -> None:
    assert server.services is not None
    store = server.services.storage.local("local")
    assert store is not None
    folder = f"app/HLS/{os.urandom(4).hex()}"
    own = f"{folder}/r_00000.ts"
    _put(server, store, tmp_path, own, b"own")
    hostile = [
        "../x/r_00000.ts",
        "%2E%2E%2Fr_00000.ts",
        "r_%2F..%2Fr_00000.ts",
        f"/files/local/records/{folder}/r_00000.ts",
        "http://127.0.0.1/r_00000.ts",
        "//127.0.0.1/r_00000.ts",
        "r_00000.ts?expires=1",
        "r_00000.ts#x",
        "other_00000.ts",
        "r_00000.mp4",
        "r_%FF.ts",
        "r_%00.ts",
    ]
    _put(server, store, tmp_path, f"{folder}/r.m3u8", _playlist("r_00000.ts", *hostile))
    url = store.download_url("records", f"{folder}/r.m3u8")
    with httpx.Client(base_url=server.url) as http:
        text = http.get(_path(url)).text
    uris = [line for line in text.splitlines() if line and not line.startswith("#")]
    assert uris[0].startswith("r_00000.ts?expires=") and "signature=" in uris[0]
    assert uris[1:] == hostile  # served as written, with no grant a player could follow


# --- HLS on an S3 location: Ember serves the playlist, each segment comes from S3 presigned ------------


@pytest.fixture(scope="module")
def moto_s3() -> Iterator[MotoS3]:
    s3 = MotoS3().start()
    try:
        yield s3
    finally:
        s3.stop()


@pytest.fixture
def s3_server(moto_s3: MotoS3, tmp_path: Path) -> Iterator[ServerThread]:
    port = free_port()
    s3 = {
        "type": "s3",
        "endpoint": moto_s3.endpoint,
        "region": REGION,
        "access_key": ACCESS_KEY,
        "secret_key": SECRET_KEY,
        "addressing_style": "path",
        "url_ttl": 600,
    }
    settings = replace(
        make_settings(tmp_path / "data"),
        port=port,
        public_url=f"http://127.0.0.1:{port}",
        storage_locations=json.dumps({"obs": s3}),
    )
    srv = ServerThread(settings).start()
    try:
        yield srv
    finally:
        srv.stop()


def _make_hls(folder: Path, stem: str, seconds: int = 3) -> int:
    """An HLS recording of ``seconds`` of blue 320x180 H.264 in 1 s segments, made by FFmpeg's muxer."""
    video = ColourVideo((30, 60, 220), width=320, height=180, fps=25)
    frames = seconds * 25
    options = {"hls_time": "1", "hls_list_size": "0", "hls_playlist_type": "vod"}
    options["hls_segment_filename"] = str(folder / f"{stem}_%05d.ts")
    with av.open(str(folder / f"{stem}.m3u8"), "w", format="hls", options=options) as out:
        stream = out.add_stream("libx264", rate=25, options={"preset": "ultrafast", "g": "25"})
        stream.width, stream.height, stream.pix_fmt = 320, 180, "yuv420p"
        for n in range(frames):
            out.mux(stream.encode(video.frame(n)))
        out.mux(stream.encode(None))
    return frames


def test_an_s3_hls_link_plays_with_presigned_segments(s3_server: ServerThread, moto_s3: MotoS3, tmp_path: Path) -> None:
    assert s3_server.services is not None
    store = s3_server.services.storage.get("obs")
    assert isinstance(store, S3Store)
    bucket = moto_s3.new_bucket()
    folder = "app/HLS/s3rec"
    made = tmp_path / "made"
    made.mkdir()
    frames = _make_hls(made, "rec")
    (made / "sib_00000.ts").write_bytes(b"sibling")
    for f in made.iterdir():
        s3_server.call(store.put_file(bucket, f"{folder}/{f.name}", f))
    playlist = f"{folder}/rec.m3u8"

    # The playlist's download_url is Ember's; an MP4's stays a presigned URL straight to S3.
    url = store.download_url(bucket, playlist)
    assert url.startswith(f"{s3_server.url}/files/obs/{bucket}/{folder}/rec.m3u8?expires=")
    assert store.download_url(bucket, f"{folder}/x.mp4").startswith(f"{moto_s3.endpoint}/{bucket}/")
    expires = int(url.split("expires=")[1].split("&")[0])
    assert abs(expires - (time.time() + 600)) < 5  # the location's url_ttl

    with httpx.Client(trust_env=False) as http:
        r = http.get(url)
        assert r.status_code == 200 and r.headers["content-type"] == "application/vnd.apple.mpegurl"
        segments = [line for line in r.text.splitlines() if line and not line.startswith("#")]
        stored = sorted(p.name for p in made.glob("rec_*.ts"))
        assert len(segments) == len(stored) >= 3
        for link, name in zip(segments, stored, strict=True):
            parts = urlsplit(link)
            query = parse_qs(parts.query)
            assert f"{parts.scheme}://{parts.netloc}" == moto_s3.endpoint
            assert parts.path == f"/{bucket}/{folder}/{name}"
            # Valid as long as the playlist's link, no longer.
            signed_at = datetime.strptime(query["X-Amz-Date"][0], "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC).timestamp()
            assert abs(signed_at + int(query["X-Amz-Expires"][0]) - expires) <= 2
            got = http.get(link)
            assert got.status_code == 200 and got.content == (made / name).read_bytes()
        # Ember serves no other object of an S3 location, even with a genuine signature of its own.
        links = s3_server.services.storage.links
        assert links is not None
        segment = f"{folder}/{stored[0]}"
        r = http.get(f"{s3_server.url}/files/obs/{bucket}/{segment}?{links.query('obs', bucket, segment, expires)}")
        assert r.status_code == 404 and r.json()["error_code"] == "RTC.00001024"
        # Tampered: refused before S3 is asked.
        r = http.get(url.replace("rec.m3u8", "sib.m3u8"))
        assert r.status_code == 403

    # A player follows it whole: every frame, blue.
    with av.open(url) as c:
        decoded = list(c.decode(video=0))
    assert len(decoded) == frames
    assert colour_distance(median_rgb(decoded[-1]), (30, 60, 220)) < 25
