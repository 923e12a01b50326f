"""The embedded TURN relay (coturn) with a real Ember, Janus and Python clients in network namespaces.

The clients run in a network namespace of their own (made here), joined to the test namespace by a veth
pair (10.78.0.2 on their side, 10.78.0.1 on the test namespace's), with a route to the media addresses.
nftables in the clients' namespace drops what a firewall would: UDP to Janus's media address (10.77.0.1),
or every UDP packet. The relay listens on the test namespace's other address (10.77.0.2) and relays from
Janus's address to Janus only. Chromium, which runs in the test namespace beside Janus, is fenced by an
nftables rule there instead (UDP to Janus only from and to the relay's ports). The relay is also run alone:
expired and forged credentials, peers other than Janus, supervision, and ``ember doctor``'s check of it.
Nothing leaves loopback and the namespaces this run made.
"""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import json
import os
import re
import shutil
import signal
import stat
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from aioice import stun, turn
from tests.conftest import make_settings
from tests.media.conftest import MEDIA_IP, PEER_IP, MediaApp, new_app
from tests.media.media_checks import assert_colour
from tests.support.server import ServerThread
from tests.support.waiting import until

from emberrtc.client.ice import probe_turn
from emberrtc.config import Settings
from emberrtc.media.janus_process import Backoff
from emberrtc.media.turn_config import TurnConfig
from emberrtc.media.turn_credentials import turn_credential
from emberrtc.media.turn_process import TurnProcess, relay_pids

pytestmark = [
    pytest.mark.media,
    pytest.mark.skipif(shutil.which("turnserver") is None, reason="coturn not installed: apt-get install coturn"),
    pytest.mark.skipif(shutil.which("nft") is None, reason="nftables not installed: apt-get install nftables"),
]

ROOT = Path(__file__).resolve().parents[2]
SECRET = "test-shared-secret"
#: The relay-only tests' own relay (the module's Ember runs one on 3478 meanwhile).
RELAY = (PEER_IP, 3479)
CLIENT_SIDE, SERVER_SIDE = "10.78.0.2", "10.78.0.1"
#: The test CA of the module's relay certificate (set by the turn_server fixture).
CA_FILE: list[Path] = []
UDP_URL, TCP_URL, TLS_URL = (
    f"turn:{PEER_IP}:3478?transport=udp",
    f"turn:{PEER_IP}:3478?transport=tcp",
    f"turns:{PEER_IP}:443?transport=tcp",  # EMBER_TURN_TLS_PORT's default while the API is on another port
)


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True)


@contextmanager
def client_namespace(nft_rules: str) -> Iterator[str]:
    """A network namespace for clients: a veth pair to this one, a route to the media addresses, and
    ``nft_rules`` (the body of an output chain) dropping what a firewall between them would."""
    name = f"ember-turnc-{os.getpid()}"
    here, there = f"tcs{os.getpid() % 100000}", f"tcc{os.getpid() % 100000}"
    _ip("netns", "add", name)
    try:
        _ip("link", "add", here, "type", "veth", "peer", "name", there, "netns", name)
        _ip("addr", "add", f"{SERVER_SIDE}/24", "dev", here)
        _ip("link", "set", here, "up")
        _ip("-n", name, "link", "set", "lo", "up")
        _ip("-n", name, "addr", "add", f"{CLIENT_SIDE}/24", "dev", there)
        _ip("-n", name, "link", "set", there, "up")
        _ip("-n", name, "route", "add", "10.77.0.0/24", "via", SERVER_SIDE)
        rules = (
            "table inet embertest {\n  chain out {\n    type filter hook output priority 0; policy accept;\n"
            f"    {nft_rules}\n  }}\n}}\n"
        )
        subprocess.run(["ip", "netns", "exec", name, "nft", "-f", "-"], input=rules.encode(), check=True)
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False)  # takes the veth pair with it


