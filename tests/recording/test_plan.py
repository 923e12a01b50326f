"""Recording plans: the record rule (spec 4.9) and the job's parameters (spec 4.4) turned into frozen data."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from emberrtc.domain.outbound import AllowList
from emberrtc.domain.ports import JobSpec
from emberrtc.recording.plan import (
    STREAM_TYPE_CAPS,
    Endpoint,
    MixImageFiles,
    MixStream,
    ObjectNaming,
    PlanError,
    RecordingPlan,
    SourceFormat,
    VideoCap,
    build_mix_plan,
    build_plan,
    file_start_time,
)
from tests.recording.engine import job_spec, rule

T = datetime(2024, 1, 31, 23, 59, 58, 700_000, tzinfo=UTC).timestamp()
H264_OPUS = SourceFormat("H264", "OPUS")


def test_file_start_time_is_utc_yyyymmddhhmmss() -> None:
    assert file_start_time(T) == "20240131235958"


def test_default_prefix_expands_every_variable() -> None:
    plan = build_plan(job_spec("j1", rule(formats=("MP4",))), H264_OPUS, spool_dir=Path("/spool/j1"))
    assert plan.mp4 is not None
    name = plan.mp4.naming.object_name("MP4", T, ".mp4")
    # obs_addr.object "rec" + {app_id}/{record_format}/{stream}_{file_start_time}/{stream}_{file_start_time}
    s = "s_j1_room1_alice_20240131235958"
    assert name == f"rec/app1/MP4/{s}/{s}.mp4"


def test_the_examples_extra_variables_and_unknown_ones() -> None:
    naming = ObjectNaming(
        "Record//{publish_domain}/{app}/{record_type}/{record_format}/{stream}-{file_start_time}-{nope}",
        app_id="app1",
        stream="st",
        publish_domain="rtc.example.com",
        record_type="individual",
    )
    assert (
        naming.object_name("HLS", T, ".m3u8")
        == "Record/rtc.example.com/app1/individual/HLS/st-20240131235958-{nope}.m3u8"
    )


@pytest.mark.parametrize(
    ("stream_type", "size", "recorded"),
    [
        ("LD", (640, 360), (320, 180)),
        ("SD", (640, 360), (640, 360)),
        ("SD", (1280, 720), (640, 360)),
        ("SD", (360, 640), (360, 640)),  # portrait is capped alike
        ("HD", (1920, 1080), (1280, 720)),
        ("HD", (1440, 1080), (960, 720)),  # 4:3 keeps its shape
        (None, (1920, 1080), (1920, 1080)),  # spec Table 4-26: FHD by default
        ("FHD", (3840, 2160), (1920, 1080)),
    ],
)
def test_select_stream_type_caps_the_resolution(stream_type: str | None, size: tuple, recorded: tuple) -> None:
    cap = VideoCap.for_stream_type(stream_type)
    assert cap.fit(*size) == recorded
    assert cap.fits(*size) == (size == recorded)


def test_caps_are_the_documented_mapping() -> None:
    assert STREAM_TYPE_CAPS == {"LD": (320, 180), "SD": (640, 360), "HD": (1280, 720), "FHD": (1920, 1080)}


def test_a_plan_holds_the_rule_and_the_job_parameters() -> None:
    spec = job_spec(
        "j2",
        rule(formats=("MP4", "HLS"), mp4_cycle=120, mp4_merge=30, hls_cycle=0, hls_slice=4, hls_merge=-1),
        select_stream_type="SD",
    )
    plan = build_plan(
        spec, SourceFormat("vp8", "opus"), spool_dir=Path("/spool/j2"), video_endpoint=Endpoint(port=5004, fd=9)
    )
    assert plan.formats == ("MP4", "HLS")
    assert plan.video is not None and plan.video.codec == "VP8" and plan.video.cap == VideoCap(640, 360)
    assert plan.video.endpoint == Endpoint(port=5004, fd=9)
    assert plan.audio is not None and plan.audio.codec == "OPUS"
    assert plan.mp4 is not None and (plan.mp4.record_cycle, plan.mp4.merge_gap) == (120, 30)
    assert plan.hls is not None
    assert (plan.hls.record_cycle, plan.hls.slice_duration, plan.hls.merge_gap) == (None, 4, None)
    assert (plan.location, plan.bucket, plan.mp4.naming.bucket) == ("local", "bkt", "bkt")
    assert plan.encoding.audio_sample_rate == 48_000
    # It travels to the worker as JSON and comes back equal.
    assert RecordingPlan.from_json(plan.to_json()) == plan
    reserved = dataclasses.replace(plan, reserved_names=("a.mp4", "b.mp4"))
    assert RecordingPlan.from_json(reserved.to_json()) == reserved
    with pytest.raises(dataclasses.FrozenInstanceError):
        plan.job_id = "other"  # type: ignore[misc]


def test_audio_is_left_out_when_not_wanted_or_not_published() -> None:
    plan = build_plan(job_spec("j3", rule(), is_record_audio=False), H264_OPUS, spool_dir=Path("/s"))
    assert plan.audio is None and plan.video is not None
    plan = build_plan(job_spec("j3", rule()), SourceFormat(None, "OPUS"), spool_dir=Path("/s"))
    assert plan.video is None and plan.audio is not None


@pytest.mark.parametrize(
    ("spec", "source", "message"),
    [
        (job_spec("j", None), H264_OPUS, "no record_param"),
        (dataclasses.replace(job_spec("j", rule()), kind="mix"), H264_OPUS, "not a single-stream job"),
        (job_spec("j", rule(), is_record_audio=False), SourceFormat(None, "OPUS"), "nothing to record"),
        (job_spec("j", rule()), SourceFormat("AV1", "OPUS"), "AV1 cannot be recorded"),
    ],
)
def test_what_cannot_be_recorded_is_refused(spec: JobSpec, source: SourceFormat, message: str) -> None:
    with pytest.raises(PlanError, match=message):
        build_plan(spec, source, spool_dir=Path("/s"))


def mix_spec(template: str = "1280x720_15_2260", **mix: Any) -> JobSpec:
    params = {"mix_param": {"room_id": "room", "encode_template": template, **mix}}
    return dataclasses.replace(job_spec("jm", rule()), kind="mix", stream_name="m_jm_room", params=params)


def test_a_mixed_job_plans_every_stream_and_survives_json() -> None:
    streams = (
        MixStream(1001, "alice", "camera", "video", "H264", 0),
        MixStream(1002, "alice", "camera", "audio", "OPUS", 0),
        MixStream(2001, "bob", "screen", "video", "VP8", 1),
    )
    images = MixImageFiles(background="/s/.images/a", users=(("bob", "/s/.images/b"),))
    job = mix_spec(layout_template="nine_grids_view")
    plan = build_mix_plan(job, streams, spool_dir=Path("/s"), endpoint=Endpoint("127.0.0.1", 5000, 7), images=images)
    assert plan.mix is not None and plan.video is None and plan.audio is None
    assert plan.mix.streams == streams and not plan.mix.audio_only
    assert plan.mix.params["layout_template"] == "nine_grids_view"
    assert plan.mp4 is not None and plan.mp4.naming.record_type == "mix" and plan.stream_name == "m_jm_room"
    again = RecordingPlan.from_json(plan.to_json())
    assert again == plan and isinstance(again.mix.streams[0], MixStream)  # type: ignore[union-attr]
    assert streams[2].key == "bob/screen/video"


@pytest.mark.parametrize(
    ("job", "streams", "message"),
    [
        (mix_spec("1280x721_15_2260"), (), "not an encode template"),
        (mix_spec("best"), (), "not an encode template"),
        (mix_spec(), (MixStream(1, "a", "camera", "video", "AV1", 0),), "AV1 cannot be mixed"),
        (mix_spec(), (MixStream(1, "a", "camera", "audio", "PCMU", 0),), "PCMU cannot be mixed"),
        (job_spec("j", rule()), (), "not a mixed-stream job"),
    ],
)
def test_what_cannot_be_mixed_is_refused(job: JobSpec, streams: tuple[MixStream, ...], message: str) -> None:
    with pytest.raises(PlanError, match=message):
        build_mix_plan(job, streams, spool_dir=Path("/s"), endpoint=Endpoint())


def test_the_plan_carries_the_outbound_allow_list_to_the_worker() -> None:
    """The worker's RTMP pushes vet their URLs with the server's EMBER_OUTBOUND_ALLOW (domain.outbound)."""
    spec = job_spec("j9", None, publish_param={"rtmp_urls": ["rtmp://live.example.com/app/k"]})
    allow = AllowList.parse("127.0.0.1,10.0.0.0/8,hooks.internal").entries()
    plan = build_plan(spec, H264_OPUS, spool_dir=Path("/s"), outbound_allow=allow)
    again = RecordingPlan.from_json(plan.to_json())
    assert again.outbound_allow == ("127.0.0.1/32", "10.0.0.0/8", "hooks.internal") == plan.outbound_allow
    assert AllowList.from_entries(again.outbound_allow).allows_name("hooks.internal")
    assert build_plan(spec, H264_OPUS, spool_dir=Path("/s")).outbound_allow == ()  # public addresses only
