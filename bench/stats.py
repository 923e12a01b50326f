"""Statistics at scale (issue 10: bench/stats.py).

200 simulated participants (50 rooms of 4, a quarter of them browsers) each send a QoS report every 5 s
for an hour of simulated time: one uplink leg and three downlink legs per report (800 sample rows every
5 s, 576 000 in the hour), with random loss, jitter, RTT and now and then a freeze. The reports go through
the same path as over signalling (JSON text -> checked ``StatsReport`` -> ``StatsCollector.report`` ->
the batched writer, flushed once per simulated second) and the roll-up runs every 15 simulated seconds.
The simulated hour is the last hour of yesterday (UTC), so the history operations have a day to read.

Measured:

- the CPU time the process spends writing (reports + flushes) and rolling up, as a share of one core over
  the simulated hour (process CPU time includes the database thread; with PostgreSQL the server's own
  CPU is not Ember's and is not counted);
- each of the twelve statistics operations through the HTTP API (in-process ASGI, IAM token, rate limits
  off), five times each over that data: its median.

Targets: slowest query < 100 ms, writing < 5 % of a core. The last line prints the slowest query's time.

    .venv/bin/python bench/stats.py                      # SQLite in a temporary folder
    EMBER_DATABASE_URL=postgresql://... .venv/bin/python bench/stats.py
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import secrets
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from emberrtc.api.app import create_app  # noqa: E402
from emberrtc.bootstrap import build  # noqa: E402
from emberrtc.config import Settings  # noqa: E402
from emberrtc.domain.clock import ManualClock  # noqa: E402
from emberrtc.domain.room_session import JoinRequest  # noqa: E402
from emberrtc.domain.usage import DAY  # noqa: E402
from emberrtc.stats.report import StatsReport  # noqa: E402
from emberrtc.stats.rollup import StatsRollup  # noqa: E402
from emberrtc.store.models import App  # noqa: E402

ROOM_SIZE = 4
REPORT_EVERY = 5
ROLLUP_EVERY = 15


def iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def day(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%d")


def media(rng: random.Random, video: bool, *, down: bool) -> dict[str, Any]:
    """One medium's figures over 5 s: mostly clean, sometimes lossy, now and then a freeze."""
    bad = rng.random() < 0.1
    packets = rng.randint(400, 600) if video else 250
    lost = rng.randint(20, 80) if bad else rng.randint(0, 3)
    m: dict[str, Any] = {
        "packets": packets,
        "lost": lost,
        "bitrate": rng.uniform(500, 1500) if video else rng.uniform(24, 40),
        "jitter": rng.uniform(1, 80 if bad else 20),
        "rtt": rng.uniform(20, 400 if bad else 120),
    }
    if video:
        m.update(fps=rng.uniform(20, 30), width=rng.choice((640, 1280)), height=rng.choice((360, 720)))
    if down:
        m["freeze_ms"] = rng.choice((0, 0, 0, 700, 1500)) if bad else 0
    return m


