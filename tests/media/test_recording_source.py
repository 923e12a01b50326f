"""PlaneMediaSource's decisions, over a stand-in for the media plane: which feed and tracks it forwards where,
what it refuses, and how it follows a re-published stream (the real Janus path: test_recording_e2e.py)."""

from __future__ import annotations

import asyncio
from typing import Any, cast

import pytest

from emberrtc.domain.errors import RecordingFault
from emberrtc.domain.ports import JobSpec
from emberrtc.media.janus_client import RtpForwardStream
from emberrtc.media.plane import Feed, JanusMediaPlane, StreamKind
from emberrtc.media.recording_source import MIX_SSRC_BASE, PlaneMediaSource
from emberrtc.recording.plan import MixStream, SourceFormat
from emberrtc.recording.source import ForwardTarget, MixTarget

TARGET = ForwardTarget("127.0.0.1", 40000, 40002)


def feed(
    feed_id: str,
    kind: StreamKind = StreamKind.CAMERA,
    video: str | None = "h264",
    audio: bool = True,
    user: str = "alice",
) -> Feed:
    tracks: list[dict[str, Any]] = []
    if audio:
        tracks.append({"mid": "0", "type": "audio", "codec": "opus"})
    if video:
        tracks.append({"mid": "1", "type": "video", "codec": video})
    return Feed(user, kind, "app1/room1", feed_id, tracks)


class FakePlane:
    def __init__(self) -> None:
        self.feed_listeners: list[Any] = []
        self.feed_ended_listeners: list[Any] = []
        self.live: dict[StreamKind, Feed] = {}
        self.room: list[Feed] = []  # a mixed job's room: every live feed, in publishing order
        self.joined: list[str] = []
        self.calls: list[tuple[Any, ...]] = []

    def feeds(self, app_id: str, room_id: str) -> list[Feed]:
        return list(self.room) if (app_id, room_id) == ("app1", "room1") else []

    def participants(self, app_id: str, room_id: str) -> list[str]:
        return list(self.joined) if (app_id, room_id) == ("app1", "room1") else []

    def unpublish(self, f: Feed) -> None:
        self.room.remove(f)
        for listener in self.feed_ended_listeners:
            listener(f)

    def live_feed(self, app_id: str, room_id: str, user_id: str, kind: StreamKind) -> Feed | None:
        return self.live.get(kind) if (app_id, room_id, user_id) == ("app1", "room1", "alice") else None

    async def rtp_forward(self, f: Feed, host: str, streams: list[RtpForwardStream]) -> list[int]:
        if any(s.ssrc is not None for s in streams):
            self.calls.append(("forward", f.feed_id, host, [(s.mid, s.port, s.ssrc) for s in streams]))
        else:
            self.calls.append(("forward", f.feed_id, host, [(s.mid, s.port) for s in streams]))
        return [len(self.calls) * 10 + i for i in range(len(streams))]

    async def stop_rtp_forward(self, f: Feed, stream_ids: list[int]) -> None:
        self.calls.append(("stop", f.feed_id, list(stream_ids)))

    async def request_keyframe(self, f: Feed) -> bool:
        self.calls.append(("keyframe", f.feed_id))
        return True

    def publish(self, f: Feed) -> None:
        self.live[f.stream] = f
        self.room.append(f)
        if f.user_id not in self.joined:
            self.joined.append(f.user_id)
        for listener in self.feed_listeners:
            listener(f)


class Changes:
    def __init__(self, plane: FakePlane) -> None:
        self.plane = plane

    async def source_changed(self, job_id: str, fmt: SourceFormat) -> None:
        self.plane.calls.append(("changed", job_id, fmt))

    async def streams_changed(self, job_id: str, streams: tuple[MixStream, ...]) -> None:
        self.plane.calls.append(("streams", job_id, streams))


