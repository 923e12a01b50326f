"""Mixed-stream cost: Ember's compositor against FFmpeg on the same nine inputs (issue 9, ``bench/mixer.py``).

Nine H.264 640x360@30 clips with audio are made once by FFmpeg (moving test pictures under temporal
noise, so the encoders cannot make them cheap; a tone each) and kept in ``--clips``. Each round composes
them into a 3x3 nine_grids_view for each template four ways, one after the other (the order reverses
every round; a short run of each before the rounds is not counted):

- Ember: PyAV decode of every input (video and audio) -> ``compute_layout`` + ``Compositor`` ->
  ``MixVideoEncoder`` (libx264, the recording preset, the template's bit rate) and ``AudioMixer`` ->
  AAC (the recording's audio settings), in this process;
- FFmpeg, the reference the issue names: the ``ffmpeg`` command (the system's) with ``scale`` (bilinear;
  Ember shrinks pictures by area averaging, which costs the same in swscale, see ``compositor``) +
  ``xstack`` + ``amix``, libx264 with the same preset, tune and bit rate, AAC with the same settings, in
  a child process;
- libavfilter: the same filter graph run by the FFmpeg libraries Ember itself uses (PyAV's build), on the
  same decoded frames and into the same encoders as Ember, in this process. Ember and this side differ
  only in the compositing, so the libraries' versions and build (PyAV's FFmpeg 8 against the system's
  FFmpeg 5.1, whose decoders and libx264 are faster on some machines and slower on others) do not enter
  this ratio;
- pipeline: Ember's whole mixed-job worker pipeline (``MixPipeline``), fed the room as Janus forwards it:
  RTP of each clip's own H.264 bitstream (packetized as WebRTC does) and of its tone in Opus (encoded
  before the rounds, not counted), in 20 ms steps; jitter buffers, depacketizing, decoding, compositor,
  mixer, encoders and MP4 files, as a job runs. Not a comparison (Opus, not AAC, and muxing): the cost of
  a mixed job as it runs, which the 0.7-core target is about.

Outputs of the first three sides are encoded and discarded (no muxing). CPU time is user + system from
``resource.getrusage`` (this process for Ember, libavfilter and pipeline, its children for FFmpeg), threads
included. A composite runs for as long as its meeting, so what counts is its cost while it runs: each side's
CPU for a 1-second run (start-up: FFmpeg's process loading its libraries, about 0.3 CPU-s here, and every side
opening and probing its nine inputs) is taken off its CPU for the full run, and divided by the seconds in
between. Printed per template: CPU-seconds per output second for each side (the median of the rounds), then
Ember's ratios round by round (the median of each round's ratio, with a bootstrap 95 % interval: a tighter
figure with more ``--rounds``); on the last line, Ember's ratio to FFmpeg and to libavfilter (of the medians),
and the cost of Ember's composite and of its whole mixed job at 720p30. Targets: ratio to FFmpeg at most 1.0
at 720p, Ember at most 0.7 of a core per 720p30 composite.

With ``--count instructions`` each of the three compositing sides is run under valgrind's callgrind
instead (one run each per template), and the figure is the instructions it executes per output second: a count
that the machine's load does not move, where CPU time moves by several per cent between runs here.
Instructions are not seconds (interpreted Python runs fewer of them per cycle than FFmpeg's SIMD code), so
the targets stay in CPU time; the count tells what work each side does, library by library.

    python bench/mixer.py [--seconds 10] [--rounds 4] [--clips DIR] [--count cpu|instructions]
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import os
import random
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Callable, Generator
from concurrent.futures import ThreadPoolExecutor
from fractions import Fraction
from pathlib import Path
from typing import Any, NamedTuple

import av
import av.filter
from aiortc.codecs.h264 import H264Encoder
from aiortc.rtp import RtpPacket
from av.bitstream import BitStreamFilterContext

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from emberrtc.recording.audio_mixer import AudioMixer  # noqa: E402
from emberrtc.recording.compositor import Compositor  # noqa: E402
from emberrtc.recording.layout import CAMERA, Layout, Participant, Tile, compute_layout, layout_params  # noqa: E402
from emberrtc.recording.mix_pipeline import MixPipeline  # noqa: E402
from emberrtc.recording.mix_video import EncodeTemplate, MixVideoEncoder, parse_template  # noqa: E402
from emberrtc.recording.plan import (  # noqa: E402
    H264,
    OPUS,
    Encoding,
    Endpoint,
    MixInput,
    MixStream,
    Mp4Output,
    ObjectNaming,
    RecordingPlan,
)

INPUTS = 9
WIDTH, HEIGHT, FPS = 640, 360, 30
CLIP_SECONDS = 12
LEAD = 1.0  # seconds of a run whose CPU is taken off each full run's (start-up is not the composite's cost)
TEMPLATES = ("1280*720_30_1710", "1920*1080_30_4620")
FFMPEG = shutil.which("ffmpeg") or "/usr/bin/ffmpeg"
VALGRIND = shutil.which("valgrind") or "/usr/bin/valgrind"
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


def grid(count: int, template: EncodeTemplate) -> Layout:
    """Ember's nine_grids_view for ``count`` users: the tiles every side composes."""
    people = [Participant(f"user{i}", i, True, False) for i in range(count)]
    return compute_layout(
        layout_params({"layout_template": "nine_grids_view"}), people, template.width, template.height
    )


