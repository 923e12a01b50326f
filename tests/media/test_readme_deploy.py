"""The README's "Deploy on a server", followed step by step on a fresh machine that is not this one.

The steps are the README's own ``bash deploy`` blocks (and its ``deploy-env`` settings file), read from the
README at test time, run in order as root with ``set -euo pipefail``. The "fresh machine" is:

- a new network namespace (the server's), whose only interface has a private address (10.88.0.1); its
  public address, 203.0.113.10, is on none of its interfaces but mapped 1:1 to the private one by nftables
  (DNAT in; the machine's own packets to its public address come back from it: a 1:1 NAT with hairpin,
  which the relay needs to reach Janus's candidates, all on the public address);
- a private mount namespace in which ``/etc``, ``/var`` and ``/opt`` are overlays whose writes land in
  the test's folder: ``ember install-service`` really creates its system user (``useradd`` on the overlay's
  ``/etc/passwd``), ``/var/lib/ember``, ``/etc/ember`` and the unit, and this machine's files stay as they
  were (checked at the end);
- ``systemctl`` and ``sudo`` are tests/support/service_manager.py, which runs the unit's ``ExecStart`` as
  systemd would (user, environment file, capabilities, umask; the journal is a file);
- ``certbot certonly`` is done: a test CA's certificate for ``rtc.example.com`` is in
  ``/etc/letsencrypt/live/rtc.example.com/``.

Where the README names something this test cannot do, one substitution each, and each must match the README
exactly once (so the README cannot drift from what is run): ``apt-get install`` only checks the packages are
installed (no network here), and ``python3 -m venv /opt/ember && pip install`` mounts the test's own venv
at ``/opt/ember`` (with ``PYTHONPATH`` naming the source under test).

Then from a client's network namespace, whose ``/etc/hosts`` says ``rtc.example.com`` is 203.0.113.10 and
whose firewall passes no UDP to the server but TURN's port 3478 (and nothing at all to its private
address): the HTTPS API answers with the certificate verified against the test CA, and two Python clients
join over WSS and exchange media through the relay. ``ember doctor`` (a README step) passes on the server.
"""

from __future__ import annotations

import json
import os
import pwd
import re
import shutil
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from tests.media.media_checks import assert_colour
from tests.support.tls import TestCA

pytestmark = [
    pytest.mark.media,
    pytest.mark.skipif(shutil.which("turnserver") is None, reason="coturn not installed: apt-get install coturn"),
    pytest.mark.skipif(shutil.which("nft") is None, reason="nftables not installed: apt-get install nftables"),
    pytest.mark.skipif(shutil.which("setpriv") is None, reason="setpriv (util-linux) not installed"),
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root: namespaces, mounts, useradd"),
]

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
VENV = Path(sys.executable).parents[1]
PUBLIC_IP, PRIVATE_IP, CLIENT_IP = "203.0.113.10", "10.88.0.1", "10.88.0.2"
NAME = "rtc.example.com"
PASSWORD = "deploy-password-1"

#: README text -> what this test runs instead (each must occur exactly once in the deploy blocks).
SUBSTITUTIONS = {
    "apt-get install -y janus coturn python3-venv": "dpkg -s janus coturn python3-venv >/dev/null",
    "python3 -m venv /opt/ember && /opt/ember/bin/pip install /path/to/ember": (
        f"mkdir -p /opt/ember && mount --bind {VENV} /opt/ember"
    ),
}


def overlay_skip_reason(folder: Path) -> str | None:
    """Why ``/etc`` cannot be overlaid in a mount namespace here (an overlay root, as in some containers), or None."""
    for name in ("upper", "work"):
        (folder / name).mkdir(parents=True)
    probe = subprocess.run(
        [
            "unshare",
            "--mount",
            "sh",
            "-c",
            f"mount -t overlay overlay -o lowerdir=/etc,upperdir={folder}/upper,workdir={folder}/work /etc",
        ],
        capture_output=True,
        text=True,
    )
    return None if probe.returncode == 0 else f"cannot overlay /etc here: {probe.stderr.strip()}"


