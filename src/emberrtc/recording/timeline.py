"""One media timeline for a job's tracks, with interruptions found and collapsed.

Janus ``rtp_forward`` sends no RTCP sender reports, so tracks are aligned by arrival: a track's first
frame is placed where the frame of the job that arrived just before it sits, plus the wall-clock time
between the two arrivals (so a track joining a live stream lines up with it, and one arriving after a
silence starts after that silence); from then on its RTP timestamps rule. Arrival times should be the
kernel's receive times (``SO_TIMESTAMPNS``): a burst read at once (a worker starting on a filled
socket buffer) still keeps the order and spacing in which the packets came. This works the same for a
live stream and for a test feeding media faster than real time.

Two times come out for every frame:

- *input time* ``T``: seconds since the job's first frame, following the RTP clocks; an interruption
  shows as a jump (a paused sender's RTP clock keeps running, and Janus rewrites a re-published
  stream's timestamps from the wall clock);
- *recording time* ``R``: ``T`` with every interruption (a jump over ``interruption`` seconds) cut
  out, so files hold media back to back. The interruption is reported with its length, and each output
  decides by its ``record_max_duration_to_merge_file`` whether the file goes on or a new one starts.

A new SSRC on a track, or a timestamp jump that no pause explains (backwards, or over an hour), re-anchors
the track as if it had just joined. ``wall_at(R)`` gives the wall-clock time of a recording instant,
for ``start_time``, ``end_time`` and ``{file_start_time}``.
"""

from __future__ import annotations

import bisect
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from emberrtc.recording.rtp import Unwrapper

_STEP = 0.02  # after a collapsed interruption, media resumes this long after the last frame
_EPSILON = 1e-3
_MAX_JUMP = 3600.0  # a larger forward RTP jump is not a pause but a new sender


@dataclass(slots=True)
class Placement:
    input_time: float  # T
    time: float  # R, recording time
    interruption: float | None = None  # the input gap just cut out before this frame, in seconds
    before: float = 0.0  # with an interruption: the recording time reached before it


class _Track:
    __slots__ = ("anchor_t", "anchor_ts", "last_r", "last_t", "rate", "ssrc", "unwrap")

    def __init__(self, ssrc: int, rate: int) -> None:
        self.ssrc = ssrc
        self.rate = rate
        self.unwrap = Unwrapper(32)
        self.anchor_ts = 0
        self.anchor_t = 0.0
        self.last_t = 0.0
        self.last_r = -1.0


class Timeline:
    def __init__(self, wall_clock: Callable[[], float], interruption: float = 1.0) -> None:
        self._wall_clock = wall_clock
        self.interruption = interruption
        self._tracks: dict[str, _Track] = {}
        self._last_t: float | None = None  # the job's latest input time
        self._history: deque[tuple[float, float]] = deque(maxlen=512)  # (arrival, T) of recent frames
        self._offset = 0.0  # T - R: the interruptions cut out so far
        self._wall_epoch: float | None = None  # wall-clock time of T = 0
        self._offsets: list[tuple[float, float]] = [(float("-inf"), 0.0)]  # (R from which, offset)
        self._gap: tuple[float, float, float] | None = None  # the latest gap: (T from, T to, R before it)

    @property
    def started(self) -> bool:
        return self._last_t is not None

    def place(self, track: str, ssrc: int, timestamp: int, clock_rate: int, arrival: float) -> Placement:
        """Where a frame of ``track`` (RTP ``timestamp`` at ``clock_rate``, arrived at monotonic ``arrival``)
        sits on the timeline."""
        if self._wall_epoch is None:
            self._wall_epoch = self._wall_clock()
        known = self._tracks.get(track)
        t: float | None = None
        if known is not None and known.ssrc == ssrc:
            ts = known.unwrap(timestamp)
            t = known.anchor_t + (ts - known.anchor_ts) / known.rate
            if t < known.last_t - 1.0 or (self._last_t is not None and t - self._last_t > _MAX_JUMP):
                t = None  # not a pause: a new timestamp base
        if known is not None and t is not None:
            state = known
        else:
            state = self._tracks[track] = _Track(ssrc, clock_rate)
            if known is not None:
                state.last_r = known.last_r
            state.anchor_ts = state.unwrap(timestamp)
            t = state.anchor_t = self._joining_time(arrival)
        state.last_t = t
        gap: float | None = None
        before = 0.0
        if self._last_t is not None and t - self._last_t > self.interruption:
            gap = t - self._last_t
            before = self._last_t - self._offset  # the recording time reached before the gap
            self._offset += gap - _STEP
            self._gap = (self._last_t, t, before)
            # Recording times past ``before`` are after the gap (wall_at); post-gap frames are kept there.
            self._offsets.append((before + _EPSILON / 2, self._offset))
        r = t - self._offset
        if self._gap is not None and self._gap[0] < t < self._gap[1]:
            # Another track's first frame after the gap, a little earlier than the frame that revealed the
            # gap (tracks are read in batches): it belongs after the gap all the same.
            r = max(r, self._gap[2] + _EPSILON)
        if r <= state.last_r:
            r = state.last_r + 1e-6  # strictly increasing per track, whatever the sender did
        state.last_r = r
        if self._last_t is None or t > self._last_t:
            self._last_t = t
        self._history.append((arrival, t))
        return Placement(t, r, gap, before)

    def _joining_time(self, arrival: float) -> float:
        """Input time for a track (re)starting with a frame that arrived at ``arrival``."""
        if not self._history:
            return 0.0
        before = [(a, t) for a, t in self._history if a <= arrival]
        if not before:  # it came before everything placed so far
            return min(t for _, t in self._history)
        a, t = max(before)
        return t + (arrival - a)

    def wall_at(self, r: float) -> float:
        """Wall-clock time (epoch seconds) of recording time ``r``."""
        i = bisect.bisect_right(self._offsets, (r, float("inf"))) - 1
        return (self._wall_epoch or 0.0) + r + self._offsets[i][1]


