"""The mixed-stream pipeline in process, with injected clocks: RTP of several synthetic publishers (distinct
colours and tones) on one port, told apart by SSRC; the MP4s read back with PyAV (the worker process and
the supervisor around it are in ``test_mix_supervisor.py``)."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest

from emberrtc.recording.mix_pipeline import MixPipeline
from emberrtc.recording.mix_preview import MAX_AGE, PREVIEW, read_preview
from emberrtc.recording.plan import (
    Endpoint,
    HlsOutput,
    MixImageFiles,
    MixInput,
    MixStream,
    Mp4Output,
    ObjectNaming,
    RecordingPlan,
    Timing,
)
from emberrtc.recording.reports import FileCompleted, KeyframeRequest, MediaState, PushState, Report
from emberrtc.synthetic import SineTone, beep_and_flash, beep_times, colour_distance, dominant_frequency, flash_times
from tests.recording.publisher import AUDIO, Publisher
from tests.recording.readback import cell_rgb, first_frame_is_keyframe, frame_at, read_back, video_packets
from tests.support.rtmp_server import RtmpServer, rtmp_skip_reason
from tests.support.waiting import wait_for

WALL = 1_700_000_000.0
NAMING = ObjectNaming("rec/{record_type}/{stream}_{file_start_time}", "app1", "m_job_room", record_type="mix",
                      location="local", bucket="b")  # fmt: skip
RED, GREEN, BLUE, YELLOW = (220, 30, 30), (30, 200, 40), (30, 60, 220), (230, 220, 30)


def mix_plan(
    tmp: Path, template: str, params: dict[str, Any], streams: tuple[MixStream, ...], **outputs: Any
) -> RecordingPlan:
    if not outputs:
        outputs = {"mp4": Mp4Output(NAMING, record_cycle=60)}
    return RecordingPlan(
        job_id="job",
        app_id="app1",
        room_id="room",
        stream_name="m_job_room",
        location="local",
        bucket="b",
        spool_dir=str(tmp / "spool"),
        video=None,
        audio=None,
        mix=MixInput(Endpoint(), template, {"encode_template": template, **params}, streams),
        **outputs,
    )


class User:
    def __init__(self, user_id: str, order: int, pub: Publisher, stream: str = "camera") -> None:
        self.user_id, self.order, self.pub, self.stream = user_id, order, pub, stream
        base = 1000 * (order + 1) + (10 if stream == "screen" else 0)
        pub.video_ssrc, pub.audio_ssrc = base, base + 1

    def streams(self) -> tuple[MixStream, ...]:
        out = []
        if self.pub.video is not None:
            out.append(
                MixStream(
                    self.pub.video_ssrc, self.user_id, self.stream, "video", self.pub.video_codec or "", self.order
                )
            )
        if self.pub.audio is not None:
            out.append(MixStream(self.pub.audio_ssrc, self.user_id, self.stream, "audio", "OPUS", self.order))
        return tuple(out)


class MixDriver:
    """Feeds several publishers' packets to a mixed pipeline as a live room would: 20 ms of media per step,
    arriving at that step's (fake) monotonic instant, the pipeline ticked after each step."""

    def __init__(self, plan: RecordingPlan, users: list[User], cpu_clock: Callable[[], float] | None = None) -> None:
        self.users = {u.user_id: u for u in users}
        self.now = 100.0
        self.reports: list[Report] = []
        extra = {} if cpu_clock is None else {"cpu_clock": cpu_clock}
        self.pipeline = MixPipeline(plan, self._report, wall_clock=lambda: WALL, run_id="t", **extra)

    def _report(self, report: Report) -> None:
        self.reports.append(report)
        if isinstance(report, KeyframeRequest):  # answer like a live publisher
            user = report.stream.split("/")[0]
            if user in self.users:
                self.users[user].pub.request_keyframe()

    def send(self, seconds: float, only: list[str] | None = None) -> None:
        for _ in range(round(seconds / 0.02)):
            self.now += 0.02
            for u in self.users.values():
                if only is not None and u.user_id not in only:
                    u.pub.pause(0.02)
                    continue
                for kind, data in u.pub.run(0.02):
                    self.pipeline.receive("mix", data, self.now + (0.001 if kind == AUDIO else 0.0))
            self.pipeline.tick(self.now)

    def send_delayed(self, seconds: float, delay: Callable[[User, str, int], float]) -> None:
        """As :meth:`send`, each packet arriving ``delay(user, kind, step)`` seconds late (held back, in order)."""
        held: list[tuple[float, int, bytes]] = []  # (arrival, order, datagram)
        for step in range(round(seconds / 0.02)):
            self.now += 0.02
            for u in self.users.values():
                for kind, data in u.pub.run(0.02):
                    late = delay(u, kind, step)
                    held.append((self.now + late + (0.001 if kind == AUDIO else 0.0), len(held), data))
            held.sort()
            while held and held[0][0] <= self.now + 0.0015:
                arrival, _, data = held.pop(0)
                self.pipeline.receive("mix", data, arrival)
            self.pipeline.tick(self.now)

    def wait(self, seconds: float) -> None:
        end = self.now + seconds
        while self.now < end:
            self.now += 0.05
            for u in self.users.values():
                u.pub.pause(0.05)
            self.pipeline.tick(self.now)

    def update(self, plan: RecordingPlan) -> None:
        self.pipeline.update(plan)

    def of(self, kind: type) -> list[Any]:
        return [r for r in self.reports if isinstance(r, kind)]


