"""RTMP push (spec 4.4 ``publish_param.rtmp_urls``) to a real RTMP server: nginx with Debian's RTMP module,
recording what it receives to FLV, read back with PyAV and checked by content.

The pipeline runs in process on synthetic RTP (``test_pipeline.Driver``), faster than real time; the pushes
run on their own threads and pusher processes, in real time, so the tests send media a little at a time
until the reports say what they wait for (with deadlines), and a few seconds more. Every packet from the
first keyframe on reaches the server (the tests' queues hold 30 s), so what nginx recorded lasts as long
as the media sent.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import av
import pytest

from emberrtc.domain import outbound
from emberrtc.domain.errors import RecordingFault
from emberrtc.domain.outbound import AllowList, OutboundPolicy
from emberrtc.recording import reports
from emberrtc.recording.plan import Mp4Output, PlanError, RecordingPlan, Timing
from emberrtc.recording.reports import FileCompleted, MediaState, PushState
from emberrtc.recording.rtmp import AUDIO, VIDEO, PushQueue, QueuedPacket, RtmpPush, mask_url, target_id
from emberrtc.recording.video import VideoPacket
from emberrtc.synthetic import ColourVideo, colour_distance, dominant_frequency, median_rgb, parse_colour
from tests.recording.engine import DescribedJobs, Engine, engine_fixture, job_spec, rule
from tests.recording.publisher import Publisher
from tests.recording.readback import Readback, first_frame_is_keyframe, picture_nals, read_back
from tests.recording.test_pipeline import NAMING, Driver, plan_for
from tests.support.rtmp_server import RtmpServer, rtmp_skip_reason
from tests.support.server import free_port
from tests.support.waiting import wait_for

BLUE, GREEN, RED = parse_colour("blue"), parse_colour("green"), parse_colour("red")
TIMING = Timing(push_retry=0.2, push_retry_max=1.0, push_buffer=30.0)

__all__ = ["engine_fixture"]  # the fixture, used by name

needs_nginx = pytest.mark.skipif(rtmp_skip_reason() is not None, reason=rtmp_skip_reason() or "")


@pytest.fixture(scope="module")
def rtmp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RtmpServer]:
    if (reason := rtmp_skip_reason()) is not None:
        pytest.skip(reason)
    with RtmpServer(tmp_path_factory.mktemp("nginx")) as server:
        yield server


def closed_port() -> int:
    """A loopback TCP port nobody listens on (connections are refused)."""
    return free_port()


def pushes(d: Driver) -> list[PushState]:
    return [r for r in d.reports if isinstance(r, PushState)]


def pump(d: Driver, predicate: Callable[[], Any], within: float = 15.0, what: str = "") -> Any:
    """Send media, a tenth of a second at a time, until ``predicate()`` holds (the pushes work in real
    time meanwhile: a pusher connects with the first keyframe it gets)."""

    def probe() -> Any:
        d.send(0.1)
        return predicate()

    return wait_for(probe, within, what or str(predicate))


def connected(d: Driver, url: str) -> bool:
    return any(r.state == "connected" and r.target == target_id(url) for r in pushes(d))


def pushed(server: RtmpServer, name: str) -> Readback:
    """What nginx recorded of stream ``name``, once the publisher has left."""
    wait_for(lambda: server.recorded(name), 15.0, f"nginx to finish recording {name}")
    return read_back(server.recording(name))


def push_plan(tmp: Path, urls: list[str], *, mp4: bool = False, **kw: Any) -> RecordingPlan:
    outputs: dict[str, Any] = {"mp4": Mp4Output(NAMING, 60)} if mp4 else {}
    # The pushes go to the tests' RTMP servers on 127.0.0.1: allowed explicitly, as an operator would.
    return plan_for(tmp, rtmp_urls=tuple(urls), **{"timing": TIMING, "outbound_allow": ("127.0.0.1",), **outputs, **kw})


# --- the pure parts ---------------------------------------------------------------------------------------


def test_urls_are_masked_in_reports() -> None:
    assert mask_url("rtmp://user:secret@live.example.com:1936/app/streamkey?token=t#x") == (
        "rtmp://***@live.example.com:1936/app/***?***"
    )
    assert mask_url("rtmps://host/app") == "rtmps://host/app"
    assert mask_url("rtmp://your.rtmp-server.com") == "rtmp://your.rtmp-server.com"
    assert mask_url("rtmp://h/app/a/b") == "rtmp://h/app/***"


def test_a_plan_checks_its_urls_and_may_push_only(tmp_path: Path) -> None:
    plan = push_plan(tmp_path, ["rtmp://127.0.0.1/live/x"])
    assert plan.mp4 is None and plan.formats == ()
    assert RecordingPlan.from_json(plan.to_json()) == plan
    with pytest.raises(PlanError):
        push_plan(tmp_path, ["http://127.0.0.1/live/x"])
    with pytest.raises(PlanError, match="nothing to record to"):
        push_plan(tmp_path, [])


def test_the_queue_starts_at_a_keyframe_and_drops_a_backlog_to_the_next_one() -> None:
    q = PushQueue(limit=2.0, has_video=True)
    assert not q.put(QueuedPacket(VIDEO, b"k", 0.0, True))  # not connected: dropped
    q.open()
    assert q.wants_keyframe
    assert not q.put(QueuedPacket(AUDIO, b"a", 0.0, False))
    assert not q.put(QueuedPacket(VIDEO, b"p", 0.03, False))
    assert q.put(QueuedPacket(VIDEO, b"k", 0.06, True)) and not q.wants_keyframe
    assert q.put(QueuedPacket(AUDIO, b"a", 0.07, False))
    assert q.put(QueuedPacket(VIDEO, b"p", 2.0, False))
    # 2.04 s queued > 2 s: the backlog goes, and the queue waits for the next keyframe.
    assert not q.put(QueuedPacket(VIDEO, b"p", 2.1, False))
    assert (len(q), q.overflows, q.dropped, q.wants_keyframe) == (0, 1, 4, True)
    assert not q.put(QueuedPacket(AUDIO, b"a", 2.2, False))
    assert q.put(QueuedPacket(VIDEO, b"k", 2.3, True))
    got = q.get(0.0)
    assert got is not None and got.keyframe and q.get(0.0) is None
    q.close()
    assert not q.put(QueuedPacket(VIDEO, b"k", 2.4, True))


def test_a_stalled_connection_is_ended_and_retried(tmp_path: Path) -> None:
    """A pusher that says it is connected and then takes nothing more (a peer that stopped reading): once a
    write has blocked for ``push_connect_timeout``, the watchdog ends it and the push retries."""
    stuck = tmp_path / "stuck-pusher"
    stuck.write_text('#!/bin/sh\nread -r header\necho \'{"state": "connected"}\'\nexec sleep 60\n')
    stuck.chmod(0o755)
    timing = dataclasses.replace(TIMING, push_connect_timeout=1.0, push_retry=5.0, push_retry_max=5.0)
    push = RtmpPush(
        "rtmp://127.0.0.1/live/x",
        has_video=True,
        audio=None,
        timing=timing,
        outbound=OutboundPolicy(AllowList.parse("127.0.0.1")),
        python=str(stuck),
    )
    states: list[PushState] = []
    try:
        n = 0

        def stalled() -> bool:
            nonlocal n
            for _ in range(10):  # 10 KB a round: the pipe (64 KB) fills within a second or so
                push.video(VideoPacket(bytes(1000), n * 3000, n % 30 == 0, 320, 180, True))
                n += 1
            states.extend(push.poll())
            return any(s.state == "retrying" for s in states)

        wait_for(stalled, 10.0, "the stalled connection to be ended")
    finally:
        push.close()
        push.join(time.monotonic() + 5.0)
    states.extend(push.poll())
    assert [s.state for s in states] == ["connected", "retrying", "stopped"]
    assert states[1].detail == "the connection stalled (no progress for 1 s)"
    assert push.done


# --- pushing to nginx ---------------------------------------------------------------------------------------


@needs_nginx
def test_h264_is_pushed_as_is_while_an_mp4_records(tmp_path: Path, rtmp: RtmpServer) -> None:
    url = rtmp.url("h264-and-mp4")
    pub = Publisher("H264", colour=BLUE, tone=440.0)
    d = Driver(push_plan(tmp_path, [url], mp4=True), pub, tmp_path)
    pump(d, lambda: connected(d, url), what="the push to connect")
    d.send(3.0)
    d.close()

    rb = pushed(rtmp, "h264-and-mp4")
    assert rb.format == "flv" and (rb.video_codec, rb.width, rb.height) == ("h264", 320, 180)
    assert (rb.audio_codec, rb.sample_rate) == ("aac", 48_000)
    assert rb.duration == pytest.approx(pub.t, abs=0.5)
    assert colour_distance(median_rgb(rb.middle_frame), BLUE) < 25
    assert dominant_frequency(rb.audio[5:]) == pytest.approx(440.0, abs=5)
    flv = rtmp.recording("h264-and-mp4")
    assert first_frame_is_keyframe(flv)
    slices = picture_nals(flv)  # passthrough: the publisher's own coded pictures
    assert len(slices) >= 100 and all(n in pub.sent.h264_nals for n in slices)

    (mp4,) = [r for r in d.reports if isinstance(r, FileCompleted)]
    recorded = read_back(mp4.path)
    assert recorded.duration == pytest.approx(pub.t, abs=0.3)
    assert colour_distance(median_rgb(recorded.middle_frame), BLUE) < 25
    assert [r.state for r in pushes(d)] == ["connected", "stopped"]
    assert [r.state for r in d.reports if isinstance(r, MediaState)] == ["recording"]


@needs_nginx
def test_vp8_without_audio_is_pushed_transcoded_without_any_file(tmp_path: Path, rtmp: RtmpServer) -> None:
    url = rtmp.url("vp8-only")
    pub = Publisher("VP8", colour=GREEN, tone=None)
    d = Driver(push_plan(tmp_path, [url], video="VP8", audio=False), pub, tmp_path)
    pump(d, lambda: connected(d, url), what="the push to connect")
    d.send(3.0)
    d.close()

    rb = pushed(rtmp, "vp8-only")
    assert (rb.video_codec, rb.width, rb.height, rb.audio_codec) == ("h264", 320, 180, None)
    assert rb.duration == pytest.approx(pub.t, abs=0.5) and len(rb.video) >= 80
    assert colour_distance(median_rgb(rb.middle_frame), GREEN) < 25
    assert first_frame_is_keyframe(rtmp.recording("vp8-only"))
    assert not list((tmp_path / "spool").iterdir())  # no files
    assert not [r for r in d.reports if isinstance(r, FileCompleted)]
    # The job is live with media flowing, though it only pushes.
    assert [r.state for r in d.reports if isinstance(r, MediaState)] == ["recording"]


@needs_nginx
def test_the_stream_plays_live_from_the_server_while_it_is_pushed(tmp_path: Path, rtmp: RtmpServer) -> None:
    url = rtmp.url("played-live")
    frames: list[av.VideoFrame] = []
    sound: list[av.AudioFrame] = []
    codecs: list[tuple[str, str]] = []

    def play() -> None:  # a viewer: plays the live stream from nginx until it has seen a second of it
        with av.open(url, timeout=(15.0, 15.0)) as c:
            codecs.extend((s.type, s.codec_context.name) for s in c.streams)
            for frame in c.decode(video=0, audio=0):
                (frames if isinstance(frame, av.VideoFrame) else sound).append(frame)  # type: ignore[arg-type]
                if len(frames) >= 30 and len(sound) >= 40:
                    return

    viewer = threading.Thread(target=play, daemon=True)
    viewer.start()
    wait_for(lambda: "play: name='played-live'" in rtmp.log(), 10.0, "the viewer to be waiting for the stream")
    pub = Publisher("H264", colour=GREEN, tone=523.0)
    d = Driver(push_plan(tmp_path, [url]), pub, tmp_path)
    pump(d, lambda: not viewer.is_alive(), what="the viewer to see a second of the stream")
    d.close()
    viewer.join(5.0)
    assert sorted(codecs) == [("audio", "aac"), ("video", "h264")]
    assert colour_distance(median_rgb(frames[-1]), GREEN) < 25
    assert dominant_frequency(sound[5:]) == pytest.approx(523.0, abs=5)


@needs_nginx
def test_a_plan_update_adds_and_removes_urls(tmp_path: Path, rtmp: RtmpServer) -> None:
    first, second = rtmp.url("before-update"), rtmp.url("after-update")
    pub = Publisher("H264", colour=RED, tone=440.0)
    plan = push_plan(tmp_path, [first], mp4=True)
    d = Driver(plan, pub, tmp_path)
    pump(d, lambda: connected(d, first), what="the first push to connect")
    d.send(2.0)
    at_update = pub.t
    d.pipeline.update(dataclasses.replace(plan, rtmp_urls=(second,)))
    pump(
        d,
        lambda: connected(d, second) and any(r.state == "stopped" and r.target == target_id(first) for r in pushes(d)),
        what="the second push to connect and the first to stop",
    )
    pub.video = ColourVideo(BLUE, width=320, height=180)
    d.send(3.0)
    d.close()

    before, after = pushed(rtmp, "before-update"), pushed(rtmp, "after-update")
    assert before.duration == pytest.approx(at_update, abs=0.5)
    assert after.duration == pytest.approx(pub.t - at_update, abs=0.5)
    assert colour_distance(median_rgb(before.middle_frame), RED) < 25
    assert colour_distance(median_rgb(before.video[-1]), RED) < 25  # nothing after the update
    assert colour_distance(median_rgb(after.video[-1]), BLUE) < 25
    assert first_frame_is_keyframe(rtmp.recording("after-update"))  # a keyframe asked of the publisher
    (mp4,) = [r for r in d.reports if isinstance(r, FileCompleted)]
    assert mp4.duration == pytest.approx(pub.t, abs=0.3)  # the recording went on through the update
    # Both URLs mask alike (rtmp://127.0.0.1:port/live/***); the target ids tell them apart.
    assert {r.url for r in pushes(d)} == {mask_url(first)} and target_id(first) != target_id(second)
    assert [(r.target, r.state) for r in pushes(d)] == [
        (target_id(first), "connected"),
        (target_id(first), "stopped"),
        (target_id(second), "connected"),
        (target_id(second), "stopped"),
    ]


@needs_nginx
def test_an_unreachable_url_is_retried_and_reported_while_the_mp4_records(tmp_path: Path) -> None:
    port = closed_port()
    url = f"rtmp://127.0.0.1:{port}/live/streamkey?token=abc"  # (user-info is refused: domain.outbound)
    pub = Publisher("H264", colour=BLUE, tone=440.0)
    # An attempt that takes longer than push_retry_max counts as a connection that lasted and starts the count
    # over: on a loaded machine starting the pusher alone can take a second, so the cap is well above that.
    timing = dataclasses.replace(TIMING, push_retry_max=10.0)
    d = Driver(push_plan(tmp_path, [url], mp4=True, timing=timing), pub, tmp_path)
    pump(d, lambda: len(pushes(d)) >= 3, what="three failed attempts")
    d.close()

    states = pushes(d)
    assert [r.state for r in states[:3]] == ["retrying"] * 3 and states[-1].state == "stopped"
    assert "connected" not in [r.state for r in states]
    # stream key and query masked
    assert all(r.url == f"rtmp://127.0.0.1:{port}/live/***?***" for r in states)
    assert {r.detail for r in states[:3]} == {"Connection refused"}
    assert [r.attempt for r in states[:3]] == [1, 2, 3]
    assert all(r.retry_in is not None and r.retry_in <= timing.push_retry_max for r in states[:3])
    assert not any("secret" in reports.encode(r) or "streamkey" in reports.encode(r) for r in d.reports)
    (mp4,) = [r for r in d.reports if isinstance(r, FileCompleted)]
    rb = read_back(mp4.path)
    assert rb.duration == pytest.approx(pub.t, abs=0.3)
    assert colour_distance(median_rgb(rb.middle_frame), BLUE) < 25


@needs_nginx
def test_a_push_connects_once_the_server_comes_up(tmp_path: Path) -> None:
    server = RtmpServer(tmp_path / "nginx")
    url = server.url("late")
    pub = Publisher("VP8", colour=RED, tone=523.0)
    d = Driver(push_plan(tmp_path, [url], video="VP8"), pub, tmp_path)
    try:
        pump(d, lambda: len(pushes(d)) >= 2, what="two failed attempts")
        assert {r.state for r in pushes(d)} == {"retrying"}
        started = time.monotonic()
        server.start()
        pump(d, lambda: connected(d, url), what="the push to connect")
        assert time.monotonic() - started < TIMING.push_retry_max + 5.0  # retried at the backoff's cap at most
        from_ = pub.t
        d.send(3.0)
        d.close()
        rb = pushed(server, "late")
    finally:
        server.stop()
    assert (rb.video_codec, rb.audio_codec) == ("h264", "aac")
    assert 3.0 <= rb.duration <= pub.t - from_ + 3.0  # from the keyframe that started the connection on
    assert colour_distance(median_rgb(rb.middle_frame), RED) < 25
    assert dominant_frequency(rb.audio[5:]) == pytest.approx(523.0, abs=5)


@needs_nginx
def test_a_broken_connection_is_retried_and_the_stream_resumes_at_a_keyframe(tmp_path: Path) -> None:
    server = RtmpServer(tmp_path / "nginx").start()
    url = server.url("broken")
    pub = Publisher("H264", colour=BLUE, tone=440.0)
    d = Driver(push_plan(tmp_path, [url], mp4=True), pub, tmp_path)
    try:
        pump(d, lambda: connected(d, url), what="the push to connect")
        server.stop()  # the server goes away under the push
        pump(d, lambda: any(r.state == "retrying" for r in pushes(d)), what="the broken connection noticed")
        server.forget("broken")
        server.start()
        pump(d, lambda: [r.state for r in pushes(d)].count("connected") == 2, what="the push to reconnect")
        resumed = pub.t
        pub.video = ColourVideo(GREEN, width=320, height=180)
        d.send(2.0)
        d.close()
        rb = pushed(server, "broken")
    finally:
        server.stop()
    states = [r.state for r in pushes(d)]
    assert states[0] == "connected" and states[1] == "retrying" and states[-2:] == ["connected", "stopped"]
    # The new stream starts with a keyframe (asked of the publisher) and holds what came after the reconnection.
    assert first_frame_is_keyframe(server.recording("broken"))
    assert colour_distance(median_rgb(rb.video[-1]), GREEN) < 25
    assert 2.0 <= rb.duration <= pub.t - resumed + 3.0
    (mp4,) = [r for r in d.reports if isinstance(r, FileCompleted)]
    assert mp4.duration == pytest.approx(pub.t, abs=0.3)  # the recording never noticed


def test_a_server_that_never_answers_times_out_without_stalling_the_pipeline(tmp_path: Path) -> None:
    """A TCP peer that accepts and never completes the RTMP handshake: the attempt times out in the pusher
    process, and the pipeline meanwhile takes packets at full speed."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        url = f"rtmp://127.0.0.1:{silent.getsockname()[1]}/live/x"
        timing = dataclasses.replace(TIMING, push_connect_timeout=1.0)
        pub = Publisher("H264")
        d = Driver(push_plan(tmp_path, [url], mp4=True, timing=timing), pub, tmp_path)
        pump(d, lambda: pushes(d), what="the attempt to time out")
        started = time.monotonic()
        d.send(2.0)  # while the next attempt hangs, the pipeline takes packets at full speed
        assert time.monotonic() - started < 3.0
        d.close()
    first = pushes(d)[0]
    assert (first.state, first.detail) == ("retrying", "no connection within 1 s")
    (mp4,) = [r for r in d.reports if isinstance(r, FileCompleted)]
    assert mp4.duration == pytest.approx(pub.t, abs=0.3)


