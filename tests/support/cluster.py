"""A cluster as if on several machines: ``ember serve`` nodes, each in a network namespace of its own, and
PostgreSQL and Redis in another, all joined by a bridge (tests marked ``cluster``, docs/scaling.md).

Run it from inside a test network namespace (``scripts/netns.sh``; ``scripts/test`` does): the bridge is
made there, with the address the test's clients use, so nothing touches the machine's own network, and the
machine's own PostgreSQL and Redis are out of reach of the nodes. Janus ignores loopback for ICE
(DESIGN.md), so each node's Janus gathers on its namespace's bridge address, as on a machine of its own.

    with Cluster.start(tmp_path, nodes=3) as cluster:
        cluster.ember("tenant", "create", "acme", "--password", "password-1")  # on the cluster's database
        cluster.nodes[0].url  # http://10.78.0.11:8080, node-1
        cluster.status()  # ember cluster status --json: the live nodes
        cluster.kill9(cluster.nodes[2])

Needs root (``ip netns``), ``/usr/lib/postgresql/*/bin/{initdb,postgres}`` (run as the ``postgres`` user
through ``runuser``: PostgreSQL refuses to run as root), ``redis-server`` and ``janus``.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import glob
import json
import os
import pwd
import secrets
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from tests.support.ember_serve import EMBER, EmberServe
from tests.support.waiting import wait_for

#: The bridge's subnet: its first address is the test's (clients), then services, then nodes.
SUBNET = os.environ.get("EMBER_TEST_CLUSTER_SUBNET", "10.78.0")
CLIENT_IP = f"{SUBNET}.1"
SERVICES_IP = f"{SUBNET}.2"
PORT = 8080


def _postgres_bin() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/postgres"))
    return Path(found[-1]).parent if found else None


def _inside_test_namespace() -> bool:
    """Is this process in a named network namespace (``scripts/netns.sh``), so a bridge made here is private?"""
    r = subprocess.run(["ip", "netns", "identify"], capture_output=True, text=True)
    return r.returncode == 0 and bool(r.stdout.strip())


def skip_reason() -> str | None:
    """Why the cluster harness cannot run here, or None."""
    if os.geteuid() != 0:
        return "the cluster harness makes network namespaces: run as root"
    for tool in ("ip", "runuser", "redis-server", "janus"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed"
    if not _inside_test_namespace():
        return "not inside a test network namespace: scripts/netns.sh up NS && scripts/netns.sh exec NS pytest ..."
    if _postgres_bin() is None:
        return "PostgreSQL's server binaries (/usr/lib/postgresql/*/bin) are not installed"
    return None


def _run(*cmd: str) -> None:
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)}: {r.stderr.strip()}")


def _port_open(host: str, port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.5):
        return True
    return False


@dataclass
class Node:
    """One ``ember serve`` in its namespace."""

    node_id: str
    namespace: str
    ip: str
    serve: EmberServe

    @property
    def url(self) -> str:
        return self.serve.url


@dataclass
class Cluster:
    root: Path
    tag: str
    services_ns: str
    bridge: str
    env: dict[str, str]
    nodes: list[Node] = field(default_factory=list)
    namespaces: list[str] = field(default_factory=list)
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)
    #: The folder PostgreSQL's files live in (owned by ``postgres``).
    pg_dir: Path | None = None

    # -- set-up ---------------------------------------------------------------------------------------

    @classmethod
    @contextlib.contextmanager
    def start(cls, root: Path, *, nodes: int = 3, extra_env: dict[str, str] | None = None) -> Iterator[Cluster]:
        """Namespaces, bridge, PostgreSQL, Redis and ``nodes`` nodes, all removed at the end."""
        tag = f"{os.getpid() % 100000}"
        cluster = cls(
            root=root,
            tag=tag,
            services_ns=f"emc{tag}-svc",
            bridge=f"emcbr{tag}",
            env={},
        )
        try:
            cluster._network(nodes)
            cluster._postgres()
            cluster._redis()
            master_key = base64.urlsafe_b64encode(secrets.token_bytes(32)).decode()
            cluster.env = {
                "EMBER_DATABASE_URL": f"postgresql://postgres@{SERVICES_IP}:5432/ember",
                "EMBER_REDIS_URL": f"redis://{SERVICES_IP}:6379/0",
                "EMBER_MASTER_KEY": master_key,
                "EMBER_DOWNLOAD_URL_KEY": secrets.token_hex(32),
                "EMBER_RATE_LIMITS": "off",
                "EMBER_PASSWORD_SCRYPT_N": str(2**14),
                **(extra_env or {}),
            }
            for i in range(nodes):
                cluster.nodes.append(cluster._node(i))
            for node in cluster.nodes:
                node.serve.spawn()
            for node in cluster.nodes:
                cluster.wait_answering(node)
            yield cluster
        finally:
            cluster._teardown()

    def _namespace(self, name: str, ip: str, index: int) -> None:
        _run("ip", "netns", "add", name)
        self.namespaces.append(name)
        host_end = f"emv{self.tag}x{index}"[:15]
        _run("ip", "link", "add", host_end, "type", "veth", "peer", "name", "eth0", "netns", name)
        _run("ip", "link", "set", host_end, "master", self.bridge, "up")
        _run("ip", "netns", "exec", name, "ip", "addr", "add", f"{ip}/24", "dev", "eth0")
        _run("ip", "netns", "exec", name, "ip", "link", "set", "eth0", "up")
        _run("ip", "netns", "exec", name, "ip", "link", "set", "lo", "up")

    def _network(self, nodes: int) -> None:
        _run("ip", "link", "add", self.bridge, "type", "bridge")
        _run("ip", "addr", "add", f"{CLIENT_IP}/24", "dev", self.bridge)
        _run("ip", "link", "set", self.bridge, "up")
        self._namespace(self.services_ns, SERVICES_IP, 0)
        for i in range(nodes):
            self._namespace(f"emc{self.tag}-n{i + 1}", self.node_ip(i), i + 1)

    @staticmethod
    def node_ip(index: int) -> str:
        return f"{SUBNET}.{11 + index}"

    def _spawn(self, namespace: str, cmd: Sequence[str], log: Path) -> subprocess.Popen[bytes]:
        with log.open("ab") as out:
            proc = subprocess.Popen(
                ["ip", "netns", "exec", namespace, *cmd], stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )
        self.processes.append(proc)
        return proc

    def _postgres(self) -> None:
        bin_dir = _postgres_bin()
        assert bin_dir is not None
        pg = pwd.getpwnam("postgres")
        # Outside pytest's private temporary folder: the postgres user must reach it.
        self.pg_dir = Path(tempfile.mkdtemp(prefix="ember-cluster-pg-"))
        os.chown(self.pg_dir, pg.pw_uid, pg.pw_gid)
        data = self.pg_dir / "data"
        as_pg = ["runuser", "-u", "postgres", "--"]
        r = subprocess.run(
            [*as_pg, str(bin_dir / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres", "--no-sync"],
            capture_output=True,
            text=True,
        )
        assert r.returncode == 0, r.stderr
        with (data / "pg_hba.conf").open("a") as hba:
            hba.write(f"host all all {SUBNET}.0/24 trust\n")
        self._spawn(
            self.services_ns,
            [
                *as_pg,
                str(bin_dir / "postgres"),
                "-D",
                str(data),
                "-c",
                f"listen_addresses={SERVICES_IP}",
                "-c",
                "port=5432",
                "-c",
                f"unix_socket_directories={self.pg_dir}",
                "-c",
                "fsync=off",
                "-c",
                "max_connections=300",
            ],
            self.root / "postgres.log",
        )
        wait_for(lambda: _port_open(SERVICES_IP, 5432), 30, "PostgreSQL to listen")

        async def create() -> None:
            import asyncpg

            for _ in range(100):  # listening comes a moment before accepting logins
                try:
                    conn = await asyncpg.connect(f"postgresql://postgres@{SERVICES_IP}:5432/postgres", timeout=5)
                    break
                except (OSError, asyncpg.PostgresError):
                    await asyncio.sleep(0.1)
            else:
                raise AssertionError(f"PostgreSQL does not accept logins (see {self.root / 'postgres.log'})")
            try:
                await conn.execute("CREATE DATABASE ember")
            finally:
                await conn.close()

        asyncio.run(create())

    def _redis(self) -> None:
        self._spawn(
            self.services_ns,
            [
                "redis-server",
                "--bind",
                SERVICES_IP,
                "--port",
                "6379",
                "--save",
                "",
                "--appendonly",
                "no",
                "--protected-mode",
                "no",
            ],
            self.root / "redis.log",
        )
        wait_for(lambda: _port_open(SERVICES_IP, 6379), 30, "Redis to listen")

    def _node(self, index: int) -> Node:
        node_id = f"node-{index + 1}"
        ip = self.node_ip(index)
        namespace = self.namespaces[index + 1]
        data_dir = self.root / node_id
        data_dir.mkdir(parents=True, exist_ok=True)
        env = {
            **self.env,
            "EMBER_NODE_ID": node_id,
            "EMBER_HOST": ip,
            "EMBER_PUBLIC_URL": f"http://{ip}:{PORT}",
            "EMBER_MEDIA_IP": ip,
        }
        serve = EmberServe(data_dir, env=env, prefix=["ip", "netns", "exec", namespace])
        serve.port = PORT
        serve.url = f"http://{ip}:{PORT}"
        return Node(node_id, namespace, ip, serve)

    def wait_answering(self, node: Node, within: float = 60) -> None:
        def answers() -> bool:
            node.serve.check_alive()
            try:
                return httpx.get(f"{node.url}/healthz", timeout=2, trust_env=False).status_code == 200
            except httpx.TransportError:
                return False

        wait_for(answers, within, f"{node.node_id} to answer")

    # -- use ------------------------------------------------------------------------------------------

    def ember(self, *args: str) -> dict[str, Any]:
        """``ember ARGS --json`` on the first node's namespace and environment (the cluster's database)."""
        node = self.nodes[0]
        r = subprocess.run(
            [*node.serve.prefix, EMBER, *args, "--json", "--data-dir", str(node.serve.data_dir)],
            capture_output=True,
            text=True,
            env=node.serve.env(),
        )
        assert r.returncode == 0, r.stderr
        return dict(json.loads(r.stdout))

    def status(self) -> list[dict[str, Any]]:
        """``ember cluster status --json`` as an operator runs it (here, from the test's namespace)."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("EMBER_")}
        env["EMBER_REDIS_URL"] = self.env["EMBER_REDIS_URL"]
        r = subprocess.run([EMBER, "cluster", "status", "--json"], capture_output=True, text=True, env=env)
        assert r.returncode == 0, r.stderr
        return list(json.loads(r.stdout)["nodes"])

    def node(self, url: str) -> Node:
        """The node whose URL this is."""
        return next(n for n in self.nodes if n.url.rstrip("/") == url.rstrip("/"))

    def kill9(self, node: Node) -> None:
        """``kill -9`` of the node's ``ember serve`` (``ip netns exec`` execs it: the process is ember's own;
        its Janus dies with it)."""
        node.serve.kill9()

    # -- tear-down ------------------------------------------------------------------------------------

    def _teardown(self) -> None:
        for node in self.nodes:
            with contextlib.suppress(Exception):
                node.serve.stop()
        for proc in reversed(self.processes):
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        for name in self.namespaces:
            subprocess.run(["ip", "netns", "del", name], capture_output=True)
        subprocess.run(["ip", "link", "del", self.bridge], capture_output=True)
        if self.pg_dir is not None:
            shutil.rmtree(self.pg_dir, ignore_errors=True)
