"""The recording engine's :class:`~emberrtc.recording.source.MediaSource` over the Janus media plane.

For a single-stream job, :class:`PlaneMediaSource` forwards the job's user's stream (``video_type``:
``CAMERASTREAM`` -> camera, ``SCREENSTREAM`` -> screen) with Janus ``rtp_forward``: its video to the
engine's video port, its audio (when the engine bound an audio port, i.e. ``is_record_audio``) to the
audio port. Keyframes are asked of the publisher's handle (``configure`` ``keyframe``).

When the user publishes that stream again (a new Janus feed: after an unpublish, a reconnect or a Janus
restart), the plane reports the new live feed and the job is forwarded again to the same ports; if the
codecs differ, the engine is told first (``source_changed``), so the new worker expects the new codecs.

Mix jobs are refused with a clear error: the engine records single streams only, for now.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field
from typing import Protocol

from emberrtc.domain.errors import RecordingFault
from emberrtc.domain.ports import JobSpec
from emberrtc.recording.plan import SourceFormat
from emberrtc.recording.source import ForwardTarget

from .janus_client import JanusClientError, RtpForwardStream
from .plane import VIDEO_TYPES, Feed, JanusMediaPlane, MediaPlaneError, StreamKind

log = logging.getLogger(__name__)

DEFAULT_VIDEO_TYPE = "CAMERASTREAM"  # spec Table 4-26


class SourceChanges(Protocol):
    """The part of ``recording.supervisor.RecordingSupervisor`` told about re-published streams."""

    async def source_changed(self, job_id: str, fmt: SourceFormat) -> None: ...


@dataclass(eq=False)
class _Forward:
    job: JobSpec
    user_id: str
    kind: StreamKind
    target: ForwardTarget
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    feed: Feed | None = None
    stream_ids: list[int] = field(default_factory=list)
    fmt: SourceFormat | None = None

    def wants(self, feed: Feed) -> bool:
        app_id, _, room_id = feed.janus_room.partition("/")
        return (
            (app_id, room_id) == (self.job.app_id, self.job.room_id)
            and feed.user_id == self.user_id
            and feed.stream == self.kind
        )


def source_format(feed: Feed, target: ForwardTarget) -> SourceFormat:
    """The codecs forwarded from ``feed`` to ``target`` (upper case, as the recording plan expects)."""
    video = _track(feed, "video") if target.video_port else None
    audio = _track(feed, "audio") if target.audio_port else None
    return SourceFormat(
        str(video["codec"]).upper() if video and video.get("codec") else None,
        str(audio["codec"]).upper() if audio and audio.get("codec") else None,
    )


def _track(feed: Feed, kind: str) -> dict[str, object] | None:
    return next((t for t in feed.tracks if t.get("type") == kind and t.get("mid") is not None), None)


class PlaneMediaSource:
    """``MediaSource`` for the recording engine, over a :class:`JanusMediaPlane` (module docstring)."""

    def __init__(self, plane: JanusMediaPlane) -> None:
        self._plane = plane
        self._jobs: dict[str, _Forward] = {}
        self._changes: SourceChanges | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        plane.feed_listeners.append(self._on_feed_live)

    def attach(self, engine: SourceChanges) -> None:
        """Connect the engine (built after this source, which it needs) for ``source_changed``."""
        self._changes = engine

    async def close(self) -> None:
        """Stop re-forwarding work in progress (server shutdown)."""
        if self._on_feed_live in self._plane.feed_listeners:
            self._plane.feed_listeners.remove(self._on_feed_live)
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError):
                await task

    # --- MediaSource -------------------------------------------------------------------------------------------

    async def forward(self, job: JobSpec, target: ForwardTarget) -> SourceFormat:
        if job.kind != "individual" or job.user_id is None:
            raise RecordingFault(f"{job.kind} jobs are not recorded yet: only single-stream jobs are")
        video_type = job.params.get("video_type") or DEFAULT_VIDEO_TYPE
        kind = VIDEO_TYPES.get(video_type)
        if kind is None:
            raise RecordingFault(f"unknown video_type {video_type!r}")
        if job.job_id in self._jobs:
            await self.stop_forward(job.job_id)
        fwd = _Forward(job, job.user_id, kind, target)
        self._jobs[job.job_id] = fwd
        try:
            async with fwd.lock:
                feed = self._plane.live_feed(job.app_id, job.room_id, job.user_id, kind)
                if feed is None:
                    raise RecordingFault(f"user {job.user_id} publishes no {video_type} in room {job.room_id}")
                fmt = source_format(feed, target)
                await self._start(fwd, feed, fmt)
                return fmt
        except BaseException:
            if self._jobs.get(job.job_id) is fwd:
                del self._jobs[job.job_id]
            raise

    async def request_keyframe(self, job_id: str) -> None:
        fwd = self._jobs.get(job_id)
        feed = fwd.feed if fwd is not None else None
        if feed is not None:
            await self._plane.request_keyframe(feed)

    async def stop_forward(self, job_id: str) -> None:
        fwd = self._jobs.pop(job_id, None)
        if fwd is None:
            return
        async with fwd.lock:
            await self._stop(fwd)

    # --- internals ------------------------------------------------------------------------------------------------

    async def _start(self, fwd: _Forward, feed: Feed, fmt: SourceFormat) -> None:
        streams: list[RtpForwardStream] = []
        for kind, port, codec in (
            ("video", fwd.target.video_port, fmt.video_codec),
            ("audio", fwd.target.audio_port, fmt.audio_codec),
        ):
            track = _track(feed, kind)
            if port and codec and track is not None:
                streams.append(RtpForwardStream(mid=str(track["mid"]), port=port))
        if not streams:
            raise RecordingFault(f"user {fwd.user_id}'s {fwd.kind} stream has no track to record")
        fwd.stream_ids = await self._plane.rtp_forward(feed, fwd.target.host, streams)
        fwd.feed, fwd.fmt = feed, fmt
        log.info("job %s: forwarding %s (%s) to %s", fwd.job.job_id, feed.feed_id, fmt, fwd.target)

    async def _stop(self, fwd: _Forward) -> None:
        feed, ids = fwd.feed, fwd.stream_ids
        fwd.feed, fwd.stream_ids = None, []
        if feed is None or not ids:
            return
        try:
            await self._plane.stop_rtp_forward(feed, ids)
        except (JanusClientError, MediaPlaneError) as exc:
            log.debug("job %s: stopping forwarders: %s", fwd.job.job_id, exc)

    def _on_feed_live(self, feed: Feed) -> None:
        for fwd in list(self._jobs.values()):
            if fwd.wants(feed) and (fwd.feed is None or fwd.feed.feed_id != feed.feed_id):
                task = asyncio.create_task(self._reforward(fwd, feed), name=f"reforward-{fwd.job.job_id}")
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)

    async def _reforward(self, fwd: _Forward, feed: Feed) -> None:
        job_id = fwd.job.job_id
        try:
            async with fwd.lock:
                if self._jobs.get(job_id) is not fwd or (fwd.feed is not None and fwd.feed.feed_id == feed.feed_id):
                    return
                await self._stop(fwd)  # the old feed's forwarders, if it is still there
                fmt = source_format(feed, fwd.target)
                if fmt != fwd.fmt and self._changes is not None:
                    # Before any RTP of the new codecs arrives: the engine starts a worker expecting them.
                    await self._changes.source_changed(job_id, fmt)
                await self._start(fwd, feed, fmt)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("job %s: forwarding the re-published stream %s failed", job_id, feed.feed_id)
