"""spec 4.7 Room management."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Response

from emberrtc.api.auth import authorise, services
from emberrtc.api.schemas.apps import RemoveUsersBody
from emberrtc.api.schemas.common import RoomId
from emberrtc.api.schemas.responses import doc
from emberrtc.bootstrap import Services
from emberrtc.domain.tenant import Principal

router = APIRouter(prefix="/v2/apps/{app_id}/rooms/{room_id}", tags=["Room management"])
Svc = Annotated[Services, Depends(services)]
Who = authorise("rooms")


@router.post(
    "/batch-remove-users",
    status_code=202,
    summary="Removing online users (4.7.1)",
    responses=doc(None, 202),
    response_class=Response,  # 202 without a body
)
async def remove_users(app_id: str, room_id: RoomId, body: RemoveUsersBody, svc: Svc, who: Principal = Who) -> Response:
    await svc.rooms.remove_users(who, app_id, room_id, body.user_ids)
    return Response(status_code=202)


@router.post(
    "/dismiss",
    status_code=202,
    summary="Dismissing a room (4.7.2)",
    responses=doc(None, 202),
    response_class=Response,  # 202 without a body
)
async def dismiss_room(app_id: str, room_id: RoomId, svc: Svc, who: Principal = Who) -> Response:
    await svc.rooms.dismiss(who, app_id, room_id)
    return Response(status_code=202)
