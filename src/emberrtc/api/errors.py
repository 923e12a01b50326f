"""The one mapper from failures to responses: status, ``{"error_code", "error_msg"}`` and ``X-request-Id``."""

from __future__ import annotations

import logging
import uuid
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from sqlalchemy.exc import SQLAlchemyError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from emberrtc.api.json_response import JSONResponse
from emberrtc.domain import errors as E

log = logging.getLogger(__name__)

REQUEST_ID_HEADER = "X-request-Id"


class RequestIdMiddleware:
    """Give every request an id, echo it in ``X-request-Id`` on every response (spec: all operations)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = request_id

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers.append((b"x-request-id", request_id.encode()))
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_with_id)


def error_response(exc: E.EmberError) -> JSONResponse:
    headers = {}
    if isinstance(exc, E.RateLimited):
        headers["Retry-After"] = str(max(1, int(exc.retry_after + 0.999)))
    return JSONResponse({"error_code": exc.code, "error_msg": exc.message}, status_code=exc.status, headers=headers)


def _loc(err: dict[str, Any]) -> str:
    parts = [str(p) for p in err.get("loc", ()) if p not in ("body", "query", "path")]
    return ".".join(parts) or "body"


# The body is not a JSON object: FastAPI's types, and pydantic-core's when validating JSON (api/body.py).
_NOT_AN_OBJECT = ("model_attributes_type", "dict_type", "model_type")


def validation_error(errors: list[dict[str, Any]]) -> E.EmberError:
    """Pick the catalogue error for a list of Pydantic errors (spec 6.2).

    Unparseable JSON (or a body that is not a JSON object) -> RTC.00001002; a missing field ->
    RTC.00001005; a bad combination -> RTC.00001004; any other bad value -> RTC.00001003.
    """

    def first(pred: Any) -> dict[str, Any] | None:
        return next((e for e in errors if pred(e)), None)

    body_level = first(
        lambda e: (
            e["type"] == "json_invalid"
            or (
                tuple(e.get("loc", ())) == ("body",)
                and e["type"] in ("model_attributes_type", "dict_type", "model_type")
            )
            # No body at all. A model validator's ``missing_error`` (a field this combination needs) also sits
            # at ("body",), but with the parsed body as input: that one is RTC.00001005.
            or (tuple(e.get("loc", ())) == ("body",) and e["type"] == "missing" and e.get("input") is None)
        )
    )
    if body_level:
        return E.MalformedRequestBody("the body must be a JSON object")
    return field_error(errors)[0]


def field_error(errors: list[dict[str, Any]]) -> tuple[E.EmberError, str]:
    """The catalogue error :func:`validation_error` picks for a body's field errors, and the dotted path of
    the field it is about (``"body"`` for the body as a whole): the console shows it next to that field."""
    for kind, cls in (("missing", E.MissingParameter), ("invalid_combination", E.InvalidParameterCombination)):
        err = next((e for e in errors if e["type"] == kind), None)
        if err:
            return cls(_describe(err)), _loc(err)
    return E.InvalidParameterValue(_describe(errors[0])), _loc(errors[0])


def _describe(err: dict[str, Any]) -> str:
    where = _loc(err)
    if err["msg"] == "Field required":
        return f"{where} is required"
    msg = err["msg"].removeprefix("Value error, ")
    return msg if where == "body" else f"{where}: {msg}"


def allowed_methods(request: Request) -> list[str]:
    """Every method some route takes at this request's path (a path has one route per method)."""
    path = request.scope["path"]
    methods: set[str] = set()
    for route in request.app.router.routes:
        regex = getattr(route, "path_regex", None)
        if regex is not None and getattr(route, "methods", None) and regex.match(path):
            methods |= route.methods
    return sorted(methods)


def install(app: FastAPI) -> None:
    """Register the handlers; after this no exception leaves the app without a catalogue body."""

    @app.exception_handler(E.EmberError)
    async def _ember(_: Request, exc: E.EmberError) -> JSONResponse:
        return error_response(exc)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        # FastAPI parses the body before it runs the auth dependency; a caller without valid
        # credentials must still get 401, not a hint about the body.
        if request.url.path.startswith(("/v2/", "/v1/")):
            from emberrtc.api.auth import authenticate

            try:
                await authenticate(request)
            except E.EmberError as auth_exc:
                return error_response(auth_exc)
        return error_response(validation_error(list(exc.errors())))

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code == 404:
            return error_response(E.RouteNotFound("no such API"))
        if exc.status_code == 405:
            response = error_response(E.MethodNotAllowed("this API does not take that method"))
            response.headers["Allow"] = ", ".join(allowed_methods(request))  # RFC 9110 15.5.6
            return response
        if exc.status_code == 400:
            # FastAPI's "There was an error parsing the body" (a body it could not decode, nested too deep)
            return error_response(E.MalformedRequestBody("the body could not be parsed as JSON"))
        return JSONResponse({"error_code": "RTC.00002000", "error_msg": str(exc.detail)}, status_code=exc.status_code)

    @app.exception_handler(ClientDisconnect)
    async def _gone(_: Request, exc: ClientDisconnect) -> JSONResponse:
        # The client went away before its body ended, or the edge cut the body off at its limit and answered
        # itself (api/edge.py): nobody reads this answer, and it is no fault of the server's to log.
        return error_response(E.MalformedRequestBody("the client went away before the body ended"))

    @app.exception_handler(SQLAlchemyError)
    async def _db(_: Request, exc: SQLAlchemyError) -> JSONResponse:
        log.exception("database error", exc_info=exc)
        return error_response(E.DbError())

    @app.exception_handler(Exception)
    async def _any(_: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error", exc_info=exc)
        return error_response(E.InternalError())