@contextmanager
def firewall_here(nft_rules: str) -> Iterator[None]:
    """``nft_rules`` (the body of an output chain) in this namespace, for the block's duration."""
    rules = (
        "table inet embertesthere {\n  chain out {\n    type filter hook output priority 0; policy accept;\n"
        f"    {nft_rules}\n  }}\n}}\n"
    )
    subprocess.run(["nft", "-f", "-"], input=rules.encode(), check=True)
    try:
        yield
    finally:
        subprocess.run(["nft", "delete", "table", "inet", "embertesthere"], check=False)


def make_certificate(folder: Path, ip: str) -> tuple[Path, Path, Path]:
    """A test CA (``ca.pem``) and a server certificate for ``ip`` it signed: (CA, certificate, key) files."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.UTC)
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Ember TURN test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, ip)]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(ip))]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    paths = folder / "ca.pem", folder / "relay.pem", folder / "relay.key"
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return paths


def run_peers(namespace: str, app: MediaApp, room: str) -> dict[str, Any]:
    """Two Python clients calling each other from ``namespace`` (tests/media/turn_peers.py), trusting the
    test CA that signed the relay's TLS certificate."""
    env = {**os.environ, "PYTHONPATH": f"{ROOT / 'src'}:{ROOT}", "SSL_CERT_FILE": str(CA_FILE[0])}
    result = subprocess.run(
        ["ip", "netns", "exec", namespace, sys.executable, "-m", "tests.media.turn_peers"]
        + [app.server.url, app.app_id, app.app_key, room],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=150,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    return dict(json.loads(result.stdout.strip().splitlines()[-1]))


#: The module's relay's ports (``EMBER_TURN_RELAY_PORTS``): below the kernel's ephemeral range, so that the
#: browser test's firewall, which lets UDP to Janus through only from and to these ports, cannot let a
#: browser's or Janus's own ephemeral port through by chance (50000-50999 did, now and then).
RELAY_PORTS = (20000, 20999)


def test_the_relays_ports_are_none_a_socket_is_given_by_chance() -> None:
    low, high = (int(p) for p in Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split())
    assert RELAY_PORTS[1] < low or RELAY_PORTS[0] > high, (RELAY_PORTS, low, high)


@pytest.fixture(scope="module")
def turn_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerThread]:
    """Ember with Janus on 10.77.0.1 and its embedded relay reached at 10.77.0.2, listening on 10.77.0.2."""
    data_dir = tmp_path_factory.mktemp("ember-turn")
    ca, cert, key = make_certificate(tmp_path_factory.mktemp("tls"), PEER_IP)
    CA_FILE[:] = [ca]
    settings = replace(
        make_settings(data_dir),
        media_enabled=True,
        media_ip=MEDIA_IP,
        turn="embedded",
        turn_host=PEER_IP,
        turn_relay_ports="{}-{}".format(*RELAY_PORTS),
        turn_tls_cert=str(cert),
        turn_tls_key=str(key),
    )
    server = ServerThread(settings, host=PEER_IP).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def turn_app(turn_server: ServerThread) -> Iterator[MediaApp]:
    app = new_app(turn_server)
    try:
        yield app
    finally:
        app.http.close()


def _relay_log(server: ServerThread) -> str:
    assert server.services is not None and server.services.turn_relay is not None
    return server.services.turn_relay.log_path.read_text(errors="replace")


def _assert_relayed(result: dict[str, Any], url: str) -> None:
    assert_colour(tuple(result["received"]["alice"]), (30, 60, 220))  # bob's camera
    assert_colour(tuple(result["received"]["bob"]), (220, 30, 30))  # alice's
    # Every PeerConnection's media went through the relay: its local candidate is the relayed one.
    assert set(result["pairs"]) == {"alice/publish", "alice/subscribe", "bob/publish", "bob/subscribe"}
    for name, pair in result["pairs"].items():
        assert pair is not None and pair["local"] == "relay", (name, pair)
    for urls in result["chosen"].values():
        assert urls == [url], result["chosen"]


