"""A real HLS recording played start to end in headless Chromium, from its ``download_url``, on Ember's
own player page (``/player``, hls.js served by Ember: Chromium has no HLS of its own).

The recording is made by a real worker into a real server's local storage (``tests/recording/stored.py``);
the page gets the link after ``#url=`` and plays it at normal speed (6 s), with hls.js and with the
browser's own HLS. An expired link is refused, and the page says so. Runs in the test network
namespace with the media tests, though it needs no Janus: the browser talks to loopback only.
"""

from __future__ import annotations

import base64
import os
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import av
import numpy as np
import pytest
from tests.media.chromium import Chromium, chromium_skip_reason
from tests.recording.stored import BLUE, Recorded, file_server, record_hls
from tests.support.server import ServerThread

from emberrtc.synthetic import colour_distance

pytestmark = pytest.mark.media

# The picture on screen: its median colour, and where the moving white square is (its centre, in pixels).
SAMPLE = """(() => {
    const v = document.getElementById("video");
    const c = document.createElement("canvas");
    c.width = v.videoWidth; c.height = v.videoHeight;
    const ctx = c.getContext("2d");
    ctx.drawImage(v, 0, 0);
    const d = ctx.getImageData(0, 0, c.width, c.height).data;
    const channels = [[], [], []];
    let x = 0, y = 0, n = 0;
    for (let i = 0; i < d.length; i += 4) {
        for (let k = 0; k < 3; k++) channels[k].push(d[i + k]);
        if (d[i] > 200 && d[i + 1] > 200 && d[i + 2] > 200) {
            x += (i / 4) % c.width; y += Math.floor(i / 4 / c.width); n++;
        }
    }
    const median = channels.map((a) => a.sort((p, q) => p - q)[a.length >> 1]);
    return { median, square: n ? [x / n, y / n] : null };
})()"""


def square_centre(frame: av.VideoFrame) -> tuple[float, float]:
    rgb = frame.to_ndarray(format="rgb24")
    ys, xs = np.nonzero((rgb > 200).all(axis=2))
    return float(xs.mean()), float(ys.mean())


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerThread]:
    with file_server(tmp_path / "data") as srv:
        yield srv


@pytest.mark.parametrize("engine", ["hls.js", "native"])
async def test_chromium_plays_an_hls_recording_from_its_download_url(
    server: ServerThread, tmp_path: Path, engine: str
) -> None:
    reason = chromium_skip_reason()
    if reason is not None:
        pytest.skip(reason)
    recorded: Recorded = await record_hls(server, tmp_path / "spool")
    segments = recorded.local  # what was recorded, read from the disk
    page_url = f"{server.url}/player#url={quote(recorded.download_url, safe='')}&engine={engine}"

    async with Chromium(tmp_path / "browser") as browser:
        page = await browser.open(page_url)
        if engine == "native" and not await page.evaluate(
            "document.getElementById('video').canPlayType('application/vnd.apple.mpegurl')"
        ):
            pytest.skip("this Chromium has no HLS of its own (before M141 or so): hls.js plays it")
        await page.wait_for("window.emberPlayer.status === 'playing'", 15)
        # Part way through: the recording's colour on screen.
        await page.wait_for("document.getElementById('video').currentTime > 2.5", 10)
        middle = await page.evaluate(SAMPLE)
        status = await page.wait_for(
            "['ended', 'failed'].includes(window.emberPlayer.status) && window.emberPlayer.status",
            recorded.seconds + 15,
        )
        assert status == "ended", await page.evaluate("window.emberPlayer.error")
        played = await page.evaluate("""(() => {
            const v = document.getElementById("video");
            const q = v.getVideoPlaybackQuality();
            const fetched = performance.getEntriesByType("resource")
                .filter((e) => new URL(e.name).pathname.endsWith(".ts"))
                .map((e) => [new URL(e.name).pathname, e.responseStatus]);
            return { engine: window.emberPlayer.engine, currentTime: v.currentTime, duration: v.duration,
                     ended: v.ended, frames: q.totalVideoFrames, dropped: q.droppedVideoFrames,
                     size: [v.videoWidth, v.videoHeight], fetched };
        })()""")
        last = await page.evaluate(SAMPLE)
        shot = await page.send("Page.captureScreenshot", {"format": "png"})
        screenshot = Path(os.environ.get("EMBER_SCREENSHOT_DIR", tmp_path)) / f"hls-player-{engine}.png"
        screenshot.write_bytes(base64.b64decode(shot["data"]))

    assert played["engine"] == engine and played["ended"]
    # Start to end: the whole recording's length, played to its last instant, every frame decoded.
    assert abs(played["duration"] - recorded.seconds) <= 1.0
    assert played["duration"] == pytest.approx(segments.duration, abs=0.1)
    assert played["currentTime"] == pytest.approx(played["duration"], abs=0.05)
    assert played["size"] == [320, 180]
    assert abs(played["frames"] - len(segments.video)) <= 2, (played, len(segments.video))
    # Every segment fetched through its signed link (the browser's own player asks for byte ranges).
    folder = recorded.store.object_path(recorded.target.bucket, recorded.target.object_name).parent
    assert {path.rsplit("/", 1)[1] for path, _ in played["fetched"]} == {quote(p.name) for p in folder.glob("*.ts")}
    assert {status for _, status in played["fetched"]} <= {200, 206}, played["fetched"]
    if engine == "hls.js":
        assert len(played["fetched"]) == len(list(folder.glob("*.ts")))  # each once
    for sample in (middle, last):
        assert colour_distance(tuple(sample["median"]), BLUE) < 30, sample
    # The picture left on screen is the recording's last: its square where the last recorded frame has it.
    assert last["square"] is not None
    x, y = square_centre(segments.video[-1])
    assert abs(last["square"][0] - x) <= 3 and abs(last["square"][1] - y) <= 3, (last["square"], (x, y))


async def test_the_player_reports_a_link_that_has_expired(server: ServerThread, tmp_path: Path) -> None:
    reason = chromium_skip_reason()
    if reason is not None:
        pytest.skip(reason)
    assert server.services is not None and server.services.storage.links is not None
    # Refused before anything is looked up, so no recording is needed behind it.
    expired = server.services.storage.links.url("local", "bkt", "app/HLS/x/x.m3u8", expires_at=int(time.time()) - 1)
    async with Chromium(tmp_path / "browser") as browser:
        page = await browser.open(f"{server.url}/player#url={quote(expired, safe='')}")
        status = await page.wait_for(
            "['ended', 'failed'].includes(window.emberPlayer.status) && window.emberPlayer.status", 15
        )
        error = await page.evaluate("window.emberPlayer.error")
        text = await page.evaluate("document.getElementById('status').textContent")
    assert status == "failed" and "HTTP 403" in error, error
    assert text.startswith("Cannot play:")