class EmberSide:
    """Ember: ``Compositor`` on ``compute_layout``'s tiles, ``AudioMixer`` (the three loudest)."""

    def __init__(self, count: int, template: EncodeTemplate) -> None:
        self.compositor = Compositor(template.width, template.height)
        self.compositor.set_layout(grid(count, template))
        self.mixer = AudioMixer(ENCODING.audio_sample_rate)
        self.users = [f"user{i}" for i in range(count)]
        self.per_frame = ENCODING.audio_sample_rate // template.fps

    def video(self, index: int, frame: av.VideoFrame) -> None:
        self.compositor.update((self.users[index], CAMERA), frame)

    def audio(self, index: int, frame: av.AudioFrame) -> None:
        self.mixer.push(self.users[index], frame)

    def step(self) -> tuple[list[av.VideoFrame], list[av.AudioFrame]]:
        """One output frame period: its picture and its sound."""
        return [self.compositor.compose()], [self.mixer.pull(self.per_frame)]


class FilterGraphSide:
    """FFmpeg's filter graph, run by the FFmpeg libraries Ember itself uses (PyAV's build), in this process.

    The graph of :func:`ffmpeg_command` (``scale`` + ``xstack`` + ``amix``) on the same decoded frames
    and into the same encoders as Ember: the two sides differ only in the compositing, so the library
    versions (PyAV's FFmpeg against the system's ``ffmpeg``) do not enter the ratio.
    """

    def __init__(self, count: int, template: EncodeTemplate, width: int, height: int, threads: int = 1) -> None:
        graph = av.filter.Graph()
        graph.threads = threads
        layout = grid(count, template)
        stack = graph.add("xstack", _xstack_args(layout))
        mix = graph.add("amix", f"inputs={count}")
        rate = ENCODING.audio_sample_rate
        self._videos, self._audios = [], []
        for i, tile in enumerate(layout.tiles):
            source = graph.add_buffer(
                width=width, height=height, format=av.VideoFormat("yuv420p"), time_base=Fraction(1, template.fps)
            )
            scale = graph.add("scale", _scale_args(tile))
            source.link_to(scale)
            scale.link_to(stack, 0, i)
            sound = graph.add("abuffer", f"sample_rate={rate}:sample_fmt=fltp:channel_layout=mono:time_base=1/{rate}")
            sound.link_to(mix, 0, i)
            self._videos.append(source)
            self._audios.append(sound)
        stereo = graph.add("aformat", f"sample_fmts=fltp:channel_layouts=stereo:sample_rates={rate}")
        mix.link_to(stereo)
        self._pictures, self._sound = graph.add("buffersink"), graph.add("abuffersink")
        stack.link_to(self._pictures)
        stereo.link_to(self._sound)
        graph.configure()
        self._graph = graph  # its filters hold it only weakly
        self._frames = [0] * count
        self._samples = [0] * count
        self._rate = Fraction(1, rate)
        self._period = Fraction(1, template.fps)

    def video(self, index: int, frame: av.VideoFrame) -> None:
        frame.pts, frame.time_base = self._frames[index], self._period  # one picture per output period
        self._frames[index] += 1
        self._videos[index].push(frame)

    def audio(self, index: int, frame: av.AudioFrame) -> None:
        frame.pts, frame.time_base = self._samples[index], self._rate
        self._samples[index] += frame.samples
        self._audios[index].push(frame)

    def step(self) -> tuple[list[av.VideoFrame], list[av.AudioFrame]]:
        """What the graph has made so far (a picture per period once every input has given one)."""
        return _drain(self._pictures), _drain(self._sound)


