"""Control-plane throughput and latency, side by side with a bare endpoint (issue: bench/api.py).

Measures ``GET /v2/apps/{app_id}`` and ``POST /v2/apps/{app_id}/record-rules`` on Ember (AK/SK-signed,
SQLite, rate limits off) and the same paths on a bare FastAPI app returning the same JSON without auth or
database, 50 concurrent connections on loopback, with ``wrk``. Rounds alternate between the two servers
so machine noise hits both alike. Requests are signed with the official SDK's signer; each signature is
valid for 15 minutes and Ember verifies every request in full.

Last line: the lower of the two throughput ratios (Ember / bare). Targets: >= 0.5 and p99 < 50 ms.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def rule_body(project_id: str) -> dict[str, object]:
    """The benchmarked rule, for the tenant's own project (the only one a rule may name)."""
    return {
        "obs_addr": {"location": "local", "project_id": project_id, "bucket": "bench-bucket", "object": "rec"},
        "record_formats": ["MP4"],
        "mp4_config": {"record_cycle": 60, "record_max_duration_to_merge_file": 0},
    }


def free_port() -> int:
    from tests.support.server import free_port as fp

    return fp()


def wait_http(url: str, deadline: float = 30) -> None:
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        try:
            httpx.get(url, timeout=1)
            return
        except httpx.HTTPError:
            time.sleep(0.05)
    raise TimeoutError(url)


def signed_headers(ak: str, sk: str, method: str, url: str, body: bytes) -> dict[str, str]:
    """Sign once with the official SDK's signer; the headers are replayed by wrk."""
    from urllib.parse import urlsplit

    from huaweicloudsdkcore.auth.credentials import BasicCredentials
    from huaweicloudsdkcore.sdk_request import SdkRequest
    from huaweicloudsdkcore.signer.signer import Signer

    u = urlsplit(url)
    req = SdkRequest(
        method=method,
        schema=u.scheme,
        host=u.netloc,
        resource_path=u.path,
        query_params=[],
        header_params={"Content-Type": "application/json"},
        body=body,
    )
    Signer(BasicCredentials(ak, sk)).sign(req)
    return dict(req.header_params)


