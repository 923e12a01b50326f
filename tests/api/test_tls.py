"""The listener's certificate: loaded once, reloaded in place (new handshakes see it), kept on a bad reload."""

from __future__ import annotations

import asyncio
import datetime as dt
import shutil
import ssl
from pathlib import Path

import pytest
from cryptography import x509

from emberrtc.api.tls import CertificateError, ServerCertificate, read_certificate
from tests.support.tls import TestCA


async def _served_serial(port: int, ca: Path) -> int:
    context = ssl.create_default_context(cafile=str(ca))
    _, writer = await asyncio.open_connection("127.0.0.1", port, ssl=context, server_hostname="localhost")
    der = writer.get_extra_info("ssl_object").getpeercert(binary_form=True)
    writer.close()
    await writer.wait_closed()
    return x509.load_der_x509_certificate(der).serial_number


async def test_reload_serves_the_new_certificate_on_the_same_listener(tmp_path: Path) -> None:
    ca = TestCA(tmp_path / "ca")
    first = ca.issue("first", dns=("localhost",))
    live_cert, live_key = tmp_path / "live.pem", tmp_path / "live.key"
    shutil.copy(first.cert, live_cert)
    shutil.copy(first.key, live_key)
    certificate = ServerCertificate(live_cert, live_key)
    assert certificate.info.serial == first.serial and certificate.info.names == ("localhost",)

    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while line := await reader.readline():
            writer.write(line)
            await writer.drain()
        writer.close()

    server = await asyncio.start_server(echo, "127.0.0.1", 0, ssl=certificate.context)
    port = server.sockets[0].getsockname()[1]
    try:
        assert await _served_serial(port, ca.pem) == first.serial
        context = ssl.create_default_context(cafile=str(ca.pem))
        reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=context, server_hostname="localhost")
        # Renewed files: the same context, the same listening socket, the new certificate.
        second = ca.issue("second", dns=("localhost",))
        shutil.copy(second.cert, live_cert)
        shutil.copy(second.key, live_key)
        assert certificate.reload().serial == second.serial
        assert await _served_serial(port, ca.pem) == second.serial
        # The connection opened before the reload goes on, with the certificate it negotiated.
        writer.write(b"still here\n")
        assert await asyncio.wait_for(reader.readline(), 5) == b"still here\n"
        old = writer.get_extra_info("ssl_object").getpeercert(binary_form=True)
        assert x509.load_der_x509_certificate(old).serial_number == first.serial
        writer.close()

        # A certificate whose key does not match is refused, and the served one stays.
        third = ca.issue("third", dns=("localhost",))
        shutil.copy(third.cert, live_cert)
        with pytest.raises(CertificateError, match="key does not belong to the certificate"):
            certificate.reload()
        assert certificate.info.serial == second.serial
        assert await _served_serial(port, ca.pem) == second.serial
        # reload_logged (the SIGHUP handler) says so in the log instead of raising.
        certificate.reload_logged()
        assert await _served_serial(port, ca.pem) == second.serial
    finally:
        server.close()
        await server.wait_closed()


def test_unusable_files_are_named(tmp_path: Path) -> None:
    ca = TestCA(tmp_path)
    good = ca.issue("good", dns=("rtc.test",), ips=("192.0.2.7",), days=30)
    with pytest.raises(CertificateError, match="not found"):
        ServerCertificate(tmp_path / "missing.pem", good.key)
    (tmp_path / "junk.pem").write_text("not a certificate")
    with pytest.raises(CertificateError, match="junk.pem"):
        ServerCertificate(tmp_path / "junk.pem", good.key)
    with pytest.raises(CertificateError, match="is a directory|cannot read"):
        read_certificate(tmp_path)
    info = read_certificate(good.cert)
    assert info.names == ("rtc.test",) and info.ip_addresses == ("192.0.2.7",)
    assert 29.9 < info.days_left(dt.datetime.now(dt.UTC)) <= 30
