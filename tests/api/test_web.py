"""The recording player page and the hls.js it loads, served by Ember itself (no other origin)."""

from __future__ import annotations

import hashlib
import re

import httpx

from tests.support.server import ServerThread

# static/vendor/README.md: hls.js 1.7.4, dist/hls.light.min.js from the npm package, unchanged.
HLS_JS_SHA256 = "482cccb3a224554f64d8c2cf0d335dba4a3819bdb726afbfddfe15de4c277d82"


def test_the_player_and_hls_js_are_served(server: ServerThread) -> None:
    with httpx.Client(base_url=server.url, trust_env=False) as http:
        page = http.get("/player")
        hls = http.get("/player/hls.light.min.js")
        demo = http.get("/demo")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    # Every script the page loads is Ember's own.
    sources = re.findall(r'<script[^>]*\bsrc="([^"]+)"', page.text)
    assert sources == ["/player/hls.light.min.js"]
    assert '<meta name="referrer" content="no-referrer">' in page.text
    assert hls.status_code == 200 and hls.headers["content-type"].startswith("text/javascript")
    assert hashlib.sha256(hls.content).hexdigest() == HLS_JS_SHA256
    assert 'href="/player"' in demo.text
