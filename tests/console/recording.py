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


def write_video(path: Path, seconds: float, rgb: tuple[int, int, int] = (30, 60, 220)) -> None:
    """``seconds`` of the synthetic picture, H.264: an MP4 file, or (``.m3u8``) an HLS playlist with 1 s
    segments named as Ember's writer names them (``{stem}_00000.ts`` beside the playlist)."""
    source = ColourVideo(rgb, width=320, height=180, fps=15)
    if path.suffix == ".m3u8":
        segments = str(path.with_name(f"{path.stem}_%05d.ts"))
        fmt, options = (
            "hls",
            {"hls_time": "1", "hls_list_size": "0", "hls_playlist_type": "vod", "hls_segment_filename": segments},
        )
    else:
        fmt, options = "mp4", {"movflags": "+faststart"}
    with av.open(str(path), "w", format=fmt, options=options) as out:
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
    server: ServerThread, api: httpx.Client, app_id: str, project_id: str, seconds: float = 4.0, fmt: str = "MP4"
) -> StoredFile:
    """A job of ``app_id`` with one stored file of ``seconds``: ``MP4``, or an ``HLS`` playlist whose
    segments are reported first (``store_part``), as a recording worker reports them."""
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
        json={
            "room_id": "room1",
            "user_id": f"user-{fmt.lower()}",
            "record_param": {"record_rule_id": rule["rule_id"]},
        },
    )
    assert job.status_code == 201, job.text
    job_id, stream = job.json()["job_id"], job.json()["stream_name"]
    assert server.services is not None
    outputs = server.services.outputs
    suffix = "m3u8" if fmt == "HLS" else "mp4"
    path = outputs.spool.path_for(job_id, f"{stream}.{suffix}")
    write_video(path, seconds)
    folder = f"{app_id}/{fmt}/{stream}"
    ref = JobRef(app_id, job_id, "room1", stream)
    group = None
    size = path.stat().st_size
    if fmt == "HLS":
        group = f"hls-{job_id}"
        for segment in sorted(path.parent.glob(f"{stream}_*.ts")):
            size += segment.stat().st_size
            target = FileTarget("cn-north-4", BUCKET, f"{folder}/{segment.name}")
            server.call(outputs.store_part(ref, path=segment, target=target, group=group))
    end = time.time()
    server.call(
        outputs.file_completed(
            ref,
            record_format=fmt,
            path=path,
            target=FileTarget("cn-north-4", BUCKET, f"{folder}/{path.name}"),
            start_time=end - seconds,
            end_time=end,
            width=320,
            height=180,
            group=group,
            content_type="application/vnd.apple.mpegurl" if fmt == "HLS" else None,
            transcoded=False,
        )
    )
    return StoredFile(job_id, f"{folder}/{path.name}", seconds, size)
