"""Ember's own pages: the welcome page at /, the demo room's explanations, and the recording player with the
hls.js it loads, all served by Ember itself (no other origin)."""

from __future__ import annotations

import hashlib
import re
from html.parser import HTMLParser

import httpx

from tests.support.server import ServerThread

# static/vendor/README.md: hls.js 1.7.4, dist/hls.light.min.js from the npm package, unchanged.
HLS_JS_SHA256 = "482cccb3a224554f64d8c2cf0d335dba4a3819bdb726afbfddfe15de4c277d82"


class _Anchors(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.links: list[str] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "a":
            self.links += [value for name, value in attrs if name == "href" and value]

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def _read(url: str) -> _Anchors:
    page = httpx.get(url, trust_env=False)
    assert page.status_code == 200
    assert page.headers["content-type"] == "text/html; charset=utf-8"
    parser = _Anchors()
    parser.feed(page.text)
    return parser


def test_welcome_page_points_to_docs_and_demo(server: ServerThread) -> None:
    page = _read(f"{server.url}/")
    assert page.links == ["/docs", "/redoc", "/openapi.json", "/demo"]
    text = " ".join(" ".join(page.text).split())
    assert "Ember is running" in text
    assert "ember tenant create" in text and "ember credential create" in text
    assert "authentication.app_key" in text
    assert "console" not in text.lower()  # there is none yet: nothing to link
    for link in page.links:
        assert httpx.get(f"{server.url}{link}", trust_env=False).status_code == 200, link


def test_demo_page_says_what_it_is_and_where_the_key_comes_from(server: ServerThread) -> None:
    page = _read(f"{server.url}/demo")
    text = " ".join(" ".join(page.text).split())
    assert "joins a room of this Ember server with your camera and microphone" in text
    assert "GET /v2/apps/{app_id}" in text and "authentication.app_key" in text
    assert "/docs" in page.links
    assert "/player" in page.links


def test_the_player_and_hls_js_are_served(server: ServerThread) -> None:
    with httpx.Client(base_url=server.url, trust_env=False) as http:
        page = http.get("/player")
        hls = http.get("/player/hls.light.min.js")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    # Every script the page loads is Ember's own.
    sources = re.findall(r'<script[^>]*\bsrc="([^"]+)"', page.text)
    assert sources == ["/player/hls.light.min.js"]
    assert '<meta name="referrer" content="no-referrer">' in page.text
    assert hls.status_code == 200 and hls.headers["content-type"].startswith("text/javascript")
    assert hashlib.sha256(hls.content).hexdigest() == HLS_JS_SHA256
