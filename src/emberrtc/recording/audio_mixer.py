"""The mixed-stream audio: the three loudest participants at each moment, 48 kHz stereo, never clipping.

Spec 4.8.1: "the three parties with the loudest voices are dynamically selected during audio stream
mixing". Each input is resampled to float stereo at the output rate and queued; :meth:`AudioMixer.pull`
takes one block from every queue (silence where an input has nothing), ranks the inputs by a smoothed
level (so the choice does not flap between two similar voices every block), sums the ``loudest`` ones
and applies a limiter gain so that no sample goes beyond full scale. The existing recording audio path
encodes the result to AAC.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
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
#: How far (seconds) audio given a position may be from where its queue ends and still simply follow it.
SLACK = 0.03
#: Time for the limiter gain to recover by a factor of e after a loud peak (seconds).
RELEASE = 0.5


class _Queue:
    """One input's audio waiting to be mixed: stereo float32 in one buffer, read by views (no copies).

    Samples ``[start, end)`` of :attr:`buffer` are queued; writing moves them to the front when the end is
    reached. More than ``limit`` samples: the oldest are dropped.
    """

    __slots__ = ("buffer", "end", "level", "limit", "resamplers", "start")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.buffer = np.zeros((2, 2 * limit), np.float32)
        self.start = self.end = 0
        self.level = 0.0  # smoothed mean square, for ranking
        self.resamplers: dict[int, AudioResampler] = {}  # by input channel count

    @property
    def queued(self) -> int:
        return self.end - self.start

    def write(self, channels: Sequence[np.ndarray], gap: int = 0) -> int:
        """Queue one or two channels of samples (mono goes to both), after ``gap`` samples of silence (a
        negative ``gap``: that many of the first samples are not queued); the number of old samples dropped."""
        if gap < 0:
            channels = [c[-gap:] for c in channels]
        elif gap > 0:
            silence = np.zeros(min(gap, self.limit), np.float32)
            dropped = self.write([silence])
            return dropped + self.write(channels)
        total = len(channels[0])
        if not total:
            return 0
        buffer, start, end, limit = self.buffer, self.start, self.end, self.limit
        n = total if total < limit else limit
        dropped = end - start + n - limit
        if dropped > 0:
            start += dropped
        else:
            dropped = 0
        if end + n > buffer.shape[1]:
            kept = end - start
            buffer[:, :kept] = buffer[:, start:end]
            start, end = 0, kept
        buffer[0, end : end + n] = channels[0][total - n :]
        buffer[1, end : end + n] = channels[-1][total - n :]
        self.start, self.end = start, end + n
        return dropped

    def read(self, samples: int) -> np.ndarray:
        """Up to ``samples`` queued samples, (2, k), a view valid until the next write."""
        k = min(samples, self.queued)
        view = self.buffer[:, self.start : self.start + k]
        self.start += k
        return view


def _level(entry: tuple[float, str, np.ndarray]) -> float:
    return entry[0]


class AudioMixer:
    """48 kHz stereo out, the ``loudest`` loudest inputs at each moment, no clipping."""

    def __init__(self, sample_rate: int = 48_000, loudest: int = 3, max_queue: float = MAX_QUEUE) -> None:
        if sample_rate <= 0 or loudest <= 0 or max_queue <= 0:
            raise ValueError("sample_rate, loudest and max_queue must be positive")
        self.sample_rate = sample_rate
        self.loudest = loudest
        self.time_base = Fraction(1, sample_rate)
        self._inputs: dict[str, _Queue] = {}
        self._gain = 1.0
        self._max_queue = int(max_queue * sample_rate)
        self.dropped = 0  # samples dropped from over-full queues
        #: Output samples pulled so far: the output position the next :meth:`pull` starts at.
        self.position = 0
        #: The users mixed into the last pulled block.
        self.speaking: tuple[str, ...] = ()

    def push(self, user_id: str, frame: av.AudioFrame, at: int | None = None) -> None:
        """Decoded audio of one user, any rate, layout or sample format (resampled here).

        ``at``: the output position (in samples, as :attr:`position`) the frame belongs at. The frame goes
        there when the user's queue ends more than :data:`SLACK` away from it (silence is put before it, or
        its samples already due or queued are cut off); within that, and without ``at``, it simply follows
        the queue (so the small jitter of arrival and rounding makes no clicks)."""
        queue = self._inputs.get(user_id)
        if queue is None:
            queue = self._inputs[user_id] = _Queue(self._max_queue)
        gap = 0
        if at is not None:
            gap = at - (self.position + queue.queued)
            if abs(gap) <= SLACK * self.sample_rate:
                gap = 0
        # Mono goes to both output channels at its own level (FFmpeg's upmix would lower it by 3 dB).
        channels = frame.layout.nb_channels
        if frame.format.name == "fltp" and frame.sample_rate == self.sample_rate and channels <= 2:
            # Already what the mix needs (AAC and Opus decoders give fltp 48 kHz): no resampler pass.
            n = frame.samples
            self.dropped += queue.write([np.frombuffer(memoryview(p), np.float32, n) for p in frame.planes], gap)
            return
        mono = channels == 1
        resampler = queue.resamplers.get(1 if mono else 2)
        if resampler is None:
            layout = "mono" if mono else "stereo"
            resampler = AudioResampler(format="fltp", layout=layout, rate=self.sample_rate)
            queue.resamplers[1 if mono else 2] = resampler
        frame.pts = None  # the queue is the timeline: the resampler must not insert or drop for pts gaps
        for chunk in resampler.resample(frame):
            data = chunk.to_ndarray().astype(np.float32, copy=False)  # (channels, n)
            self.dropped += queue.write(list(data), gap)
            gap = min(0, gap + data.shape[1]) if gap < 0 else 0  # a cut longer than this chunk goes on

    def remove(self, user_id: str) -> None:
        """The user left: their queued audio goes with them."""
        self._inputs.pop(user_id, None)

    def pull(self, samples: int) -> av.AudioFrame:
        """Exactly ``samples`` mixed samples, fltp stereo at :attr:`sample_rate` (pts left to the caller)."""
        if samples <= 0:
            raise ValueError("samples must be positive")
        alpha = 1.0 - math.exp(-samples / (LEVEL_SMOOTHING * self.sample_rate))
        per_sample = 1.0 / (2 * samples)
        blocks: list[tuple[float, str, np.ndarray]] = []
        for user_id, queue in self._inputs.items():
            if queue.start == queue.end:
                queue.level -= alpha * queue.level  # silence: its level falls
                continue
            block = queue.read(samples)
            left, right = block[0], block[1]
            # mean square over the whole block (missing samples count as silence)
            power = (float(left @ left) + float(right @ right)) * per_sample
            queue.level += alpha * (power - queue.level)
            blocks.append((queue.level, user_id, block))
        blocks.sort(key=_level, reverse=True)
        ranked = blocks[: self.loudest]
        self.speaking = tuple(user_id for _, user_id, _ in ranked)
        mix = np.zeros((2, samples), np.float32)
        for _, _, block in ranked:
            mix[:, : block.shape[1]] += block
        self._limit(mix, samples)
        self.position += samples
        frame = av.AudioFrame.from_ndarray(mix, format="fltp", layout="stereo")
        frame.sample_rate = self.sample_rate
        frame.time_base = self.time_base
        return frame

    def _limit(self, mix: np.ndarray, samples: int) -> None:
        """Scale ``mix`` in place so its peak stays under :data:`CEILING`: the gain drops at once to what the
        block needs and recovers slowly (no pumping on every syllable)."""
        peak = max(float(mix.max()), -float(mix.min())) if mix.size else 0.0  # no |mix| array
        recovered = min(1.0, self._gain * math.exp(samples / (RELEASE * self.sample_rate)))
        needed = CEILING / peak if peak > CEILING else 1.0
        self._gain = min(recovered, needed)
        if self._gain < 1.0:
            mix *= self._gain
        if peak * self._gain >= CEILING:  # float rounding only: the gain already keeps the peak under
            np.clip(mix, -CEILING, CEILING, out=mix)
