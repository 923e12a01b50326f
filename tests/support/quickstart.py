"""The README's quick start as a user runs it: its ``bash quickstart`` blocks in one terminal, in order, with
its ``python quickstart`` block saved as ``quickstart.py`` (as the README says)."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path


def blocks(readme: Path) -> list[tuple[str, str]]:
    """The quick start's blocks, ``(kind, code)``, in the README's order."""
    return re.findall(r"```(bash|python) quickstart\n(.*?)```", readme.read_text(), flags=re.S)


def run_quickstart(
    readme: Path, work: Path, env: dict[str, str], timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    """Run the quick start in ``work`` (which has the server's ``.venv``); the bot it starts is stopped at the end."""
    found = blocks(readme)
    python = [code for kind, code in found if kind == "python"]
    assert len(python) == 1, "the quick start has one Python block, saved as quickstart.py"
    (work / "quickstart.py").write_text(python[0])
    # The bot runs in the background, as the README starts it; the terminal's jobs end with the script.
    script = "set -euo pipefail\ntrap 'kill $(jobs -p) 2>/dev/null || true' EXIT\n"
    script += "\n".join(code for kind, code in found if kind == "bash")
    return subprocess.run(["bash", "-c", script], cwd=work, env=env, capture_output=True, text=True, timeout=timeout)