# --- the outbound policy: where a push may connect (domain.outbound) ----------------------------------------------


class Resolver:
    """DNS as the test says: ``rtmp.test`` (unknown to the system resolver) resolves to ``answer``."""

    def __init__(self, answer: str) -> None:
        self.answer = answer

    def __call__(self, host: str, port: int) -> list[ipaddress.IPv4Address | ipaddress.IPv6Address]:
        if host != "rtmp.test":
            raise OSError(-2, "Name or service not known")
        return [ipaddress.ip_address(self.answer)]


def test_a_push_to_a_refused_address_never_connects_and_is_reported(tmp_path: Path) -> None:
    """127.0.0.2 is loopback, and the plan allows 127.0.0.1 only: a listener there never sees a connection."""
    with socket.socket() as trap:
        trap.bind(("127.0.0.2", 0))
        trap.listen(8)
        trap.settimeout(0)
        port = trap.getsockname()[1]
        url = f"rtmp://127.0.0.2:{port}/live/streamkey"
        pub = Publisher("H264", colour=BLUE, tone=440.0)
        d = Driver(push_plan(tmp_path, [url], mp4=True), pub, tmp_path)
        pump(d, lambda: len(pushes(d)) >= 2, what="two refused attempts")
        d.close()
        with pytest.raises(BlockingIOError):
            trap.accept()  # nothing ever connected
    states = pushes(d)
    assert [r.state for r in states[:2]] == ["retrying", "retrying"] and states[-1].state == "stopped"
    assert states[0].detail == (
        "refused by the outbound policy: address 127.0.0.2 (loopback), which is not an allowed destination "
        "(the operator may allow it with EMBER_OUTBOUND_ALLOW)"
    )
    assert all(r.url == f"rtmp://127.0.0.2:{port}/live/***" for r in states)
    (mp4,) = [r for r in d.reports if isinstance(r, FileCompleted)]
    assert mp4.duration == pytest.approx(pub.t, abs=0.3)  # the recording went on


