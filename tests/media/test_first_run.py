"""The first minute of a new user: ``ember serve`` on the default, relative, ``~`` and spaced data folders,
and what it says on a machine where Janus has nothing but loopback (issue: first run).

Each test runs a real ``ember serve`` process. The loopback-only cases run it in a network namespace this
test makes with nothing but ``lo`` in it (``ip netns add``), the way a fresh container looks.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from tests.media.conftest import MEDIA_IP
from tests.support.ember_serve import EmberServe
from tests.support.waiting import until

pytestmark = pytest.mark.media

ROOT = Path(__file__).resolve().parents[2]
ICE_WARNING = "Janus has no address to gather ICE candidates on"


async def _login(server: EmberServe, name: str, password: str) -> httpx.Response:
    identity = {
        "methods": ["password"],
        "password": {"user": {"name": name, "password": password, "domain": {"name": name}}},
    }
    body = {"auth": {"identity": identity, "scope": {"project": {"name": "ember"}}}}
    async with httpx.AsyncClient(trust_env=False) as c:
        return await c.post(f"{server.url}/v3/auth/tokens", json=body)


@pytest.mark.parametrize(
    ("how", "expected"),
    [
        ("default", "data"),  # no --data-dir at all: ./data of the working folder, as `./scripts/run` does
        ("relative", "my data/ember"),  # --data-dir "my data/ember", relative and with a space
        ("home", "home/ember data"),  # EMBER_DATA_DIR="~/ember data"
    ],
)
async def test_serve_starts_on_any_data_folder(tmp_path: Path, how: str, expected: str) -> None:
    cwd = tmp_path / "work"
    cwd.mkdir()
    env = {"EMBER_MEDIA_IP": MEDIA_IP, "HOME": str(tmp_path / "home")}
    arg = None
    if how == "relative":
        arg = "my data/ember"
    elif how == "home":
        env["EMBER_DATA_DIR"] = "~/ember data"
    folder = (cwd if how != "home" else tmp_path) / expected
    server = EmberServe(None, env=env, cwd=cwd, log=tmp_path / "serve.log", data_dir_arg=arg)
    try:
        await server.start()
        # Everything the server derives from the folder is in it: database, keys, Janus's config and log.
        for name in ("ember.db", "master.key", "janus/janus.jcfg", "janus/janus.log"):
            assert (folder / name).is_file(), f"{name} missing under {folder}"
        assert f"Ember data folder: {folder}" in server.output()
        # The CLI, run as the README runs it (same working folder, same relative folder), works on the same
        # data: the server then accepts the tenant it created.
        server.cli("tenant", "create", "newcomer", "--password", "first-run-pw")
        assert (await _login(server, "newcomer", "first-run-pw")).status_code == 201
        assert ICE_WARNING not in server.output()  # the namespace's veth address is there for Janus
    finally:
        assert server.stop() == 0, server.output()[-3000:]


@pytest.fixture
def loopback_only() -> Iterator[list[str]]:
    """A network namespace with only ``lo`` (up): the command prefix that runs something inside it."""
    name = f"ember-lo-{uuid.uuid4().hex[:8]}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        subprocess.run(["ip", "-n", name, "link", "set", "lo", "up"], check=True)
        yield ["ip", "netns", "exec", name]
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False)


async def _wait_ready(server: EmberServe) -> None:
    # The test process is outside the namespace: it reads the log, not the API.
    def ready() -> bool:
        server.check_alive()
        return "Application startup complete" in server.output()

    await until(ready, within=60, what="ember serve to start")


async def test_loopback_only_machine_warns_and_publish_fails_clearly(tmp_path: Path, loopback_only: list[str]) -> None:
    data = tmp_path / "data"
    server = EmberServe(data, prefix=loopback_only)
    try:
        server.spawn()
        await _wait_ready(server)
        out = server.output()
        assert ICE_WARNING in out and "EMBER_MEDIA_IP" in out
        assert "WARNING" in out.split(ICE_WARNING)[0].splitlines()[-1]
        # A client in the same namespace joins (signalling works) and publishes: the answer says why it cannot.
        tenant = server.cli("tenant", "create", "lonely", "--password", "first-run-pw")
        assert tenant["domain_name"] == "lonely"
        probe = await asyncio.to_thread(
            subprocess.run,
            [*loopback_only, sys.executable, "-m", "tests.media.loopback_publish", server.url],
            capture_output=True,
            text=True,
            timeout=60,
            cwd=ROOT,
        )
        assert probe.returncode == 0, probe.stderr
        result = json.loads(probe.stdout.strip().splitlines()[-1])
        assert result["code"] == "RTC.00002000", result
        assert "could not set up ICE" in result["message"] and "EMBER_MEDIA_IP" in result["message"]
        assert "InvalidParameterValue" not in result["message"]

        def logged() -> bool:
            return "Janus could not set up ICE for a client's offer" in server.output()

        await until(logged, within=5, what="Ember to log the ICE failure")
    finally:
        server.stop()


async def test_media_ip_matching_nothing_warns_naming_it(tmp_path: Path) -> None:
    server = EmberServe(tmp_path / "data", env={"EMBER_MEDIA_IP": "eth-nonexistent"})
    try:
        await server.start()
        out = server.output()
        assert ICE_WARNING in out
        assert "EMBER_MEDIA_IP='eth-nonexistent' matches no non-loopback interface" in out
    finally:
        server.stop()
