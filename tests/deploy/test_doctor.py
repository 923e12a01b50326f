"""``ember doctor`` against a real ``ember serve`` (TLS, no media plane): a healthy deployment passes, and
each provoked failure is reported with its fix (Janus's checks are in tests/media/test_deployment.py)."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Self

import pytest

from emberrtc.config import Settings
from emberrtc.deploy.doctor import Doctor, Finding, read_env_file
from tests.support.database import database_url
from tests.support.ember_serve import EMBER, EmberServe
from tests.support.tls import ServerFiles, TestCA


def _problems(findings: list[Finding], check: str) -> list[Finding]:
    return [f for f in findings if f.check == check and not f.ok]


def _install(files: ServerFiles, cert: Path, key: Path) -> None:
    shutil.copy(files.cert, cert)
    shutil.copy(files.key, key)


class OffsetClock:
    def __init__(self, offset: float) -> None:
        self.offset = offset

    def now(self) -> float:
        import time

        return time.time() + self.offset


async def test_a_healthy_deployment_then_each_failure_with_its_fix(tmp_path: Path) -> None:
    ca = TestCA(tmp_path / "ca")
    cert, key = tmp_path / "fullchain.pem", tmp_path / "privkey.pem"
    _install(ca.issue("first", ips=("127.0.0.1",)), cert, key)
    data = tmp_path / "data"
    server = EmberServe(data, ca=ca.pem)
    env = {
        "EMBER_HOST": "127.0.0.1",
        "EMBER_PORT": str(server.port),
        "EMBER_TLS_CERT": str(cert),
        "EMBER_TLS_KEY": str(key),
        "EMBER_MEDIA_ENABLED": "false",
        "EMBER_DOCTOR_MIN_FREE_MB": "1",
    }
    env_file = tmp_path / "ember.env"
    env_file.write_text("# the unit's settings\n" + "".join(f'{k}="{v}"\n' for k, v in env.items()))
    assert read_env_file(env_file) == env
    server.extra_env = env
    await server.start()
    settings = replace(Settings().with_env(env), data_dir=data)
    try:
        r = await asyncio.to_thread(
            subprocess.run,
            [EMBER, "doctor", "--env-file", str(env_file), "--data-dir", str(data)],
            capture_output=True,
            text=True,
            env=server.env(),
        )
        assert r.returncode == 0, r.stdout + r.stderr
        lines = r.stdout.splitlines()
        for check in ("tls certificate", "public url", "listening", "janus", "storage", "database", "clock", "turn"):
            assert any(line.startswith(f"ok    {check}: ") for line in lines), (check, r.stdout)
        assert f"https://127.0.0.1:{server.port} answers" in r.stdout and lines[-1] == "no problem found"
        assert "turn: not configured" in r.stdout

        # Renewed files, but no reload: the server still presents the old certificate.
        _install(ca.issue("renewed", ips=("127.0.0.1",)), cert, key)
        [stale] = _problems(await Doctor(settings).run(), "listening")
        assert "not the file's" in stale.detail and "systemctl reload ember" in stale.fix

        # A key that does not belong to the certificate (a botched renewal).
        shutil.copy(ca.issue("other", ips=("127.0.0.1",)).key, key)
        [bad] = _problems(await Doctor(settings).run(), "tls certificate")
        assert "key does not belong" in bad.detail and "matching PEM pair readable" in bad.fix

        # A certificate that cannot be read at all.
        cert.unlink()
        cert.mkdir()
        [unreadable] = _problems(await Doctor(settings).run(), "tls certificate")
        assert str(cert) in unreadable.detail and "systemctl reload ember" in unreadable.fix
        cert.rmdir()

        # A certificate about to expire.
        _install(ca.issue("short", ips=("127.0.0.1",), days=5), cert, key)
        [expiring] = _problems(await Doctor(settings).run(), "tls certificate")
        assert "expires in 4.9 days" in expiring.detail or "expires in 5.0 days" in expiring.detail
        assert expiring.fix.startswith("renew it now")

        # Less free space than recordings need.
        [disk] = _problems(await Doctor(replace(settings, doctor_min_free_mb=2**40)).run(), "storage")
        assert "MiB free on the file system of" in disk.detail and "free space or grow the disk" in disk.fix

        # A data folder that cannot be written.
        [unwritable] = _problems(await Doctor(replace(settings, data_dir=tmp_path / "nowhere")).run(), "storage")
        assert "cannot write in" in unwritable.detail

        # The server stopped: nothing answers, and the command says so with exit status 1.
        assert server.stop() == 0
        r = await asyncio.to_thread(
            subprocess.run,
            [EMBER, "doctor", "--env-file", str(env_file), "--data-dir", str(data)],
            capture_output=True,
            text=True,
            env=server.env(),
        )
        assert r.returncode == 1, r.stdout
        assert f"FAIL  listening: nothing answers at https://127.0.0.1:{server.port}" in r.stdout
        assert "      fix: start the server (systemctl start ember" in r.stdout
    finally:
        server.stop()


@pytest.fixture(params=["sqlite", "postgres"])
def kind_and_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, str]]:
    with database_url(request.param, tmp_path) as url:
        yield request.param, url


async def test_database_and_clock(kind_and_url: tuple[str, str], tmp_path: Path) -> None:
    kind, url = kind_and_url
    if kind == "sqlite":
        (tmp_path / "ember.db").touch()
    settings = Settings(data_dir=tmp_path, database_url=url, media_enabled=False)
    good = await Doctor(settings).check_database_and_clock()
    assert all(f.ok for f in good) and good[0].detail.startswith(kind), good
    skewed = await Doctor(settings, clock=OffsetClock(120)).check_database_and_clock()
    if kind == "sqlite":
        # One machine, one clock: nothing to compare with.
        assert all(f.ok for f in skewed) and "nothing to compare" in skewed[1].detail
    else:
        [clock] = [f for f in skewed if not f.ok]
        assert clock.check == "clock" and "120" in clock.detail and "ahead of the database server's" in clock.detail
        assert "NTP" in clock.fix
        behind = await Doctor(settings, clock=OffsetClock(-30)).check_database_and_clock()
        assert any("behind" in f.detail for f in behind if not f.ok)
    unreachable = Settings(data_dir=tmp_path, database_url="postgresql://nobody:secret@127.0.0.1:9/none")
    [down] = await Doctor(unreachable, timeout=1).check_database_and_clock()
    assert not down.ok and "EMBER_DATABASE_URL" in down.fix and "secret" not in down.detail


async def test_missing_database_and_unknown_public_url(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "fresh", host="0.0.0.0", media_enabled=False)
    [db] = await Doctor(settings).check_database_and_clock()
    assert "no database in" in db.detail and "start the server once" in db.fix
    [url] = await Doctor(settings).check_public_url()
    assert not url.ok and url.fix.startswith("set EMBER_PUBLIC_URL")


async def test_every_interface_of_a_wildcard_listener_is_tried(tmp_path: Path) -> None:
    from emberrtc.media.ice_interfaces import machine_addresses

    env = {"EMBER_MEDIA_ENABLED": "false", "EMBER_PUBLIC_URL": "http://rtc.example.com"}
    server = EmberServe(tmp_path / "data", env=env, serve_args=["--host", "0.0.0.0"])
    await server.start()
    try:
        settings = Settings(data_dir=tmp_path / "data", host="0.0.0.0", port=server.port, media_enabled=False)
        listening = [f for f in await Doctor(settings).run() if f.check == "listening"]
        ipv4 = {c.ip for c in machine_addresses() if ":" not in c.ip and not c.ip.startswith("169.254.")}
        assert {f.detail for f in listening} == {f"http://{ip}:{server.port} answers" for ip in ipv4}
        assert all(f.ok for f in listening)
    finally:
        server.stop()
    # Listening on one address only: the others are reported, each with the fix.
    server = EmberServe(tmp_path / "data", env=env, serve_args=["--host", "127.0.0.1"])
    await server.start()
    try:
        listening = [f for f in await Doctor(replace(settings, port=server.port)).run() if f.check == "listening"]
        assert [f.ok for f in listening if "127.0.0.1" in f.detail] == [True]
        assert all("nothing answers" in f.detail and f.fix for f in listening if "127.0.0.1" not in f.detail)
    finally:
        server.stop()


class _LocalServer:
    """A TCP server on a free loopback port for the ``async with`` block; subclasses answer in ``_serve``."""

    async def __aenter__(self) -> Self:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = int(self.server.sockets[0].getsockname()[1])
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.server.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        raise NotImplementedError


class OldRedis(_LocalServer):
    """Redis 5 on the wire (no Redis 5 to test with): it does not know HELLO (RESP3, from 6.0) nor
    ``CLIENT SETINFO``, and answers PING, SELECT and ``INFO`` in RESP2. redis-py up to 8.1 gives up at the
    HELLO; from 8.2 it falls back to RESP2 and goes on, so the doctor must find the version in ``INFO``."""

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        info = "# Server\r\nredis_version:5.0.14\r\nredis_mode:standalone\r\n"
        try:
            while (header := await reader.readline()).startswith(b"*"):
                words = []
                for _ in range(int(header[1:])):
                    size = int((await reader.readline())[1:])
                    words.append((await reader.readexactly(size + 2))[:-2].decode())
                command = words[0].upper()
                if command == "PING":
                    answer = "+PONG\r\n"
                elif command == "SELECT":
                    answer = "+OK\r\n"
                elif command == "INFO":
                    answer = f"${len(info)}\r\n{info}\r\n"
                elif command == "CLIENT":
                    answer = f"-ERR Unknown subcommand or wrong number of arguments for '{words[1]}'.\r\n"
                else:
                    args = " ".join(f"'{w}'" for w in words[1:])
                    answer = f"-ERR unknown command `{words[0]}`, with args beginning with: {args}, \r\n"
                writer.write(answer.encode())
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, ValueError):
            pass
        finally:
            writer.close()


class SlowLink(_LocalServer):
    """A TCP forwarder to ``upstream`` adding ``delay`` seconds to every answer: a Redis far away."""

    def __init__(self, upstream: tuple[str, int], delay: float) -> None:
        self.upstream, self.delay = upstream, delay

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(*self.upstream)

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter, delay: float) -> None:
            try:
                while data := await src.read(65536):
                    await asyncio.sleep(delay)
                    dst.write(data)
                    await dst.drain()
            except ConnectionError:
                pass
            finally:
                dst.close()

        await asyncio.gather(pipe(reader, up_writer, 0.0), pipe(up_reader, writer, self.delay))


async def test_redis_of_a_cluster_then_each_failure_with_its_fix(tmp_path: Path) -> None:
    from redis.asyncio import Redis

    from tests.support.server import free_port

    real = "redis://127.0.0.1:6379/0"
    try:
        async with Redis.from_url(real, socket_connect_timeout=1) as probe:
            await probe.ping()
    except Exception as exc:  # noqa: BLE001 - any failure means no Redis to test with
        pytest.skip(f"Redis is not reachable at {real}: {exc!r}")
    settings = Settings(
        data_dir=tmp_path,
        database_url="postgresql://ember@127.0.0.1/ember",
        public_url="https://rtc.example.com",
        redis_url=real,
    )
    [ok] = await Doctor(settings).check_redis()
    assert ok.ok and ok.detail.startswith(f"{real}: Redis ") and "answers PING in" in ok.detail, ok
    # Without a cluster there is nothing to check (and nothing is printed).
    assert await Doctor(replace(settings, redis_url="", database_url="", public_url="")).check_redis() == []

    # Nothing listens there.
    [down] = await Doctor(replace(settings, redis_url=f"redis://127.0.0.1:{free_port()}/0"), timeout=1).check_redis()
    assert not down.ok and "does not answer" in down.detail and "systemctl start redis-server" in down.fix
    # A user this Redis does not have (the password is not printed).
    wrong = replace(settings, redis_url="redis://nobody:not-the-password@127.0.0.1:6379/0")
    [refused] = await Doctor(wrong).check_redis()
    assert not refused.ok and "refuses this node" in refused.detail and "not-the-password" not in refused.detail
    assert "redis://USER:PASSWORD@HOST" in refused.fix
    # Too old to be spoken to.
    async with OldRedis() as old:
        [aged] = await Doctor(replace(settings, redis_url=f"redis://127.0.0.1:{old.port}/0")).check_redis()
    assert not aged.ok and "older than 6.0" in aged.detail and "upgrade Redis" in aged.fix, aged
    # Which of the two it says depends on the client (see OldRedis); either names the cause.
    assert "it does not know HELLO" in aged.detail or "it is Redis 5.0.14" in aged.detail, aged
    # Far away: 80 ms a round trip.
    async with SlowLink(("127.0.0.1", 6379), 0.08) as far:
        [slow] = await Doctor(replace(settings, redis_url=f"redis://127.0.0.1:{far.port}/0")).check_redis()
    assert not slow.ok and "over 50 ms (EMBER_DOCTOR_MAX_REDIS_MS)" in slow.detail, slow
    assert "same data centre" in slow.fix