def _scale_args(tile: Tile) -> str:
    """FFmpeg's ``scale`` to a tile's size (bilinear: see the module docstring)."""
    return f"{tile.width}:{tile.height}:flags=bilinear"


def _xstack_args(layout: Layout) -> str:
    """FFmpeg's ``xstack`` of the layout's tiles, each at its place."""
    return f"inputs={len(layout.tiles)}:layout={'|'.join(f'{t.x}_{t.y}' for t in layout.tiles)}"


def _drain(sink: av.filter.context.FilterContext) -> list:  # type: ignore[type-arg]
    out = []
    while True:
        try:
            out.append(sink.pull())
        except (av.error.BlockingIOError, av.error.EOFError):
            return out


def ember(clips: list[Path], template: EncodeTemplate, seconds: float, threads: int) -> float:
    """Compose ``seconds`` of output with Ember; CPU-seconds used (this process, threads included)."""
    return _compose(clips, template, seconds, threads, EmberSide(len(clips), template))


def libavfilter(clips: list[Path], template: EncodeTemplate, seconds: float, threads: int) -> float:
    """The same with FFmpeg's filter graph on PyAV's FFmpeg libraries, in this process."""
    return _compose(clips, template, seconds, threads, FilterGraphSide(len(clips), template, WIDTH, HEIGHT, threads))


def _compose(
    clips: list[Path], template: EncodeTemplate, seconds: float, threads: int, side: EmberSide | FilterGraphSide
) -> float:
    """Decode every input, feed ``side`` up to each output frame's time, encode what it makes; CPU-seconds."""
    start = _cpu(resource.RUSAGE_SELF)
    encoder = MixVideoEncoder(template, dataclasses.replace(ENCODING, threads=threads))
    aac = _aac_encoder()
    fifo = av.AudioFifo()
    inputs = [_frames(clip, threads) for clip in clips]
    frames = int(seconds * template.fps)
    audio_pts = encoded = 0
    for n in range(frames):
        now = n / template.fps
        for index, frames_of in enumerate(inputs):
            # Up to this output frame's time: every audio frame to the mixer, the newest picture to the tile.
            for frame in frames_of:
                if isinstance(frame, av.AudioFrame):
                    side.audio(index, frame)
                    continue
                side.video(index, frame)
                if frame.time is None or frame.time >= now - 0.5 / template.fps:
                    break
        pictures, sound = side.step()
        for picture in pictures:
            encoder.encode(picture, template.pts(encoded))
            encoded += 1
        for made in sound:
            made.pts = None  # the fifo is the timeline
            fifo.write(made)
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


# --- Ember's whole mixed job -------------------------------------------------------------------------------


class Feed(NamedTuple):
    """The nine clips as a room forwards them to a mixed job: RTP datagrams of each publisher's H.264 (the
    clip's own bitstream, packetized as WebRTC does) and Opus (the clip's tone, encoded once here), and the
    streams the job's plan names; each datagram with its media time."""

    streams: tuple[MixStream, ...]
    datagrams: tuple[tuple[float, bytes], ...]  # sorted by time


def make_feed(clips: list[Path], seconds: float) -> Feed:
    streams: list[MixStream] = []
    datagrams: list[tuple[float, bytes]] = []
    for i, clip in enumerate(clips):
        video_ssrc, audio_ssrc = 1000 * (i + 1), 1000 * (i + 1) + 1
        streams += [
            MixStream(video_ssrc, f"user{i}", CAMERA, "video", H264, i),
            MixStream(audio_ssrc, f"user{i}", CAMERA, "audio", OPUS, i),
        ]
        datagrams += _h264_rtp(clip, video_ssrc, seconds) + _opus_rtp(clip, audio_ssrc, seconds)
    datagrams.sort(key=lambda item: item[0])
    return Feed(tuple(streams), tuple(datagrams))


