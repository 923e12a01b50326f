"""The running server delivers recording callbacks to the URL and key an application set through the API
(spec 4.3.1), and serves its locally stored files at the callback's download_url."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import os
from pathlib import Path
from urllib.parse import urlsplit

import httpx

from emberrtc.recording.outputs import FileTarget, JobRef
from tests.support.http_receiver import HttpReceiver
from tests.support.server import ServerThread
from tests.support.spec_checks import assert_ok, create_app
from tests.support.waiting import until

AUTH_KEY = "8923ab8c2dcef4538923ab8c2dcef453"


async def test_callbacks_from_a_running_server(server: ServerThread, http: httpx.Client, tmp_path: Path) -> None:
    assert server.services is not None
    outputs = server.services.outputs
    receiver = await HttpReceiver().start()
    try:
        app_id = await asyncio.to_thread(create_app, http)
        body = {"url": receiver.url + "/callback", "auth_key": AUTH_KEY}
        put = await asyncio.to_thread(http.put, f"/v2/apps/{app_id}/record-callback", json=body)
        assert_ok(put)

        job = JobRef(app_id=app_id, job_id=os.urandom(16).hex(), room_id="room1", stream_name="s1")
        target = FileTarget("local", "records", f"{app_id}/MP4/s1.mp4")
        data = os.urandom(10_000)
        path = outputs.spool.path_for(job.job_id, "f1.mp4")
        path.write_bytes(data)
        assert server.clock is not None
        now = server.clock.now()

        async def record() -> None:
            await outputs.file_started(job, record_format="MP4", target=target, start_time=now - 60)
            await outputs.file_completed(
                job,
                record_format="MP4",
                path=path,
                target=target,
                start_time=now - 60,
                end_time=now,
                width=640,
                height=480,
            )
            await outputs.job_over(job)

        await asyncio.to_thread(server.call, record())
        await until(lambda: len(receiver.received) == 3, what="three callbacks from the server")
    finally:
        await receiver.stop()

    events = [json.loads(r.body) for r in receiver.received]
    assert [e["event_type"] for e in events] == ["RECORD_NEW_FILE_START", "RECORD_FILE_COMPLETE", "CLOUD_RECORD_OVER"]
    for r in receiver.received:
        msg = r.headers["x-rtc-rand"].encode() + r.headers["x-rtc-timestamp"].encode() + r.body
        assert r.headers["x-rtc-signature"] == hmac.new(AUTH_KEY.encode(), msg, hashlib.sha256).hexdigest()
    link = urlsplit(events[1]["download_url"])
    async with httpx.AsyncClient(base_url=server.url) as client:
        got = await client.get(f"{link.path}?{link.query}")
    assert got.status_code == 200 and got.content == data
    assert not path.exists()  # stored, so it left the spool