def deploy_steps() -> tuple[list[str], str]:
    """The section's ``bash deploy`` blocks (substituted) and its ``deploy-env`` settings file."""
    text = README.read_text()
    section = text.split("\n## Deploy on a server\n", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```bash deploy\n(.*?)```", section, flags=re.S)
    [env_file] = re.findall(r"```bash deploy-env\n(.*?)```", section, flags=re.S)
    joined = "\n".join(blocks)
    for old, new in SUBSTITUTIONS.items():
        assert joined.count(old) == 1, f"the README's deploy steps no longer say {old!r}: update SUBSTITUTIONS"
        blocks = [b.replace(old, new) for b in blocks]
    return blocks, env_file


def _run(*args: str, input: str | None = None) -> None:
    subprocess.run(args, check=True, capture_output=True, text=True, input=input)


@contextmanager
def namespaces() -> Iterator[tuple[str, str]]:
    """The server's and the client's network namespaces, joined by a veth pair; the server's public
    address mapped 1:1 to its private one; the client's firewall."""
    server, client = f"ember-depl-s{os.getpid()}", f"ember-depl-c{os.getpid()}"
    _run("ip", "netns", "add", server)
    try:
        _run("ip", "netns", "add", client)
        try:
            veth_s, veth_c = f"dps{os.getpid() % 100000}", f"dpc{os.getpid() % 100000}"
            _run("ip", "-n", server, "link", "add", veth_s, "type", "veth", "peer", "name", veth_c, "netns", client)
            for ns, dev, ip in ((server, veth_s, PRIVATE_IP), (client, veth_c, CLIENT_IP)):
                _run("ip", "-n", ns, "link", "set", "lo", "up")
                _run("ip", "-n", ns, "addr", "add", f"{ip}/24", "dev", dev)
                _run("ip", "-n", ns, "link", "set", dev, "up")
            _run("ip", "-n", client, "route", "add", f"{PUBLIC_IP}/32", "via", PRIVATE_IP)
            # The cloud's 1:1 NAT, with hairpin: the machine's own packets to its public address come back to
            # it from its public address (so the relay reaches Janus's public candidates, and Janus answers it).
            _run("ip", "-n", server, "route", "add", f"{PUBLIC_IP}/32", "dev", veth_s)
            cloud_nat = f"""
                table ip cloudnat {{
                  chain pre {{ type nat hook prerouting priority -100; ip daddr {PUBLIC_IP} dnat to {PRIVATE_IP}; }}
                  chain out {{ type nat hook output priority -100; ip daddr {PUBLIC_IP} dnat to {PRIVATE_IP}; }}
                  chain post {{
                    type nat hook postrouting priority 100;
                    oifname "lo" ct original ip daddr {PUBLIC_IP} snat to {PUBLIC_IP}
                  }}
                }}"""
            _run("ip", "netns", "exec", server, "nft", "-f", "-", input=cloud_nat)
            # The client's side of the internet: the server only at its public address, and there only TCP
            # and TURN's UDP port (direct media to Janus's ports dropped, and counted).
            firewall = f"""
                table inet clientfw {{
                  chain out {{
                    type filter hook output priority 0; policy accept;
                    ip daddr {PRIVATE_IP} drop
                    ip daddr {PUBLIC_IP} udp dport != 3478 counter drop
                  }}
                  chain in {{ type filter hook input priority 0; policy accept; ip saddr {PRIVATE_IP} drop; }}
                }}"""
            _run("ip", "netns", "exec", client, "nft", "-f", "-", input=firewall)
            yield server, client
        finally:
            subprocess.run(["ip", "netns", "del", client], check=False)
    finally:
        subprocess.run(["ip", "netns", "del", server], check=False)


def harness_script(work: Path, blocks: list[str], env_file: str) -> str:
    """The server side, run as root in the server's network namespace and a private mount namespace."""
    env_path = env_file.splitlines()[0].lstrip("# ").strip()
    (work / "ember.env").write_text(env_file)
    steps = []
    for n, block in enumerate(blocks):
        (work / f"step{n}.sh").write_text(block)
    for n, block in enumerate(blocks):
        if "doctor" in block:
            # Started: wait for the line the README says to wait for (the service has up to 120 s).
            steps.append(
                textwrap.dedent("""\
                for _ in $(seq 1200); do
                  grep -q 'clients are told' "$EMBER_TEST_SERVICE_STATE/ember.journal" 2>/dev/null && break
                  [ -e "$EMBER_TEST_SERVICE_STATE/ember.status" ] && { echo "ember exited"; exit 1; }
                  sleep 0.1
                done
                grep -q 'clients are told' "$EMBER_TEST_SERVICE_STATE/ember.journal"
                """)
            )
            steps.append(
                f'echo "== step {n}"; bash -euo pipefail {work}/step{n}.sh < {work}/password > {work}/doctor.out'
            )
        else:
            steps.append(f'echo "== step {n}"; bash -euo pipefail {work}/step{n}.sh')
        if "install-service" in block:
            # The operator edits the settings file install-service wrote (its owner and mode stay).
            steps.append(f'echo "== settings"; cat {work}/ember.env > {env_path}')
    overlays = "\n".join(
        f'mkdir -p {work}/root/{d}.upper {work}/root/{d}.work && mount -t overlay overlay -o "lowerdir=/{p},'
        f'upperdir={work}/root/{d}.upper,workdir={work}/root/{d}.work" /{p}'
        for d, p in (("etc", "etc"), ("var", "var"), ("opt", "opt"))
    )
    python = Path(os.path.realpath(sys.executable))
    expose = ""
    if python.is_relative_to("/root"):
        # The test's interpreter is a build in /root (pyenv), which no other user can reach on this machine
        # (/root is 0700): on the "fresh machine" that one folder is visible, as a system Python would be.
        # (The README's own venv would be on the system's python3.)
        keep = python.relative_to("/root").parts[0]
        expose = (
            f"mkdir -p {work}/keep && mount --bind /root/{keep} {work}/keep && "
            f"mount -t tmpfs -o mode=0755 tmpfs /root && mkdir /root/{keep} && mount --bind {work}/keep /root/{keep}"
        )
    return f"""set -euo pipefail
# However the steps end, the service ends with them (systemd would stop it at shutdown).
trap 'systemctl stop ember >/dev/null 2>&1 || true' EXIT
mount --make-rprivate /
{overlays}
{expose}
# What `certbot certonly -d {NAME}` leaves.
mkdir -p /etc/letsencrypt/live/{NAME} /etc/letsencrypt/renewal-hooks/deploy
cp {work}/certs/fullchain.pem {work}/certs/privkey.pem /etc/letsencrypt/live/{NAME}/
{chr(10).join(steps)}
id ember > {work}/id.out
touch {work}/ready
read -r _ < {work}/stop
echo "== stop"; systemctl stop ember
"""


def in_client(client: str, hosts: Path, *command: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """``command`` in the client's namespace, with its own ``/etc/hosts``."""
    wrapper = 'mount --make-rprivate / && mount --bind "$0" /etc/hosts && exec "$@"'
    return subprocess.run(
        ["ip", "netns", "exec", client, "unshare", "--mount", "sh", "-c", wrapper, str(hosts), *command],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=150,
    )


LOGIN = """
import json, os, ssl, sys, httpx
base = sys.argv[1]
trust = ssl.create_default_context(cafile=os.environ["SSL_CERT_FILE"])  # the test CA, as the clients trust it
identity = {"methods": ["password"], "password": {"user": {"name": "acme", "password": sys.argv[2],
            "domain": {"name": "acme"}}}}
with httpx.Client(base_url=base, trust_env=False, verify=trust, timeout=60) as http:
    home = http.get("/")
    r = http.post("/v3/auth/tokens", json={"auth": {"identity": identity, "scope": {"project": {"name": "ember"}}}})
    r.raise_for_status()
    headers = {"X-Auth-Token": r.headers["X-Subject-Token"]}
    app = http.post("/v2/apps", json={"app_name": "deployed"}, headers=headers)
    app.raise_for_status()
    app_id = app.json()["app_id"]
    key = http.get(f"/v2/apps/{app_id}", headers=headers).json()["authentication"]["app_key"]
print(json.dumps({"home": home.status_code, "ember": "Ember" in home.text, "app_id": app_id, "app_key": key,
                  "tls": str(home.url)}))
"""


def test_readme_deploy_steps_on_a_fresh_machine(tmp_path: Path) -> None:
    blocks, env_file = deploy_steps()
    reason = overlay_skip_reason(tmp_path / "probe")
    if reason is not None:
        pytest.skip(reason)
    work = tmp_path / "deploy"
    (work / "certs").mkdir(parents=True)
    ca = TestCA(tmp_path / "ca")
    files = ca.issue("server", dns=(NAME,))
    shutil.copy(files.cert, work / "certs" / "fullchain.pem")
    shutil.copy(files.key, work / "certs" / "privkey.pem")
    (work / "password").write_text(PASSWORD + "\n")
    os.mkfifo(work / "stop")
    shims = work / "bin"
    shims.mkdir()
    for tool in ("systemctl", "sudo"):
        (shims / tool).write_text(f'#!/bin/sh\nexec {sys.executable} -m tests.support.service_manager {tool} "$@"\n')
        (shims / tool).chmod(0o755)
    (work / "harness.sh").write_text(harness_script(work, blocks, env_file))
    state = work / "state"
    src = os.environ.get("PYTHONPATH", "").split(":")[0] or str(ROOT / "src")
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("EMBER_")},
        "PATH": f"{shims}:{os.environ['PATH']}",
        "PYTHONPATH": f"{src}:{ROOT}",
        "EMBER_TEST_SERVICE_STATE": str(state),
    }
    started = time.monotonic()
    with namespaces() as (server, client):
        log = (work / "harness.log").open("w")
        harness = subprocess.Popen(
            ["ip", "netns", "exec", server, "unshare", "--mount", "bash", str(work / "harness.sh")],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=work,
        )
        try:
            while not (work / "ready").exists():
                if harness.poll() is not None:
                    journal = (state / "ember.journal").read_text() if (state / "ember.journal").exists() else ""
                    doctor = (work / "doctor.out").read_text() if (work / "doctor.out").exists() else ""
                    pytest.fail(
                        f"the README's steps failed:\n{(work / 'harness.log').read_text()}\n--- doctor:\n{doctor}"
                        f"\n--- journal:\n{journal[-4000:]}"
                    )
                assert time.monotonic() - started < 150, (work / "harness.log").read_text()
                time.sleep(0.2)  # polled, with the deadline above
            steps_took = time.monotonic() - started
            result = from_the_client(client, work, ca.pem)
            main_pid = int((state / "ember.pid").read_text())
            status = Path(f"/proc/{main_pid}/status").read_text()
        finally:
            if harness.poll() is None:
                with (work / "stop").open("w") as stop:
                    stop.write("stop\n")
            try:
                harness.wait(90)
            except subprocess.TimeoutExpired:
                harness.kill()
                raise
            log.close()
    harness_log = (work / "harness.log").read_text()
    assert harness.returncode == 0, harness_log

    # install-service's user, on the overlay only: this machine has no such user.
    assert re.match(r"uid=\d+\(ember\) gid=\d+\(ember\)", (work / "id.out").read_text())
    with pytest.raises(KeyError):
        pwd.getpwnam("ember")
    assert not Path("/var/lib/ember").exists() and not Path("/etc/ember").exists()
    # The service ran as that user, with CAP_NET_BIND_SERVICE only, and listened on 443 with it.
    uid = int(re.search(r"^Uid:\s+(\d+)", status, re.M)[1])  # type: ignore[index]
    assert uid != 0 and re.search(r"^CapAmb:\s+0000000000000400$", status, re.M), status
    journal = (state / "ember.journal").read_text()
    assert f"API, SDK and downloads at https://{NAME}," in journal, journal[-3000:]
    assert f"media (ICE, UDP) at {PUBLIC_IP} (1:1 NAT of {PRIVATE_IP}" in journal, journal[-3000:]
    # ember doctor, a README step: every check passed (and the relay and its UDP were among them).
    doctor = (work / "doctor.out").read_text()
    assert "no problem found" in doctor, doctor
    for check in ("tls certificate", "public url", "listening", "janus", "storage", "database", "turn", "udp"):
        assert re.search(rf"^ok    {check}: ", doctor, re.M), (check, doctor)
    assert f"https://{PRIVATE_IP} answers" in doctor and f"turns:{NAME}:5349?transport=tcp" in doctor, doctor
    # The client: HTTPS verified against the test CA by name, through the public address.
    login, peers = result
    assert login["home"] == 200 and login["ember"] and login["tls"] == f"https://{NAME}/", login
    # Two clients joined over WSS and exchanged media, every PeerConnection through the relay over UDP 3478.
    assert_colour(tuple(peers["received"]["alice"]), (30, 60, 220))
    assert_colour(tuple(peers["received"]["bob"]), (220, 30, 30))
    for name, pair in peers["pairs"].items():
        assert pair is not None and pair["local"] == "relay", (name, pair)
    [servers] = peers["ice_servers"]
    assert servers["urls"] == [
        f"turn:{NAME}:3478?transport=udp",
        f"turn:{NAME}:3478?transport=tcp",
        f"turns:{NAME}:5349?transport=tcp",  # 443 is Ember's own here
    ]
    assert all(chosen == [f"turn:{NAME}:3478?transport=udp"] for chosen in peers["chosen"].values()), peers
    assert int(peers["dropped"]) > 0, "the client's firewall had no direct media to drop"
    # The relay's log, in the service's data folder: the allocations of the clients' credentials.
    relay_log = (work / "root" / "var.upper" / "lib" / "ember" / "turn" / "turnserver.log").read_text(errors="replace")
    for username in peers["usernames"].values():
        assert f"username=<{username}>" in relay_log
    # Stopped as systemd stops it: SIGTERM, and Ember's clean exit.
    assert (state / "ember.status").read_text() == "0", journal[-3000:]
    assert steps_took < 120, steps_took


