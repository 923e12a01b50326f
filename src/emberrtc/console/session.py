"""Console sessions and protection against cross-site requests.

- **Session**: signing in issues the tenant an IAM token (``TenantService.issue_token``, the same check and
  the same failed-sign-in limit as ``POST /v3/auth/tokens``), kept in the cookie ``ember_console``:
  ``HttpOnly``, ``SameSite=Strict``, ``Path=/console``, ``Secure`` when the console is served over HTTPS.
  Tokens live in the database, so every node of a cluster knows the session, and signing out deletes the
  token everywhere at once. The token never appears in a URL or a page.
- **CSRF**: every change is a POST carrying ``csrf``, which must equal ``HMAC-SHA256(session token,
  "ember-console-csrf")``: only a page the server rendered for this session knows it (nothing is stored).
  Before sign-in the form carries a random value that must equal the ``ember_console_csrf`` cookie (the
  double-submit pattern), so a login form cannot be posted from elsewhere either. On top of both, a POST
  whose ``Origin`` is another site, or whose ``Sec-Fetch-Site`` says cross-site, is refused.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass

from fastapi import Request, Response

from emberrtc.api.auth import services_of
from emberrtc.domain.errors import NoPermission, Unauthenticated
from emberrtc.domain.tenant import Principal

SESSION_COOKIE = "ember_console"
PRE_SESSION_COOKIE = "ember_console_csrf"
COOKIE_PATH = "/console"
_CSRF_CONTEXT = b"ember-console-csrf"


@dataclass(frozen=True)
class ConsoleSession:
    """A signed-in console user: the tenant, and the CSRF token of this session."""

    who: Principal
    csrf: str


def csrf_for(token: str) -> str:
    """The CSRF token of the session whose IAM token is ``token``."""
    return hmac.new(token.encode(), _CSRF_CONTEXT, hashlib.sha256).hexdigest()


def is_https(request: Request) -> bool:
    """Served over HTTPS (directly, or behind a trusted proxy that says so: ``EMBER_TRUSTED_PROXIES``)."""
    return request.url.scheme == "https"


def set_session_cookie(response: Response, request: Request, token: str, max_age: int) -> None:
    response.set_cookie(
        SESSION_COOKIE,
        token,
        max_age=max(0, max_age),
        path=COOKIE_PATH,
        httponly=True,
        samesite="strict",
        secure=is_https(request),
    )


def clear_session_cookie(response: Response, request: Request) -> None:
    response.delete_cookie(SESSION_COOKIE, path=COOKIE_PATH, httponly=True, samesite="strict", secure=is_https(request))


def pre_session_csrf(request: Request) -> tuple[str, bool]:
    """The sign-in form's CSRF value: the browser's ``ember_console_csrf`` cookie, or a new one (True:
    the response must set it)."""
    current = request.cookies.get(PRE_SESSION_COOKIE, "")
    if len(current) == 43 and current.replace("-", "").replace("_", "").isalnum():
        return current, False
    return secrets.token_urlsafe(32), True


def set_pre_session_cookie(response: Response, request: Request, value: str) -> None:
    response.set_cookie(
        PRE_SESSION_COOKIE, value, path=COOKIE_PATH, httponly=True, samesite="strict", secure=is_https(request)
    )


async def current_session(request: Request) -> ConsoleSession | None:
    """The signed-in tenant, or None (no cookie, or a token that expired or was signed out)."""
    token = request.cookies.get(SESSION_COOKIE)
    if not token:
        return None
    try:
        who = await services_of(request).tenants.principal_for_token(token)
    except Unauthenticated:
        return None
    return ConsoleSession(who, csrf_for(token))


def check_same_origin(request: Request) -> None:
    """Refuse (403) a POST that the browser says comes from another site."""
    site = request.headers.get("sec-fetch-site")
    if site is not None and site not in ("same-origin", "none"):
        raise NoPermission("the console takes changes from its own pages only (cross-site request refused)")
    origin = request.headers.get("origin")
    if origin is not None:
        own = f"{request.url.scheme}://{request.headers.get('host', '')}"
        if origin != own:
            raise NoPermission("the console takes changes from its own pages only (cross-site request refused)")


def check_csrf(request: Request, sent: str | None, expected: str) -> None:
    """Refuse (403) a change whose form does not carry this session's CSRF token."""
    check_same_origin(request)
    if not sent or not hmac.compare_digest(sent.encode(), expected.encode()):
        raise NoPermission("the form's CSRF token is missing or wrong: reload the page and try again")
