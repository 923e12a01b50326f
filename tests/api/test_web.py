"""The pages a first-time user opens: the welcome page at / and the demo room's explanations."""

from __future__ import annotations

from html.parser import HTMLParser

import httpx


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
    page = httpx.get(url)
    assert page.status_code == 200
    assert page.headers["content-type"] == "text/html; charset=utf-8"
    parser = _Anchors()
    parser.feed(page.text)
    return parser


def test_welcome_page_points_to_docs_and_demo(server) -> None:
    page = _read(f"{server.url}/")
    assert page.links == ["/docs", "/redoc", "/openapi.json", "/demo"]
    text = " ".join(" ".join(page.text).split())
    assert "Ember is running" in text
    assert "ember tenant create" in text and "ember credential create" in text
    assert "authentication.app_key" in text
    assert "console" not in text.lower()  # there is none yet: nothing to link
    for link in page.links:
        assert httpx.get(f"{server.url}{link}").status_code == 200, link


def test_demo_page_says_what_it_is_and_where_the_key_comes_from(server) -> None:
    page = _read(f"{server.url}/demo")
    text = " ".join(" ".join(page.text).split())
    assert "joins a room of this Ember server with your camera and microphone" in text
    assert "GET /v2/apps/{app_id}" in text and "authentication.app_key" in text
    assert "/docs" in page.links
