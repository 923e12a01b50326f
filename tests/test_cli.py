"""Acceptance tests for the ``ember`` command (DESIGN.md "Contract points other tools rely on").

The CLI runs as a real subprocess on a temporary data folder (SQLite); its output is used the way an
operator would use it: the printed AK/SK with the official SDK, the password with the IAM token API.
"""

from __future__ import annotations

import json
import os
import queue
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from huaweicloudsdkcloudrtc.v2 import AppReq, CreateAppRequest, ListAppsRequest

from tests import conftest
from tests.support.server import ServerThread, TenantInfo, free_port
from tests.support.waiting import wait_for

EMBER = str(Path(sys.executable).with_name("ember"))
HEX32 = re.compile(r"^[0-9a-f]{32}$")


def ember(*args: str, data_dir: Path | None = None) -> subprocess.CompletedProcess[str]:
    """Run ``ember ARGS [--data-dir D]`` on the embedded defaults (no EMBER_* from the environment)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("EMBER_")}
    cmd = [EMBER, *args] + (["--data-dir", str(data_dir)] if data_dir is not None else [])
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=60)


def create_tenant(data_dir: Path, name: str, password: str) -> dict[str, Any]:
    r = ember("tenant", "create", name, "--password", password, "--json", data_dir=data_dir)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)  # type: ignore[no-any-return]


def create_credential(data_dir: Path, name: str) -> dict[str, Any]:
    r = ember("credential", "create", "--tenant", name, "--json", data_dir=data_dir)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)  # type: ignore[no-any-return]


@pytest.fixture
def server_on(tmp_path: Path) -> Iterator[Callable[[], ServerThread]]:
    """Start (on demand) an in-process server on ``tmp_path``, stopped at the end of the test."""
    started: list[ServerThread] = []

    def start() -> ServerThread:
        started.append(ServerThread(conftest.make_settings(tmp_path)).start())
        return started[-1]

    try:
        yield start
    finally:
        for srv in started:
            srv.stop()


def test_help_explains_the_commands() -> None:
    top = ember("--help")
    assert top.returncode == 0, top.stderr
    for word in ("serve", "tenant", "credential", "SparkRTC"):
        assert word in top.stdout, word

    serve = ember("serve", "--help")
    assert serve.returncode == 0, serve.stderr
    for word in ("--host", "--port", "--data-dir"):
        assert word in serve.stdout, word

    tenant = ember("tenant", "create", "--help")
    assert tenant.returncode == 0, tenant.stderr
    for word in ("name", "--password", "--json", "--data-dir", "/v3/auth/tokens"):
        assert word in tenant.stdout, word

    cred = ember("credential", "create", "--help")
    assert cred.returncode == 0, cred.stderr
    for word in ("--tenant", "--json", "SK"):
        assert word in cred.stdout, word

    bare = ember()
    assert bare.returncode != 0
    assert "usage: ember" in bare.stderr


def test_revocation_commands_explain_themselves() -> None:
    listing = ember("credential", "list", "--help")
    assert listing.returncode == 0, listing.stderr
    for word in ("--tenant", "--json", "--data-dir", "never shown"):
        assert word in listing.stdout, word
    revoke = ember("credential", "revoke", "--help")
    assert revoke.returncode == 0, revoke.stderr
    for word in ("AK", "every", "EMBER_REVOCATION_CHECK_INTERVAL"):
        assert word in revoke.stdout, word
    # Whose tokens must be said: neither --user nor --tenant is a usage error, not a revocation of all.
    bare = ember("token", "revoke")
    assert bare.returncode == 2 and "--user or --tenant" in bare.stderr and "Traceback" not in bare.stderr


def test_tenant_and_credential_work_with_the_sdk(tmp_path: Path, server_on: Callable[[], ServerThread]) -> None:
    password = "pw-" + os.urandom(6).hex()
    made = create_tenant(tmp_path, "acme", password)
    assert set(made) == {"domain_id", "domain_name", "project_id", "user_name"}
    assert made["domain_name"] == "acme" and made["user_name"] == "acme"
    assert HEX32.fullmatch(made["domain_id"]) and HEX32.fullmatch(made["project_id"])

    cred = create_credential(tmp_path, "acme")
    assert set(cred) == {"ak", "sk", "project_id", "domain_id"}
    assert (cred["project_id"], cred["domain_id"]) == (made["project_id"], made["domain_id"])
    assert cred["ak"] and len(cred["sk"]) >= 20

    # Without --json the same facts are printed for people.
    text = ember("credential", "create", "--tenant", "acme", data_dir=tmp_path)
    assert text.returncode == 0, text.stderr
    assert made["project_id"] in text.stdout and "sk" in text.stdout.lower()

    srv = server_on()
    tenant = TenantInfo("acme", password, made["domain_id"], made["project_id"], cred["ak"], cred["sk"])
    sdk = conftest.sdk_client(srv, tenant)
    app_id = sdk.create_app(CreateAppRequest(body=AppReq(app_name="from-cli"))).app_id
    assert [a.app_id for a in sdk.list_apps(ListAppsRequest()).apps] == [app_id]
    token = conftest.token_for(srv, tenant)
    r = httpx.get(f"{srv.url}/v2/apps/{app_id}", headers={"X-Auth-Token": token})
    assert r.status_code == 200 and r.json()["app_name"] == "from-cli"

    # While the server runs: a new credential for this tenant, and a whole new tenant, work at once.
    cred2 = create_credential(tmp_path, "acme")
    assert cred2["ak"] != cred["ak"]
    sdk2 = conftest.sdk_client(srv, TenantInfo("acme", password, made["domain_id"], made["project_id"], **_keys(cred2)))
    assert sdk2.list_apps(ListAppsRequest()).count == 1
    assert sdk.list_apps(ListAppsRequest()).count == 1  # the first credential still works

    made2 = create_tenant(tmp_path, "globex", password + "2")
    cred3 = create_credential(tmp_path, "globex")
    globex = TenantInfo("globex", password + "2", made2["domain_id"], made2["project_id"], **_keys(cred3))
    assert conftest.sdk_client(srv, globex).list_apps(ListAppsRequest()).count == 0
    assert conftest.token_for(srv, globex)


def _keys(cred: dict[str, Any]) -> dict[str, str]:
    return {"ak": cred["ak"], "sk": cred["sk"]}


def test_cli_errors_are_clear(tmp_path: Path) -> None:
    create_tenant(tmp_path, "initech", "long-enough-pw")

    dup = ember("tenant", "create", "initech", "--password", "another-password", "--json", data_dir=tmp_path)
    assert dup.returncode != 0
    assert "initech" in dup.stderr and "exists" in dup.stderr
    assert "Traceback" not in dup.stderr
    assert dup.stdout == ""

    unknown = ember("credential", "create", "--tenant", "nobody", "--json", data_dir=tmp_path)
    assert unknown.returncode != 0
    assert "nobody" in unknown.stderr and "Traceback" not in unknown.stderr

    short = ember("tenant", "create", "hooli", "--password", "short", data_dir=tmp_path)
    assert short.returncode != 0
    assert "password" in short.stderr and "Traceback" not in short.stderr

    missing = ember("tenant", "create", "hooli", data_dir=tmp_path)
    assert missing.returncode != 0
    assert "--password" in missing.stderr


def _serve(data_dir: Path, stdout: int = subprocess.PIPE) -> tuple[subprocess.Popen[str], int]:
    """``ember serve`` on a free port and ``data_dir``, without the test run's ``EMBER_*`` variables; its
    standard error piped (text)."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("EMBER_")}
    proc = subprocess.Popen(
        [EMBER, "serve", "--port", str(port), "--data-dir", str(data_dir)],
        stdout=stdout,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    return proc, port


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_serve_answers_and_stops_on_signal(tmp_path: Path, sig: signal.Signals) -> None:
    proc, port = _serve(tmp_path)
    url = f"http://127.0.0.1:{port}"
    try:

        def answers() -> httpx.Response | None:
            if proc.poll() is not None:
                err = proc.stderr.read() if proc.stderr else ""
                pytest.fail(f"ember serve exited early ({proc.returncode}): {err}")
            try:
                r = httpx.get(f"{url}/openapi.json", timeout=2)
            except httpx.TransportError:
                return None
            return r if r.status_code == 200 else None

        r = wait_for(answers, timeout=30, what="ember serve to answer")
        paths = r.json()["paths"]
        assert "/v2/apps" in paths and "/v3/auth/tokens" in paths
        # The database is live: an unauthenticated call gets the catalogue's 401.
        assert httpx.get(f"{url}/v2/apps").json()["error_code"] == "RTC.00001001"
        assert (tmp_path / "ember.db").exists()
        assert (tmp_path / "ember.db-wal").exists()  # open while the server runs (checked again below)

        proc.send_signal(sig)
        try:
            _, err = proc.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            pytest.fail(f"ember serve did not stop within 20 s of {sig.name}")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()

    assert proc.returncode == 0, proc.returncode  # a requested stop is a clean exit, not a signal death
    assert "Traceback" not in err, err
    # A clean shutdown closed the database: SQLite removes its write-ahead log with the last connection.
    assert not (tmp_path / "ember.db-wal").exists(), "the database was not closed cleanly"
    with pytest.raises(httpx.TransportError):
        httpx.get(f"{url}/openapi.json", timeout=2)


def test_serve_says_what_clients_are_told_only_once_it_answers(tmp_path: Path) -> None:
    """The README has operators wait for the ``clients are told`` line before ``ember doctor``: when it is
    written, the server's start-up is done and its socket answers (the deploy test's doctor once ran in the
    gap and found nothing listening)."""
    proc, port = _serve(tmp_path, stdout=subprocess.DEVNULL)
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in proc.stderr or ()], daemon=True).start()
    seen: list[str] = []
    try:
        deadline = time.monotonic() + 30
        while not any("clients are told" in line for line in seen):
            assert time.monotonic() < deadline, "".join(seen)
            try:
                seen.append(lines.get(timeout=1))
            except queue.Empty:
                assert proc.poll() is None, "".join(seen)
        # At once, no retry: it answers.
        assert httpx.get(f"http://127.0.0.1:{port}/openapi.json", timeout=5).status_code == 200
        started = next(i for i, line in enumerate(seen) if "Uvicorn running on" in line)
        told = next(i for i, line in enumerate(seen) if "clients are told" in line)
        assert started < told, "".join(seen)
        # A fresh data folder: the next line says how to make the first tenant.
        assert "no tenant yet" in lines.get(timeout=5)
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def _janus_pids(config_dir: Path) -> list[int]:
    """Janus processes running on the config folder (from /proc: no process tools needed)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if cmdline and cmdline[0].endswith(b"janus") and str(config_dir).encode() in b" ".join(cmdline):
            pids.append(int(entry.name))
    return pids


def test_serve_without_janus_says_how_to_install_it(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("EMBER_")}
    env["EMBER_JANUS_BINARY"] = str(tmp_path / "no-such-janus")
    r = subprocess.run(
        [EMBER, "serve", "--port", str(free_port()), "--data-dir", str(tmp_path)],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert r.returncode == 2
    assert "apt-get install janus" in r.stderr and "Traceback" not in r.stderr


def test_serve_on_a_port_in_use_says_what_to_do(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("EMBER_")}
    env["EMBER_MEDIA_ENABLED"] = "false"
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        r = subprocess.run(
            [EMBER, "serve", "--port", str(port), "--data-dir", str(tmp_path)],
            capture_output=True,
            text=True,
            env=env,
            timeout=60,
        )
    assert r.returncode == 2
    assert f"127.0.0.1:{port} is already in use" in r.stderr and "--port N" in r.stderr
    assert "Traceback" not in r.stderr


@pytest.mark.skipif(shutil.which("janus") is None, reason="Janus not installed: apt-get install janus")
@pytest.mark.parametrize(
    ("env", "says"),
    [
        ({"EMBER_TURN_BINARY": "/no/such/turnserver"}, "apt-get install coturn"),
        # Janus gathers on an interface (not one address): the relay's address for clients cannot be guessed.
        ({"EMBER_TURN_BINARY": "/bin/true", "EMBER_MEDIA_IP": "{interface}"}, "set EMBER_TURN_HOST"),
    ],
)
def test_serve_with_an_embedded_relay_it_cannot_run_says_what_to_do(
    tmp_path: Path, env: dict[str, str], says: str
) -> None:
    run_env = {k: v for k, v in os.environ.items() if not k.startswith("EMBER_")}
    from emberrtc.media.ice_interfaces import usable_addresses

    interfaces = [c.interface for c in usable_addresses("")]
    if not interfaces:
        pytest.skip("no network interface but loopback")
    run_env.update({"EMBER_TURN": "embedded", **{k: v.format(interface=interfaces[0]) for k, v in env.items()}})
    r = subprocess.run(
        [EMBER, "serve", "--port", str(free_port()), "--data-dir", str(tmp_path)],
        capture_output=True,
        text=True,
        env=run_env,
        timeout=60,
    )
    assert r.returncode == 2, r.stderr
    assert says in r.stderr and "Traceback" not in r.stderr


@pytest.mark.skipif(shutil.which("janus") is None, reason="Janus not installed: apt-get install janus")
def test_serve_runs_janus_and_stops_it(tmp_path: Path) -> None:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("EMBER_")}
    proc = subprocess.Popen(
        [EMBER, "serve", "--port", str(port), "--data-dir", str(tmp_path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:

        def answers() -> bool:
            if proc.poll() is not None:
                err = proc.stderr.read() if proc.stderr else ""
                pytest.fail(f"ember serve exited early ({proc.returncode}): {err}")
            try:
                return httpx.get(f"http://127.0.0.1:{port}/openapi.json", timeout=2).status_code == 200
            except httpx.TransportError:
                return False

        wait_for(answers, timeout=30, what="ember serve to answer")
        assert len(_janus_pids(tmp_path / "janus")) == 1
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert _janus_pids(tmp_path / "janus") == []


def test_bot_help_lists_its_options() -> None:
    r = ember("bot", "--help")
    assert r.returncode == 0, r.stderr
    for option in ("--server", "--app-id", "--app-key", "--room", "--user", "--color", "--tone", "--screen", "--codec"):
        assert option in r.stdout, option
    bad = ember(
        "bot",
        "--server",
        "http://127.0.0.1:9",
        "--app-id",
        "a",
        "--app-key",
        "k",
        "--room",
        "r",
        "--user",
        "u",
        "--color",
        "plaid",
    )
    assert bad.returncode == 2 and "unknown colour" in bad.stdout + bad.stderr


def test_usage_prints_recorded_and_transcoded_seconds_per_day(tmp_path: Path) -> None:
    import asyncio

    from cryptography.fernet import Fernet
    from sqlalchemy.orm import Session

    from emberrtc.domain.secrets import SecretBox
    from emberrtc.domain.usage import record_file
    from emberrtc.store.database import default_url
    from tests.support.database import open_database, seed_app

    create_tenant(tmp_path, "umbrella", "long-enough-pw")  # migrates the data folder's database
    midnight = 1_800_057_600.0  # 2027-01-16T00:00:00Z

    async def seed() -> str:
        db = await open_database(default_url(tmp_path))
        try:
            app_id = await seed_app(db, SecretBox(Fernet.generate_key()), callback_url=None)
            files = [  # (object, start, end, transcoded): a VP8 file across midnight, an H.264 one after it
                ("a.mp4", midnight - 30, midnight + 30, True),
                ("b.mp4", midnight + 30, midnight + 90.5, False),
            ]

            def work(s: Session) -> None:
                for obj, start, end, transcoded in files:
                    record_file(
                        s,
                        app_id=app_id,
                        job_id="job1",
                        object_name=obj,
                        record_format="MP4",
                        start_time=start,
                        end_time=end,
                        transcoded=transcoded,
                        width=640,
                        height=360,
                        now=midnight,
                    )

            await db.run(work)
            return app_id
        finally:
            await db.close()

    app_id = asyncio.run(seed())

    r = ember("usage", "--app-id", app_id, "--json", data_dir=tmp_path)
    assert r.returncode == 0, r.stderr
    got = json.loads(r.stdout)
    assert got["days"] == [
        {"day": "2027-01-15", "recorded_seconds": 30.0, "transcoded_seconds": 30.0, "files": 1},
        {"day": "2027-01-16", "recorded_seconds": 90.5, "transcoded_seconds": 30.0, "files": 2},
    ]
    assert (got["recorded_seconds"], got["transcoded_seconds"]) == (120.5, 60.0)

    one = ember("usage", "--app-id", app_id, "--from", "2027-01-16", "--to", "2027-01-16", "--json", data_dir=tmp_path)
    assert one.returncode == 0, one.stderr
    assert [d["day"] for d in json.loads(one.stdout)["days"]] == ["2027-01-16"]

    text = ember("usage", "--app-id", app_id, "--to", "2027-01-15", data_dir=tmp_path)
    assert text.returncode == 0, text.stderr
    lines = text.stdout.splitlines()
    assert "recorded" in lines[0] and "transcoded" in lines[0]
    assert lines[1].split() == ["2027-01-15", "30.000", "30.000", "1"]
    assert lines[2].split() == ["total", "30.000", "30.000", "1"]

    empty = ember("usage", "--app-id", app_id, "--from", "2030-01-01", data_dir=tmp_path)
    assert empty.returncode == 0 and "no recording" in empty.stdout

    unknown = ember("usage", "--app-id", "0" * 32, data_dir=tmp_path)
    assert unknown.returncode == 2 and "0" * 32 in unknown.stderr and "Traceback" not in unknown.stderr
    bad = ember("usage", "--app-id", app_id, "--from", "16/01/2027", data_dir=tmp_path)
    assert bad.returncode == 2 and "YYYY-MM-DD" in bad.stderr and "Traceback" not in bad.stderr

    helped = ember("usage", "--help")
    assert helped.returncode == 0
    for word in ("--app-id", "--from", "--to", "--json", "--data-dir", "UTC", "transcoded", "VP8"):
        assert word in helped.stdout, word


def test_a_bad_setting_is_refused_with_its_name(tmp_path: Path) -> None:
    env = {**os.environ, "EMBER_AUTO_RECORD_MAX_IDLE_TIME": "2"}
    r = subprocess.run(
        [EMBER, "tenant", "create", "x", "--password", "p-1234567", "--data-dir", str(tmp_path)],
        capture_output=True,
        text=True,
        env=env,
    )
    assert r.returncode == 2
    assert "auto_record_max_idle_time" in r.stderr and "Traceback" not in r.stderr
    env["EMBER_AUTO_RECORD_MAX_IDLE_TIME"] = "soon"
    r = subprocess.run([EMBER, "serve", "--data-dir", str(tmp_path)], capture_output=True, text=True, env=env)
    assert r.returncode == 2 and "Traceback" not in r.stderr


def test_cluster_mode_on_sqlite_is_refused_at_start(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("EMBER_")}
    env["EMBER_REDIS_URL"] = "redis://127.0.0.1:6379/0"
    r = subprocess.run(
        [EMBER, "serve", "--data-dir", str(tmp_path)], capture_output=True, text=True, env=env, timeout=60
    )
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "cluster mode (EMBER_REDIS_URL) needs EMBER_DATABASE_URL on PostgreSQL" in r.stderr
    assert not (tmp_path / "ember.db").exists()  # refused before anything was made


def test_cluster_node_whose_redis_does_not_answer_is_refused_at_start(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("EMBER_")}
    env.update(
        {
            "EMBER_REDIS_URL": f"redis://:redis-secret@127.0.0.1:{free_port()}/0",
            "EMBER_DATABASE_URL": "postgresql://ember@127.0.0.1:1/never-reached",
            "EMBER_PUBLIC_URL": "http://10.0.0.1:8080",
            "EMBER_MEDIA_ENABLED": "false",
        }
    )
    data = tmp_path / "data"
    r = subprocess.run([EMBER, "serve", "--data-dir", str(data)], capture_output=True, text=True, env=env, timeout=60)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "the cluster's Redis at 127.0.0.1:" in r.stderr and "does not answer" in r.stderr
    assert "redis-secret" not in r.stderr
    assert not data.exists()  # refused before anything was made


def test_cluster_status_needs_a_redis_url_that_answers() -> None:
    r = ember("cluster", "status")
    assert r.returncode == 2 and "EMBER_REDIS_URL" in r.stderr and "Traceback" not in r.stderr
    r = ember("cluster", "status", "--redis-url", f"redis://127.0.0.1:{free_port()}/0")
    assert r.returncode == 2 and "the cluster's Redis does not answer" in r.stderr and "Traceback" not in r.stderr


def test_secrets_from_a_file_or_standard_input_into_a_private_data_folder(tmp_path: Path) -> None:
    """Passwords need not be arguments (visible in ``ps``); the data folder and its files are the owner's
    only, also when the folder existed world-readable (issue 11, item 10)."""
    data = tmp_path / "data"
    data.mkdir()
    data.chmod(0o755)
    secrets_dir = tmp_path / "secrets"
    secrets_dir.mkdir()
    (secrets_dir / "pw").write_text("password-from-a-file\n")
    r = ember("tenant", "create", "filed", "--password-file", str(secrets_dir / "pw"), "--json", data_dir=data)
    assert r.returncode == 0, r.stderr
    env = {k: v for k, v in os.environ.items() if not k.startswith("EMBER_")}
    piped = subprocess.run(
        [EMBER, "tenant", "create", "piped", "--password-file", "-", "--json", "--data-dir", str(data)],
        input="password-from-stdin\n",
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert piped.returncode == 0, piped.stderr
    both = ember("tenant", "create", "x", "--password", "p-12345678", "--password-file", "-", data_dir=data)
    assert both.returncode == 2 and "not allowed with" in both.stderr
    empty = subprocess.run(
        [EMBER, "tenant", "create", "y", "--password-file", "-", "--data-dir", str(data)],
        input="",
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert empty.returncode == 2 and "no password" in empty.stderr

    assert data.stat().st_mode & 0o777 == 0o700
    made = [p for p in data.rglob("*")]
    assert any(p.name == "ember.db" for p in made) and any(p.name == "master.key" for p in made)
    for path in made:
        assert path.stat().st_mode & 0o077 == 0, f"{path} is {oct(path.stat().st_mode & 0o777)}"

    srv = ServerThread(conftest.make_settings(data)).start()
    try:
        for name, password in (("filed", "password-from-a-file"), ("piped", "password-from-stdin")):
            info = json.loads((r if name == "filed" else piped).stdout)
            tenant = TenantInfo(name, password, info["domain_id"], info["project_id"], "", "")
            assert conftest.token_for(srv, tenant)
    finally:
        srv.stop()


def test_bot_reads_its_app_key_from_a_file(tmp_path: Path) -> None:
    base = ["bot", "--server", "http://127.0.0.1:9", "--app-id", "a" * 32, "--room", "r", "--user", "u"]
    missing = ember(*base, "--app-key-file", str(tmp_path / "absent"))
    assert missing.returncode == 2 and "cannot read the app key" in missing.stderr
    assert "Traceback" not in missing.stderr
    assert "--app-key-file" in ember("bot", "--help").stdout
