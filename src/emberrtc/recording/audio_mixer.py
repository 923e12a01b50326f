"""The mixed-stream audio: the three loudest participants at each moment, 48 kHz stereo, never clipping.

Spec 4.8.1: "the three parties with the loudest voices are dynamically selected during audio stream
mixing". Each input is resampled to float stereo at the output rate and queued; :meth:`AudioMixer.pull`
takes one block from every queue (silence where an input has nothing), ranks the inputs by a smoothed
level (so the choice does not flap between two similar voices every block), sums the ``loudest`` ones
and applies a limiter gain so that no sample goes beyond full scale. The existing recording audio path
encodes the result to AAC.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from fractions import Fraction

import av
import numpy as np
from av.audio.resampler import AudioResampler

#: Peak the mix may reach (just under full scale, so AAC's own rounding cannot clip).
CEILING = 0.98
#: Most audio queued per input (seconds): beyond, the oldest is dropped, so a fast input cannot grow latency.
MAX_QUEUE = 0.5
#: Time constant of the level used for ranking (seconds).
LEVEL_SMOOTHING = 0.3
#: Time for the limiter gain to recover by a factor of e after a loud peak (seconds).
RELEASE = 0.5


@dataclass(slots=True)
class _Input:
    resamplers: dict[int, AudioResampler] = field(default_factory=dict)  # by input channel count
    blocks: deque[np.ndarray] = field(default_factory=deque)  # (channels, n) float32, channels 1 or 2
    queued: int = 0
    level: float = 0.0  # smoothed mean square


class AudioMixer:
    """48 kHz stereo out, the ``loudest`` loudest inputs at each moment, no clipping."""

    def __init__(self, sample_rate: int = 48_000, loudest: int = 3) -> None:
        if sample_rate <= 0 or loudest <= 0:
            raise ValueError("sample_rate and loudest must be positive")
        self.sample_rate = sample_rate
        self.loudest = loudest
        self.time_base = Fraction(1, sample_rate)
        self._inputs: dict[str, _Input] = {}
        self._gain = 1.0
        self._max_queue = int(MAX_QUEUE * sample_rate)
        self.dropped = 0  # samples dropped from over-full queues
        #: The users mixed into the last pulled block.
        self.speaking: tuple[str, ...] = ()

    def push(self, user_id: str, frame: av.AudioFrame) -> None:
        """Decoded audio of one user, any rate, layout or sample format (resampled here)."""
        entry = self._inputs.get(user_id)
        if entry is None:
            entry = self._inputs[user_id] = _Input()
        # Blocks are (channels, n) float32, mono kept as one channel: added to both output channels at its
        # own level (FFmpeg's upmix would lower it by 3 dB), by broadcasting, without a copy.
        channels = len(frame.layout.channels)
        if frame.format.name == "fltp" and frame.sample_rate == self.sample_rate and channels <= 2:
            # Already what the mix needs (AAC and Opus decoders give fltp 48 kHz): no resampler pass.
            data = np.stack([np.frombuffer(memoryview(p), np.float32, frame.samples) for p in frame.planes[:channels]])
            self._queue(entry, data)
        else:
            mono = channels == 1
            resampler = entry.resamplers.get(1 if mono else 2)
            if resampler is None:
                layout = "mono" if mono else "stereo"
                resampler = AudioResampler(format="fltp", layout=layout, rate=self.sample_rate)
                entry.resamplers[1 if mono else 2] = resampler
            frame.pts = None  # the queue is the timeline: the resampler must not insert or drop for pts gaps
            for chunk in resampler.resample(frame):
                self._queue(entry, chunk.to_ndarray().astype(np.float32, copy=False))
        while entry.queued > self._max_queue and entry.blocks:
            old = entry.blocks.popleft()
            entry.queued -= old.shape[1]
            self.dropped += old.shape[1]

    def _queue(self, entry: _Input, data: np.ndarray) -> None:
        entry.blocks.append(data)
        entry.queued += data.shape[1]

    def remove(self, user_id: str) -> None:
        """The user left: their queued audio goes with them."""
        self._inputs.pop(user_id, None)

    def pull(self, samples: int) -> av.AudioFrame:
        """Exactly ``samples`` mixed samples, fltp stereo at :attr:`sample_rate` (pts left to the caller)."""
        if samples <= 0:
            raise ValueError("samples must be positive")
        alpha = 1.0 - float(np.exp(-samples / (LEVEL_SMOOTHING * self.sample_rate)))
        blocks: dict[str, np.ndarray] = {}
        for user_id, entry in self._inputs.items():
            block = self._take(entry, samples)
            power = float(np.mean(block * block)) if block is not None else 0.0
            entry.level += alpha * (power - entry.level)
            if block is not None:
                blocks[user_id] = block
        ranked = sorted(blocks, key=lambda u: self._inputs[u].level, reverse=True)[: self.loudest]
        self.speaking = tuple(ranked)
        mix = np.zeros((2, samples), np.float32)
        for user_id in ranked:
            mix += blocks[user_id]
        self._limit(mix, samples)
        frame = av.AudioFrame.from_ndarray(mix, format="fltp", layout="stereo")
        frame.sample_rate = self.sample_rate
        frame.time_base = self.time_base
        return frame

    def _take(self, entry: _Input, samples: int) -> np.ndarray | None:
        """The next ``samples`` of an input, zero-padded; None when it has nothing queued."""
        if not entry.queued:
            return None
        parts: list[np.ndarray] = []
        need = samples
        while need and entry.blocks:
            head = entry.blocks[0]
            n = min(need, head.shape[1])
            parts.append(head[:, :n])
            if n == head.shape[1]:
                entry.blocks.popleft()
            else:
                entry.blocks[0] = head[:, n:]
            entry.queued -= n
            need -= n
        channels = max(part.shape[0] for part in parts)
        if need:
            parts.append(np.zeros((channels, need), np.float32))
        if len(parts) == 1:
            return parts[0]
        # (a layout change inside the block: mono parts go to both channels)
        return np.concatenate([np.broadcast_to(part, (channels, part.shape[1])) for part in parts], axis=1)

    def _limit(self, mix: np.ndarray, samples: int) -> None:
        """Scale ``mix`` in place so its peak stays under :data:`CEILING`: the gain drops at once to what the
        block needs and recovers slowly (no pumping on every syllable)."""
        peak = float(np.max(np.abs(mix))) if mix.size else 0.0
        recovered = min(1.0, self._gain * float(np.exp(samples / (RELEASE * self.sample_rate))))
        needed = CEILING / peak if peak > CEILING else 1.0
        self._gain = min(recovered, needed)
        if self._gain < 1.0:
            mix *= self._gain
        np.clip(mix, -CEILING, CEILING, out=mix)  # float rounding only: the gain already keeps the peak under
