"""Capacity of one node: participants per core through Janus (issue 12, item 8; ``docs/scaling.md``).

``--rooms`` rooms (2) of ``--size`` participants (4) on one ``ember serve``: every participant publishes a
synthetic camera (``--width``x``--height`` at ``--fps``, VP8; 320x180@15 by default: a textured, panning
picture, on which aiortc's encoder spends about a camera's WebRTC bit rate, ~650 kbit/s, at a size eight
Python clients can encode and decode on two cores with little loss) with an Opus tone,
and subscribes to every other camera of its room, as in a meeting where everybody watches everybody (per
participant: one stream into Janus, ``size - 1`` out of it). Participants are Python clients
(``RoomClient``), each in its own process.

Once every subscription has delivered a frame and a warm-up has passed, the CPU time (user + system, from
``/proc/PID/stat``) of Janus and of ``ember serve`` is read over ``--seconds``, with the RTP packets and
bytes every client sent and received (aiortc's transport statistics) and the packets its subscriptions
lost. On a small machine the Python clients (encoding and decoding every picture) use most of the CPU long
before Janus does, so the node's capacity is given as Janus's (and Ember's) CPU per participant at the
measured rates, extrapolated: Janus forwards each packet independently, so its cost grows with the packets
it forwards; the CPU per thousand packets is printed so other rates can be worked out.

``--recording`` and ``--mixer`` also run ``bench/recording.py`` (single-stream recordings per core) and
``bench/mixer.py`` (CPU-seconds per output second of a composite) briefly and print their last lines.

Last line: ``participants per core: Janus X, Janus + Ember Y (WxH@F VP8 + Opus, K kbit/s each, rooms of N,
everyone subscribed to everyone; loss L %)``.

Janus gathers no ICE candidates on loopback: like ``bench/rooms.py`` this makes its own network namespace
and re-runs itself inside it (root needed).

    sudo .venv/bin/python bench/capacity.py [--rooms 2] [--size 4] [--width 320 --height 180 --fps 15]
        [--seconds 20] [--recording] [--mixer]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import multiprocessing as mp
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np
from aiortc import MediaStreamTrack

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "bench"))

from rooms import (  # noqa: E402  # the same node, namespace and /proc readings as bench/rooms.py
    MEDIA_IP,
    PEER_IP,
    _free_port,
    _is_local,
    child_pid,
    cpu_seconds,
    make_app,
    wait_http,
)

ROOM_PREFIX = "capacity"


class TexturedVideoTrack(MediaStreamTrack):
    """A smooth random texture panning 2 px a frame (as ``bench/recording.py``'s clip): detail and motion
    like a camera's, so the encoder spends about its WebRTC bit rate (a flat picture would cost a fraction)."""

    kind = "video"

    def __init__(self, width: int, height: int, fps: float, seed: int) -> None:
        super().__init__()
        self.width, self.height, self.fps = width, height, fps
        rng = np.random.default_rng(seed)
        block = 4
        coarse = rng.integers(40, 215, (height // block + 1, (2 * width) // block + 2))
        self.texture = np.kron(coarse.astype(np.uint8), np.ones((block, block), dtype=np.uint8))
        self.count = 0
        self.start: float | None = None

    async def recv(self) -> av.VideoFrame:
        now = time.monotonic()
        if self.start is None:
            self.start = now
        delay = self.start + self.count / self.fps - now
        if delay > 0:
            await asyncio.sleep(delay)
        n = self.count
        self.count += 1
        x = (2 * n) % (self.texture.shape[1] - self.width)
        image = np.empty((self.height * 3 // 2, self.width), dtype=np.uint8)
        image[: self.height] = self.texture[: self.height, x : x + self.width]
        image[self.height :] = 128
        frame = av.VideoFrame.from_ndarray(image, format="yuv420p")
        frame.pts, frame.time_base = round(n * 90_000 / self.fps), Fraction(1, 90_000)
        return frame


# -- participants (each in its own process) -----------------------------------------------------------


async def _counters(pcs: list[Any]) -> dict[str, float]:
    """RTP/RTCP packets and bytes sent and received by these PeerConnections, and packets lost inbound."""
    total = {"sent": 0.0, "received": 0.0, "bytes_sent": 0.0, "bytes_received": 0.0, "lost": 0.0, "inbound": 0.0}
    for pc in pcs:
        report = await pc.getStats()
        for stats in report.values():
            if stats.type == "transport":
                total["sent"] += stats.packetsSent
                total["received"] += stats.packetsReceived
                total["bytes_sent"] += stats.bytesSent
                total["bytes_received"] += stats.bytesReceived
            elif stats.type == "inbound-rtp":
                total["lost"] += max(0, stats.packetsLost)
                total["inbound"] += stats.packetsReceived
    return total


async def _participant(
    server: str, app_id: str, app_key: str, room_id: str, user: str, peers: list[str], args: Any, marks: Any
) -> dict[str, float]:
    from emberrtc.client import ColourVideoTrack, RoomClient, ToneAudioTrack

    ready, start, stop = marks
    room = await RoomClient.join(server, app_id=app_id, room_id=room_id, user_id=user, app_key=app_key)
    drains: list[asyncio.Task[None]] = []
    try:
        video: MediaStreamTrack
        if args.flat:
            video = ColourVideoTrack((200, 120, 40), width=args.width, height=args.height, fps=args.fps)
        else:
            video = TexturedVideoTrack(args.width, args.height, args.fps, seed=abs(hash((room_id, user))))
        await room.publish("camera", video=video, audio=ToneAudioTrack(440), codec="vp8")
        async with asyncio.timeout(120):
            for peer in peers:
                await room.wait_stream(peer)
            subs = await asyncio.gather(*(room.subscribe(peer) for peer in peers))
            for sub in subs:
                assert sub.video is not None
                await sub.video.recv()

        async def drain(track: Any) -> None:
            with contextlib.suppress(Exception):
                while True:
                    await track.recv()

        drains = [asyncio.create_task(drain(t)) for s in subs for t in (s.video, s.audio) if t is not None]
        pcs = [p.pc for p in room.publications.values()] + ([room.subscriber_pc] if room.subscriber_pc else [])
        ready.set()
        await asyncio.to_thread(start.wait)
        before, t0 = await _counters(pcs), time.monotonic()
        await asyncio.to_thread(stop.wait)
        after, t1 = await _counters(pcs), time.monotonic()
        delta = {k: after[k] - before[k] for k in after}
        delta["seconds"] = t1 - t0
        return delta
    finally:
        for task in drains:
            task.cancel()
        await room.leave()


def participant_main(
    server: str, app_id: str, app_key: str, room_id: str, user: str, peers: list[str], args: Any, marks: Any, out: Any
) -> None:
    try:
        out.put(asyncio.run(_participant(server, app_id, app_key, room_id, user, peers, args, marks)))
    except BaseException as exc:
        out.put(f"{room_id}/{user} failed: {exc!r}")
        raise


# -- the run ------------------------------------------------------------------------------------------


def janus_capacity(args: argparse.Namespace) -> str:
    tmp = Path(tempfile.mkdtemp(prefix="ember-bench-capacity-"))
    port = _free_port()
    server = f"http://127.0.0.1:{port}"
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT / "src"), os.environ.get("PYTHONPATH")])),
        "EMBER_DATA_DIR": str(tmp / "data"),
        "EMBER_RATE_LIMITS": "off",
        "EMBER_MEDIA_ENABLED": "true",
        "EMBER_MEDIA_IP": MEDIA_IP,
    }
    log = (tmp / "ember.log").open("wb")
    ember = subprocess.Popen(
        [sys.executable, "-m", "emberrtc.cli", "serve", "--port", str(port)], env=env, stdout=log, stderr=log
    )
    ctx = mp.get_context("spawn")
    marks = (None, ctx.Event(), ctx.Event())
    out = ctx.Queue()
    procs: list[Any] = []
    failed = True
    try:
        wait_http(f"{server}/openapi.json", 60)
        janus = child_pid(ember.pid, "janus")
        if janus is None:
            raise SystemExit("Ember started without a Janus child: is Janus installed (apt-get install janus)?")
        app_id, app_key = make_app(server, env)
        readies = []
        for r in range(args.rooms):
            users = [f"p{i}" for i in range(args.size)]
            for user in users:
                ready = ctx.Event()
                readies.append(ready)
                peers = [u for u in users if u != user]
                proc = ctx.Process(
                    target=participant_main,
                    args=(server, app_id, app_key, f"{ROOM_PREFIX}-{r}", user, peers, args, (ready, *marks[1:]), out),
                )
                proc.start()
                procs.append(proc)
        deadline = time.monotonic() + 180
        for ready in readies:
            if not ready.wait(max(0.0, deadline - time.monotonic())):
                raise SystemExit("not every participant received every other camera within 180 s")
        time.sleep(args.warmup)  # a measurement's warm-up, not a synchronisation
        cpu0 = (cpu_seconds(janus), cpu_seconds(ember.pid), time.monotonic())
        marks[1].set()
        time.sleep(args.seconds)  # the measured span
        cpu1 = (cpu_seconds(janus), cpu_seconds(ember.pid), time.monotonic())
        marks[2].set()
        results = [out.get(timeout=60) for _ in procs]
        errors = [r for r in results if isinstance(r, str)]
        if errors:
            raise SystemExit("; ".join(errors))
        failed = False
    finally:
        marks[1].set()
        marks[2].set()
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
    janus_cores = (cpu1[0] - cpu0[0]) / wall
    ember_cores = (cpu1[1] - cpu0[1]) / wall
    people = len(results)
    total = {k: sum(r[k] for r in results) for k in results[0]}
    span = total["seconds"] / people
    packets = (total["sent"] + total["received"]) / span  # every client packet goes through Janus once
    kbps = 8 * total["bytes_sent"] / span / people / 1000
    loss = 100 * total["lost"] / max(1.0, total["lost"] + total["inbound"])
    per_janus = janus_cores / people
    per_both = (janus_cores + ember_cores) / people
    print(
        f"cores: {os.cpu_count()}, load {os.getloadavg()[0]:.1f}, window {wall:.1f} s, {people} participants "
        f"({args.rooms} rooms of {args.size}), {args.width}x{args.height}@{args.fps:g} VP8 + Opus, "
        f"{'flat' if args.flat else 'textured'} picture"
    )
    print(
        f"Janus {100 * janus_cores:.1f} % of a core ({100 * per_janus:.2f} % per participant), Ember "
        f"{100 * ember_cores:.1f} % ({100 * ember_cores / people:.2f} % per participant)"
    )
    print(
        f"through Janus: {packets:.0f} packets/s ({packets / people:.0f} per participant), "
        f"{1e6 * janus_cores / packets:.1f} us of Janus CPU per packet; each participant sends {kbps:.0f} kbit/s; "
        f"subscriptions lost {loss:.2f} % of packets"
    )
    return (
        f"participants per core: Janus {1 / per_janus:.0f}, Janus + Ember {1 / per_both:.0f} "
        f"({args.width}x{args.height}@{args.fps:g} VP8 + Opus, {kbps:.0f} kbit/s each, rooms of {args.size}, "
        f"everyone subscribed to everyone; loss {loss:.2f} %)"
    )


