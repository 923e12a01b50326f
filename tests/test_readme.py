"""The README's quick start, run as written against a real server (bash blocks, then the Python block)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from tests.conftest import make_settings
from tests.support.server import ServerThread

ROOT = Path(__file__).resolve().parents[1]


def quickstart_blocks() -> list[tuple[str, str]]:
    text = (ROOT / "README.md").read_text()
    return re.findall(r"```(bash|python) quickstart\n(.*?)```", text, flags=re.S)


def test_readme_has_exactly_two_setup_commands() -> None:
    text = (ROOT / "README.md").read_text()
    block = re.search(r"## Run it, test it.*?```bash\n(.*?)```", text, flags=re.S)
    assert block is not None
    commands = [line.split("#")[0].strip() for line in block.group(1).splitlines() if line.strip()]
    assert commands == ["./scripts/run", "./scripts/test"]
    assert (ROOT / ".ci" / "run").read_text().strip().endswith("exec ./scripts/test")


def test_quickstart_runs(tmp_path: Path) -> None:
    blocks = quickstart_blocks()
    assert [kind for kind, _ in blocks] == ["bash", "bash", "python"]
    data_dir = tmp_path / "data"
    server = ServerThread(make_settings(data_dir)).start()
    try:
        env = {
            **os.environ,
            "EMBER_URL": server.url,
            "EMBER_DATA_DIR": str(data_dir),
            "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
        }
        work = tmp_path / "work"
        work.mkdir()
        (work / ".venv").symlink_to(Path(sys.executable).parents[1])
        script = "set -euo pipefail\n" + "\n".join(code for kind, code in blocks if kind == "bash")
        out = subprocess.run(["bash", "-c", script], cwd=work, env=env, capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, out.stderr
        assert '"app_name":"my-first-app"' in out.stdout.replace(" ", "")
        py = subprocess.run(
            [sys.executable, "-c", blocks[2][1]], cwd=work, env=env, capture_output=True, text=True, timeout=120
        )
        assert py.returncode == 0, py.stderr
        job_id, stream_name, state = py.stdout.split()
        assert re.fullmatch(r"[0-9a-f]{32}", job_id)
        assert stream_name == f"s_{job_id}_room1_alice"
        assert state == "INIT"
    finally:
        server.stop()