def test_nine_grids_places_each_participant_in_its_cell(tmp_path: Path) -> None:
    users = [
        User("alice", 0, Publisher("H264", colour=RED, tone=440.0, seed=1)),
        User("bob", 1, Publisher("VP8", colour=GREEN, width=180, height=320, tone=None, seed=2)),  # portrait
        User("carol", 2, Publisher("H264", colour=BLUE, width=640, height=360, tone=None, seed=3)),
        User("dave", 3, Publisher("VP8", colour=YELLOW, tone=None, seed=4)),
    ]
    streams = tuple(s for u in users for s in u.streams())
    plan = mix_plan(tmp_path, "640x480_15_500", {"layout_template": "nine_grids_view"}, streams)
    d = MixDriver(plan, users)
    d.send(3.0)
    d.pipeline.close()

    (f,) = d.of(FileCompleted)
    rb = read_back(f.path)
    assert (rb.width, rb.height, f.width, f.height) == (640, 480, 640, 480)
    assert f.transcoded  # mixing counts as transcoding (usage)
    assert f.object_name.startswith("rec/mix/m_job_room_")
    # Constant frame rate: 15 fps, every frame 1/15 s after the one before.
    times = [float(fr.time or 0.0) for fr in rb.video]
    assert np.allclose(np.diff(times), 1 / 15, atol=0.002)
    assert len(rb.video) == pytest.approx(15 * f.duration, abs=2)
    # Four users: a 2x2 grid, by join order.
    cells = {"alice": (0, 0), "bob": (320, 0), "carol": (0, 240), "dave": (320, 240)}
    colours = {"alice": RED, "bob": GREEN, "carol": BLUE, "dave": YELLOW}
    frame = frame_at(rb.video, rb.duration - 0.5)
    for user, (x, y) in cells.items():
        got = cell_rgb(frame, x, y, 320, 240)
        assert colour_distance(got, colours[user]) < 40, (user, got)
    # The tone of the one user who sends audio.
    assert dominant_frequency(rb.audio[len(rb.audio) // 3 :]) == pytest.approx(440.0, abs=15)


def _distinct_colours(n: int) -> list[tuple[int, int, int]]:
    """``n`` colours spread around the hue circle (saturated, mid-bright: far apart in RGB)."""
    import colorsys

    return [tuple(int(200 * c + 30) for c in colorsys.hsv_to_rgb(i / n, 0.9, 1.0)) for i in range(n)]  # type: ignore[misc]


# nine_grids_view, as the issue states it: 1 user the whole canvas; 2 side by side, full height; 3-4 a 2x2
# grid; 5-6 3x2; 7-9 3x3; 10-16 4x4; 17-25 5x5; tiles filled in join order, row by row.
GRID = {1: (1, 1), 2: (2, 1), 9: (3, 3), 17: (5, 5)}


@pytest.mark.parametrize("n", sorted(GRID))
def test_nine_grids_at_1_2_9_and_17_users(tmp_path: Path, n: int) -> None:
    colours = _distinct_colours(n)
    users = [
        User(f"u{i:02d}", i, Publisher("H264", colour=colours[i], width=160, height=90, fps=15, tone=None, seed=i))
        for i in range(n)
    ]
    streams = tuple(s for u in users for s in u.streams())
    plan = mix_plan(tmp_path, "640x480_15_500", {"layout_template": "nine_grids_view"}, streams)
    d = MixDriver(plan, users)
    d.send(2.5)
    d.pipeline.close()

    (f,) = d.of(FileCompleted)
    rb = read_back(f.path)
    frame = frame_at(rb.video, rb.duration - 0.4)
    cols, rows = GRID[n]
    w, h = 640 // cols, 480 // rows
    for i in range(n):
        x, y = (i % cols) * w, (i // cols) * h
        got = cell_rgb(frame, x, y, w, h)
        nearest = min(range(n), key=lambda k: colour_distance(got, colours[k]))
        assert nearest == i and colour_distance(got, colours[i]) < 45, (i, got, colours[i])


def test_a_user_who_leaves_is_replaced_and_the_layout_change_is_in_the_same_file(tmp_path: Path) -> None:
    alice = User("alice", 0, Publisher("H264", colour=RED, tone=None, seed=1))
    bob = User("bob", 1, Publisher("H264", colour=GREEN, tone=None, seed=2))
    carol = User("carol", 2, Publisher("VP8", colour=BLUE, tone=None, seed=3))
    plan = mix_plan(tmp_path, "480x360_15_320", {"layout_template": "nine_grids_view"}, alice.streams() + bob.streams())
    d = MixDriver(plan, [alice, bob, carol])
    d.send(2.0, only=["alice", "bob"])
    # bob leaves, carol joins: the server sends a new plan with the room's streams.
    changed_at = d.now
    d.update(dataclasses.replace(plan, mix=dataclasses.replace(plan.mix, streams=alice.streams() + carol.streams())))  # type: ignore[arg-type]
    d.send(2.0, only=["alice", "carol"])
    d.pipeline.close()

    (f,) = d.of(FileCompleted)  # one file: the layout changed inside it
    rb = read_back(f.path)
    first = rb.video[0].time or 0.0
    before = frame_at(rb.video, 1.0)
    after = frame_at(rb.video, float(first) + (changed_at - 100.0) + 1.0)  # 1 s after the change
    left, right = (0, 0, 240, 360), (240, 0, 240, 360)
    assert colour_distance(cell_rgb(before, *left), RED) < 40
    assert colour_distance(cell_rgb(before, *right), GREEN) < 40
    assert colour_distance(cell_rgb(after, *left), RED) < 40  # alice keeps her place
    assert colour_distance(cell_rgb(after, *right), BLUE) < 40, cell_rgb(after, *right)


def test_a_live_layout_change_shows_within_one_second(tmp_path: Path) -> None:
    alice = User("alice", 0, Publisher("H264", colour=RED, tone=None, seed=1))
    bob = User("bob", 1, Publisher("VP8", colour=GREEN, tone=None, seed=2))
    panes = [
        {"id": 1, "user_id": "alice", "x": 0.0, "y": 0.0, "width": 1.0, "height": 1.0, "zorder": 0},
        {"id": 2, "user_id": "bob", "x": 0.5, "y": 0.5, "width": 0.5, "height": 0.5, "zorder": 1},
    ]
    params = {"layout_template": "custom", "layout_panes": panes}
    plan = mix_plan(tmp_path, "640x480_30_1000", params, alice.streams() + bob.streams())
    d = MixDriver(plan, [alice, bob])
    d.send(2.0)
    # PUT: bob now at the top left, on top of alice.
    moved = [panes[0], {**panes[1], "x": 0.0, "y": 0.0}]
    changed_at = d.now
    new_mix = dataclasses.replace(plan.mix, params={**plan.mix.params, "layout_panes": moved})  # type: ignore[arg-type]
    d.update(dataclasses.replace(plan, mix=new_mix))
    d.send(2.0)
    d.pipeline.close()

    (f,) = d.of(FileCompleted)
    rb = read_back(f.path)
    assert (rb.width, rb.height) == (640, 480)
    assert np.allclose(np.diff([float(fr.time or 0.0) for fr in rb.video]), 1 / 30, atol=0.002)  # 30 fps
    start = float(rb.video[0].time or 0.0)
    change = start + (changed_at - 100.0 - 0.02)  # output time of the change (the first step was at 100.02)

    def layout_of(frame: av.VideoFrame) -> tuple[bool, bool]:
        top_left = colour_distance(cell_rgb(frame, 0, 0, 320, 240), GREEN) < 40
        bottom_right = colour_distance(cell_rgb(frame, 320, 240, 320, 240), GREEN) < 40
        return top_left, bottom_right

    assert layout_of(frame_at(rb.video, change - 0.5)) == (False, True)
    shown = [float(fr.time or 0.0) for fr in rb.video if layout_of(fr) == (True, False)]
    assert shown and shown[0] - change < 1.0, (shown[:1], change)
    assert colour_distance(cell_rgb(frame_at(rb.video, change + 1.5), 320, 240, 320, 240), RED) < 40


class JobCpu:
    """The job's CPU clock as the test says: ``load`` CPU-seconds per second of the driver's clock."""

    def __init__(self, driver: Callable[[], float], load: float) -> None:
        self.driver, self.load = driver, load
        self.spent, self.last = 0.0, driver()

    def __call__(self) -> float:
        now = self.driver()
        self.spent, self.last = self.spent + self.load * (now - self.last), now
        return self.spent


def test_a_job_that_needs_more_than_a_core_decodes_and_encodes_on_several_threads_in_the_same_file(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    colours = _distinct_colours(9)
    users = [
        User(f"u{i}", i, Publisher("H264", colour=colours[i], width=160, height=90, fps=15, tone=None, seed=i))
        for i in range(9)
    ]
    plan = mix_plan(
        tmp_path, "640x480_15_500", {"layout_template": "nine_grids_view"}, tuple(s for u in users for s in u.streams())
    )
    assert plan.encoding.mix_parallel_load == 0.75  # the default: parallel above three quarters of a core
    d: MixDriver | None = None
    cpu = JobCpu(lambda: d.now if d is not None else 100.0, load=0.9)
    d = MixDriver(plan, users, cpu_clock=cpu)
    with caplog.at_level("INFO", logger="emberrtc.recording.mix_pipeline"):
        d.send(3.5)  # the first second of output is not judged; the second is at 0.9: parallel from then on
        cpu.load = 0.2  # the job got lighter: one thread again, from the next judged second
        d.send(1.5)
        parallel_steps = d.pipeline.stats.parallel_steps
        d.send(1.0)
        assert d.pipeline.stats.parallel_steps == parallel_steps
    d.pipeline.close()
    said = [r.getMessage() for r in caplog.records if "CPU-s per output second" in r.getMessage()]
    assert len(said) == 2 and "decoding and encoding on" in said[0] and "back to one thread" in said[1], said
    if (os.cpu_count() or 1) > 1:
        assert parallel_steps >= 15  # a second of output and more, each step's inputs decoded side by side

    (f,) = d.of(FileCompleted)  # one file: threads come and go inside it
    rb = read_back(f.path)
    times = [float(fr.time or 0.0) for fr in rb.video]
    assert np.allclose(np.diff(times), 1 / 15, atol=0.002)
    assert len(rb.video) == pytest.approx(15 * f.duration, abs=2)
    # The encoder was opened again at each change, starting with an IDR: the first frame's, then one at each
    # change, 2 s apart (the GOP is 4 s: no other keyframe in the file).
    keyframes = [float(p.pts * p.time_base) for p in video_packets(f.path) if p.is_keyframe]  # type: ignore[operator]
    assert len(keyframes) == 3 and keyframes[1] - keyframes[0] < 3.0 and keyframes[2] - keyframes[1] < 3.0, keyframes
    # Every user in the cell, on one thread, on several, and on one again.
    for t in (times[0] + 0.9, times[0] + 2.5, times[-1] - 0.3):
        frame = frame_at(rb.video, t)
        for i in range(9):
            x, y = (i % 3) * 213, (i // 3) * 160
            got = cell_rgb(frame, x, y, 213, 160)
            assert colour_distance(got, colours[i]) < 45, (t, i, got, colours[i])


def test_audio_only_has_no_video_and_mixes_the_three_loudest(tmp_path: Path) -> None:
    users = [
        User(f"u{i}", i, Publisher(None, tone=tone, seed=i + 1))
        for i, tone in enumerate((300.0, 700.0, 1500.0, 2500.0))
    ]
    users[3].pub.audio = SineTone(2500.0, amplitude=0.05, layout="stereo")  # the quietest: left out
    streams = tuple(s for u in users for s in u.streams())
    hls = HlsOutput(NAMING, record_cycle=None, slice_duration=2)
    plan = mix_plan(tmp_path, "audio_only", {}, streams, mp4=Mp4Output(NAMING, record_cycle=60), hls=hls)
    d = MixDriver(plan, users)
    d.send(3.0)
    d.pipeline.close()

    files = d.of(FileCompleted)
    assert sorted(f.record_format for f in files) == ["HLS", "MP4"]
    mp4 = next(f for f in files if f.record_format == "MP4")
    rb = read_back(mp4.path)
    assert rb.video_codec is None and (mp4.width, mp4.height) == (None, None)
    assert all(f.transcoded for f in files)  # mixing counts as transcoding, audio only too
    assert rb.audio_codec == "aac" and rb.sample_rate == 48_000
    assert rb.duration == pytest.approx(3.0, abs=0.5)
    samples = np.concatenate([fr.to_ndarray()[0] for fr in rb.audio[len(rb.audio) // 3 :]])
    spectrum = np.abs(np.fft.rfft(samples))
    freqs = np.fft.rfftfreq(len(samples), 1 / 48_000)
    for tone in (300.0, 700.0, 1500.0):
        band = spectrum[(freqs > tone - 20) & (freqs < tone + 20)].max()
        assert band > 0.2 * spectrum.max(), tone
    quiet = spectrum[(freqs > 2480) & (freqs < 2520)].max()
    assert quiet < 0.02 * spectrum.max()


def test_nobody_publishing_is_an_interruption_and_idle(tmp_path: Path) -> None:
    alice = User("alice", 0, Publisher("H264", colour=RED, seed=1))
    plan = mix_plan(
        tmp_path, "480x360_15_320", {"layout_template": "nine_grids_view"}, alice.streams(),
        mp4=Mp4Output(NAMING, record_cycle=60, merge_gap=1.0),
    )  # fmt: skip
    d = MixDriver(plan, [alice])
    d.send(2.0)
    d.wait(4.0)  # nobody sends: idle, and past the merge threshold the file ends
    assert [r.state for r in d.of(MediaState)] == ["recording", "idle"]
    assert len(d.of(FileCompleted)) == 1
    d.send(2.0)
    d.pipeline.close()
    assert [r.state for r in d.of(MediaState)] == ["recording", "idle", "recording"]
    files = d.of(FileCompleted)
    assert [round(f.duration) for f in files] == [2, 2]
    for f in files:
        assert first_frame_is_keyframe(f.path)
    assert files[1].start_time - files[0].end_time == pytest.approx(4.0, abs=0.5)


@pytest.fixture(name="rtmp", scope="module")
def rtmp_fixture(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RtmpServer]:
    if (reason := rtmp_skip_reason()) is not None:
        pytest.skip(reason)
    with RtmpServer(tmp_path_factory.mktemp("nginx")) as server:
        yield server


def test_the_mix_is_pushed_over_rtmp_without_files(tmp_path: Path, rtmp: RtmpServer) -> None:
    alice = User("alice", 0, Publisher("H264", colour=RED, tone=440.0, seed=1))
    bob = User("bob", 1, Publisher("VP8", colour=BLUE, tone=None, seed=2))
    url = rtmp.url("mixed")
    plan = dataclasses.replace(
        mix_plan(tmp_path, "480x360_15_320", {"layout_template": "nine_grids_view"}, alice.streams() + bob.streams()),
        mp4=None,
        rtmp_urls=(url,),
        outbound_allow=("127.0.0.1",),  # the test's nginx
        timing=Timing(push_retry=0.2, push_retry_max=1.0),
    )
    d = MixDriver(plan, [alice, bob])

    def connected() -> bool:
        d.send(0.1)
        return any(r.state == "connected" for r in d.of(PushState))

    wait_for(connected, 15.0, "the push to connect")
    d.send(3.0)
    d.pipeline.close()

    wait_for(lambda: rtmp.recorded("mixed"), 15.0, "nginx to finish recording the mix")
    rb = read_back(rtmp.recording("mixed"))
    assert rb.format == "flv" and (rb.video_codec, rb.width, rb.height) == ("h264", 480, 360)
    assert (rb.audio_codec, rb.sample_rate) == ("aac", 48_000)
    assert rb.duration >= 2.5
    assert first_frame_is_keyframe(rtmp.recording("mixed"))
    frame = rb.video[len(rb.video) * 2 // 3]
    assert colour_distance(cell_rgb(frame, 0, 0, 240, 360), RED) < 40  # nine grids, two users: halves
    assert colour_distance(cell_rgb(frame, 240, 0, 240, 360), BLUE) < 40
    assert dominant_frequency(rb.audio[len(rb.audio) // 3 :]) == pytest.approx(440.0, abs=15)
    assert not d.of(FileCompleted) and [r.state for r in d.of(PushState)] == ["connected", "stopped"]


@pytest.mark.parametrize("template", ["screen_share_left", "screen_share_right"])
def test_screen_share_puts_the_screen_in_the_main_pane_and_cameras_in_the_strip(tmp_path: Path, template: str) -> None:
    alice_cam = User("alice", 0, Publisher("H264", colour=RED, tone=None, seed=1))
    alice_screen = User("alice", 0, Publisher("VP8", colour=YELLOW, width=1280, height=720, tone=None, seed=5),
                        stream="screen")  # fmt: skip
    bob = User("bob", 1, Publisher("VP8", colour=GREEN, tone=None, seed=2))
    streams = alice_cam.streams() + alice_screen.streams() + bob.streams()
    params = {"layout_template": template, "layout_panes": [{"id": 1, "filling_policy": "SHARED_SCREEN"}]}
    plan = mix_plan(tmp_path, "640x480_15_500", params, streams)
    d = MixDriver(plan, [alice_cam, bob])
    d.users["alice-screen"] = alice_screen
    d.send(2.0)
    layout = d.pipeline.layout
    d.pipeline.close()

    assert layout is not None
    main = next(t for t in layout.tiles if t.main)
    assert main.source == ("alice", "screen") and main.y == 0 and main.width > 320
    assert (main.x == 0) == (template == "screen_share_left")  # the main pane on the named side
    assert all((t.x >= main.width) == (template == "screen_share_left") for t in layout.tiles if not t.main)
    (f,) = d.of(FileCompleted)
    frame = read_back(f.path).video[-8]
    colours = {("alice", "screen"): YELLOW, ("alice", "camera"): RED, ("bob", "camera"): GREEN}
    for tile in layout.tiles:
        assert tile.source is not None
        got = cell_rgb(frame, tile.x, tile.y, tile.width, tile.height)
        assert colour_distance(got, colours[tile.source]) < 40, (tile, got)
    assert {t.source for t in layout.tiles if not t.main} == {("alice", "camera"), ("bob", "camera")}


def png_file(path: Path, rgb: tuple[int, int, int]) -> str:
    frame = av.VideoFrame.from_ndarray(np.full((48, 64, 3), rgb, np.uint8), format="rgb24")
    encoder = av.CodecContext.create("png", "w")
    assert isinstance(encoder, av.VideoCodecContext)
    encoder.width, encoder.height, encoder.pix_fmt = 64, 48, "rgb24"
    path.write_bytes(b"".join(bytes(p) for p in [*encoder.encode(frame), *encoder.encode(None)]))
    return str(path)


def test_background_and_user_images_fill_what_no_video_covers(tmp_path: Path) -> None:
    alice = User("alice", 0, Publisher("H264", colour=RED, tone=None, seed=1))
    bob = User("bob", 1, Publisher(None, tone=440.0, seed=2))  # audio only: his pane shows his image
    panes = [
        {"id": 1, "user_id": "alice", "x": 0.0, "y": 0.0, "width": 0.5, "height": 0.5, "zorder": 0},
        {"id": 2, "user_id": "bob", "x": 0.5, "y": 0.5, "width": 0.5, "height": 0.5, "zorder": 0},
    ]
    plan = mix_plan(tmp_path, "640x480_15_500", {"layout_template": "custom", "layout_panes": panes},
                    alice.streams() + bob.streams())  # fmt: skip
    images = MixImageFiles(
        background=png_file(tmp_path / "bg.png", BLUE), users=(("bob", png_file(tmp_path / "bob.png", YELLOW)),)
    )
    plan = dataclasses.replace(plan, mix=dataclasses.replace(plan.mix, images=images))  # type: ignore[arg-type]
    d = MixDriver(plan, [alice, bob])
    d.send(2.0)
    d.pipeline.close()

    (f,) = d.of(FileCompleted)
    frame = read_back(f.path).video[-5]
    assert colour_distance(cell_rgb(frame, 0, 0, 320, 240), RED) < 40
    assert colour_distance(cell_rgb(frame, 320, 240, 320, 240), YELLOW) < 40  # bob's image
    assert colour_distance(cell_rgb(frame, 320, 0, 320, 240), BLUE) < 40  # the background image
    assert colour_distance(cell_rgb(frame, 0, 240, 320, 240), BLUE) < 40


def test_the_end_after_a_silence_makes_no_file_of_the_encoder_tail(tmp_path: Path) -> None:
    users = [User("u0", 0, Publisher(None, tone=300.0, seed=1))]
    d = MixDriver(mix_plan(tmp_path, "audio_only", {}, users[0].streams()), users)
    d.send(2.0)
    d.wait(3.0)  # everyone left: the file ends (merge threshold 0)
    assert len(d.of(FileCompleted)) == 1
    d.pipeline.close()
    (f,) = d.of(FileCompleted)
    assert f.duration == pytest.approx(2.0, abs=0.2)


def test_no_silence_is_judged_while_packets_wait_to_be_read(tmp_path: Path) -> None:
    alice = User("alice", 0, Publisher("H264", colour=RED, seed=1))
    d = MixDriver(
        mix_plan(tmp_path, "480x360_15_320", {"layout_template": "nine_grids_view"}, alice.streams()), [alice]
    )
    d.send(2.0)
    # The worker was busy for 3 s with packets waiting in its socket: behind, not silent.
    d.pipeline.tick(d.now + 3.0, drained=False)
    assert [r.state for r in d.of(MediaState)] == ["recording"] and not d.of(FileCompleted)
    d.pipeline.tick(d.now + 3.0)  # drained, and still nothing: now it is a silence
    assert [r.state for r in d.of(MediaState)] == ["recording", "idle"] and len(d.of(FileCompleted)) == 1


def test_the_live_preview_is_a_small_jpeg_of_the_composite(tmp_path: Path) -> None:
    alice = User("alice", 0, Publisher("H264", colour=RED, tone=None, seed=1))
    bob = User("bob", 1, Publisher("VP8", colour=BLUE, tone=None, seed=2))
    streams = (*alice.streams(), *bob.streams())
    plan = mix_plan(tmp_path, "640x480_15_500", {"layout_template": "nine_grids_view"}, streams)
    d = MixDriver(plan, [alice, bob])
    preview = d.pipeline.preview
    assert preview is not None and preview.path == tmp_path / "spool" / PREVIEW
    d.send(1.0)
    first = preview.path.read_bytes()
    assert first.startswith(b"\xff\xd8\xff") and preview.written == 1  # written at once, then every 2 s
    d.send(3.6)  # output up to about 4.4 s (it runs mix_latency behind): pictures at 0, 2 and 4 s
    assert preview.written == 3 and preview.path.read_bytes() != first
    with av.open(str(preview.path)) as container:
        (frame,) = list(container.decode(video=0))
    assert (frame.width, frame.height) == (320, 240)  # 320 wide, the canvas's ratio
    # Two users in nine grids: halves, alice (red) left, bob (blue) right, as in the composite itself.
    assert colour_distance(cell_rgb(frame, 0, 0, 160, 240), RED) < 40, cell_rgb(frame, 0, 0, 160, 240)
    assert colour_distance(cell_rgb(frame, 160, 0, 160, 240), BLUE) < 40, cell_rgb(frame, 160, 0, 160, 240)
    assert not preview.path.with_name(PREVIEW + ".tmp").exists()
    # Served while fresh: an old picture (the output stopped) is not taken for the room now.
    written = preview.path.stat().st_mtime
    assert read_preview(preview.path.parent, written + 1) == preview.path.read_bytes()
    assert read_preview(preview.path.parent, written + MAX_AGE + 1) is None
    d.pipeline.close()
    assert not preview.path.exists()  # the output ended: no stale picture is left for a live one


def test_an_audio_only_mix_has_no_preview(tmp_path: Path) -> None:
    alice = User("alice", 0, Publisher("H264", colour=RED, tone=440.0, seed=1))
    plan = mix_plan(tmp_path, "audio_only", {}, alice.streams())
    d = MixDriver(plan, [alice])
    d.send(2.5)
    assert d.pipeline.preview is None and not (tmp_path / "spool" / PREVIEW).exists()
    d.pipeline.close()


@pytest.mark.parametrize("late", [None, "video", "audio"])
def test_a_participants_lips_and_voice_stay_together_when_one_stream_comes_late(
    tmp_path: Path, late: str | None
) -> None:
    """A participant's video flashes and its audio beeps at the same media instants; after 0.5 s one of its
    streams (or none) reaches the worker 300 ms late. In the file each flash and its beep are within 100 ms."""
    pub = Publisher("H264", width=160, height=90, fps=30, seed=1)
    pub.video = beep_and_flash(1.0, width=160, height=90, fps=30)[0]
    pub.audio = SineTone(beep_every=1.0, beep_duration=0.1, layout="stereo")
    alice = User("alice", 0, pub)
    d = MixDriver(mix_plan(tmp_path, "480x360_15_320", {"layout_template": "nine_grids_view"}, alice.streams()),
                  [alice])  # fmt: skip
    d.send_delayed(3.6, lambda _user, kind, step: 0.3 if kind == late and step >= 25 else 0.0)
    d.pipeline.close()

    (f,) = d.of(FileCompleted)
    rb = read_back(f.path)
    flashes = [t for t in flash_times(rb.video) if t > 0.5]
    beeps = [t for t in beep_times(rb.audio) if t > 0.5]
    assert len(flashes) >= 2 and len(beeps) >= 2, (flashes, beeps)
    for flash in flashes:
        nearest = min(beeps, key=lambda b: abs(b - flash))
        assert abs(nearest - flash) < 0.1, (flashes, beeps)


def _flashes_in(frames: list[av.VideoFrame], x: int, w: int) -> list[float]:
    """Instants where the picture turns white within columns ``x`` to ``x + w`` (a grid cell)."""
    out, was = [], False
    for frame in frames:
        bright = float(frame.to_ndarray(format="gray")[:, x : x + w].mean()) > 200
        if bright and not was:
            out.append(float(frame.time or 0.0))
        was = bright
    return out


def _beeps_at(frames: list[av.AudioFrame], frequency: float) -> list[float]:
    """Instants where a beep of ``frequency`` starts (its level in 10 ms windows, against its peak)."""
    rate = frames[0].sample_rate
    start = float(frames[0].time or 0.0)
    signal = np.concatenate([f.to_ndarray()[0] for f in frames]).astype(np.float64)
    n = rate // 100
    windows = signal[: len(signal) // n * n].reshape(-1, n)
    level = np.abs(windows @ np.exp(-2j * np.pi * frequency * np.arange(n) / rate))
    loud = level > 0.3 * level.max()
    return [start + i * n / rate for i in range(1, len(loud)) if loud[i] and not loud[i - 1]]


def test_only_the_late_participant_is_held_back(tmp_path: Path) -> None:
    """Alice's video comes 300 ms late, Bob's streams on time: each one's flashes and beeps stay together,
    and Bob's are not delayed for Alice's (his flashes come about 300 ms before hers, as sent together)."""
    users = []
    for i, (name, tone) in enumerate((("alice", 1000.0), ("bob", 3000.0))):
        pub = Publisher("H264", width=160, height=90, fps=30, seed=i + 1)
        pub.video = beep_and_flash(1.0, width=160, height=90, fps=30)[0]
        pub.audio = SineTone(beep_every=1.0, beep_duration=0.1, beep_frequency=tone, layout="stereo")
        users.append(User(name, i, pub))
    alice, bob = users
    streams = alice.streams() + bob.streams()
    d = MixDriver(mix_plan(tmp_path, "480x360_15_320", {"layout_template": "nine_grids_view"}, streams), users)
    d.send_delayed(3.6, lambda user, kind, step: 0.3 if user is alice and kind != AUDIO and step >= 25 else 0.0)
    d.pipeline.close()

    (f,) = d.of(FileCompleted)
    rb = read_back(f.path)
    flashes = {"alice": _flashes_in(rb.video, 0, 240), "bob": _flashes_in(rb.video, 240, 240)}
    beeps = {"alice": _beeps_at(rb.audio, 1000.0), "bob": _beeps_at(rb.audio, 3000.0)}
    for user in ("alice", "bob"):
        late_flashes = [t for t in flashes[user] if t > 0.8]
        assert len(late_flashes) >= 2, (flashes, beeps)
        for flash in late_flashes:
            assert min(abs(b - flash) for b in beeps[user]) < 0.1, (user, flashes, beeps)
    # Flashes sent at the same instants: Bob's show about 300 ms before Alice's.
    for flash in [t for t in flashes["alice"] if t > 1.2]:
        assert min(abs(flash - 0.3 - b) for b in flashes["bob"]) < 0.1, (flashes, beeps)
