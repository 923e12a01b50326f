"""A server that restarts after its recording workers outlived it or died with it (crash safety).

Each test runs a real worker process from a plan, as the supervisor does, then plays the server's death:
its pipes close (the worker finishes its files and keeps its reports in the journal) or the worker is
killed too (its files are left half-written). A new supervisor's ``recover`` must then store and report
every file exactly once, salvaging what no worker finished.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

from emberrtc.recording import reports
from emberrtc.recording.outputs import JobRef
from emberrtc.recording.plan import (
    AudioInput,
    Endpoint,
    HlsOutput,
    Mp4Output,
    ObjectNaming,
    RecordingPlan,
    VideoCap,
    VideoInput,
)
from emberrtc.recording.reports import FileStarted, PartCompleted, Ready
from emberrtc.recording.salvage import complete_mp4_length
from emberrtc.recording.supervisor import RecordingSupervisor, SpoolJournal
from emberrtc.recording.worker import JOURNAL
from emberrtc.synthetic import colour_distance, median_rgb
from tests.recording.engine import FakeOutputs, FakeSource
from tests.recording.publisher import Publisher
from tests.recording.readback import read_back

ORANGE = (240, 140, 20)
REF = JobRef("app1", "job1", "room1", "s_job1_room1_alice")


def plan(spool: Path, *, mp4: bool = True, hls: bool = False) -> RecordingPlan:
    naming = ObjectNaming("rec/{stream}", "app1", REF.stream_name, location="local", bucket="b")
    return RecordingPlan(
        job_id=REF.job_id,
        app_id=REF.app_id,
        room_id=REF.room_id,
        stream_name=REF.stream_name,
        location="local",
        bucket="b",
        spool_dir=str(spool / REF.job_id),
        video=VideoInput("H264", VideoCap.for_stream_type("SD"), Endpoint("127.0.0.1", 0)),
        audio=AudioInput(endpoint=Endpoint("127.0.0.1", 0)),
        mp4=Mp4Output(naming, record_cycle=60) if mp4 else None,
        hls=HlsOutput(naming, record_cycle=None, slice_duration=2) if hls else None,
    )


class OldServer:
    """The previous server run: it starts a worker, hands it media and handles its first reports."""

    def __init__(self, spool: Path, p: RecordingPlan, seconds: float) -> None:
        SpoolJournal(spool / REF.job_id).write_ref(REF)  # as RecordingSupervisor.start does
        self.worker = subprocess.Popen(
            [sys.executable, "-m", "emberrtc.recording.worker", "-"], stdin=subprocess.PIPE, stdout=subprocess.PIPE
        )
        assert self.worker.stdin is not None and self.worker.stdout is not None
        self.worker.stdin.write(p.to_json().encode() + b"\n")
        self.worker.stdin.flush()
        ready = reports.decode(self.worker.stdout.readline())
        assert isinstance(ready, Ready)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            for kind, data in Publisher("H264", colour=ORANGE).run(seconds):
                sock.sendto(data, ("127.0.0.1", ready.ports[kind]))
        self.seen: list[reports.Report] = []
        while not any(isinstance(r, FileStarted) for r in self.seen):
            self.seen.append(reports.decode(self.worker.stdout.readline()))
        started = next(r for r in self.seen if isinstance(r, FileStarted))
        SpoolJournal(spool / REF.job_id).handled(started)  # its RECORD_NEW_FILE_START went out

    def dies(self) -> None:
        """kill -9 of the server: its ends of the pipes close; the worker lives on."""
        assert self.worker.stdin is not None and self.worker.stdout is not None
        self.worker.stdout.close()
        self.worker.stdin.close()

    def dies_with_worker(self, settle: float = 1.0) -> None:
        """The machine went down, or both were killed: the worker gets no chance to finish."""
        # Let the worker take the media sent (a fragment is written every 2 s of it).
        try:
            self.worker.wait(timeout=settle)
        except subprocess.TimeoutExpired:
            pass
        os.kill(self.worker.pid, signal.SIGKILL)
        self.worker.wait()


def new_server(tmp_path: Path) -> tuple[RecordingSupervisor, FakeOutputs]:
    outputs = FakeOutputs(tmp_path / "store")
    return RecordingSupervisor(outputs, FakeSource(), spool_root=tmp_path / "spool"), outputs


async def test_files_a_worker_finished_after_its_server_died_are_stored_once(tmp_path: Path) -> None:
    old = OldServer(tmp_path / "spool", plan(tmp_path / "spool"), 4.0)
    old.dies()
    supervisor, outputs = new_server(tmp_path)
    # The worker is still finishing its file: recover waits for it (the job's lock), then reads the journal.
    assert await supervisor.recover(lock_timeout=30) == 1
    assert old.worker.wait(timeout=5) == 0
    assert outputs.named("file_started") == []  # handled by the old server already
    (done,) = outputs.named("file_completed")
    rb = read_back(outputs.stored(done.args["target"]))
    assert abs(rb.duration - 4.0) <= 1.0
    assert colour_distance(median_rgb(rb.middle_frame), ORANGE) < 25

    again, outputs_again = new_server(tmp_path)  # a second restart finds nothing left to do
    assert await again.recover() == 0
    assert outputs_again.calls == []


async def test_an_mp4_no_worker_finished_is_kept_to_its_last_fragment(tmp_path: Path) -> None:
    old = OldServer(tmp_path / "spool", plan(tmp_path / "spool"), 7.0)
    old.dies_with_worker()
    started = next(r for r in old.seen if isinstance(r, FileStarted))
    data = await asyncio.to_thread(Path(started.path).read_bytes)
    assert 0 < complete_mp4_length(data) <= len(data)
    # A fragment the kill tore (its box is longer than what was written) is cut off; so is a moof alone.
    torn = data + b"\x00\x00\x10\x00moof" + bytes(100)
    assert complete_mp4_length(torn) == complete_mp4_length(data)
    lone = data + b"\x00\x00\x00\x10moof" + bytes(8)
    assert complete_mp4_length(lone) == complete_mp4_length(data)

    supervisor, outputs = new_server(tmp_path)
    assert await supervisor.recover() == 1
    (done,) = outputs.named("file_completed")
    rb = read_back(outputs.stored(done.args["target"]))
    assert 7.0 - 2.5 <= rb.duration <= 7.5
    assert abs(done.args["end_time"] - done.args["start_time"] - rb.duration) < 0.5
    assert (rb.video_codec, rb.audio_codec) == ("h264", "aac")
    assert colour_distance(median_rgb(rb.middle_frame), ORANGE) < 25


async def test_an_hls_playlist_no_worker_finished_is_closed_with_its_segments(tmp_path: Path) -> None:
    old = OldServer(tmp_path / "spool", plan(tmp_path / "spool", mp4=False, hls=True), 7.0)
    old.dies_with_worker()

    supervisor, outputs = new_server(tmp_path)
    await supervisor.recover()
    parts = outputs.named("store_part")
    assert len(parts) >= 3  # 2 s segments of 7 s, the one being written included
    (done,) = outputs.named("file_completed")
    playlist = outputs.stored(done.args["target"])
    text = playlist.read_text()
    assert "#EXT-X-ENDLIST" in text and "#EXT-X-PLAYLIST-TYPE:VOD" in text
    rb = read_back(playlist)
    assert 7.0 - 2.5 <= rb.duration <= 7.5
    assert colour_distance(median_rgb(rb.middle_frame), ORANGE) < 25
    journal = SpoolJournal(tmp_path / "spool" / REF.job_id)
    assert {r.path for r in journal.entries() if isinstance(r, PartCompleted)} <= {
        p.args["path"].as_posix() for p in parts
    }


async def test_a_job_that_does_not_resume_still_gets_its_record_over(tmp_path: Path) -> None:
    old = OldServer(tmp_path / "spool", plan(tmp_path / "spool"), 2.0)
    old.dies()
    supervisor, outputs = new_server(tmp_path)
    await supervisor.recover(lock_timeout=30)
    await supervisor.stop(REF.job_id)  # the job service stops it: its media did not come back
    (over,) = outputs.named("job_over")
    assert over.args["job"] == REF
    assert not (tmp_path / "spool" / REF.job_id / JOURNAL).exists()
    await supervisor.stop(REF.job_id)
    assert len(outputs.named("job_over")) == 1


async def test_a_node_back_after_another_node_stopped_its_job_reports_the_files_then_the_end(tmp_path: Path) -> None:
    """A cluster's node killed with its worker; a live node stopped the job meanwhile (IDLE_TIMEOUT). Back,
    the node stores and reports the journaled file, then the job's end, and forgets the job."""
    old = OldServer(tmp_path / "spool", plan(tmp_path / "spool"), 4.0)
    old.dies_with_worker()
    supervisor, outputs = new_server(tmp_path)
    outputs.stopped_jobs.add(REF.job_id)
    assert await supervisor.recover() == 1
    assert [c.name for c in outputs.calls] == ["file_completed", "job_over"]
    assert outputs.named("job_over")[0].args["job"] == REF
    assert not (tmp_path / "spool" / REF.job_id / JOURNAL).exists()
    again, outputs_again = new_server(tmp_path)  # nothing is reported twice
    outputs_again.stopped_jobs.add(REF.job_id)
    assert await again.recover() == 0
    assert outputs_again.calls == []
