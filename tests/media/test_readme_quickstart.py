"""The README's quick start, run as written against a real in-process server with Janus: it must end with
a recording a user can download from the ``download_url`` it prints (and the file must show the bot).

``scripts/first-run`` runs the same blocks against ``./scripts/run`` in a copy of the repository; this test
is the quick one, and sees the server from inside.
"""

from __future__ import annotations

import asyncio
import os
import re
import sys
from dataclasses import replace
from pathlib import Path

import httpx
import pytest
from tests.conftest import make_settings
from tests.media.conftest import MEDIA_IP
from tests.recording.readback import read_back
from tests.support.quickstart import run_quickstart
from tests.support.server import ServerThread, free_port

from emberrtc.synthetic import colour_distance, median_rgb

pytestmark = pytest.mark.media

ROOT = Path(__file__).resolve().parents[2]
RED = (255, 0, 0)


async def test_quickstart_records_the_bot(tmp_path: Path) -> None:
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
        found = re.search(r"^download_url (\S+)$", out.stdout, flags=re.M)
        assert found, out.stdout
        # The user's way: fetch the link, then play the file.
        async with httpx.AsyncClient(trust_env=False) as c:
            r = await c.get(found.group(1), timeout=30)
        assert r.status_code == 200
        (tmp_path / "rec.mp4").write_bytes(r.content)
        rec = await asyncio.to_thread(read_back, tmp_path / "rec.mp4")
        assert rec.format.startswith("mov") and rec.video_codec == "h264" and rec.audio_codec == "aac"
        assert 8.0 <= rec.duration <= 14.0, rec.duration
        assert colour_distance(median_rgb(rec.middle_frame), RED) < 60
    finally:
        await asyncio.to_thread(server.stop)
