"""Room management (spec 4.7): remove users, dismiss a room."""

from __future__ import annotations

from emberrtc.domain.app import AppService
from emberrtc.domain.errors import AppNotExist, RoomNotExist
from emberrtc.domain.job import ROOM_DISMISSED, JobService
from emberrtc.domain.ports import MediaPlane
from emberrtc.domain.tenant import Principal


class RoomService:
    def __init__(self, apps: AppService, media: MediaPlane, jobs: JobService) -> None:
        self._apps = apps
        self._media = media
        self._jobs = jobs

    async def remove_users(self, principal: Principal, app_id: str, room_id: str, user_ids: list[str]) -> None:
        """spec 4.7.1 (202): users who are not in the room are already where the caller wants them."""
        if not await self._apps.exists(principal, app_id):
            raise AppNotExist(f"app {app_id} does not exist")
        await self._media.remove_users(app_id, room_id, list(dict.fromkeys(user_ids)))

    async def dismiss(self, principal: Principal, app_id: str, room_id: str) -> None:
        """spec 4.7.2: 404 for a room that is not running; jobs recording the room stop."""
        if not await self._apps.exists(principal, app_id):
            raise AppNotExist(f"app {app_id} does not exist")
        if not await self._media.dismiss(app_id, room_id):
            raise RoomNotExist(f"room {room_id} is not running")
        await self._jobs.stop_room_jobs(app_id, room_id, ROOM_DISMISSED, f"room {room_id} was dismissed")