async def _wait_peer_usage(server: ServerThread, username: str) -> list[tuple[int, int]]:
    """coturn's closing "peer usage" line of each of ``username``'s allocations that relayed anything: (bytes
    received from the peer, Janus, and bytes sent to it), once its publisher's and subscriber's are in."""
    pattern = re.compile(
        rf"peer usage: realm=<ember>, username=<{re.escape(username)}>, rp=\d+, rb=(\d+), sp=\d+, sb=(\d+)"
    )

    def usage() -> list[tuple[int, int]]:
        return [(int(m[1]), int(m[2])) for m in pattern.finditer(_relay_log(server)) if m[1] != "0" or m[2] != "0"]

    await until(lambda: len(usage()) >= 2, within=30, what=f"the relay's peer usage lines of {username}")
    return usage()


def test_relay_in_the_metrics(turn_app: MediaApp) -> None:
    text = turn_app.http.get("/metrics").text
    assert "ember_turn_up 1.0" in text and "ember_turn_restarts_total 0.0" in text


async def test_join_answer_hands_out_the_relay_with_a_time_limited_credential(turn_app: MediaApp) -> None:
    from emberrtc.client import RoomClient

    before = int(time.time())
    client = await RoomClient.join(
        turn_app.server.url, app_id=turn_app.app_id, room_id="ice", user_id="carol", app_key=turn_app.app_key
    )
    try:
        [server] = client.ice_servers
        assert server["urls"] == [UDP_URL, TCP_URL, TLS_URL]
        expiry, user = server["username"].split(":")
        assert user == client.session_id
        assert before + 24 * 3600 <= int(expiry) <= int(time.time()) + 24 * 3600
        # The credential is the relay's: it grants an allocation over UDP, TCP and TLS (trusting the test CA).
        assert await probe_turn(UDP_URL, server["username"], server["credential"])
        assert await probe_turn(TCP_URL, server["username"], server["credential"])
        os.environ["SSL_CERT_FILE"] = str(CA_FILE[0])
        try:
            assert await probe_turn(TLS_URL, server["username"], server["credential"])
        finally:
            del os.environ["SSL_CERT_FILE"]
        # Not with a credential made up by the client.
        assert not await probe_turn(UDP_URL, server["username"], "forged", within=5)
    finally:
        await client.leave()


async def test_clients_that_cannot_reach_janus_by_udp_call_through_the_relay(
    turn_server: ServerThread, turn_app: MediaApp
) -> None:
    with client_namespace(f'ip daddr {MEDIA_IP} meta l4proto udp counter drop comment "direct media"') as ns:
        result = await asyncio.to_thread(run_peers, ns, turn_app, "relayed-udp")
        dropped = await asyncio.to_thread(
            subprocess.run, ["ip", "netns", "exec", ns, "nft", "list", "ruleset"], capture_output=True, text=True
        )
    _assert_relayed(result, UDP_URL)
    # The firewall did drop direct attempts (ICE checks to Janus's host candidates): the rule had work to do.
    packets = re.search(r"counter packets (\d+)", dropped.stdout)
    assert packets is not None and int(packets[1]) > 0, dropped.stdout
    # The relay's log: each client's allocations carried its media to Janus (publisher) and Janus's to it
    # (subscriber), each credential being the one its join answer handed it. (A DTLS handshake and ICE checks
    # are a few kB; 20 kB each way is media.)
    for name, username in result["usernames"].items():
        usage = await _wait_peer_usage(turn_server, username)
        assert max(sb for _, sb in usage) > 20_000 and max(rb for rb, _ in usage) > 20_000, (name, usage)


async def test_with_udp_blocked_entirely_turn_over_tcp_carries_the_call(
    turn_server: ServerThread, turn_app: MediaApp
) -> None:
    with client_namespace("meta l4proto udp drop") as ns:
        result = await asyncio.to_thread(run_peers, ns, turn_app, "relayed-tcp")
    _assert_relayed(result, TCP_URL)
    for name, username in result["usernames"].items():
        usage = await _wait_peer_usage(turn_server, username)
        assert max(sb for _, sb in usage) > 20_000 and max(rb for rb, _ in usage) > 20_000, (name, usage)


