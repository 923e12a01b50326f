"""RTP as Janus ``rtp_forward`` sends it: packets (RFC 3550), sequence order, and lost packets.

One UDP port per stream, so a stream is told apart by its port, not by payload type. Packets are put
back in sequence order by :class:`JitterBuffer`, which waits a bounded time for a missing packet and
then reports it lost, so the depacketizer can drop the damaged frame and ask for a keyframe.
"""

from __future__ import annotations

import contextlib
import heapq
import socket
import struct
from dataclasses import dataclass

from emberrtc.recording.plan import Endpoint

_HEADER = struct.Struct("!BBHII")
_RCVBUF = 4 * 1024 * 1024
_SO_RCVBUFFORCE = getattr(socket, "SO_RCVBUFFORCE", 33)  # Linux: beyond rmem_max, when privileged
_SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)  # Linux: receive time as a timespec
_TIMESPEC = struct.Struct("@qq")
_CMSG_SPACE = socket.CMSG_SPACE(_TIMESPEC.size)


@dataclass(slots=True)
class RtpPacket:
    """An RTP packet's fields that recording uses (RFC 3550 section 5.1)."""

    payload_type: int
    marker: bool
    sequence: int
    timestamp: int
    ssrc: int
    payload: bytes

    @classmethod
    def parse(cls, data: bytes) -> RtpPacket:
        """Parse one datagram; ``ValueError`` if it is not RTP version 2 or is truncated."""
        if len(data) < 12:
            raise ValueError("RTP packet shorter than its 12-byte header")
        b0, b1, sequence, timestamp, ssrc = _HEADER.unpack_from(data)
        if b0 >> 6 != 2:
            raise ValueError("not RTP version 2")
        offset = 12 + 4 * (b0 & 0x0F)  # CSRC list
        if b0 & 0x10:  # header extension (RFC 3550 5.3.1; RFC 8285 profiles share the layout)
            if len(data) < offset + 4:
                raise ValueError("truncated RTP header extension")
            (length,) = struct.unpack_from("!H", data, offset + 2)
            offset += 4 + 4 * length
        end = len(data)
        if b0 & 0x20:  # padding: the last octet counts the padding octets
            end -= data[-1]
        if offset > end:
            raise ValueError("RTP header longer than the packet")
        return cls(b1 & 0x7F, bool(b1 & 0x80), sequence, timestamp, ssrc, data[offset:end])


def is_rtcp(data: bytes) -> bool:
    """RTCP multiplexed on the RTP port (RFC 5761 section 4: packet types 192-223)."""
    return len(data) >= 2 and 192 <= data[1] <= 223


class Unwrapper:
    """Extends a wrapping counter (16-bit sequence numbers, 32-bit timestamps) to an unbounded one,
    taking the nearest value to the previous one."""

    def __init__(self, bits: int) -> None:
        self._modulus = 1 << bits
        self._half = 1 << (bits - 1)
        self._last: int | None = None

    def __call__(self, value: int) -> int:
        self._last = self.nearest(value)
        return self._last

    def nearest(self, value: int) -> int:
        """The extension of ``value`` nearest to the last one, without moving on (None before: ``value``)."""
        if self._last is None:
            return value
        delta = (value - self._last) % self._modulus
        if delta >= self._half:
            delta -= self._modulus
        return self._last + delta

    def reset(self) -> None:
        self._last = None


@dataclass(slots=True)
class Released:
    """A packet leaving the jitter buffer in order; ``lost`` packets before it never came."""

    packet: RtpPacket
    arrival: float
    lost: int = 0


class JitterBuffer:
    """Reorders one stream's packets by sequence number.

    A packet is released as soon as every packet before it has been released. A missing packet is waited
    for at most ``max_delay`` seconds (from the arrival of the first packet after it) or until
    ``capacity`` packets are held; then it counts as lost. Late and duplicate packets are dropped. A new
    SSRC or a sequence jump beyond ``reset_jump`` starts the stream afresh (a new sender).
    """

    def __init__(self, max_delay: float = 0.1, capacity: int = 256, reset_jump: int = 3000) -> None:
        self.max_delay = max_delay
        self.capacity = capacity
        self.reset_jump = reset_jump
        self._unwrap = Unwrapper(16)
        self._ssrc: int | None = None
        self._next: int | None = None  # the extended sequence number to release next
        self._held: list[tuple[int, float, RtpPacket]] = []  # heap by extended sequence number
        self._seen: set[int] = set()
        self.lost = 0
        self.late = 0

    def push(self, packet: RtpPacket, arrival: float) -> list[Released]:
        out: list[Released] = []
        if packet.ssrc != self._ssrc:
            out.extend(self.drain())
            self._ssrc = packet.ssrc
            self._unwrap.reset()
            self._next = None
        seq = self._unwrap(packet.sequence)
        if self._next is None or abs(seq - self._next) > self.reset_jump:
            if self._next is not None:
                out.extend(self.drain())
            self._next = seq
        if seq < self._next or seq in self._seen:
            self.late += 1
            return out
        heapq.heappush(self._held, (seq, arrival, packet))
        self._seen.add(seq)
        out.extend(self._release(arrival, force=len(self._held) > self.capacity))
        return out

    def poll(self, now: float) -> list[Released]:
        """Release what waited long enough for a missing packet (call periodically)."""
        return self._release(now, force=False)

    def drain(self) -> list[Released]:
        """Release everything held, counting gaps as lost (end of stream or a new sender)."""
        out: list[Released] = []
        while self._held:
            out.extend(self._release(0.0, force=True))
        return out

    def _release(self, now: float, force: bool) -> list[Released]:
        out: list[Released] = []
        lost = 0
        while self._held:
            seq, arrival, packet = self._held[0]
            assert self._next is not None
            if seq != self._next:
                if not (force or now - arrival >= self.max_delay):
                    break
                lost = seq - self._next
                self.lost += lost
                self._next = seq
                force = False  # skip one gap at a time; later gaps get their own wait
            heapq.heappop(self._held)
            self._seen.discard(seq)
            out.append(Released(packet, arrival, lost))
            lost = 0
            self._next = seq + 1
        return out


# --- receiving ---------------------------------------------------------------------------------------------


def open_socket(endpoint: Endpoint) -> socket.socket:
    """The stream's socket: an inherited one (``fd``) or a new one bound to ``host``:``port``."""
    if endpoint.fd is not None:
        sock = socket.socket(fileno=endpoint.fd)
    else:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind((endpoint.host, endpoint.port))
    configure_socket(sock)
    return sock


def configure_socket(sock: socket.socket) -> None:
    """Non-blocking, a large buffer, and kernel receive timestamps. Set when the socket is bound, before
    packets come: a packet queued earlier carries no timestamp."""
    sock.setblocking(False)
    try:
        sock.setsockopt(socket.SOL_SOCKET, _SO_RCVBUFFORCE, _RCVBUF)
    except OSError:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, _RCVBUF)
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, _SO_TIMESTAMPNS, 1)


def receive(sock: socket.socket, clock_offset: float) -> tuple[bytes, float | None]:
    """One datagram and its kernel receive time on the monotonic clock (None if the kernel gave none).
    ``clock_offset``: monotonic minus wall-clock time (kernel timestamps are wall-clock)."""
    data, ancillary, _, _ = sock.recvmsg(65536, _CMSG_SPACE)
    for level, kind, value in ancillary:
        if level == socket.SOL_SOCKET and kind == _SO_TIMESTAMPNS and len(value) >= 16:
            sec, nsec = _TIMESPEC.unpack_from(value)
            return data, sec + nsec / 1e9 + clock_offset
    return data, None
