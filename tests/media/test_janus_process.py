"""The Janus supervisor: start, readiness, restart after a crash, shutdown.

Tests marked ``media`` run the real Janus; the others use ``fake_janus.py`` and need nothing.
"""

from __future__ import annotations

import asyncio
import os
import signal
import stat
import sys
import time
from pathlib import Path

import httpx
import pytest

from emberrtc.media.janus_config import JanusConfig
from emberrtc.media.janus_process import Backoff, JanusNotInstalledError, JanusProcess, JanusStartError

FAKE_JANUS = Path(__file__).with_name("fake_janus.py")


def _fake_binary(tmp_path: Path, mode: str) -> Path:
    script = tmp_path / f"fake-janus-{mode}"
    script.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{FAKE_JANUS}" {mode} "$@"\n')
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return script


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


# -- without Janus ---------------------------------------------------------------------------------


async def test_missing_binary_says_how_to_install(tmp_path: Path, janus_config: JanusConfig) -> None:
    process = JanusProcess(janus_config, tmp_path / "conf", binary=tmp_path / "no-such-janus")
    with pytest.raises(JanusNotInstalledError, match="apt-get install janus"):
        await process.start()
    assert process.pid is None


async def test_start_failure_reports_janus_output(tmp_path: Path, janus_config: JanusConfig) -> None:
    process = JanusProcess(janus_config, tmp_path / "conf", binary=_fake_binary(tmp_path, "fail"))
    with pytest.raises(JanusStartError, match="status 3") as failure:
        await process.start()
    assert "cannot load configuration" in str(failure.value)
    assert not process.ready


async def test_sigkill_after_stop_timeout(tmp_path: Path, janus_config: JanusConfig) -> None:
    process = JanusProcess(
        janus_config, tmp_path / "conf", binary=_fake_binary(tmp_path, "ignore-term"), stop_timeout=0.3
    )
    await process.start()
    pid = process.pid
    assert pid is not None and process.ready
    started = time.monotonic()
    await process.stop()
    # SIGTERM was ignored, so only the SIGKILL after stop_timeout ended it.
    assert time.monotonic() - started >= 0.3
    assert not _alive(pid)
    assert not process.ready


async def test_restart_backs_off_exponentially(tmp_path: Path, janus_config: JanusConfig) -> None:
    backoff = Backoff(initial=0.05, factor=2.0, maximum=0.15)
    assert [backoff.next_delay() for _ in range(4)] == [0.05, 0.1, 0.15, 0.15]
    backoff.reset()
    assert backoff.next_delay() == 0.05

    process = JanusProcess(
        janus_config, tmp_path / "conf", binary=_fake_binary(tmp_path, "serve"), backoff=Backoff(initial=0.05)
    )
    ready_calls: list[int] = []
    process.on_ready = ready_calls.append
    async with process:
        for round_ in (2, 3):
            pid = process.pid
            assert pid is not None
            os.kill(pid, signal.SIGKILL)
            async with asyncio.timeout(10):
                await process.wait_ready(starts=round_)
            assert process.pid not in (None, pid)
    assert ready_calls == [1, 2, 3]
    assert process.unexpected_exits == 2
    # The fake got 0.05 s then 0.1 s of backoff; the next one would be 0.2 s.
    assert process.backoff.next_delay() == pytest.approx(0.2)


# -- real Janus ------------------------------------------------------------------------------------


@pytest.mark.media
async def test_janus_starts_restarts_and_stops(tmp_path: Path, janus_config: JanusConfig, janus_binary: str) -> None:
    config = janus_config
    process = JanusProcess(config, tmp_path / "janus", binary=janus_binary, backoff=Backoff(initial=0.05))

    started = time.monotonic()
    await process.start()
    startup = time.monotonic() - started
    try:
        assert process.ready and process.starts == 1
        # DESIGN.md measured ~50 ms; leave room for a loaded CI machine.
        assert startup < 3.0, f"janus took {startup:.2f} s to become ready"
        first_pid = process.pid
        assert first_pid is not None

        async with httpx.AsyncClient(trust_env=False) as http:
            info = (await http.get(f"{config.http_url}/info")).json()
            assert list(info["plugins"]) == ["janus.plugin.videoroom"]
            assert sorted(info["transports"]) == ["janus.transport.http", "janus.transport.websockets"]
            assert info["events"] == {}
            # The generated secret is enforced.
            refused = (await http.post(config.http_url, json={"janus": "create", "transaction": "t"})).json()
            assert refused["janus"] == "error" and refused["error"]["code"] == 403

        os.kill(first_pid, signal.SIGKILL)
        async with asyncio.timeout(10):
            await process.wait_ready(starts=2)
        second_pid = process.pid
        assert second_pid is not None and second_pid != first_pid
        assert process.unexpected_exits == 1
    finally:
        await process.stop()

    assert not process.ready and process.pid is None
    assert not _alive(second_pid)
    log = (tmp_path / "janus" / "janus.log").read_text()
    assert log.count("Starting Meetecho Janus") == 2
    # A clean SIGTERM shutdown, not a kill.
    assert log.rstrip().endswith("Bye!")