class StreamClock:
    """One stream's RTP timestamps on the receiver's monotonic clock, and how late the stream arrives.

    The mixed-stream counterpart of :class:`Timeline`'s per-track anchoring: with no sender reports (Janus
    ``rtp_forward`` sends none), a stream's timestamps are mapped to the instants its packets were due by
    its earliest packet, the one that came soonest for its timestamp (``arrival - ts / rate`` at its
    smallest: at first the first packet, later any packet that beats it); from then on the RTP timestamps
    rule. A packet's *lateness* is how long after its due instant it arrived; :meth:`delay` is the
    largest lateness of the last ``window`` seconds (a stream delayed on its way shows as a delay, at
    once, and keeps it for ``window`` seconds after it ends, so the delay does not flap). A packet later
    than ``max_delay`` starts the stream's mapping afresh (a new timestamp base, or a sender whose clock
    stopped while it paused): it is then on time.
    """

    __slots__ = ("_late", "_packets", "max_delay", "offset", "rate", "window")

    def __init__(self, rate: int, *, max_delay: float = 1.0, window: float = 3.0) -> None:
        self.rate = rate
        self.max_delay = max_delay
        self.window = window
        self._packets = Unwrapper(32)
        self.offset: float | None = None  # due instant of timestamp 0 (unwrapped)
        self._late: deque[tuple[float, float]] = deque()  # (arrival, lateness), lateness decreasing

    def arrived(self, timestamp: int, arrival: float) -> None:
        """A packet with RTP ``timestamp`` arrived at monotonic ``arrival``."""
        base = arrival - self._packets(timestamp) / self.rate
        if self.offset is None or base < self.offset or base - self.offset > self.max_delay:
            self.offset = base
            self._late.clear()
        lateness = base - self.offset
        late = self._late
        while late and late[-1][1] <= lateness:  # a sliding maximum: older, smaller values never count again
            late.pop()
        late.append((arrival, lateness))
        while late[0][0] < arrival - self.window:
            late.popleft()

    def due(self, timestamp: int) -> float:
        """The monotonic instant a frame with RTP ``timestamp`` was due (its packets arrived first)."""
        assert self.offset is not None, "a frame before any packet"
        return self.offset + self._packets.nearest(timestamp) / self.rate

    def delay(self, now: float) -> float:
        """The stream's largest lateness in the ``window`` seconds before ``now``."""
        late = self._late
        while late and late[0][0] < now - self.window:
            late.popleft()
        return late[0][1] if late else 0.0
