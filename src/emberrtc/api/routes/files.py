"""Locally stored recordings, served back for the callbacks' ``download_url`` (storage.local_store), and
the HLS playlists of S3-stored recordings (their segments come from S3 itself, presigned).

Not part of the SparkRTC API: the link itself is the credential (``storage.download_link``), so there is
no other authentication here, and nothing is reachable without a genuine, unexpired link. An HLS
playlist is served with a signed link for each of its own segments, expiring with the playlist's link
(``storage.hls_playlist``), so a player can follow the ``download_url`` of an HLS recording whole; for
an S3 location the segment links are S3 presigned URLs, and Ember serves nothing else of it.

Responses allow any origin (``Access-Control-Allow-Origin: *``, no credentials): a player on the
application's own pages fetches playlist and segments cross-origin, and whoever holds a link may read
its files anyway. Signed playlists are not to be cached (they hold credentials).
"""

from __future__ import annotations

import asyncio
from typing import Annotated

from fastapi import APIRouter, Depends
from fastapi.responses import FileResponse, Response

from emberrtc.api.auth import services
from emberrtc.bootstrap import Services
from emberrtc.storage.download_link import FILES_PREFIX
from emberrtc.storage.errors import ObjectNotExist
from emberrtc.storage.hls_playlist import PLAYLIST_CONTENT_TYPE, is_playlist, signed_playlist
from emberrtc.storage.local_store import LocalStore

router = APIRouter(prefix=FILES_PREFIX, tags=["Recording files"])
Svc = Annotated[Services, Depends(services)]


PATH = "/{location}/{bucket}/{name:path}"
CORS = {"Access-Control-Allow-Origin": "*"}


@router.get(PATH, summary="Downloading a recording (signed link)")
async def download(
    location: str, bucket: str, name: str, svc: Svc, expires: str = "", signature: str = "", project: str = ""
) -> Response:
    storage = svc.storage
    links = storage.links
    if links is None:
        raise ObjectNotExist("this server serves no local files")
    # The link is checked before anything is looked up: without one, nothing can even be probed. The
    # project is signed with it: a link reaches that project's bucket only (no project: a link made
    # before buckets were kept per project, to the shared buckets of old).
    until = links.verify(location, bucket, name, expires, signature, project or None)
    store = storage.find(location, project or None)
    if store is None:
        raise ObjectNotExist(f"location {location!r} is not stored on this server")
    if is_playlist(name):
        body = await signed_playlist(store, bucket, name, until)
        headers = {**CORS, "Cache-Control": "private, no-store"}
        return Response(body, media_type=PLAYLIST_CONTENT_TYPE, headers=headers)
    if not isinstance(store, LocalStore):
        raise ObjectNotExist(f"location {location!r} serves its files itself; only its HLS playlists come from here")
    path, content_type = await asyncio.to_thread(store.open_path, bucket, name)
    return FileResponse(path, media_type=content_type, headers=CORS)


# HEAD answers like GET without the body (players probe sizes); one operation in the OpenAPI document.
router.add_api_route(PATH, download, methods=["HEAD"], include_in_schema=False)