def from_the_client(client: str, work: Path, ca: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    hosts = work / "client-hosts"
    hosts.write_text(f"127.0.0.1 localhost\n{PUBLIC_IP} {NAME}\n")
    env = {**os.environ, "PYTHONPATH": f"{os.environ.get('PYTHONPATH', '')}:{ROOT}", "SSL_CERT_FILE": str(ca)}
    base = f"https://{NAME}"
    r = in_client(client, hosts, sys.executable, "-c", LOGIN, base, PASSWORD, env=env)
    assert r.returncode == 0, r.stderr[-4000:]
    login = json.loads(r.stdout.strip().splitlines()[-1])
    r = in_client(
        client,
        hosts,
        sys.executable,
        "-m",
        "tests.media.turn_peers",
        base,
        login["app_id"],
        login["app_key"],
        "deployed",
        env=env,
    )
    assert r.returncode == 0, r.stderr[-4000:]
    peers = json.loads(r.stdout.strip().splitlines()[-1])
    ruleset = subprocess.run(
        ["ip", "netns", "exec", client, "nft", "list", "table", "inet", "clientfw"], capture_output=True, text=True
    )
    found = re.search(r"counter packets (\d+)", ruleset.stdout)
    peers["dropped"] = found[1] if found else "0"
    return login, peers
