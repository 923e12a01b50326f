"""Configuration: the data folder is absolute once, whatever form it was given in (issue: first run)."""

from __future__ import annotations

from pathlib import Path

import pytest

from emberrtc.config import Settings


def test_data_folder_is_absolute_in_every_form(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path / "h"))
    assert Settings().data_dir == tmp_path / "data"  # the default ./data
    assert Settings().with_env({"EMBER_DATA_DIR": "~/a b/../c"}).data_dir == tmp_path / "h" / "c"
    assert Settings(data_dir=Path("x y")).data_dir == tmp_path / "x y"
    assert Settings(data_dir=Path("/abs/olute")).data_dir == Path("/abs/olute")


def test_data_folder_is_fixed_when_settings_are_made(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Made absolute at start: a later change of working folder (Janus runs in its config folder) changes nothing.
    monkeypatch.chdir(tmp_path)
    settings = Settings(data_dir=Path("data"))
    monkeypatch.chdir("/")
    assert settings.data_dir == tmp_path / "data"


def test_edge_settings_from_the_environment() -> None:
    env = {
        "EMBER_MAX_BODY_BYTES": "2048",
        "EMBER_HEADER_TIMEOUT": "2.5",
        "EMBER_TRUSTED_PROXIES": "10.0.0.5, 192.168.1.0/24",
        "EMBER_PASSWORD_SCRYPT_N": "32768",
    }
    s = Settings().with_env(env)
    assert (s.max_body_bytes, s.header_timeout, s.password_scrypt_n) == (2048, 2.5, 2**15)
    assert s.trusted_proxies == "10.0.0.5, 192.168.1.0/24"
    assert Settings().trusted_proxies == ""  # no proxy is trusted unless named
    for bad in (
        {"EMBER_TRUSTED_PROXIES": "proxy.example"},
        {"EMBER_MAX_BODY_BYTES": "0"},
        {"EMBER_PASSWORD_SCRYPT_N": "1000"},
        {"EMBER_BODY_TIMEOUT": "-1"},
    ):
        with pytest.raises(ValueError):
            Settings().with_env(bad)


def test_revocation_check_interval_from_the_environment() -> None:
    assert Settings().revocation_check_interval == 1.0
    assert Settings().with_env({"EMBER_REVOCATION_CHECK_INTERVAL": "0.25"}).revocation_check_interval == 0.25
    for bad in ("0", "-1", "61", "nan"):
        with pytest.raises(ValueError, match="revocation_check_interval"):
            Settings().with_env({"EMBER_REVOCATION_CHECK_INTERVAL": bad})


def test_turn_settings_from_the_environment() -> None:
    s = Settings().with_env(
        {
            "EMBER_TURN": "embedded",
            "EMBER_TURN_HOST": "relay.example.com",
            "EMBER_TURN_PORT": "443",
            "EMBER_TURN_RELAY_PORTS": "40000-40999",
            "EMBER_TURN_CREDENTIAL_TTL": "3600",
        }
    )
    assert (s.turn, s.turn_host, s.turn_port, s.turn_relay_ports, s.turn_credential_ttl) == (
        "embedded",
        "relay.example.com",
        443,
        "40000-40999",
        3600,
    )
    assert Settings().turn == "" and Settings().turn_urls == ""  # default: no relay


@pytest.mark.parametrize(
    ("env", "why"),
    [
        ({"EMBER_TURN": "coturn"}, "'embedded' or empty"),
        ({"EMBER_TURN": "embedded", "EMBER_TURN_URLS": "turn:x", "EMBER_TURN_SECRET": "s"}, "leave it empty"),
        ({"EMBER_TURN_URLS": "turn:relay.example.com"}, "needs its shared secret"),
        ({"EMBER_TURN_SECRET": "a", "EMBER_TURN_SECRET_FILE": "/f"}, "not both"),
        ({"EMBER_TURN_CREDENTIAL_TTL": "30"}, "60-604800"),
        ({"EMBER_TURN_RELAY_PORTS": "5000"}, "MIN-MAX"),
        ({"EMBER_TURN_RELAY_PORTS": "6000-5000"}, "MIN-MAX"),
        ({"EMBER_TURN_PORT": "70000"}, "port number"),
        ({"EMBER_TURN_TLS_CERT": "/c.pem"}, "go together"),
    ],
)
def test_bad_turn_settings_are_refused(env: dict[str, str], why: str) -> None:
    with pytest.raises(ValueError, match=why):
        Settings().with_env(env)


def test_deployment_settings_are_checked() -> None:
    s = Settings().with_env(
        {
            "EMBER_TLS_CERT": "/etc/ember/tls/fullchain.pem",
            "EMBER_TLS_KEY": "/etc/ember/tls/privkey.pem",
            "EMBER_MEDIA_PUBLIC_IP": "203.0.113.9, 2001:db8::9",
            "EMBER_PUBLIC_URL": "https://rtc.example.com",
            "EMBER_DOCTOR_MIN_FREE_MB": "10",
        }
    )
    assert (s.tls_cert, s.media_public_ip, s.doctor_min_free_mb) == (
        "/etc/ember/tls/fullchain.pem",
        "203.0.113.9, 2001:db8::9",
        10,
    )
    for bad, says in (
        ({"EMBER_TLS_CERT": "/c.pem"}, "tls_cert and tls_key go together"),
        ({"EMBER_MEDIA_PUBLIC_IP": "rtc.example.com"}, "not an IP address"),
        ({"EMBER_MEDIA_PUBLIC_IP": "0.0.0.0"}, "cannot be reached"),
        ({"EMBER_PUBLIC_URL": "rtc.example.com"}, "not an http:// or https:// URL"),
        ({"EMBER_PUBLIC_URL": "https://u:p@rtc.example.com"}, "no credentials"),
        ({"EMBER_PUBLIC_URL": "https://rtc.example.com:99999"}, "bad port"),
        ({"EMBER_MEDIA_ICE_TCP": "true", "EMBER_MEDIA_PUBLIC_IP": "203.0.113.9"}, "ICE-Lite"),
    ):
        with pytest.raises(ValueError, match=says):
            Settings().with_env(bad)


def test_cluster_mode_needs_postgresql_and_a_public_url() -> None:
    pg = "postgresql://ember@db.internal/ember"
    assert not Settings().cluster_mode
    with pytest.raises(ValueError, match="needs EMBER_DATABASE_URL on PostgreSQL"):
        Settings().with_env({"EMBER_REDIS_URL": "redis://127.0.0.1:6379/0"})
    with pytest.raises(ValueError, match="scheme is 'sqlite'"):
        Settings().with_env({"EMBER_REDIS_URL": "redis://r:6379", "EMBER_DATABASE_URL": "sqlite:///x.db"})
    with pytest.raises(ValueError, match="needs EMBER_PUBLIC_URL"):
        Settings().with_env({"EMBER_REDIS_URL": "redis://r:6379", "EMBER_DATABASE_URL": pg})
    with pytest.raises(ValueError, match="redis_url must be"):
        Settings().with_env({"EMBER_REDIS_URL": "http://r:6379", "EMBER_DATABASE_URL": pg})
    s = Settings().with_env(
        {
            "EMBER_REDIS_URL": "redis://r:6379",
            "EMBER_DATABASE_URL": pg,
            "EMBER_PUBLIC_URL": "https://node-1.example.com",
            "EMBER_NODE_ID": "node-1",
        }
    )
    assert s.cluster_mode and s.node_id == "node-1" and (s.cluster_heartbeat, s.cluster_node_ttl) == (2.0, 10.0)
    assert s.cluster_call_timeout == 1.0
    cluster = {"EMBER_REDIS_URL": "redis://r:6379", "EMBER_DATABASE_URL": pg, "EMBER_PUBLIC_URL": "https://n.example"}
    assert Settings().with_env({**cluster, "EMBER_CLUSTER_CALL_TIMEOUT": "2.5"}).cluster_call_timeout == 2.5
    for bad in ("0", "-1", "31"):
        with pytest.raises(ValueError, match="cluster_call_timeout"):
            Settings().with_env({**cluster, "EMBER_CLUSTER_CALL_TIMEOUT": bad})


def test_node_id_defaults_to_the_host_name_and_is_checked() -> None:
    import re
    import socket

    assert Settings().node_id == re.sub(r"[^A-Za-z0-9_.-]", "-", socket.gethostname())[:64]
    for bad in ("a b", "x" * 65, "n/1"):
        with pytest.raises(ValueError, match="node_id"):
            Settings().with_env({"EMBER_NODE_ID": bad})
    with pytest.raises(ValueError, match="cluster_name"):
        Settings().with_env({"EMBER_CLUSTER_NAME": "a:b"})


def test_job_cap_and_refusal_hold_from_the_environment() -> None:
    assert (Settings().max_unfinished_jobs_per_app, Settings().refusal_hold) == (100, 1.0)
    s = Settings().with_env({"EMBER_MAX_UNFINISHED_JOBS_PER_APP": "250", "EMBER_REFUSAL_HOLD": "0"})
    assert (s.max_unfinished_jobs_per_app, s.refusal_hold) == (250, 0.0)
    for bad in (
        {"EMBER_MAX_UNFINISHED_JOBS_PER_APP": "0"},
        {"EMBER_REFUSAL_HOLD": "-1"},
        {"EMBER_REFUSAL_HOLD": "61"},
    ):
        with pytest.raises(ValueError):
            Settings().with_env(bad)