@needs_nginx
def test_a_push_connects_to_the_vetted_address_and_a_changed_answer_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """FFmpeg could not resolve ``rtmp.test``: the stream reached nginx because the pusher was given the vetted
    address. When the connection breaks, the next attempt resolves again and a loopback answer outside the
    allow-list is refused."""
    dns = Resolver("127.0.0.1")
    monkeypatch.setattr(outbound, "system_resolver", dns)
    server = RtmpServer(tmp_path / "nginx").start()
    url = f"rtmp://rtmp.test:{server.port}/live/pinned"
    pub = Publisher("H264", colour=GREEN, tone=440.0)
    d = Driver(push_plan(tmp_path, [url]), pub, tmp_path)
    try:
        pump(d, lambda: connected(d, url), what="the push to connect")
        d.send(2.0)
        dns.answer = "127.0.0.3"  # rebinding
        server.stop()
        pump(d, lambda: any("127.0.0.3" in r.detail for r in pushes(d)), what="the new answer refused")
        d.close()
    finally:
        server.stop()
    rb = read_back(server.recording("pinned"))
    assert rb.video_codec == "h264" and rb.duration >= 1.5
    assert colour_distance(median_rgb(rb.middle_frame), GREEN) < 25
    refused = [r for r in pushes(d) if "127.0.0.3" in r.detail]
    assert refused[0].state == "retrying" and "resolves to 127.0.0.3 (loopback)" in refused[0].detail


