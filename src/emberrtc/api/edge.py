"""The HTTP edge: what a request may cost before anyone knows who sent it.

Two layers, because some limits can only be kept while bytes arrive and others need the parsed request:

- :func:`http_protocol` is uvicorn's httptools protocol with a bound on the request line plus headers (bytes
  fed to the parser before the headers end), on the number of header fields, and on the time the headers
  take (from connecting, or from a request's first byte): 431 or 408. Without it one 200 MB header is
  buffered whole, and a client sending a byte a minute holds its connection forever. It also refuses a body
  over ``max_body_bytes`` (413), from ``Content-Length`` before any request object exists and while a body
  streams in, so a refusal costs no trip through the application. A refused connection is answered at once
  and then held for ``refusal_hold`` seconds, reading paused, before it is closed: a client that reconnects
  as soon as it is refused (a flood of oversized bodies or headers) gets one refusal per connection per
  hold, and costs nothing meanwhile.
- :class:`EdgeMiddleware` refuses a body over ``max_body_bytes`` from ``Content-Length`` before reading any
  of it, counts the bytes of a body that streams in (chunked, or longer than declared), bounds the time the
  body takes, and on the signed paths (``/v1/``, ``/v2/``) refuses a request with a body whose credentials
  are missing or whose AK/SK header and ``X-Sdk-Date`` are wrong before reading the body (413, 408, 401).

:func:`server_config` puts them together with uvicorn's own limits (connections and requests at once) and
the trusted proxies (``X-Forwarded-For`` only from them). ``ember serve`` and the test server both use it.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import TYPE_CHECKING, Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from emberrtc.api import aksk
from emberrtc.api.errors import error_response
from emberrtc.config import Settings, trusted_proxy_list
from emberrtc.domain import errors as E

if TYPE_CHECKING:
    import uvicorn

    from emberrtc.bootstrap import Services

#: Scope key: the AK/SK ``Authorization`` the edge already checked (api/auth.py reuses it).
PREFLIGHT = "ember.aksk"
_SIGNED_PATHS = ("/v1/", "/v2/")


def refusal(exc: E.EmberError) -> bytes:
    """A whole HTTP/1.1 response for ``exc`` with the catalogue body, closing the connection."""
    response = error_response(exc)
    head = [STATUS_LINE[exc.status]]
    for name, value in response.raw_headers:
        if name != b"content-length":
            head += [name, b": ", value, b"\r\n"]
    head += [
        b"content-length: ",
        str(len(response.body)).encode(),
        b"\r\nx-request-id: ",
        uuid.uuid4().hex.encode(),
        b"\r\nconnection: close\r\n\r\n",
    ]
    return b"".join(head) + bytes(response.body)


def http_protocol(settings: Settings) -> type[HttpToolsProtocol]:
    """uvicorn's httptools protocol bounded by ``settings`` (header bytes, header count, header time, body
    bytes), holding refused connections for ``settings.refusal_hold`` seconds."""
    max_bytes, max_count, timeout = settings.max_header_bytes, settings.max_headers, settings.header_timeout
    max_body, hold = settings.max_body_bytes, settings.refusal_hold

    class EdgeHttpProtocol(HttpToolsProtocol):
        _header_bytes = 0
        _body_bytes = 0
        _in_headers = True
        _refused = False
        _header_timer: asyncio.TimerHandle | None = None
        _release: asyncio.TimerHandle | None = None

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            # A connection that sends nothing gets the same time as one sending its headers slowly.
            self._arm_header_timer()

        def connection_lost(self, exc: Exception | None) -> None:
            self._cancel_header_timer()
            if self._release is not None:
                self._release.cancel()
                self._release = None
            super().connection_lost(exc)

        # Once a connection is refused, the parser callbacks ignore the rest of what was fed with the refused
        # bytes (reading is paused, so nothing more comes): raising from a callback would make uvicorn log
        # "Invalid HTTP request" for each refusal.

        def data_received(self, data: bytes) -> None:
            if self._refused:
                return
            waiting = self._in_headers
            super().data_received(data)
            if waiting and self._in_headers and not self.transport.is_closing():
                # Only bytes fed while no header block ended count: a chunk that ends the headers may carry
                # body bytes, which the body limit counts. The parser holds at most what was fed.
                self._header_bytes += len(data)
                if self._header_bytes > max_bytes:
                    self._refuse(E.HeadersTooLarge(f"request line and headers over {max_bytes} bytes"))

        def on_message_begin(self) -> None:
            if self._refused:
                return
            super().on_message_begin()
            if not self._in_headers:  # a keep-alive connection's next request
                self._in_headers, self._header_bytes = True, 0
                self._arm_header_timer()

        def on_headers_complete(self) -> None:
            self._in_headers = False
            self._cancel_header_timer()
            if self._refused:
                return
            # Counted once the block ends rather than per field (a call per header on every request): the
            # byte limit already bounds what the fields hold meanwhile.
            if len(self.headers) > max_count:
                self._refuse(E.HeadersTooLarge(f"more than {max_count} header fields"))
                return  # no request cycle: the application never sees it
            # llhttp has checked the syntax (digits; one value), and refuses it beside Transfer-Encoding.
            length = next((v for k, v in self.headers if k == b"content-length"), b"")
            if length.isdigit() and int(length) > max_body:
                self._refuse(E.PayloadTooLarge(f"the body is over {max_body} bytes"))
                return
            self._body_bytes = 0
            super().on_headers_complete()

        def on_body(self, body: bytes) -> None:
            if self._refused:
                return
            # A chunked body (or one whose length was not announced) is counted as it streams in.
            self._body_bytes += len(body)
            if self._body_bytes > max_body:
                # Answered already (a 401 before the body was read): no second answer, only the hold and close.
                answered = self.cycle is not None and self.cycle.response_complete
                self._refuse(None if answered else E.PayloadTooLarge(f"the body is over {max_body} bytes"))
                return
            super().on_body(body)

        def on_message_complete(self) -> None:
            if not self._refused:
                super().on_message_complete()

        def send_400_response(self, msg: str) -> None:
            if not (self._refused or self.transport.is_closing()):  # not after a refusal already sent
                super().send_400_response(msg)

        def _arm_header_timer(self) -> None:
            self._cancel_header_timer()
            self._header_timer = self.loop.call_later(timeout, self._headers_timed_out)

        def _cancel_header_timer(self) -> None:
            if self._header_timer is not None:
                self._header_timer.cancel()
                self._header_timer = None

        def _headers_timed_out(self) -> None:
            self._header_timer = None
            if self._in_headers and not self.transport.is_closing():
                self._refuse(E.RequestTimeout(f"the request headers did not arrive within {timeout:g} s"))

        def _refuse(self, error: E.EmberError | None) -> None:
            self._cancel_header_timer()
            self._in_headers = False
            if self._refused or self.transport.is_closing():
                return
            self._refused = True
            cycle = self.cycle
            if cycle is not None and not cycle.response_complete:
                if cycle.response_started:  # the application answers already: no second status line
                    self.transport.close()
                    return
                # The application reading this body is told the client went away; what it answers is dropped.
                cycle.disconnected = True
                cycle.message_event.set()
            if error is not None:
                self.transport.write(refusal(error))
            if hold > 0:
                self.flow.pause_reading()
                self._release = self.loop.call_later(hold, self.transport.close)
            else:
                self.transport.close()

    return EdgeHttpProtocol


class EdgeMiddleware:
    """Body size and time limits, and the credentials of a signed path checked before its body is read."""

    def __init__(self, app: ASGIApp, services: Services) -> None:
        self.app = app
        self.services = services
        settings = services.settings
        self.max_body = settings.max_body_bytes
        self.max_headers = settings.max_headers
        self.body_timeout = settings.body_timeout

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = scope["headers"]
        length: int | None = None
        chunked = False
        for name, value in headers:
            if name == b"content-length":
                length = int(value) if value.isdigit() else -1
            elif name == b"transfer-encoding":
                chunked = True
        early = self._check_headers(scope, headers, length, chunked)
        if early is not None:
            await error_response(early)(scope, receive, _closing(send))
            return
        if not chunked and not length:
            await self.app(scope, receive, send)
            return
        await self._with_body_limits(scope, receive, send)

    def _check_headers(
        self, scope: Scope, headers: list[tuple[bytes, bytes]], length: int | None, chunked: bool
    ) -> E.EmberError | None:
        if len(headers) > self.max_headers:  # another server than EdgeHttpProtocol (it stops at the limit)
            return E.HeadersTooLarge(f"more than {self.max_headers} header fields")
        if length is not None and length < 0:
            return E.MalformedRequestBody("Content-Length is not a number")
        if length is not None and length > self.max_body:
            return E.PayloadTooLarge(f"the body is over {self.max_body} bytes")
        if (chunked or length) and scope["path"].startswith(_SIGNED_PATHS):
            return self._preflight(scope, headers)
        return None

    def _preflight(self, scope: Scope, raw: list[tuple[bytes, bytes]]) -> E.EmberError | None:
        """Everything about the caller that needs neither the body nor the database."""
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in raw}
        if headers.get("x-auth-token"):
            return None  # known only by the database: checked before the endpoint runs
        if not headers.get("authorization"):
            return E.Unauthenticated("no credentials: send X-Auth-Token, or sign the request with AK/SK")
        request = aksk.SignedRequest(scope["method"], "", "", headers, b"")
        svc = self.services
        try:
            scope[PREFLIGHT] = aksk.preflight(request, svc.clock.now(), svc.settings.sdk_date_skew)
        except E.Unauthenticated as exc:
            return exc
        return None

    async def _with_body_limits(self, scope: Scope, receive: Receive, send: Send) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.body_timeout
        refused: list[E.EmberError] = []
        received = 0
        complete = False

        async def limited_receive() -> Message:
            nonlocal received, complete
            if complete or refused:
                return await receive()  # after the body: waiting for a disconnect is not bounded
            try:
                async with asyncio.timeout_at(deadline):
                    message = await receive()
            except TimeoutError:
                refused.append(E.RequestTimeout(f"the request body did not arrive within {self.body_timeout:g} s"))
                raise refused[-1] from None
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body:
                    refused.append(E.PayloadTooLarge(f"the body is over {self.max_body} bytes"))
                    raise refused[-1]
                complete = not message.get("more_body", False)
            return message

        started = False

        async def guarded_send(message: Message) -> None:
            # Whatever the endpoint made of a refused body (FastAPI turns a failed read into a 400), the
            # caller is told the real reason.
            nonlocal started
            if refused:
                if not started:
                    started = True
                    await error_response(refused[0])(scope, receive, _closing(send))
                return
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, limited_receive, guarded_send)
        except E.EmberError:
            if not refused:
                raise
        if refused and not started:
            await error_response(refused[0])(scope, receive, _closing(send))


def _closing(send: Send) -> Send:
    """``send`` with ``Connection: close`` on the response: the rest of a refused body is not read."""

    async def closing_send(message: Message) -> None:
        if message["type"] == "http.response.start":
            message = {**message, "headers": [*message.get("headers", []), (b"connection", b"close")]}
        await send(message)

    return closing_send


def server_config(app: Any, settings: Settings, **overrides: Any) -> uvicorn.Config:
    """uvicorn's configuration for Ember: the edge protocol, the concurrency limit, trusted proxies."""
    import uvicorn

    trusted = trusted_proxy_list(settings.trusted_proxies)
    options: dict[str, Any] = {
        "host": settings.host,
        "port": settings.port,
        "http": http_protocol(settings),
        "limit_concurrency": settings.max_concurrency,
        # X-Forwarded-For is believed only from the configured proxies; uvicorn's own default trusts
        # 127.0.0.1, so anything on the host (or a proxy that passes the header on) could set client_ip.
        "proxy_headers": bool(trusted),
        "forwarded_allow_ips": trusted or [],
        "log_level": "info",
        "access_log": False,
    }
    options.update(overrides)
    return uvicorn.Config(app, **options)
