"""/docs and /redoc work offline: every asset they load is served by Ember itself, with its content type."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from urllib.parse import urljoin, urlsplit

import httpx
import pytest


class _Links(HTMLParser):
    """Every URL a page loads or links: src/href/spec-url attributes, and quoted URLs inside its inline scripts."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.urls += [value for name, value in attrs if name in ("src", "href", "spec-url") and value]
        self._in_script = tag == "script"

    def handle_endtag(self, tag: str) -> None:
        self._in_script = False

    def handle_data(self, data: str) -> None:
        if self._in_script:
            # url: '/openapi.json', oauth2RedirectUrl: window.location.origin + '/docs/oauth2-redirect', ...
            self.urls += re.findall(r"""['"](https?://[^'"]+|/[^'"\s]*)['"]""", data)


def _page_urls(server_url: str, path: str) -> tuple[str, list[str]]:
    page = httpx.get(f"{server_url}{path}")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    parser = _Links()
    parser.feed(page.text)
    return page.text, parser.urls


EXPECTED_TYPES = {".js": "text/javascript", ".css": "text/css", ".png": "image/png", ".json": "application/json"}


@pytest.mark.parametrize(
    ("path", "assets"),
    [
        ("/docs", {"swagger-ui-bundle.js", "swagger-ui.css", "favicon.png"}),
        ("/redoc", {"redoc.standalone.js", "favicon.png"}),
    ],
)
def test_docs_pages_load_only_ember_served_assets(server, path: str, assets: set[str]) -> None:
    text, urls = _page_urls(server.url, path)
    assert "/openapi.json" in urls
    # No other host anywhere on the page: not in an attribute, not in a script, not in a stylesheet link.
    assert not re.search(r"https?://", text), re.findall(r"https?://[^\s'\"]+", text)
    assert "fonts.googleapis" not in text and "cdn." not in text
    served = {urlsplit(url).path.rsplit("/", 1)[-1] for url in urls if url.startswith("/docs/assets/")}
    assert served == assets
    for url in urls:
        absolute = urljoin(server.url + path, url)
        assert urlsplit(absolute).netloc == urlsplit(server.url).netloc
        if url.endswith("oauth2-redirect"):
            continue  # a page Swagger UI opens after an OAuth2 login, checked below
        answer = httpx.get(absolute)
        assert answer.status_code == 200, url
        suffix = "." + url.rsplit(".", 1)[-1]
        assert answer.headers["content-type"].startswith(EXPECTED_TYPES[suffix]), (url, answer.headers)
        assert len(answer.content) > 1000, url


def test_swagger_ui_is_configured_to_stay_offline(server) -> None:
    for path in ("/docs", "/redoc", "/docs/oauth2-redirect"):
        # Whatever a bundled script tries, the browser may fetch from this server only.
        policy = httpx.get(f"{server.url}{path}").headers["content-security-policy"]
        directives = {d.split()[0]: d.split()[1:] for d in policy.split("; ")}
        assert directives["default-src"] == ["'self'"], policy
        assert all("http" not in " ".join(sources) for sources in directives.values()), policy
    text, _ = _page_urls(server.url, "/docs")
    # The validator badge would send the description's URL to validator.swagger.io.
    assert '"validatorUrl": null' in text
    redirect = httpx.get(f"{server.url}/docs/oauth2-redirect")
    assert redirect.status_code == 200 and "oauth2" in redirect.text
    assert not re.search(r"https?://", redirect.text)


def test_only_the_known_assets_are_served(server) -> None:
    for name in ("core.py", "..%2F__init__.py", "%2E%2E/consts.py", "swagger-ui-bundle.js.map"):
        answer = httpx.get(f"{server.url}/docs/assets/{name}")
        assert answer.status_code == 404, name
        assert answer.json()["error_code"] == "RTC.00001024"
