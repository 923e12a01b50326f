"""Fixtures for the media tests: a real Janus on a private config, inside the test network namespace.

Tests marked ``media`` need the ``janus`` binary and the addresses of the namespace made by
``scripts/netns.sh up ember-test`` (Janus gathers no ICE candidates on loopback, so WebRTC goes over
the namespace's veth pair). Elsewhere they are skipped with the reason and the command to run them.
"""

from __future__ import annotations

import os
import shutil
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from emberrtc.media.janus_client import JanusClient
from emberrtc.media.janus_config import JanusConfig
from emberrtc.media.janus_process import Backoff, JanusProcess

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


def free_tcp_port() -> int:
    """A TCP port on loopback that is free right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def make_config(**overrides: object) -> JanusConfig:
    """A config for a test Janus: fresh loopback ports, ICE on the namespace address."""
    settings: dict[str, object] = {
        "http_port": free_tcp_port(),
        "admin_port": free_tcp_port(),
        "ice_enforce_list": MEDIA_IP,
    }
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
