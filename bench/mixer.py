"""Mixed-stream cost: Ember's compositor against FFmpeg on the same nine inputs (issue 9, ``bench/mixer.py``).

Nine H.264 640x360@30 clips with audio are made once by FFmpeg (moving test pictures under temporal
noise, so the encoders cannot make them cheap; a tone each) and kept in ``--clips``. Each round composes
them into a 3x3 nine_grids_view for each template, both ways, one after the other (which goes first
alternates by round; a short run of each side before the rounds is not counted):

- Ember: PyAV decode of every input (video and audio) -> ``compute_layout`` + ``Compositor`` ->
  ``MixVideoEncoder`` (libx264, the recording preset, the template's bit rate) and ``AudioMixer`` ->
  AAC (the recording's audio settings), in this process;
- FFmpeg: ``scale`` (bilinear; Ember shrinks pictures by area averaging, which costs the same in swscale,
  see ``compositor``) + ``xstack`` + ``amix``, libx264 with the same preset, tune and bit rate,
  AAC with the same settings, in a child process.

Both outputs are encoded and discarded (no muxing on either side). CPU time is user + system from
``resource.getrusage`` (this process for Ember, its children for FFmpeg), threads included. Printed per
template: CPU-seconds per output second for both sides (the median of the rounds), their ratio on the
last line. Targets: ratio at most 1.0 at 720p, Ember at most 0.7 of a core per 720p30 composite.

    python bench/mixer.py [--seconds 10] [--rounds 2] [--clips DIR]
"""

from __future__ import annotations

import argparse
import dataclasses
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Generator
from fractions import Fraction
from pathlib import Path

import av

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from emberrtc.recording.audio_mixer import AudioMixer  # noqa: E402
from emberrtc.recording.compositor import Compositor  # noqa: E402
from emberrtc.recording.layout import CAMERA, Participant, compute_layout, layout_params  # noqa: E402
from emberrtc.recording.mix_video import EncodeTemplate, MixVideoEncoder, parse_template  # noqa: E402
from emberrtc.recording.plan import Encoding  # noqa: E402

INPUTS = 9
WIDTH, HEIGHT, FPS = 640, 360, 30
CLIP_SECONDS = 12
TEMPLATES = ("1280*720_30_1710", "1920*1080_30_4620")
FFMPEG = shutil.which("ffmpeg") or "/usr/bin/ffmpeg"
ENCODING = Encoding()
AAC_TOOLS = {"aac_tns": "0", "aac_pns": "0", "aac_ms": "0", "aac_is": "0"}


# --- inputs ------------------------------------------------------------------------------------------------


def make_clips(folder: Path) -> list[Path]:
    """Nine noisy, moving 640x360@30 H.264 + AAC clips (made once; reused when present)."""
    folder.mkdir(parents=True, exist_ok=True)
    clips = [folder / f"input{i}.mp4" for i in range(INPUTS)]
    for i, clip in enumerate(clips):
        if clip.exists():
            continue
        pattern = "testsrc2" if i % 2 == 0 else "mandelbrot"
        video = (
            f"{pattern}=size={WIDTH}x{HEIGHT}:rate={FPS},hue=h={40 * i},"
            f"noise=alls=24:allf=t+u:all_seed={i + 1},format=yuv420p"
        )
        audio = f"sine=frequency={220 + 110 * i}:sample_rate=48000"
        part = clip.with_suffix(".part.mp4")
        subprocess.run(
            [FFMPEG, "-nostdin", "-hide_banner", "-loglevel", "error", "-y",
             "-f", "lavfi", "-i", video, "-f", "lavfi", "-i", audio, "-t", str(CLIP_SECONDS),
             "-c:v", "libx264", "-preset", "veryfast", "-b:v", "900k", "-g", str(2 * FPS), "-bf", "0",
             "-c:a", "aac", "-b:a", "64k", "-ac", "1", str(part)],
            check=True,
        )  # fmt: skip
        part.rename(clip)
    return clips


# --- Ember -------------------------------------------------------------------------------------------------


def _frames(path: Path, threads: int) -> Generator[av.VideoFrame | av.AudioFrame]:
    with av.open(str(path)) as container:
        video, audio = container.streams.video[0], container.streams.audio[0]
        video.thread_type = "AUTO"
        video.thread_count = threads
        yield from container.decode(video, audio)  # type: ignore[misc]  # a video and an audio stream only


def ember(clips: list[Path], template: EncodeTemplate, seconds: float, threads: int) -> float:
    """Compose ``seconds`` of output; CPU-seconds used (this process, threads included)."""
    start = _cpu(resource.RUSAGE_SELF)
    people = [Participant(f"user{i}", i, True, False) for i in range(len(clips))]
    layout = compute_layout(
        layout_params({"layout_template": "nine_grids_view"}), people, template.width, template.height
    )
    compositor = Compositor(template.width, template.height)
    compositor.set_layout(layout)
    encoder = MixVideoEncoder(template, dataclasses.replace(ENCODING, threads=threads))
    mixer = AudioMixer(ENCODING.audio_sample_rate)
    aac = _aac_encoder()
    fifo = av.AudioFifo()
    inputs = [_frames(clip, threads) for clip in clips]
    frames = int(seconds * template.fps)
    per_frame = ENCODING.audio_sample_rate // template.fps
    audio_pts = 0
    for n in range(frames):
        now = n / template.fps
        for person, frames_of in zip(people, inputs, strict=True):
            # Up to this output frame's time: every audio frame to the mixer, the newest picture to the tile.
            for frame in frames_of:
                if isinstance(frame, av.AudioFrame):
                    mixer.push(person.user_id, frame)
                    continue
                compositor.update((person.user_id, CAMERA), frame)
                if frame.time is None or frame.time >= now - 0.5 / template.fps:
                    break
        encoder.encode(compositor.compose(), template.pts(n))
        fifo.write(mixer.pull(per_frame))
        while fifo.samples >= 1024:
            block = fifo.read(1024)
            assert block is not None
            block.pts, block.time_base = audio_pts, Fraction(1, ENCODING.audio_sample_rate)
            audio_pts += 1024
            aac.encode(block)
    encoder.flush()
    aac.encode(None)
    for frames_of in inputs:
        frames_of.close()
    return _cpu(resource.RUSAGE_SELF) - start


