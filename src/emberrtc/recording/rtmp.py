"""RTMP push (spec 4.4 ``publish_param.rtmp_urls``): the user's stream as FLV (H.264 + AAC) to each URL.

::

    VideoPath / AudioPath --(the packets the file writers get)--> RtmpPush.video / .audio
        -> PushQueue (bounded) -> feeder thread -> pipe -> pusher process: FLV muxer (PyAV) -> rtmp(s)://

One :class:`RtmpPush` per URL, beside the file writers, with the same H.264 (passed through or
transcoded) and AAC packets; a push never changes what the files get, and a failing URL never stops the
recording. What happens to a URL:

- **Off the packet loop.** The pipeline only puts packets into the URL's :class:`PushQueue` (never
  blocks). A feeder thread takes them from there and writes them to a small pusher process
  (``python -m emberrtc.recording.rtmp``, one per connection) that does the network I/O: PyAV opens an
  RTMP output while holding the GIL, with no timeout, so connecting in a thread of the worker would
  freeze its packet loop for as long as a handshake takes (forever, against a server that never answers).
  The URL reaches the pusher on its stdin, never on a command line.
- **Connecting.** A pusher is started for each attempt and its queue opened: from the next video
  keyframe on (with video in the plan; audio waits with it), packets go to it. It connects (TCP, RTMP
  handshake, ``publish``, FLV header) when it gets that first keyframe, since FFmpeg takes the H.264
  parameter sets for the FLV header (AVC sequence header) from it; meanwhile packets wait in the queue
  and the pipe. So the first packet of every (re)connection is a keyframe, and FLV timestamps start at 0
  there. :attr:`RtmpPush.wants_keyframe` makes the pipeline force that keyframe when transcoding, or ask
  the publisher for it in passthrough. A pusher not connected ``Timing.push_connect_timeout`` seconds
  after its first packet has failed. A later change of picture size (a new SPS) gets no new AVC sequence
  header: the new SPS and PPS travel in band, leading the keyframe as in the files (FFmpeg-based players
  follow them; a player that reads only the sequence header may not).
- **Overflow.** The queue holds at most ``Timing.push_buffer`` seconds of media. When the connection is
  slower than the media (more would pile up), everything queued is dropped and the push waits for the
  next keyframe (said in the log): the viewer skips ahead instead of falling ever further behind.
- **Failure and retry.** A URL that cannot be reached, or whose connection breaks (or stalls: a write
  blocked for ``push_connect_timeout`` seconds), is retried with backoff (``push_retry`` seconds, doubling
  up to ``push_retry_max``, with jitter; ``domain.retry.Backoff``) for as long as the job runs and the
  URL is in its plan.
- **Reports.** Each change is a :class:`~emberrtc.recording.reports.PushState`: ``connected``,
  ``retrying`` (with the reason, e.g. "Connection refused", the attempt and the delay), ``stopped``. The thread
  queues them; the pipeline sends them from the packet loop (:meth:`RtmpPush.poll`), so reports have one
  writer. URLs in reports and logs are masked (:func:`mask_url`: no credentials, query or stream key).
- **Where it connects.** Before every attempt the URL is vetted with the outbound policy
  (``domain.outbound``, the operator's ``EMBER_OUTBOUND_ALLOW`` from the plan): its host is resolved and
  every answer judged, and the pusher is given the URL with a vetted address in place of the host name, so
  FFmpeg does not resolve it again (a DNS answer that changed since the check cannot take the stream to a
  loopback, private or metadata address). FFmpeg then names that address in the RTMP ``tcUrl`` and, for
  ``rtmps``, sends no SNI. A refused URL is reported (``retrying``, "refused by the outbound policy: ...")
  and tried again with backoff, as the answer may change back.
- **Stopping.** A URL removed by a plan update, or the end of the job: what is queued is sent, the FLV
  stream is ended and the connection closed (at most ``push_connect_timeout`` seconds, then killed).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import logging
import os
import queue
import select
import struct
import subprocess
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass
from fractions import Fraction
from typing import IO, Any

import av
from av.audio.stream import AudioStream

from emberrtc.domain import redaction
from emberrtc.domain.outbound import RTMP_SCHEMES, OutboundPolicy, OutboundRefused
from emberrtc.domain.retry import Backoff
from emberrtc.recording.audio import AudioPacket
from emberrtc.recording.plan import Timing
from emberrtc.recording.reports import PushState
from emberrtc.recording.video import VideoPacket

log = logging.getLogger(__name__)

CONNECTING, CONNECTED, RETRYING, STOPPED = "connecting", "connected", "retrying", "stopped"
VIDEO, AUDIO = 0, 1

_FRAME = struct.Struct(">BBqI")  # kind, keyframe, time (ms), size; then the packet's bytes
_MS = Fraction(1, 1000)  # FLV timestamps are milliseconds


def mask_url(url: str) -> str:
    """``url`` fit for reports and logs (:func:`emberrtc.domain.redaction.mask_url`): user-info and query
    as ``***``, no fragment, and every path segment after the application (the stream key) as ``***``:
    ``rtmp://u:p@host/app/key?t=1`` -> ``rtmp://***@host/app/***?***``."""
    return redaction.mask_url(url, keep_segments=1)


