"""Room management and job operations act on the room's node, whichever node the API call reached
(issue 12, item 4), through :class:`~.room_calls.RoomCalls`.

- :class:`RoutedMediaPlane` is the media plane the room service (spec 4.7: remove users, dismiss) sees: its
  ``remove_users`` and ``dismiss`` run on the node hosting the room, the rest on this node's plane. The
  app is checked where the call arrived (the database is shared); only the room's part travels.
- :class:`RoutedJobs` tells the node hosting a job's room that the job was started, changed or stopped
  through this node (the database holds the change): it starts the job now, gives its recorder the new
  parameters, or stops its recorder, rather than at its next supervisor pass (or, for a change, never).
- :class:`RoutedPreviews` fetches a mixed job's live preview (``recording.mix_preview``) from the node
  hosting its room, whose worker composes it, so that the console shows it on any node.
"""

from __future__ import annotations

import base64
import binascii
import logging
import re
from typing import Any

from emberrtc.domain.errors import InternalError
from emberrtc.domain.job import JobService
from emberrtc.domain.ports import MediaPlane, MixPreviews

from .room_calls import NodeUnreachable, RoomCalls, valid_name

log = logging.getLogger(__name__)

_JOB_ID = re.compile(r"[0-9a-f]{32}")
#: spec 4.7.1 Table 4-200: at most 100 users per call (the API checks it; the host checks it again).
_MAX_USERS = 100

REMOVE_USERS, DISMISS, JOB_CHANGED, MIX_PREVIEW = "remove_users", "dismiss", "job_changed", "mix_preview"
#: The largest preview carried between nodes: as base64 it must fit a call's answer (``MAX_MESSAGE``, 64 KiB).
#: Previews are 320 pixels wide, about 15 KB (``mix_preview``); a larger one is not shown elsewhere.
MAX_PREVIEW = 44 * 1024


class RoutedMediaPlane:
    """``local``, with room management carried to the room's node."""

    def __init__(self, local: MediaPlane, calls: RoomCalls) -> None:
        self.local = local
        self._calls = calls
        calls.handle(REMOVE_USERS, self._remove_users_here)
        calls.handle(DISMISS, self._dismiss_here)

    async def has_stream(self, app_id: str, room_id: str, user_id: str | None, video_type: str | None) -> bool:
        return await self.local.has_stream(app_id, room_id, user_id, video_type)

    def live_rooms(self) -> set[tuple[str, str]]:
        return self.local.live_rooms()

    async def remove_users(self, app_id: str, room_id: str, user_ids: list[str]) -> None:
        await self._calls.run(REMOVE_USERS, app_id, room_id, {"user_ids": list(user_ids)})

    async def dismiss(self, app_id: str, room_id: str) -> bool:
        return bool(await self._calls.run(DISMISS, app_id, room_id, {}))

    async def _remove_users_here(self, app_id: str, room_id: str, args: dict[str, Any]) -> None:
        users = args.get("user_ids")
        if not isinstance(users, list) or len(users) > _MAX_USERS or not all(valid_name(u) for u in users):
            raise InternalError("remove_users: user_ids must be a list of at most 100 user IDs")
        await self.local.remove_users(app_id, room_id, users)

    async def _dismiss_here(self, app_id: str, room_id: str, args: dict[str, Any]) -> bool:
        return await self.local.dismiss(app_id, room_id)


class RoutedJobs:
    """The :class:`~emberrtc.domain.ports.JobNodes` of a cluster node."""

    def __init__(self, jobs: JobService, calls: RoomCalls) -> None:
        self._jobs = jobs
        self._calls = calls
        calls.handle(JOB_CHANGED, self._changed_here)

    async def job_changed(self, app_id: str, room_id: str, job_id: str) -> bool:
        """Have the room's node apply the job's change now. False when that is this node or no node (the
        caller applies it here); True when another node took it. A catalogue error of that node is raised;
        a node that does not answer is logged only: the change is in the database, and its supervisor's
        next pass starts or stops the job (a changed ``record_param`` or layout then waits for its next
        start)."""
        try:
            host = await self._calls.host(app_id, room_id)
        except InternalError as exc:
            log.warning("job %s: %s; the room's node follows at its next pass", job_id, exc.detail)
            return False
        if host is None or host == self._calls.node_id:
            return False
        try:
            await self._calls.call(host, JOB_CHANGED, app_id, room_id, {"job_id": job_id})
        except NodeUnreachable as exc:
            log.warning("job %s: %s; it follows at that node's next pass", job_id, exc.detail)
        return True

    async def _changed_here(self, app_id: str, room_id: str, args: dict[str, Any]) -> None:
        job_id = args.get("job_id")
        if not isinstance(job_id, str) or not _JOB_ID.fullmatch(job_id):
            raise InternalError("job_changed: job_id must be 32 hexadecimal characters")
        await self._jobs.apply_change(app_id, room_id, job_id)


class RoutedPreviews:
    """The :class:`~emberrtc.domain.ports.MixPreviews` of a cluster node: a job's preview is read on the node
    hosting its room (``local`` there), whichever node asks."""

    across_nodes = True

    def __init__(self, local: MixPreviews, calls: RoomCalls) -> None:
        self.local = local
        self._calls = calls
        calls.handle(MIX_PREVIEW, self._here)

    async def get(self, app_id: str, room_id: str, job_id: str) -> bytes | None:
        """The preview from the room's node (this one's when it hosts the room or no node does); a node that
        does not answer in time raises ``NodeUnreachable``."""
        result = await self._calls.run(MIX_PREVIEW, app_id, room_id, {"job_id": job_id})
        if result is None:
            return None
        try:
            if not isinstance(result, str) or len(result) > 4 * MAX_PREVIEW // 3 + 4:
                raise ValueError
            return base64.b64decode(result, validate=True)
        except (ValueError, binascii.Error):
            raise InternalError("the room's node answered a preview that is not one") from None

    async def _here(self, app_id: str, room_id: str, args: dict[str, Any]) -> str | None:
        job_id = args.get("job_id")
        if not isinstance(job_id, str) or not _JOB_ID.fullmatch(job_id):
            raise InternalError("mix_preview: job_id must be 32 hexadecimal characters")
        data = await self.local.get(app_id, room_id, job_id)
        if data is None or len(data) > MAX_PREVIEW:
            return None
        return base64.b64encode(data).decode("ascii")
