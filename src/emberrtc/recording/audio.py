"""Opus from the publisher to AAC-LC 48 kHz for the files.

The AAC stream must be continuous (1024-sample frames, no holes), while RTP audio is not: packets get
lost, and WebRTC senders stop sending during silence (DTX). Each decoded Opus frame is placed at its
recording time; a hole is filled with silence, audio running ahead of its timestamps is dropped, and
small differences (jitter) are absorbed.

One AAC encoder serves every file: :attr:`AudioPath.template` is a stream whose codec parameters
(AudioSpecificConfig included) writers copy into each container (``add_stream_from_template``).
"""

from __future__ import annotations

import io
import logging
from dataclasses import dataclass
from fractions import Fraction

import av
from av.audio.resampler import AudioResampler

from emberrtc.recording.depacketizer import EncodedFrame
from emberrtc.recording.plan import Encoding

log = logging.getLogger(__name__)

_OPUS_RATE = 48_000  # RFC 7587: Opus RTP timestamps and decoding at 48 kHz
_AAC_FRAME = 1024
# Samples handed to the encoder at once: four AAC frames. Each encode call costs PyAV a pass through its
# frame-size filter graph and a generator; per call, not per frame (bench/recording.py: -13% CPU of a
# passthrough job). The audio reaches the writers at most ~85 ms later, well inside their wait for audio
# at a cut (writers._SETTLE).
_BATCH = 4 * _AAC_FRAME


@dataclass(slots=True)
class AudioPacket:
    """One AAC frame at recording time ``pts`` (in 1/sample_rate s)."""

    data: bytes
    pts: int
    duration: int


class AudioPath:
    def __init__(self, encoding: Encoding) -> None:
        self.sample_rate = encoding.audio_sample_rate
        self.time_base = Fraction(1, self.sample_rate)
        layout = "mono" if encoding.audio_channels == 1 else "stereo"
        self._layout = layout
        self._decoder = av.CodecContext.create("opus", "r")
        self._decoder.sample_rate = _OPUS_RATE
        self._decoder.layout = layout
        self._resampler = AudioResampler(format="fltp", layout=layout, rate=self.sample_rate)
        self._fifo = av.AudioFifo()
        # The encoder lives in a container that is never written to: its stream is the template.
        self._template_container = av.open(io.BytesIO(), "w", format="mp4")
        # aac_coder "fast": half the CPU of FFmpeg's default "twoloop" search, at no audible cost for speech.
        # The optional coding tools (TNS, PNS, mid/side and intensity stereo) save bits, not quality at this
        # bit rate, and cost ~12% of a passthrough job's CPU (bench/recording.py): off.
        tools = {"aac_tns": "0", "aac_pns": "0", "aac_ms": "0", "aac_is": "0"}
        self.template = self._template_container.add_stream(
            "aac", rate=self.sample_rate, layout=layout, options={"aac_coder": encoding.audio_coder, **tools}
        )
        self.template.bit_rate = encoding.audio_bit_rate
        self.template.codec_context.thread_count = encoding.threads
        self._template_container.start_encoding()  # opens the encoder; its parameters reach the stream
        self._encoder = self.template.codec_context
        self._next: int | None = None  # recording time (samples) of the next sample to encode
        self._tolerance = self.sample_rate // 25  # 40 ms
        self.filled = 0  # samples of silence inserted
        self.skipped = 0  # samples dropped (ahead of their timestamps)
        self.decode_errors = 0

    def push(self, frame: EncodedFrame, pts: int) -> list[AudioPacket]:
        """``pts``: the frame's recording time in samples at :attr:`sample_rate`."""
        packet = av.Packet(frame.data)
        packet.pts = pts
        packet.time_base = self.time_base
        try:
            decoded = self._decoder.decode(packet)
        except av.FFmpegError as exc:
            self.decode_errors += 1
            log.debug("audio decode error: %s", exc)
            return []
        out: list[AudioPacket] = []
        for samples in decoded:
            out.extend(self.push_samples(samples, pts))
            pts += samples.samples * self.sample_rate // (samples.sample_rate or self.sample_rate)
        return out

    def push_samples(self, samples: av.AudioFrame, pts: int) -> list[AudioPacket]:
        """Decoded audio (any format, layout and rate; a mixed job's mix) at recording time ``pts``
        (samples at :attr:`sample_rate`)."""
        out: list[AudioPacket] = []
        samples.pts = None
        for chunk in self._resampler.resample(samples):
            out.extend(self._place(chunk, pts))
            pts += chunk.samples
        return out

    def flush(self) -> list[AudioPacket]:
        out: list[AudioPacket] = []
        if self._fifo.samples and self._next is not None:
            pts = self._next - self._fifo.samples
            rest = self._fifo.read(partial=True)
            if rest is not None:
                rest.pts = pts
                rest.time_base = self.time_base
                out.extend(self._encode(rest))
        out.extend(self._encode(None))
        return out

    def _place(self, chunk: av.AudioFrame, pts: int) -> list[AudioPacket]:
        if self._next is None:
            self._next = pts
        drift = pts - self._next
        out: list[AudioPacket] = []
        if drift > self._tolerance:  # a hole (loss, DTX): silence up to this frame
            out.extend(self._write(self._silence(drift)))
            self.filled += drift
        elif drift < -self._tolerance:  # more audio than time: drop it
            self.skipped += chunk.samples
            return out
        out.extend(self._write(chunk))
        return out

    def _write(self, chunk: av.AudioFrame) -> list[AudioPacket]:
        assert self._next is not None
        chunk.pts = None  # the FIFO holds samples [_next - fifo.samples, _next); blocks are stamped on the way out
        self._next += chunk.samples
        self._fifo.write(chunk)
        out: list[AudioPacket] = []
        while self._fifo.samples >= _BATCH:
            pts = self._next - self._fifo.samples
            block = self._fifo.read(_BATCH)
            if block is not None:
                block.pts = pts
                block.time_base = self.time_base
                out.extend(self._encode(block))
        return out

    def _encode(self, block: av.AudioFrame | None) -> list[AudioPacket]:
        return [
            AudioPacket(bytes(p), p.pts, p.duration or _AAC_FRAME)
            for p in self._encoder.encode(block)
            if p.pts is not None
        ]

    def _silence(self, samples: int) -> av.AudioFrame:
        frame = av.AudioFrame(format="fltp", layout=self._layout, samples=samples)
        for plane in frame.planes:
            plane.update(bytes(plane.buffer_size))
        frame.sample_rate = self.sample_rate
        return frame
