"""Delivery and the outbound policy (issue 11 item 4): every attempt resolves the callback URL's host again,
judges every answer, and posts to a vetted address, never to a second resolution; a refusal is recorded in
the event's ``last_error`` and logged without the URL's secrets. ``Host``, and for https the SNI and the
certificate check, keep the URL's host name.

Names here (``hooks.test``, ``hooks.example.net``) do not resolve on this machine: only the test's resolver
knows them, so a delivery that reached the receiver went to the address that resolver gave.
"""

from __future__ import annotations

import datetime
import ipaddress
import logging
import ssl
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from emberrtc.callbacks.delivery import CallbackDelivery
from emberrtc.domain.clock import ManualClock
from emberrtc.domain.outbound import HTTP_SCHEMES, AllowList, OutboundPolicy
from emberrtc.domain.retry import Backoff
from emberrtc.domain.secrets import SecretBox
from emberrtc.store.database import Database
from tests.callbacks.test_delivery import enqueue, event
from tests.support.database import seed_app
from tests.support.http_receiver import HttpReceiver
from tests.support.waiting import until


class Resolver:
    def __init__(self, answers: dict[str, list[str]]) -> None:
        self.answers = answers
        self.asked: list[str] = []

    def __call__(self, host: str, port: int) -> list[ipaddress.IPv4Address | ipaddress.IPv6Address]:
        self.asked.append(host)
        if host not in self.answers:
            raise OSError(-2, "Name or service not known")
        return [ipaddress.ip_address(a) for a in self.answers[host]]


def delivery_with(
    db: Database, box: SecretBox, clock: ManualClock, policy: OutboundPolicy, **kw: object
) -> CallbackDelivery:
    return CallbackDelivery(db, box, clock, backoff=Backoff(1.0, 600.0, jitter=0.0), timeout=5.0, outbound=policy, **kw)  # type: ignore[arg-type]


@pytest.fixture
async def running() -> AsyncIterator[list[CallbackDelivery]]:
    started: list[CallbackDelivery] = []
    yield started
    for d in started:
        await d.stop()


async def test_a_callback_goes_to_the_vetted_address_with_its_host_name(
    db: Database, box: SecretBox, clock: ManualClock, receiver: HttpReceiver, running: list[CallbackDelivery]
) -> None:
    resolver = Resolver({"hooks.test": ["127.0.0.1"]})
    d = delivery_with(db, box, clock, OutboundPolicy(AllowList.parse("127.0.0.1"), resolver))
    running.append(d)
    d.start()
    app = await seed_app(db, box, callback_url=f"http://hooks.test:{receiver.port}/cb?token=t")
    event_id = await enqueue(db, app, "j1", "CLOUD_RECORD_OVER", clock.now())
    d.wake()
    await until(lambda: receiver.received, what="the callback")
    (r,) = receiver.received
    assert r.headers["host"] == f"hooks.test:{receiver.port}" and r.path == "/cb?token=t"
    assert resolver.asked == ["hooks.test"]
    await until(lambda: _finished(db, event_id), what="the delivery recorded")


async def _finished(db: Database, event_id: str) -> bool:
    return (await event(db, event_id)).finished


async def test_a_name_that_turns_private_after_saving_is_refused_at_delivery_and_reported(
    db: Database,
    box: SecretBox,
    clock: ManualClock,
    receiver: HttpReceiver,
    running: list[CallbackDelivery],
    caplog: pytest.LogCaptureFixture,
) -> None:
    url = f"http://hooks.example.net:{receiver.port}/cb?token=s3cret-token"
    resolver = Resolver({"hooks.example.net": ["93.184.215.14"]})
    policy = OutboundPolicy(AllowList(), resolver)  # nothing but public addresses
    await policy.check(url, HTTP_SCHEMES)  # public when the URL is saved (no connection is made)
    app = await seed_app(db, box, callback_url=url)
    resolver.answers["hooks.example.net"] = ["127.0.0.1"]  # the receiver's address: a rebinding answer
    d = delivery_with(db, box, clock, policy)
    running.append(d)
    event_id = await enqueue(db, app, "j1", "CLOUD_RECORD_OVER", clock.now())
    with caplog.at_level(logging.WARNING, logger="emberrtc.callbacks.delivery"):
        assert await d.run_once() == 1
    ev = await event(db, event_id)
    assert ev.last_error == (
        "refused by the outbound policy: host hooks.example.net resolves to 127.0.0.1 (loopback), which is not an "
        "allowed destination (the operator may allow it with EMBER_OUTBOUND_ALLOW)"
    )
    assert ev.attempts == 1 and not ev.finished and ev.last_status is None  # retried later (DNS may change)
    assert receiver.received == []  # nothing reached the loopback receiver
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "resolves to 127.0.0.1 (loopback)" in logged and "s3cret-token" not in logged


async def test_an_address_the_policy_no_longer_allows_is_refused_at_delivery(
    db: Database, box: SecretBox, clock: ManualClock, receiver: HttpReceiver
) -> None:
    app = await seed_app(db, box, callback_url=receiver.url + "/cb")  # saved when 127.0.0.1 was allowed
    d = delivery_with(db, box, clock, OutboundPolicy(AllowList.parse("10.0.0.0/8")))
    event_id = await enqueue(db, app, "j1", "CLOUD_RECORD_OVER", clock.now())
    try:
        assert await d.run_once() == 1
    finally:
        await d.stop()
    assert "address 127.0.0.1 (loopback)" in str((await event(db, event_id)).last_error)
    assert receiver.received == []


# --- https: SNI and the certificate check are for the URL's host name, not the address -------------------


def _certificate(tmp: Path, name: str) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """A server context with a certificate for ``name`` from a fresh CA, and a client context trusting it."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    leaf = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    cert_file, key_file = tmp / f"{name}.pem", tmp / f"{name}.key"
    cert_file.write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(cert_file, key_file)
    client = ssl.create_default_context(cadata=ca.public_bytes(serialization.Encoding.PEM).decode())
    return server, client


@pytest.mark.parametrize(("certified", "delivered"), [("hooks.test", True), ("other.test", False)])
async def test_https_keeps_sni_and_the_certificate_check_for_the_host_name(
    db: Database, box: SecretBox, clock: ManualClock, tmp_path: Path, certified: str, delivered: bool
) -> None:
    server_ctx, client_ctx = _certificate(tmp_path, certified)
    receiver = await HttpReceiver(ssl=server_ctx).start()
    resolver = Resolver({"hooks.test": ["127.0.0.1"]})
    d = delivery_with(
        db,
        box,
        clock,
        OutboundPolicy(AllowList.parse("127.0.0.1"), resolver),
        transport=httpx.AsyncHTTPTransport(verify=client_ctx),
    )
    try:
        app = await seed_app(db, box, callback_url=f"https://hooks.test:{receiver.port}/cb")
        event_id = await enqueue(db, app, "j1", "CLOUD_RECORD_OVER", clock.now())
        assert await d.run_once() == 1
    finally:
        await d.stop()
        await receiver.stop()
    assert receiver.server_names == ["hooks.test"]  # SNI names the host, though the connection went to 127.0.0.1
    ev = await event(db, event_id)
    if delivered:
        assert ev.finished and ev.last_status == 200
        (r,) = receiver.received
        assert r.headers["host"] == f"hooks.test:{receiver.port}"
    else:  # a certificate for another name is not accepted for hooks.test
        assert not ev.finished and "CERTIFICATE_VERIFY_FAILED" in str(ev.last_error)
        assert receiver.received == []
