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
