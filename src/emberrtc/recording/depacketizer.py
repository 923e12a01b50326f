"""RTP payloads back into encoded frames: H.264 (RFC 6184), VP8 (RFC 7741) and Opus (RFC 7587).

Video frames are assembled from the packets of one RTP timestamp and end at the marker bit (or at the
next timestamp). A frame with a lost packet is dropped, and so is everything after it until the next
keyframe: a recording never holds a picture that references one it does not have. Whenever the
depacketizer starts waiting for a keyframe (at the start, after a loss, after a new sender) it calls
``on_keyframe_needed``; the owner turns that into a PLI / Janus keyframe request.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from emberrtc.recording import h264
from emberrtc.recording.plan import H264, OPUS, VP8
from emberrtc.recording.rtp import Released, RtpPacket


@dataclass(slots=True)
class EncodedFrame:
    """One encoded picture (H.264 as Annex B, VP8 as its bitstream) or one Opus packet."""

    codec: str
    data: bytes
    timestamp: int  # RTP timestamp (32-bit, the stream's clock)
    ssrc: int
    keyframe: bool
    arrival: float  # monotonic seconds when its first packet arrived


class Depacketizer:
    """Common frame assembly and keyframe gating for video payload formats."""

    codec = ""

    def __init__(self, on_keyframe_needed: Callable[[], None] | None = None) -> None:
        self.on_keyframe_needed = on_keyframe_needed
        self.waiting_for_keyframe = True
        self.dropped = 0  # frames dropped while waiting for a keyframe or damaged by loss
        self._ssrc: int | None = None
        self._timestamp: int | None = None
        self._arrival = 0.0
        self._damaged = False
        self._started = False

    def push(self, item: Released) -> list[EncodedFrame]:
        packet = item.packet
        out: list[EncodedFrame] = []
        if packet.ssrc != self._ssrc:
            # A new sender (Janus re-forwarding a re-published stream): its pictures do not follow ours.
            out.extend(self.flush())
            self._ssrc = packet.ssrc
            self._wait_for_keyframe()
        elif item.lost:
            self._damaged = True
        if packet.timestamp != self._timestamp:
            if self._started:
                out.extend(self._finish())
            self._begin(packet.timestamp, item.arrival)
            if item.lost:
                self._damaged = True  # the lost packets may have started this frame
        try:
            self._add(packet.payload)
        except (ValueError, IndexError):
            self._damaged = True  # malformed payload
        if packet.marker:
            out.extend(self._finish())
        return out

    def flush(self) -> list[EncodedFrame]:
        """Emit a frame still being assembled (end of stream)."""
        return self._finish() if self._started else []

    # --- subclass hooks ---------------------------------------------------------------------------------

    def _reset_frame(self) -> None:
        raise NotImplementedError

    def _add(self, payload: bytes) -> None:
        raise NotImplementedError

    def _complete(self) -> tuple[bytes, bool] | None:
        """The frame's bytes and whether it is a keyframe; None if there is no picture."""
        raise NotImplementedError

    # --- internals ----------------------------------------------------------------------------------------

    def _begin(self, timestamp: int, arrival: float) -> None:
        self._timestamp = timestamp
        self._arrival = arrival
        self._damaged = False
        self._started = True
        self._reset_frame()

    def _finish(self) -> list[EncodedFrame]:
        self._started = False
        timestamp = self._timestamp
        self._timestamp = None  # a packet after the marker with the same timestamp starts a new frame
        if self._damaged:
            self.dropped += 1
            self._wait_for_keyframe()
            return []
        done = self._complete()
        if done is None:
            return []
        data, keyframe = done
        if not keyframe and self.waiting_for_keyframe:
            self.dropped += 1
            return []
        if keyframe:
            self.waiting_for_keyframe = False
        assert timestamp is not None and self._ssrc is not None
        return [EncodedFrame(self.codec, data, timestamp, self._ssrc, keyframe, self._arrival)]

    def _wait_for_keyframe(self) -> None:
        self.waiting_for_keyframe = True
        if self.on_keyframe_needed is not None:
            self.on_keyframe_needed()


