"""The pipeline in process, with injected clocks: cut rules, formats, updates and silences, without a worker
process or a socket (the end-to-end path is in ``test_supervisor.py``)."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path
from typing import Any

import pytest

from emberrtc.recording.pipeline import Pipeline
from emberrtc.recording.plan import (
    AudioInput,
    HlsOutput,
    Mp4Output,
    ObjectNaming,
    RecordingPlan,
    VideoCap,
    VideoInput,
)
from emberrtc.recording.reports import FileCompleted, FileStarted, KeyframeRequest, MediaState, PartCompleted, Report
from emberrtc.synthetic import colour_distance, dominant_frequency, median_rgb
from tests.recording.publisher import Publisher
from tests.recording.readback import first_frame_is_keyframe, picture_nals, read_back

WALL = 1_700_000_000.0
NAMING = ObjectNaming("rec/{record_format}/{stream}_{file_start_time}", "app1", "st", location="local", bucket="b")


def plan_for(
    tmp: Path, *, video: str | None = "H264", cap: str = "FHD", audio: bool = True, **outputs: Any
) -> RecordingPlan:
    return RecordingPlan(
        job_id="job",
        app_id="app1",
        room_id="room",
        stream_name="st",
        location="local",
        bucket="b",
        spool_dir=str(tmp / "spool"),
        video=VideoInput(video, VideoCap.for_stream_type(cap)) if video else None,
        audio=AudioInput() if audio else None,
        **outputs,
    )


class Driver:
    """Feeds a publisher's packets to a pipeline on a fake monotonic clock (1 ms per packet)."""

    def __init__(self, plan: RecordingPlan, pub: Publisher, tmp: Path) -> None:
        self.pub = pub
        self.now = 100.0
        self.reports: list[Report] = []
        self.pipeline = Pipeline(plan, self.reports.append, wall_clock=lambda: WALL, run_id="t")
        self.pipeline._report = self._report  # answer keyframe requests like a live publisher
        self.store = tmp / "store"

    def _report(self, report: Report) -> None:
        self.reports.append(report)
        if isinstance(report, KeyframeRequest):
            self.pub.request_keyframe()

    def send(self, seconds: float) -> None:
        for kind, data in self.pub.run(seconds):
            self.now += 0.001
            self.pipeline.receive(kind, data, self.now)
            self.pipeline.tick(self.now)

    def wait(self, seconds: float) -> None:
        """Let ``seconds`` of wall-clock time pass with no packets."""
        end = self.now + seconds
        while self.now < end:
            self.now += 0.05
            self.pipeline.tick(self.now)

    def close(self) -> None:
        self.pipeline.close()

    def of(self, kind: type) -> list:
        return [r for r in self.reports if isinstance(r, kind)]

    def stored(self, report: FileCompleted | PartCompleted) -> Path:
        """Copy every reported file to ``store/{bucket}/{object}`` (as storage would); the given one's path."""
        for r in self.of(PartCompleted) + self.of(FileCompleted):
            dest = self.store / r.bucket / r.object_name
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(r.path, dest)
        return self.store / report.bucket / report.object_name


def test_hls_playlists_per_cycle_and_a_new_one_after_a_long_interruption(tmp_path: Path) -> None:
    # Short cycles are for tests only (spec: [60, 43200]); the engine cuts on media time all the same.
    hls = HlsOutput(NAMING, record_cycle=10, slice_duration=2, merge_gap=3)
    d = Driver(plan_for(tmp_path, video="VP8", hls=hls), Publisher("VP8"), tmp_path)
    d.send(25.0)
    d.pub.pause(2.0)  # within the threshold: the playlist goes on
    d.send(3.0)
    d.pub.pause(5.0)  # beyond it: a new playlist
    d.send(4.0)
    d.close()

    playlists = d.of(FileCompleted)
    durations = [p.duration for p in playlists]
    assert durations == pytest.approx([10, 10, 8, 4], abs=0.3)
    assert len(d.of(FileStarted)) == 4
    for p in playlists:
        rb = read_back(d.stored(p))
        assert rb.format == "hls" and rb.duration == pytest.approx(p.duration, abs=0.3)
        text = d.stored(p).read_text()
        assert text.count("#EXTINF") == len([s for s in d.of(PartCompleted) if s.file_id == p.file_id])
    for segment in d.of(PartCompleted):
        assert first_frame_is_keyframe(d.stored(segment))
        assert read_back(d.stored(segment), decode_video=False).duration <= 2.0 + 0.1  # forced keyframes


def test_h264_above_the_cap_is_transcoded_down(tmp_path: Path) -> None:
    mp4 = Mp4Output(NAMING, record_cycle=60)
    pub = Publisher("H264", width=640, height=360, colour=(30, 60, 220))
    d = Driver(plan_for(tmp_path, cap="LD", mp4=mp4), pub, tmp_path)
    d.send(3.0)
    d.close()
    (f,) = d.of(FileCompleted)
    rb = read_back(f.path)
    assert (f.width, f.height, rb.width, rb.height) == (320, 180, 320, 180)
    assert not set(picture_nals(f.path)) & pub.sent.h264_nals  # re-encoded
    assert colour_distance(median_rgb(rb.middle_frame), (30, 60, 220)) < 25