async def test_where_only_tcp_443_passes_turn_over_tls_carries_the_call(
    turn_server: ServerThread, turn_app: MediaApp
) -> None:
    # Nothing but TCP 443 (and the API's own port, for signalling: on a server it would be 443 too, on
    # another address or behind the proxy) leaves the clients' namespace.
    rules = f"meta l4proto udp drop; tcp dport != {{ 443, {turn_server.port} }} counter drop"
    with client_namespace(rules) as ns:
        result = await asyncio.to_thread(run_peers, ns, turn_app, "relayed-tls")
        dropped = await asyncio.to_thread(
            subprocess.run, ["ip", "netns", "exec", ns, "nft", "list", "ruleset"], capture_output=True, text=True
        )
    _assert_relayed(result, TLS_URL)
    # The client did try TURN over TCP on 3478 first (the firewall dropped it) before turns: on 443.
    packets = re.search(r"counter packets (\d+)", dropped.stdout)
    assert packets is not None and int(packets[1]) > 0, dropped.stdout
    for name, username in result["usernames"].items():
        usage = await _wait_peer_usage(turn_server, username)
        assert max(sb for _, sb in usage) > 20_000 and max(rb for rb, _ in usage) > 20_000, (name, usage)


async def test_browser_sdk_takes_the_relay_from_the_join_answer(turn_app: MediaApp, tmp_path: Path) -> None:
    from tests.media.chromium import Chromium, chromium_skip_reason

    from emberrtc.client import ColourVideoTrack, RoomClient

    reason = chromium_skip_reason()
    if reason is not None:
        pytest.skip(reason)
    origin = turn_app.server.url
    publisher = await RoomClient.join(
        origin, app_id=turn_app.app_id, room_id="browser-turn", user_id="py", app_key=turn_app.app_key
    )
    # The page is served on the namespace address, not loopback: treated as secure, as HTTPS would be.
    flags = [f"--unsafely-treat-insecure-origin-as-secure={origin}"]
    # Chromium runs in this namespace, beside Janus: drop UDP to Janus's address except what the relay sends
    # it from its relayed ports, and what Janus sends to those (so only relayed media gets through).
    relay_ports = "{}-{}".format(*RELAY_PORTS)  # turn_server's EMBER_TURN_RELAY_PORTS
    firewall = firewall_here(f"ip daddr {MEDIA_IP} udp sport != {relay_ports} udp dport != {relay_ports} drop")
    try:
        with firewall:
            await publisher.publish("camera", video=ColourVideoTrack((30, 200, 60), width=160, height=120))
            async with Chromium(tmp_path / "browser", flags) as browser:
                page = await browser.open(f"{origin}/demo")
                options = json.dumps(
                    {"appId": turn_app.app_id, "roomId": "browser-turn", "userId": "web", "appKey": turn_app.app_key}
                )
                handed = await page.evaluate(f"""(async () => {{
                    const {{ EmberRoom }} = await import("/sdk/ember-rtc.js");
                    window.turnRoom = await EmberRoom.join(location.origin, {options});
                    return window.turnRoom.iceServers;
                }})()""")
                assert [s["urls"] for s in handed] == [[UDP_URL, TCP_URL, TLS_URL]]
                # It receives the Python camera (subscribed on its own), on a PeerConnection with the relay...
                await page.wait_for("window.turnRoom.framesDecoded().then((n) => n > 10)", 30)
                config = await page.evaluate("window.turnRoom.subscriberPc.getConfiguration().iceServers")
                assert [(c["urls"], c["username"], c["credential"]) for c in config] == [
                    ([UDP_URL, TCP_URL, TLS_URL], handed[0]["username"], handed[0]["credential"])
                ], config
                # ...whose pair carrying the media is a relayed one, granted with the credential. (getStats is
                # read until it names the selected pair: Chromium fills its stats in a moment after media flows,
                # and drops the candidates it stopped using.)
                selected = await page.wait_for(
                    """(async () => {
                        const stats = [...(await window.turnRoom.subscriberPc.getStats()).values()];
                        const transport = stats.find((s) => s.type === "transport" && s.selectedCandidatePairId);
                        const pair = transport && stats.find((s) => s.id === transport.selectedCandidatePairId);
                        const local = pair && stats.find((s) => s.id === pair.localCandidateId);
                        return local ? [local.candidateType, local.relayProtocol] : null;
                    })()""",
                    15,
                )
                assert selected[0] == "relay" and selected[1] in {"udp", "tcp", "tls"}, selected
                await page.evaluate("window.turnRoom.leave()")
    finally:
        await publisher.leave()


