"""``ember serve`` over TLS as a real process: HTTPS and WSS, SIGHUP reloads the certificate on the same
listener, and the public URL is derived or the start refused (no media plane: EMBER_MEDIA_ENABLED=false)."""

from __future__ import annotations

import asyncio
import json
import shutil
import signal
import ssl
import subprocess
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from websockets.asyncio.client import connect

from emberrtc.client import RoomClient
from emberrtc.client.room import RoomError
from tests.support.ember_serve import EMBER, EmberServe
from tests.support.server import free_port
from tests.support.tls import ServerFiles, TestCA
from tests.support.waiting import until

NO_MEDIA = {"EMBER_MEDIA_ENABLED": "false"}


def _install(files: ServerFiles, folder: Path) -> tuple[Path, Path]:
    """Copy a certificate and key to the paths the server is configured with (as a renewal does)."""
    folder.mkdir(exist_ok=True)
    cert, key = folder / "fullchain.pem", folder / "privkey.pem"
    shutil.copy(files.cert, cert)
    shutil.copy(files.key, key)
    return cert, key


async def _serial(port: int, ca: Path) -> int:
    context = ssl.create_default_context(cafile=str(ca))
    _, writer = await asyncio.open_connection("127.0.0.1", port, ssl=context, server_hostname="127.0.0.1")
    der = writer.get_extra_info("ssl_object").getpeercert(binary_form=True)
    writer.close()
    await writer.wait_closed()
    return x509.load_der_x509_certificate(der).serial_number


async def test_https_wss_and_sighup_reload(tmp_path: Path) -> None:
    ca = TestCA(tmp_path / "ca")
    first = ca.issue("first", ips=("127.0.0.1",))
    cert, key = _install(first, tmp_path / "tls")
    server = EmberServe(
        tmp_path / "data", env=NO_MEDIA, serve_args=["--tls-cert", str(cert), "--tls-key", str(key)], ca=ca.pem
    )
    await server.start()
    try:
        async with httpx.AsyncClient(verify=server.verify(), trust_env=False) as http:
            for path in ("/", "/sdk/ember-rtc.js", "/demo", "/openapi.json"):
                assert (await http.get(f"{server.url}{path}")).status_code == 200, path
        # Plain HTTP on the TLS port gets nothing.
        with pytest.raises(httpx.TransportError):
            async with httpx.AsyncClient(trust_env=False) as plain:
                await plain.get(f"http://127.0.0.1:{server.port}/", timeout=5)
        # The signalling WebSocket over TLS answers (an unsigned join is refused by Ember, not by TLS).
        ws_url = f"wss://127.0.0.1:{server.port}/v1/rtc/signalling"
        async with connect(ws_url, ssl=server.verify(), proxy=None) as ws:
            await ws.send(json.dumps({"type": "join", "id": 1, "app_id": "x" * 32, "room_id": "r", "user_id": "u"}))
            answer = json.loads(await asyncio.wait_for(ws.recv(), 10))
        assert answer["type"] == "error" and answer["code"].startswith("RTC."), answer
        assert "downloads at https://127.0.0.1:" in server.output()
        # The Python client (and ember bot) speak WSS to an https:// server, trusting SSL_CERT_FILE's CAs: the
        # join reaches Ember (refused: the app does not exist), where without the CA it fails verification.
        with pytest.MonkeyPatch.context() as env:
            env.setenv("SSL_CERT_FILE", str(ca.pem))
            with pytest.raises(RoomError) as refused:
                await RoomClient.join(server.url, app_id="a" * 32, room_id="r", user_id="u", app_key="k")
            assert refused.value.code.startswith("RTC."), refused.value
            env.setenv("SSL_CERT_FILE", str(tmp_path / "no-such-bundle.pem"))
            with pytest.raises(ssl.SSLCertVerificationError):
                await RoomClient.join(server.url, app_id="a" * 32, room_id="r", user_id="u", app_key="k")

        # A renewed certificate and SIGHUP: the same process and port, new connections see the new serial.
        assert await _serial(server.port, ca.pem) == first.serial
        second = ca.issue("second", ips=("127.0.0.1",))
        _install(second, tmp_path / "tls")
        assert server.proc is not None
        server.proc.send_signal(signal.SIGHUP)

        async def renewed() -> bool:
            return await _serial(server.port, ca.pem) == second.serial

        await until(renewed, within=10, what="the new certificate to be served")
        server.check_alive()
        assert f"serial {second.serial:x}" in server.output()

        # A broken renewal (key of another certificate) is refused: the server keeps serving the last good one.
        shutil.copy(ca.issue("third", ips=("127.0.0.1",)).key, key)
        server.proc.send_signal(signal.SIGHUP)
        await until(lambda: "TLS certificate not reloaded" in server.output(), within=10, what="the refusal")
        assert await _serial(server.port, ca.pem) == second.serial
        server.check_alive()
    finally:
        assert server.stop() == 0


