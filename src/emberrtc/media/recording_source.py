"""The recording engine's :class:`~emberrtc.recording.source.MediaSource` over the Janus media plane.

For a single-stream job, :class:`PlaneMediaSource` forwards the job's user's stream (``video_type``:
``CAMERASTREAM`` -> camera, ``SCREENSTREAM`` -> screen) with Janus ``rtp_forward``: its video to the
engine's video port, its audio (when the engine bound an audio port, i.e. ``is_record_audio``) to the
audio port. Keyframes are asked of the publisher's handle (``configure`` ``keyframe``).

When the user publishes that stream again (a new Janus feed: after an unpublish, a reconnect or a Janus
restart), the plane reports the new live feed and the job is forwarded again to the same ports; if the
codecs differ, the engine is told first (``source_changed``), so the new worker expects the new codecs.

For a mixed-stream job, :meth:`PlaneMediaSource.forward_mix` forwards every live stream of the room
(camera and screen video, unless the job is audio only, and audio) to the job's one port, each with an SSRC
of its own (counting up from :data:`MIX_SSRC_BASE` per job), and keeps doing so: a stream that goes live
in the room is forwarded, one that ends is dropped (its forwarders end with its Janus publisher), and the
engine is told the room's streams each time (``streams_changed``). A re-publish is an end and a new
stream, whatever its codec; the job goes on. Tracks of other codecs than H.264, VP8 and Opus are left out
(logged). Users are ordered by when the job first saw them, in the room's join order.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any, Protocol

from emberrtc.domain.errors import RecordingFault
from emberrtc.domain.ports import JobSpec
from emberrtc.recording.plan import H264, OPUS, VP8, MixStream, SourceFormat
from emberrtc.recording.source import ForwardTarget, MixTarget

from .janus_client import JanusClientError, RtpForwardStream
from .plane import VIDEO_TYPES, Feed, JanusMediaPlane, MediaPlaneError, StreamKind

log = logging.getLogger(__name__)

DEFAULT_VIDEO_TYPE = "CAMERASTREAM"  # spec Table 4-26
MIX_SSRC_BASE = 0x4D490000  # "MI": SSRCs of a mixed job's streams count up from here
_MIXABLE = {"video": (H264, VP8), "audio": (OPUS,)}


class SourceChanges(Protocol):
    """The part of ``recording.supervisor.RecordingSupervisor`` told about re-published streams."""

    async def source_changed(self, job_id: str, fmt: SourceFormat) -> None: ...

    async def streams_changed(self, job_id: str, streams: tuple[MixStream, ...]) -> None: ...


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


@dataclass(eq=False)
class _MixFeed:
    feed: Feed
    streams: tuple[MixStream, ...]
    stream_ids: list[int] = field(default_factory=list)


@dataclass(eq=False)
class _MixForward:
    """A mixed job's forwarding: every live feed of its room."""

    job: JobSpec
    target: MixTarget
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    feeds: dict[str, _MixFeed] = field(default_factory=dict)  # by feed ID
    orders: dict[str, int] = field(default_factory=dict)  # user -> join order as the job saw it
    next_ssrc: int = MIX_SSRC_BASE

    def in_room(self, feed: Feed) -> bool:
        app_id, _, room_id = feed.janus_room.partition("/")
        return (app_id, room_id) == (self.job.app_id, self.job.room_id)

    @property
    def streams(self) -> tuple[MixStream, ...]:
        return tuple(s for f in self.feeds.values() for s in f.streams)


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
        self._mixes: dict[str, _MixForward] = {}
        self._changes: SourceChanges | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        plane.feed_listeners.append(self._on_feed_live)
        plane.feed_ended_listeners.append(self._on_feed_ended)

    def attach(self, engine: SourceChanges) -> None:
        """Connect the engine (built after this source, which it needs) for ``source_changed``."""
        self._changes = engine

    async def close(self) -> None:
        """Stop re-forwarding work in progress (server shutdown)."""
        if self._on_feed_live in self._plane.feed_listeners:
            self._plane.feed_listeners.remove(self._on_feed_live)
        if self._on_feed_ended in self._plane.feed_ended_listeners:
            self._plane.feed_ended_listeners.remove(self._on_feed_ended)
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError):
                await task

    # --- MediaSource -------------------------------------------------------------------------------------------

    async def forward(self, job: JobSpec, target: ForwardTarget) -> SourceFormat:
        if job.kind != "individual" or job.user_id is None:
            raise RecordingFault(f"a {job.kind} job is not a single-stream job (mixed jobs use forward_mix)")
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

    async def forward_mix(self, job: JobSpec, target: MixTarget) -> tuple[MixStream, ...]:
        if job.kind != "mix":
            raise RecordingFault(f"a {job.kind} job is not a mixed-stream job")
        await self.stop_forward(job.job_id)
        mix = _MixForward(job, target)
        self._mixes[job.job_id] = mix
        try:
            async with mix.lock:
                joined = self._plane.participants(job.app_id, job.room_id)
                feeds = self._plane.feeds(job.app_id, job.room_id)
                rank = {user: i for i, user in enumerate(joined)}
                for feed in sorted(feeds, key=lambda f: (rank.get(f.user_id, len(rank)), str(f.stream))):
                    await self._mix_add(mix, feed)
                return mix.streams
        except BaseException:
            if self._mixes.get(job.job_id) is mix:
                del self._mixes[job.job_id]
            async with mix.lock:
                await self._mix_stop_all(mix)
            raise

    async def request_keyframe(self, job_id: str, stream: str = "") -> None:
        mix = self._mixes.get(job_id)
        if mix is not None:
            user_id, _, rest = stream.partition("/")
            kind = rest.partition("/")[0]
            for f in list(mix.feeds.values()):
                if f.feed.user_id == user_id and str(f.feed.stream) == kind:
                    await self._plane.request_keyframe(f.feed)
            return
        fwd = self._jobs.get(job_id)
        feed = fwd.feed if fwd is not None else None
        if feed is not None:
            await self._plane.request_keyframe(feed)

    async def stop_forward(self, job_id: str) -> None:
        mix = self._mixes.pop(job_id, None)
        if mix is not None:
            async with mix.lock:
                await self._mix_stop_all(mix)
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

    # --- mixed jobs -------------------------------------------------------------------------------------------

    async def _mix_add(self, mix: _MixForward, feed: Feed) -> None:
        """Forward one feed's mixable tracks to the job's port, each with a new SSRC."""
        order = mix.orders.setdefault(feed.user_id, len(mix.orders))
        forwards: list[RtpForwardStream] = []
        streams: list[MixStream] = []
        for track in feed.tracks:
            kind, codec, mid = str(track.get("type")), str(track.get("codec") or "").upper(), track.get("mid")
            if mid is None or kind not in _MIXABLE or (kind == "video" and not mix.target.video):
                continue
            if codec not in _MIXABLE[kind]:
                log.warning("job %s: %s's %s %s is %s, which cannot be mixed", mix.job.job_id, feed.user_id,
                            feed.stream, kind, codec)  # fmt: skip
                continue
            ssrc = mix.next_ssrc
            mix.next_ssrc = (mix.next_ssrc + 1) % (1 << 32)
            forwards.append(RtpForwardStream(mid=str(mid), port=mix.target.port, ssrc=ssrc))
            streams.append(MixStream(ssrc, feed.user_id, str(feed.stream), kind, codec, order))
        entry = _MixFeed(feed, tuple(streams))
        if forwards:
            entry.stream_ids = await self._plane.rtp_forward(feed, mix.target.host, forwards)
            if any(s.kind == "video" for s in streams):
                # rtp_forward sends no PLI: a keyframe now is decodable by the time the worker reads it.
                await self._plane.request_keyframe(feed)
        mix.feeds[feed.feed_id] = entry
        log.info("job %s: mixing %s (%s)", mix.job.job_id, feed.feed_id, ", ".join(s.key for s in streams))

    async def _mix_drop(self, mix: _MixForward, feed_id: str) -> None:
        entry = mix.feeds.pop(feed_id, None)
        if entry is None or not entry.stream_ids:
            return
        try:
            await self._plane.stop_rtp_forward(entry.feed, entry.stream_ids)
        except (JanusClientError, MediaPlaneError) as exc:
            log.debug("job %s: stopping forwarders of %s: %s", mix.job.job_id, feed_id, exc)

    async def _mix_stop_all(self, mix: _MixForward) -> None:
        for feed_id in list(mix.feeds):
            await self._mix_drop(mix, feed_id)

    def _on_feed_ended(self, feed: Feed) -> None:
        for mix in list(self._mixes.values()):
            if mix.in_room(feed):
                self._spawn(self._mix_change(mix, ended=feed), f"mix-drop-{mix.job.job_id}")

    async def _mix_change(self, mix: _MixForward, *, live: Feed | None = None, ended: Feed | None = None) -> None:
        job_id = mix.job.job_id
        try:
            async with mix.lock:
                if self._mixes.get(job_id) is not mix:
                    return
                before = mix.streams
                if ended is not None:
                    # Gone with its Janus publisher: its forwarders went too.
                    mix.feeds.pop(ended.feed_id, None)
                if live is not None and live.feed_id not in mix.feeds:
                    for old in [
                        f for f in mix.feeds.values() if (f.feed.user_id, f.feed.stream) == (live.user_id, live.stream)
                    ]:
                        await self._mix_drop(mix, old.feed.feed_id)  # re-published before the end was seen
                    await self._mix_add(mix, live)
                streams = mix.streams
                if streams != before and self._changes is not None:
                    # Under the lock: two changes at once reach the engine in the order they were made.
                    await self._changes.streams_changed(job_id, streams)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("job %s: following the room's streams failed", job_id)

    def _spawn(self, coro: Coroutine[Any, Any, None], name: str) -> None:
        task = asyncio.create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _on_feed_live(self, feed: Feed) -> None:
        for mix in list(self._mixes.values()):
            if mix.in_room(feed) and feed.feed_id not in mix.feeds:
                self._spawn(self._mix_change(mix, live=feed), f"mix-add-{mix.job.job_id}")
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