# --- through the supervisor and a worker process --------------------------------------------------------------


async def test_a_job_without_record_param_or_rtmp_urls_is_refused(engine: Engine) -> None:
    engine.source.publishers["j0"] = Publisher("H264")
    with pytest.raises(RecordingFault, match="no record_param and no publish_param.rtmp_urls"):
        await engine.supervisor.start(job_spec("j0", None))


@needs_nginx
async def test_an_rtmp_only_job_runs_pushes_and_describes_a_failing_url(engine: Engine, rtmp: RtmpServer) -> None:
    jobs = DescribedJobs()
    engine.supervisor.attach(jobs)
    bad_port = closed_port()
    good, bad = rtmp.url("rtmp-only-job"), f"rtmp://127.0.0.1:{bad_port}/live/key"
    pub = Publisher("VP8", colour=GREEN, tone=440.0)
    engine.source.publishers["j1"] = pub
    await engine.supervisor.start(job_spec("j1", None, publish_param={"rtmp_urls": [good, bad]}))

    def states() -> list[tuple[str, str]]:
        return [(r.target, r.state) for _, r in engine.reports if isinstance(r, PushState)]

    deadline = time.monotonic() + 20.0
    while not ((target_id(good), "connected") in states() and (target_id(bad), "retrying") in states()):
        assert time.monotonic() < deadline, f"pushes did not settle: {states()}"
        await engine.publish("j1", 0.5)
    await engine.publish("j1", 2.0)
    await engine.drained("j1")
    await engine.supervisor.stop("j1")

    assert ("running", "j1") in [c[:2] for c in jobs.calls]
    described = [c[2] for c in jobs.calls if c[0] == "describe"]
    assert f"pushing to 1 of 2 RTMP URLs; rtmp://127.0.0.1:{bad_port}/live/***: retrying (Connection refused)" in (
        described
    )
    assert not any("/live/key" in d for d in described)
    assert engine.outputs.named("file_started") == [] and len(engine.outputs.named("job_over")) == 1
    rb = pushed(rtmp, "rtmp-only-job")
    assert (rb.video_codec, rb.audio_codec) == ("h264", "aac")
    assert 2.0 <= rb.duration <= pub.t + 0.5
    assert colour_distance(median_rgb(rb.middle_frame), GREEN) < 25
    assert dominant_frequency(rb.audio[5:]) == pytest.approx(440.0, abs=5)


