"""The embedded relay's generated coturn configuration (pure: nothing is run)."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from emberrtc.media.turn_config import TurnConfig


def _settings(text: str) -> list[tuple[str, str]]:
    return [tuple(line.partition("=")[::2]) for line in text.splitlines() if not line.startswith("#")]  # type: ignore[misc]


def test_not_an_open_relay(tmp_path: Path) -> None:
    config = TurnConfig(secret="s3cret", allowed_peers=("10.0.0.5", "192.0.2.7"), relay_ip="10.0.0.5")
    assert "s3cret" not in repr(config)  # nothing that logs the config logs the secret
    written = config.write(tmp_path / "turn")
    assert stat.S_IMODE(written.stat().st_mode) == 0o600
    lines = _settings(written.read_text())
    # Every peer denied, Janus's addresses allowed (coturn checks allowed-peer-ip first).
    assert ("denied-peer-ip", "0.0.0.0-255.255.255.255") in lines
    assert ("denied-peer-ip", "::-ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff") in lines
    assert [v for k, v in lines if k == "allowed-peer-ip"] == ["10.0.0.5", "192.0.2.7"]
    for flag in ("use-auth-secret", "no-cli", "no-multicast-peers", "no-tls", "no-dtls", "fingerprint"):
        assert (flag, "") in lines
    assert ("static-auth-secret", "s3cret") in lines and ("realm", "ember") in lines
    assert ("min-port", "49152") in lines and ("max-port", "65535") in lines
    assert ("relay-ip", "10.0.0.5") in lines
    # Its files stay in its folder: nothing under /var or /etc.
    for key in ("log-file", "pidfile", "userdb"):
        assert dict(lines)[key].startswith(str(tmp_path / "turn"))
    assert config.urls("relay.example.com") == (
        "turn:relay.example.com:3478?transport=udp",
        "turn:relay.example.com:3478?transport=tcp",
    )


def test_tls_listener_with_a_certificate(tmp_path: Path) -> None:
    config = TurnConfig(
        secret="s",
        allowed_peers=("10.0.0.5",),
        tls_cert=tmp_path / "c.pem",
        tls_key=tmp_path / "k.pem",
        tls_port=443,
    )
    lines = _settings("\n".join(config.lines(tmp_path)))
    assert ("tls-listening-port", "443") in lines and ("cert", str(tmp_path / "c.pem")) in lines
    assert ("no-tls", "") not in lines and ("no-tlsv1", "") in lines and ("no-dtls", "") in lines
    assert config.urls("2001:db8::1")[-1] == "turns:[2001:db8::1]:443?transport=tcp"


@pytest.mark.parametrize(
    ("kwargs", "why"),
    [
        ({"allowed_peers": ()}, "allowed peer"),
        ({"allowed_peers": ("janus.local",)}, "does not appear to be an IPv4 or IPv6 address"),
        ({"secret": "two words"}, "without spaces"),
        ({"relay_ports": (6000, 5000)}, "relay_ports"),
        ({"tls_cert": Path("c.pem")}, "go together"),
        ({"port": 0}, "port"),
    ],
)
def test_bad_configs_refused(kwargs: dict[str, object], why: str) -> None:
    base: dict[str, object] = {"secret": "s", "allowed_peers": ("10.0.0.5",)}
    with pytest.raises(ValueError, match=why):
        TurnConfig(**{**base, **kwargs})  # type: ignore[arg-type]
