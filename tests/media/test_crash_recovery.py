"""``kill -9`` of ``ember serve`` mid-recording, then a restart (recording issue, crash safety).

A real ``ember serve`` process (Janus as its child, SQLite in a data folder) records two users. It is
killed with SIGKILL while both publish. Its Janus dies with it, and its recording workers finish their
files. The restarted server must then:

- store the files the workers finished after their server died, and send their ``RECORD_FILE_COMPLETE``;
- resume the job of the user who comes back (a new file, same job), and stop the job of the user who does
  not with ``IDLE_TIMEOUT`` once its ``max_idle_time`` has passed, each with ``CLOUD_RECORD_OVER``;
- have lost nothing: every callback signed, in order per job, every file readable with the right colour.

A mixed-stream job of the same room runs beside them, and goes through the same: its first file (both users
in their cells) kept up to the kill, and a new file when ann comes back.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from tests.media.conftest import MEDIA_IP
from tests.recording.readback import read_back
from tests.support.ember_serve import EmberServe
from tests.support.http_receiver import HttpReceiver
from tests.support.waiting import until

from emberrtc.callbacks.signature import verify
from emberrtc.client import ColourVideoTrack, RoomClient, ToneAudioTrack
from emberrtc.media.janus_process import janus_pids
from emberrtc.synthetic import colour_distance, median_rgb

pytestmark = pytest.mark.media

AUTH_KEY = "0f1e2d3c4b5a69788796a5b4c3d2e1f0"
JOBS = "individual-stream-jobs"
MIX_JOBS = "mix-stream-jobs"
RED, BLUE, GREEN = (220, 30, 30), (30, 60, 220), (30, 200, 60)
WIDTH, HEIGHT = 320, 240


def ember_serve(data_dir: Path) -> EmberServe:
    return EmberServe(data_dir, env={"EMBER_MEDIA_IP": MEDIA_IP, "EMBER_RATE_LIMITS": "off", "EMBER_JOB_TICK": "0.2"})


async def api(server: EmberServe, token: str, method: str, path: str, body: Any = None) -> httpx.Response:
    async with httpx.AsyncClient(base_url=server.url, headers={"X-Auth-Token": token}, trust_env=False) as c:
        return await c.request(method, path, json=body, timeout=15)


async def login(server: EmberServe, name: str, password: str) -> str:
    identity = {
        "methods": ["password"],
        "password": {"user": {"name": name, "password": password, "domain": {"name": name}}},
    }
    body = {"auth": {"identity": identity, "scope": {"project": {"name": "ember"}}}}
    async with httpx.AsyncClient(trust_env=False) as c:
        r = await c.post(f"{server.url}/v3/auth/tokens", json=body)
    assert r.status_code == 201, r.text
    return r.headers["X-Subject-Token"]


async def join_and_publish(
    server: EmberServe, app_id: str, app_key: str, user: str, colour: tuple[int, int, int]
) -> RoomClient:
    # Janus may still be starting right after the server answers: a refused join is tried again.
    async def joined() -> RoomClient | None:
        try:
            return await RoomClient.join(server.url, app_id=app_id, room_id="crash-room", user_id=user, app_key=app_key)
        except Exception:
            return None

    client: RoomClient = await until(joined, within=30, what=f"{user} joins")
    await client.publish(
        "camera", video=ColourVideoTrack(colour, width=WIDTH, height=HEIGHT), audio=ToneAudioTrack(440.0), codec="h264"
    )
    return client


async def test_kill_9_of_the_server_mid_recording_loses_nothing(tmp_path: Path) -> None:
    server = ember_serve(tmp_path / "data")
    server.data_dir.mkdir()
    tenant = server.cli("tenant", "create", "crashco", "--password", "crash-password-1")
    assert tenant
    receiver = await HttpReceiver().start()
    clients: list[RoomClient] = []
    try:
        await server.start()
        token = await login(server, "crashco", "crash-password-1")
        created = await api(server, token, "POST", "/v2/apps", {"app_name": "crash"})
        assert created.status_code == 201, created.text
        app_id = created.json()["app_id"]
        app_key = (await api(server, token, "GET", f"/v2/apps/{app_id}")).json()["authentication"]["app_key"]
        callback = {"url": receiver.url + "/events", "auth_key": AUTH_KEY}
        assert (await api(server, token, "PUT", f"/v2/apps/{app_id}/record-callback", callback)).status_code == 200
        rule = {
            "obs_addr": {"location": "local", "project_id": tenant["project_id"], "bucket": "crash-records"},
            "record_formats": ["MP4"],
            "mp4_config": {"record_cycle": 60},
        }
        rule_id = (await api(server, token, "POST", f"/v2/apps/{app_id}/record-rules", rule)).json()["rule_id"]

        clients.append(await join_and_publish(server, app_id, app_key, "ann", RED))
        clients.append(await join_and_publish(server, app_id, app_key, "ben", GREEN))
        jobs: dict[str, str] = {}
        for user in ("ann", "ben"):
            body = {
                "room_id": "crash-room",
                "user_id": user,
                "record_param": {"record_rule_id": rule_id},
                "max_idle_time": 15,
            }
            r = await api(server, token, "POST", f"/v2/apps/{app_id}/{JOBS}", body)
            assert r.status_code == 201, r.text
            jobs[user] = r.json()["job_id"]

        def path(user: str) -> str:
            return f"/v2/apps/{app_id}/{MIX_JOBS if user == 'mix' else JOBS}/{jobs[user]}"

        async def state(user: str) -> dict[str, Any]:
            r = await api(server, token, "GET", path(user))
            assert r.status_code == 200, r.text
            return dict(r.json())

        for user in ("ann", "ben"):
            await until(lambda u=user: _is(state(u), "RUNNING"), within=30, what=f"{user}'s job RUNNING")
        began = time.monotonic()
        # The mixed job once the single-stream jobs record (its worker's start must not delay theirs; it
        # takes longer, and much longer on a loaded machine).
        mix_param = {
            "room_id": "crash-room",
            "encode_template": "640x480_15_500",
            "layout_template": "nine_grids_view",
            "max_idle_time": 15,
        }
        body = {"mix_param": mix_param, "record_param": {"record_rule_id": rule_id}}
        r = await api(server, token, "POST", f"/v2/apps/{app_id}/{MIX_JOBS}", body)
        assert r.status_code == 201, r.text
        jobs["mix"] = r.json()["job_id"]
        await until(lambda: _is(state("mix"), "RUNNING"), within=60, what="the mixed job RUNNING")
        mix_began = time.monotonic()
        await asyncio.sleep(5.0)  # the length of the first files, not a synchronisation
        janus_dir = server.data_dir / "janus"
        assert janus_pids(janus_dir)

        server.kill9()
        first_length = time.monotonic() - began
        mix_length = time.monotonic() - mix_began
        # Janus dies with its server (parent-death signal): no room outlives the server that ran it.
        await until(lambda: not janus_pids(janus_dir), within=10, what="Janus to die with ember serve")
        for client in clients:  # their server is gone: hang up what is left of the calls
            with contextlib.suppress(Exception):
                await asyncio.wait_for(client.leave(), 5)
        clients.clear()

        await server.start()
        token = await login(server, "crashco", "crash-password-1")  # tokens survive too; a new one is fine
        # The files the workers finished after the kill are stored and reported by the new server.
        files = await until(lambda: len(_events(receiver, "RECORD_FILE_COMPLETE")) >= 3, within=30, what="first files")
        assert files
        for user in jobs:
            s = await state(user)
            assert s["state"] == "RUNNING" and "restarted" in s["description"], s

        # ann comes back: her job records on into a new file. ben does not: his job stops after 15 s.
        clients.append(await join_and_publish(server, app_id, app_key, "ann", BLUE))
        for who in ("ann", "mix"):
            await until(
                lambda w=who: len(_events(receiver, "RECORD_NEW_FILE_START", jobs[w])) >= 2,
                within=30,
                what=f"{who}'s second file",
            )
        await asyncio.sleep(3.0)  # the length of ann's second file
        for who in ("ann", "mix"):
            r = await api(server, token, "DELETE", path(who))
            assert r.status_code == 204, r.text
        ben = await until(lambda: _is(state("ben"), "STOPPED"), within=30, what="ben's job to stop")
        assert ben["stop_reason"] == "IDLE_TIMEOUT"
        for user in jobs:
            await until(lambda u=user: _events(receiver, "CLOUD_RECORD_OVER", jobs[u]), within=30, what=f"{user} over")
    finally:
        for client in clients:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(client.leave(), 10)
        server.stop()
        await receiver.stop()

    assert all(verify(AUTH_KEY, r.headers, r.body) for r in receiver.answered())
    ann = [e["event_type"] for e in _events(receiver, None, jobs["ann"])]
    assert ann == ["RECORD_NEW_FILE_START", "RECORD_FILE_COMPLETE"] * 2 + ["CLOUD_RECORD_OVER"], ann
    ben = [e["event_type"] for e in _events(receiver, None, jobs["ben"])]
    assert ben == ["RECORD_NEW_FILE_START", "RECORD_FILE_COMPLETE", "CLOUD_RECORD_OVER"], ben
    mix = [e["event_type"] for e in _events(receiver, None, jobs["mix"])]
    assert mix == ["RECORD_NEW_FILE_START", "RECORD_FILE_COMPLETE"] * 2 + ["CLOUD_RECORD_OVER"], mix

    storage = server.data_dir / "storage" / tenant["project_id"] / "crash-records"
    expected = {(jobs["ann"], 0): RED, (jobs["ann"], 1): BLUE, (jobs["ben"], 0): GREEN}
    for (job_id, index), colour in expected.items():
        complete = _events(receiver, "RECORD_FILE_COMPLETE", job_id)[index]
        rb = await asyncio.to_thread(read_back, storage / complete["obs_object"])
        assert (rb.video_codec, rb.audio_codec) == ("h264", "aac")
        assert colour_distance(median_rgb(rb.middle_frame), colour) < 25
        if index == 0:  # recorded up to the kill: nothing of it lost
            assert first_length - 1.5 <= rb.duration <= first_length + 3.0, (rb.duration, first_length)

    # The mixed job: ann (left, joined first) and ben (right) up to the kill; ann alone after the restart.
    first, second = _events(receiver, "RECORD_FILE_COMPLETE", jobs["mix"])
    rb = await asyncio.to_thread(read_back, storage / first["obs_object"])
    assert (rb.video_codec, rb.width, rb.height, rb.audio_codec) == ("h264", 640, 480, "aac")
    # From its first forwarded media (before RUNNING was seen) to the kill.
    assert mix_length - 1.5 <= rb.duration <= first_length + 3.0, (rb.duration, mix_length, first_length)
    rgb = rb.middle_frame.to_ndarray(format="rgb24")
    assert colour_distance(np.median(rgb[180:300, 60:260].reshape(-1, 3), axis=0), RED) < 40
    assert colour_distance(np.median(rgb[180:300, 380:580].reshape(-1, 3), axis=0), GREEN) < 40
    rb = await asyncio.to_thread(read_back, storage / second["obs_object"])
    assert colour_distance(median_rgb(rb.middle_frame), BLUE) < 40


async def _is(state: Any, wanted: str) -> dict[str, Any] | None:
    s = await state
    return s if s["state"] == wanted else None


def _events(receiver: HttpReceiver, event_type: str | None, job_id: str | None = None) -> list[dict[str, Any]]:
    bodies = [json.loads(r.body) for r in receiver.answered()]
    return [
        b
        for b in bodies
        if (event_type is None or b["event_type"] == event_type) and (job_id is None or b["job_id"] == job_id)
    ]