def test_an_update_applies_from_the_next_file(tmp_path: Path) -> None:
    plan = plan_for(tmp_path, mp4=Mp4Output(NAMING, record_cycle=5))
    d = Driver(plan, Publisher("H264"), tmp_path)
    d.send(3.0)
    renamed = dataclasses.replace(NAMING, template="new/{stream}", bucket="b2")
    d.pipeline.update(
        dataclasses.replace(
            plan, mp4=Mp4Output(renamed, record_cycle=4), hls=HlsOutput(renamed, record_cycle=None, slice_duration=2)
        )
    )
    d.send(7.0)
    d.close()
    mp4 = [f for f in d.of(FileCompleted) if f.record_format == "MP4"]
    assert [f.object_name for f in mp4] == ["rec/MP4/st_20231114221320.mp4", "new/st.mp4", "new/st-1.mp4"]
    assert [f.bucket for f in mp4] == ["b", "b2", "b2"]
    assert [round(f.duration) for f in mp4] == [5, 4, 1]  # the first file kept its 5 s cycle
    (hls,) = [f for f in d.of(FileCompleted) if f.record_format == "HLS"]  # a new format starts at once
    assert hls.object_name == "new/st.m3u8" and hls.duration == pytest.approx(7.0, abs=0.5)


def test_audio_only_publishers_are_recorded(tmp_path: Path) -> None:
    d = Driver(plan_for(tmp_path, video=None, mp4=Mp4Output(NAMING, 60)), Publisher(None, tone=523.0), tmp_path)
    d.send(4.0)
    d.close()
    (f,) = d.of(FileCompleted)
    rb = read_back(f.path)
    assert rb.video_codec is None and (rb.audio_codec, rb.sample_rate) == ("aac", 48_000)
    assert rb.duration == pytest.approx(4.0, abs=0.1) and (f.width, f.height) == (None, None)
    assert dominant_frequency(rb.audio[3:]) == pytest.approx(523.0, abs=5)


def test_audio_is_recorded_alone_until_video_comes(tmp_path: Path) -> None:
    plan = plan_for(tmp_path, mp4=Mp4Output(NAMING, 60))
    pub = Publisher("H264")
    video, pub.video = pub.video, None  # the camera starts 4 s late
    d = Driver(plan, pub, tmp_path)
    d.send(4.0)
    pub.video, pub._next_video = video, pub.t
    d.send(3.0)
    d.close()
    audio_only, both = d.of(FileCompleted)
    assert (audio_only.width, both.width) == (None, 320)
    assert audio_only.duration == pytest.approx(4.0 - plan.timing.video_wait, abs=0.2)
    assert both.duration == pytest.approx(3.0, abs=0.2)


def test_a_long_silence_closes_the_file_and_reports_idle(tmp_path: Path) -> None:
    d = Driver(plan_for(tmp_path, mp4=Mp4Output(NAMING, 60, merge_gap=10)), Publisher("H264"), tmp_path)
    d.send(2.0)
    d.wait(5.0)
    assert [r.state for r in d.of(MediaState)] == ["recording", "idle"]
    assert d.of(FileCompleted) == []  # the publisher may still come back within the threshold
    d.wait(6.5)  # 11.5 s of silence > 10 s threshold + 1 s (an interruption's minimum)
    (f,) = d.of(FileCompleted)
    assert f.duration == pytest.approx(2.0, abs=0.1)
    d.send(2.0)  # the publisher is back: a new file
    d.close()
    assert len(d.of(FileCompleted)) == 2
    assert [r.state for r in d.of(MediaState)] == ["recording", "idle", "recording"]


def test_files_in_the_same_second_get_distinct_names(tmp_path: Path) -> None:
    naming = dataclasses.replace(NAMING, template="fixed")
    d = Driver(plan_for(tmp_path, mp4=Mp4Output(naming, 60)), Publisher("H264"), tmp_path)
    d.send(1.5)
    d.pub.pause(3.0)
    d.send(1.5)
    d.pub.pause(3.0)
    d.send(1.5)
    d.close()
    assert [f.object_name for f in d.of(FileCompleted)] == ["fixed.mp4", "fixed-1.mp4", "fixed-2.mp4"]
    assert len({f.path for f in d.of(FileCompleted)}) == 3


def test_a_whole_stream_playlist_takes_a_new_rule_at_the_next_segment(tmp_path: Path) -> None:
    plan = plan_for(tmp_path, video="VP8", hls=HlsOutput(NAMING, record_cycle=None, slice_duration=2))
    d = Driver(plan, Publisher("VP8"), tmp_path)
    d.send(3.0)
    renamed = dataclasses.replace(NAMING, template="new/{stream}")
    d.pipeline.update(dataclasses.replace(plan, hls=HlsOutput(renamed, record_cycle=None, slice_duration=2)))
    d.send(3.0)
    d.pipeline.update(dataclasses.replace(plan, hls=None, mp4=Mp4Output(renamed, record_cycle=60)))
    d.send(3.0)
    d.close()
    hls = [f for f in d.of(FileCompleted) if f.record_format == "HLS"]
    assert [f.object_name for f in hls] == ["rec/HLS/st_20231114221320.m3u8", "new/st.m3u8"]
    assert [round(f.duration) for f in hls] == [4, 2]  # each ended at a segment boundary (2 s slices)
    (mp4,) = [f for f in d.of(FileCompleted) if f.record_format == "MP4"]
    assert mp4.duration == pytest.approx(3.0, abs=0.1)
