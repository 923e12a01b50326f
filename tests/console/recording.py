"""A real recording file behind a real job, for the console's Jobs and Recordings pages.

The job is started through the API (without a media plane it stops at once, saying why); the file is an
H.264 MP4 of the synthetic colour picture written with PyAV into the server's spool and reported to the
server's own recording outputs (``RecordingOutputs.file_completed``), as a recording worker reports it:
the uploader stores it in the local storage location and the usage is counted. The console then finds
it as it would find any recording.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import httpx

from emberrtc.recording.outputs import FileTarget, JobRef
from emberrtc.synthetic import ColourVideo
from tests.support.server import ServerThread

BUCKET = "recordings"


@dataclass(frozen=True)
class StoredFile:
    job_id: str
    object_name: str
    seconds: float
    size: int


def write_mp4(path: Path, seconds: float, rgb: tuple[int, int, int] = (30, 60, 220)) -> None:
    source = ColourVideo(rgb, width=320, height=180, fps=15)
    with av.open(str(path), "w", format="mp4", options={"movflags": "+faststart"}) as out:
        stream = out.add_stream("libx264", rate=15, options={"preset": "ultrafast", "g": "15"})
        stream.width, stream.height, stream.pix_fmt = 320, 180, "yuv420p"
        for n in range(int(seconds * 15)):
            frame = source.frame(n)
            frame.pts, frame.time_base = n, Fraction(1, 15)
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)


def record_file(
    server: ServerThread, api: httpx.Client, app_id: str, project_id: str, seconds: float = 4.0
) -> StoredFile:
    """A job of ``app_id`` with one stored MP4 file of ``seconds``."""
    rule = api.post(
        f"/v2/apps/{app_id}/record-rules",
        json={
            "obs_addr": {"location": "cn-north-4", "project_id": project_id, "bucket": BUCKET},
            "record_formats": ["MP4"],
            "mp4_config": {"record_cycle": 60},
        },
    ).json()
    job = api.post(
        f"/v2/apps/{app_id}/individual-stream-jobs",
        json={"room_id": "room1", "user_id": "alice", "record_param": {"record_rule_id": rule["rule_id"]}},
    )
    assert job.status_code == 201, job.text
    job_id, stream = job.json()["job_id"], job.json()["stream_name"]
    assert server.services is not None
    outputs = server.services.outputs
    path = outputs.spool.path_for(job_id, "file.mp4")
    write_mp4(path, seconds)
    size = path.stat().st_size
    object_name = f"{app_id}/MP4/{stream}/{stream}.mp4"
    end = time.time()
    server.call(
        outputs.file_completed(
            JobRef(app_id, job_id, "room1", stream),
            record_format="MP4",
            path=path,
            target=FileTarget("cn-north-4", BUCKET, object_name),
            start_time=end - seconds,
            end_time=end,
            width=320,
            height=180,
            transcoded=False,
        )
    )
    return StoredFile(job_id, object_name, seconds, size)
