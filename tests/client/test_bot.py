"""``ember bot`` without a server: its help lists every exit status, and each early exit really has it."""

from __future__ import annotations

import asyncio
import re
import signal
import subprocess
import sys
from pathlib import Path

from emberrtc.client import bot
from tests.support.waiting import until

EMBER = str(Path(sys.executable).with_name("ember"))
ARGS = ["--app-id", "a" * 32, "--app-key", "k" * 32, "--room", "r", "--user", "u"]


def test_help_lists_every_exit_status() -> None:
    shown = subprocess.run([EMBER, "bot", "--help"], capture_output=True, text=True, check=True).stdout
    listed = {int(code) for code in re.findall(r"^\s+(\d+)\s{2,}\S", shown.split("exit status:")[1], re.MULTILINE)}
    assert listed == set(bot.EXIT_STATUSES) == {0, 1, 2, 3, 130}
    constants = {bot.EXIT_STOPPED, bot.EXIT_ERROR, bot.EXIT_REFUSED, bot.EXIT_ENDED, bot.EXIT_INTERRUPTED}
    assert constants == listed
    assert "--report-every SECONDS" in shown


def test_bad_arguments_exit_2() -> None:
    for extra in (["--color", "no-such-colour"], ["--report-every", "-1"], ["--tone", "loud"]):
        run = subprocess.run([EMBER, "bot", "--server", "http://127.0.0.1:9", *ARGS, *extra], capture_output=True)
        assert run.returncode == bot.EXIT_REFUSED, (extra, run.stderr)
        assert run.stderr, extra


def _closed_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_unreachable_server_exits_2_saying_so() -> None:
    port = _closed_port()
    run = subprocess.run([EMBER, "bot", "--server", f"http://127.0.0.1:{port}", *ARGS], capture_output=True, text=True)
    assert run.returncode == bot.EXIT_REFUSED
    assert f"cannot reach http://127.0.0.1:{port}" in run.stdout


async def test_ctrl_c_before_joining_exits_130() -> None:
    # A server that accepts the connection and never answers: the bot waits in its join.
    accepted = asyncio.Event()

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.set()
        await reader.read()  # until the bot goes away
        writer.close()

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    process = await asyncio.create_subprocess_exec(
        EMBER, "bot", "--server", f"http://127.0.0.1:{port}", *ARGS, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    try:
        await until(accepted.is_set, within=20, what="the bot to connect")
        process.send_signal(signal.SIGINT)
        async with asyncio.timeout(10):
            assert await process.wait() == bot.EXIT_INTERRUPTED
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
        server.close()
