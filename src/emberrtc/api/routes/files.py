"""Locally stored recordings, served back for the callbacks' ``download_url`` (storage.local_store).

Not part of the SparkRTC API: the link itself is the credential (``storage.download_link``), so there is
no other authentication here, and nothing is reachable without a genuine, unexpired link.
"""

from __future__ import annotations

import asyncio
from typing import Annotated

from fastapi import APIRouter, Depends
from fastapi.responses import FileResponse

from emberrtc.api.auth import services
from emberrtc.bootstrap import Services
from emberrtc.storage.download_link import FILES_PREFIX
from emberrtc.storage.errors import ObjectNotExist

router = APIRouter(prefix=FILES_PREFIX, tags=["Recording files"])
Svc = Annotated[Services, Depends(services)]


PATH = "/{location}/{bucket}/{name:path}"


@router.get(PATH, summary="Downloading a recording (signed link)")
async def download(
    location: str, bucket: str, name: str, svc: Svc, expires: str = "", signature: str = ""
) -> FileResponse:
    storage = svc.storage
    if storage.links is None:
        raise ObjectNotExist("this server serves no local files")
    # The link is checked before anything is looked up: without one, nothing can even be probed.
    storage.links.verify(location, bucket, name, expires, signature)
    store = storage.local(location)
    if store is None:
        raise ObjectNotExist(f"location {location!r} is not stored on this server")
    path, content_type = await asyncio.to_thread(store.open_path, bucket, name)
    return FileResponse(path, media_type=content_type)


# HEAD answers like GET without the body (players probe sizes); one operation in the OpenAPI document.
router.add_api_route(PATH, download, methods=["HEAD"], include_in_schema=False)