def _rtp(ssrc: int, payload_type: int) -> Callable[[bytes, int, bool], bytes]:
    sequence = itertools.count(ssrc)  # any start will do

    def packet(payload: bytes, timestamp: int, marker: bool) -> bytes:
        return RtpPacket(
            payload_type=payload_type, marker=int(marker), sequence_number=next(sequence) % 65536,
            timestamp=timestamp % (1 << 32), ssrc=ssrc, payload=payload,
        ).serialize()  # fmt: skip

    return packet


def _h264_rtp(clip: Path, ssrc: int, seconds: float) -> list[tuple[float, bytes]]:
    out: list[tuple[float, bytes]] = []
    packet = _rtp(ssrc, 96)
    with av.open(str(clip)) as container:
        stream = container.streams.video[0]
        annexb = BitStreamFilterContext("h264_mp4toannexb", stream)
        for compressed in container.demux(stream):
            for unit in annexb.filter(compressed):
                if unit.pts is None or unit.time_base is None:
                    continue
                t = float(unit.pts * unit.time_base)
                if t >= seconds:
                    return out
                payloads = H264Encoder._packetize(H264Encoder._split_bitstream(bytes(unit)))
                for n, payload in enumerate(payloads):
                    out.append((t, packet(payload, round(t * 90_000), n == len(payloads) - 1)))
    return out


def _opus_rtp(clip: Path, ssrc: int, seconds: float) -> list[tuple[float, bytes]]:
    out: list[tuple[float, bytes]] = []
    packet = _rtp(ssrc, 111)
    opus = av.CodecContext.create("libopus", "w")
    assert isinstance(opus, av.AudioCodecContext)
    opus.sample_rate, opus.layout, opus.format, opus.bit_rate = 48_000, "stereo", "s16", 48_000
    opus.time_base = Fraction(1, 48_000)
    resampler = av.AudioResampler(format="s16", layout="stereo", rate=48_000, frame_size=960)
    samples = 0
    with av.open(str(clip)) as container:
        for decoded in container.decode(audio=0):
            decoded.pts = None
            for frame in resampler.resample(decoded):
                frame.pts, samples = samples, samples + frame.samples
                for encoded in opus.encode(frame):
                    assert encoded.pts is not None
                    t = encoded.pts / 48_000
                    if t >= seconds:
                        return out
                    out.append((t, packet(bytes(encoded), encoded.pts, False)))
    return out


def pipeline(
    feed: Feed, template: EncodeTemplate, seconds: float, threads: int, keep: Path | None = None, **encoding: Any
) -> float:
    """Ember's mixed-job worker pipeline (``MixPipeline``: RTP, jitter buffers, depacketizing, decoding,
    compositor, mixer, encoders, MP4 files) fed ``seconds`` of the room in 20 ms steps; CPU-seconds. The
    files are written to a temporary folder, or to ``keep``; ``encoding`` changes the recording's
    :class:`Encoding`."""
    with tempfile.TemporaryDirectory() as temporary:
        spool = str(keep or temporary)
        naming = ObjectNaming("{stream}_{file_start_time}", "bench", "m_bench_room", record_type="mix")
        plan = RecordingPlan(
            job_id="bench", app_id="bench", room_id="room", stream_name="m_bench_room", location="local",
            bucket="bench", spool_dir=spool, video=None, audio=None, mp4=Mp4Output(naming, record_cycle=3600),
            encoding=dataclasses.replace(ENCODING, threads=threads, **encoding),
            mix=MixInput(Endpoint(), template.name, {"layout_template": "nine_grids_view"}, feed.streams),
        )  # fmt: skip
        start = _cpu(resource.RUSAGE_SELF)
        job = MixPipeline(plan, lambda report: None, run_id="bench")
        datagrams = iter(feed.datagrams)
        pending = next(datagrams, None)
        origin, step = 1000.0, 0.02
        for n in range(1, round(seconds / step) + 1):
            until = n * step
            while pending is not None and pending[0] < until:
                job.receive("mix", pending[1], origin + pending[0])
                pending = next(datagrams, None)
            job.tick(origin + until)
        job.close()
        return _cpu(resource.RUSAGE_SELF) - start


# --- FFmpeg ------------------------------------------------------------------------------------------------


