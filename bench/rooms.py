"""Media-plane cost: join-to-first-remote-frame latency and the CPU of Ember plus Janus (issue 3).

A 4-party room of publishers, each sending 640x360 at 30 fps (``ColourVideoTrack``) with an Opus tone, all
Python clients from ``emberrtc.client``, each in its own process so their encoders and decoders do not share
one event loop:

- three residents join, publish, and subscribe to every stream in the room (including the fourth's);
- a fourth participant joins, subscribes to the three, publishes its own camera, stays ``--hold`` seconds
  and leaves, ``--joins`` times. Each join is timed from just before the WebSocket opens to the first
  decoded video frame of a remote participant, and to that of all three (the last remote on screen).

Where the last remote's time went is traced in the joiner (:class:`Trace`): from the join's start to the
server's offer, the answer accepted, ICE completed, DTLS done, the first video RTP, the first VP8 keyframe
RTP and the first decoded frame; the median of each phase, and each join's, are printed before the last line.

Ember runs as ``ember serve`` (its own process, so its CPU is its own) with Janus as its child; their CPU
(user + system, ``/proc/PID/stat``) is read at the start and the end of the joins and given as a percentage
of one core over that span.

Janus gathers no ICE candidates on loopback, so the benchmark creates its own network namespace
(``scripts/netns.sh``), re-runs itself inside it, and removes it at the end; it needs root.

Last line: ``join-to-first-remote-frame p50 X ms p95 Y ms, all 3 remotes p50 Z ms p95 W ms (n=N); CPU (% of
a core) Ember A, Janus B, total C``. Targets: first remote p50 under 300 ms; all remotes p95 under 400 ms
(issue 8); Ember's own CPU under 5 % of a core.

    sudo .venv/bin/python bench/rooms.py [--joins 10] [--hold 3] [--codec vp8|h264]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import multiprocessing as mp
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from aiortc import RTCPeerConnection  # noqa: E402
from aiortc.codecs.vpx import VpxPayloadDescriptor  # noqa: E402
from aiortc.rtcrtpreceiver import RTCRtpReceiver  # noqa: E402
from aiortc.rtp import RtpPacket  # noqa: E402

import emberrtc.client.room as client_room  # noqa: E402
from emberrtc.client import ColourVideoTrack, RoomClient, RoomError, Subscription, ToneAudioTrack  # noqa: E402

WIDTH, HEIGHT, FPS = 640, 360, 30
MEDIA_IP = "10.77.0.1"
PEER_IP = "10.77.0.2"
ROOM = "bench"
RESIDENTS = {"red": (220, 30, 30), "green": (30, 200, 60), "blue": (30, 60, 220)}
JOINER_COLOUR = (230, 210, 40)
TICK = os.sysconf("SC_CLK_TCK")


# -- the namespace ------------------------------------------------------------------------------------


def _is_local(ip: str) -> bool:
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.bind((ip, 0))
    except OSError:
        return False
    return True


def run_in_namespace(argv: list[str]) -> int:
    """Create a private namespace, run this script inside it, remove the namespace."""
    netns = str(ROOT / "scripts" / "netns.sh")
    name = f"ember-bench-{os.getpid()}"
    subprocess.run([netns, "up", name], check=True)
    try:
        return subprocess.run([netns, "exec", name, sys.executable, __file__, "--inside", *argv], cwd=ROOT).returncode
    finally:
        subprocess.run([netns, "down", name], check=False)


# -- CPU from /proc -----------------------------------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (all its threads), in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    # Fields 14 and 15 (utime, stime) of proc(5); index 0 here is field 3 (state).
    return (int(fields[11]) + int(fields[12])) / TICK


def child_pid(parent: int, comm: str) -> int | None:
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            stat = (entry / "stat").read_text()
            name = stat[stat.index("(") + 1 : stat.rindex(")")]
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            if ppid == parent and name == comm:
                return int(entry.name)
    return None


# -- where the time goes (the joiner's process only) ----------------------------------------------------

#: Phases of a subscription, in the order they happen, as reported per remote.
PHASES = ("asked", "offer", "local", "answered", "ice", "dtls", "rtp", "keyframe", "frame")


class Trace:
    """Timestamps (``perf_counter``) of what the joiner's aiortc saw, per PeerConnection and per receiver.

    Diagnostic only: it wraps the client's requests (``asked``: the subscribe for that remote sent), its
    PeerConnection factory (``offer``: the server's offer arrived and the client makes its PeerConnection;
    ``local``: its answer is ready, with candidates, and goes to the server; ICE and DTLS states from the
    public events) and aiortc's receiver packet handler (first video RTP, first VP8 keyframe RTP), which is
    private aiortc API.
    """

    def __init__(self) -> None:
        self.pcs: dict[RTCPeerConnection, dict[str, float]] = {}
        self.receivers: dict[RTCRtpReceiver, dict[str, float]] = {}
        #: (user_id, stream) -> when the subscribe naming it was sent.
        self.asked: dict[tuple[str, str], float] = {}

    def install(self) -> None:
        make_pc = client_room._peer_connection
        handle_rtp = RTCRtpReceiver._handle_rtp_packet
        request = client_room.RoomClient._request
        trace = self

        async def traced_request(room: RoomClient, message: dict[str, Any]) -> dict[str, Any]:
            if message.get("type") == "subscribe":
                now = time.perf_counter()
                for ref in message.get("streams") or [message]:
                    trace.asked[(ref["user_id"], ref["stream"])] = now
            return await request(room, message)

        def traced_pc(ice_servers: list[Any]) -> RTCPeerConnection:
            pc = make_pc(ice_servers)
            marks = trace.pcs[pc] = {"offer": time.perf_counter()}
            set_local = pc.setLocalDescription

            async def traced_set_local(description: Any) -> None:
                await set_local(description)
                marks.setdefault("local", time.perf_counter())

            pc.setLocalDescription = traced_set_local  # type: ignore[method-assign, assignment]

            @pc.on("iceconnectionstatechange")
            def _ice() -> None:
                # aiortc's ICE goes from "checking" to "completed" once a candidate pair works.
                if pc.iceConnectionState == "completed":
                    marks.setdefault("ice", time.perf_counter())

            @pc.on("connectionstatechange")
            def _state() -> None:
                if pc.connectionState == "connected":
                    marks.setdefault("dtls", time.perf_counter())

            return pc

        async def traced_rtp(receiver: RTCRtpReceiver, packet: RtpPacket, arrival_time_ms: int) -> None:
            marks = trace.receivers.setdefault(receiver, {})
            if "rtp" not in marks and receiver.track is not None and receiver.track.kind == "video":
                marks["rtp"] = time.perf_counter()
            if "rtp" in marks and "keyframe" not in marks and packet.payload:
                with contextlib.suppress(ValueError, IndexError):
                    desc, data = VpxPayloadDescriptor.parse(packet.payload)
                    # RFC 7741 4.3: a VP8 keyframe's first partition has the P bit of its header clear.
                    if desc.partition_start and desc.partition_id == 0 and data and not data[0] & 1:
                        marks["keyframe"] = time.perf_counter()
            await handle_rtp(receiver, packet, arrival_time_ms)

        client_room._peer_connection = traced_pc  # type: ignore[assignment]
        client_room.RoomClient._request = traced_request  # type: ignore[method-assign, assignment]
        RTCRtpReceiver._handle_rtp_packet = traced_rtp  # type: ignore[method-assign, assignment]

    def phases(self, sub: Subscription, t0: float, answered: float, frame: float) -> dict[str, float]:
        """Seconds from the join's start to each phase of one subscription's video (missing: not seen)."""
        marks = {"answered": answered, "frame": frame}
        if (sub.user_id, sub.stream) in self.asked:
            marks["asked"] = self.asked[(sub.user_id, sub.stream)] - t0
        marks.update({k: v - t0 for k, v in self.pcs.get(sub.pc, {}).items()})
        video_mids = {str(t["mid"]) for t in sub.tracks if t.get("type") == "video"}
        receiver = next((t.receiver for t in sub.pc.getTransceivers() if t.mid in video_mids), None)
        if receiver is not None:
            marks.update({k: v - t0 for k, v in self.receivers.get(receiver, {}).items()})
        return marks


TRACE = Trace()


# -- participants (each in its own process) -----------------------------------------------------------


async def _drain(sub: Subscription) -> None:
    # aiortc queues every decoded frame for the application: read them so memory stays flat.
    with contextlib.suppress(Exception):
        while True:
            tracks = [t for t in (sub.video, sub.audio) if t is not None]
            if not tracks:
                return
            await asyncio.gather(*(t.recv() for t in tracks))


async def _resident(server: str, app_id: str, app_key: str, user: str, codec: str, ready: Any, stop: Any) -> None:
    room = await RoomClient.join(server, app_id=app_id, room_id=ROOM, user_id=user, app_key=app_key)
    drains: dict[tuple[str, str], asyncio.Task[None]] = {}

    async def follow(user_id: str, stream: str) -> None:
        if (user_id, stream) in drains:
            return
        try:
            sub = await room.subscribe(user_id, stream)
        except RoomError as exc:
            # The joiner left (or stopped) between its announcement and this subscription: a race every
            # room has; the next announcement is followed again.
            print(f"{user}: not following {user_id}'s {stream}: {exc}", file=sys.stderr)
            return
        drains[(user_id, stream)] = asyncio.create_task(_drain(sub))

    try:
        await room.publish(
            "camera",
            video=ColourVideoTrack(RESIDENTS[user], width=WIDTH, height=HEIGHT, fps=FPS),
            audio=ToneAudioTrack(440),
            codec=codec,
        )
        seen = 0
        ready.set()
        while not stop.is_set():
            for peer in list(room.participants.values()):
                for stream in list(peer.streams):
                    await follow(peer.user_id, stream)
            # Streams that ended free their slot so a rejoining participant is followed again.
            for key, task in list(drains.items()):
                if task.done():
                    del drains[key]
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(0.1):
                    await room.wait_event(lambda e, n=seen: len(room.history) > n)
            seen = len(room.history)
    finally:
        await room.leave()
        for task in drains.values():
            task.cancel()


def resident_main(server: str, app_id: str, app_key: str, user: str, codec: str, ready: Any, stop: Any) -> None:
    asyncio.run(_resident(server, app_id, app_key, user, codec, ready, stop))


async def _joiner(
    server: str, app_id: str, app_key: str, codec: str, joins: int, hold: float
) -> list[dict[str, list[float]]]:
    """Per join, seconds from the start of the join to: ``joined``, each subscription negotiated
    (``subscribed``), each remote's first decoded video frame (``first_frame``); lists sorted."""
    TRACE.install()
    results: list[dict[str, list[float]]] = []
    for n in range(joins):
        drains: list[asyncio.Task[None]] = []
        t0 = time.perf_counter()
        room = await RoomClient.join(server, app_id=app_id, room_id=ROOM, user_id="yellow", app_key=app_key)
        joined = time.perf_counter() - t0
        try:
            others = [(p.user_id, s) for p in room.participants.values() for s in p.streams]
            assert len(others) == len(RESIDENTS), f"join {n}: expected {len(RESIDENTS)} streams, got {others}"

            async def first_frame(
                user_id: str, stream: str, room: RoomClient = room, t0: float = t0
            ) -> tuple[float, float, Subscription, dict[str, float]]:
                sub = await room.subscribe(user_id, stream)
                subscribed = time.perf_counter() - t0
                assert sub.video is not None
                await sub.video.recv()
                frame = time.perf_counter() - t0
                return subscribed, frame, sub, TRACE.phases(sub, t0, subscribed, frame)

            async with asyncio.timeout(30):
                publish = asyncio.create_task(
                    room.publish(
                        "camera",
                        video=ColourVideoTrack(JOINER_COLOUR, width=WIDTH, height=HEIGHT, fps=FPS),
                        audio=ToneAudioTrack(660),
                        codec=codec,
                    )
                )
                firsts = await asyncio.gather(*(first_frame(u, s) for u, s in others))
                await publish
            results.append(
                {
                    "joined": [joined],
                    "subscribed": sorted(f[0] for f in firsts),
                    "first_frame": sorted(f[1] for f in firsts),
                    # The phases of the remote seen last: where the slowest remote's time went.
                    "slowest": [max(firsts, key=lambda f: f[1])[3].get(k, -1.0) for k in PHASES],
                }
            )
            drains += [asyncio.create_task(_drain(f[2])) for f in firsts]
            # Stay in the full 4-party room for a while: the CPU figure covers it.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(hold):
                    await asyncio.shield(room.ended)
        finally:
            await room.leave()
        for task in drains:
            task.cancel()
    return results


