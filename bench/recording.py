"""Recording cost: CPU per concurrent single-stream job, as streams per core (issue 4, ``bench/recording.py``).

Several recording workers run side by side, each fed its own copy of a WebRTC-like publisher's RTP over
loopback at real-time pace: 640x360 at 30 fps (a moving, textured picture, encoded by aiortc's encoders at
their WebRTC bit rates) with Opus audio, recorded to MP4 with AAC audio. Two phases:

- H.264 publishers: video passed through (no re-encode), Opus -> AAC;
- VP8 publishers: video transcoded to H.264 (libx264 ultrafast), Opus -> AAC.

Each worker's CPU time (user + system, from ``/proc/PID/stat``) is measured over a fixed span of media
after a warm-up; streams per core = media seconds / CPU seconds. The clip is encoded once, before the
measurement, and looped with fresh sequence numbers and timestamps, so the sender's cost stays out of it.

Last line: ``streams per core: H.264 passthrough X, VP8 transcode Y``. Targets: >= 20 and >= 4.

    python bench/recording.py [--h264-jobs 6] [--vp8-jobs 3] [--seconds 20] [--warmup 3]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from aiortc.codecs.h264 import H264Encoder
from aiortc.codecs.opus import OpusEncoder
from aiortc.codecs.vpx import Vp8Encoder

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from emberrtc.recording import reports  # noqa: E402
from emberrtc.recording.plan import (  # noqa: E402
    AudioInput,
    Endpoint,
    Mp4Output,
    ObjectNaming,
    RecordingPlan,
    VideoCap,
    VideoInput,
)
from emberrtc.recording.reports import FileCompleted, Ready  # noqa: E402
from emberrtc.synthetic import SineTone  # noqa: E402

WIDTH, HEIGHT, FPS = 640, 360, 30
CLIP_SECONDS = 10
TICK = os.sysconf("SC_CLK_TCK")


@dataclass
class ClipFrame:
    t: float  # media time within the clip
    kind: str  # video | audio
    payloads: list[bytes]


def textured_video(n: int, texture: np.ndarray) -> av.VideoFrame:
    """A smooth random texture panning 2 px a frame: motion and detail like a camera's, repeatable."""
    x = (2 * n) % (texture.shape[1] - WIDTH)
    luma = texture[:HEIGHT, x : x + WIDTH]
    image = np.empty((HEIGHT * 3 // 2, WIDTH), dtype=np.uint8)
    image[:HEIGHT] = luma
    image[HEIGHT:] = 128
    frame = av.VideoFrame.from_ndarray(image, format="yuv420p")
    frame.pts, frame.time_base = round(n * 90_000 / FPS), Fraction(1, 90_000)
    return frame


def make_clip(codec: str) -> list[ClipFrame]:
    rng = np.random.default_rng(7)
    block = 4  # detail at which both encoders spend about their WebRTC bit rates on 640x360
    coarse = rng.integers(40, 215, (HEIGHT // block + 1, (WIDTH + 2 * FPS * CLIP_SECONDS) // block + 2))
    texture = np.kron(coarse.astype(np.uint8), np.ones((block, block), dtype=np.uint8))
    video_enc = H264Encoder() if codec == "H264" else Vp8Encoder()
    audio_enc, tone = OpusEncoder(), SineTone(440.0, layout="stereo")
    clip: list[ClipFrame] = []
    for n in range(FPS * CLIP_SECONDS):
        payloads, _ = video_enc.encode(textured_video(n, texture), force_keyframe=n == 0)
        clip.append(ClipFrame(n / FPS, "video", payloads))
    for n in range(50 * CLIP_SECONDS):
        payloads, _ = audio_enc.encode(tone.frame(n))
        clip.append(ClipFrame(n * 0.02, "audio", payloads))
    clip.sort(key=lambda f: (f.t, f.kind))
    return clip


class Stream:
    """One publisher's RTP state (SSRCs, sequence numbers, timestamp bases) towards one worker."""

    def __init__(self, ports: dict[str, int], seed: int) -> None:
        rnd = random.Random(seed)
        self.ports = ports
        self.ssrc = {"video": rnd.getrandbits(32), "audio": rnd.getrandbits(32)}
        self.seq = {"video": rnd.getrandbits(16), "audio": rnd.getrandbits(16)}
        self.base = {"video": rnd.getrandbits(32), "audio": rnd.getrandbits(32)}

    def packets(self, frame: ClipFrame, t: float) -> list[tuple[bytes, int]]:
        rate = 90_000 if frame.kind == "video" else 48_000
        ts = (self.base[frame.kind] + round(t * rate)) % (1 << 32)
        out = []
        for i, payload in enumerate(frame.payloads):
            self.seq[frame.kind] = (self.seq[frame.kind] + 1) % 65536
            marker = 0x80 if frame.kind == "video" and i == len(frame.payloads) - 1 else 0
            pt = 96 if frame.kind == "video" else 111
            header = bytes([0x80, marker | pt]) + self.seq[frame.kind].to_bytes(2, "big")
            header += ts.to_bytes(4, "big") + self.ssrc[frame.kind].to_bytes(4, "big")
            out.append((header + payload, self.ports[frame.kind]))
        return out


def send(clip: list[ClipFrame], streams: list[Stream], seconds: float) -> None:
    """Real-time pacing: every frame leaves when its media time comes, for every stream."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    start = time.monotonic()
    loop = 0
    while True:
        for frame in clip:
            t = loop * CLIP_SECONDS + frame.t
            if t >= seconds:
                return
            delay = start + t - time.monotonic()
            if delay > 0:
                time.sleep(delay)  # pacing a live sender, not synchronisation
            for stream in streams:
                for data, port in stream.packets(frame, t):
                    sock.sendto(data, ("127.0.0.1", port))
        loop += 1


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK  # utime, stime (fields 14 and 15 of stat(5))


def start_worker(codec: str, spool: Path, index: int) -> tuple[subprocess.Popen[bytes], dict[str, int]]:
    naming = ObjectNaming("{stream}_{file_start_time}", "bench", f"{codec}{index}", location="local", bucket="b")
    plan = RecordingPlan(
        job_id=f"{codec}-{index}",
        app_id="bench",
        room_id="room",
        stream_name=f"{codec}{index}",
        location="local",
        bucket="b",
        spool_dir=str(spool / f"{codec}-{index}"),
        video=VideoInput(codec, VideoCap.for_stream_type("SD"), Endpoint("127.0.0.1", 0)),
        audio=AudioInput(endpoint=Endpoint("127.0.0.1", 0)),
        mp4=Mp4Output(naming, record_cycle=3600),
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "emberrtc.recording.worker", "-"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        env=env,
    )
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write(plan.to_json().encode() + b"\n")
    proc.stdin.flush()
    ready = reports.decode(proc.stdout.readline())
    assert isinstance(ready, Ready)
    return proc, ready.ports


def stop_worker(proc: subprocess.Popen[bytes]) -> list[FileCompleted]:
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write(json.dumps({"cmd": "stop"}).encode() + b"\n")
    proc.stdin.flush()
    done = [r for r in map(reports.decode, proc.stdout) if isinstance(r, FileCompleted)]
    proc.wait(timeout=60)
    return done


def phase(codec: str, jobs: int, seconds: float, warmup: float, spool: Path) -> float:
    """Streams per core for ``jobs`` concurrent jobs of ``codec`` publishers."""
    clip = make_clip(codec)
    bitrate = sum(len(p) for f in clip if f.kind == "video" for p in f.payloads) * 8 / CLIP_SECONDS / 1000
    workers = [start_worker(codec, spool, i) for i in range(jobs)]
    streams = [Stream(ports, seed=i) for i, (_, ports) in enumerate(workers)]
    sender = threading.Thread(target=send, args=(clip, streams, warmup + seconds), daemon=True)
    sender.start()
    time.sleep(warmup)  # pacing: the measurement window starts after the warm-up
    before = [cpu_seconds(p.pid) for p, _ in workers]
    t0 = time.monotonic()
    sender.join()
    elapsed = time.monotonic() - t0
    after = [cpu_seconds(p.pid) for p, _ in workers]
    files = [stop_worker(p) for p, _ in workers]
    shares = [(a - b) / elapsed for a, b in zip(after, before, strict=True)]
    for i, (share, done) in enumerate(zip(shares, files, strict=True)):
        recorded = sum(f.duration for f in done)
        total = warmup + seconds
        print(f"  {codec} job {i}: {100 * share:5.1f} % of a core, recorded {recorded:.1f} s of {total:.0f} s")
    mean = statistics.mean(shares)
    print(
        f"{codec}: {jobs} jobs, video {bitrate:.0f} kbit/s at {WIDTH}x{HEIGHT}@{FPS}, "
        f"{100 * mean:.1f} % of a core per job over {elapsed:.1f} s"
    )
    return 1 / mean


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--h264-jobs", type=int, default=6)
    parser.add_argument("--vp8-jobs", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=20.0, help="measured media time per phase")
    parser.add_argument("--warmup", type=float, default=3.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="ember-bench-rec-") as tmp:
        h264 = phase("H264", args.h264_jobs, args.seconds, args.warmup, Path(tmp))
        vp8 = phase("VP8", args.vp8_jobs, args.seconds, args.warmup, Path(tmp))
    print(f"streams per core: H.264 passthrough {h264:.1f}, VP8 transcode {vp8:.1f}")


if __name__ == "__main__":
    main()