def ffmpeg_command(clips: list[Path], template: EncodeTemplate, seconds: float, threads: int) -> list[str]:
    """The same composite by FFmpeg's filters: tiles at the positions and sizes of Ember's layout."""
    layout = grid(len(clips), template)
    graph = [f"[{i}:v]scale={_scale_args(t)},setsar=1[v{i}]" for i, t in enumerate(layout.tiles)]
    graph.append("".join(f"[v{i}]" for i in range(len(clips))) + f"xstack={_xstack_args(layout)}[v]")
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


class Paired(NamedTuple):
    """Ember's cost over a reference's, round by round (each round measures the sides one after the other)."""

    median: float
    low: float  # bootstrap 95 % interval of the median
    high: float
    below: int  # rounds where the ratio is under 1.0
    rounds: int


def paired(ember: list[float], reference: list[float], resamples: int = 4000) -> Paired:
    """The median of the rounds' ratios and a bootstrap 95 % interval for it (seeded: the same figures for the
    same rounds). Rounds taken one at a time cancel most of what drifts between rounds on a shared machine."""
    ratios = [e / r for e, r in zip(ember, reference, strict=True)]
    draw = random.Random(0)
    medians = sorted(statistics.median(draw.choices(ratios, k=len(ratios))) for _ in range(resamples))
    cut = int(resamples * 0.025)
    return Paired(statistics.median(ratios), medians[cut], medians[-cut - 1], sum(r < 1.0 for r in ratios), len(ratios))


# --- instructions ------------------------------------------------------------------------------------------


def instructions(command: list[str]) -> int:
    """Instructions ``command`` executes, all its threads, counted by valgrind's callgrind.

    The same count for the same program, inputs and libraries whatever else the machine does, where CPU time
    moves by several per cent between runs on a shared machine. Valgrind offers programs no AVX-512, so
    FFmpeg's and x264's AVX2 code is what is counted, on every side alike.
    """
    if not Path(VALGRIND).exists():
        raise SystemExit("--count instructions needs valgrind (apt-get install valgrind)")
    run = subprocess.run(
        [VALGRIND, "--tool=callgrind", "--callgrind-out-file=/dev/null", *command],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, check=False,
    )  # fmt: skip
    collected = re.search(r"Collected : (\d+)", run.stderr)
    if run.returncode or collected is None:
        raise RuntimeError(f"callgrind of {command[:3]}... failed ({run.returncode}): {run.stderr[-2000:]}")
    return int(collected.group(1))


def side_command(
    side: str, clips: list[Path], template: EncodeTemplate, seconds: float, threads: int = ENCODING.threads
) -> list[str]:
    """The command composing ``seconds`` of ``template`` once by ``side`` (``ffmpeg``: the reference
    command itself; ``ember``, ``libavfilter``: this bench in a child process), ``threads`` codec threads."""
    if side == "ffmpeg":
        return ffmpeg_command(clips, template, seconds, threads)
    return [
        sys.executable, str(Path(__file__).resolve()), "--side", side, "--template", template.name,
        "--seconds", str(seconds), "--clips", str(clips[0].parent), "--threads", str(threads),
    ]  # fmt: skip


def count_instructions(clips: list[Path], template: EncodeTemplate, seconds: float, threads: int) -> dict[str, float]:
    """Instructions per output second of each compositing side, as :func:`main` takes CPU time: a
    ``LEAD``-second run's count (start-up, imports, probing) taken off a full run's. The runs go on as many
    processes as there are cores (a count does not depend on load)."""
    sides = ("ember", "libavfilter", "ffmpeg")
    runs = [(side, length) for side in sides for length in (LEAD, seconds)]
    with ThreadPoolExecutor(os.cpu_count() or 1) as pool:
        counts = list(pool.map(lambda run: instructions(side_command(run[0], clips, template, run[1], threads)), runs))
    made = dict(zip(runs, counts, strict=True))
    return {side: (made[(side, seconds)] - made[(side, LEAD)]) / (seconds - LEAD) for side in sides}


