"""The README's set-up section: exactly the two commands, and CI runs the second one."""

from __future__ import annotations

import re
from pathlib import Path

from tests.support.quickstart import blocks

ROOT = Path(__file__).resolve().parents[1]


def test_readme_has_exactly_two_setup_commands() -> None:
    text = (ROOT / "README.md").read_text()
    block = re.search(r"## Run it, test it.*?```bash\n(.*?)```", text, flags=re.S)
    assert block is not None
    commands = [line.split("#")[0].strip() for line in block.group(1).splitlines() if line.strip()]
    assert commands == ["./scripts/run", "./scripts/test"]
    assert (ROOT / ".ci" / "run").read_text().strip().endswith("exec ./scripts/test")


def test_quickstart_blocks_are_in_order() -> None:
    # tenant, app, bot, the SDK script (saved as quickstart.py) and its command, the second bot, the mixed
    # job's script (mix.py) and its command
    found = [(kind, name) for kind, name, _ in blocks(ROOT / "README.md")]
    assert found == [
        ("bash", ""), ("bash", ""), ("bash", ""), ("python", ""), ("bash", ""),
        ("bash", ""), ("python", "mix.py"), ("bash", ""),
    ]  # fmt: skip
