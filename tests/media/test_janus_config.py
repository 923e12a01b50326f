"""The generated Janus config folder (unit tests: no Janus needed)."""

from __future__ import annotations

import json
import socket
import stat
from pathlib import Path

import pytest

from emberrtc.media.janus_config import JanusConfig, free_loopback_ports, render_jcfg


def _parse(text: str) -> dict[str, dict[str, object]]:
    """Read back what render_jcfg writes (its values are JSON literals)."""
    sections: dict[str, dict[str, object]] = {}
    current: dict[str, object] | None = None
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith(": {"):
            current = sections.setdefault(line[:-3], {})
        elif line == "}":
            current = None
        else:
            assert current is not None, f"setting outside a section: {line}"
            key, value = line.split(" = ", 1)
            current[key] = json.loads(value)
    return sections


def _fake_lib(tmp_path: Path) -> Path:
    lib = tmp_path / "lib"
    for kind, names in {
        "plugins": ["libjanus_videoroom.so", "libjanus_echotest.so", "libjanus_future.so"],
        "transports": ["libjanus_http.so", "libjanus_websockets.so", "libjanus_http.so.1"],
        "events": ["libjanus_sampleevh.so"],
        "loggers": ["libjanus_jsonlog.so"],
    }.items():
        (lib / kind).mkdir(parents=True)
        for name in names:
            (lib / kind / name).touch()
    return lib


def test_folder_loads_only_videoroom_http_and_websockets(tmp_path: Path) -> None:
    config = JanusConfig(
        http_port=18088, admin_port=17088, ws_port=18188, ice_enforce_list="10.77.0.1", lib_dir=_fake_lib(tmp_path)
    )
    folder = config.write(tmp_path / "conf")

    assert sorted(path.name for path in folder.iterdir()) == [
        "janus.jcfg",
        "janus.plugin.videoroom.jcfg",
        "janus.transport.http.jcfg",
        "janus.transport.websockets.jcfg",
    ]
    core = _parse((folder / "janus.jcfg").read_text())
    plugins_disabled = str(core["plugins"]["disable"]).split(",")
    assert "libjanus_videoroom.so" not in plugins_disabled
    # Known plugins and any the package adds later are all disabled.
    assert {"libjanus_echotest.so", "libjanus_streaming.so", "libjanus_future.so"} <= set(plugins_disabled)
    transports_disabled = str(core["transports"]["disable"]).split(",")
    assert "libjanus_http.so" not in transports_disabled and "libjanus_websockets.so" not in transports_disabled
    assert {"libjanus_mqtt.so", "libjanus_pfunix.so"} <= set(transports_disabled)
    assert "libjanus_sampleevh.so" in str(core["events"]["disable"])
    assert core["events"]["broadcast"] is False
    assert core["loggers"]["disable"] == "libjanus_jsonlog.so"
    assert core["general"]["plugins_folder"] == str(tmp_path / "lib" / "plugins")


def test_network_settings(tmp_path: Path) -> None:
    config = JanusConfig(
        http_port=18088, admin_port=17088, ws_port=18188, ice_enforce_list="10.77.0.1", rtp_port_range=(30000, 30999)
    )
    files = {name: _parse(render_jcfg(sections)) for name, sections in config.files().items()}
    core, http, ws = files["janus.jcfg"], files["janus.transport.http.jcfg"], files["janus.transport.websockets.jcfg"]

    nat = core["nat"]
    assert nat["ice_enforce_list"] == "10.77.0.1"
    assert nat["full_trickle"] is False
    assert nat["ignore_mdns"] is True
    # No STUN/TURN server anywhere: Janus must never contact an outside address.
    text = "".join(render_jcfg(sections) for sections in config.files().values())
    assert "stun" not in text and "turn" not in text and "nat_1_1" not in text
    assert core["general"]["interface"] == "10.77.0.1"
    assert core["media"]["rtp_port_range"] == "30000-30999"

    expected_api = {"http": True, "https": False, "port": 18088, "ip": "127.0.0.1", "acl": "127."}
    assert {key: http["general"].get(key) for key in expected_api} == expected_api
    expected_admin = {
        "admin_http": True,
        "admin_https": False,
        "admin_port": 17088,
        "admin_ip": "127.0.0.1",
        "admin_acl": "127.",
    }
    assert {key: http["admin"].get(key) for key in expected_admin} == expected_admin
    expected_ws = {"ws": True, "wss": False, "ws_port": 18188, "ws_ip": "127.0.0.1", "ws_acl": "127."}
    assert {key: ws["general"].get(key) for key in expected_ws} == expected_ws
    assert ws["admin"] == {"admin_ws": False, "admin_wss": False}
    assert config.http_url == "http://127.0.0.1:18088/janus"
    assert config.ws_url == "ws://127.0.0.1:18188"
    assert config.admin_url == "http://127.0.0.1:17088/admin"