def _aac_encoder() -> av.AudioCodecContext:
    aac = av.CodecContext.create("aac", "w")
    assert isinstance(aac, av.AudioCodecContext)
    aac.sample_rate = ENCODING.audio_sample_rate
    aac.layout = "stereo"
    aac.format = "fltp"
    aac.bit_rate = ENCODING.audio_bit_rate
    aac.time_base = Fraction(1, ENCODING.audio_sample_rate)
    aac.options = {"aac_coder": ENCODING.audio_coder, **AAC_TOOLS}
    aac.open()
    return aac


# --- FFmpeg ------------------------------------------------------------------------------------------------


def ffmpeg_command(clips: list[Path], template: EncodeTemplate, seconds: float, threads: int) -> list[str]:
    """The same composite by FFmpeg's filters: tiles at the positions and sizes of Ember's layout."""
    people = [Participant(f"user{i}", i, True, False) for i in range(len(clips))]
    layout = compute_layout(
        layout_params({"layout_template": "nine_grids_view"}), people, template.width, template.height
    )
    graph = [f"[{i}:v]scale={t.width}:{t.height}:flags=bilinear,setsar=1[v{i}]" for i, t in enumerate(layout.tiles)]
    positions = "|".join(f"{t.x}_{t.y}" for t in layout.tiles)
    graph.append("".join(f"[v{i}]" for i in range(len(clips))) + f"xstack=inputs={len(clips)}:layout={positions}[v]")
    graph.append("".join(f"[{i}:a]" for i in range(len(clips))) + f"amix=inputs={len(clips)}[a]")
    inputs = [arg for clip in clips for arg in ("-threads", str(threads), "-i", str(clip))]
    kbps = f"{template.kbps}k"
    gop = str(max(1, round(ENCODING.video_gop_seconds * template.fps)))  # as MixVideoEncoder
    aac = [arg for key, value in AAC_TOOLS.items() for arg in (f"-{key}", value)]
    return [
        FFMPEG, "-nostdin", "-hide_banner", "-loglevel", "error", "-filter_complex_threads", str(threads), *inputs,
        "-filter_complex", ";".join(graph), "-threads", str(threads), "-map", "[v]", "-map", "[a]", "-t", str(seconds),
        "-c:v", "libx264", "-preset", ENCODING.video_preset, "-tune", "zerolatency", "-b:v", kbps,
        "-maxrate", kbps, "-bufsize", kbps, "-r", str(template.fps), "-g", gop,
        "-c:a", "aac", "-b:a", str(ENCODING.audio_bit_rate), "-aac_coder", ENCODING.audio_coder, *aac,
        "-ar", str(ENCODING.audio_sample_rate), "-ac", "2",
        "-f", "null", "-",
    ]  # fmt: skip


def ffmpeg(clips: list[Path], template: EncodeTemplate, seconds: float, threads: int) -> float:
    start = _cpu(resource.RUSAGE_CHILDREN)
    subprocess.run(ffmpeg_command(clips, template, seconds, threads), check=True)
    return _cpu(resource.RUSAGE_CHILDREN) - start


def _cpu(who: int) -> float:
    usage = resource.getrusage(who)
    return usage.ru_utime + usage.ru_stime


# --- main --------------------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=10.0, help="output seconds per run (at most 12)")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument(
        "--threads",
        type=int,
        default=ENCODING.threads,
        help="codec threads on both sides (default: the recording's, one job per process; 0: automatic)",
    )
    parser.add_argument("--clips", type=Path, default=Path(tempfile.gettempdir()) / "ember-bench-mixer")
    args = parser.parse_args()
    seconds = min(args.seconds, CLIP_SECONDS - 1)
    clips = make_clips(args.clips)
    results: dict[str, dict[str, list[float]]] = {t: {"ember": [], "ffmpeg": []} for t in TEMPLATES}
    # Warm-up, not counted: clips into the page cache, libraries and encoders initialised once.
    ember(clips, parse_template(TEMPLATES[0]), 1.0, args.threads)
    ffmpeg(clips, parse_template(TEMPLATES[0]), 1.0, args.threads)
    for r in range(args.rounds):
        for name in TEMPLATES:
            template = parse_template(name)
            sides = [("ember", ember), ("ffmpeg", ffmpeg)]
            for side, run in sides if r % 2 == 0 else sides[::-1]:
                cpu = run(clips, template, seconds, args.threads)
                results[name][side].append(cpu / seconds)
                print(f"round {r + 1} {name} {side:6}: {cpu / seconds:.3f} CPU-s per output second", flush=True)
    ratios = []
    for name in TEMPLATES:
        ours, theirs = (statistics.median(results[name][s]) for s in ("ember", "ffmpeg"))
        ratios.append(f"{name} {ours / theirs:.2f}")
        print(f"{name}: Ember {ours:.3f}, FFmpeg {theirs:.3f} CPU-s per output second")
    ember_720 = statistics.median(results[TEMPLATES[0]]["ember"])
    print(f"ratio Ember/FFmpeg: {', '.join(ratios)}; Ember 720p30 composite: {ember_720:.2f} of a core")


if __name__ == "__main__":
    main()
