"""RTP parsing and the jitter buffer."""

from __future__ import annotations

import struct

import pytest
from aiortc.rtp import RtpPacket as AiortcRtp

from emberrtc.recording.rtp import JitterBuffer, RtpPacket, Unwrapper, is_rtcp


def rtp(seq: int, ts: int = 0, ssrc: int = 7, payload: bytes = b"x", marker: bool = False) -> RtpPacket:
    return RtpPacket(96, marker, seq % 65536, ts, ssrc, payload)


def test_parse_matches_aiortc_serialisation() -> None:
    data = AiortcRtp(
        payload_type=111, marker=1, sequence_number=65535, timestamp=0xFFFFFFFF, ssrc=0xDEADBEEF, payload=b"opus"
    ).serialize()
    p = RtpPacket.parse(data)
    assert (p.payload_type, p.marker, p.sequence, p.timestamp, p.ssrc, p.payload) == (
        111,
        True,
        65535,
        0xFFFFFFFF,
        0xDEADBEEF,
        b"opus",
    )


def test_parse_skips_csrcs_extension_and_padding() -> None:
    # V=2 P=1 X=1 CC=2, M=0 PT=96, then 2 CSRCs, a one-word extension, payload, 3 octets of padding.
    header = struct.pack("!BBHII", 0x80 | 0x20 | 0x10 | 2, 96, 1, 2, 3)
    csrcs = struct.pack("!II", 10, 11)
    extension = struct.pack("!HH", 0xBEDE, 1) + b"\x10\xaa\x00\x00"
    data = header + csrcs + extension + b"payload" + b"\x00\x00\x03"
    assert RtpPacket.parse(data).payload == b"payload"


@pytest.mark.parametrize(
    "data",
    [b"\x80\x60", b"\x00" * 12, struct.pack("!BBHII", 0x80 | 0x10, 96, 1, 2, 3) + b"\x00\x01\x00\x09"],
)
def test_parse_rejects_what_is_not_rtp(data: bytes) -> None:
    with pytest.raises(ValueError):
        RtpPacket.parse(data)


def test_rtcp_is_told_apart() -> None:
    assert is_rtcp(bytes([0x80, 200]) + b"\x00" * 6)  # sender report
    assert not is_rtcp(bytes([0x80, 96]) + b"\x00" * 10)


def test_unwrapper_follows_wraps_both_ways() -> None:
    u = Unwrapper(16)
    assert [u(v) for v in (65534, 65535, 0, 1, 65535, 2)] == [65534, 65535, 65536, 65537, 65535, 65538]


def test_in_order_packets_pass_straight_through() -> None:
    jb = JitterBuffer(max_delay=0.1)
    out = [r.packet.sequence for i in range(5) for r in jb.push(rtp(65533 + i), 0.0)]
    assert out == [65533, 65534, 65535, 0, 1] and jb.lost == 0


def test_reordered_packets_come_out_in_order() -> None:
    jb = JitterBuffer(max_delay=0.1)
    released = []
    for seq in (10, 12, 13, 11, 14):
        released += [r.packet.sequence for r in jb.push(rtp(seq), 0.0)]
    assert released == [10, 11, 12, 13, 14] and jb.lost == 0


def test_a_missing_packet_is_waited_for_then_declared_lost() -> None:
    jb = JitterBuffer(max_delay=0.1)
    jb.push(rtp(1), 0.0)
    assert jb.push(rtp(3), 0.01) == []
    assert jb.poll(0.05) == []  # still waiting for 2
    (r,) = jb.poll(0.12)
    assert (r.packet.sequence, r.lost) == (3, 1) and jb.lost == 1
    assert jb.push(rtp(2), 0.13) == [] and jb.late == 1  # too late now


def test_capacity_forces_a_gap_past_and_duplicates_are_dropped() -> None:
    jb = JitterBuffer(max_delay=10.0, capacity=3)
    jb.push(rtp(1), 0.0)
    for seq in (3, 4, 4, 5):
        assert jb.push(rtp(seq), 0.0) == []  # 2 is missing: held, up to the capacity
    out = jb.push(rtp(6), 0.0)
    assert [r.packet.sequence for r in out] == [3, 4, 5, 6] and out[0].lost == 1
    assert jb.late == 1


def test_a_new_ssrc_starts_afresh() -> None:
    jb = JitterBuffer()
    jb.push(rtp(100, ssrc=1), 0.0)
    jb.push(rtp(102, ssrc=1), 0.0)  # 101 missing
    out = jb.push(rtp(5000, ssrc=2), 0.0)
    assert [(r.packet.ssrc, r.packet.sequence) for r in out] == [(1, 102), (2, 5000)]
    assert out[0].lost == 1 and out[1].lost == 0
