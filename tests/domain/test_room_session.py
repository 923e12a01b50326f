"""Join checks and room/session records, on the real database (SQLite and PostgreSQL)."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
from cryptography.fernet import Fernet
from sqlalchemy.orm import Session

from emberrtc.config import Settings
from emberrtc.domain.clock import ManualClock
from emberrtc.domain.errors import AppDeactivation, AppNotExist, Unauthenticated
from emberrtc.domain.room_session import JoinRequest, RoomSessionService, join_signature
from emberrtc.domain.secrets import SecretBox, new_hex_id
from emberrtc.store.database import Database, default_url
from emberrtc.store.models import App, Tenant

NOW = 1_700_000_000.0
KEY = "0123456789abcdef0123456789abcdef"


@dataclass
class Env:
    db: Database
    box: SecretBox
    clock: ManualClock
    svc: RoomSessionService

    async def app(self, *, auth: bool = True, state: str = "ACTIVATION") -> str:
        tenant_id, app_id = new_hex_id(), new_hex_id()

        def work(s: Session) -> None:
            s.add(
                Tenant(
                    domain_id=tenant_id,
                    domain_name=f"t{tenant_id[:12]}",
                    project_id=new_hex_id(),
                    project_name="ember",
                    user_name="u",
                    password_hash="x",
                    created_at=NOW,
                )
            )
            s.flush()
            s.add(
                App(
                    app_id=app_id,
                    domain_id=tenant_id,
                    app_name="a",
                    state=state,
                    state_update_time=NOW,
                    scope="GLOBAL",
                    create_time=NOW,
                    auth_enable=auth,
                    auth_expire=300,
                    app_key_encrypted=self.box.seal(KEY),
                    auth_update_time=NOW,
                    auto_record_mode="AUTO_RECORD_OFF",
                    auto_record_update_time=NOW,
                )
            )

        await self.db.run(work)
        return app_id


@pytest.fixture
async def env(backend: Settings) -> AsyncIterator[Env]:
    db = Database(backend.database_url or default_url(backend.data_dir))
    await db.migrate()
    clock = ManualClock(NOW)
    box = SecretBox(Fernet.generate_key())
    try:
        yield Env(db, box, clock, RoomSessionService(db, box, clock))
    finally:
        await db.close()


def signed(app_id: str, room_id: str, user_id: str, ctime: float = NOW + 7200, **extra: str) -> JoinRequest:
    c = str(int(ctime))
    return JoinRequest(app_id, room_id, user_id, c, join_signature(KEY, app_id, room_id, user_id, c), **extra)


def test_signature_is_the_documented_hmac() -> None:
    # hex(HMAC-SHA256(key=app_key, msg=app_id + room_id + user_id + ctime)), computed independently.
    expected = hmac.new(b"key", b"approomuser123", hashlib.sha256).hexdigest()
    assert join_signature("key", "app", "room", "user", "123") == expected


async def test_accepted_join_opens_the_room_and_records_the_session(env: Env) -> None:
    app_id = await env.app()
    req = signed(
        app_id,
        "r1",
        "alice",
        nickname="Alice",
        platform="python-linux",
        sdk_version="0.1.0",
        device_model="x86_64",
        client_ip="10.77.0.2",
    )
    admission = await env.svc.admit(req)
    assert (admission.app_id, admission.room_id, admission.user_id) == (app_id, "r1", "alice")
    [room] = await env.svc.rooms(app_id)
    assert room["room_uid"] == admission.room_uid
    assert (room["state"], room["start_time"], room["end_time"], room["duration"]) == ("RUNNING", NOW, None, None)
    [s] = await env.svc.sessions(app_id)
    assert s["session_id"] == admission.session_id
    assert s["state"] == "ONLINE"
    assert (s["nickname"], s["platform"], s["sdk_version"], s["device_model"], s["client_ip"]) == (
        "Alice",
        "python-linux",
        "0.1.0",
        "x86_64",
        "10.77.0.2",
    )
    assert (s["join_time"], s["leave_time"], s["fail_reason"], s["published_streams"]) == (NOW, None, None, [])

    # Upper-case hex is the same signature; ctime exactly 12 h ahead is allowed.
    upper = signed(app_id, "r1", "bob", NOW + 12 * 3600)
    await env.svc.admit(JoinRequest(app_id, "r1", "bob", upper.ctime, (upper.signature or "").upper()))
    assert [r["state"] for r in await env.svc.rooms(app_id)] == ["RUNNING"]


@pytest.mark.parametrize(
    ("case", "detail"),
    [
        ("bad signature", "does not match"),
        ("expired", "has expired"),
        ("too far ahead", "more than 12 hours ahead"),
        ("no signature", "requires ctime and signature"),
    ],
)
async def test_refused_joins_are_recorded_as_failures(env: Env, case: str, detail: str) -> None:
    app_id = await env.app()
    if case == "bad signature":
        req = JoinRequest(app_id, "r1", "eve", str(int(NOW + 60)), join_signature("wrong", app_id, "r1", "eve", "1"))
    elif case == "expired":
        req = signed(app_id, "r1", "eve", NOW)
    elif case == "too far ahead":
        req = signed(app_id, "r1", "eve", NOW + 12 * 3600 + 1)
    else:
        req = JoinRequest(app_id, "r1", "eve")
    with pytest.raises(Unauthenticated) as refused:
        await env.svc.admit(req)
    assert detail in refused.value.message
    [s] = await env.svc.sessions(app_id)
    assert s["state"] == "FAIL"
    assert s["fail_reason"].startswith("RTC.00001001: ") and detail in s["fail_reason"]
    assert s["room_uid"] is None
    assert await env.svc.rooms(app_id) == []


async def test_signature_binds_every_field(env: Env) -> None:
    app_id = await env.app()
    good = signed(app_id, "r1", "alice")
    for forged in (
        JoinRequest(app_id, "r2", "alice", good.ctime, good.signature),
        JoinRequest(app_id, "r1", "mallory", good.ctime, good.signature),
        JoinRequest(app_id, "r1", "alice", str(int(good.ctime or 0) + 1), good.signature),
    ):
        with pytest.raises(Unauthenticated):
            await env.svc.admit(forged)


async def test_unknown_app_is_refused_and_not_recorded(env: Env) -> None:
    with pytest.raises(AppNotExist):
        await env.svc.admit(signed("f" * 32, "r1", "alice"))
    assert await env.svc.sessions("f" * 32) == []


async def test_disabled_app_refuses_joins_even_to_a_running_room(env: Env) -> None:
    app_id = await env.app()
    first = await env.svc.admit(signed(app_id, "r1", "alice"))

    def disable(s: Session) -> None:
        app = s.get(App, app_id)
        assert app is not None
        app.state = "DEACTIVATION"

    await env.db.run(disable)
    with pytest.raises(AppDeactivation):
        await env.svc.admit(signed(app_id, "r1", "bob"))
    sessions = {s["user_id"]: s for s in await env.svc.sessions(app_id)}
    assert sessions["alice"]["state"] == "ONLINE"
    assert sessions["bob"]["state"] == "FAIL"
    assert sessions["bob"]["fail_reason"].startswith("RTC.00001016: ")
    # A refusal while the room runs is tied to that run.
    assert sessions["bob"]["room_uid"] == first.room_uid


async def test_auth_disabled_needs_no_signature(env: Env) -> None:
    app_id = await env.app(auth=False)
    await env.svc.admit(JoinRequest(app_id, "r1", "alice"))
    # Whatever is sent is not checked.
    await env.svc.admit(JoinRequest(app_id, "r1", "bob", "1", "nonsense"))
    assert [s["state"] for s in await env.svc.sessions(app_id)] == ["ONLINE", "ONLINE"]


async def test_room_runs_from_first_join_to_last_leave(env: Env) -> None:
    app_id = await env.app()
    alice = await env.svc.admit(signed(app_id, "r1", "alice"))
    env.clock.advance(10)
    bob = await env.svc.admit(signed(app_id, "r1", "bob"))
    assert bob.room_uid == alice.room_uid
    await env.svc.publish(alice.session_id, "camera")
    await env.svc.publish(alice.session_id, "screen")
    await env.svc.publish(alice.session_id, "camera")
    env.clock.advance(20)
    await env.svc.leave(alice.session_id, "left")
    [room] = await env.svc.rooms(app_id)
    assert room["state"] == "RUNNING"
    env.clock.advance(15.5)
    await env.svc.leave(bob.session_id, "removed")
    await env.svc.leave(bob.session_id, "left")  # idempotent: the first reason stands
    [room] = await env.svc.rooms(app_id)
    assert (room["state"], room["end_time"], room["duration"]) == ("CLOSED", NOW + 45.5, 45)
    sessions = {s["user_id"]: s for s in await env.svc.sessions(app_id, room_id="r1")}
    assert sessions["alice"]["published_streams"] == ["camera", "screen"]
    assert (sessions["alice"]["state"], sessions["alice"]["leave_time"], sessions["alice"]["leave_reason"]) == (
        "OFFLINE",
        NOW + 30,
        "left",
    )
    assert (sessions["bob"]["state"], sessions["bob"]["leave_reason"]) == ("OFFLINE", "removed")

    # The same room ID later is a new run.
    env.clock.advance(100)
    again = await env.svc.admit(signed(app_id, "r1", "alice"))
    assert again.room_uid != alice.room_uid
    rooms = await env.svc.rooms(app_id, "r1")
    assert [r["state"] for r in rooms] == ["CLOSED", "RUNNING"]
    assert len(await env.svc.sessions(app_id, user_id="alice")) == 2


async def test_failed_media_join_is_a_failure_and_closes_an_empty_room(env: Env) -> None:
    app_id = await env.app()
    admission = await env.svc.admit(signed(app_id, "r1", "alice"))
    await env.svc.fail(admission.session_id, "RTC.00002000: InternalError: the media server is not running")
    [s] = await env.svc.sessions(app_id)
    assert (s["state"], s["fail_reason"]) == ("FAIL", "RTC.00002000: InternalError: the media server is not running")
    [room] = await env.svc.rooms(app_id)
    assert room["state"] == "CLOSED"


async def test_recover_closes_what_a_previous_run_left_open(env: Env) -> None:
    app_id = await env.app()
    await env.svc.admit(signed(app_id, "r1", "alice"))
    await env.svc.admit(signed(app_id, "r2", "bob"))
    env.clock.advance(5)
    assert await env.svc.recover() >= 2
    assert {r["state"] for r in await env.svc.rooms(app_id)} == {"CLOSED"}
    assert {(s["state"], s["leave_reason"]) for s in await env.svc.sessions(app_id)} == {("OFFLINE", "server_restart")}


async def test_in_a_cluster_a_starting_node_closes_only_its_own_rooms(env: Env) -> None:
    app_id = await env.app()
    node_a = RoomSessionService(env.db, env.box, env.clock, node_id="node-a")
    node_b = RoomSessionService(env.db, env.box, env.clock, node_id="node-b")
    on_a = await node_a.admit(signed(app_id, "r1", "alice"))
    on_b = await node_b.admit(signed(app_id, "r2", "bob"))
    rooms = {r["room_id"]: r for r in await env.svc.rooms(app_id)}
    assert (rooms["r1"]["node_id"], rooms["r2"]["node_id"]) == ("node-a", "node-b")
    env.clock.advance(5)
    assert await node_a.recover() == 1
    rooms = {r["room_id"]: r for r in await env.svc.rooms(app_id)}
    assert (rooms["r1"]["state"], rooms["r2"]["state"]) == ("CLOSED", "RUNNING")
    sessions = {s["session_id"]: s for s in await env.svc.sessions(app_id)}
    assert (sessions[on_a.session_id]["state"], sessions[on_a.session_id]["leave_reason"]) == (
        "OFFLINE",
        "server_restart",
    )
    assert sessions[on_b.session_id]["state"] == "ONLINE"


async def test_a_single_node_records_no_node(env: Env) -> None:
    app_id = await env.app()
    await env.svc.admit(signed(app_id, "r1", "alice"))
    [room] = await env.svc.rooms(app_id)
    assert room["node_id"] is None


async def test_a_run_held_by_a_node_that_lost_the_room_is_closed_by_its_new_host(env: Env) -> None:
    app_id = await env.app()
    node_a = RoomSessionService(env.db, env.box, env.clock, node_id="node-a")
    node_b = RoomSessionService(env.db, env.box, env.clock, node_id="node-b")
    lost = await node_a.admit(signed(app_id, "r1", "alice"))
    env.clock.advance(3)
    # The room was placed on node-b after node-a died: node-b's first join opens a run of its own.
    here = await node_b.admit(signed(app_id, "r1", "bob"))
    assert here.room_uid != lost.room_uid
    runs = {r["room_uid"]: r for r in await env.svc.rooms(app_id, "r1")}
    assert (runs[lost.room_uid]["state"], runs[lost.room_uid]["duration"]) == ("CLOSED", 3)
    assert (runs[here.room_uid]["state"], runs[here.room_uid]["node_id"]) == ("RUNNING", "node-b")
    sessions = {s["session_id"]: s for s in await env.svc.sessions(app_id)}
    assert (sessions[lost.session_id]["state"], sessions[lost.session_id]["leave_reason"]) == ("OFFLINE", "node_lost")
    # node-b's own later joins share its run.
    assert (await node_b.admit(signed(app_id, "r1", "carol"))).room_uid == here.room_uid


async def test_refusal_checks_a_join_without_recording_it(env: Env) -> None:
    app_id = await env.app()
    assert await env.svc.refusal(signed(app_id, "r1", "alice")) is None
    bad = signed(app_id, "r1", "alice", ctime=NOW - 1)
    refused = await env.svc.refusal(bad)
    assert isinstance(refused, Unauthenticated)
    assert isinstance(await env.svc.refusal(signed("0" * 32, "r1", "alice")), AppNotExist)
    assert await env.svc.sessions(app_id) == [] and await env.svc.rooms(app_id) == []
