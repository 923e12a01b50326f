"""The README's nginx route in front of a real ``ember serve``: HTTPS and the signalling WebSocket pass, and
Ember believes the proxy's ``X-Forwarded-Proto`` because ``EMBER_TRUSTED_PROXIES`` names it (and not
otherwise)."""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest
from websockets.asyncio.client import connect

from tests.support.ember_serve import EmberServe
from tests.support.server import free_port
from tests.support.tls import TestCA
from tests.support.waiting import until

ROOT = Path(__file__).resolve().parents[2]
NGINX = shutil.which("nginx") or "/usr/sbin/nginx"


def readme_nginx_block() -> str:
    found = re.findall(r"```nginx\n(.*?)```", (ROOT / "README.md").read_text(), flags=re.S)
    assert len(found) == 1, "the README shows one nginx configuration"
    return str(found[0])


@asynccontextmanager
async def _nginx(tmp_path: Path, ember_port: int, ca: TestCA) -> AsyncIterator[int]:
    files = ca.issue("proxy", dns=("rtc.example.com",), ips=("127.0.0.1",))
    port = free_port()
    site = readme_nginx_block()
    site = site.replace("listen 443 ssl;", f"listen 127.0.0.1:{port} ssl;")
    site = site.replace("/etc/letsencrypt/live/rtc.example.com/fullchain.pem", str(files.cert))
    site = site.replace("/etc/letsencrypt/live/rtc.example.com/privkey.pem", str(files.key))
    site = site.replace("http://127.0.0.1:8080", f"http://127.0.0.1:{ember_port}")
    prefix = tmp_path / "nginx"
    prefix.mkdir()
    conf = prefix / "nginx.conf"
    conf.write_text(
        f"daemon off;\nworker_processes 1;\npid {prefix}/nginx.pid;\nerror_log {prefix}/error.log;\n"
        f"events {{}}\nhttp {{\naccess_log off;\nclient_body_temp_path {prefix};\nproxy_temp_path {prefix};\n"
        f"{site}}}\n"
    )
    proc = await asyncio.create_subprocess_exec(
        NGINX, "-p", str(prefix), "-c", str(conf), stderr=asyncio.subprocess.DEVNULL
    )
    try:

        async def up() -> bool:
            assert proc.returncode is None, (prefix / "error.log").read_text()
            try:
                async with httpx.AsyncClient(verify=False, trust_env=False) as c:
                    return (await c.get(f"https://127.0.0.1:{port}/", timeout=2)).status_code == 200
            except httpx.TransportError:
                return False

        await until(up, within=20, what="nginx to proxy to Ember")
        yield port
    finally:
        proc.terminate()
        await proc.wait()


async def _projects_link(port: int, ca: Path, server: EmberServe) -> str:
    server.cli("tenant", "create", "proxyco", "--password", "proxy-password-1")
    identity = {
        "methods": ["password"],
        "password": {"user": {"name": "proxyco", "password": "proxy-password-1", "domain": {"name": "proxyco"}}},
    }
    body = {"auth": {"identity": identity, "scope": {"project": {"name": "ember"}}}}
    async with httpx.AsyncClient(verify=ssl.create_default_context(cafile=str(ca)), trust_env=False) as http:
        r = await http.post(f"https://127.0.0.1:{port}/v3/auth/tokens", json=body)
        assert r.status_code == 201, r.text
        projects = await http.get(
            f"https://127.0.0.1:{port}/v3/projects", headers={"X-Auth-Token": r.headers["X-Subject-Token"]}
        )
    return str(projects.json()["links"]["self"])


@pytest.mark.parametrize("trusted", [True, False])
async def test_readme_nginx_route(tmp_path: Path, trusted: bool) -> None:
    if shutil.which(NGINX) is None:
        pytest.skip("nginx is not installed")
    ca = TestCA(tmp_path / "ca")
    env = {"EMBER_MEDIA_ENABLED": "false", "EMBER_PUBLIC_URL": "https://rtc.example.com"}
    if trusted:
        env["EMBER_TRUSTED_PROXIES"] = "127.0.0.1"
    server = EmberServe(tmp_path / "data", env=env)
    await server.start()
    try:
        async with _nginx(tmp_path, server.port, ca) as port:
            link = await _projects_link(port, ca.pem, server)
            # Only a trusted proxy's X-Forwarded-Proto tells Ember the client came over HTTPS.
            assert link.startswith("https://" if trusted else "http://"), link
            # The signalling WebSocket goes through (upgrade headers): an unsigned join is answered by Ember.
            context = ssl.create_default_context(cafile=str(ca.pem))
            async with connect(f"wss://127.0.0.1:{port}/v1/rtc/signalling", ssl=context, proxy=None) as ws:
                await ws.send(json.dumps({"type": "join", "app_id": "x" * 32, "room_id": "r", "user_id": "u"}))
                answer = json.loads(await asyncio.wait_for(ws.recv(), 10))
            assert answer["type"] == "error" and answer["code"].startswith("RTC."), answer
            assert "downloads at https://rtc.example.com," in server.output()
    finally:
        server.stop()
