"""A browser-like HTTP client for the console: cookies, the sign-in form, CSRF tokens read from the pages."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.support.server import ServerThread, TenantInfo

CSRF_RE = re.compile(r'name="csrf" value="([^"]*)"')


def csrf_of(html: str) -> str:
    match = CSRF_RE.search(html)
    assert match, "no CSRF token in the page"
    return match.group(1)


class Console:
    """One browser session with the console (no redirects followed, so tests see each answer)."""

    def __init__(self, url: str) -> None:
        self.http = httpx.Client(base_url=url, follow_redirects=False, timeout=30)
        self.csrf = ""

    def close(self) -> None:
        self.http.close()

    def sign_in(self, user: str, password: str) -> httpx.Response:
        page = self.http.get("/console")
        assert page.status_code == 200, page.text
        r = self.http.post("/console/sign-in", data={"csrf": csrf_of(page.text), "user": user, "password": password})
        if r.status_code == 303:
            self.csrf = csrf_of(self.get("/console/apps").text)
        return r

    def get(self, path: str, **kw: Any) -> httpx.Response:
        return self.http.get(path, **kw)

    def post(self, path: str, data: dict[str, Any] | list[tuple[str, str]], **kw: Any) -> httpx.Response:
        """POST a form with this session's CSRF token (unless the form has its own ``csrf``)."""
        pairs = list(data.items()) if isinstance(data, dict) else list(data)
        if not any(k == "csrf" for k, _ in pairs):
            pairs.append(("csrf", self.csrf))
        form: dict[str, list[str]] = {}
        for key, value in pairs:
            form.setdefault(key, []).append(value)
        return self.http.post(path, data=form, **kw)


@pytest.fixture
def console(server: ServerThread, tenant: TenantInfo) -> Iterator[Console]:
    """The tenant, signed in to the console."""
    c = Console(server.url)
    r = c.sign_in(tenant.name, tenant.password)
    assert r.status_code == 303, r.text
    try:
        yield c
    finally:
        c.close()
