"""``ember install-service``: the systemd unit it prints and writes."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from emberrtc.deploy.service_unit import ServiceUnit, install, next_steps

EMBER = str(Path(sys.executable).parent / "ember")


def _directives(text: str) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for line in text.splitlines():
        if "=" in line and not line.startswith("#"):
            key, value = line.split("=", 1)
            found.setdefault(key, []).append(value)
    return found


def test_dry_run_prints_the_unit_and_changes_nothing(tmp_path: Path) -> None:
    unit_path = tmp_path / "ember.service"
    r = subprocess.run(
        [
            EMBER,
            "install-service",
            "--dry-run",
            "--user",
            "rtc",
            "--data-dir",
            str(tmp_path / "data"),
            "--env-file",
            str(tmp_path / "ember.env"),
            "--unit-path",
            str(unit_path),
        ],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 0, r.stderr
    assert not unit_path.exists() and not (tmp_path / "data").exists() and not (tmp_path / "ember.env").exists()
    first, unit = r.stdout.split("\n", 1)
    assert first == f"# {unit_path}"
    d = _directives(unit)
    assert d["User"] == ["rtc"] and d["Group"] == ["rtc"]
    assert d["ExecStart"] == [f"{EMBER} serve --data-dir {tmp_path / 'data'}"]
    assert d["EnvironmentFile"] == [f"-{tmp_path / 'ember.env'}"]
    assert d["Restart"] == ["on-failure"] and d["ExecReload"] == ["/bin/kill -HUP $MAINPID"]
    assert d["AmbientCapabilities"] == ["CAP_NET_BIND_SERVICE"] == d["CapabilityBoundingSet"]
    assert d["ReadWritePaths"] == [str(tmp_path / "data")] and d["ProtectSystem"] == ["strict"]
    assert d["StandardOutput"] == ["journal"] == d["StandardError"] and d["UMask"] == ["0077"]
    assert d["WantedBy"] == ["multi-user.target"]


def test_systemd_accepts_the_unit(tmp_path: Path) -> None:
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze is not installed")
    unit = ServiceUnit(Path(EMBER), user="root", data_dir=tmp_path / "data", env_file=tmp_path / "ember.env")
    path = tmp_path / "ember.service"
    path.write_text(unit.render())
    r = subprocess.run(["systemd-analyze", "verify", str(path)], capture_output=True, text=True)
    # verify exits 0 even for directives it ignores: any line it prints about the unit is a defect.
    assert r.returncode == 0 and "ember.service" not in r.stderr + r.stdout, r.stderr + r.stdout
    path.write_text(unit.render().replace("Restart=on-failure", "Restart=sometimes"))
    bad = subprocess.run(["systemd-analyze", "verify", str(path)], capture_output=True, text=True)
    assert "ember.service" in bad.stderr  # the check above can fail


def test_bad_names_and_paths_are_refused() -> None:
    with pytest.raises(ValueError, match="system user name"):
        ServiceUnit(Path("/usr/bin/ember"), user="Root; rm")
    with pytest.raises(ValueError, match="absolute path"):
        ServiceUnit(Path("/usr/bin/ember"), data_dir=Path("data"))
    with pytest.raises(ValueError, match="absolute path"):
        ServiceUnit(Path("/usr/bin/ember"), data_dir=Path("/var/lib/my ember"))


@pytest.mark.skipif(os.geteuid() != 0, reason="writes files owned by a system user")
def test_install_writes_unit_folder_and_settings_once(tmp_path: Path) -> None:
    # root exists already: no user is created, everything else is done as on a server.
    unit = ServiceUnit(Path(EMBER), user="root", data_dir=tmp_path / "data", env_file=tmp_path / "etc" / "ember.env")
    unit_path = tmp_path / "systemd" / "ember.service"
    old_umask = os.umask(0o077)  # as the ember command runs
    try:
        done = install(unit, unit_path)
    finally:
        os.umask(old_umask)
    # The settings' folder it made is reachable by the service user (the TLS folder goes beside the file).
    assert stat.S_IMODE(unit.env_file.parent.stat().st_mode) == 0o755
    assert unit_path.read_text() == unit.render() and stat.S_IMODE(unit_path.stat().st_mode) == 0o644
    assert stat.S_IMODE((tmp_path / "data").stat().st_mode) == 0o700
    assert stat.S_IMODE(unit.env_file.stat().st_mode) == 0o640 and "EMBER_TLS_CERT" in unit.env_file.read_text()
    assert any("wrote the settings file" in line for line in done), done
    unit.env_file.write_text("EMBER_PORT=8443\n")
    again = install(unit, unit_path)
    assert unit.env_file.read_text() == "EMBER_PORT=8443\n"  # the operator's settings are never overwritten
    assert any("kept the existing settings file" in line for line in again), again
    steps = next_steps(unit, unit_path)
    assert "systemctl daemon-reload && systemctl enable --now ember.service" in steps
    assert any(f"doctor --env-file {unit.env_file}" in step for step in steps)