# -- the relay on its own -------------------------------------------------------------------------------


@pytest.fixture
async def relay(tmp_path: Path) -> AsyncIterator[TurnProcess]:
    config = TurnConfig(
        secret=SECRET, allowed_peers=(MEDIA_IP,), port=RELAY[1], relay_ip=MEDIA_IP, relay_ports=(51000, 51099)
    )
    async with TurnProcess(config, tmp_path / "turn", backoff=Backoff(initial=0.05, maximum=1.0)) as process:
        yield process


async def _allocate(username: str, password: str) -> turn.TurnClientUdpProtocol:
    loop = asyncio.get_running_loop()
    _, protocol = await loop.create_datagram_endpoint(
        lambda: turn.TurnClientUdpProtocol(RELAY, username, password, lifetime=600, channel_refresh_time=300),
        remote_addr=RELAY,
    )
    await protocol.connect()
    return protocol


async def test_relay_refuses_expired_and_forged_credentials(relay: TurnProcess) -> None:
    now = int(time.time())
    good = await _allocate(*turn_credential(SECRET, "sess1", now + 3600))
    await good.delete()
    for username, password in (
        turn_credential(SECRET, "sess2", now - 5),  # expired five seconds ago
        turn_credential("another-secret", "sess3", now + 3600),  # not made with the relay's secret
    ):
        with pytest.raises(stun.TransactionFailed) as refused:
            async with asyncio.timeout(10):
                await _allocate(username, password)
        assert refused.value.response.error_code in (401, 438), refused.value.response


async def test_relay_relays_to_janus_only(relay: TurnProcess) -> None:
    client = await _allocate(*turn_credential(SECRET, "sess4", int(time.time()) + 600))
    try:
        await client.channel_bind(0x4000, (MEDIA_IP, 5000))  # Janus's address: allowed
        for peer in (PEER_IP, "127.0.0.1", "10.78.0.9", "169.254.169.254", "8.8.8.8"):
            with pytest.raises(stun.TransactionFailed) as refused:
                await client.channel_bind(0x4001, (peer, 5000))
            assert refused.value.response.error_code == 403, (peer, refused.value.response)
    finally:
        await client.delete()


async def test_relay_is_supervised_and_its_config_private(relay: TurnProcess) -> None:
    mode = stat.S_IMODE(relay.config_path.stat().st_mode)
    assert mode == 0o600, oct(mode)
    assert f"static-auth-secret={SECRET}" in relay.config_path.read_text()
    assert SECRET not in relay.log_path.read_text()
    assert await relay.healthy()
    first = relay.pid
    assert first is not None
    os.kill(first, 9)
    await until(lambda: relay.starts == 2 and relay.pid not in (None, first), within=15, what="a restarted relay")
    assert await relay.healthy()
    await relay.stop()
    assert relay_pids(relay.config_path) == [] and not await relay.healthy()


async def test_a_relay_that_stops_answering_is_restarted(tmp_path: Path) -> None:
    config = TurnConfig(secret=SECRET, allowed_peers=(MEDIA_IP,), port=RELAY[1], relay_ports=(51100, 51199))
    process = TurnProcess(
        config, tmp_path / "turn", backoff=Backoff(initial=0.05, maximum=1.0), health_interval=0.2, health_failures=2
    )
    async with process:
        hung = process.pid
        assert hung is not None
        os.kill(hung, signal.SIGSTOP)  # alive, but answering nothing
        await until(lambda: process.starts == 2, within=15, what="the hung relay replaced")
        assert process.pid != hung and relay_pids(process.config_path) == [process.pid]
        assert await process.healthy() and process.ready and process.unexpected_exits == 1
    assert not process.ready