def test_public_address_and_ice_tcp(tmp_path: Path) -> None:
    config = JanusConfig(
        http_port=1, admin_port=2, ws_port=3, ice_enforce_list="10.0.0.5", nat_1_1_mapping="203.0.113.9"
    )
    nat = _parse((config.write(tmp_path / "nat") / "janus.jcfg").read_text())["nat"]
    # The public address replaces the private one in every candidate; ICE-Lite stays off (Janus's sample config).
    assert (nat["nat_1_1_mapping"], nat["keep_private_host"]) == ("203.0.113.9", False)
    assert "ice_lite" not in nat and "ice_tcp" not in nat
    tcp = _parse(render_jcfg(JanusConfig(1, 2, 3, ice_tcp=True).files()["janus.jcfg"]))["nat"]
    assert (tcp["ice_tcp"], tcp["ice_lite"]) == (True, True) and "nat_1_1_mapping" not in tcp
    with pytest.raises(ValueError, match="ICE-Lite|nat_1_1_mapping"):
        JanusConfig(1, 2, 3, ice_tcp=True, nat_1_1_mapping="203.0.113.9")
    with pytest.raises(ValueError):
        JanusConfig(1, 2, 3, nat_1_1_mapping="public.example.com")


def test_interface_name_is_not_used_as_sdp_address() -> None:
    core = JanusConfig(http_port=1, admin_port=2, ws_port=3, ice_enforce_list="ember0").files()["janus.jcfg"]
    assert core["nat"]["ice_enforce_list"] == "ember0"
    assert "interface" not in core["general"]


def test_secrets_are_random_and_required(tmp_path: Path) -> None:
    first, second = JanusConfig(http_port=1, admin_port=2, ws_port=3), JanusConfig(1, 2, 3)
    secrets = {first.api_secret, first.admin_secret, first.room_admin_key, second.api_secret}
    assert len(secrets) == 4 and all(len(secret) >= 24 for secret in secrets)

    folder = first.write(tmp_path / "conf")
    core = _parse((folder / "janus.jcfg").read_text())
    assert core["general"]["api_secret"] == first.api_secret
    assert core["general"]["admin_secret"] == first.admin_secret
    room = _parse((folder / "janus.plugin.videoroom.jcfg").read_text())["general"]
    assert room == {"admin_key": first.room_admin_key, "lock_rtp_forward": True, "string_ids": True}
    for path in folder.iterdir():
        # The files hold the secrets: owner-only.
        assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_rendering_quotes_and_rejects_control_characters() -> None:
    text = render_jcfg({"s": {"text": 'a "b" \\ c', "flag": True, "n": 3, "items": ["x", "y"]}})
    assert _parse(text) == {"s": {"text": 'a "b" \\ c', "flag": True, "n": 3, "items": ["x", "y"]}}
    with pytest.raises(ValueError, match="control characters"):
        render_jcfg({"s": {"text": "line\nbreak"}})


@pytest.mark.parametrize(
    "settings",
    [
        {"http_port": 0, "admin_port": 2, "ws_port": 3},
        {"http_port": 1, "admin_port": 70000, "ws_port": 3},
        {"http_port": 1, "admin_port": 2, "ws_port": 0},
        {"http_port": 5, "admin_port": 5, "ws_port": 3},
        {"http_port": 1, "admin_port": 3, "ws_port": 3},
        {"http_port": 1, "admin_port": 2, "ws_port": 3, "rtp_port_range": (40000, 30000)},
        {"http_port": 1, "admin_port": 2, "ws_port": 3, "debug_level": 9},
    ],
)
def test_invalid_settings_are_refused(settings: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        JanusConfig(**settings)  # type: ignore[arg-type]


def test_loopback_ports_for_janus_are_free_and_all_different() -> None:
    for _ in range(200):  # drawn one by one and closed, the kernel hands the same port out again at times
        ports = free_loopback_ports(3)
        assert len(set(ports)) == 3
        JanusConfig(http_port=ports[0], admin_port=ports[1], ws_port=ports[2])
    for port in free_loopback_ports(3):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind(("127.0.0.1", port))  # free again once chosen