def job(kind: str = "individual", **params: Any) -> JobSpec:
    return JobSpec("job1", "app1", kind, "room1", "alice" if kind == "individual" else None, "s1", params, {})


def source() -> tuple[PlaneMediaSource, FakePlane]:
    plane = FakePlane()
    src = PlaneMediaSource(cast(JanusMediaPlane, plane))
    src.attach(Changes(plane))
    return src, plane


async def settled(src: PlaneMediaSource) -> None:
    await asyncio.gather(*src._tasks)


async def test_forwards_the_chosen_stream_and_stops_it() -> None:
    src, plane = source()
    plane.live[StreamKind.CAMERA] = feed("cam", video="vp8")
    plane.live[StreamKind.SCREEN] = feed("scr", StreamKind.SCREEN, audio=False)

    assert await src.forward(job(), TARGET) == SourceFormat("VP8", "OPUS")
    await src.request_keyframe("job1")
    await src.stop_forward("job1")
    await src.stop_forward("job1")  # a no-op the second time
    await src.request_keyframe("job1")  # no feed any more: nothing asked
    assert plane.calls == [
        ("forward", "cam", "127.0.0.1", [("1", 40000), ("0", 40002)]),
        ("keyframe", "cam"),
        ("stop", "cam", [10, 11]),
    ]

    plane.calls.clear()
    screen_only = ForwardTarget("127.0.0.1", 40004, None)  # is_record_audio false: no audio port
    assert await src.forward(job(video_type="SCREENSTREAM"), screen_only) == SourceFormat("H264", None)
    assert plane.calls == [("forward", "scr", "127.0.0.1", [("1", 40004)])]


async def test_refuses_mix_jobs_and_missing_streams() -> None:
    src, plane = source()
    with pytest.raises(RecordingFault, match="not a single-stream job"):
        await src.forward(job("mix"), TARGET)
    with pytest.raises(RecordingFault, match="publishes no SCREENSTREAM"):
        await src.forward(job(video_type="SCREENSTREAM"), TARGET)
    plane.live[StreamKind.CAMERA] = feed("cam", video=None, audio=False)
    with pytest.raises(RecordingFault, match="no track to record"):
        await src.forward(job(), TARGET)
    await src.stop_forward("job1")  # nothing was registered
    assert plane.calls == []


async def test_follows_a_republished_stream() -> None:
    src, plane = source()
    plane.live[StreamKind.CAMERA] = feed("cam1")
    await src.forward(job(), TARGET)

    plane.publish(feed("other", StreamKind.SCREEN))  # another stream of the user: not this job's
    plane.publish(feed("cam1"))  # the feed already forwarded
    await settled(src)
    assert [c[0] for c in plane.calls] == ["forward"]

    plane.calls.clear()
    plane.publish(feed("cam2"))  # same codecs: forwarded again, the engine not bothered
    await settled(src)
    assert plane.calls == [("stop", "cam1", [10, 11]), ("forward", "cam2", "127.0.0.1", [("1", 40000), ("0", 40002)])]

    plane.calls.clear()
    plane.publish(feed("cam3", video="vp8"))  # new codec: the engine hears first, then RTP flows
    await settled(src)
    assert [c[0] for c in plane.calls] == ["stop", "changed", "forward"]
    assert plane.calls[1] == ("changed", "job1", SourceFormat("VP8", "OPUS"))

    await src.stop_forward("job1")
    plane.calls.clear()
    plane.publish(feed("cam4"))  # the job is over
    await settled(src)
    assert plane.calls == []
    await src.close()
    assert plane.feed_listeners == []


MIX = MixTarget("127.0.0.1", 41000)
BASE = MIX_SSRC_BASE


