"""A mixed job's live preview: a small JPEG of the composite, rewritten every few seconds in the job's spool.

The console's Jobs page shows it (``GET /console/apps/{app_id}/jobs/{job_id}/preview.jpg``): read by the
node whose worker writes it (:class:`LocalPreviews`), and in a cluster fetched from that node by any other
(``cluster.room_control.RoutedPreviews``). Cheap by construction: once per :data:`PREVIEW_INTERVAL` of output time the
canvas the compositor already made is scaled down to :data:`PREVIEW_WIDTH` pixels wide (one reused swscale
context, area averaging) and encoded as a JPEG: measured 1.0 ms for a 1280x720 canvas, 1.6 ms for 1920x1080
(noise, the worst case for the encoder), every two seconds, against a compose and an H.264 encode every
frame. It runs in the worker's loop, as the recording's own writers do (they write far more there than a
file of about 15 KB every 2 s). The file is written beside itself and renamed over the previous one, so a
reader sees a whole picture or the one before, never half of one. It is a dot file, like the spool's
other marks: never taken for a recording.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path

import av
from av.video.reformatter import ColorRange, Interpolation, VideoReformatter

log = logging.getLogger(__name__)

#: The preview's name in the job's spool folder.
PREVIEW = ".preview.jpg"
#: Seconds of output between two previews.
PREVIEW_INTERVAL = 2.0
#: The preview's width in pixels (the height keeps the canvas's ratio, even).
PREVIEW_WIDTH = 320
#: A preview older than this is not shown: the output has stopped (nobody publishes, a worker restarts).
MAX_AGE = 5 * PREVIEW_INTERVAL
_QUALITY = 5  # MJPEG qscale (2 best .. 31 worst): a small file that still shows who is where


class PreviewWriter:
    """Writes ``spool/.preview.jpg`` from composed canvases, at most once per ``interval`` seconds."""

    def __init__(
        self, spool: Path, canvas_width: int, canvas_height: int, *, interval: float = PREVIEW_INTERVAL
    ) -> None:
        self.path = spool / PREVIEW
        self.interval = interval
        self.width = min(PREVIEW_WIDTH, canvas_width) & ~1
        self.height = max(2, round(canvas_height * self.width / canvas_width) & ~1)
        self._scaler = VideoReformatter()
        encoder = av.CodecContext.create("mjpeg", "w")
        assert isinstance(encoder, av.VideoCodecContext)
        encoder.width, encoder.height = self.width, self.height
        encoder.pix_fmt = "yuvj420p"  # JPEG's full-range YUV
        encoder.time_base = Fraction(1, 1)
        encoder.qmin = encoder.qmax = _QUALITY
        encoder.open()
        self._encoder = encoder
        self._last: float | None = None
        self.written = 0
        self.failed = False

    def offer(self, canvas: av.VideoFrame, t: float) -> bool:
        """A composed canvas at output instant ``t`` (seconds); written when the last preview is
        ``interval`` old. True when written. A failure is logged once and ends the previews, not the job."""
        if self.failed or (self._last is not None and t - self._last < self.interval):
            return False
        self._last = t
        try:
            small = self._scaler.reformat(
                canvas,
                width=self.width,
                height=self.height,
                format="yuvj420p",
                interpolation=Interpolation.AREA,
                src_color_range=ColorRange.MPEG,
                dst_color_range=ColorRange.JPEG,
            )
            small.pts, small.time_base = self.written, self._encoder.time_base  # (PyAV rescales otherwise)
            data = b"".join(bytes(p) for p in self._encoder.encode(small))
            tmp = self.path.with_name(self.path.name + ".tmp")
            tmp.write_bytes(data)
            os.replace(tmp, self.path)
        except (OSError, av.FFmpegError, ValueError) as exc:
            log.error("the mix preview cannot be written, no more previews for this job: %s", exc)
            self.failed = True
            return False
        self.written += 1
        return True

    def remove(self) -> None:
        """The job's output ended: no preview is left to be taken for a live one."""
        with contextlib.suppress(OSError):
            self.path.unlink()


def read_preview(spool: Path, now: float, max_age: float = MAX_AGE) -> bytes | None:
    """The job's preview if one was written within ``max_age`` seconds of ``now`` (wall clock, as the file's
    modification time); None when there is none, or only an old one."""
    path = spool / PREVIEW
    try:
        if now - path.stat().st_mtime > max_age:
            return None
        return path.read_bytes()
    except OSError:
        return None


class LocalPreviews:
    """The previews of the jobs this node's workers compose (``read``: ``RecordingSupervisor.preview``;
    None: this node records nothing)."""

    across_nodes = False

    def __init__(self, read: Callable[[str, str, str], bytes | None] | None) -> None:
        self._read = read

    async def get(self, app_id: str, room_id: str, job_id: str) -> bytes | None:
        if self._read is None:
            return None
        return await asyncio.to_thread(self._read, app_id, room_id, job_id)