# --- main --------------------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=10.0, help="output seconds per run (2 to 11)")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument(
        "--threads",
        type=int,
        default=ENCODING.threads,
        help="codec threads on both sides (default: the recording's, one job per process; 0: automatic)",
    )
    parser.add_argument("--clips", type=Path, default=Path(tempfile.gettempdir()) / "ember-bench-mixer")
    parser.add_argument(
        "--count",
        choices=("cpu", "instructions"),
        default="cpu",
        help="what each side costs: CPU time (the targets), or instructions counted by valgrind (ember, "
        "libavfilter and ffmpeg only; the same figures on a busy machine)",
    )
    parser.add_argument("--side", choices=("ember", "libavfilter"), help=argparse.SUPPRESS)  # one run, for --count
    parser.add_argument("--template", default=TEMPLATES[0], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.side:
        in_process = {"ember": ember, "libavfilter": libavfilter}[args.side]
        in_process(make_clips(args.clips), parse_template(args.template), args.seconds, args.threads)
        return
    seconds = min(args.seconds, CLIP_SECONDS - 1)
    if seconds < LEAD + 1:
        parser.error(f"--seconds must be at least {LEAD + 1:g}")
    clips = make_clips(args.clips)
    if args.count == "instructions":
        counts = {}
        for name in TEMPLATES:
            counts[name] = count_instructions(clips, parse_template(name), seconds, args.threads)
            print(
                f"{name}: "
                + ", ".join(f"{side} {n / 1e9:.3f}" for side, n in counts[name].items())
                + " G instructions per output second",
                flush=True,
            )
        print(
            "ratio in instructions, Ember/FFmpeg: "
            + ", ".join(f"{name} {c['ember'] / c['ffmpeg']:.3f}" for name, c in counts.items())
            + "; Ember/libavfilter: "
            + ", ".join(f"{name} {c['ember'] / c['libavfilter']:.3f}" for name, c in counts.items())
        )
        return
    feed = make_feed(clips, seconds)

    def whole_job(clips: list[Path], template: EncodeTemplate, seconds: float, threads: int) -> float:
        return pipeline(feed, template, seconds, threads)

    sides = {"ember": ember, "ffmpeg": ffmpeg, "libavfilter": libavfilter, "pipeline": whole_job}
    results: dict[str, dict[str, list[float]]] = {t: {side: [] for side in sides} for t in TEMPLATES}
    # Warm-up, not counted: clips into the page cache, libraries and encoders initialised once.
    for run in sides.values():
        run(clips, parse_template(TEMPLATES[0]), 1.0, args.threads)
    for r in range(args.rounds):
        for name in TEMPLATES:
            template = parse_template(name)
            order = list(sides.items())
            for side, run in order if r % 2 == 0 else order[::-1]:
                # What the composite costs while it runs: a LEAD-second run's CPU (start-up: FFmpeg loading
                # its libraries, every side opening and probing nine inputs) taken off a full run's.
                lead = run(clips, template, LEAD, args.threads)
                cpu = (run(clips, template, seconds, args.threads) - lead) / (seconds - LEAD)
                results[name][side].append(cpu)
                print(f"round {r + 1} {name} {side:11}: {cpu:.3f} CPU-s per output second", flush=True)
    median = {name: {side: statistics.median(runs) for side, runs in results[name].items()} for name in TEMPLATES}
    for name in TEMPLATES:
        print(
            f"{name}: " + ", ".join(f"{side} {median[name][side]:.3f}" for side in sides) + " CPU-s per output second"
        )
    for reference in ("ffmpeg", "libavfilter"):
        rounds = {name: paired(results[name]["ember"], results[name][reference]) for name in TEMPLATES}
        print(
            f"round by round, Ember/{reference}: "
            + "; ".join(
                f"{name} {p.median:.3f} (95 % {p.low:.3f}-{p.high:.3f}, {p.below} of {p.rounds} rounds below 1.0)"
                for name, p in rounds.items()
            )
        )
    ratios = {
        reference: ", ".join(f"{name} {median[name]['ember'] / median[name][reference]:.2f}" for name in TEMPLATES)
        for reference in ("ffmpeg", "libavfilter")
    }
    print(
        f"ratio Ember/FFmpeg: {ratios['ffmpeg']}; Ember/libavfilter (same libraries): {ratios['libavfilter']}; "
        f"Ember 720p30 composite: {median[TEMPLATES[0]]['ember']:.2f} of a core, "
        f"whole mixed job (RTP in, MP4 out): {median[TEMPLATES[0]]['pipeline']:.2f}"
    )


if __name__ == "__main__":
    main()