def target_id(url: str) -> str:
    """A short stable name for ``url`` that tells apart URLs whose masks are the same."""
    return hashlib.sha256(url.encode()).hexdigest()[:12]


@dataclass(slots=True)
class QueuedPacket:
    kind: int  # VIDEO | AUDIO
    data: bytes
    time: float  # recording time, seconds
    keyframe: bool
    width: int = 0  # video: the picture size
    height: int = 0


class PushQueue:
    """The hand-over between the packet loop (``put``) and a feeder thread (``get``), bounded in media time.

    Closed (not connected): ``put`` drops everything. Opened (just connected): with video, packets are
    dropped until a video keyframe. More than ``limit`` seconds queued: all is dropped and the queue waits
    for a keyframe again."""

    def __init__(self, limit: float, has_video: bool, name: str = "") -> None:
        self.limit = limit
        self.has_video = has_video
        self.name = name
        self._items: deque[QueuedPacket] = deque()
        self._cond = threading.Condition()
        self.accepting = False
        self.waiting_keyframe = has_video
        self.dropped = 0  # packets dropped on overflow
        self.overflows = 0

    @property
    def wants_keyframe(self) -> bool:
        return self.accepting and self.waiting_keyframe

    def open(self) -> None:
        """Connected: take packets from the next keyframe on."""
        with self._cond:
            self._items.clear()
            self.accepting, self.waiting_keyframe = True, self.has_video

    def close(self) -> None:
        with self._cond:
            self._items.clear()
            self.accepting = False
            self._cond.notify_all()

    def put(self, item: QueuedPacket) -> bool:
        """Queue ``item`` if the push takes it now; False if it was dropped."""
        with self._cond:
            if not self.accepting:
                return False
            if self.waiting_keyframe:
                if not (item.kind == VIDEO and item.keyframe):
                    return False
                self.waiting_keyframe = False
            if self._items and item.time - self._items[0].time > self.limit:
                self.overflows += 1
                self.dropped += len(self._items) + 1
                log.warning(
                    "RTMP push %s: more than %.1f s of media queued (the connection is too slow): dropped %d "
                    "packets, waiting for the next keyframe",
                    self.name,
                    self.limit,
                    len(self._items) + 1,
                )
                self._items.clear()
                self.waiting_keyframe = self.has_video
                if self.has_video and not (item.kind == VIDEO and item.keyframe):
                    return False
                self.waiting_keyframe = False
            self._items.append(item)
            self._cond.notify()
            return True

    def get(self, timeout: float) -> QueuedPacket | None:
        with self._cond:
            if not self._items:
                self._cond.wait(timeout)
            return self._items.popleft() if self._items else None

    def __len__(self) -> int:
        return len(self._items)


class PushFailed(Exception):
    """A connection attempt failed or a connection broke; the message says why (no URL in it)."""


