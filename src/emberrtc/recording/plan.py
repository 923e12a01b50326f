"""The frozen plan of one recording job: what to record, how to encode it, and where the files go.

A job (``domain.ports.JobSpec``) is turned into a :class:`RecordingPlan` once, in the server; the worker
process accepts nothing else (LiveKit egress ``PipelineConfig``). The plan is plain data and travels to
the worker as JSON (:meth:`RecordingPlan.to_json` / :meth:`RecordingPlan.from_json`).

Decisions documented here:

- ``select_stream_type`` caps the recorded resolution (spec Table 4-26 names the levels, not the sizes).
  Ember's mapping, as (long side, short side) so portrait video is capped alike: ``LD`` 320x180,
  ``SD`` 640x360, ``HD`` 1280x720, ``FHD`` 1920x1080 (the default). A stream within the cap keeps its
  size; a larger one is scaled down to fit, keeping its aspect ratio.
- A job's plan has files (``mp4``/``hls``, from its record rule), RTMP pushes (``rtmp_urls``, from
  ``publish_param``, spec Table 4-27; checked as the API checks them: ``rtmp://`` or ``rtmps://`` with a
  host), or both. A job with neither cannot be planned.
- Video: H.264 within the cap is recorded without re-encoding (passthrough); VP8, or H.264 above the cap,
  is transcoded to H.264 (libx264 ``ultrafast``). Audio: Opus is always transcoded to AAC-LC 48 kHz.
- Object names: ``obs_addr.object`` joined with the format's ``record_prefix`` (default
  ``{app_id}/{record_format}/{stream}_{file_start_time}/{stream}_{file_start_time}``, spec Tables
  4-233/4-234), then the extension (``.mp4``, ``.m3u8``; HLS segments sit beside their playlist).
  Variables (:data:`PREFIX_VARIABLES`): ``{app_id}`` the application id; ``{record_format}`` ``MP4`` or
  ``HLS``; ``{stream}`` the job's stream name; ``{file_start_time}`` the file's first media instant,
  UTC ``YYYYMMDDhhmmss`` (e.g. ``20240131235959``); ``{publish_domain}`` the engine's configured publish
  domain (default ``ember``); ``{app}`` the application id again (SparkRTC has no separate "app" in a
  push URL); ``{record_type}`` the job kind, ``individual`` or ``mix``. Unknown ``{names}`` are kept
  literally. Empty path segments (``Record//x``) are collapsed.
"""

from __future__ import annotations

import dataclasses
import json
import re
import types
import typing
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from emberrtc.domain.mix_layout import AUDIO_ONLY, parse_encode_template
from emberrtc.domain.ports import JobSpec

MP4, HLS = "MP4", "HLS"
H264, VP8, OPUS = "H264", "VP8", "OPUS"

#: select_stream_type -> (long side, short side) in pixels (see the module docstring).
STREAM_TYPE_CAPS: dict[str, tuple[int, int]] = {
    "LD": (320, 180),
    "SD": (640, 360),
    "HD": (1280, 720),
    "FHD": (1920, 1080),
}
DEFAULT_STREAM_TYPE = "FHD"  # spec Table 4-26: select_stream_type defaults to FHD

PREFIX_VARIABLES = ("app_id", "record_format", "stream", "file_start_time", "publish_domain", "app", "record_type")
_VARIABLE = re.compile(r"\{([a-z_]+)\}")


class PlanError(ValueError):
    """The job cannot be turned into a recording plan (nothing to record, unsupported codec...)."""


def check_rtmp_url(url: str) -> str:
    """An RTMP push URL as the API accepts it (``api.schemas.common.RtmpUrl``): ``rtmp://`` or ``rtmps://``
    with a host and no whitespace."""
    parts = urlsplit(url)
    if parts.scheme not in ("rtmp", "rtmps") or not parts.hostname or any(c.isspace() for c in url):
        raise PlanError("an RTMP URL must be rtmp:// or rtmps:// with a host")
    return url


def file_start_time(ts: float) -> str:
    """``{file_start_time}``: UTC ``YYYYMMDDhhmmss``."""
    return datetime.fromtimestamp(ts, tz=UTC).strftime("%Y%m%d%H%M%S")


