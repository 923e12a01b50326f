"""The API documentation pages, Swagger UI at ``/docs`` and ReDoc at ``/redoc``, working offline.

FastAPI's default pages load Swagger UI, ReDoc, their favicon and (for ReDoc) Google Fonts from public
CDNs, so on a machine without Internet access (or behind a strict firewall) ``/docs`` is blank. Ember
serves the same files itself, from the ``fastapi-offline`` package (a dependency, so they are installed
with Ember, editable or not), under ``/docs/assets/``. Nothing on these pages is fetched from another
host: the pages load only Ember's URLs, and their Content-Security-Policy lets the browser fetch nothing
else (ReDoc's sidebar would otherwise load its vendor's logo from a CDN).
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
from fastapi.responses import FileResponse, HTMLResponse

from emberrtc.domain import errors as E

router = APIRouter(tags=["API documentation"], include_in_schema=False)

#: Where the served asset files live: the ``static`` folder of the ``fastapi_offline`` package.
ASSETS_DIR = Path(str(resources.files("fastapi_offline") / "static"))
ASSETS_PATH = "/docs/assets"
OAUTH2_REDIRECT_PATH = "/docs/oauth2-redirect"

#: The files served under ASSETS_PATH, with their content types: only these, never a path from the URL.
ASSETS = {
    "swagger-ui-bundle.js": "text/javascript; charset=utf-8",
    "swagger-ui.css": "text/css; charset=utf-8",
    "redoc.standalone.js": "text/javascript; charset=utf-8",
    "favicon.png": "image/png",
}


#: Only this server: the pages' own inline init script and styles, Swagger UI's data: icons, ReDoc's
#: search worker (a blob:). Anything else a bundled script tries to load is refused by the browser.
CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self' 'unsafe-inline'",
        "style-src 'self' 'unsafe-inline'",
        "img-src 'self' data:",
        "font-src 'self' data:",
        "worker-src 'self' blob:",
        "connect-src 'self'",
        "frame-ancestors 'self'",
    ]
)


def _offline(page: HTMLResponse) -> HTMLResponse:
    page.headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
    return page


def _openapi_url(request: Request) -> str:
    # The app's own, with the prefix the app is mounted under (root_path), as FastAPI's default pages do.
    return str(request.scope.get("root_path", "")).rstrip("/") + str(request.app.openapi_url)


def _asset(request: Request, name: str) -> str:
    return str(request.scope.get("root_path", "")).rstrip("/") + f"{ASSETS_PATH}/{name}"


@router.get("/docs")
async def swagger_ui(request: Request) -> HTMLResponse:
    """Swagger UI for the OpenAPI description, with every asset served by Ember."""
    page = get_swagger_ui_html(
        openapi_url=_openapi_url(request),
        title=f"{request.app.title} - Swagger UI",
        swagger_js_url=_asset(request, "swagger-ui-bundle.js"),
        swagger_css_url=_asset(request, "swagger-ui.css"),
        swagger_favicon_url=_asset(request, "favicon.png"),
        oauth2_redirect_url=OAUTH2_REDIRECT_PATH,
        # No validator badge: Swagger UI would send the description's URL to validator.swagger.io.
        swagger_ui_parameters={"validatorUrl": None},
    )
    return _offline(page)


@router.get(OAUTH2_REDIRECT_PATH)
async def swagger_ui_redirect() -> HTMLResponse:
    """The page Swagger UI's OAuth2 flow returns to (it loads nothing from elsewhere)."""
    return _offline(get_swagger_ui_oauth2_redirect_html())


@router.get("/redoc")
async def redoc(request: Request) -> HTMLResponse:
    """ReDoc for the OpenAPI description, with every asset served by Ember and no web fonts."""
    page = get_redoc_html(
        openapi_url=_openapi_url(request),
        title=f"{request.app.title} - ReDoc",
        redoc_js_url=_asset(request, "redoc.standalone.js"),
        redoc_favicon_url=_asset(request, "favicon.png"),
        with_google_fonts=False,
    )
    return _offline(page)


@router.get(ASSETS_PATH + "/{name}")
async def asset(name: str) -> FileResponse:
    """One of the documentation pages' asset files (only the names in ``ASSETS``)."""
    media_type = ASSETS.get(name)
    if media_type is None:
        raise E.RouteNotFound("no such documentation asset")
    return FileResponse(ASSETS_DIR / name, media_type=media_type, headers={"Cache-Control": "public, max-age=86400"})
