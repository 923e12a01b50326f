"""Unauthenticated abuse against a real ``ember serve``, with a client measuring latency meanwhile (issue 11).

One client measures ``GET /v2/apps/{app_id}`` (IAM token) for ``--seconds`` on an idle server (the
baseline), then again while, on loopback and unauthenticated:

- 8 connections stream 1 GB bodies to ``POST /v3/auth/tokens`` (4 announcing ``Content-Length``, 4 chunked),
  each starting again when refused;
- one connection sends a 200 MB header;
- 200 connections send their headers a byte a second (slowloris), each reconnecting when closed;
- ``--idle-jobs`` (2,000) recording jobs of another tenant wait in ``INIT`` for media that never comes
  (``max_idle_time`` 43,200 s, the most the spec allows), made before the baseline; they are spread over
  that tenant's apps, ``--jobs-per-app`` (100, Ember's default cap) each, so at most 2,000 with 20 apps.

Every loop is bounded by a byte count and the phase's deadline. Printed: the server's peak RSS growth over
its idle RSS, the client's p50/p99 in both phases, and what the attackers were answered.
Targets: RSS growth under 50 MB, attack p99 at most twice the baseline.
"""

from __future__ import annotations

import argparse
import collections
import multiprocessing
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

GB = 1024**3


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


class Sampler(threading.Thread):
    """The server's peak RSS, sampled every 20 ms."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid, self.peak, self.stop = pid, 0, threading.Event()

    def run(self) -> None:
        while not self.stop.wait(0.02):
            self.peak = max(self.peak, rss_kb(self.pid))


def measure(url: str, token: str, seconds: float) -> list[float]:
    """Latencies (ms) of back-to-back GETs for ``seconds``."""
    latencies: list[float] = []
    with httpx.Client(headers={"X-Auth-Token": token}, timeout=30, trust_env=False) as client:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            t = time.perf_counter()
            r = client.get(url)
            latencies.append((time.perf_counter() - t) * 1000)
            assert r.status_code == 200, r.text
    return latencies


def first_status(sock: socket.socket) -> int:
    try:
        data = sock.recv(1024)
        return int(data.split()[1]) if data.startswith(b"HTTP/") else 0
    except (OSError, IndexError, ValueError):
        return 0


def big_bodies(port: int, chunked: bool, end: float, answers: collections.Counter[str]) -> None:
    chunk = b"x" * 65536
    while time.monotonic() < end:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
            head = "POST /v3/auth/tokens HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            head += "Transfer-Encoding: chunked\r\n\r\n" if chunked else f"Content-Length: {GB}\r\n\r\n"
            sent = 0
            try:
                sock.sendall(head.encode())
                while sent < GB and time.monotonic() < end:
                    sock.sendall(b"10000\r\n" + chunk + b"\r\n" if chunked else chunk)
                    sent += len(chunk)
            except OSError:
                pass
            answers[f"body {'chunked' if chunked else 'length'}: {first_status(sock)}"] += 1


def big_header(port: int, end: float, answers: collections.Counter[str]) -> None:
    while time.monotonic() < end:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
            try:
                sock.sendall(b"GET /v2/apps HTTP/1.1\r\nHost: x\r\nX-Big: ")
                for _ in range(200 * 1024 * 1024 // 65536):
                    sock.sendall(b"a" * 65536)
                    if time.monotonic() > end:
                        break
            except OSError:
                pass
            answers[f"200 MB header: {first_status(sock)}"] += 1


def slow_client(port: int, end: float, answers: collections.Counter[str]) -> None:
    request = b"GET /v2/apps HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 4096
    while time.monotonic() < end:
        try:
            sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        except OSError:
            answers["slow: connect failed"] += 1
            time.sleep(1)
            continue
        with sock:
            try:
                for byte in request:
                    if time.monotonic() > end:
                        break
                    sock.sendall(bytes([byte]))
                    time.sleep(1)  # the attack itself: a byte a second
            except OSError:
                pass
            answers[f"slow: {first_status(sock)}"] += 1


def run_attack(port: int, seconds: float, slow: int, results: multiprocessing.Queue[dict[str, int]]) -> None:
    """Every attacker for ``seconds``, as threads of this process; puts the tally of their answers."""
    answers: collections.Counter[str] = collections.Counter()
    end = time.monotonic() + seconds
    attackers = [threading.Thread(target=big_bodies, args=(port, i % 2 == 1, end, answers)) for i in range(8)]
    attackers.append(threading.Thread(target=big_header, args=(port, end, answers)))
    attackers += [threading.Thread(target=slow_client, args=(port, end, answers)) for _ in range(slow)]
    for t in attackers:
        t.daemon = True
        t.start()
    for t in attackers:
        t.join(timeout=seconds + 15)
    results.put(dict(answers))


def sign_in(base: str, tenant: str) -> str:
    user = {"name": tenant, "password": f"{tenant}-password", "domain": {"name": tenant}}
    auth = {"auth": {"identity": {"methods": ["password"], "password": {"user": user}}}}
    return httpx.post(f"{base}/v3/auth/tokens", json=auth, timeout=30).headers["X-Subject-Token"]


def idle_jobs(base: str, token: str, count: int, per_app: int) -> int:
    """``count`` single-stream jobs of the token's tenant waiting in INIT, ``per_app`` in each of its apps."""
    made = 0
    with httpx.Client(base_url=base, headers={"X-Auth-Token": token}, timeout=30, trust_env=False) as c:
        project_id = c.get("/v3/projects").raise_for_status().json()["projects"][0]["id"]
        for n in range(0, count, per_app):
            app = c.post("/v2/apps", json={"app_name": f"idle{n}"}).raise_for_status().json()["app_id"]
            rule = {
                "obs_addr": {"location": "local", "project_id": project_id, "bucket": "idle"},
                "record_formats": ["MP4"],
                "mp4_config": {"record_cycle": 60},
            }
            rule_id = c.post(f"/v2/apps/{app}/record-rules", json=rule).raise_for_status().json()["rule_id"]
            for i in range(n, min(count, n + per_app)):
                job = {
                    "room_id": f"idle{i}",
                    "user_id": "u",
                    "max_idle_time": 43200,
                    "record_param": {"record_rule_id": rule_id},
                }
                c.post(f"/v2/apps/{app}/individual-stream-jobs", json=job).raise_for_status()
                made += 1
    return made


