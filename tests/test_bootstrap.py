"""bootstrap.turn_from_settings: which relay clients are handed, and the embedded relay's config."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from emberrtc.bootstrap import turn_from_settings
from emberrtc.config import Settings


def test_no_relay_by_default(tmp_path: Path) -> None:
    servers, relay = turn_from_settings(Settings(data_dir=tmp_path))
    assert servers.urls == () and relay is None
    assert not (tmp_path / "turn.key").exists()


def test_external_relay_by_urls_and_secret_file(tmp_path: Path) -> None:
    (tmp_path / "secret").write_text("shared\n")
    settings = Settings(
        data_dir=tmp_path,
        turn_urls="turn:relay.example.com:3478?transport=udp,turns:relay.example.com:443?transport=tcp",
        turn_secret_file=str(tmp_path / "secret"),
        turn_credential_ttl=600,
    )
    servers, relay = turn_from_settings(settings)
    assert relay is None
    assert servers.urls == ("turn:relay.example.com:3478?transport=udp", "turns:relay.example.com:443?transport=tcp")
    assert (servers.secret, servers.ttl) == ("shared", 600)
    with pytest.raises(ValueError, match="not a TURN URL"):
        turn_from_settings(replace(settings, turn_urls="http://relay.example.com"))


def test_embedded_relay_refused_when_janus_has_no_media_address(tmp_path: Path) -> None:
    # 127.0.0.1 is on every machine; Janus never uses loopback, so an explicit media IP is taken as given.
    settings = Settings(data_dir=tmp_path, turn="embedded", media_ip="192.0.2.10", turn_relay_ports="50000-50100")
    with pytest.raises(ValueError, match="no media address"):
        # 192.0.2.10 is on no interface here: Janus would have nothing to gather on, the relay nothing to reach.
        turn_from_settings(settings)


def test_embedded_relay_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from emberrtc import bootstrap
    from emberrtc.media.ice_interfaces import Candidate

    monkeypatch.setattr(
        bootstrap, "usable_addresses", lambda media_ip: [Candidate("eth0", "192.0.2.10")] if media_ip else []
    )
    settings = Settings(data_dir=tmp_path, turn="embedded", media_ip="192.0.2.10", turn_relay_ports="50000-50100")
    servers, relay = turn_from_settings(settings)
    assert relay is not None and relay.folder == tmp_path / "turn"
    assert relay.config.allowed_peers == ("192.0.2.10",) and relay.config.relay_ip == "192.0.2.10"
    assert relay.config.relay_ports == (50000, 50100) and not relay.config.tls
    # Clients reach it by the media address, unless told otherwise; the secret is made once in the data folder.
    assert servers.urls == ("turn:192.0.2.10:3478?transport=udp", "turn:192.0.2.10:3478?transport=tcp")
    assert servers.secret == relay.config.secret == (tmp_path / "turn.key").read_text().strip()
    named = replace(
        settings,
        turn_host="relay.example.com",
        turn_tls_cert=str(tmp_path / "c.pem"),
        turn_tls_key=str(tmp_path / "k.pem"),
        turn_secret="given",
    )
    servers, relay = turn_from_settings(named)
    assert relay is not None and relay.config.tls_cert == tmp_path / "c.pem"
    # TURN over TLS on 443 (what the strictest firewalls pass) while the API is elsewhere.
    assert servers.urls[-1] == "turns:relay.example.com:443?transport=tcp" and servers.secret == "given"
    assert relay.config.tls_port == 443
    # Behind 1:1 NAT Janus's candidates carry the public address: the relay may send there too. The server's
    # own certificate serves turns: unless the relay has its own.
    servers, relay = turn_from_settings(
        replace(settings, media_public_ip="198.51.100.7", tls_cert="/etc/e/full.pem", tls_key="/etc/e/key.pem")
    )
    assert relay is not None and relay.config.allowed_peers == ("192.0.2.10", "198.51.100.7")
    assert relay.config.tls_cert == Path("/etc/e/full.pem") and servers.urls[-1].startswith("turns:192.0.2.10:443?")
    # Without a single media address nor a public URL, it cannot say how clients reach the relay.
    with pytest.raises(ValueError, match="EMBER_TURN_HOST"):
        turn_from_settings(replace(settings, media_ip="eth0"))
    with pytest.raises(ValueError, match="EMBER_TURN_HOST"):
        turn_from_settings(replace(settings, media_ip="eth0", public_url="http://127.0.0.1:8080"))
    servers, _ = turn_from_settings(replace(settings, media_ip="eth0", public_url="https://rtc.example.com"))
    assert servers.urls[0] == "turn:rtc.example.com:3478?transport=udp"


def test_turn_over_tls_port_follows_ember_own_port(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from emberrtc import bootstrap
    from emberrtc.media.ice_interfaces import Candidate

    monkeypatch.setattr(bootstrap, "usable_addresses", lambda media_ip: [Candidate("eth0", "192.0.2.10")])
    settings = Settings(
        data_dir=tmp_path, turn="embedded", media_ip="192.0.2.10", tls_cert="/etc/e/c.pem", tls_key="/etc/e/k.pem"
    )
    # Ember's HTTPS holds 443 (the README's deployment): the relay takes TURN's own TLS port, 5349.
    servers, relay = turn_from_settings(replace(settings, port=443))
    assert relay is not None and relay.config.tls_port == 5349
    assert servers.urls[-1] == "turns:192.0.2.10:5349?transport=tcp"
    # Named explicitly, any free port; Ember's own, TURN's UDP/TCP one, or one inside Janus's ICE-TCP range: refused.
    servers, _ = turn_from_settings(replace(settings, port=443, turn_tls_port=8443))
    assert servers.urls[-1] == "turns:192.0.2.10:8443?transport=tcp"
    with pytest.raises(ValueError, match="EMBER_TURN_TLS_PORT=443 is also Ember's own port"):
        turn_from_settings(replace(settings, port=443, turn_tls_port=443))
    with pytest.raises(ValueError, match="is also EMBER_TURN_PORT"):
        turn_from_settings(replace(settings, turn_tls_port=3478))
    with pytest.raises(ValueError, match="in EMBER_MEDIA_PORTS"):
        turn_from_settings(replace(settings, media_ice_tcp=True, media_ports="400-500"))
    # Without a certificate there is no TLS listener, whatever the ports.
    servers, relay = turn_from_settings(replace(settings, port=443, tls_cert="", tls_key="", turn_tls_port=443))
    assert relay is not None and not relay.config.tls and not any(u.startswith("turns:") for u in servers.urls)
    assert relay.log_max_bytes == 16 * 2**20
    with pytest.raises(ValueError, match="turn_tls_port"):
        Settings(turn_tls_port=70000)
    with pytest.raises(ValueError, match="turn_log_max_mb"):
        Settings(turn_log_max_mb=0)


def test_readme_turn_example_configures_what_it_says(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import re

    from emberrtc import bootstrap
    from emberrtc.media.ice_interfaces import Candidate

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    section = readme.split("## TURN relay", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```bash\n(.*?)```", section, re.S)
    assert block is not None
    env = dict(re.findall(r"\b(EMBER_[A-Z_]+)=(\S+)", block.group(1)))
    assert env["EMBER_TURN"] == "embedded"
    monkeypatch.setattr(bootstrap, "usable_addresses", lambda media_ip: [Candidate("eth0", media_ip)])
    settings = Settings(data_dir=tmp_path).with_env(env)
    servers, relay = turn_from_settings(settings)
    assert relay is not None and relay.config.allowed_peers == (env["EMBER_MEDIA_IP"],)
    # The URLs the section says clients are told, in that order.
    assert servers.urls == (
        "turn:rtc.example.com:3478?transport=udp",
        "turn:rtc.example.com:3478?transport=tcp",
        "turns:rtc.example.com:443?transport=tcp",
    )
    for url in servers.urls:
        assert url.replace("rtc.example.com", "HOST") in section