async def test_a_job_pushing_to_a_refused_address_says_so_in_its_description(engine: Engine) -> None:
    """The engine's plans carry the allow-list (127.0.0.1 here): a push to the metadata address is refused
    before any connection, and the job's description says why."""
    jobs = DescribedJobs()
    engine.supervisor.attach(jobs)
    url = "rtmp://169.254.169.254:1935/live/secret-key"
    engine.source.publishers["j2"] = Publisher("H264", colour=GREEN, tone=440.0)
    await engine.supervisor.start(job_spec("j2", rule(), publish_param={"rtmp_urls": [url]}))

    def described() -> list[str]:
        return [c[2] for c in jobs.calls if c[0] == "describe"]

    deadline = time.monotonic() + 20.0
    while not any("refused" in d for d in described()):
        assert time.monotonic() < deadline, f"no refusal described: {jobs.calls}"
        await engine.publish("j2", 0.5)
    await engine.supervisor.stop("j2")
    (text,) = {d for d in described() if "refused" in d}
    assert text.startswith(
        "recording; pushing to 0 of 1 RTMP URL; rtmp://169.254.169.254:1935/live/***: retrying (refused by the "
        "outbound policy: address 169.254.169.254 (cloud metadata), which is not an allowed destination"
    )
    assert "secret-key" not in " ".join(described())
