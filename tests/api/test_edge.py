"""The HTTP edge (api/edge.py): what a request costs before its caller is known (issue 11, items 1 and 2).

Each test talks raw HTTP/1.1 over a loopback socket, as an abusive client would, with every loop bounded by
a byte count and every wait by a socket deadline. The server is a real uvicorn with Ember's configuration
(``server_config``), run with small limits and timeouts so the tests are quick.
"""

from __future__ import annotations

import json
import logging
import socket
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import httpx
import pytest

from emberrtc.config import Settings
from tests.conftest import make_settings, make_tenant
from tests.support.server import ServerThread

MAX_BODY = 64 * 1024
HEADER_TIMEOUT = 1.0
BODY_TIMEOUT = 1.5
CONCURRENCY = 8
HOLD = 0.6


@pytest.fixture(scope="module")
def edge(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerThread]:
    settings = replace(
        make_settings(tmp_path_factory.mktemp("edge")),
        max_body_bytes=MAX_BODY,
        max_header_bytes=16 * 1024,
        max_headers=50,
        header_timeout=HEADER_TIMEOUT,
        body_timeout=BODY_TIMEOUT,
        max_concurrency=CONCURRENCY,
        refusal_hold=HOLD,
    )
    srv = ServerThread(settings).start()
    try:
        yield srv
    finally:
        srv.stop()


def connect(srv: ServerThread, timeout: float = 5.0) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", srv.port), timeout=timeout)
    sock.settimeout(timeout)
    return sock


