"""H.264 NAL units (ITU-T H.264 section 7.3.1) in Annex B byte streams, as recording needs them."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

START_CODE = b"\x00\x00\x00\x01"

# nal_unit_type (H.264 Table 7-1)
SLICE, IDR, SEI, SPS, PPS, AUD = 1, 5, 6, 7, 8, 9
# RFC 6184 section 5.2 payload structures
STAP_A, STAP_B, MTAP16, MTAP24, FU_A, FU_B = 24, 25, 26, 27, 28, 29


def nal_type(nal: bytes) -> int:
    return nal[0] & 0x1F


def split_annexb(data: bytes) -> Iterator[bytes]:
    """The NAL units of an Annex B byte stream (3- or 4-byte start codes)."""
    i = data.find(b"\x00\x00\x01")
    while i != -1:
        start = i + 3
        i = data.find(b"\x00\x00\x01", start)
        end = len(data) if i == -1 else i
        # A 4-byte start code (or trailing_zero_8bits) leaves zeros before the next start code.
        while end > start and data[end - 1] == 0 and i != -1:
            end -= 1
        if end > start:
            yield data[start:end]


def join_annexb(nals: Iterable[bytes]) -> bytes:
    return b"".join(START_CODE + n for n in nals)


def split_avcc(data: bytes, length_size: int = 4) -> Iterator[bytes]:
    """The NAL units of a length-prefixed sample (MP4 ``avcC``)."""
    i = 0
    while i + length_size <= len(data):
        n = int.from_bytes(data[i : i + length_size], "big")
        i += length_size
        yield data[i : i + n]
        i += n


class ParameterSets:
    """Remembers the stream's latest SPS and PPS and puts them in front of IDR pictures that lack them,
    so that every file and every HLS segment can be decoded from its first keyframe on."""

    def __init__(self) -> None:
        self.sps: bytes | None = None
        self.pps: bytes | None = None

    def complete(self, nals: list[bytes]) -> list[bytes]:
        types = [nal_type(n) for n in nals]
        for n, t in zip(nals, types, strict=True):
            if t == SPS:
                self.sps = n
            elif t == PPS:
                self.pps = n
        if IDR not in types or (SPS in types and PPS in types):
            return nals
        first_idr = types.index(IDR)
        missing = [ps for ps, t in ((self.sps, SPS), (self.pps, PPS)) if ps is not None and t not in types]
        return nals[:first_idr] + missing + nals[first_idr:]
