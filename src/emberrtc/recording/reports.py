"""What a recording worker tells its supervisor: one JSON object per line on the worker's stdout.

Every line has ``"type"`` (the names below) and the fields of its dataclass. Times are epoch seconds
(UTC); durations are seconds of recorded media.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Ready:
    """The worker is receiving: RTP ports per stream (``video``, ``audio``) on loopback."""

    ports: dict[str, int]
    pid: int


@dataclass(frozen=True)
class FileStarted:
    """A file was opened (``RECORD_NEW_FILE_START``). ``file_id`` is unique per job."""

    file_id: str
    record_format: str  # MP4 | HLS
    path: str  # the file in the spool (for HLS: the playlist)
    location: str  # obs_addr.location and bucket of the rule the file was started with
    bucket: str
    object_name: str
    start_time: float
    # As in FileCompleted (fixed for the file's life): lets a file salvaged after a crash be counted right.
    transcoded: bool = False


@dataclass(frozen=True)
class PartCompleted:
    """A finished piece of a file that is still open (an HLS segment), ready to upload."""

    file_id: str
    path: str
    location: str
    bucket: str
    object_name: str


@dataclass(frozen=True)
class FileCompleted:
    """A file is complete in the spool (``RECORD_FILE_COMPLETE`` once stored)."""

    file_id: str
    record_format: str
    path: str
    location: str
    bucket: str
    object_name: str
    start_time: float
    end_time: float
    duration: float  # seconds of media in the file (interruptions merged into it are not counted)
    width: int | None
    height: int | None
    # The file's video was re-encoded (VP8, or H.264 above the cap) rather than passed through; False for
    # audio-only files. Usage accounting counts these seconds as transcoded. Absent in older lines: False.
    transcoded: bool = False


@dataclass(frozen=True)
class MediaState:
    """``recording``: media is being written; ``idle``: no packets for ``Timing.idle_after`` seconds."""

    state: str
    description: str


@dataclass(frozen=True)
class KeyframeRequest:
    """Ask the publisher for a keyframe (the supervisor maps this to Janus). ``stream``: which input of a
    mixed job (``MixStream.key``, ``user/camera/video``); empty for a single-stream job's one input."""

    reason: str
    stream: str = ""


@dataclass(frozen=True)
class Progress:
    """Packets taken so far, and the recording time reached (flow control for fast feeds)."""

    packets: int
    media_time: float


@dataclass(frozen=True)
class PushState:
    """An RTMP push (spec 4.4 ``publish_param.rtmp_urls``, ``recording.rtmp``) changed state: ``connected``;
    ``retrying`` (an attempt failed or the connection broke: ``detail`` says why, e.g. "Connection
    refused"; ``attempt`` failed attempts in a row, the next in ``retry_in`` seconds); ``stopped`` (the URL
    left the plan, or the job ended). ``url`` is masked (no credentials, query or stream key:
    ``rtmp://host/app/***``); ``target`` tells apart URLs that mask alike."""

    target: str
    url: str
    state: str
    detail: str
    attempt: int = 0
    retry_in: float | None = None


@dataclass(frozen=True)
class WorkerError:
    """Something went wrong; ``fatal``: the worker is ending because of it."""

    reason: str
    fatal: bool


@dataclass(frozen=True)
class Behind:
    """The worker reads its media ``seconds`` after it arrived (0: it keeps up again): the machine does not
    keep up with the job, whose output falls behind the room and loses what the socket cannot hold."""

    seconds: float


@dataclass(frozen=True)
class Exited:
    """The worker's last line: every file is closed and reported."""

    reason: str


Report = (
    Ready
    | FileStarted
    | PartCompleted
    | FileCompleted
    | MediaState
    | KeyframeRequest
    | Progress
    | PushState
    | WorkerError
    | Behind
    | Exited
)

_TYPES: dict[str, type[Any]] = {
    "ready": Ready,
    "file_started": FileStarted,
    "part_completed": PartCompleted,
    "file_completed": FileCompleted,
    "media_state": MediaState,
    "keyframe_request": KeyframeRequest,
    "progress": Progress,
    "push_state": PushState,
    "error": WorkerError,
    "behind": Behind,
    "exited": Exited,
}
_NAMES = {cls: name for name, cls in _TYPES.items()}


def encode(report: Report) -> str:
    return json.dumps({"type": _NAMES[type(report)], **dataclasses.asdict(report)}, separators=(",", ":"))


def decode(line: str | bytes) -> Report:
    """Parse one line; ``ValueError`` for anything that is not a report."""
    data = json.loads(line)
    if not isinstance(data, dict):
        raise ValueError("a report is a JSON object")
    cls = _TYPES.get(data.pop("type", None))
    if cls is None:
        raise ValueError("unknown report type")
    try:
        report: Report = cls(**data)
    except TypeError as exc:
        raise ValueError(f"bad report fields: {exc}") from exc
    return report
