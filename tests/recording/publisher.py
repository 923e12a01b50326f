"""A synthetic WebRTC-like publisher for recording tests: aiortc's encoders and packetizers make the RTP.

Media is produced on a media clock, not a wall clock: ``run(seconds)`` returns the packets of that much
media at once (interleaved by time, as a live sender would send them), so tests can feed a worker as
fast as it can take them; ``pause(seconds)`` moves the clock on without sending (an interruption with
the same SSRC, as a paused sender's RTP clock keeps running).
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass, field

import av
from aiortc.codecs.h264 import H264Encoder
from aiortc.codecs.opus import OpusEncoder
from aiortc.codecs.vpx import Vp8Encoder
from aiortc.rtp import RtpPacket

from emberrtc.synthetic import ColourVideo, SineTone

VIDEO, AUDIO = "video", "audio"


@dataclass
class Sent:
    """What went out: for checks against the recording."""

    video_frames: int = 0
    audio_frames: int = 0
    keyframes: int = 0
    h264_nals: set[bytes] = field(default_factory=set)  # every H.264 NAL unit the encoder produced


class Publisher:
    def __init__(
        self,
        video_codec: str | None = "H264",
        *,
        colour: tuple[int, int, int] = (220, 30, 30),
        width: int = 320,
        height: int = 180,
        fps: float = 30,
        tone: float | None = 440.0,
        seed: int = 1,
    ) -> None:
        rnd = random.Random(seed)
        self.video_codec = video_codec
        self.video = ColourVideo(colour, width=width, height=height, fps=fps) if video_codec else None
        self.audio = SineTone(tone, layout="stereo") if tone else None
        self._venc: H264Encoder | Vp8Encoder | None = None
        if video_codec == "H264":
            self._venc = H264Encoder()
        elif video_codec == "VP8":
            self._venc = Vp8Encoder()
        self._aenc = OpusEncoder() if tone else None
        self.video_ssrc = rnd.getrandbits(32)
        self.audio_ssrc = rnd.getrandbits(32)
        self._vseq = rnd.getrandbits(16)
        self._aseq = rnd.getrandbits(16)
        self._vbase = rnd.getrandbits(32)
        self._abase = rnd.getrandbits(32)
        self._vn = 0  # next video frame index (synthetic picture)
        self._an = 0  # next audio frame index (synthetic samples)
        self.t = 0.0  # media clock (s), RTP time of the next frame
        self._next_video = 0.0
        self._next_audio = 0.0
        self.keyframe_requested = True
        self.sent = Sent()

    def request_keyframe(self) -> None:
        self.keyframe_requested = True

    def new_sender(self, seed: int = 2) -> None:
        """New SSRCs and timestamp bases (a re-published stream reaching the same ports)."""
        rnd = random.Random(seed)
        self.video_ssrc, self.audio_ssrc = rnd.getrandbits(32), rnd.getrandbits(32)
        self._vbase, self._abase = rnd.getrandbits(32), rnd.getrandbits(32)
        self.keyframe_requested = True

    def pause(self, seconds: float) -> None:
        self.t += seconds
        self._next_video += seconds
        self._next_audio += seconds
        self.keyframe_requested = True  # a resuming WebRTC sender usually starts with a keyframe anyway

    def run(self, seconds: float) -> Iterator[tuple[str, bytes]]:
        """The packets of the next ``seconds`` of media, in sending order."""
        end = self.t + seconds
        while True:
            nv = self._next_video if self.video else float("inf")
            na = self._next_audio if self.audio else float("inf")
            t = min(nv, na)
            if t >= end - 1e-9:
                break
            self.t = t
            if nv <= na:
                yield from self._video_packets(t)
                self._next_video += 1 / self.video.fps  # type: ignore[union-attr]
            else:
                yield from self._audio_packets(t)
                self._next_audio += 0.02
        self.t = end

    def _video_packets(self, t: float) -> Iterator[tuple[str, bytes]]:
        assert self.video is not None and self._venc is not None
        frame = self.video.frame(self._vn)
        self._vn += 1
        rtp_ts = (self._vbase + round(t * 90_000)) % (1 << 32)
        frame.pts = round(t * 90_000)
        force, self.keyframe_requested = self.keyframe_requested, False
        if isinstance(self._venc, H264Encoder):
            nals = list(self._venc._encode_frame(frame, force))
            self.sent.h264_nals.update(nals)
            if any(n[0] & 0x1F == 5 for n in nals):
                self.sent.keyframes += 1
            payloads = self._venc._packetize(nals)
        else:
            payloads, _ = self._venc.encode(frame, force)
            if payloads and not payloads[0][_vp8_header_size(payloads[0])] & 1:
                self.sent.keyframes += 1
        self.sent.video_frames += 1
        for i, payload in enumerate(payloads):
            self._vseq = (self._vseq + 1) % 65536
            pkt = RtpPacket(
                payload_type=96,
                marker=1 if i == len(payloads) - 1 else 0,
                sequence_number=self._vseq,
                timestamp=rtp_ts,
                ssrc=self.video_ssrc,
                payload=payload,
            )
            yield VIDEO, pkt.serialize()

    def _audio_packets(self, t: float) -> Iterator[tuple[str, bytes]]:
        assert self.audio is not None and self._aenc is not None
        frame = self.audio.frame(self._an)
        self._an += 1
        payloads, _ = self._aenc.encode(frame)
        rtp_ts = (self._abase + round(t * 48_000)) % (1 << 32)
        for payload in payloads:
            self.sent.audio_frames += 1
            self._aseq = (self._aseq + 1) % 65536
            pkt = RtpPacket(
                payload_type=111, sequence_number=self._aseq, timestamp=rtp_ts, ssrc=self.audio_ssrc, payload=payload
            )
            yield AUDIO, pkt.serialize()


def _vp8_header_size(payload: bytes) -> int:
    size = 1
    if payload[0] & 0x80:
        x = payload[1]
        size = 2
        if x & 0x80:
            size += 2 if payload[2] & 0x80 else 1
        if x & 0x40:
            size += 1
        if x & 0x30:
            size += 1
    return size


def decode_all(path: str, kind: str) -> list[av.VideoFrame] | list[av.AudioFrame]:
    with av.open(path) as c:
        return list(c.decode(**{kind: 0}))