class H264Depacketizer(Depacketizer):
    """RFC 6184 packetization mode 1 (what WebRTC uses): single NAL units, STAP-A and FU-A.

    Frames come out as Annex B; an IDR picture always carries SPS and PPS (remembered from earlier
    frames when the sender sent them separately).
    """

    codec = H264

    def __init__(self, on_keyframe_needed: Callable[[], None] | None = None) -> None:
        super().__init__(on_keyframe_needed)
        self._nals: list[bytes] = []
        self._fu: bytearray | None = None
        self._params = h264.ParameterSets()
        self.unsupported = 0  # STAP-B, MTAP and FU-B (interleaved mode) packets

    def _reset_frame(self) -> None:
        self._nals = []
        self._fu = None

    def _add(self, payload: bytes) -> None:
        kind = payload[0] & 0x1F
        if 1 <= kind <= 23:  # RFC 6184 5.6: a single NAL unit packet
            self._end_fu_damaged()
            self._nals.append(payload)
        elif kind == h264.STAP_A:  # RFC 6184 5.7.1: NALU size (16 bits) + NAL unit, repeated
            self._end_fu_damaged()
            i = 1
            while i + 2 <= len(payload):
                size = int.from_bytes(payload[i : i + 2], "big")
                i += 2
                if size == 0 or i + size > len(payload):
                    raise ValueError("STAP-A aggregation unit overruns the packet")
                self._nals.append(payload[i : i + size])
                i += size
        elif kind == h264.FU_A:  # RFC 6184 5.8: FU indicator, FU header (S E R type), fragment
            indicator, header = payload[0], payload[1]
            start, end = header & 0x80, header & 0x40
            if start:
                self._end_fu_damaged()
                self._fu = bytearray([(indicator & 0xE0) | (header & 0x1F)])
            elif self._fu is None:
                raise ValueError("FU-A fragment without its start")
            self._fu += payload[2:]
            if end:
                self._nals.append(bytes(self._fu))
                self._fu = None
        else:  # STAP-B, MTAP16/24, FU-B need interleaved mode (2), which WebRTC does not negotiate
            self.unsupported += 1
            raise ValueError(f"unsupported H.264 payload structure {kind}")

    def _end_fu_damaged(self) -> None:
        if self._fu is not None:  # a fragmented NAL unit never got its end
            self._fu = None
            self._damaged = True

    def _complete(self) -> tuple[bytes, bool] | None:
        if self._fu is not None:
            self._damaged = True
            self.dropped += 1
            self._wait_for_keyframe()
            return None
        nals = self._params.complete(self._nals)
        types = {h264.nal_type(n) for n in nals}
        if not types & {h264.SLICE, h264.IDR}:
            return None  # parameter sets or SEI alone: remembered, no picture
        return h264.join_annexb(nals), h264.IDR in types


class Vp8Depacketizer(Depacketizer):
    """RFC 7741: the VP8 payload descriptor is stripped and the partitions are concatenated."""

    codec = VP8

    def __init__(self, on_keyframe_needed: Callable[[], None] | None = None) -> None:
        super().__init__(on_keyframe_needed)
        self._parts: list[bytes] = []
        self._has_start = False

    def _reset_frame(self) -> None:
        self._parts = []
        self._has_start = False

    def _add(self, payload: bytes) -> None:
        # RFC 7741 4.2: |X|R|N|S|R|PID| then, with X, |I|L|T|K|RSV| and the optional fields it announces.
        b0 = payload[0]
        i = 1
        if b0 & 0x80:
            x = payload[1]
            i = 2
            if x & 0x80:  # I: PictureID, 7 or (M bit) 15 bits
                i += 2 if payload[2] & 0x80 else 1
            if x & 0x40:  # L: TL0PICIDX
                i += 1
            if x & 0x30:  # T or K: TID/Y/KEYIDX
                i += 1
        if i >= len(payload):
            raise ValueError("VP8 payload descriptor without payload")
        if b0 & 0x10 and (b0 & 0x07) == 0:  # S and PID 0: the first packet of the frame
            self._has_start = True
        elif not self._parts:
            raise ValueError("VP8 frame without its first packet")
        self._parts.append(payload[i:])

    def _complete(self) -> tuple[bytes, bool] | None:
        if not self._has_start:
            return None
        data = b"".join(self._parts)
        # RFC 6386 9.1: the frame tag's first bit (P) is 0 for key frames
        return data, not data[0] & 0x01


class OpusDepacketizer:
    """RFC 7587: one Opus packet per RTP packet; every packet stands alone."""

    codec = OPUS
    waiting_for_keyframe = False

    def push(self, item: Released) -> list[EncodedFrame]:
        p: RtpPacket = item.packet
        if not p.payload:
            return []
        return [EncodedFrame(OPUS, p.payload, p.timestamp, p.ssrc, True, item.arrival)]

    def flush(self) -> list[EncodedFrame]:
        return []


def for_codec(codec: str, on_keyframe_needed: Callable[[], None] | None = None) -> Depacketizer | OpusDepacketizer:
    if codec == H264:
        return H264Depacketizer(on_keyframe_needed)
    if codec == VP8:
        return Vp8Depacketizer(on_keyframe_needed)
    if codec == OPUS:
        return OpusDepacketizer()
    raise ValueError(f"no depacketizer for {codec}")