@dataclass(frozen=True)
class VideoCap:
    """The largest picture to record: ``long`` x ``short`` pixels, in either orientation."""

    long: int
    short: int

    @classmethod
    def for_stream_type(cls, stream_type: str | None) -> VideoCap:
        long, short = STREAM_TYPE_CAPS[(stream_type or DEFAULT_STREAM_TYPE).upper()]
        return cls(long, short)

    def fits(self, width: int, height: int) -> bool:
        return max(width, height) <= self.long and min(width, height) <= self.short

    def fit(self, width: int, height: int) -> tuple[int, int]:
        """The size to record ``width`` x ``height`` at: unchanged within the cap, else scaled down to fit,
        keeping the aspect ratio; always even (4:2:0 chroma)."""
        scale = min(1.0, self.long / max(width, height), self.short / max(1, min(width, height)))
        return max(2, round(width * scale / 2) * 2), max(2, round(height * scale / 2) * 2)


@dataclass(frozen=True)
class ObjectNaming:
    """Where one format's files go: the rule's ``obs_addr.location`` and ``bucket``, and object names
    expanded from ``obs_addr.object`` + ``record_prefix`` (see the module docstring)."""

    template: str
    app_id: str
    stream: str
    publish_domain: str = "ember"
    record_type: str = "individual"
    location: str = ""
    bucket: str = ""

    def object_name(self, record_format: str, start_time: float, extension: str) -> str:
        values = {
            "app_id": self.app_id,
            "record_format": record_format,
            "stream": self.stream,
            "file_start_time": file_start_time(start_time),
            "publish_domain": self.publish_domain,
            "app": self.app_id,
            "record_type": self.record_type,
        }
        name = _VARIABLE.sub(lambda m: values.get(m.group(1), m.group(0)), self.template)
        name = "/".join(part for part in name.split("/") if part)
        return f"{name}{extension}"


@dataclass(frozen=True)
class Mp4Output:
    """spec Table 4-234 MP4RecordConfig, in seconds."""

    naming: ObjectNaming
    #: A file is cut every ``record_cycle`` seconds of media ([60, 10800]).
    record_cycle: float
    #: An interruption up to this long continues the file; a longer one starts a new file ([0, 300]).
    merge_gap: float = 0.0


@dataclass(frozen=True)
class HlsOutput:
    """spec Table 4-233 HLSRecordConfig, in seconds."""

    naming: ObjectNaming
    #: A playlist per ``record_cycle`` seconds of media; None (the spec's 0): one for the whole stream.
    record_cycle: float | None
    #: TS segment length ([2, 60], default 10).
    slice_duration: float = 10.0
    #: Interruptions up to this long continue the playlist; None (the spec's -1): always append on resume.
    merge_gap: float | None = 0.0


@dataclass(frozen=True)
class Endpoint:
    """Where the worker receives one RTP stream: a socket already bound by the supervisor (``fd``,
    inherited by the worker), or ``host``:``port`` for the worker to bind (``port`` 0: any free port)."""

    host: str = "127.0.0.1"
    port: int = 0
    fd: int | None = None


@dataclass(frozen=True)
class VideoInput:
    codec: str  # H264 | VP8 (the publisher's codec, as the media plane forwards it)
    cap: VideoCap
    endpoint: Endpoint = Endpoint()
    clock_rate: int = 90_000  # RFC 6184 / RFC 7741: 90 kHz


@dataclass(frozen=True)
class AudioInput:
    codec: str = OPUS
    endpoint: Endpoint = Endpoint()
    clock_rate: int = 48_000  # RFC 7587: Opus RTP always runs at 48 kHz


@dataclass(frozen=True)
class Encoding:
    """Encoder settings for transcoded video and for audio."""

    video_preset: str = "ultrafast"  # libx264
    video_crf: int = 23
    #: Longest interval between keyframes in transcoded video (seconds); cuts force extra ones.
    video_gop_seconds: float = 4.0
    #: Frame rate assumed for rate control of variable-rate input.
    video_fps: int = 30
    audio_sample_rate: int = 48_000  # issue 4: audio to AAC 48 kHz
    audio_channels: int = 2
    audio_bit_rate: int = 96_000
    audio_coder: str = "fast"  # FFmpeg aac encoder's aac_coder: fast | twoloop | anmr
    #: Codec threads per encoder/decoder: one job per process, many processes per machine.
    threads: int = 1
    #: A mixed job whose CPU per second of output passes this share of a core decodes its video inputs on
    #: up to ``mix_decode_threads`` threads (at most the machine's cores); 0: from the start
    #: (``recording.mix_decoding``).
    mix_parallel_load: float = 0.75
    mix_decode_threads: int = 4


