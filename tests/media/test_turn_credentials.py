"""TURN REST API credentials and the ICE servers handed to clients (pure: no relay needed)."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from emberrtc.media.turn_credentials import IceServers, load_turn_secret, parse_turn_urls, turn_credential


def test_credential_is_expiry_user_and_base64_hmac_sha1() -> None:
    # Expected password from `printf %s 1700000000:sess | openssl dgst -sha1 -hmac north -binary | base64`.
    assert turn_credential("north", "sess", 1700000000) == ("1700000000:sess", "nuYzjikOGuwz7U39I+1SGNw1zTs=")
    with pytest.raises(ValueError, match="':'"):
        turn_credential("north", "a:b", 1700000000)


def test_ice_servers_for_a_session() -> None:
    servers = IceServers(("turn:relay.example:3478?transport=udp", "turns:relay.example:5349"), "north", ttl=600)
    [server] = servers.for_user("sess", now=1700000000.7)
    assert server == {
        "urls": ["turn:relay.example:3478?transport=udp", "turns:relay.example:5349"],
        "username": "1700000600:sess",
        "credential": turn_credential("north", "sess", 1700000600)[1],
    }
    assert IceServers(()).for_user("sess", now=1700000000) == []
    assert "north" not in repr(servers)
    with pytest.raises(ValueError, match="secret"):
        IceServers(("turn:relay.example",))


@pytest.mark.parametrize(
    "text",
    [
        "turn:relay.example.com",
        "turn:relay.example.com:3478?transport=udp, turn:10.0.0.1:80?transport=tcp",
        "turns:relay.example.com:443?transport=tcp",
        "turn:[2001:db8::1]:3478",
    ],
)
def test_turn_urls_accepted(text: str) -> None:
    assert parse_turn_urls(text) == tuple(u.strip() for u in text.split(","))


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("stun:relay.example.com", "not a TURN URL"),
        ("turn://relay.example.com", "not a TURN URL"),
        ("turn:relay.example.com?transport=sctp", "not a TURN URL"),
        ("turn:user@relay.example.com", "not a TURN URL"),
        ("turns:relay.example.com?transport=udp", "TCP only"),
        ("turn:relay.example.com:70000", "1-65535"),
    ],
)
def test_turn_urls_refused(text: str, why: str) -> None:
    with pytest.raises(ValueError, match=why):
        parse_turn_urls(text)


def test_secret_given_read_from_a_file_or_made_once(tmp_path: Path) -> None:
    assert load_turn_secret("given", "", tmp_path) == "given"
    (tmp_path / "secret").write_text("from-file\nignored\n")
    assert load_turn_secret("", str(tmp_path / "secret"), None) == "from-file"
    (tmp_path / "empty").write_text("\n")
    with pytest.raises(ValueError, match="holds no secret"):
        load_turn_secret("", str(tmp_path / "empty"), None)
    with pytest.raises(ValueError, match="cannot read"):
        load_turn_secret("", str(tmp_path / "missing"), None)
    with pytest.raises(ValueError, match="needs its shared secret"):
        load_turn_secret("", "", None)
    made = load_turn_secret("", "", tmp_path)
    assert len(made) >= 40 and load_turn_secret("", "", tmp_path) == made
    assert stat.S_IMODE((tmp_path / "turn.key").stat().st_mode) == 0o600