async def test_a_mixed_job_gets_every_stream_of_the_room_on_one_port_by_ssrc() -> None:
    src, plane = source()
    plane.publish(feed("a-cam", user="alice"))
    plane.publish(feed("b-cam", video="vp8", audio=False, user="bob"))
    plane.publish(feed("a-scr", StreamKind.SCREEN, video="vp8", audio=False, user="alice"))
    plane.publish(feed("c-cam", video="av1", user="carol"))  # AV1 cannot be mixed: carol's audio only
    plane.calls.clear()
    streams = await src.forward_mix(job("mix"), MIX)

    assert streams == (
        MixStream(BASE, "alice", "camera", "audio", "OPUS", 0),
        MixStream(BASE + 1, "alice", "camera", "video", "H264", 0),
        MixStream(BASE + 2, "alice", "screen", "video", "VP8", 0),
        MixStream(BASE + 3, "bob", "camera", "video", "VP8", 1),
        MixStream(BASE + 4, "carol", "camera", "audio", "OPUS", 2),
    )
    assert [c[1] for c in plane.calls if c[0] == "keyframe"] == ["a-cam", "a-scr", "b-cam"]  # not c-cam: no video
    forwards = [c for c in plane.calls if c[0] == "forward"]
    assert forwards == [
        ("forward", "a-cam", "127.0.0.1", [("0", 41000, BASE), ("1", 41000, BASE + 1)]),
        ("forward", "a-scr", "127.0.0.1", [("1", 41000, BASE + 2)]),
        ("forward", "b-cam", "127.0.0.1", [("1", 41000, BASE + 3)]),
        ("forward", "c-cam", "127.0.0.1", [("0", 41000, BASE + 4)]),
    ]
    plane.calls.clear()
    await src.request_keyframe("job1", "alice/screen/video")
    assert plane.calls == [("keyframe", "a-scr")]
    plane.calls.clear()
    await src.stop_forward("job1")
    assert sorted(c[1] for c in plane.calls if c[0] == "stop") == ["a-cam", "a-scr", "b-cam", "c-cam"]


async def test_a_mixed_job_follows_joins_leaves_and_republishes() -> None:
    src, plane = source()
    alice = feed("a1", user="alice")
    plane.publish(alice)
    await src.forward_mix(job("mix"), MIX)
    plane.calls.clear()

    plane.publish(feed("b1", video="vp8", user="bob"))  # bob joins
    await settled(src)
    (changed,) = [c for c in plane.calls if c[0] == "streams"]
    assert [(s.user_id, s.kind, s.order) for s in changed[2]] == [
        ("alice", "audio", 0), ("alice", "video", 0), ("bob", "audio", 1), ("bob", "video", 1)
    ]  # fmt: skip
    plane.calls.clear()

    plane.unpublish(alice)  # alice leaves: her forwarders went with her Janus publisher
    await settled(src)
    assert [c for c in plane.calls if c[0] == "stop"] == []
    (changed,) = [c for c in plane.calls if c[0] == "streams"]
    assert {s.user_id for s in changed[2]} == {"bob"}
    plane.calls.clear()

    plane.publish(feed("a2", video="vp8", user="alice"))  # alice re-publishes, now in VP8: the job goes on
    await settled(src)
    (changed,) = [c for c in plane.calls if c[0] == "streams"]
    again = [s for s in changed[2] if s.user_id == "alice"]
    assert [(s.kind, s.codec, s.order) for s in again] == [("audio", "OPUS", 0), ("video", "VP8", 0)]
    assert min(s.ssrc for s in again) > max(s.ssrc for s in changed[2] if s.user_id == "bob")  # new SSRCs


async def test_an_audio_only_mix_forwards_no_video() -> None:
    src, plane = source()
    plane.publish(feed("a1", user="alice"))
    plane.publish(feed("s1", StreamKind.SCREEN, video="h264", audio=False, user="alice"))
    streams = await src.forward_mix(job("mix"), MixTarget("127.0.0.1", 41000, video=False))
    assert [(s.stream, s.kind) for s in streams] == [("camera", "audio")]
    assert [c[1] for c in plane.calls if c[0] == "forward"] == ["a1"]
