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