def report_text(rng: random.Random, peers: list[str], first: bool) -> str:
    report: dict[str, Any] = {
        "type": "stats",
        "interval": REPORT_EVERY,
        "appcpu": rng.uniform(0.05, 0.3),
        "syscpu": rng.uniform(0.1, 0.6),
        "uplink": {"audio": media(rng, False, down=False), "video": media(rng, True, down=False)},
        "downlink": [
            {"peer_id": p, "audio": media(rng, False, down=True), "video": media(rng, True, down=True)} for p in peers
        ],
    }
    if first:
        report.update(
            join_ms=rng.uniform(200, 6000), first_audio_ms=rng.uniform(100, 600), first_video_ms=rng.uniform(200, 900)
        )
    return json.dumps(report)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--participants", type=int, default=200)
    parser.add_argument("--seconds", type=int, default=3600, help="simulated time")
    parser.add_argument("--repeat", type=int, default=5, help="runs of each query")
    args = parser.parse_args()

    rng = random.Random(10)
    midnight = (time.time() // DAY) * DAY
    start = midnight - args.seconds
    clock = ManualClock(start)
    with tempfile.TemporaryDirectory(prefix="ember-bench-stats-") as tmp:
        settings = Settings(
            data_dir=Path(tmp),
            database_url=os.environ.get("EMBER_DATABASE_URL", ""),
            media_enabled=False,
            rate_limits_enabled=False,
        )
        svc = await build(settings, clock=clock)
        try:
            await run(svc, clock, rng, start, args)
        finally:
            await svc.close()


async def run(svc: Any, clock: ManualClock, rng: random.Random, start: float, args: argparse.Namespace) -> None:
    name, password = f"bench{secrets.token_hex(4)}", secrets.token_urlsafe(12)
    tenant = await svc.tenants.create_tenant(name, password)
    project = tenant.project_id
    app = create_app(svc, manage_lifecycle=False)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://bench") as http:
        login = {
            "auth": {
                "identity": {
                    "methods": ["password"],
                    "password": {"user": {"name": name, "password": password, "domain": {"name": name}}},
                },
                "scope": {"project": {"name": "ember"}},
            }
        }
        r = await http.post("/v3/auth/tokens", json=login)
        http.headers["X-Auth-Token"] = r.headers["X-Subject-Token"]
        r = await http.post("/v2/apps", json={"app_name": "bench"})
        app_id = r.json()["app_id"]

        def no_auth(s: Any) -> None:  # the operator's switch: joins in the bench are unsigned
            s.get(App, app_id).auth_enable = False

        await svc.db.run(no_auth)
        svc.apps.forget(app_id)

        # Everyone joins at the start of the hour.
        collector, writer = svc.stats_collector, svc.stats_collector.writer
        users = [f"u{i:03d}" for i in range(args.participants)]
        rooms = {u: f"room{i // ROOM_SIZE:02d}" for i, u in enumerate(users)}
        contexts = {}
        for i, user in enumerate(users):
            platform = "browser-Linux" if i % 4 == 0 else "python-linux"
            admission = await svc.room_sessions.admit(JoinRequest(app_id, rooms[user], user, platform=platform))
            contexts[user] = collector.joined(
                session_id=admission.session_id,
                app_id=app_id,
                room_id=rooms[user],
                user_id=user,
                platform=platform,
                client_ip=f"10.1.{i // 250}.{i % 250}",
                started=clock.now(),
            )
        peers = {u: [p for p in users if rooms[p] == rooms[u] and p != u] for u in users}

        write_cpu = rollup_cpu = 0.0
        rows_before = writer.written
        first = set(users)
        per_second = [users[k::REPORT_EVERY] for k in range(REPORT_EVERY)]
        for second in range(args.seconds):
            clock.t = start + second + 1
            texts = [(u, report_text(rng, peers[u], u in first)) for u in per_second[second % REPORT_EVERY]]
            first.difference_update(u for u, _ in texts)
            c0 = time.process_time()
            for user, text in texts:  # as signalling does: JSON text -> checked model -> collector
                collector.report(contexts[user], StatsReport.model_validate_json(text))
            await writer.flush()
            write_cpu += time.process_time() - c0
            if (second + 1) % ROLLUP_EVERY == 0:
                c0 = time.process_time()
                await svc.stats_rollup.run_once()
                rollup_cpu += time.process_time() - c0
        written = writer.written - rows_before
        for user in users:
            collector.left(contexts[user])
            await svc.room_sessions.leave(contexts[user].session_id, "left")
        await writer.flush()
        end = start + args.seconds
        await svc.db.run(lambda s: StatsRollup.roll_day(s, int(start // DAY) * DAY))

        # Query over the hour, "now" being a minute after it.
        clock.t = end + 60
        p, a, t0, t1, d = project, app_id, iso(start), iso(end), day(start)
        window = f"start_time={t0}&end_time={t1}"
        v1, days = f"/v1/{p}/rtc", f"start_date={d}&end_date={d}"
        events = "/v1/rtc/data/abnormal-event"
        queries = {
            "rooms": f"{v1}/rooms?app={a}&{window}",
            "users summary": f"{v1}/users?app={a}&{window}&type=summary",
            "users detail": f"{v1}/users?app={a}&{window}&type=detail",
            "realtime scale": f"{v1}/realtime/scale?app={a}&metric=OnlineUsers&{window}",
            "realtime dimension": (
                f"{v1}/realtime/scale/dimension?app={a}&metric=OnlineUsers&dimension=region&time={iso(end - 1800)}"
            ),
            "realtime quality": f"{v1}/realtime/quality?app={a}&metric=VideoFreezeRate&sdk_type=native&{window}",
            "realtime network": (
                f"{v1}/realtime/network?app={a}&metric=VideoExcellentTransRate&sdk_type=native&{window}"
            ),
            "usage": f"{v1}/history/usage?app={a}&metric=CommunicationDuration&{days}",
            "history scale": f"{v1}/history/scale?app={a}&metric=UserCount&metric=MaxOnlineUserCount&{days}",
            "history quality": f"{v1}/history/quality?app={a}&metric=JoinSuccessRate&metric=VideoTransDelay&{days}",
            "qos details": f"{v1}/client/qos/details?app_id={a}&room_id=room07&user_id=u028&mid=all&{window}",
            "abnormal events": f"{events}s?app={a}&{window}&limit=100",
            "abnormal dimension": f"{events}/dimension?app={a}&{window}&dimension=abnormal_type&dimension=abnormal_factor",  # noqa: E501
        }
        timings: dict[str, float] = {}
        for label, path in queries.items():
            runs, cpu = [], []
            for _ in range(args.repeat):
                q0, c0 = time.perf_counter(), time.process_time()
                r = await http.get(path)
                runs.append(time.perf_counter() - q0)
                cpu.append(time.process_time() - c0)
                if r.status_code != 200:
                    raise SystemExit(f"{label}: {r.status_code} {r.text[:300]}")
            timings[label] = statistics.median(runs)
            # CPU time too: on a shared, loaded machine the wall time includes waiting for a core.
            print(
                f"{label:20s} {timings[label] * 1000:7.1f} ms wall, {statistics.median(cpu) * 1000:7.1f} ms CPU"
                f"  ({len(r.content)} bytes)"
            )

    hour = float(args.seconds)
    print(f"participants {args.participants}, simulated {args.seconds} s, sample/event/session rows written {written}")
    print(f"load average during the run: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    print(f"writing: {write_cpu:.2f} s CPU = {write_cpu / hour * 100:.2f} % of a core")
    print(f"roll-up: {rollup_cpu:.2f} s CPU = {rollup_cpu / hour * 100:.2f} % of a core")
    slowest = max(timings, key=lambda k: timings[k])
    print(f"slowest query: {slowest} {timings[slowest] * 1000:.1f} ms")


if __name__ == "__main__":
    asyncio.run(main())
