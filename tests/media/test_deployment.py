"""Ember deployed as on a server, inside the test namespace: HTTPS/WSS on a non-loopback address with a test
CA's certificate, Janus's candidates mapped to a "public" address (1:1 NAT), browsers with camera and
microphone in a secure context exchanging media, ICE-TCP carrying a call without UDP (and Python clients
still served over UDP by the ICE-Lite Janus it needs), and ``ember doctor`` seeing Janus stop.

The 1:1 NAT: Janus gathers on both veth addresses (10.77.0.1 and 10.77.0.2) and is told its public address
is 10.77.0.2. Every candidate it offers then carries 10.77.0.2 with the port of the socket it gathered, so
the only pair that can work is the one whose socket really is on 10.77.0.2: media flows only if the browser
uses the mapped address. The page is served from 10.77.0.1 (not localhost): it is a secure context only
because it is HTTPS with a certificate Chromium accepts (its key's SPKI hash is given to Chromium, which
keeps the page secure, unlike --ignore-certificate-errors).
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
from dataclasses import replace
from pathlib import Path
from urllib.parse import urlencode

import httpx
import pytest
from tests.media.chromium import Chromium, chromium_skip_reason
from tests.media.conftest import MEDIA_IP, PEER_IP
from tests.support.ember_serve import EMBER, EmberServe
from tests.support.tls import TestCA

from emberrtc.client import ColourVideoTrack, RoomClient
from emberrtc.config import Settings
from emberrtc.deploy.doctor import Doctor
from emberrtc.media.janus_process import janus_pids

pytestmark = pytest.mark.media

ROOM = "secure"
USERS = ("anna", "bruno")


async def _login_and_app(server: EmberServe) -> tuple[str, str]:
    server.cli("tenant", "create", "deployco", "--password", "deploy-password-1")
    identity = {
        "methods": ["password"],
        "password": {"user": {"name": "deployco", "password": "deploy-password-1", "domain": {"name": "deployco"}}},
    }
    body = {"auth": {"identity": identity, "scope": {"project": {"name": "ember"}}}}
    async with httpx.AsyncClient(base_url=server.url, verify=server.verify(), trust_env=False) as http:
        r = await http.post("/v3/auth/tokens", json=body)
        assert r.status_code == 201, r.text
        headers = {"X-Auth-Token": r.headers["X-Subject-Token"]}
        created = await http.post("/v2/apps", json={"app_name": "deploy"}, headers=headers)
        assert created.status_code == 201, created.text
        app_id = created.json()["app_id"]
        app = await http.get(f"/v2/apps/{app_id}", headers=headers)
    return app_id, app.json()["authentication"]["app_key"]


def _candidate_addresses(sdp: str) -> set[str]:
    # a=candidate:<foundation> <component> <transport> <priority> <address> <port> typ <type> ...
    return {m.group(1) for m in re.finditer(r"^a=candidate:\S+ \d+ \S+ \d+ (\S+) \d+ typ", sdp, re.MULTILINE)}


def _succeeded_to(pc: str, address: str) -> str:
    """A page predicate: ``pc`` has a candidate pair to ``address`` that passed its connectivity checks.
    (Not the selected pair's address: when Janus's own checks reach the browser first from its private
    address, Chromium may select that peer-reflexive pair, whose address it does not disclose.)"""
    return f"""(async () => {{
          const stats = await {pc}.getStats();
          let ok = false;
          stats.forEach((r) => {{
            if (r.type === 'candidate-pair' && r.state === 'succeeded') {{
              const remote = stats.get(r.remoteCandidateId);
              if (remote && remote.address === {address!r}) ok = true;
            }}
          }});
          return ok;
        }})()"""


async def test_browsers_over_https_on_a_public_address(tmp_path: Path) -> None:
    reason = chromium_skip_reason()
    if reason is not None:
        pytest.skip(reason)
    ca = TestCA(tmp_path / "ca")
    files = ca.issue("server", ips=(MEDIA_IP,))
    server = EmberServe(
        tmp_path / "data",
        env={"EMBER_MEDIA_IP": f"{MEDIA_IP},{PEER_IP}", "EMBER_MEDIA_PUBLIC_IP": PEER_IP},
        serve_args=["--host", MEDIA_IP, "--tls-cert", str(files.cert), "--tls-key", str(files.key)],
        host=MEDIA_IP,
        ca=ca.pem,
    )
    await server.start()
    try:
        # The generated Janus config maps the candidates; the start-up line says what clients are told.
        janus_jcfg = (tmp_path / "data" / "janus" / "janus.jcfg").read_text()
        assert f'nat_1_1_mapping = "{PEER_IP}"' in janus_jcfg and "keep_private_host = false" in janus_jcfg
        log = server.output()
        assert f"API, SDK and downloads at https://{MEDIA_IP}:{server.port}" in log
        assert f"signalling at wss://{MEDIA_IP}:{server.port}/v1/rtc/signalling" in log
        assert f"media (ICE, UDP) at {PEER_IP} (1:1 NAT of {MEDIA_IP}, {PEER_IP})" in log

        app_id, app_key = await _login_and_app(server)
        trust = [f"--ignore-certificate-errors-spki-list={files.spki}"]

        def demo_url(user: str) -> str:
            fields = {"app_id": app_id, "room": ROOM, "user": user, "app_key": app_key}
            return f"{server.url}/demo#{urlencode(fields)}"

        async with (
            Chromium(tmp_path / "anna", trust) as first,
            Chromium(tmp_path / "bruno", trust) as second,
        ):
            pages = dict(
                zip(
                    USERS,
                    await asyncio.gather(first.open(demo_url("anna")), second.open(demo_url("bruno"))),
                    strict=True,
                )
            )
            for page in pages.values():
                # HTTPS on a non-loopback address, certificate accepted: a secure context, so the camera and
                # microphone are there.
                assert await page.evaluate("[location.origin, window.isSecureContext]") == [server.url, True]
                assert await page.evaluate("typeof navigator.mediaDevices?.getUserMedia") == "function"
                await page.evaluate("document.getElementById('join').click()")
            for user, page in pages.items():
                status = await page.wait_for(
                    "['joined', 'failed'].includes(window.emberDemo.status) && window.emberDemo.status", 30
                )
                assert status == "joined", f"{user}: {await page.evaluate('window.emberDemo.error')}"
            for user, page in pages.items():
                await page.wait_for("window.emberDemo.room.framesDecoded().then((n) => n > 30)", 30)
                camera = "window.emberDemo.room.publications.get('camera')"
                kinds = await page.evaluate(f"{camera}.mediaStream.getTracks().map((t) => t.kind).sort()")
                assert kinds == ["audio", "video"], (user, kinds)
                # Janus's answer and offer carry only the public address, and the pairs in use reach it there.
                for pc in (f"{camera}.pc", "window.emberDemo.room.subscriberPc"):
                    sdp = await page.evaluate(f"{pc}.remoteDescription.sdp")
                    assert _candidate_addresses(sdp) == {PEER_IP}, (user, pc, sdp)
                    assert await page.wait_for(_succeeded_to(pc, PEER_IP), 10), (user, pc)
                # The other's audio arrives too.
                audio = await page.evaluate(
                    """(async () => {
                      let n = 0;
                      (await window.emberDemo.room.subscriberPc.getStats()).forEach((r) => {
                        if (r.type === 'inbound-rtp' && r.kind === 'audio') n += r.packetsReceived;
                      });
                      return n;
                    })()"""
                )
                assert audio > 0, (user, audio)
    finally:
        assert server.stop() == 0


async def test_doctor_sees_janus_stop(tmp_path: Path) -> None:
    server = EmberServe(tmp_path / "data", env={"EMBER_MEDIA_IP": MEDIA_IP, "EMBER_DOCTOR_MIN_FREE_MB": "1"})
    await server.start()
    settings = Settings(data_dir=tmp_path / "data", port=server.port, media_ip=MEDIA_IP, doctor_min_free_mb=1)
    try:
        findings = await Doctor(settings).run()
        assert [f.render() for f in findings if not f.ok] == []
        assert any(f.check == "janus" and f.detail.startswith("Janus 1.") for f in findings), findings
        [pid] = janus_pids(tmp_path / "data" / "janus")
        os.kill(pid, signal.SIGSTOP)  # stopped: alive (so not restarted) but answering nothing
        try:
            r = await asyncio.to_thread(
                subprocess.run,
                [EMBER, "doctor", "--data-dir", str(tmp_path / "data"), "--port", str(server.port)],
                capture_output=True,
                text=True,
                env=server.env(),
                timeout=60,
            )
        finally:
            os.kill(pid, signal.SIGCONT)
        assert r.returncode == 1, r.stdout + r.stderr
        assert "FAIL  janus: Janus does not answer on 127.0.0.1:" in r.stdout, r.stdout
        assert "fix: ember serve restarts Janus by itself: see" in r.stdout and "janus.log" in r.stdout
        assert "1 problem found" in r.stdout, r.stdout
        # An address no client can reach is reported with what to set.
        unreachable = await Doctor(replace(settings, media_ip="lo")).run()
        [ice] = [f for f in unreachable if f.check == "janus" and not f.ok]
        assert "EMBER_MEDIA_IP" in ice.fix
    finally:
        assert server.stop() == 0


# No UDP between the browser and Janus, as behind a firewall passing only TCP: every UDP candidate is dropped
# from what Janus offers or answers and from what the browser sends it, so neither side can reach the other's
# UDP sockets; only ICE-TCP candidates are left.
_TCP_ONLY = r"""(() => {
  const strip = (sdp) => sdp.split('\r\n')
    .filter((line) => !(line.startsWith('a=candidate') && / udp /i.test(line))).join('\r\n');
  const proto = RTCPeerConnection.prototype;
  const setRemote = proto.setRemoteDescription;
  proto.setRemoteDescription = function (d) { return setRemote.call(this, { type: d.type, sdp: strip(d.sdp) }); };
  const local = Object.getOwnPropertyDescriptor(proto, 'localDescription');
  Object.defineProperty(proto, 'localDescription', {
    get() { const d = local.get.call(this); return d && { type: d.type, sdp: strip(d.sdp) }; },
  });
  return true;
})()"""


async def test_ice_tcp_carries_a_call_without_udp(tmp_path: Path) -> None:
    reason = chromium_skip_reason()
    if reason is not None:
        pytest.skip(reason)
    server = EmberServe(
        tmp_path / "data",
        env={"EMBER_MEDIA_IP": MEDIA_IP, "EMBER_MEDIA_ICE_TCP": "true", "EMBER_MEDIA_PORTS": "21000-21999"},
    )
    await server.start()
    try:
        janus_jcfg = (tmp_path / "data" / "janus" / "janus.jcfg").read_text()
        assert "ice_tcp = true" in janus_jcfg and "ice_lite = true" in janus_jcfg
        assert "media (ICE, UDP and TCP (ICE-TCP))" in server.output()
        app_id, app_key = await _login_and_app(server)

        def demo_url(user: str) -> str:
            fields = {"app_id": app_id, "room": ROOM, "user": user, "app_key": app_key}
            return f"{server.url}/demo#{urlencode(fields)}"

        async with Chromium(tmp_path / "anna") as first, Chromium(tmp_path / "bruno") as second:
            pages = dict(
                zip(
                    USERS,
                    await asyncio.gather(first.open(demo_url("anna")), second.open(demo_url("bruno"))),
                    strict=True,
                )
            )
            for page in pages.values():
                assert await page.evaluate(_TCP_ONLY)
                await page.evaluate("document.getElementById('join').click()")
            for user, page in pages.items():
                status = await page.wait_for(
                    "['joined', 'failed'].includes(window.emberDemo.status) && window.emberDemo.status", 30
                )
                assert status == "joined", f"{user}: {await page.evaluate('window.emberDemo.error')}"
            for user, page in pages.items():
                await page.wait_for("window.emberDemo.room.framesDecoded().then((n) => n > 30)", 30)
                for pc in ("window.emberDemo.room.publications.get('camera').pc", "window.emberDemo.room.subscriberPc"):
                    sdp = await page.evaluate(f"{pc}.remoteDescription.sdp")
                    assert " udp " not in sdp.lower() and " tcp " in sdp.lower(), (user, sdp)
                    # The passive TCP candidates listen within EMBER_MEDIA_PORTS too: one range to open.
                    passive = re.findall(r"^a=candidate:\S+ \d+ tcp \d+ \S+ (\d+) typ host tcptype passive", sdp, re.M)
                    assert passive and all(21000 <= int(port) <= 21999 for port in passive), (user, passive)
                    protocol = await page.evaluate(
                        f"""(async () => {{
                          const stats = await {pc}.getStats();
                          let id = null;
                          stats.forEach((r) => {{ if (r.type === 'transport') id = r.selectedCandidatePairId; }});
                          return id && stats.get(stats.get(id).remoteCandidateId).protocol;
                        }})()"""
                    )
                    assert protocol == "tcp", (user, pc, protocol)

        # Janus in ICE-Lite mode still serves the Python client (aiortc, UDP): one publishes, one receives.
        carl = await RoomClient.join(server.url, app_id=app_id, room_id="lite", user_id="carl", app_key=app_key)
        dora = await RoomClient.join(server.url, app_id=app_id, room_id="lite", user_id="dora", app_key=app_key)
        try:
            await carl.publish("camera", video=ColourVideoTrack((200, 30, 30), width=160, height=120))
            await asyncio.wait_for(dora.wait_stream("carl"), 15)
            sub = await dora.subscribe("carl")
            assert sub.video is not None
            frames = [await asyncio.wait_for(sub.video.recv(), 15) for _ in range(10)]
            assert frames[-1].width == 160 and frames[-1].height == 120
        finally:
            await dora.leave()
            await carl.leave()
    finally:
        assert server.stop() == 0