def last_line(cmd: list[str]) -> str:
    """Run another benchmark; its figure (its last line)."""
    r = subprocess.run([sys.executable, *cmd], cwd=ROOT, capture_output=True, text=True)
    if r.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed: {r.stderr[-2000:]}")
    return r.stdout.strip().splitlines()[-1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rooms", type=int, default=2)
    ap.add_argument("--size", type=int, default=4, help="participants per room")
    ap.add_argument("--width", type=int, default=320)
    ap.add_argument("--height", type=int, default=180)
    ap.add_argument("--fps", type=float, default=15)
    ap.add_argument("--flat", action="store_true", help="a flat colour picture (ColourVideoTrack), few bits")
    ap.add_argument("--seconds", type=float, default=20, help="the measured span")
    ap.add_argument("--warmup", type=float, default=5)
    ap.add_argument("--recording", action="store_true", help="also run bench/recording.py briefly")
    ap.add_argument("--mixer", action="store_true", help="also run bench/mixer.py briefly")
    ap.add_argument("--inside", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.rooms < 1 or args.size < 2 or args.seconds <= 0:
        ap.error("--rooms >= 1, --size >= 2, --seconds > 0")
    if not (_is_local(MEDIA_IP) and _is_local(PEER_IP)):
        if args.inside:
            raise SystemExit(f"no local address {MEDIA_IP}: the namespace was not set up")
        if os.geteuid() != 0:
            raise SystemExit("bench/capacity.py creates a network namespace: run it as root")
        netns = str(ROOT / "scripts" / "netns.sh")
        name = f"ember-bench-cap-{os.getpid()}"
        subprocess.run([netns, "up", name], check=True)
        try:
            argv = [a for a in sys.argv[1:] if a != "--inside"]
            rc = subprocess.run([netns, "exec", name, sys.executable, __file__, "--inside", *argv], cwd=ROOT)
        finally:
            subprocess.run([netns, "down", name], check=False)
        raise SystemExit(rc.returncode)
    if args.recording:
        print("recording: " + last_line(["bench/recording.py", "--h264-jobs", "4", "--vp8-jobs", "2"]), flush=True)
    if args.mixer:
        print("mixer: " + last_line(["bench/mixer.py", "--rounds", "1", "--seconds", "5"]), flush=True)
    print(janus_capacity(args))


if __name__ == "__main__":
    main()