class RtmpPush:
    """One URL's push (see the module docstring). The pipeline calls :meth:`video`, :meth:`audio`,
    :meth:`poll`, :meth:`close` and :meth:`join` from its thread; the rest runs on the push's own thread."""

    def __init__(
        self,
        url: str,
        *,
        has_video: bool,
        audio: AudioStream | None,
        timing: Timing,
        outbound: OutboundPolicy,
        python: str = sys.executable,
    ) -> None:
        self.url = url
        self._outbound = outbound
        self.masked = mask_url(url)
        self.target = target_id(url)
        self._timing = timing
        self._python = python
        self._header: dict[str, Any] = {
            "video": has_video,
            "audio": _audio_params(audio) if audio is not None else None,
        }
        self.queue = PushQueue(timing.push_buffer, has_video, self.masked)
        self._backoff = Backoff(timing.push_retry, timing.push_retry_max)
        self._states: queue.SimpleQueue[PushState] = queue.SimpleQueue()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._process: subprocess.Popen[bytes] | None = None
        self._writing_since: float | None = None
        self._stalled = False  # the watchdog ended the current connection
        self.state = CONNECTING
        self.attempts = 0  # failed attempts since the last good connection
        self._thread = threading.Thread(target=self._run, name=f"rtmp-{self.target}", daemon=True)
        self._thread.start()

    # --- the packet loop's side -------------------------------------------------------------------------

    @property
    def wants_keyframe(self) -> bool:
        """Connected and waiting for a video keyframe to start (or restart) the stream with."""
        return self.queue.wants_keyframe

    @property
    def done(self) -> bool:
        return not self._thread.is_alive()

    def video(self, pkt: VideoPacket) -> bool:
        return self.queue.put(QueuedPacket(VIDEO, pkt.data, pkt.pts / 90_000, pkt.keyframe, pkt.width, pkt.height))

    def audio(self, pkt: AudioPacket, sample_rate: int) -> bool:
        return self.queue.put(QueuedPacket(AUDIO, pkt.data, pkt.pts / sample_rate, False))

    def poll(self) -> list[PushState]:
        """State changes since the last call (to report). Also the stall watchdog: a write to the pusher
        blocked longer than ``push_connect_timeout`` means the connection is stuck: it is ended (and
        retried)."""
        since = self._writing_since
        now = time.monotonic()  # the watchdog's own clock (the pipeline's may be a test's)
        if since is not None and now - since > self._timing.push_connect_timeout:
            with self._lock:
                p = self._process
            if p is not None and p.poll() is None:
                log.warning("RTMP push %s: stalled for %.0f s; reconnecting", self.masked, now - since)
                self._stalled = True
                p.kill()
        out: list[PushState] = []
        while True:
            try:
                out.append(self._states.get_nowait())
            except queue.Empty:
                return out

    def close(self) -> None:
        """Stop pushing: what is queued is sent, the stream ended and the connection closed, on the thread
        (within about ``push_connect_timeout`` seconds); :meth:`join` waits for it."""
        self._stop.set()

    def join(self, deadline: float) -> None:
        """Wait for the thread until monotonic ``deadline``; then end the connection where it is."""
        self._thread.join(max(0.0, deadline - time.monotonic()))
        if self._thread.is_alive():
            log.warning("RTMP push %s: did not end in time; disconnecting", self.masked)
            self._kill()
            self._thread.join(2.0)

    # --- the feeder thread ------------------------------------------------------------------------------

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                started = time.monotonic()
                try:
                    self._connection()
                    if self._stop.is_set():
                        break
                    raise PushFailed("the server closed the connection")
                except PushFailed as exc:
                    if self._stop.is_set():
                        break
                    # A connection that lasted starts the backoff over; quick failures back off further.
                    if time.monotonic() - started > self._timing.push_retry_max:
                        self.attempts = 0
                    self.attempts += 1
                    delay = self._backoff.delay(self.attempts)
                    reason = str(exc)
                    log.warning(
                        "RTMP push %s: %s; retrying in %.1f s (attempt %d)", self.masked, reason, delay, self.attempts
                    )
                    self._set(RETRYING, reason, self.attempts, round(delay, 2))
                    self._stop.wait(delay)
        except Exception as exc:  # a bug here must not take the recording down; say so and stop this URL
            log.exception("RTMP push %s failed", self.masked)
            self._set(STOPPED, f"internal error: {type(exc).__name__}")
            return
        self._set(STOPPED, "stopped")

    def _connection(self) -> None:
        """One connection: start a pusher and feed it, from a keyframe on, until stopped or broken. The
        pusher connects when it gets the first packet (FFmpeg takes the H.264 parameter sets for the FLV
        header from that keyframe) and says so; until then its packets wait in the pipe."""
        url = self._vetted_url()
        p = subprocess.Popen(
            [self._python, "-m", "emberrtc.recording.rtmp"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            close_fds=True,
        )
        with self._lock:
            self._process, self._stalled = p, False
        assert p.stdin is not None and p.stdout is not None
        self.queue.open()  # from the next keyframe on, packets are for this connection
        connected = False
        deadline: float | None = None  # for the connection, once the pusher has its first packet
        origin: float | None = None
        try:
            while True:
                item = self.queue.get(0.2)
                said = self._said(p)
                if said.get("error"):
                    raise PushFailed(str(said["error"]))
                if said.get("state") == CONNECTED and not connected:
                    connected = True
                    self._set(CONNECTED, "pushing")
                    log.info("RTMP push %s: connected", self.masked)
                if p.poll() is not None:
                    raise PushFailed(self._why(p, "the connection broke" if connected else "the pusher ended"))
                if not connected and deadline is not None and time.monotonic() > deadline:
                    raise PushFailed(f"no connection within {self._timing.push_connect_timeout:.0f} s")
                if item is None:
                    if self._stop.is_set():
                        break
                    continue
                if origin is None:
                    origin = item.time
                    deadline = time.monotonic() + self._timing.push_connect_timeout
                    # The picture size is needed before the stream starts (FLV's onMetaData carries it).
                    header = {**self._header, "url": url, "width": item.width, "height": item.height}
                    self._write(p, json.dumps(header).encode() + b"\n")
                ms = round((item.time - origin) * 1000)
                if ms < 0:
                    continue  # audio from before the first keyframe
                self._write(p, _FRAME.pack(item.kind, item.keyframe, ms, len(item.data)) + item.data)
            # Stopping: end the stream cleanly (the pusher writes the FLV trailer and disconnects).
            with contextlib.suppress(OSError, ValueError):
                p.stdin.close()
            try:
                p.wait(self._timing.push_connect_timeout)
            except subprocess.TimeoutExpired:
                p.kill()
        finally:
            self.queue.close()
            if p.poll() is None:
                p.kill()
            p.wait()
            with contextlib.suppress(OSError, ValueError):
                p.stdin.close()
            p.stdout.close()
            with self._lock:
                self._process = None

    def _vetted_url(self) -> str:
        """The URL with a vetted address for its host (attempts take the addresses in turn)."""
        try:
            vetted = self._outbound.vet(self.url, RTMP_SCHEMES)
        except OutboundRefused as exc:
            raise PushFailed(f"refused by the outbound policy: {exc.detail}") from None
        return vetted.destination.with_address(vetted.addresses[self.attempts % len(vetted.addresses)])

    @staticmethod
    def _said(p: subprocess.Popen[bytes]) -> dict[str, Any]:
        """What the pusher said, if it said anything (without waiting): ``{"state": "connected"}`` or, as
        its last word, ``{"error": ...}``."""
        assert p.stdout is not None
        ready, _, _ = select.select([p.stdout.fileno()], [], [], 0)
        return _message(p.stdout.readline()) if ready else {}

    def _write(self, p: subprocess.Popen[bytes], frame: bytes) -> None:
        assert p.stdin is not None
        self._writing_since = time.monotonic()
        try:
            p.stdin.write(frame)
            p.stdin.flush()
        except OSError as exc:
            raise PushFailed(self._why(p, "the connection broke")) from exc
        finally:
            self._writing_since = None

    def _why(self, p: subprocess.Popen[bytes], default: str) -> str:
        """The pusher's last word (its ``error`` line), once it has ended."""
        if p.poll() is None:
            p.kill()
        p.wait()
        assert p.stdout is not None
        try:
            rest = p.stdout.read()
        except (OSError, ValueError):
            rest = b""
        for line in reversed(rest.splitlines()):
            error = _message(line).get("error")
            if error:
                return str(error)
        if self._stalled:
            return f"the connection stalled (no progress for {self._timing.push_connect_timeout:.0f} s)"
        return default

    def _kill(self) -> None:
        with self._lock:
            p = self._process
        if p is not None and p.poll() is None:
            p.kill()

    def _set(self, state: str, detail: str, attempt: int = 0, retry_in: float | None = None) -> None:
        self.state = state
        self._states.put(PushState(self.target, self.masked, state, detail, attempt, retry_in))


def _message(line: bytes) -> dict[str, Any]:
    try:
        data = json.loads(line)
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def _audio_params(template: AudioStream) -> dict[str, Any]:
    ctx = template.codec_context
    return {
        "rate": ctx.sample_rate,
        "layout": ctx.layout.name,
        "extradata": (ctx.extradata or b"").hex(),
    }


# --- the pusher process ---------------------------------------------------------------------------------


def _reason(exc: BaseException) -> str:
    """Why a connection failed, without the URL (FFmpeg's messages name it)."""
    strerror = getattr(exc, "strerror", None)
    if isinstance(strerror, str) and strerror:
        return strerror
    return type(exc).__name__


def _read_exact(stream: IO[bytes], size: int) -> bytes | None:
    data = stream.read(size)
    if not data:
        return None
    while len(data) < size:
        more = stream.read(size - len(data))
        if not more:
            raise EOFError("the worker's data ended mid-packet")
        data += more
    return data


def push(header: dict[str, Any], source: IO[bytes], say: IO[str]) -> int:
    """The pusher: mux the framed packets from ``source`` as FLV to ``header["url"]`` until ``source`` ends.
    The first packet connects (TCP, RTMP handshake, ``publish``, FLV header with the H.264 parameter sets
    of that keyframe): then it says ``{"state": "connected"}``. On failure it says ``{"error": reason}``
    and returns 1."""

    def tell(message: dict[str, str]) -> None:
        say.write(json.dumps(message) + "\n")
        say.flush()

    connected = False
    try:
        c = av.open(header["url"], "w", format="flv", options={"flvflags": "no_duration_filesize"})
        video = None
        if header["video"]:
            video = c.add_mux_stream("h264", width=header["width"], height=header["height"])
        audio = None
        if header["audio"] is not None:
            a = header["audio"]
            template_box = av.open(io.BytesIO(), "w", format="mp4")
            template = template_box.add_stream("aac", rate=a["rate"], layout=a["layout"])
            audio = c.add_stream_from_template(template)
            if a["extradata"]:  # the worker's AudioSpecificConfig, exactly
                audio.codec_context.extradata = bytes.fromhex(a["extradata"])
        last = {VIDEO: -1, AUDIO: -1}
        while (head := _read_exact(source, _FRAME.size)) is not None:
            kind, keyframe, ms, size = _FRAME.unpack(head)
            data = _read_exact(source, size)
            if data is None:
                break
            stream = video if kind == VIDEO else audio
            if stream is None:
                continue
            if ms <= last[kind]:
                if kind == AUDIO:
                    continue
                ms = last[kind] + 1
            last[kind] = ms
            packet = av.Packet(data)
            packet.pts = packet.dts = ms
            packet.time_base = _MS
            packet.is_keyframe = bool(keyframe)
            packet.stream = stream
            # The first packet writes the header (PyAV takes the H.264 extradata from it) and so connects.
            c.mux(packet)
            if not connected:
                connected = True
                tell({"state": CONNECTED})
        c.close()
    except Exception as exc:
        tell({"error": _reason(exc)})
        return 1
    return 0


def main() -> int:
    logging.basicConfig(
        level=os.environ.get("EMBER_WORKER_LOG_LEVEL", "WARNING"),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    source = sys.stdin.buffer
    line = source.readline()
    if not line.strip():
        return 0  # stopped before there was anything to push
    return push(json.loads(line), source, sys.stdout)


if __name__ == "__main__":
    sys.exit(main())
