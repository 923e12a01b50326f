"""Room management (spec 4.7): remove users, dismiss a room."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import async_sessionmaker

from emberrtc.domain.app import load_app
from emberrtc.domain.errors import RoomNotExist
from emberrtc.domain.job import ROOM_DISMISSED, JobService
from emberrtc.domain.ports import MediaPlane
from emberrtc.domain.tenant import Principal


class RoomService:
    def __init__(self, sessions: async_sessionmaker, media: MediaPlane, jobs: JobService) -> None:
        self._sessions = sessions
        self._media = media
        self._jobs = jobs

    async def remove_users(self, principal: Principal, app_id: str, room_id: str, user_ids: list[str]) -> None:
        """spec 4.7.1 (202): users who are not in the room are already where the caller wants them."""
        async with self._sessions() as s:
            await load_app(s, principal, app_id)
        await self._media.remove_users(app_id, room_id, list(dict.fromkeys(user_ids)))

    async def dismiss(self, principal: Principal, app_id: str, room_id: str) -> None:
        """spec 4.7.2: 404 for a room that is not running; jobs recording the room stop."""
        async with self._sessions() as s:
            await load_app(s, principal, app_id)
        if not await self._media.dismiss(app_id, room_id):
            raise RoomNotExist(f"room {room_id} is not running")
        await self._jobs.stop_room_jobs(app_id, room_id, ROOM_DISMISSED, f"room {room_id} was dismissed")
