"""End to end: synthetic publishers send RTP over loopback UDP into real worker processes run by the
supervisor; the files are read back with PyAV and checked by content.

Media is sent faster than real time (as fast as the worker takes it): the engine works on media time,
so a 130 s recording takes seconds, and nothing here sleeps.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from emberrtc.domain.errors import BucketNotExist
from emberrtc.recording.outputs import FileTarget
from emberrtc.recording.plan import SourceFormat
from emberrtc.recording.supervisor import worker_env
from emberrtc.synthetic import colour_distance, dominant_frequency, median_rgb
from tests.recording.engine import TIMING, Call, DescribedJobs, Engine, engine_fixture, job_spec, rule, running_engine
from tests.recording.publisher import Publisher
from tests.recording.readback import first_frame_is_keyframe, picture_nals, read_back, video_packets

__all__ = ["engine_fixture"]  # the fixture, used by name

BLUE, GREEN, ORANGE = (30, 60, 220), (30, 200, 60), (240, 140, 20)


def completed(engine: Engine, record_format: str) -> list[Call]:
    return [c for c in engine.outputs.named("file_completed") if c.args["record_format"] == record_format]


def stored(engine: Engine, call: Call) -> Path:
    target: FileTarget = call.args["target"]
    return engine.outputs.stored(target)


async def record(engine: Engine, job_id: str, pub: Publisher, rule_: dict, seconds: float, **params: object) -> None:
    engine.source.publishers[job_id] = pub
    await engine.supervisor.start(job_spec(job_id, rule_, **params))
    await engine.publish(job_id, seconds)
    await engine.drained(job_id)


async def test_h264_is_recorded_without_reencoding_to_mp4_and_hls(engine: Engine) -> None:
    pub = Publisher("H264", colour=BLUE, tone=440.0)
    await record(engine, "j1", pub, rule(formats=("MP4", "HLS"), hls_slice=2), 6.0)
    await engine.supervisor.stop("j1")

    (mp4,) = completed(engine, "MP4")
    path = stored(engine, mp4)
    rb = read_back(path)
    assert abs(rb.duration - 6.0) <= 1.0
    assert (rb.video_codec, rb.width, rb.height) == ("h264", 320, 180)
    assert (rb.audio_codec, rb.sample_rate) == ("aac", 48_000)
    assert colour_distance(median_rgb(rb.middle_frame), BLUE) < 25
    assert abs(dominant_frequency(rb.audio[5:]) - 440.0) < 5
    assert (mp4.args["width"], mp4.args["height"]) == (320, 180)
    assert abs(mp4.args["end_time"] - mp4.args["start_time"] - rb.duration) < 0.5
    # No re-encode: every coded picture in the file is byte for byte one the publisher's encoder made.
    slices = picture_nals(path)
    assert len(slices) >= 170 and all(n in pub.sent.h264_nals for n in slices)
    assert first_frame_is_keyframe(path)

    # HLS: the stored playlist finds its stored segments beside it; PyAV plays them as one stream.
    (hls,) = completed(engine, "HLS")
    playlist = stored(engine, hls)
    assert playlist.name.endswith(".m3u8") and "#EXT-X-ENDLIST" in playlist.read_text()
    parts = engine.outputs.named("store_part")
    assert len(parts) >= 3 and all(p.args["group"] == hls.args["group"] for p in parts)
    for part in parts:
        segment = stored(engine, part)
        assert segment.parent == playlist.parent and segment.name in playlist.read_text()
        assert first_frame_is_keyframe(segment)
        assert read_back(segment, decode_video=False).duration <= 2.0 + 0.75
    rb = read_back(playlist)
    assert rb.format == "hls" and abs(rb.duration - 6.0) <= 1.0
    assert (rb.video_codec, rb.audio_codec) == ("h264", "aac")
    assert colour_distance(median_rgb(rb.middle_frame), BLUE) < 25

    # Order of what the application hears, and the job's states.
    names = [c.name for c in engine.outputs.calls]
    assert names[0] == "file_started" and names[-1] == "job_over"
    assert names.index("file_completed") > names.index("store_part")
    assert engine.outputs.named("job_over")[0].args["detail_message"] is None
    assert ("running", "j1") in engine.jobs.calls
    assert engine.source.keyframe_requests.get("j1", 0) >= 1  # asked at the start (and for HLS cuts)
    assert engine.source.stopped == ["j1"]
    assert engine.supervisor.jobs == []


async def test_vp8_is_transcoded_to_h264_within_the_stream_type_cap(engine: Engine) -> None:
    pub = Publisher("VP8", colour=GREEN, width=640, height=360, tone=660.0)
    # select_stream_type LD caps at 320x180 (plan.STREAM_TYPE_CAPS)
    await record(engine, "j2", pub, rule(formats=("MP4",)), 5.0, select_stream_type="LD")
    await engine.supervisor.stop("j2")

    (mp4,) = completed(engine, "MP4")
    path = stored(engine, mp4)
    rb = read_back(path)
    assert abs(rb.duration - 5.0) <= 1.0
    assert (rb.video_codec, rb.width, rb.height) == ("h264", 320, 180)
    assert (rb.audio_codec, rb.sample_rate) == ("aac", 48_000)
    assert colour_distance(median_rgb(rb.middle_frame), GREEN) < 25
    assert abs(dominant_frequency(rb.audio[5:]) - 660.0) < 5
    # Ember's encoder made this video: x264 signs its first picture with its settings.
    first = bytes(video_packets(path)[0])
    assert b"x264" in first and b"crf=23" in first


async def test_mp4_files_are_cut_every_record_cycle(engine: Engine) -> None:
    pub = Publisher("H264", colour=ORANGE, fps=15, tone=440.0)
    await record(engine, "j3", pub, rule(formats=("MP4",), mp4_cycle=60), 130.0)
    await engine.supervisor.stop("j3")

    files = completed(engine, "MP4")
    assert len(files) == 3
    durations = [read_back(stored(engine, f), decode_video=False).duration for f in files]
    assert abs(sum(durations) - 130.0) <= 1.0
    assert all(abs(d - 60.0) <= 1.0 for d in durations[:2]) and abs(durations[2] - 10.0) <= 2.0
    for f in files:
        assert first_frame_is_keyframe(stored(engine, f))
    # Consecutive files meet; each has its own name (file_start_time) and its own start event.
    starts = [f.args["start_time"] for f in files]
    assert starts == sorted(starts) and abs(files[1].args["start_time"] - files[0].args["end_time"]) < 0.5
    assert len({f.args["target"].object_name for f in files}) == 3
    assert len(engine.outputs.named("file_started")) == 3
    rb = read_back(stored(engine, files[1]))
    assert colour_distance(median_rgb(rb.middle_frame), ORANGE) < 25


async def test_merge_threshold_continues_or_starts_a_file(engine: Engine) -> None:
    # MP4 merges interruptions up to 10 s; HLS with -1 always appends on resume.
    pub = Publisher("H264", colour=BLUE)
    engine.source.publishers["j4"] = pub
    await engine.supervisor.start(job_spec("j4", rule(formats=("MP4", "HLS"), mp4_merge=10, hls_merge=-1)))
    await engine.publish("j4", 4.0)
    pub.pause(5.0)  # under the threshold: the same file goes on
    await engine.publish("j4", 4.0)
    pub.pause(20.0)  # over it: a new MP4 file
    await engine.publish("j4", 4.0)
    await engine.drained("j4")
    await engine.supervisor.stop("j4")

    mp4 = completed(engine, "MP4")
    assert len(mp4) == 2
    first, second = (read_back(stored(engine, f), decode_video=False).duration for f in mp4)
    assert abs(first - 8.0) <= 1.0  # the 5 s pause is cut out of the merged file
    assert abs(second - 4.0) <= 1.0
    # Wall-clock span of the merged file includes its pause; the new file starts after the long one.
    assert mp4[0].args["end_time"] - mp4[0].args["start_time"] == pytest.approx(13.0, abs=1.0)
    assert mp4[1].args["start_time"] - mp4[0].args["end_time"] == pytest.approx(20.0, abs=1.0)

    (hls,) = completed(engine, "HLS")
    assert abs(read_back(stored(engine, hls), decode_video=False).duration - 12.0) <= 1.0


async def test_a_killed_worker_fails_the_job_and_its_file_is_kept_to_the_last_fragment(engine: Engine) -> None:
    await record(engine, "j5", Publisher("H264", colour=BLUE, tone=440.0), rule(formats=("MP4",)), 7.0)
    await engine.wait_for(lambda: "recording" in engine.states("j5"), what="recording")
    pid = engine.supervisor.worker_pid("j5")
    assert pid is not None
    os.kill(pid, signal.SIGKILL)

    stopped = await engine.wait_for(lambda: [c for c in engine.jobs.calls if c[0] == "stopped"], what="job stopped")
    (_, job_id, reason, description) = stopped[0]
    assert (job_id, reason) == ("j5", "FATAL_ERROR")
    assert "killed by SIGKILL" in description
    over = await engine.wait_for(lambda: engine.outputs.named("job_over"), what="CLOUD_RECORD_OVER")
    assert "SIGKILL" in over[0].args["detail_message"]
    # The half-written MP4 is cut to its last complete fragment (one every 2 s): a valid file, not a loss.
    (mp4,) = completed(engine, "MP4")
    rb = read_back(stored(engine, mp4))
    assert 7.0 - 2.5 <= rb.duration <= 7.0 + 0.5
    assert abs(mp4.args["end_time"] - mp4.args["start_time"] - rb.duration) < 0.5
    assert (rb.video_codec, rb.audio_codec) == ("h264", "aac")
    assert colour_distance(median_rgb(rb.middle_frame), BLUE) < 25
    assert abs(dominant_frequency(rb.audio[5:]) - 440.0) < 5
    assert engine.supervisor.jobs == []


async def test_a_killed_worker_is_restarted_on_the_same_ports(engine: Engine) -> None:
    engine.supervisor.max_restarts = 1
    pub = Publisher("H264", colour=GREEN)
    await record(engine, "j6", pub, rule(formats=("MP4",)), 5.0)
    await engine.wait_for(lambda: "recording" in engine.states("j6"), what="recording")
    first = engine.supervisor.worker_pid("j6")
    assert first is not None
    os.kill(first, signal.SIGKILL)
    await engine.wait_for(lambda: engine.supervisor.worker_pid("j6") not in (None, first), what="a new worker")
    await engine.wait_for(lambda: engine.states("j6").count("recording") >= 1, what="ready")

    pub.request_keyframe()
    engine.progress["j6"] = engine.sent["j6"] = 0  # the new worker counts from zero
    await engine.publish("j6", 3.0)
    await engine.drained("j6")
    await engine.supervisor.stop("j6")

    assert not [c for c in engine.jobs.calls if c[0] == "stopped"]
    salvaged, mp4 = completed(engine, "MP4")  # the killed worker's file, kept, then the new worker's
    assert read_back(stored(engine, salvaged), decode_video=False).duration >= 2.5
    rb = read_back(stored(engine, mp4))
    assert abs(rb.duration - 3.0) <= 1.0
    assert colour_distance(median_rgb(rb.middle_frame), GREEN) < 25
    started = engine.outputs.named("file_started")
    assert len({c.args["target"].object_name for c in started}) == 2
    assert salvaged.args["target"] != mp4.args["target"]


async def test_a_missing_bucket_fails_the_start(engine: Engine) -> None:
    engine.source.publishers["j7"] = Publisher("H264")
    with pytest.raises(BucketNotExist):
        await engine.supervisor.start(job_spec("j7", rule(bucket="missing")))
    assert engine.supervisor.jobs == [] and engine.source.targets == {}


async def test_idle_and_recording_states_follow_the_media(engine: Engine) -> None:
    engine.supervisor._timing = replace(TIMING, idle_after=0.5)
    pub = Publisher("H264")
    await record(engine, "j8", pub, rule(formats=("MP4",)), 1.0)
    await engine.wait_for(lambda: ("idle", "j8") in engine.jobs.calls, limit=10, what="idle")
    await engine.publish("j8", 1.0)
    await engine.wait_for(lambda: engine.states("j8")[-1] == "recording", what="recording again")
    states = engine.states("j8")
    assert states[0] == "recording" and "idle" in states
    assert engine.jobs.calls.count(("running", "j8")) == states.count("recording") >= 2


async def test_a_new_rule_applies_from_the_next_file(engine: Engine) -> None:
    spec = job_spec("j9", rule(formats=("MP4",)))
    engine.source.publishers["j9"] = Publisher("H264")
    await engine.supervisor.start(spec)
    await engine.publish("j9", 2.0)
    await engine.drained("j9")
    await engine.supervisor.update(replace(spec, record_rule=rule(formats=("HLS",), bucket="other")))
    await engine.publish("j9", 2.0)
    await engine.drained("j9")
    await engine.supervisor.stop("j9")

    (mp4,) = completed(engine, "MP4")  # the open MP4 file runs to its end (here: the stop)
    assert mp4.args["target"].bucket == "bkt"
    assert read_back(stored(engine, mp4), decode_video=False).duration == pytest.approx(4.0, abs=1.0)
    (hls,) = completed(engine, "HLS")  # the new format starts at once, where the new rule says
    assert hls.args["target"].bucket == "other"
    assert read_back(stored(engine, hls), decode_video=False).duration == pytest.approx(2.0, abs=1.0)


async def test_a_source_with_other_codecs_gets_a_new_worker_on_the_same_ports(engine: Engine) -> None:
    await record(engine, "j10", Publisher("H264", colour=BLUE), rule(formats=("MP4",)), 2.0)
    first = engine.supervisor.worker_pid("j10")
    # The user re-published with VP8: the media plane forwards it to the same ports and says so.
    engine.source.publishers["j10"] = Publisher("VP8", colour=GREEN, seed=5)
    await engine.supervisor.source_changed("j10", SourceFormat("VP8", "OPUS"))
    await engine.wait_for(lambda: engine.supervisor.worker_pid("j10") not in (None, first), what="a new worker")
    engine.progress["j10"] = engine.sent["j10"] = 0
    await engine.publish("j10", 2.0)
    await engine.drained("j10")
    await engine.supervisor.stop("j10")

    h264, vp8 = completed(engine, "MP4")
    # Both in the same second: the new worker must not reuse (and overwrite) the first one's object.
    assert h264.args["target"].object_name != vp8.args["target"].object_name
    assert colour_distance(median_rgb(read_back(stored(engine, h264)).middle_frame), BLUE) < 25
    rb = read_back(stored(engine, vp8))
    assert rb.video_codec == "h264" and colour_distance(median_rgb(rb.middle_frame), GREEN) < 25
    assert not [c for c in engine.jobs.calls if c[0] == "stopped"] and len(engine.outputs.named("job_over")) == 1


async def test_a_worker_that_does_not_keep_up_is_in_the_jobs_description_until_it_does(tmp_path: Path) -> None:
    """Any lag counts here (``behind`` 0): the worker reads each datagram after it arrived, so it reports
    being late as soon as media flows, and keeping up when nothing is left to read."""
    jobs = DescribedJobs()
    async with running_engine(tmp_path, replace(TIMING, behind=0.0, behind_for=0.0), jobs) as engine:
        engine.source.publishers["late"] = Publisher("H264")
        await engine.supervisor.start(job_spec("late", rule()))
        late = "s behind its media: this machine does not keep up with the job"
        await engine.publish("late", 1.0)
        await engine.wait_for(lambda: any(late in d for d in jobs.described("late")), what="the lag described")
        assert any(d.startswith("recording; 0.") for d in jobs.described("late")), jobs.described("late")
        # Nothing more is sent: nothing waits to be read, the worker keeps up again.
        await engine.wait_for(
            lambda: jobs.described("late") and late not in jobs.described("late")[-1], what="the lag gone"
        )
        await engine.supervisor.stop("late")


def test_a_worker_imports_numpy_with_one_blas_thread() -> None:
    """Workers get ``OPENBLAS_NUM_THREADS=1`` unless the operator set it: NumPy imported in such a process
    leaves it one thread, where OpenBLAS would start one per core (two or more here)."""
    assert worker_env({"PATH": "/bin"}) == {"PATH": "/bin", "OPENBLAS_NUM_THREADS": "1"}
    assert worker_env({"OPENBLAS_NUM_THREADS": "4"})["OPENBLAS_NUM_THREADS"] == "4"
    count = "import numpy, os; print(len(os.listdir('/proc/self/task')))"

    def threads(env: dict[str, str]) -> int:
        return int(subprocess.run([sys.executable, "-c", count], env=env, capture_output=True, check=True).stdout)

    environ = {k: v for k, v in os.environ.items() if k != "OPENBLAS_NUM_THREADS"}
    assert threads(worker_env(environ)) == 1
    if (os.cpu_count() or 1) > 1:  # the variable is what keeps the thread count down
        assert threads(environ) > 1