async def test_the_relay_log_is_bounded(tmp_path: Path) -> None:
    config = TurnConfig(secret=SECRET, allowed_peers=(MEDIA_IP,), port=RELAY[1], relay_ports=(51200, 51299))
    # Probed (and so the log checked) every 0.2 s; a probe missed on a loaded machine must not restart it.
    process = TurnProcess(config, tmp_path / "turn", health_interval=0.2, health_failures=1000, log_max_bytes=4096)
    older = process.log_path.with_name("turnserver.log.1")
    async with process:
        now = int(time.time())
        n = 0
        # Each refused allocation is a few of coturn's verbose lines (about 330 bytes): go on until the log has
        # been rotated. Paced at most 200 a second (unpaced, a fast machine refuses 2,000 a second, and what a
        # probe interval's refusals write is then the machine's speed, not the relay's bound).
        while not older.exists():
            with pytest.raises(stun.TransactionFailed):
                async with asyncio.timeout(10):
                    await _allocate(*turn_credential("not-the-relays", f"flood{n}", now + 600))
            n += 1
            assert n < 1000, "no rotation"
            # Never much past the limit: what the refusals of a probe interval and its STUN round write (at 200 a
            # second, 15-30 kB; 100 kB would take 1.5 s without a rotation).
            assert process.log_path.stat().st_size < 100_000
            await asyncio.sleep(0.005)
        assert "flood" in older.read_text(errors="replace")
        # coturn goes on writing into the emptied file (it holds it open, appending).
        good = await _allocate(*turn_credential(SECRET, "after-rotation", now + 600))
        await good.delete()
        await until(
            lambda: "after-rotation" in process.log_path.read_text(errors="replace"),
            within=10,
            what="coturn's next lines in the rotated log",
        )
        assert process.log_path.stat().st_size < older.stat().st_size + 100_000
        assert process.starts == 1 and process.unexpected_exits == 0  # the same relay all along


def _relay_settings(tmp_path: Path) -> Settings:
    """Settings of a node whose embedded relay is the test's ``relay``."""
    return Settings(
        data_dir=tmp_path / "data",
        turn="embedded",
        media_ip=MEDIA_IP,
        turn_host=PEER_IP,
        turn_port=RELAY[1],
        turn_secret=SECRET,
    )


async def test_doctor_reports_the_relay(relay: TurnProcess, tmp_path: Path) -> None:
    from emberrtc.deploy.doctor import Doctor

    settings = _relay_settings(tmp_path)
    [ok] = await Doctor(settings).check_turn()
    assert ok.ok and "grants allocations" in ok.detail, ok
    [refused] = await Doctor(replace(settings, turn_secret="not-the-relays")).check_turn()
    assert not refused.ok and "refuses Ember's credentials" in refused.detail and refused.fix, refused
    # The same relay named as an external one, by URL.
    external = replace(settings, turn="", turn_urls=f"turn:{PEER_IP}:{RELAY[1]}?transport=tcp")
    [reached] = await Doctor(external).check_turn()
    assert reached.ok, reached
    await relay.stop()
    [down] = await Doctor(settings).check_turn()
    assert not down.ok and f"does not answer on port {RELAY[1]}" in down.detail and "systemctl start" in down.fix


async def test_doctor_probes_the_relay_over_udp_where_clients_reach_it(relay: TurnProcess, tmp_path: Path) -> None:
    from emberrtc.deploy.doctor import Doctor

    settings = _relay_settings(tmp_path)
    [ok] = await Doctor(settings).check_udp()
    assert ok.ok and ok.detail == f"the relay answers STUN over UDP at {PEER_IP}:{RELAY[1]}", ok
    # A host firewall dropping UDP to the relay's port (the input chain: loopback still passes).
    rules = (
        "table inet emberdoctorudp {\n  chain in {\n    type filter hook input priority 0; policy accept;\n"
        f"    ip daddr {PEER_IP} udp dport {RELAY[1]} counter drop\n  }}\n}}\n"
    )
    await asyncio.to_thread(subprocess.run, ["nft", "-f", "-"], input=rules.encode(), check=True)
    try:
        [blocked] = await Doctor(settings, timeout=1).check_udp()
        # ...while the turn check, over loopback, still passes: only this probe sees the firewall.
        [turn_ok] = await Doctor(settings).check_turn()
        listed = ["nft", "list", "table", "inet", "emberdoctorudp"]
        ruleset = await asyncio.to_thread(subprocess.run, listed, capture_output=True, text=True)
    finally:
        await asyncio.to_thread(subprocess.run, ["nft", "delete", "table", "inet", "emberdoctorudp"], check=False)
    assert not blocked.ok and f"not at {PEER_IP}:{RELAY[1]}" in blocked.detail, blocked
    assert f"let UDP {RELAY[1]} and 49152-65535 in" in blocked.fix and f"ufw allow {RELAY[1]}/udp" in blocked.fix
    assert turn_ok.ok, turn_ok
    assert re.search(r"counter packets [1-9]", ruleset.stdout), ruleset.stdout
    # Clients told a name that is not this machine's (a 1:1 NAT's public address): the media address is
    # probed, and the public one named as the cloud firewall's to open.
    [probed, public] = await Doctor(replace(settings, turn_host="192.0.2.77")).check_udp()
    assert probed.ok and probed.detail.endswith(f"at {MEDIA_IP}:{RELAY[1]}"), probed
    assert public.ok and "not on this machine (1:1 NAT)" in public.detail and "192.0.2.77" in public.detail