def wrk(url: str, method: str, headers: dict[str, str], body: bytes, seconds: int, threads: int) -> dict[str, float]:
    script = tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False)
    lua_headers = "".join(f'wrk.headers["{k}"] = {json.dumps(v)}\n' for k, v in headers.items() if k.lower() != "host")
    script.write(
        f'wrk.method = "{method}"\n{lua_headers}wrk.body = {json.dumps(body.decode())}\n'
        "done = function(summary, latency, requests)\n"
        '  io.write(string.format("JSON {\\"requests\\": %d, \\"errors\\": %d, \\"non2xx\\": %d, '
        '\\"p50\\": %f, \\"p99\\": %f, \\"seconds\\": %f}\\n", summary.requests, '
        "summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout, "
        "summary.errors.status, latency:percentile(50) / 1000, latency:percentile(99) / 1000, "
        "summary.duration / 1e6))\nend\n"
    )
    script.close()
    out = subprocess.run(
        ["wrk", f"-t{threads}", "-c50", f"-d{seconds}s", "-s", script.name, url],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    os.unlink(script.name)
    data = json.loads(re.search(r"^JSON (.*)$", out, re.M).group(1))  # type: ignore[union-attr]
    # A socket error or two when wrk closes its connections at the end is noise; more is a failure.
    if data["non2xx"] or data["errors"] > max(2, data["requests"] // 1000):
        raise RuntimeError(f"{url}: {data['non2xx']} non-2xx answers, {data['errors']} socket errors")
    data["rps"] = data["requests"] / data["seconds"]
    return data


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--seconds", type=int, default=5, help="length of one wrk run")
    ap.add_argument("--rounds", type=int, default=3, help="alternating rounds per endpoint")
    ap.add_argument("--wrk-threads", type=int, default=1)
    args = ap.parse_args()
    if not shutil.which("wrk"):
        sys.exit("bench/api.py needs wrk: apt-get install wrk")

    tmp = Path(tempfile.mkdtemp(prefix="ember-bench-"))
    py = sys.executable
    env = {**os.environ, "EMBER_DATA_DIR": str(tmp / "data"), "EMBER_RATE_LIMITS": "off"}
    ember_cli = [py, "-m", "emberrtc.cli"]
    subprocess.run(
        [*ember_cli, "tenant", "create", "bench", "--password", "bench-password", "--json"],
        env=env,
        check=True,
        capture_output=True,
    )
    cred = json.loads(
        subprocess.run(
            [*ember_cli, "credential", "create", "--tenant", "bench", "--json"],
            env=env,
            check=True,
            capture_output=True,
            text=True,
        ).stdout
    )
    ember_port, bare_port = free_port(), free_port()
    procs = [
        subprocess.Popen(
            [*ember_cli, "serve", "--port", str(ember_port)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
    ]
    try:
        ember = f"http://127.0.0.1:{ember_port}"
        wait_http(f"{ember}/openapi.json")
        body = json.dumps({"app_name": "bench"}).encode()
        r = httpx.post(
            f"{ember}/v2/apps",
            content=body,
            headers=signed_headers(cred["ak"], cred["sk"], "POST", f"{ember}/v2/apps", body),
        )
        app_id = r.raise_for_status().json()["app_id"]
        targets = {
            "GET /v2/apps/{app_id}": ("GET", f"/v2/apps/{app_id}", b""),
            "POST /v2/apps/{app_id}/record-rules": (
                "POST",
                f"/v2/apps/{app_id}/record-rules",
                json.dumps(rule_body(cred["project_id"])).encode(),
            ),
        }
        bodies = {}
        for key, (method, path, payload) in zip(("app", "rule"), targets.values(), strict=True):
            resp = httpx.request(
                method,
                ember + path,
                content=payload,
                headers=signed_headers(cred["ak"], cred["sk"], method, ember + path, payload),
            )
            bodies[key] = resp.raise_for_status().json()
        (tmp / "bare.json").write_text(json.dumps(bodies))
        bare = f"http://127.0.0.1:{bare_port}"
        procs.append(
            subprocess.Popen(
                [
                    py,
                    "-m",
                    "uvicorn",
                    "bench.bare_app:app",
                    "--port",
                    str(bare_port),
                    "--log-level",
                    "warning",
                    "--no-access-log",
                ],
                cwd=ROOT,
                env={**env, "EMBER_BENCH_BARE_JSON": str(tmp / "bare.json")},
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        )
        wait_http(f"{bare}/openapi.json")

        ratios = []
        for name, (method, path, payload) in targets.items():
            results: dict[str, list[dict[str, float]]] = {"ember": [], "bare": []}
            for _ in range(args.rounds):
                for label, base in (("bare", bare), ("ember", ember)):
                    headers = signed_headers(cred["ak"], cred["sk"], method, base + path, payload)
                    results[label].append(wrk(base + path, method, headers, payload, args.seconds, args.wrk_threads))
            med = {
                k: {m: statistics.median(r[m] for r in v) for m in ("rps", "p50", "p99")} for k, v in results.items()
            }
            ratio = med["ember"]["rps"] / med["bare"]["rps"]
            ratios.append(ratio)
            for label in ("bare", "ember"):
                m = med[label]
                print(f"{name:40s} {label:5s} {m['rps']:8.0f} req/s  p50 {m['p50']:6.1f} ms  p99 {m['p99']:6.1f} ms")
            print(f"{name:40s} ratio {ratio:.2f}  (target >= 0.5; Ember p99 {med['ember']['p99']:.1f} ms, target < 50)")
        print(f"api throughput ratio (min over endpoints, Ember/bare): {min(ratios):.2f}")
    finally:
        for p in procs:
            p.terminate()
            p.wait(10)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