def _serve(tmp_path: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    server = EmberServe(tmp_path / "data", env={**NO_MEDIA, **(env or {})})
    return subprocess.run(
        [EMBER, "serve", "--data-dir", str(tmp_path / "data"), *args],
        capture_output=True,
        text=True,
        env=server.env(),
        timeout=30,
    )


def test_a_wildcard_address_without_a_public_url_is_refused(tmp_path: Path) -> None:
    r = _serve(tmp_path, "--host", "0.0.0.0", "--port", str(free_port()))
    assert r.returncode == 2
    assert "set EMBER_PUBLIC_URL to the URL applications and browsers use" in r.stderr, r.stderr


async def test_a_wildcard_address_takes_its_public_url_from_the_certificate(tmp_path: Path) -> None:
    ca = TestCA(tmp_path / "ca")
    files = ca.issue("named", dns=("rtc.test",), ips=("127.0.0.1",), days=5)
    server = EmberServe(
        tmp_path / "data",
        env=NO_MEDIA,
        serve_args=["--host", "0.0.0.0", "--tls-cert", str(files.cert), "--tls-key", str(files.key)],
        ca=ca.pem,
    )
    await server.start()
    try:
        assert f"downloads at https://rtc.test:{server.port}," in server.output()
        # A certificate near its end is named in the log at start.
        assert f"the TLS certificate {files.cert} expires in 4.9 days" in server.output() or "expires in 5.0 days" in (
            server.output()
        )
    finally:
        server.stop()


async def test_sighup_without_tls_does_not_end_the_server(tmp_path: Path) -> None:
    # systemctl reload sends SIGHUP whatever the settings; without a handler it would end the server.
    server = EmberServe(tmp_path / "data", env=NO_MEDIA)
    await server.start()
    try:
        assert server.proc is not None
        server.proc.send_signal(signal.SIGHUP)
        await until(lambda: "SIGHUP: no TLS certificate to reload" in server.output(), within=10, what="the log")
        async with httpx.AsyncClient(trust_env=False) as http:
            assert (await http.get(f"{server.url}/")).status_code == 200
        server.check_alive()
    finally:
        assert server.stop() == 0


def test_bad_tls_files_stop_the_start_with_their_name(tmp_path: Path) -> None:
    ca = TestCA(tmp_path / "ca")
    files = ca.issue("server", ips=("127.0.0.1",))
    other = ca.issue("other", ips=("127.0.0.1",))
    r = _serve(tmp_path, "--tls-cert", str(files.cert), "--tls-key", str(other.key))
    assert r.returncode == 2 and "the key does not belong to the certificate" in r.stderr, r.stderr
    r = _serve(tmp_path, "--tls-cert", str(files.cert))
    assert r.returncode == 2 and "tls_cert and tls_key go together" in r.stderr, r.stderr
    r = _serve(tmp_path, "--tls-cert", str(tmp_path / "nope.pem"), "--tls-key", str(files.key))
    assert r.returncode == 2 and "nope.pem" in r.stderr, r.stderr
