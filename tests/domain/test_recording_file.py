"""The recording files of an app as the console lists them: seconds from the usage rows, bytes and state
from the uploads of each file's group; on both database backends."""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography.fernet import Fernet
from sqlalchemy import select, update

from emberrtc.domain.errors import AppNotExist
from emberrtc.domain.recording_file import list_files
from emberrtc.domain.secrets import SecretBox
from emberrtc.domain.tenant import Principal
from emberrtc.domain.usage import record_file
from emberrtc.storage.uploader import SpooledFile, register
from emberrtc.store.database import Database
from emberrtc.store.models import App, Job, Tenant, Upload
from tests.support.database import db, db_url, seed_app

__all__ = ["db", "db_url"]  # fixtures, used by name

MIDNIGHT = 1_800_057_600.0  # 2027-01-16T00:00:00Z


async def _principal(database: Database, app_id: str) -> Principal:
    def work(s):  # type: ignore[no-untyped-def]
        t = s.execute(
            select(Tenant).join(App, App.domain_id == Tenant.domain_id).where(App.app_id == app_id)
        ).scalar_one()
        return Principal(t.domain_id, t.domain_name, t.project_id, t.project_name, t.user_name)

    return await database.run(work)


def _upload(s, job_id: str, name: str, size: int, group: str) -> None:  # type: ignore[no-untyped-def]
    f = SpooledFile(Path(f"/spool/{name}"), "local", "rec", name, size, "0" * 32, "video/mp2t")
    register(s, f, node_id="n1", now=MIDNIGHT, job_id=job_id, group_key=group)


async def test_an_hls_file_is_stored_once_every_part_is(db: Database) -> None:
    app_id = await seed_app(db, SecretBox(Fernet.generate_key()), callback_url=None)
    who = await _principal(db, app_id)

    def setup(s):  # type: ignore[no-untyped-def]
        s.add(
            Job(
                job_id="j1", app_id=app_id, kind="individual", room_id="r1", user_id="u1", slot="api",
                stream_name="s_j1_r1_u1", params={}, state="STOPPED", create_time=MIDNIGHT, update_time=MIDNIGHT,
            )
        )  # fmt: skip
        s.flush()
        _upload(s, "j1", "f/s.m3u8", 300, "g1")
        _upload(s, "j1", "f/s_00000.ts", 1000, "g1")
        _upload(s, "j1", "f/s_00001.ts", 2000, "g1")
        # 30 s before midnight to 45 s after: one file, two usage rows.
        record_file(
            s, app_id=app_id, job_id="j1", object_name="f/s.m3u8", record_format="HLS", start_time=MIDNIGHT - 30,
            end_time=MIDNIGHT + 45, transcoded=False, width=640, height=360, now=MIDNIGHT + 46,
        )  # fmt: skip

    await db.run(setup)
    (f,) = await list_files(db, who, app_id)
    assert (f.object_name, f.record_format, f.room_id, f.stream_name) == ("f/s.m3u8", "HLS", "r1", "s_j1_r1_u1")
    assert f.duration == pytest.approx(75.0) and f.size == 3300 and (f.width, f.height) == (640, 360)
    assert f.state == "pending" and (f.location, f.bucket) == ("local", "rec")

    def store_some(s):  # type: ignore[no-untyped-def]
        s.execute(update(Upload).where(Upload.object_name != "f/s_00001.ts").values(state="stored"))

    await db.run(store_some)
    assert (await list_files(db, who, app_id))[0].state == "pending"  # a segment is still uploading
    await db.run(lambda s: s.execute(update(Upload).values(state="stored")))
    assert (await list_files(db, who, app_id))[0].state == "stored"

    other_app = await seed_app(db, SecretBox(Fernet.generate_key()), callback_url=None)
    stranger = await _principal(db, other_app)
    with pytest.raises(AppNotExist):
        await list_files(db, stranger, app_id)
    assert await list_files(db, stranger, other_app) == []
