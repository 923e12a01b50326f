"""The embedded relay's log rotation (``turn_process.rotate_log``), with a writer that, like coturn, keeps the
log open in append mode and never reopens it. (The real relay's rotation is in test_turn_relay.py.)"""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from emberrtc.media.turn_process import TurnProcess, rotate_log


def test_rotation_bounds_the_log_and_the_writer_goes_on_at_its_start(tmp_path: Path) -> None:
    log = tmp_path / "turnserver.log"
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)  # as coturn opens it (fopen "a")
    try:
        assert not rotate_log(log, 1000)
        os.write(fd, b"a" * 600 + b"\n")
        assert not rotate_log(log, 1000)  # under the limit: left alone
        os.write(fd, b"b" * 600 + b"\n")
        assert rotate_log(log, 1000)
        older = tmp_path / "turnserver.log.1"
        assert older.read_bytes() == b"a" * 600 + b"\n" + b"b" * 600 + b"\n"
        assert stat.S_IMODE(older.stat().st_mode) == 0o600
        assert log.stat().st_size == 0
        # The writer's next line is at the start of the emptied file (no hole where the old lines were).
        os.write(fd, b"c" * 10 + b"\n")
        assert log.read_bytes() == b"c" * 10 + b"\n"
        # Many more lines: never more than the limit plus one line in the file, and one older file only.
        for n in range(500):
            os.write(fd, f"line {n:04d} ".encode() * 8 + b"\n")
            rotate_log(log, 1000)
            assert log.stat().st_size <= 1000 + 81
        assert sorted(p.name for p in tmp_path.iterdir()) == ["turnserver.log", "turnserver.log.1"]
        assert b"line 0499" in log.read_bytes() + older.read_bytes()
    finally:
        os.close(fd)


def test_no_log_yet_is_not_an_error(tmp_path: Path) -> None:
    assert not rotate_log(tmp_path / "turnserver.log", 1000)


def test_a_tiny_limit_is_refused(tmp_path: Path) -> None:
    from emberrtc.media.turn_config import TurnConfig

    config = TurnConfig(secret="s", allowed_peers=("192.0.2.1",))
    with pytest.raises(ValueError, match="log_max_bytes"):
        TurnProcess(config, tmp_path, log_max_bytes=10)


@pytest.mark.skipif(os.geteuid() != 0, reason="drops root to an unprivileged user")
def test_a_port_below_1024_without_the_capability_is_told_apart_from_a_busy_one(tmp_path: Path) -> None:
    import json
    import pwd

    from emberrtc.media.turn_config import TurnConfig
    from emberrtc.media.turn_process import TurnStartError, check_ports, ports_in_use

    config = TurnConfig(
        secret="s",
        allowed_peers=("192.0.2.1",),
        port=3482,
        tls_port=443,
        tls_cert=tmp_path / "c",
        tls_key=tmp_path / "k",
    )
    nobody = pwd.getpwnam("nobody")
    reader, writer = os.pipe()
    child = os.fork()
    if child == 0:  # as the service's user would be without CAP_NET_BIND_SERVICE
        try:
            os.setgid(nobody.pw_gid)
            os.setuid(nobody.pw_uid)
            found = ports_in_use(config)
            try:
                check_ports(config)
                message = ""
            except TurnStartError as exc:
                message = str(exc)
            os.write(writer, json.dumps([found, message]).encode())
        finally:
            os._exit(0)
    os.close(writer)
    with os.fdopen(reader) as pipe:
        found, message = json.loads(pipe.read())
    os.waitpid(child, 0)
    assert found == ["TCP 443 (not permitted)"]
    assert "may not listen on TCP 443" in message and "CAP_NET_BIND_SERVICE" in message
    assert "EMBER_TURN_TLS_PORT=5349" in message


def test_a_tls_port_held_by_another_program_names_the_alternative(tmp_path: Path) -> None:
    import socket

    from emberrtc.media.turn_config import TurnConfig
    from emberrtc.media.turn_process import TurnStartError, check_ports

    with socket.socket() as proxy:  # a web server holding the port (here a free one, not 443)
        proxy.bind(("0.0.0.0", 0))
        proxy.listen()
        held = proxy.getsockname()[1]
        config = TurnConfig(
            secret="s", allowed_peers=("192.0.2.1",), port=3483, tls_port=held, tls_cert=tmp_path, tls_key=tmp_path
        )
        with pytest.raises(TurnStartError) as refused:
            check_ports(config)
    assert f"in use by another program: TCP {held}." in str(refused.value)
    assert "reverse proxy (Caddy, nginx)" in str(refused.value) and "EMBER_TURN_TLS_PORT=5349" in str(refused.value)