def test_relay_takes_a_port_below_1024_as_an_unprivileged_user_with_the_units_capability() -> None:
    """What the unit gives ``ember serve`` (``AmbientCapabilities=CAP_NET_BIND_SERVICE``) is inherited by the
    coturn it starts: TURN over TLS below 1024 as the service's user. Without it, the port stays closed. (444,
    not 443: the module's Ember has its relay on 443 meanwhile.)"""
    import tempfile

    # Somewhere the unprivileged user can reach (pytest's own folder is root's only).
    base = Path(tempfile.mkdtemp(prefix="ember-turn444-"))
    try:
        _relay_below_1024_as_nobody(base)
    finally:
        shutil.rmtree(base, ignore_errors=True)


def _relay_below_1024_as_nobody(tmp_path: Path) -> None:
    import pwd
    import socket
    import ssl

    ca, cert, key = make_certificate(tmp_path, PEER_IP)
    nobody = pwd.getpwnam("nobody")
    folder = tmp_path / "turn"
    config = TurnConfig(secret=SECRET, allowed_peers=(MEDIA_IP,), port=3481, tls_port=444, tls_cert=cert, tls_key=key)
    config.write(folder)
    for path in (folder, folder / "turnserver.conf", cert, key):
        os.chown(path, nobody.pw_uid, nobody.pw_gid)
    tmp_path.chmod(0o755)
    trust = ssl.create_default_context(cafile=str(ca))

    def handshake() -> bool:
        try:
            with (
                socket.create_connection((PEER_IP, 444), timeout=2) as raw,
                trust.wrap_socket(raw, server_hostname=PEER_IP),
            ):
                return True
        except OSError:
            return False

    def run_relay(*caps: str) -> tuple[bool, bool]:
        """(answered STUN within 10 s, completed a TLS handshake on 444)."""
        relay = subprocess.Popen(
            ["setpriv", f"--reuid={nobody.pw_uid}", f"--regid={nobody.pw_gid}", "--clear-groups", *caps, "--"]
            + ["turnserver", "-c", str(folder / "turnserver.conf")],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            deadline = time.monotonic() + 10
            while not asyncio.run(stun_answers()):
                assert relay.poll() is None, "the relay exited"
                if time.monotonic() > deadline:
                    return False, handshake()
            return True, handshake()
        finally:
            relay.terminate()
            relay.wait(10)

    async def stun_answers() -> bool:
        from emberrtc.media.turn_process import stun_binding

        return await stun_binding(("127.0.0.1", 3481), 0.2)

    caps = "-all,+net_bind_service"
    assert run_relay(f"--inh-caps={caps}", f"--ambient-caps={caps}", f"--bounding-set={caps}", "--no-new-privs") == (
        True,
        True,
    )
    # Without it coturn retries the port for ever and never opens its other listeners: ember serve would say the
    # relay did not answer, and its log says why.
    assert run_relay() == (False, False)
    assert "Cannot bind TLS/TCP listener socket to addr" in (folder / "turnserver.log").read_text(errors="replace")