@dataclass(frozen=True)
class Timing:
    """Thresholds of the media timeline, in seconds."""

    #: Input silence longer than this is an interruption (shorter: jitter or loss within one file).
    interruption: float = 1.0
    #: Report the job idle (``JobService.mark_idle``) after this long without packets (wall clock).
    idle_after: float = 2.0
    #: Longest wait for a missing RTP packet before it counts as lost.
    jitter_delay: float = 0.1
    #: Passthrough: ask for a keyframe this long (media time) before a planned cut, and accept a
    #: keyframe this early as the cut.
    keyframe_lead: float = 0.3
    #: Ask again when the keyframe has not come after this long (media or wall time).
    keyframe_retry: float = 1.0
    #: Video that waits for its first keyframe this long (media time) while audio flows: record audio alone.
    video_wait: float = 2.0
    #: Report progress every this many processed packets (flow control for faster-than-real-time feeds).
    progress_packets: int = 25
    #: RTMP push (``recording.rtmp``): most media (seconds) queued per URL; beyond, the queue is dropped
    #: and the push resumes at the next keyframe.
    push_buffer: float = 5.0
    #: RTMP push: first retry delay after a failure; it doubles per failed attempt up to ``push_retry_max``.
    push_retry: float = 1.0
    push_retry_max: float = 30.0
    #: RTMP push: longest wait for a connection, and longest a write may block before the connection
    #: counts as broken.
    push_connect_timeout: float = 10.0
    #: Mixed jobs: the output is composed this long after the wall clock, so that inputs delayed by the
    #: jitter buffer and decoding are in the frame they belong to.
    mix_latency: float = 0.3
    #: A worker that reads its media more than ``behind`` seconds after it arrived, for ``behind_for``
    #: seconds, reports it (the machine does not keep up with the job); caught up again once it reads within
    #: a quarter of that for as long (``worker.LagWatch``).
    behind: float = 1.0
    behind_for: float = 2.0


@dataclass(frozen=True)
class MixStream:
    """One stream of a mixed job's room as the media plane forwards it: every stream of the job reaches
    the job's one port (:attr:`MixInput.endpoint`) and is told apart by the SSRC the plane rewrites it to."""

    ssrc: int
    user_id: str
    stream: str  # "camera" | "screen": the publication it belongs to
    kind: str  # "video" | "audio"
    codec: str  # H264 | VP8 (video), OPUS (audio)
    #: The user's join order in the room (smaller joined earlier): the layout places users by it.
    order: int

    @property
    def key(self) -> str:
        """``user/stream/kind``: names the stream in keyframe requests and logs."""
        return f"{self.user_id}/{self.stream}/{self.kind}"


@dataclass(frozen=True)
class MixImageFiles:
    """The job's images (spec Table 4-175), read by the server from storage and left as files in the job's
    spool folder for the worker; None (or absent from ``users``): no image, the colour is used."""

    background: str | None = None
    default_user: str | None = None
    screen: str | None = None
    users: tuple[tuple[str, str], ...] = ()  # (user_id, path)


@dataclass(frozen=True)
class MixInput:
    """A mixed-stream job (spec 4.8): every stream of the room, composed and mixed into one output."""

    #: Where every forwarded stream arrives (one socket; streams told apart by SSRC).
    endpoint: Endpoint
    #: spec Table 4-175 ``encode_template``: ``1280x720_15_2260`` or ``audio_only``.
    encode_template: str
    #: The job's ``mix_param`` as stored (API field names): layout template, panes, images.
    params: dict[str, Any] = field(default_factory=dict)
    streams: tuple[MixStream, ...] = ()
    images: MixImageFiles = MixImageFiles()

    @property
    def audio_only(self) -> bool:
        return self.encode_template == AUDIO_ONLY


