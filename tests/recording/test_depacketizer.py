"""Depacketizers against aiortc's own packetizers (``H264Encoder.pack``, ``Vp8Encoder.pack``), fed with
synthetic pictures encoded by PyAV: what comes out must be exactly what the encoder made."""

from __future__ import annotations

from collections.abc import Iterator
from fractions import Fraction

import av
import numpy as np
import pytest
from aiortc.codecs.h264 import H264Encoder
from aiortc.codecs.vpx import Vp8Encoder, VpxPayloadDescriptor
from av.video.frame import PictureType

from emberrtc.recording import h264
from emberrtc.recording.depacketizer import H264Depacketizer, OpusDepacketizer, Vp8Depacketizer
from emberrtc.recording.rtp import Released, RtpPacket

KEYFRAMES_AT = (0, 6)


def encoded(codec: str, count: int = 10, width: int = 640, height: int = 360) -> Iterator[av.Packet]:
    """Encoded synthetic pictures; keyframes at :data:`KEYFRAMES_AT`."""
    enc = av.CodecContext.create(codec, "w")
    assert isinstance(enc, av.VideoCodecContext)
    enc.width, enc.height, enc.pix_fmt = width, height, "yuv420p"
    enc.time_base = Fraction(1, 90_000)
    enc.framerate = Fraction(30, 1)
    enc.gop_size = 1000
    enc.thread_count = 1  # one slice per picture
    if codec == "libx264":
        enc.options = {"preset": "ultrafast", "tune": "zerolatency", "forced-idr": "1"}
    else:
        enc.options = {"deadline": "realtime", "cpu-used": "8", "lag-in-frames": "0"}
        enc.bit_rate = 1_000_000
    # A still, busy picture: keyframes are large (fragmented), the pictures between them tiny (single NAL).
    noise = np.random.default_rng(1).integers(16, 235, (height * 3 // 2, width), dtype=np.uint8)
    for n in range(count):
        frame = av.VideoFrame.from_ndarray(noise, format="yuv420p")
        frame.pts, frame.time_base = n * 3000, Fraction(1, 90_000)
        frame.pict_type = PictureType.I if n in KEYFRAMES_AT else PictureType.NONE
        yield from enc.encode(frame)
    yield from enc.encode(None)


def rtp_packets(payloads: list[bytes], ts: int, first_seq: int, ssrc: int = 1) -> list[RtpPacket]:
    return [RtpPacket(96, i == len(payloads) - 1, (first_seq + i) % 65536, ts, ssrc, p) for i, p in enumerate(payloads)]


def packetize(codec: str, count: int = 10) -> list[tuple[av.Packet, list[RtpPacket]]]:
    packer = H264Encoder() if codec == "libx264" else Vp8Encoder()
    out, seq = [], 65530  # sequence numbers wrap within the stream
    for packet in encoded(codec, count):
        payloads, ts = packer.pack(packet)
        out.append((packet, rtp_packets(payloads, ts, seq)))
        seq += len(payloads)
    return out


def push_all(dep: H264Depacketizer | Vp8Depacketizer, packets: list[RtpPacket], lost_before: int = -1) -> list:
    frames = []
    for i, p in enumerate(packets):
        frames += dep.push(Released(p, 0.0, 1 if i == lost_before else 0))
    return frames + dep.flush()


def test_h264_frames_are_reassembled_from_single_nal_stap_a_and_fu_a() -> None:
    stream = packetize("libx264")
    kinds = {p.payload[0] & 0x1F for _, rtp in stream for p in rtp}
    assert {h264.FU_A, h264.STAP_A} <= kinds and kinds & set(range(1, 24))  # every structure is exercised
    dep = H264Depacketizer()
    frames = push_all(dep, [p for _, rtp in stream for p in rtp])
    assert len(frames) == len(stream)
    for (original, _), frame in zip(stream, frames, strict=True):
        assert list(h264.split_annexb(frame.data)) == list(h264.split_annexb(bytes(original)))
        assert frame.keyframe == original.is_keyframe
        assert frame.timestamp == original.pts
    assert [i for i, f in enumerate(frames) if f.keyframe] == list(KEYFRAMES_AT)


def test_h264_loss_drops_pictures_until_the_next_keyframe_and_asks_for_one() -> None:
    stream = packetize("libx264")
    asked = []
    dep = H264Depacketizer(lambda: asked.append(1))
    packets = [p for _, rtp in stream for p in rtp]
    # Lose the first packet of picture 2: pictures 2..5 cannot be decoded, 6 is a keyframe.
    start_of_2 = sum(len(rtp) for _, rtp in stream[:2])
    del packets[start_of_2]
    frames = push_all(dep, packets, lost_before=start_of_2)
    assert [f.timestamp for f in frames] == [stream[i][0].pts for i in (0, 1, 6, 7, 8, 9)]
    assert len(asked) == 2  # at the start, and after the loss
    assert dep.dropped == 3  # 3, 4 and 5 (2 never came)


def test_h264_keyframes_without_parameter_sets_get_the_last_ones() -> None:
    (first, rtp1), *_rest = packetize("libx264", count=1)
    nals = list(h264.split_annexb(bytes(first)))
    idr_only = [n for n in nals if h264.nal_type(n) not in (h264.SPS, h264.PPS)]
    dep = H264Depacketizer()
    (frame1,) = push_all(dep, rtp1)
    payloads, _ = H264Encoder.pack(H264Encoder(), _annexb_packet(idr_only, first.pts))
    (frame2,) = push_all(dep, rtp_packets(payloads, first.pts + 3000, 100))
    types = [h264.nal_type(n) for n in h264.split_annexb(frame2.data)]
    assert frame2.keyframe and types.index(h264.SPS) < types.index(h264.IDR) and h264.PPS in types
    assert frame1.keyframe


def _annexb_packet(nals: list[bytes], pts: int | None) -> av.Packet:
    packet = av.Packet(h264.join_annexb(nals))
    packet.pts, packet.time_base = pts, Fraction(1, 90_000)
    return packet


def test_h264_interleaved_mode_structures_are_refused() -> None:
    dep = H264Depacketizer()
    frames = push_all(dep, rtp_packets([bytes([h264.STAP_B, 0, 0])], 0, 1))
    assert frames == [] and dep.unsupported == 1


def test_vp8_frames_are_reassembled_with_keyframes_detected() -> None:
    stream = packetize("libvpx")
    assert any(len(rtp) > 1 for _, rtp in stream)  # keyframes span several packets
    frames = push_all(Vp8Depacketizer(), [p for _, rtp in stream for p in rtp])
    assert [f.data for f in frames] == [bytes(p) for p, _ in stream]
    assert [f.keyframe for f in frames] == [p.is_keyframe for p, _ in stream]
    assert [i for i, f in enumerate(frames) if f.keyframe] == list(KEYFRAMES_AT)


@pytest.mark.parametrize(
    "descriptor",
    [
        VpxPayloadDescriptor(1, 0),
        VpxPayloadDescriptor(1, 0, picture_id=3),
        VpxPayloadDescriptor(1, 0, picture_id=300, tl0picidx=5, tid=(1, 1), keyidx=2),
        VpxPayloadDescriptor(1, 0, tl0picidx=5),
    ],
)
def test_vp8_payload_descriptors_of_every_shape_are_stripped(descriptor: VpxPayloadDescriptor) -> None:
    (packet, _), *_ = packetize("libvpx", count=1)
    data = bytes(packet)
    payloads = [bytes(descriptor) + data[:700], bytes(VpxPayloadDescriptor(0, 0, picture_id=300)) + data[700:]]
    (frame,) = push_all(Vp8Depacketizer(), rtp_packets(payloads, 0, 1))
    assert frame.data == data and frame.keyframe


def test_vp8_frame_without_its_first_packet_is_dropped() -> None:
    stream = packetize("libvpx", count=8)
    assert len(stream[0][1]) > 1
    packets = [p for _, rtp in stream for p in rtp][1:]  # the first keyframe loses its first packet
    frames = push_all(Vp8Depacketizer(), packets, lost_before=0)
    # Nothing is decodable until the next keyframe.
    assert [f.timestamp for f in frames] == [stream[6][0].pts, stream[7][0].pts]


def test_opus_packets_pass_as_they_are() -> None:
    dep = OpusDepacketizer()
    (frame,) = dep.push(Released(RtpPacket(111, False, 1, 960, 9, b"\xfc\x01\x02"), 1.5, 0))
    assert (frame.data, frame.timestamp, frame.keyframe, frame.arrival) == (b"\xfc\x01\x02", 960, True, 1.5)
