"""The README's quick start as a user runs it: its ``bash quickstart`` blocks in one terminal, in order, with
each ``python quickstart`` block saved as the file the README names (``python quickstart mix.py``; the first,
unnamed, as ``quickstart.py``), and what a user then gets from the ``download_url`` lines it prints."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import httpx

from emberrtc.synthetic import COLOURS, colour_distance, median_rgb
from tests.recording.readback import Readback, band, cell_rgb, frame_at, read_back

RED, BLUE = COLOURS["red"], COLOURS["blue"]  # the bots' --color red and blue


def blocks(readme: Path) -> list[tuple[str, str, str]]:
    """The quick start's blocks, ``(kind, file name of a Python block, code)``, in the README's order."""
    return re.findall(r"```(bash|python) quickstart(?: (\S+))?\n(.*?)```", readme.read_text(), flags=re.S)


def run_quickstart(
    readme: Path, work: Path, env: dict[str, str], timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    """Run the quick start in ``work`` (which has the server's ``.venv``); the bots it starts are stopped at the end."""
    found = blocks(readme)
    python = [(name or "quickstart.py", code) for kind, name, code in found if kind == "python"]
    assert python and python[0][0] == "quickstart.py", "the quick start's first Python block is quickstart.py"
    for name, code in python:
        (work / name).write_text(code)
    # The bots run in the background, as the README starts them; the terminal's jobs end with the script.
    script = "set -euo pipefail\ntrap 'kill $(jobs -p) 2>/dev/null || true' EXIT\n"
    script += "\n".join(code for kind, _, code in found if kind == "bash")
    return subprocess.run(["bash", "-c", script], cwd=work, env=env, capture_output=True, text=True, timeout=timeout)


def download(url: str, path: Path) -> None:
    """What a user's browser or player gets from a link."""
    r = httpx.get(url, timeout=30, trust_env=False)
    assert r.status_code == 200, r.text
    path.write_bytes(r.content)


def check_recordings(stdout: str, folder: Path) -> None:
    """The two recordings the quick start prints links to, downloaded into ``folder`` as a user would and
    played back: alice alone (step 4), then the room mixed (step 5: side by side, then bob with alice in a
    corner)."""
    urls = re.findall(r"^download_url (\S+)$", stdout, flags=re.M)
    assert len(urls) == 2, stdout
    single, mixed = (folder / "alice.mp4", folder / "room.mp4")
    download(urls[0], single)
    download(urls[1], mixed)
    rec = read_back(single)
    assert rec.format.startswith("mov") and rec.video_codec == "h264" and rec.audio_codec == "aac"
    assert 8.0 <= rec.duration <= 14.0, rec.duration
    assert colour_distance(median_rgb(rec.middle_frame), RED) < 60
    check_mix(read_back(mixed))


#: Seconds of each layout in ``mix.py`` (the job's file starts when it goes RUNNING, as the script's count).
PHASE = 8.0
TOLERANCE = 60  # colours through two encodings (the bots' and the mix's, at 500 kbit/s)


def check_mix(rec: Readback) -> None:
    """``mix.py``'s file: 640x480 at 15 fps; ``nine_grids_view`` (alice left, bob right), then the custom
    panes (bob whole, alice in the lower right corner); both tones all along."""
    assert rec.video_codec == "h264" and rec.audio_codec == "aac"
    assert (rec.width, rec.height) == (640, 480), (rec.width, rec.height)
    assert 2 * PHASE - 2 <= rec.duration <= 2 * PHASE + 6, rec.duration
    frames = len(rec.video) / rec.duration
    assert 13 <= frames <= 16, frames  # the template's 15 fps
    for t in (2.5, PHASE / 2, PHASE - 1.5):  # side by side (a 2x1 grid of 320x480 tiles)
        frame = frame_at(rec.video, t)
        assert colour_distance(cell_rgb(frame, 0, 0, 320, 480), RED) < TOLERANCE, t
        assert colour_distance(cell_rgb(frame, 320, 0, 320, 480), BLUE) < TOLERANCE, t
    end = rec.duration
    for t in (end - PHASE + 2.5, end - 1.5):  # bob whole, alice at 0.65-0.95 of each side
        frame = frame_at(rec.video, t)
        assert colour_distance(cell_rgb(frame, 0, 0, 384, 288), BLUE) < TOLERANCE, t
        assert colour_distance(cell_rgb(frame, 416, 312, 192, 144), RED) < TOLERANCE, t
    for tone in (440.0, 660.0):
        assert band(rec.audio, tone) > 0.2, tone