def read_response(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    """Status, headers and body of one response; the socket's timeout is the deadline for each read."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, f"closed before a response: {data!r}"
        data += chunk
    head, body = data.split(b"\r\n\r\n", 1)
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {k.lower(): v.strip() for k, v in (line.split(":", 1) for line in lines[1:])}
    length = int(headers.get("content-length", "0"))
    while len(body) < length:
        chunk = sock.recv(65536)
        assert chunk
        body += chunk
    return status, headers, body


def closed_by_server(sock: socket.socket) -> bool:
    """True once the server has closed (EOF or reset within the socket's deadline)."""
    try:
        while sock.recv(65536):
            pass
    except ConnectionResetError:
        pass
    return True


def send_all_until_refused(sock: socket.socket, chunk: bytes, most: int) -> int:
    """Send ``chunk`` repeatedly up to ``most`` bytes; stop when the server stops taking them."""
    sent = 0
    try:
        while sent < most:
            sock.sendall(chunk)
            sent += len(chunk)
    except (BrokenPipeError, ConnectionResetError, TimeoutError):
        pass
    return sent


def error_of(body: bytes) -> str:
    return str(json.loads(body)["error_code"])


def test_body_over_the_limit_is_refused_from_content_length_without_reading_it(edge: ServerThread) -> None:
    sock = connect(edge)
    # An unauthenticated sign-in announcing 1 GB: the answer comes before any body byte is sent.
    sock.sendall(b"POST /v3/auth/tokens HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n")
    sock.sendall(b"Content-Length: 1073741824\r\n\r\n")
    status, headers, body = read_response(sock)
    assert status == 413
    assert error_of(body) == "RTC.00001032"
    assert headers["connection"] == "close" and headers["x-request-id"]
    assert closed_by_server(sock)


def test_a_refused_connection_is_answered_at_once_and_closed_after_the_hold(edge: ServerThread) -> None:
    """A client that reconnects as soon as it is refused gets one refusal per connection per ``refusal_hold``."""
    for request in (
        b"POST /v3/auth/tokens HTTP/1.1\r\nHost: x\r\nContent-Length: 1073741824\r\n\r\n",  # 413
        b"GET /v2/apps HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * (32 * 1024),  # 431
    ):
        sock = connect(edge)
        start = time.monotonic()
        sock.sendall(request)
        status, headers, _ = read_response(sock)
        answered = time.monotonic() - start
        assert status in (413, 431) and headers["connection"] == "close"
        assert closed_by_server(sock)
        closed = time.monotonic() - start
        assert answered < HOLD / 2 and closed >= HOLD * 0.9, (answered, closed)
    assert Settings().refusal_hold == 1.0


def test_streamed_body_is_cut_off_at_the_limit(edge: ServerThread, caplog: pytest.LogCaptureFixture) -> None:
    sock = connect(edge)
    sock.sendall(b"POST /v3/auth/tokens HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
    chunk = b"4000\r\n" + b"x" * 0x4000 + b"\r\n"  # 16 KiB chunks, never a last one
    sent = send_all_until_refused(sock, chunk, most=64 * MAX_BODY)
    status, _, body = read_response(sock)
    assert status == 413 and error_of(body) == "RTC.00001032"
    # The server stopped reading soon after the limit (socket buffers hold a few hundred KiB at most).
    assert sent < 64 * MAX_BODY
    assert closed_by_server(sock)
    # The sign-in reading that body was told the client went away: no traceback, no "invalid request".
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []


def test_a_body_after_an_early_answer_is_cut_off_without_a_second_answer(edge: ServerThread) -> None:
    """An unknown API is answered 404 before its body is read; the body that keeps coming is not read past the
    limit (nor answered again): the connection is closed."""
    sock = connect(edge)
    sock.sendall(b"POST /v2/no-such-api HTTP/1.1\r\nHost: x\r\nX-Auth-Token: t\r\nTransfer-Encoding: chunked\r\n\r\n")
    received = sock.recv(65536)  # the answer, before any body byte is sent
    assert received.startswith(b"HTTP/1.1 404 "), received
    chunk = b"4000\r\n" + b"x" * 0x4000 + b"\r\n"
    sent = send_all_until_refused(sock, chunk, most=64 * MAX_BODY)
    assert sent < 64 * MAX_BODY
    try:
        while data := sock.recv(65536):
            received += data
    except ConnectionResetError:
        pass
    assert received.startswith(b"HTTP/1.1 404 ") and received.count(b"HTTP/1.1 ") == 1, received


def test_bad_credentials_on_a_signed_path_are_refused_before_the_body(edge: ServerThread) -> None:
    for auth in (
        b"",
        b"Authorization: junk\r\n",
        # well formed, but dated 2000: refused without a database look-up, before the body
        b"Authorization: SDK-HMAC-SHA256 Access=AK, SignedHeaders=host;x-sdk-date, Signature=00\r\n"
        b"X-Sdk-Date: 20000101T000000Z\r\n",
    ):
        sock = connect(edge)
        head = b"POST /v2/apps HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n" + auth
        sock.sendall(head + f"Content-Length: {MAX_BODY}\r\n\r\n".encode())
        status, _, body = read_response(sock)  # no body byte was sent
        assert status == 401, body
        assert error_of(body) == "RTC.00001001"
        sock.close()


def test_headers_over_the_size_limit_get_431(edge: ServerThread) -> None:
    sock = connect(edge)
    sock.sendall(b"GET /v2/apps HTTP/1.1\r\nHost: x\r\nX-Big: ")
    sent = send_all_until_refused(sock, b"a" * 4096, most=200 * 1024 * 1024)
    status, headers, body = read_response(sock)
    assert status == 431 and error_of(body) == "RTC.00001033"
    assert headers["connection"] == "close"
    assert sent < 50 * 1024 * 1024  # cut off long before the 200 MB the client had


def test_too_many_header_fields_get_431(edge: ServerThread) -> None:
    sock = connect(edge)
    fields = b"".join(b"X-H%d: 1\r\n" % i for i in range(60))  # 1 KiB in all: under the size limit
    sock.sendall(b"GET /v2/apps HTTP/1.1\r\nHost: x\r\n" + fields + b"\r\n")
    status, _, body = read_response(sock)
    assert status == 431 and error_of(body) == "RTC.00001033"


def test_slow_headers_and_idle_connections_are_closed(edge: ServerThread) -> None:
    slow, idle = connect(edge), connect(edge)
    started = time.monotonic()
    slow.sendall(b"GET /v2/apps HTTP/1.1\r\n")  # and nothing more
    status, _, body = read_response(slow)
    assert status == 408 and error_of(body) == "RTC.00001031"
    assert time.monotonic() - started < HEADER_TIMEOUT + 2
    assert closed_by_server(slow)
    status, _, _ = read_response(idle)  # connected, never sent a byte
    assert status == 408
    assert closed_by_server(idle)


def test_slow_body_gets_408(edge: ServerThread) -> None:
    sock = connect(edge)
    started = time.monotonic()
    sock.sendall(b"POST /v3/auth/tokens HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{")
    status, _, body = read_response(sock)
    assert status == 408 and error_of(body) == "RTC.00001031"
    assert BODY_TIMEOUT <= time.monotonic() - started < BODY_TIMEOUT + 2


def test_connections_past_the_concurrency_limit_get_503(edge: ServerThread) -> None:
    held = [connect(edge) for _ in range(CONCURRENCY)]
    for sock in held:  # each answered once, so the server holds all of them (kept alive, idle)
        sock.sendall(b"GET /v2/apps HTTP/1.1\r\nHost: x\r\n\r\n")
        assert read_response(sock)[0] in (401, 503)
    try:
        r = httpx.get(f"{edge.url}/v2/apps", timeout=5)
        assert r.status_code == 503
    finally:
        for sock in held:
            sock.close()
    # Once they are gone, requests are served again (the server counts connections as they close).
    deadline = time.monotonic() + 5
    while httpx.get(f"{edge.url}/v2/apps", timeout=5).status_code == 503:
        assert time.monotonic() < deadline, "still refusing after the connections closed"


def test_requests_within_the_limits_work(edge: ServerThread, tmp_path: Path) -> None:
    tenant = make_tenant(edge)
    body = {
        "auth": {
            "identity": {
                "methods": ["password"],
                "password": {
                    "user": {"name": tenant.name, "password": tenant.password, "domain": {"name": tenant.name}}
                },
            }
        }
    }
    r = httpx.post(f"{edge.url}/v3/auth/tokens", json=body)
    assert r.status_code == 201, r.text
    token = r.headers["X-Subject-Token"]
    # A body just under the limit reaches validation (400 for its content, not 413).
    name = "n" * 128
    r = httpx.post(
        f"{edge.url}/v2/apps", json={"app_name": name, "pad": "x" * (MAX_BODY - 200)}, headers={"X-Auth-Token": token}
    )
    assert r.status_code == 201, r.text