@dataclass(frozen=True)
class RecordingPlan:
    """Everything a recording worker needs, and nothing else."""

    job_id: str
    app_id: str
    room_id: str
    stream_name: str
    location: str  # obs_addr.location
    bucket: str  # obs_addr.bucket
    spool_dir: str  # where the worker writes files (the job's spool folder)
    video: VideoInput | None
    audio: AudioInput | None
    mp4: Mp4Output | None = None
    hls: HlsOutput | None = None
    encoding: Encoding = field(default_factory=Encoding)
    timing: Timing = field(default_factory=Timing)
    #: Object names this job's earlier workers used: a new file never takes one (it would overwrite it).
    reserved_names: tuple[str, ...] = ()
    #: spec Table 4-27 ``publish_param.rtmp_urls``: push the stream as FLV to each (``recording.rtmp``).
    rtmp_urls: tuple[str, ...] = ()
    #: A mixed-stream job: its inputs and layout (``video`` and ``audio`` are then None).
    mix: MixInput | None = None
    #: The operator's outbound allow-list (``domain.outbound.AllowList.entries``): each RTMP push vets its
    #: URL with it before every connection. Empty: public addresses only.
    outbound_allow: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.mix is not None:
            if self.video is not None or self.audio is not None:
                raise PlanError("a mixed job takes its inputs from mix, not video or audio")
        elif self.video is None and self.audio is None:
            raise PlanError("nothing to record: no video and no audio")
        if self.mp4 is None and self.hls is None and not self.rtmp_urls:
            raise PlanError("nothing to record to: no MP4 or HLS output and no RTMP URL")
        for url in self.rtmp_urls:
            check_rtmp_url(url)
        if self.video is not None and self.video.codec not in (H264, VP8):
            raise PlanError(f"video codec {self.video.codec} cannot be recorded (H264 or VP8)")
        if self.audio is not None and self.audio.codec != OPUS:
            raise PlanError(f"audio codec {self.audio.codec} cannot be recorded (Opus)")

    @property
    def formats(self) -> tuple[str, ...]:
        return tuple(f for f, o in ((MP4, self.mp4), (HLS, self.hls)) if o is not None)

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> RecordingPlan:
        return _from_data(cls, json.loads(text))


def _from_data(tp: Any, data: Any) -> Any:
    """Rebuild a (nested) frozen dataclass from :func:`dataclasses.asdict` output."""
    if data is None:
        return None
    if isinstance(tp, types.UnionType) or typing.get_origin(tp) is typing.Union:
        options = [t for t in typing.get_args(tp) if t is not type(None)]
        return _from_data(options[0], data) if len(options) == 1 else data
    if dataclasses.is_dataclass(tp) and isinstance(tp, type):
        hints = typing.get_type_hints(tp)
        return tp(**{f.name: _from_data(hints[f.name], data[f.name]) for f in dataclasses.fields(tp) if f.name in data})
    if typing.get_origin(tp) is tuple:
        args = typing.get_args(tp)
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_from_data(args[0], item) for item in data)
        return tuple(data)
    return data


# --- building a plan from a job -----------------------------------------------------------------------


@dataclass(frozen=True)
class SourceFormat:
    """What the media plane forwards for a job: the codecs of the user's video and audio (None: absent)."""

    video_codec: str | None
    audio_codec: str | None


def build_plan(
    job: JobSpec,
    source: SourceFormat,
    *,
    spool_dir: Path,
    video_endpoint: Endpoint = Endpoint(),
    audio_endpoint: Endpoint = Endpoint(),
    publish_domain: str = "ember",
    encoding: Encoding | None = None,
    timing: Timing | None = None,
    outbound_allow: tuple[str, ...] = (),
) -> RecordingPlan:
    """The plan for a single-stream job (spec 4.4): files with its rule (spec 4.9), if it has one, and an
    RTMP push to each of its ``publish_param.rtmp_urls`` (spec Table 4-27), if any."""
    if job.kind != "individual":
        raise PlanError(f"a {job.kind} job is not a single-stream job")
    params = job.params
    outputs = _outputs(job, publish_domain)
    video = None
    # spec Table 4-26: video_type defaults to CAMERASTREAM; the media plane forwards the stream it names.
    if source.video_codec is not None:
        video = VideoInput(
            codec=source.video_codec.upper(),
            cap=VideoCap.for_stream_type(params.get("select_stream_type")),
            endpoint=video_endpoint,
        )
    audio = None
    # spec Table 4-26: is_record_audio defaults to true
    if params.get("is_record_audio", True) and source.audio_codec is not None:
        audio = AudioInput(codec=source.audio_codec.upper(), endpoint=audio_endpoint)
    return _plan(job, outputs, spool_dir, encoding, timing, outbound_allow, video=video, audio=audio)


