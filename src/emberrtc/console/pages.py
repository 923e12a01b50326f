"""Rendering console pages: templates, the security headers every page carries, and error pages."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from fastapi import Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from jinja2 import Environment, FileSystemLoader, select_autoescape

from emberrtc.console.forms import FormError
from emberrtc.console.session import ConsoleSession
from emberrtc.domain.errors import EmberError, RateLimited

HERE = Path(__file__).resolve().parent
TEMPLATES = HERE / "templates"
STATIC = HERE / "static"

_env = Environment(
    loader=FileSystemLoader(TEMPLATES),
    autoescape=select_autoescape(["html"]),
    trim_blocks=True,
    lstrip_blocks=True,
)


def _when(ts: float | None) -> str:
    if ts is None:
        return "-"
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _size(n: int | None) -> str:
    if n is None:
        return "-"
    value = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1024 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{n} B"


def _seconds(s: float | None) -> str:
    if s is None:
        return "-"
    whole = int(round(s))
    if whole >= 3600:
        return f"{whole // 3600}:{whole // 60 % 60:02d}:{whole % 60:02d}"
    return f"{whole // 60}:{whole % 60:02d}"


_env.filters["when"] = _when
_env.filters["size"] = _size
_env.filters["seconds"] = _seconds


def origin_of(url: str) -> str | None:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return None
    return f"{parts.scheme}://{parts.netloc}"


def content_security_policy(media_origins: Iterable[str] = ()) -> str:
    """Scripts, styles and images from the console itself; media (and hls.js's requests) also from the
    origins of the recordings a page plays (their signed ``download_url``)."""
    media = " ".join(["'self'", "blob:", *sorted(set(media_origins))])
    return (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        f"media-src {media}; connect-src {media}; worker-src 'self' blob:; "
        "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    )


def secure(response: Response, media_origins: Iterable[str] = ()) -> Response:
    """The headers of every console response: CSP, no framing, no sniffing, no referrer to other sites, no
    caching."""
    response.headers["Content-Security-Policy"] = content_security_policy(media_origins)
    response.headers["X-Frame-Options"] = "DENY"
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "same-origin"  # "no-referrer" would make Chromium send "Origin: null"
    response.headers["Cache-Control"] = "no-store"
    return response


def render(
    request: Request,
    template: str,
    *,
    session: ConsoleSession | None,
    status: int = 200,
    media_origins: Iterable[str] = (),
    headers: dict[str, str] | None = None,
    **context: Any,
) -> HTMLResponse:
    html = _env.get_template(template).render(
        session=session, csrf=session.csrf if session else "", path=request.url.path, **context
    )
    response = HTMLResponse(html, status_code=status, headers=headers)
    secure(response, media_origins)
    return response


def fragment(template: str, *, session: ConsoleSession | None, **context: Any) -> str:
    """A piece of a page (the live rooms table), rendered alone: for the page and for its event stream."""
    return _env.get_template(template).render(session=session, csrf=session.csrf if session else "", **context)


def redirect(url: str) -> Response:
    """See other (303): after a change, the browser loads the page again with GET."""
    return secure(RedirectResponse(url, status_code=303))


def error_page(request: Request, session: ConsoleSession | None, exc: EmberError) -> HTMLResponse:
    """A page for an error that has no form to be shown on (an app that is not the tenant's, a refused
    request): the catalogue's code and message, with the catalogue's status."""
    headers = {}
    if isinstance(exc, RateLimited):
        headers["Retry-After"] = str(max(1, int(exc.retry_after + 0.999)))
    return render(
        request,
        "error.html",
        session=session,
        status=exc.status,
        headers=headers,
        error=FormError.of(exc),
        title="Error",
    )
