"""The mixed-stream encoder: template parsing, output read back (size, rate, keyframes, bit rate)."""

from __future__ import annotations

import io

import av
import numpy as np
import pytest

from emberrtc.recording import h264
from emberrtc.recording.mix_video import TIME_BASE, EncodeTemplate, MixVideoEncoder, parse_template

TEMPLATES = (
    "1920*1080_30_4620",
    "1920*1080_30_3150",
    "1920*1080_15_3460",
    "1920*1080_15_2080",
    "1280*720_30_3420",
    "1280*720_30_1710",
    "1280*720_15_2260",
    "1280*720_15_1130",
    "640*480_30_1000",
    "640*480_15_500",
    "480*360_30_490",
    "480*360_15_320",
)


@pytest.mark.parametrize("name", TEMPLATES)
def test_all_twelve_templates_parse_with_star_or_x(name: str) -> None:
    size, fps, kbps = name.split("_")
    width, height = (int(v) for v in size.split("*"))
    expected = EncodeTemplate(name, width, height, int(fps), int(kbps))
    assert parse_template(name) == expected
    assert parse_template(name.replace("*", "x")) == expected
    assert expected.pts(int(fps)) == 90_000  # one second
    assert expected.frame_duration * int(fps) == 90_000


@pytest.mark.parametrize("name", ["audio_only", "1280*720", "1280*720_30_", "big_30_1000", "1281*720_30_1000", ""])
def test_other_names_are_refused(name: str) -> None:
    with pytest.raises(ValueError):
        parse_template(name)


def noisy(template: EncodeTemplate, n: int, rng: np.random.Generator) -> av.VideoFrame:
    """A moving gradient under strong noise: content the encoder cannot make cheap."""
    w, h = template.width, template.height
    x = np.arange(w, dtype=np.int16)
    luma = ((x[None, :] + 8 * n) % 220 + 16).repeat(h, axis=0)
    luma = np.clip(luma + rng.integers(-40, 41, (h, w), dtype=np.int16), 16, 235)
    image = np.empty((h * 3 // 2, w), np.uint8)
    image[:h] = luma
    image[h:] = rng.integers(100, 156, (h // 2, w), dtype=np.uint8)
    return av.VideoFrame.from_ndarray(image, format="yuv420p")


def encode(template: EncodeTemplate, frames: int, force_at: tuple[int, ...] = ()) -> list[av.Packet]:
    encoder = MixVideoEncoder(template)
    rng = np.random.default_rng(7)
    packets: list[av.Packet] = []
    for n in range(frames):
        if n in force_at:
            encoder.force_keyframe()
        packets.extend(encoder.encode(noisy(template, n, rng), template.pts(n)))
    packets.extend(encoder.flush())
    return packets


@pytest.mark.parametrize("name", ["480*360_15_320", "640*480_30_1000"])
def test_output_has_the_templates_size_and_constant_frame_rate(name: str) -> None:
    template = parse_template(name)
    packets = encode(template, template.fps)
    assert len(packets) == template.fps
    pts = [p.pts for p in packets]
    assert pts == [template.pts(n) for n in range(template.fps)]
    assert all(p.dts == p.pts for p in packets)  # no B-frames: players and muxers see the order as sent
    assert all(p.time_base == TIME_BASE for p in packets)
    decoder = av.CodecContext.create("h264", "r")
    frames = [f for p in packets for f in decoder.decode(p)] + list(decoder.decode(None))
    assert len(frames) == template.fps
    assert {(f.width, f.height) for f in frames} == {(template.width, template.height)}
    # The SPS carries the frame rate (VUI timing), which is what demuxers of raw H.264 report.
    raw = b"".join(bytes(p) for p in packets)
    with av.open(io.BytesIO(raw), "r", format="h264") as container:
        assert (
            container.streams.video[0].average_rate == template.fps
            or container.streams.video[0].guessed_rate == template.fps
        )


def test_forced_keyframes_are_idr_frames_and_only_there() -> None:
    template = parse_template("480*360_30_490")
    packets = encode(template, 50, force_at=(17, 40))
    keyframes = [n for n, p in enumerate(packets) if p.is_keyframe]
    assert keyframes == [0, 17, 40]
    for n in keyframes:
        nals = [h264.nal_type(nal) for nal in h264.split_annexb(bytes(packets[n]))]
        assert h264.IDR in nals and h264.SPS in nals


def test_new_threads_start_with_an_idr_and_the_same_parameter_sets_and_lose_no_frame() -> None:
    template = parse_template("640*480_30_1000")
    encoder = MixVideoEncoder(template)
    rng = np.random.default_rng(3)
    packets: list[av.Packet] = []
    for n in range(40):
        if n in (10, 25):
            packets.extend(encoder.set_threads(2 if n == 10 else 1))
        packets.extend(encoder.encode(noisy(template, n, rng), template.pts(n)))
    assert encoder.set_threads(1) == []  # the same count: nothing to do
    packets.extend(encoder.flush())
    assert [p.pts for p in packets] == [template.pts(n) for n in range(40)]
    assert [n for n, p in enumerate(packets) if p.is_keyframe] == [0, 10, 25]
    parameter_sets = {
        n: [nal for nal in h264.split_annexb(bytes(packets[n])) if h264.nal_type(nal) in (h264.SPS, h264.PPS)]
        for n in (0, 10, 25)
    }
    assert parameter_sets[0] == parameter_sets[10] == parameter_sets[25]  # an MP4 file goes on with one SPS
    decoder = av.CodecContext.create("h264", "r")
    assert len([f for p in packets for f in decoder.decode(p)] + list(decoder.decode(None))) == 40


def test_bit_rate_is_within_20_percent_of_the_template_on_a_noisy_source() -> None:
    template = parse_template("640*480_30_1000")
    seconds = 4
    packets = encode(template, template.fps * seconds)
    # The first second holds the rate control's start-up; measure the rest.
    steady = packets[template.fps :]
    kbps = sum(p.size for p in steady) * 8 / (seconds - 1) / 1000
    assert kbps == pytest.approx(template.kbps, rel=0.2)


def test_frames_of_another_size_are_refused() -> None:
    encoder = MixVideoEncoder(parse_template("480*360_15_320"))
    with pytest.raises(ValueError):
        encoder.encode(av.VideoFrame(640, 480, "yuv420p"), 0)
