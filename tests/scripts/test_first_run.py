"""The README's commands as a newcomer runs them (issue: first run). Run by ``scripts/first-run``, a stage of
``scripts/test``, which makes the copy of the repository (``EMBER_FIRST_RUN_COPY``, set up as ``./scripts/run``
sets itself up) and a network namespace for this test alone.

In the copy: ``./scripts/run`` with no arguments, serving on ``http://127.0.0.1:8080`` with data in ``./data``.
Then the README's quick start, block by block as a user runs it, with its bot publishing in the room; the
``download_url`` it prints is fetched and played. Last, Ctrl-C stops the server, which must exit 0 and take
Janus with it, having printed no error.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from emberrtc.media.janus_process import janus_pids
from tests.media.conftest import media_skip_reason
from tests.support.quickstart import check_recordings, run_quickstart
from tests.support.waiting import wait_for

pytestmark = pytest.mark.first_run

SOURCE = Path(os.environ.get("EMBER_FIRST_RUN_SOURCE") or Path(__file__).resolve().parents[2])
COPY = os.environ.get("EMBER_FIRST_RUN_COPY")
URL = "http://127.0.0.1:8080"


@pytest.fixture
def fresh_copy() -> Path:
    if not COPY:
        pytest.fail("run this test with scripts/first-run: it makes the copy of the repository and the namespace")
    reason = media_skip_reason()
    if reason is not None:
        pytest.fail(reason)
    return Path(COPY)


def _env() -> dict[str, str]:
    # A newcomer's shell: none of the test run's EMBER_* settings, nor its virtual environment.
    env = {k: v for k, v in os.environ.items() if not k.startswith(("EMBER_", "VIRTUAL_ENV", "PYTEST"))}
    venv_bin = str(Path(os.environ.get("VIRTUAL_ENV", "/nonexistent")) / "bin")
    env["PATH"] = ":".join(p for p in env.get("PATH", "").split(":") if p and p != venv_bin)
    return env


def test_readme_commands_on_a_fresh_copy(fresh_copy: Path) -> None:
    log_path = fresh_copy.parent / "run.log"
    with log_path.open("wb") as log:
        run = subprocess.Popen(["./scripts/run"], cwd=fresh_copy, env=_env(), stdout=log, stderr=subprocess.STDOUT)
    janus_dir = fresh_copy / "data" / "janus"

    def output() -> str:
        return log_path.read_text(errors="replace")

    try:

        def answers() -> bool:
            if run.poll() is not None:
                pytest.fail(f"./scripts/run exited with {run.returncode}:\n{output()[-4000:]}")
            try:
                return httpx.get(f"{URL}/openapi.json", timeout=2, trust_env=False).status_code == 200
            except httpx.TransportError:
                return False

        # The first run installs the Python packages into its own .venv before it serves.
        wait_for(answers, timeout=600, what="./scripts/run to answer on 127.0.0.1:8080")
        assert f"Ember data folder: {fresh_copy / 'data'}" in output()
        # No EMBER_OUTBOUND_ALLOW, listening on loopback: the quick start's callback receiver on 127.0.0.1 is allowed.
        assert "outbound: the API listens on loopback only (127.0.0.1)" in output()
        assert janus_pids(janus_dir), "Janus is not running on the copy's data folder"

        out = run_quickstart(SOURCE / "README.md", fresh_copy, {**_env(), "EMBER_URL": URL}, timeout=600)
        assert out.returncode == 0, f"{out.stdout}\n{out.stderr}\n--- server:\n{output()[-4000:]}"
        assert (fresh_copy / "acme-credential.json").stat().st_mode & 0o777 == 0o600
        ignored = subprocess.run(
            ["git", "-C", str(SOURCE), "check-ignore", "-q", "acme-credential.json"], check=False
        ).returncode
        assert ignored == 0, "acme-credential.json is not ignored by git"

        check_recordings(out.stdout, fresh_copy)  # each link fetched, each file played
    finally:
        if run.poll() is None:
            run.send_signal(signal.SIGINT)  # Ctrl-C in the server's terminal
            try:
                run.wait(timeout=60)
            except subprocess.TimeoutExpired:
                run.kill()
                run.wait()
    assert run.returncode == 0, output()[-4000:]
    deadline = time.monotonic() + 10
    while janus_pids(janus_dir) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not janus_pids(janus_dir), "Janus outlived ./scripts/run"
    printed = output()
    assert "Traceback" not in printed and " ERROR " not in printed, printed[-4000:]
