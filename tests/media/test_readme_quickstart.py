"""The README's quick start, run as written against a real in-process server with Janus: it must end with
two recordings a user can download from the ``download_url`` lines it prints (alice's, showing the bot, and
the room's mixed recording, showing both bots in each layout it was given).

``scripts/first-run`` runs the same blocks against ``./scripts/run`` in a copy of the repository; this test
is the quick one, and sees the server from inside.
"""

from __future__ import annotations

import asyncio
import os
import sys
from dataclasses import replace
from pathlib import Path

import pytest
from tests.conftest import make_settings
from tests.media.conftest import MEDIA_IP
from tests.support.quickstart import check_recordings, run_quickstart
from tests.support.server import ServerThread, free_port

pytestmark = pytest.mark.media

ROOT = Path(__file__).resolve().parents[2]


async def test_quickstart_records_the_bot_and_mixes_the_room(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    # A real port, not 0: the download_url in the callback names the server's own address.
    settings = replace(make_settings(data_dir), media_enabled=True, media_ip=MEDIA_IP, port=free_port())
    server = await asyncio.to_thread(lambda: ServerThread(settings).start())
    try:
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("EMBER_")},
            "EMBER_URL": server.url,
            "EMBER_DATA_DIR": str(data_dir),
            "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
        }
        work = tmp_path / "work"
        work.mkdir()
        (work / ".venv").symlink_to(Path(sys.executable).parents[1])
        out = await asyncio.to_thread(run_quickstart, ROOT / "README.md", work, env)
        assert out.returncode == 0, out.stdout + out.stderr
        assert (work / "acme-credential.json").stat().st_mode & 0o777 == 0o600
        # Each link fetched and each file played, as a user would.
        await asyncio.to_thread(check_recordings, out.stdout, tmp_path)
    finally:
        await asyncio.to_thread(server.stop)
