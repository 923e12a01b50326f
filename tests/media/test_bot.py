"""``ember bot`` as a real subprocess: it signs its join, publishes what it was told, and exits printing why."""

from __future__ import annotations

import asyncio
import re
import signal
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from tests.media.conftest import MediaApp
from tests.media.media_checks import assert_colour, audio_report, video_report, with_deadline

from emberrtc.client import RoomClient

pytestmark = pytest.mark.media

EMBER = str(Path(sys.executable).with_name("ember"))


class Bot:
    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        self.lines: list[str] = []

    async def line_containing(self, text: str) -> str:
        """Read output until a line containing ``text`` (bound with a deadline)."""
        assert self.process.stdout is not None
        while True:
            raw = await self.process.stdout.readline()
            if not raw:
                raise AssertionError(f"bot exited without printing {text!r}; printed {self.lines}")
            line = raw.decode().rstrip()
            self.lines.append(line)
            if text in line:
                return line

    async def exit_status(self) -> int:
        assert self.process.stdout is not None
        rest = await self.process.stdout.read()
        self.lines += rest.decode().splitlines()
        return await self.process.wait()


@asynccontextmanager
async def bot(app: MediaApp, *args: str, key: str | None = None) -> AsyncIterator[Bot]:
    process = await asyncio.create_subprocess_exec(
        EMBER,
        "bot",
        "--server",
        app.server.url,
        "--app-id",
        app.app_id,
        "--app-key",
        key or app.app_key,
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        yield Bot(process)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


async def test_bot_publishes_camera_and_screen_and_exits_when_removed(media_app: MediaApp) -> None:
    args = ("--room", "bots", "--user", "bot1", "--color", "#10c060", "--tone", "660", "--screen", "--codec", "vp8")
    async with bot(media_app, *args) as b:
        await with_deadline(b.line_containing("publishing screen"), 30)
        viewer = await RoomClient.join(
            media_app.server.url, app_id=media_app.app_id, room_id="bots", user_id="viewer", app_key=media_app.app_key
        )
        try:
            await with_deadline(viewer.wait_stream("bot1", "camera"), 10)
            await with_deadline(viewer.wait_stream("bot1", "screen"), 10)
            camera = await viewer.subscribe("bot1", "camera")
            screen = await viewer.subscribe("bot1", "screen")
            video, audio, shared = await with_deadline(
                asyncio.gather(
                    video_report(camera.video, frames=15),
                    audio_report(camera.audio, 1.0),
                    video_report(screen.video, frames=5),
                ),
                30,
            )
            assert video.size == (640, 360)
            assert_colour(video.colour, (0x10, 0xC0, 0x60))
            assert_colour(shared.colour, (0xFF - 0x10, 0xFF - 0xC0, 0xFF - 0x60))
            assert abs(audio.frequency - 660) <= 5
            assert {(t["type"], t["codec"]) for t in camera.tracks} == {("video", "vp8"), ("audio", "opus")}

            response = await media_app.post(
                f"/v2/apps/{media_app.app_id}/rooms/bots/batch-remove-users", {"user_ids": ["bot1"]}
            )
            assert response.status_code == 202
            assert await with_deadline(b.exit_status(), 10) == 3
            assert any("removed from the room" in line for line in b.lines), b.lines
        finally:
            await viewer.leave()
    _, sessions = await media_app.records("bots")
    [record] = [s for s in sessions if s["user_id"] == "bot1"]
    assert (record["platform"], record["nickname"], record["leave_reason"]) == ("ember-bot", "bot bot1", "removed")
    assert record["published_streams"] == ["camera", "screen"]


async def test_bot_exits_when_the_room_is_dismissed(media_app: MediaApp) -> None:
    async with bot(media_app, "--room", "bots2", "--user", "bot2", "--color", "blue", "--codec", "h264") as b:
        await with_deadline(b.line_containing("publishing camera"), 30)
        response = await media_app.post(f"/v2/apps/{media_app.app_id}/rooms/bots2/dismiss")
        assert response.status_code == 202
        assert await with_deadline(b.exit_status(), 10) == 3
        assert any("the room was dismissed" in line for line in b.lines), b.lines


MEDIA_LINE = re.compile(
    r"camera(?: \(media is flowing\))?: video (\d+) frames sent \(([\d.]+)/s, (\d+) kbit/s\), "
    r"server received (\d+) packets, (\d+) lost; audio (\d+) frames sent \(([\d.]+)/s, (\d+) kbit/s\), "
    r"server received (\d+) packets"
)


async def test_bot_says_media_is_flowing_then_leaves_cleanly_on_sigterm(media_app: MediaApp) -> None:
    async with bot(media_app, "--room", "bots3", "--user", "bot3", "--report-every", "1") as b:
        await with_deadline(b.line_containing("publishing camera"), 30)
        await with_deadline(b.line_containing("camera (media is flowing)"), 15)
        # A line once Janus's receiver reports have come back: what was sent, at what rate, what arrived.
        report = await with_deadline(b.line_containing("lost; audio"), 15)
        match = MEDIA_LINE.search(report)
        assert match, report
        video_frames, fps, video_kbps, video_packets, lost = (float(g) for g in match.groups()[:5])
        audio_frames, audio_fps, audio_kbps, audio_packets = (float(g) for g in match.groups()[5:])
        assert video_frames >= 30 and audio_frames >= 50
        # A 30 fps camera and 20 ms audio frames, over about a second; a stalled loop catches up in bursts.
        assert 10 <= fps <= 60, report
        assert 20 <= audio_fps <= 100, report
        assert video_kbps > 10 and audio_kbps > 10, report  # a flat colour compresses to little
        assert video_packets > 0 and audio_packets > 0 and lost <= video_packets / 10, report
        b.process.send_signal(signal.SIGTERM)
        assert await with_deadline(b.exit_status(), 10) == 0
        assert any("left the room" in line for line in b.lines), b.lines
    _, [record] = await media_app.records("bots3")
    assert (record["state"], record["leave_reason"]) == ("OFFLINE", "left")


async def test_bot_refused_join_says_why(media_app: MediaApp) -> None:
    async with bot(media_app, "--room", "bots4", "--user", "bot4", key="0" * 32) as b:
        assert await with_deadline(b.exit_status(), 30) == 2
        assert any("join refused" in line and "RTC.00001001" in line for line in b.lines), b.lines


RECEIVED_LINE = re.compile(
    r"from (\w+)/camera: video (\d+) frames received \(([\d.]+)/s\), (\d+) packets, (\d+) lost; "
    r"audio (\d+) frames received \(([\d.]+)/s\), (\d+) packets, (\d+) lost"
)
TOTAL_LINE = re.compile(r"receiving (\d+) kbit/s in all")


async def test_two_bots_receive_each_other(media_app: MediaApp) -> None:
    room = ("--room", "bots5", "--report-every", "1", "--codec", "vp8")
    async with bot(media_app, *room, "--user", "bot5a", "--color", "red") as first:
        await with_deadline(first.line_containing("publishing camera"), 30)
        async with bot(media_app, *room, "--user", "bot5b", "--color", "blue") as second:
            # Each subscribes to the other's camera and counts what it decodes.
            for receiver, sender in ((first, "bot5b"), (second, "bot5a")):
                await with_deadline(receiver.line_containing(f"receiving {sender}/camera"), 15)
                # The first line with frames covers the connection's setup too; the next one a second of flow.
                line = ""
                while not ((match := RECEIVED_LINE.search(line)) and int(match.group(2)) > 0):
                    line = await with_deadline(receiver.line_containing(f"from {sender}/camera: video"), 15)
                before = int(match.group(2))
                line = await with_deadline(receiver.line_containing(f"from {sender}/camera: video"), 15)
                match = RECEIVED_LINE.search(line)
                assert match and match.group(1) == sender, line
                video_frames, fps, packets, lost = (float(match.group(i)) for i in (2, 3, 4, 5))
                audio_frames, audio_fps = (float(match.group(i)) for i in (6, 7))
                assert video_frames > before, line
                # A 30 fps camera and 50 audio frames a second, over about a second: a busy machine delivers
                # in bursts after a stall, so only the order of magnitude is checked.
                assert 5 <= fps <= 90, line
                assert audio_frames > 0 and 10 <= audio_fps <= 150, line
                assert packets > 0 and lost <= packets / 10, line
                total = TOTAL_LINE.search(await with_deadline(receiver.line_containing("kbit/s in all"), 15))
                assert total and int(total.group(1)) > 10
            second.process.send_signal(signal.SIGTERM)
            assert await with_deadline(second.exit_status(), 10) == 0
        # The first bot sees the second's camera end, and says so.
        await with_deadline(first.line_containing("stopped receiving bot5b/camera"), 15)
        first.process.send_signal(signal.SIGTERM)
        assert await with_deadline(first.exit_status(), 10) == 0
