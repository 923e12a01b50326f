"""Fixtures for the media tests: a real Janus on a private config, inside the test network namespace.

Tests marked ``media`` need the ``janus`` binary and the addresses of the namespace made by
``scripts/netns.sh up ember-test`` (Janus gathers no ICE candidates on loopback, so WebRTC goes over
the namespace's veth pair). Elsewhere they are skipped with the reason and the command to run them.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy.orm import Session
from tests.conftest import make_settings, make_tenant, token_for
from tests.support.server import ServerThread

from emberrtc.bootstrap import Services
from emberrtc.media.janus_client import JanusClient
from emberrtc.media.janus_config import JanusConfig, free_loopback_ports
from emberrtc.media.janus_process import Backoff, JanusProcess
from emberrtc.media.plane import JanusMediaPlane
from emberrtc.store.models import App

#: The namespace's two veth addresses (scripts/netns.sh); Janus's ICE uses the first.
MEDIA_IP = os.environ.get("EMBER_TEST_MEDIA_IP", "10.77.0.1")
PEER_IP = os.environ.get("EMBER_TEST_PEER_IP", "10.77.0.2")
JANUS_BINARY = os.environ.get("EMBER_JANUS_BINARY", "janus")

RUN_HINT = "scripts/netns.sh up ember-test && scripts/netns.sh exec ember-test .venv/bin/pytest -m media tests/media"


def _is_local_address(ip: str) -> bool:
    # Binding succeeds only for an address assigned to an interface of the current namespace, and
    # sends nothing anywhere.
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.bind((ip, 0))
    except OSError:
        return False
    return True


def media_skip_reason() -> str | None:
    """Why the media tests cannot run here, or None if they can."""
    if shutil.which(JANUS_BINARY) is None:
        return f"Janus not installed ({JANUS_BINARY!r} not found): run `apt-get install janus`"
    missing = [ip for ip in (MEDIA_IP, PEER_IP) if not _is_local_address(ip)]
    if missing:
        return f"not inside the media test network namespace (no local address {', '.join(missing)}); run: {RUN_HINT}"
    return None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    reason = media_skip_reason()
    if reason is None:
        return
    skip = pytest.mark.skip(reason=reason)
    for item in items:
        if item.get_closest_marker("media") is not None:
            item.add_marker(skip)


def make_config(**overrides: object) -> JanusConfig:
    """A config for a test Janus: fresh loopback ports, ICE on the namespace address."""
    http, admin, ws = free_loopback_ports(3)
    settings: dict[str, object] = {"http_port": http, "admin_port": admin, "ws_port": ws, "ice_enforce_list": MEDIA_IP}
    settings.update(overrides)
    return JanusConfig(**settings)  # type: ignore[arg-type]


@pytest.fixture
def media_ip() -> str:
    """The namespace address Janus gathers its ICE candidates on."""
    return MEDIA_IP


@pytest.fixture
def janus_binary() -> str:
    """The Janus executable under test (``EMBER_JANUS_BINARY``, default ``janus``)."""
    return JANUS_BINARY


@pytest.fixture
def janus_config() -> JanusConfig:
    return make_config()


@pytest.fixture
async def janus(janus_config: JanusConfig, tmp_path: Path) -> AsyncIterator[JanusProcess]:
    """A running, supervised Janus; restarts after a crash come quickly to keep tests short."""
    process = JanusProcess(
        janus_config,
        tmp_path / "janus",
        binary=JANUS_BINARY,
        backoff=Backoff(initial=0.05, maximum=1.0),
    )
    async with process:
        yield process


@pytest.fixture
async def client(janus: JanusProcess) -> AsyncIterator[JanusClient]:
    async with JanusClient.from_config(janus.config) as janus_client:
        yield janus_client


# -- Ember with its media plane ----------------------------------------------------------------------


@dataclass
class MediaApp:
    """An app of a fresh tenant on a media-enabled Ember, with an HTTP client holding an IAM token."""

    server: ServerThread
    app_id: str
    app_key: str
    http: httpx.Client
    #: The tenant's project: the one its rules' ``obs_addr.project_id`` may name.
    project_id: str

    @property
    def services(self) -> Services:
        assert self.server.services is not None
        return self.server.services

    @property
    def plane(self) -> JanusMediaPlane:
        assert self.services.plane is not None
        return self.services.plane

    def run(self, work: Callable[[Session], Any]) -> Any:
        """Run a unit of work on the server's database."""
        return self.server.call(self.services.db.run(work))

    def set_auth(self, enable: bool) -> None:
        """Turn the app's join authentication on or off (no v2 API changes it)."""

        def work(s: Session) -> None:
            app = s.get(App, self.app_id)
            assert app is not None
            app.auth_enable = enable

        self.run(work)
        self.services.apps.forget(self.app_id)

    async def records(self, room_id: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """The room runs and user sessions of ``room_id``, read on the server's loop."""
        svc = self.services.room_sessions
        rooms = await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(svc.rooms(self.app_id, room_id), self._loop))
        sessions = await asyncio.wrap_future(
            asyncio.run_coroutine_threadsafe(svc.sessions(self.app_id, room_id), self._loop)
        )
        return rooms, sessions

    @property
    def _loop(self) -> asyncio.AbstractEventLoop:
        assert self.server.loop is not None
        return self.server.loop

    async def post(self, path: str, body: Any = None) -> httpx.Response:
        """POST to the v2 API without blocking this test's event loop."""
        return await asyncio.to_thread(self.http.post, path, json=body)


def start_media_server(data_dir: Path) -> ServerThread:
    """A real Ember (SQLite) with Janus gathering ICE on the namespace address."""
    # Automatic recording jobs end 5 s after their publisher goes (30 s by default), to keep tests short.
    settings = replace(make_settings(data_dir), media_enabled=True, media_ip=MEDIA_IP, auto_record_max_idle_time=5)
    return ServerThread(settings).start()


@pytest.fixture(scope="session")
def ember(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerThread]:
    """One media-enabled Ember for the media suite (tests that crash Janus start their own)."""
    reason = media_skip_reason()
    if reason is not None:
        pytest.skip(reason)
    server = start_media_server(tmp_path_factory.mktemp("ember-media"))
    try:
        yield server
    finally:
        server.stop()


def new_app(server: ServerThread) -> MediaApp:
    tenant = make_tenant(server)
    http = httpx.Client(base_url=server.url, headers={"X-Auth-Token": token_for(server, tenant)}, trust_env=False)
    created = http.post("/v2/apps", json={"app_name": "media"})
    assert created.status_code == 201, created.text
    app_id = created.json()["app_id"]
    app_key = http.get(f"/v2/apps/{app_id}").json()["authentication"]["app_key"]
    return MediaApp(server, app_id, app_key, http, tenant.project_id)


@pytest.fixture
def media_app(ember: ServerThread) -> Iterator[MediaApp]:
    app = new_app(ember)
    try:
        yield app
    finally:
        app.http.close()