def build_mix_plan(
    job: JobSpec,
    streams: tuple[MixStream, ...],
    *,
    spool_dir: Path,
    endpoint: Endpoint,
    images: MixImageFiles = MixImageFiles(),
    publish_domain: str = "ember",
    encoding: Encoding | None = None,
    timing: Timing | None = None,
    outbound_allow: tuple[str, ...] = (),
) -> RecordingPlan:
    """The plan for a mixed-stream job (spec 4.8): every stream of the room (``streams``, as the media plane
    forwards them to ``endpoint``) composed by the job's ``mix_param``; files and RTMP pushes as for a
    single-stream job."""
    if job.kind != "mix":
        raise PlanError(f"a {job.kind} job is not a mixed-stream job")
    mix_param = dict(job.params.get("mix_param") or {})
    template = str(mix_param.get("encode_template") or "")
    try:
        parse_encode_template(template)
    except ValueError as exc:
        raise PlanError(str(exc)) from exc
    for s in streams:
        codecs = (H264, VP8) if s.kind == "video" else (OPUS,)
        if s.codec not in codecs:
            raise PlanError(f"{s.key}: codec {s.codec} cannot be mixed ({' or '.join(codecs)})")
    outputs = _outputs(job, publish_domain)
    mix = MixInput(endpoint=endpoint, encode_template=template, params=mix_param, streams=streams, images=images)
    return _plan(job, outputs, spool_dir, encoding, timing, outbound_allow, video=None, audio=None, mix=mix)


def _plan(
    job: JobSpec,
    outputs: tuple[dict[str, Any], Mp4Output | None, HlsOutput | None, tuple[str, ...]],
    spool_dir: Path,
    encoding: Encoding | None,
    timing: Timing | None,
    outbound_allow: tuple[str, ...],
    **media: Any,
) -> RecordingPlan:
    """What single-stream and mixed plans share (the job, its outputs, spool and settings), with ``media``:
    ``video`` and ``audio``, or ``mix``."""
    obs, mp4, hls, rtmp_urls = outputs
    return RecordingPlan(
        job_id=job.job_id,
        app_id=job.app_id,
        room_id=job.room_id,
        stream_name=job.stream_name,
        location=obs["location"],
        bucket=obs["bucket"],
        spool_dir=str(spool_dir),
        mp4=mp4,
        hls=hls,
        encoding=encoding or Encoding(),
        timing=timing or Timing(),
        rtmp_urls=rtmp_urls,
        outbound_allow=outbound_allow,
        **media,
    )


def _outputs(
    job: JobSpec, publish_domain: str
) -> tuple[dict[str, Any], Mp4Output | None, HlsOutput | None, tuple[str, ...]]:
    """A job's ``obs_addr``, MP4 and HLS outputs (from its rule, spec 4.9) and RTMP URLs (spec Table 4-27)."""
    rule = job.record_rule
    rtmp_urls = tuple((job.params.get("publish_param") or {}).get("rtmp_urls") or ())
    if rule is None and not rtmp_urls:
        raise PlanError("the job has no record_param and no publish_param.rtmp_urls: nothing to record or push")
    obs = rule["obs_addr"] if rule is not None else {"location": "", "bucket": ""}
    # Imported here: the worker process imports this module and needs no database layer.
    from emberrtc.domain.record_rule import DEFAULT_PREFIX

    def naming(cfg: dict[str, Any]) -> ObjectNaming:
        prefix = cfg.get("record_prefix") or DEFAULT_PREFIX
        base = obs.get("object") or ""
        return ObjectNaming(
            template=f"{base}/{prefix}" if base else prefix,
            app_id=job.app_id,
            stream=job.stream_name,
            publish_domain=publish_domain,
            record_type=job.kind,
            location=obs["location"],
            bucket=obs["bucket"],
        )

    rule = rule or {}  # no record_param: no files
    formats = rule.get("record_formats") or []
    mp4 = hls = None
    if MP4 in formats:
        cfg = rule.get("mp4_config") or {}
        # spec Table 4-234: record_cycle [60, 10800]; merge threshold [0, 300], default 0
        mp4 = Mp4Output(
            naming=naming(cfg),
            record_cycle=float(cfg.get("record_cycle", 7200)),
            merge_gap=float(cfg.get("record_max_duration_to_merge_file", 0)),
        )
    if HLS in formats:
        cfg = rule.get("hls_config") or {}
        cycle = float(cfg.get("record_cycle", 0))
        merge = float(cfg.get("record_max_duration_to_merge_file", 0))
        # spec Table 4-233: record_cycle 0 = one playlist; slice [2, 60] default 10; merge -1 = append
        hls = HlsOutput(
            naming=naming(cfg),
            record_cycle=cycle if cycle > 0 else None,
            slice_duration=float(cfg.get("record_slice_duration", 10)),
            merge_gap=None if merge < 0 else merge,
        )
    return obs, mp4, hls, rtmp_urls