def summary(latencies: list[float]) -> tuple[float, float]:
    q = statistics.quantiles(latencies, n=100)
    return q[49], q[98]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--seconds", type=float, default=20, help="length of each phase")
    ap.add_argument("--slow", type=int, default=200, help="slow connections")
    ap.add_argument("--idle-jobs", type=int, default=2000, help="another tenant's recording jobs waiting in INIT")
    ap.add_argument("--jobs-per-app", type=int, default=100, help="idle jobs per app (the server's cap)")
    args = ap.parse_args()
    if args.idle_jobs > 20 * args.jobs_per_app:
        ap.error(f"--idle-jobs: at most {20 * args.jobs_per_app} (20 apps of --jobs-per-app)")

    tmp = Path(tempfile.mkdtemp(prefix="ember-abuse-"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("EMBER_")}
    env.update(EMBER_DATA_DIR=str(tmp), EMBER_MEDIA_ENABLED="false", EMBER_RATE_LIMITS="off")
    ember = [sys.executable, "-m", "emberrtc.cli"]
    for tenant in ("abuse", "idler"):
        subprocess.run(
            [*ember, "tenant", "create", tenant, "--password-file", "-"],
            input=f"{tenant}-password\n",
            env=env,
            check=True,
            capture_output=True,
            text=True,
        )
    from tests.support.server import free_port

    port = free_port()
    server = subprocess.Popen([*ember, "serve", "--port", str(port)], env=env, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                httpx.get(f"{base}/openapi.json", timeout=1)
                break
            except httpx.HTTPError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        token = sign_in(base, "abuse")
        h = {"X-Auth-Token": token}
        app_id = httpx.post(f"{base}/v2/apps", json={"app_name": "abuse"}, headers=h).json()["app_id"]
        made = idle_jobs(base, sign_in(base, "idler"), args.idle_jobs, args.jobs_per_app)
        url = f"{base}/v2/apps/{app_id}"
        measure(url, token, 2)  # warm up
        idle_rss = rss_kb(server.pid)
        baseline = measure(url, token, args.seconds)

        sampler = Sampler(server.pid)
        sampler.start()
        # The attackers run in their own process, so the measuring client does not share its GIL with them.
        results: multiprocessing.Queue[dict[str, int]] = multiprocessing.Queue()
        attack = multiprocessing.Process(target=run_attack, args=(port, args.seconds + 2, args.slow, results))
        attack.start()
        time.sleep(1)  # the attack under way before measuring
        attacked = measure(url, token, args.seconds)
        answers = results.get(timeout=60)
        attack.join(30)
        sampler.stop.set()
        sampler.join()

        b50, b99 = summary(baseline)
        a50, a99 = summary(attacked)
        growth = (sampler.peak - idle_rss) / 1024
        print(f"{made} recording jobs of another tenant waiting in INIT")
        print(f"server RSS idle {idle_rss / 1024:.1f} MB, peak under attack {sampler.peak / 1024:.1f} MB")
        for what, count in sorted(answers.items()):
            print(f"  {what} x{count}")
        print(f"baseline GET: {len(baseline)} requests, p50 {b50:.1f} ms, p99 {b99:.1f} ms")
        print(f"attacked GET: {len(attacked)} requests, p50 {a50:.1f} ms, p99 {a99:.1f} ms")
        print(f"RSS growth {growth:.1f} MB (target < 50); p99 ratio {a99 / b99:.2f} (target <= 2)")
    finally:
        server.terminate()
        server.wait(30)


if __name__ == "__main__":
    main()
