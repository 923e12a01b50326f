"""What the domain needs from the media plane and the recording engine.

The control plane drives jobs through these interfaces; the media-plane and recording issues provide
real implementations. Until they are wired in, ``NoMediaPlane`` reports (truthfully) that no room is
running, so jobs wait in ``INIT`` and stop after ``max_idle_time`` as the spec describes, and
``UnavailableRecordingEngine`` refuses to record with an honest error.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from emberrtc.domain.errors import RecordingFault


@dataclass(frozen=True)
class JobSpec:
    """Everything a recording engine needs to run one job (the job's frozen plan inputs)."""

    job_id: str
    app_id: str
    kind: str  # "individual" | "mix"
    room_id: str
    user_id: str | None
    stream_name: str
    params: dict[str, Any]
    record_rule: dict[str, Any] | None
    #: The project of the app's tenant: whose buckets the files go to (a local location keeps each
    #: project's buckets apart; the rule's ``obs_addr.project_id`` is the same, checked when it was saved).
    project_id: str | None = None


class MediaPlane(Protocol):
    async def has_stream(self, app_id: str, room_id: str, user_id: str | None, video_type: str | None) -> bool:
        """Is there media to record: the user's stream (``user_id`` given) or any publisher in the room?"""

    def live_rooms(self) -> set[tuple[str, str]]:
        """``(app_id, room_id)`` of every room with a live stream here (on this node)."""

    async def remove_users(self, app_id: str, room_id: str, user_ids: list[str]) -> None:
        """Disconnect the named users (spec 4.7.1)."""

    async def dismiss(self, app_id: str, room_id: str) -> bool:
        """Disconnect everyone and close the room; False when the room is not running (spec 4.7.2)."""


class RecordingEngine(Protocol):
    async def start(self, job: JobSpec) -> None:
        """Begin recording; the engine reports progress through ``JobService.mark_running``/``mark_stopped``."""

    async def update(self, job: JobSpec) -> None:
        """Apply changed parameters (new rule for the next file, new layout, new RTMP URLs)."""

    async def stop(self, job_id: str) -> None:
        """Stop recording and finish the files."""


class JobNodes(Protocol):
    """In a cluster: the node hosting a job's room, which records it, applies a change made elsewhere."""

    async def job_changed(self, app_id: str, room_id: str, job_id: str) -> bool:
        """Have the room's node apply the job's change (start, new parameters, stop) now; False when the
        room is this node's or no node's (the caller applies it here)."""


class MixPreviews(Protocol):
    """A running mixed job's live preview (a small JPEG of its composite), from the node that composes it."""

    #: Can a picture composed on another node be had through this one (a cluster node)?
    across_nodes: bool

    async def get(self, app_id: str, room_id: str, job_id: str) -> bytes | None:
        """The job's newest preview, or None: no worker composes it now (where this node can ask)."""


class NoMediaPlane:
    """No media plane is attached: no room runs, so there is nobody to remove and nothing to dismiss."""

    async def has_stream(self, app_id: str, room_id: str, user_id: str | None, video_type: str | None) -> bool:
        return False

    def live_rooms(self) -> set[tuple[str, str]]:
        return set()

    async def remove_users(self, app_id: str, room_id: str, user_ids: list[str]) -> None:
        return None

    async def dismiss(self, app_id: str, room_id: str) -> bool:
        return False


class UnavailableRecordingEngine:
    """Stands in until the recording engine exists: any attempt to record fails loudly, never silently."""

    async def start(self, job: JobSpec) -> None:
        raise RecordingFault("the recording engine is not available in this build")

    async def update(self, job: JobSpec) -> None:
        return None

    async def stop(self, job_id: str) -> None:
        return None
