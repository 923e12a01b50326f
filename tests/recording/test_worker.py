"""The worker process on its own: the command line, the JSON-lines protocol, and its end."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

from emberrtc.recording import reports
from emberrtc.recording.plan import (
    AudioInput,
    Endpoint,
    Mp4Output,
    ObjectNaming,
    RecordingPlan,
    Timing,
    VideoCap,
    VideoInput,
)
from emberrtc.recording.reports import Behind, Exited, FileCompleted, FileStarted, Ready, Report
from emberrtc.recording.worker import JOURNAL, LagWatch
from tests.recording.publisher import Publisher
from tests.recording.readback import read_back


def test_a_worker_records_from_a_plan_file_and_stops_on_command(tmp_path: Path) -> None:
    plan = RecordingPlan(
        job_id="job",
        app_id="app1",
        room_id="room",
        stream_name="st",
        location="local",
        bucket="b",
        spool_dir=str(tmp_path / "spool"),
        video=VideoInput("H264", VideoCap.for_stream_type("SD"), Endpoint("127.0.0.1", 0)),
        audio=AudioInput(endpoint=Endpoint("127.0.0.1", 0)),
        mp4=Mp4Output(ObjectNaming("{stream}", "app1", "st", location="local", bucket="b"), record_cycle=60),
    )
    plan_file = tmp_path / "plan.json"
    plan_file.write_text(plan.to_json())
    worker = subprocess.Popen(
        [sys.executable, "-m", "emberrtc.recording.worker", str(plan_file)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    assert worker.stdin is not None and worker.stdout is not None
    ready = reports.decode(worker.stdout.readline())
    assert isinstance(ready, Ready) and ready.pid == worker.pid and set(ready.ports) == {"video", "audio"}

    # Send a second of media, then wait (on the worker's own reports) until the file has started.
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        for kind, data in Publisher("H264").run(1.0):
            sock.sendto(data, ("127.0.0.1", ready.ports[kind]))
    seen = []
    while not any(isinstance(r, FileStarted) for r in seen):
        seen.append(reports.decode(worker.stdout.readline()))
    worker.stdin.write(json.dumps({"cmd": "stop"}).encode() + b"\n")
    worker.stdin.flush()
    rest = [reports.decode(line) for line in worker.stdout]
    assert worker.wait(timeout=30) == 0
    (done,) = [r for r in rest if isinstance(r, FileCompleted)]
    assert isinstance(rest[-1], Exited) and rest[-1].reason == "stopped"
    assert done.object_name == "st.mp4" and done.path.startswith(str(tmp_path / "spool"))
    assert read_back(done.path).video_codec == "h264"


def test_a_worker_finishes_its_files_when_the_server_goes_away(tmp_path: Path) -> None:
    plan = RecordingPlan(
        job_id="job",
        app_id="app1",
        room_id="room",
        stream_name="st",
        location="local",
        bucket="b",
        spool_dir=str(tmp_path / "spool"),
        video=None,
        audio=AudioInput(endpoint=Endpoint("127.0.0.1", 0)),
        mp4=Mp4Output(ObjectNaming("{stream}", "app1", "st", location="local", bucket="b"), record_cycle=60),
    )
    worker = subprocess.Popen(
        [sys.executable, "-m", "emberrtc.recording.worker", "-"], stdin=subprocess.PIPE, stdout=subprocess.PIPE
    )
    assert worker.stdin is not None and worker.stdout is not None
    worker.stdin.write(plan.to_json().encode() + b"\n")
    worker.stdin.flush()
    ready = reports.decode(worker.stdout.readline())
    assert isinstance(ready, Ready)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        for _, data in Publisher(None).run(1.0):
            sock.sendto(data, ("127.0.0.1", ready.ports["audio"]))
    while not isinstance(reports.decode(worker.stdout.readline()), FileStarted):
        pass
    worker.stdout.close()  # the server is gone: nobody reads
    worker.stdin.close()  # ... and nobody writes
    assert worker.wait(timeout=30) == 0
    # The journal beside the files has every file report, for a restarted server to store what it missed.
    lines = (tmp_path / "spool" / JOURNAL).read_text().splitlines()
    journal = list(map(reports.decode, lines))
    assert [type(r) for r in journal] == [FileStarted, FileCompleted]
    done = journal[1]
    assert isinstance(done, FileCompleted)
    assert read_back(done.path).duration > 0.5


class Reports(list[Report]):
    def __call__(self, report: Report) -> None:
        self.append(report)


def rounds(watch: LagWatch, start: float, seconds: float, lag: float | None, every: float = 0.05) -> float:
    """Rounds of reading every ``every`` s for ``seconds``, each reading datagrams ``lag`` s old (None:
    nothing read); the time after the last."""
    now = start
    while now < start + seconds - 1e-9:
        now += every
        watch.round(now, None if lag is None else now - lag)
    return now


def test_a_worker_that_reads_its_media_late_for_a_while_says_so_and_says_when_it_keeps_up_again() -> None:
    said = Reports()
    watch = LagWatch(Timing(behind=1.0, behind_for=2.0), said, repeat=5.0)
    now = rounds(watch, 0.0, 10.0, 0.05)  # keeping up
    now = rounds(watch, now, 1.5, 3.0)  # a stall of 1.5 s (a disk, a collection): not a lasting lag
    now = rounds(watch, now, 1.0, 0.05)
    assert said == [] and not watch.behind
    now = rounds(watch, now, 2.1, 1.4)  # late for over 2 s
    assert said == [Behind(1.4)] and watch.behind
    now = rounds(watch, now, 5.0, 1.8)  # still late: the figure again after 5 s
    assert said == [Behind(1.4), Behind(1.8)]
    now = rounds(watch, now, 1.0, 0.2)  # within a quarter of the limit, but not yet for 2 s
    now = rounds(watch, now, 0.5, 0.6)  # a little late again: the count starts over
    assert said[-1] == Behind(1.8)
    rounds(watch, now, 2.1, None)  # nothing waits to be read
    assert said == [Behind(1.4), Behind(1.8), Behind(0.0)] and not watch.behind


def test_a_lag_that_rounds_to_nothing_is_still_reported_as_late() -> None:
    said = Reports()
    watch = LagWatch(Timing(behind=0.0, behind_for=0.0), said)
    watch.round(10.0, 9.999)
    watch.round(10.05, None)
    assert said == [Behind(0.01), Behind(0.0)]


def test_behind_reports_go_through_the_protocol() -> None:
    assert reports.decode(reports.encode(Behind(1.25))) == Behind(1.25)
