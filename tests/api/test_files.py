"""Locally stored recordings served for ``download_url``: only through a genuine, unexpired signed link."""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from emberrtc.storage.local_store import LocalStore
from tests.support.server import ServerThread


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
