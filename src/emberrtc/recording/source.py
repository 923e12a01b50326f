"""What the recording engine needs from the media plane: RTP of one user's stream, and keyframes.

The Janus adapter (``media/``) implements :class:`MediaSource`; the engine knows nothing of Janus. For
a single-stream job the implementation is expected to:

- ``forward``: find the job's user in the job's room and the stream ``job.params["video_type"]`` names
  (default ``CAMERASTREAM``), and ``rtp_forward`` its video (when ``target.video_port``) and its audio
  (when ``target.audio_port``) to ``target.host`` (loopback), one port per stream; return the codecs it
  forwards (``SourceFormat("H264" | "VP8" | None, "OPUS" | None)``). The ports are bound by the engine
  and stay the same for the whole job: when the user re-publishes (a new Janus publisher), forward
  again to the same ports, and call :meth:`RecordingSupervisor.source_changed
  <emberrtc.recording.supervisor.RecordingSupervisor.source_changed>` if the codecs differ. Raise an
  ``EmberError`` when the stream is not there.
- ``request_keyframe``: ask the publisher for a keyframe. Janus's ``rtp_forward`` (``streams`` syntax)
  sends no PLI of its own: use ``configure`` with ``"keyframe": true`` on the publisher's handle.
  The engine calls it when a recording starts, when a file or HLS segment is about to be cut, and after
  loss; it rate-limits its own calls (about one a second at most per job).
- ``stop_forward``: stop the job's forwarders (``stop_rtp_forward``); a no-op if there are none.

For a mixed-stream job (spec 4.8):

- ``forward_mix``: forward every stream of the job's room (each publisher's camera and screen video,
  unless ``target.video`` is False for ``audio_only``, and their audio) to the one ``target.port``,
  rewriting each stream's SSRC to one unique within the job (Janus ``rtp_forward`` ``ssrc``); return what
  goes where (``MixStream``: SSRC, user, publication, kind, codec, the user's join order). Streams of
  codecs that cannot be mixed are left out. From then on, as publishers join, leave or re-publish (a new
  codec included), forward the new streams the same way and call :meth:`RecordingSupervisor.streams_changed
  <emberrtc.recording.supervisor.RecordingSupervisor.streams_changed>` with the room's streams.
- ``request_keyframe`` with ``stream`` (a ``MixStream.key``): ask that stream's publisher.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from emberrtc.domain.ports import JobSpec
from emberrtc.recording.plan import MixStream, SourceFormat


@dataclass(frozen=True)
class ForwardTarget:
    """Where to send a job's RTP: loopback ports bound by the engine (None: that stream is not wanted)."""

    host: str
    video_port: int | None
    audio_port: int | None


@dataclass(frozen=True)
class MixTarget:
    """Where to send a mixed job's RTP: every stream to one loopback port; video too, unless audio only."""

    host: str
    port: int
    video: bool = True


class MediaSource(Protocol):
    async def forward(self, job: JobSpec, target: ForwardTarget) -> SourceFormat:
        """Start forwarding the job's stream to ``target``; the codecs forwarded."""
        ...

    async def forward_mix(self, job: JobSpec, target: MixTarget) -> tuple[MixStream, ...]:
        """Start forwarding every stream of the mixed job's room to ``target``; the streams forwarded."""
        ...

    async def request_keyframe(self, job_id: str, stream: str = "") -> None:
        """Ask the job's publisher (a mixed job: the publisher of ``stream``) for a keyframe (PLI / Janus
        ``configure`` ``keyframe``)."""
        ...

    async def stop_forward(self, job_id: str) -> None:
        """Stop forwarding the job's stream."""
        ...