def joiner_main(server: str, app_id: str, app_key: str, codec: str, joins: int, hold: float, out: Any) -> None:
    try:
        out.put(asyncio.run(_joiner(server, app_id, app_key, codec, joins, hold)))
    except BaseException as exc:
        out.put(f"the joining participant failed: {exc!r}")
        raise


# -- the run ------------------------------------------------------------------------------------------


def wait_http(url: str, deadline: float) -> None:
    end = time.monotonic() + deadline
    while True:
        try:
            httpx.get(url, timeout=1, trust_env=False)
            return
        except httpx.HTTPError:
            if time.monotonic() > end:
                raise
            time.sleep(0.05)


def make_app(server: str, env: dict[str, str]) -> tuple[str, str]:
    cli = [sys.executable, "-m", "emberrtc.cli"]
    subprocess.run(
        [*cli, "tenant", "create", "bench", "--password", "bench-password"], env=env, check=True, capture_output=True
    )
    with httpx.Client(base_url=server, trust_env=False) as http:
        auth = {
            "identity": {
                "methods": ["password"],
                "password": {"user": {"name": "bench", "password": "bench-password", "domain": {"name": "bench"}}},
            },
            "scope": {"project": {"name": "ember"}},
        }
        token = http.post("/v3/auth/tokens", json={"auth": auth})
        token.raise_for_status()
        http.headers["X-Auth-Token"] = token.headers["X-Subject-Token"]
        created = http.post("/v2/apps", json={"app_name": "bench"})
        created.raise_for_status()
        app_id = created.json()["app_id"]
        app_key = http.get(f"/v2/apps/{app_id}").json()["authentication"]["app_key"]
    return app_id, app_key


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def bench(args: argparse.Namespace) -> None:
    tmp = Path(tempfile.mkdtemp(prefix="ember-bench-rooms-"))
    port = _free_port()
    server = f"http://127.0.0.1:{port}"
    env = {
        **os.environ,
        "EMBER_DATA_DIR": str(tmp / "data"),
        "EMBER_RATE_LIMITS": "off",
        "EMBER_MEDIA_ENABLED": "true",
        "EMBER_MEDIA_IP": MEDIA_IP,
    }
    cli = [sys.executable, "-m", "emberrtc.cli"]
    log = (tmp / "ember.log").open("wb")
    ember = subprocess.Popen([*cli, "serve", "--port", str(port)], env=env, stdout=log, stderr=subprocess.STDOUT)
    ctx = mp.get_context("spawn")
    stop = ctx.Event()
    procs: list[Any] = []
    failed = True
    try:
        wait_http(f"{server}/openapi.json", 60)
        janus = child_pid(ember.pid, "janus")
        if janus is None:
            raise SystemExit("Ember started without a Janus child: is Janus installed (apt-get install janus)?")
        app_id, app_key = make_app(server, env)
        readies = []
        for user in RESIDENTS:
            ready = ctx.Event()
            proc = ctx.Process(target=resident_main, args=(server, app_id, app_key, user, args.codec, ready, stop))
            proc.start()
            procs.append(proc)
            readies.append(ready)
        for ready in readies:
            if not ready.wait(60):
                raise SystemExit("a resident participant did not publish within 60 s")
        out = ctx.Queue()
        joiner = ctx.Process(target=joiner_main, args=(server, app_id, app_key, args.codec, args.joins, args.hold, out))
        # The residents' streams are live once announced; the joiner checks it sees all three at join.
        cpu0 = (cpu_seconds(ember.pid), cpu_seconds(janus), time.monotonic())
        joiner.start()
        procs.append(joiner)
        results: list[dict[str, list[float]]] | str = out.get(timeout=args.joins * (args.hold + 40) + 60)
        if isinstance(results, str):
            raise SystemExit(results)
        cpu1 = (cpu_seconds(ember.pid), cpu_seconds(janus), time.monotonic())
        joiner.join(30)
        failed = False
    finally:
        stop.set()
        for proc in procs:
            proc.join(30)
            if proc.is_alive():
                proc.kill()
        ember.send_signal(signal.SIGTERM)
        try:
            ember.wait(30)
        except subprocess.TimeoutExpired:
            ember.kill()
        log.close()
        if failed:
            print((tmp / "ember.log").read_text(errors="replace")[-4000:], file=sys.stderr)
        shutil.rmtree(tmp, ignore_errors=True)

    wall = cpu1[2] - cpu0[2]
    ember_cpu = 100 * (cpu1[0] - cpu0[0]) / wall
    janus_cpu = 100 * (cpu1[1] - cpu0[1]) / wall
    first = [r["first_frame"][0] * 1000 for r in results]
    every = [r["first_frame"][-1] * 1000 for r in results]

    def p50(key: str, index: int) -> float:
        return statistics.median(r[key][index] * 1000 for r in results)

    print(json.dumps({"first_remote_frame_ms": [round(v) for v in first], "all_remotes_ms": [round(v) for v in every]}))
    print(
        f"phases (p50 ms from the join's start): joined {p50('joined', 0):.0f}, first subscription negotiated "
        f"{p50('subscribed', 0):.0f}, last {p50('subscribed', -1):.0f}, first remote frame {p50('first_frame', 0):.0f}"
    )
    slowest = ", ".join(
        f"{k} {statistics.median(r['slowest'][i] for r in results) * 1000:.0f}" for i, k in enumerate(PHASES)
    )
    print(f"slowest remote of each join, p50 ms from the join's start: {slowest}")
    for r in results:
        print("  slowest: " + ", ".join(f"{k} {v * 1000:.0f}" for k, v in zip(PHASES, r["slowest"], strict=True)))
    print(f"cores: {os.cpu_count()}, window {wall:.1f} s, codec {args.codec}, {WIDTH}x{HEIGHT}@{FPS}, 4 publishers")
    print(
        f"join-to-first-remote-frame p50 {statistics.median(first):.0f} ms p95 {percentile(first, 0.95):.0f} ms, "
        f"all 3 remotes p50 {statistics.median(every):.0f} ms p95 {percentile(every, 0.95):.0f} ms "
        f"(n={len(first)}); CPU (% of a core) Ember {ember_cpu:.1f}, Janus {janus_cpu:.1f}, "
        f"total {ember_cpu + janus_cpu:.1f}"
    )


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--joins", type=int, default=10, help="how many times the fourth participant joins")
    ap.add_argument("--hold", type=float, default=3.0, help="seconds the fourth stays in the room each time")
    ap.add_argument("--codec", choices=["vp8", "h264"], default="vp8")
    ap.add_argument("--inside", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if not (_is_local(MEDIA_IP) and _is_local(PEER_IP)):
        if args.inside:
            raise SystemExit(f"no local address {MEDIA_IP}: the namespace was not set up")
        if os.geteuid() != 0:
            raise SystemExit("bench/rooms.py creates a network namespace: run it as root")
        argv = [a for a in sys.argv[1:] if a != "--inside"]
        raise SystemExit(run_in_namespace(argv))
    bench(args)


if __name__ == "__main__":
    main()
