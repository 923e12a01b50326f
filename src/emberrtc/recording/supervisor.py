"""The recording engine in the server: one worker process per job, started, watched and stopped here.

:class:`RecordingSupervisor` implements ``domain.ports.RecordingEngine``. For each job it

1. checks the rule's storage target (a missing bucket fails the start with ``RTC.00001014``);
2. binds loopback UDP ports (one per stream) and asks the media plane to forward the user's stream
   there (``source.MediaSource``); the sockets stay with the supervisor for the whole job, so a
   restarted worker inherits them and Janus never needs to re-forward;
3. builds the job's frozen plan (``plan.build_plan``) and starts ``python -m emberrtc.recording.worker -``
   with it;
4. reads the worker's reports: keyframe requests go to the media plane at once; file events go, in
   order, to the outputs (``recording.outputs.RecordingOutputs``: uploads and callbacks); ``recording``
   and ``idle`` move the job to ``RUNNING`` or start its ``max_idle_time`` countdown (``JobService``);
5. restarts a worker that dies (up to ``max_restarts`` times within ``restart_window`` seconds); beyond
   that, or on a fatal error, stops the job with ``FATAL_ERROR`` and the reason (e.g. "killed by
   SIGKILL"). Files a dead worker left unfinished are logged, and named in the description of a failed job.

Mixed-stream jobs (spec 4.8) bind one port for every stream of the room and ask the media plane to
forward them all there (``MediaSource.forward_mix``); as publishers come and go the media plane calls
:meth:`RecordingSupervisor.streams_changed` and the worker gets a new plan (no restart). The job's images
(``background_image`` and the others, ``s3://`` URIs) are read here through the storage locations (the
rule's location, else ``local``), checked, and left in the job's spool folder for the worker; one that
cannot be read is named in the job's ``description`` and the colour is used instead.

Stopping a job (``stop``) lets the worker finish and report every file, then sends ``CLOUD_RECORD_OVER``.
Shutting the server down (``close``) finishes the files too but leaves the jobs to be resumed.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import fcntl
import hashlib
import json
import logging
import os
import signal
import socket
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from emberrtc.domain.errors import EmberError, RecordingFault
from emberrtc.domain.mix_layout import AUDIO_ONLY
from emberrtc.domain.ports import JobSpec
from emberrtc.recording import reports
from emberrtc.recording.mix_preview import read_preview
from emberrtc.recording.outputs import FileTarget, JobRef
from emberrtc.recording.plan import (
    Encoding,
    Endpoint,
    MixImageFiles,
    MixStream,
    PlanError,
    RecordingPlan,
    SourceFormat,
    Timing,
    build_mix_plan,
    build_plan,
)
from emberrtc.recording.reports import (
    Behind,
    Exited,
    FileCompleted,
    FileStarted,
    KeyframeRequest,
    MediaState,
    PartCompleted,
    PushState,
    Report,
    WorkerError,
)
from emberrtc.recording.rtp import configure_socket
from emberrtc.recording.salvage import salvage
from emberrtc.recording.source import ForwardTarget, MediaSource, MixTarget
from emberrtc.recording.worker import JOURNAL, LOCK

log = logging.getLogger(__name__)

FATAL_ERROR = "FATAL_ERROR"  # domain.job's stop_reason for faults
MIX_PORT = "mix"  # a mixed job's one socket (``worker.MIX``)
#: spec Table 4-175: the mixed job's image parameters, and what the description calls them.
IMAGE_FIELDS = ("background_image", "default_user_background_image", "screen_background_image")
MAX_IMAGE_BYTES = 8 * 1024 * 1024  # a larger background image is refused (it would be scaled down anyway)


class Outputs(Protocol):
    """The part of ``recording.outputs.RecordingOutputs`` the engine calls."""

    async def check_target(self, location: str, bucket: str, project: str | None = None) -> None: ...

    async def file_started(
        self, job: JobRef, *, record_format: str, target: FileTarget, start_time: float
    ) -> str | None: ...

    async def store_part(self, job: JobRef, *, path: Path, target: FileTarget, group: str) -> str: ...

    async def file_completed(
        self,
        job: JobRef,
        *,
        record_format: str,
        path: Path,
        target: FileTarget,
        start_time: float,
        end_time: float,
        width: int | None,
        height: int | None,
        group: str | None = None,
        content_type: str | None = None,
        transcoded: bool = False,
    ) -> str: ...

    async def job_over(self, job: JobRef, *, detail_message: str | None = None) -> str | None: ...

    async def job_over_if_recorded(self, job_id: str) -> str | None: ...

    async def job_stopped(self, job_id: str) -> bool: ...

    async def read_image(self, uri: str, location: str, project: str | None = None) -> bytes:
        """A mixed job's ``s3://bucket/object`` image from the storage ``location`` (``project``'s buckets)."""
        ...


class JobEvents(Protocol):
    """The part of ``domain.job.JobService`` the engine calls."""

    async def mark_running(self, job_id: str, description: str = "recording") -> None: ...

    async def mark_idle(self, job_id: str) -> None: ...

    async def describe(self, job_id: str, description: str) -> None: ...

    async def mark_stopped(self, job_id: str, reason: str, description: str) -> bool: ...


def worker_env(environ: Mapping[str, str]) -> dict[str, str]:
    """The environment of a recording worker: the server's, with NumPy's BLAS on one thread.

    A worker is one job on one thread (its codecs' threads are its own choice, see ``mix_decoding``), and
    its only BLAS calls are dot products of a few thousand samples. OpenBLAS otherwise starts a thread per
    core when NumPy is imported and spins them: 0.2 CPU-s to import NumPy and PyAV against 0.1 with one
    thread (measured 2026-12-04, two cores), and on a 64-core host 63 idle threads per mixed job. An
    operator's own ``OPENBLAS_NUM_THREADS`` is kept.
    """
    env = dict(environ)
    env.setdefault("OPENBLAS_NUM_THREADS", "1")
    return env


@dataclass
class _Job:
    spec: JobSpec
    ref: JobRef
    plan: RecordingPlan
    source: SourceFormat
    sockets: dict[str, socket.socket]
    process: asyncio.subprocess.Process | None = None
    task: asyncio.Task[None] | None = None
    stopping: bool = False  # stop requested: finish files, then CLOUD_RECORD_OVER
    closing: bool = False  # server shutdown: finish files, keep the job for a restart
    restarting: bool = False  # a new source: finish files, start a new worker
    crashes: list[float] = field(default_factory=list)
    open_files: dict[str, FileStarted] = field(default_factory=dict)
    fatal: str | None = None  # the reason reported by the worker before dying
    exited: bool = False
    lost: list[str] = field(default_factory=list)
    names: set[str] = field(default_factory=set)  # object names of the job's files so far
    pushes: dict[str, PushState] = field(default_factory=dict)  # RTMP pushes by target, latest state
    media: str | None = None  # the latest MediaState: "recording" | "idle"
    # --- mixed jobs ---
    streams: tuple[MixStream, ...] = ()  # the room's streams as forwarded
    images: MixImageFiles = field(default_factory=MixImageFiles)
    image_problems: list[str] = field(default_factory=list)  # images that could not be used, and why
    behind: float = 0.0  # the worker's latest Behind: how late it reads its media (0: it keeps up)

    def plan_now(self) -> RecordingPlan:
        """The plan with the names taken so far reserved (a restarted worker must not reuse them)."""
        return dataclasses.replace(self.plan, reserved_names=tuple(sorted(self.names)))


class RecordingSupervisor:
    """``RecordingEngine`` with a worker process per job (see the module docstring)."""

    def __init__(
        self,
        outputs: Outputs,
        source: MediaSource,
        *,
        spool_root: Path,
        jobs: JobEvents | None = None,
        publish_domain: str = "ember",
        host: str = "127.0.0.1",
        max_restarts: int = 3,
        restart_window: float = 300.0,
        stop_timeout: float = 60.0,
        python: str = sys.executable,
        timing: Timing | None = None,
        encoding: Encoding | None = None,
        outbound_allow: tuple[str, ...] = (),
    ) -> None:
        self._outputs = outputs
        #: ``EMBER_OUTBOUND_ALLOW`` as the workers get it in their plans (their RTMP pushes vet with it).
        self._outbound_allow = outbound_allow
        self._source = source
        self._spool_root = spool_root
        self._jobs = jobs
        self._publish_domain = publish_domain
        self._host = host
        self.max_restarts = max_restarts
        self.restart_window = restart_window
        self.stop_timeout = stop_timeout
        self._python = python
        self._timing = timing
        self._encoding = encoding
        self._running: dict[str, _Job] = {}
        #: Mixed jobs being started: stream changes the media plane reports before the job runs.
        self._starting_streams: dict[str, tuple[MixStream, ...] | None] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        #: Called with (job_id, report) for every report of every worker (tests, metrics).
        self.listeners: list[Callable[[str, Report], None]] = []

    def attach(self, jobs: JobEvents) -> None:
        """Connect the job service (built after the engine, which it needs)."""
        self._jobs = jobs

    # --- RecordingEngine ------------------------------------------------------------------------------------

    async def start(self, job: JobSpec) -> None:
        if job.job_id in self._running:
            return
        if job.record_rule is None and not (job.params.get("publish_param") or {}).get("rtmp_urls"):
            raise RecordingFault("the job has no record_param and no publish_param.rtmp_urls: nothing to do")
        if job.record_rule is not None:  # RTMP only: no files, no storage to check
            obs = job.record_rule["obs_addr"]
            await self._outputs.check_target(obs["location"], obs["bucket"], job.project_id)
        if job.kind == "mix":
            await self._start_mix(job)
            return
        sockets = self._bind(job)
        try:
            target = ForwardTarget(
                self._host,
                sockets["video"].getsockname()[1] if "video" in sockets else None,
                sockets["audio"].getsockname()[1] if "audio" in sockets else None,
            )
            fmt = await self._source.forward(job, target)
            plan = self._plan(job, fmt, sockets)
        except PlanError as exc:
            self._close_sockets(sockets)
            await self._stop_forward(job.job_id)
            raise RecordingFault(str(exc)) from exc
        except EmberError:
            self._close_sockets(sockets)
            raise
        except Exception as exc:  # the job must fail with a reason, not hang in INIT
            self._close_sockets(sockets)
            await self._stop_forward(job.job_id)
            raise RecordingFault(f"the media plane could not forward the stream: {exc}") from exc
        except BaseException:
            self._close_sockets(sockets)
            raise
        ref = JobRef(job.app_id, job.job_id, job.room_id, job.stream_name)
        SpoolJournal(self._spool_root / job.job_id).write_ref(ref)
        j = _Job(job, ref, plan, fmt, sockets)
        self._running[job.job_id] = j
        j.task = asyncio.create_task(self._supervise(j), name=f"recording-{job.job_id}")

    async def update(self, job: JobSpec) -> None:
        """A new ``record_param`` (rule): the worker applies it from the next file. New
        ``publish_param.rtmp_urls``: the worker starts and stops pushes at once. A mixed job's new layout,
        panes or images (spec 4.8.3): from the next frame."""
        j = self._running.get(job.job_id)
        if j is None:
            return
        if job.kind == "mix":
            before = _description(j)
            if _image_uris(job) != _image_uris(j.spec):
                j.images, j.image_problems = await self._fetch_images(job)
            j.spec = job
            await self._replan_mix(j)
            if _description(j) != before and self._jobs is not None:
                await self._jobs.describe(job.job_id, _description(j))
            return
        try:
            plan = self._plan(job, j.source, j.sockets)
        except PlanError as exc:
            log.error("job %s: the new rule cannot be recorded (%s); keeping the old one", job.job_id, exc)
            return
        j.spec, j.plan = job, plan
        await self._command(j, {"cmd": "update", "plan": j.plan_now().to_json()})

    async def stop(self, job_id: str) -> None:
        j = self._running.get(job_id)
        if j is None or j.task is None:
            await self._over_after_restart(job_id)
            return
        j.stopping = True
        if asyncio.current_task() is j.task:
            return  # the job stops itself (fatal error): its task finishes the work
        await self._end(j)

    # --- for the console ------------------------------------------------------------------------------------

    def records_here(self, job_id: str) -> bool:
        """Does a worker of this node record the job now?"""
        j = self._running.get(job_id)
        return j is not None and not j.stopping

    def preview(self, app_id: str, room_id: str, job_id: str) -> bytes | None:
        """The mixed job's live preview (``mix_preview``: a small JPEG of the composite) when its worker runs
        here, for that app's room, and composed a picture lately; None otherwise (no media yet, the output
        stopped). Only the job's ID names the file: the folder is the job's spool, the name fixed."""
        j = self._running.get(job_id)
        if j is None or j.stopping or j.plan.mix is None or j.plan.mix.audio_only:
            return None
        if (j.plan.app_id, j.plan.room_id) != (app_id, room_id):
            return None
        return read_preview(Path(j.plan.spool_dir), time.time())

    # --- for the media plane ---------------------------------------------------------------------------------

    async def streams_changed(self, job_id: str, streams: tuple[MixStream, ...]) -> None:
        """A mixed job's room has other streams now (a publisher joined, left or re-published): the worker
        takes them from its next plan, without a restart."""
        j = self._running.get(job_id)
        if j is None:
            if job_id in self._starting_streams:
                self._starting_streams[job_id] = streams  # taken by _start_mix before its worker starts
            return
        if streams == j.streams:
            return
        j.streams = streams
        await self._replan_mix(j)

    async def source_changed(self, job_id: str, fmt: SourceFormat) -> None:
        """The user's stream now has other codecs (re-published): the current files are finished and a new
        worker records the new source on the same ports."""
        j = self._running.get(job_id)
        if j is None or fmt == j.source:
            return
        try:
            plan = self._plan(j.spec, fmt, j.sockets)
        except PlanError as exc:
            log.error("job %s: the new source cannot be recorded: %s", job_id, exc)
            return
        j.source, j.plan, j.restarting = fmt, plan, True
        await self._command(j, {"cmd": "stop"})

    # --- lifecycle ----------------------------------------------------------------------------------------------

    async def close(self) -> None:
        """Server shutdown: every worker finishes its files; the jobs stay as they are, to be resumed."""
        for j in list(self._running.values()):
            j.closing = True
        await asyncio.gather(*(self._end(j) for j in list(self._running.values())), return_exceptions=True)

    def worker_pid(self, job_id: str) -> int | None:
        j = self._running.get(job_id)
        return j.process.pid if j is not None and j.process is not None else None

    @property
    def jobs(self) -> list[str]:
        return list(self._running)

    # --- internals ------------------------------------------------------------------------------------------------

    def _bind(self, job: JobSpec) -> dict[str, socket.socket]:
        wanted = ["video"]  # spec Table 4-26: video_type defaults to CAMERASTREAM
        if job.params.get("is_record_audio", True):
            wanted.append("audio")
        return {kind: self._socket() for kind in wanted}

    def _socket(self) -> socket.socket:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            sock.bind((self._host, 0))
            configure_socket(sock)
        except BaseException:
            sock.close()
            raise
        return sock

    @staticmethod
    def _close_sockets(sockets: dict[str, socket.socket]) -> None:
        for sock in sockets.values():
            sock.close()

    def _plan(self, job: JobSpec, fmt: SourceFormat, sockets: dict[str, socket.socket]) -> RecordingPlan:
        def endpoint(kind: str) -> Endpoint:
            sock = sockets.get(kind)
            if sock is None:
                return Endpoint()
            return Endpoint(self._host, sock.getsockname()[1], sock.fileno())

        return build_plan(
            job,
            fmt,
            spool_dir=self._spool_root / job.job_id,
            video_endpoint=endpoint("video"),
            audio_endpoint=endpoint("audio"),
            publish_domain=self._publish_domain,
            encoding=self._encoding,
            timing=self._timing,
            outbound_allow=self._outbound_allow,
        )

    # --- mixed jobs ---------------------------------------------------------------------------------------------

    async def _start_mix(self, job: JobSpec) -> None:
        sock = self._socket()
        sockets = {MIX_PORT: sock}
        self._starting_streams[job.job_id] = None
        try:
            audio_only = (job.params.get("mix_param") or {}).get("encode_template") == AUDIO_ONLY
            streams = await self._source.forward_mix(job, MixTarget(self._host, sock.getsockname()[1], not audio_only))
            images, problems = await self._fetch_images(job)
            changed = self._starting_streams.get(job.job_id)
            if changed is not None:  # the room changed meanwhile
                streams = changed
            plan = self._mix_plan(job, streams, images, sockets)
        except PlanError as exc:
            self._close_sockets(sockets)
            await self._stop_forward(job.job_id)
            raise RecordingFault(str(exc)) from exc
        except EmberError:
            self._close_sockets(sockets)
            await self._stop_forward(job.job_id)
            raise
        except Exception as exc:  # the job must fail with a reason, not hang in INIT
            self._close_sockets(sockets)
            await self._stop_forward(job.job_id)
            raise RecordingFault(f"the media plane could not forward the room's streams: {exc}") from exc
        except BaseException:
            self._close_sockets(sockets)
            raise
        finally:
            self._starting_streams.pop(job.job_id, None)
        ref = JobRef(job.app_id, job.job_id, job.room_id, job.stream_name)
        SpoolJournal(self._spool_root / job.job_id).write_ref(ref)
        j = _Job(job, ref, plan, SourceFormat(None, None), sockets, streams=streams, images=images)
        j.image_problems = problems
        self._running[job.job_id] = j
        if problems and self._jobs is not None:
            await self._jobs.describe(job.job_id, _description(j))
        j.task = asyncio.create_task(self._supervise(j), name=f"recording-{job.job_id}")

    async def _replan_mix(self, j: _Job) -> None:
        try:
            plan = self._mix_plan(j.spec, j.streams, j.images, j.sockets)
        except PlanError as exc:
            log.error("job %s: the new mix cannot be recorded (%s); keeping the old one", j.spec.job_id, exc)
            return
        j.plan = plan
        await self._command(j, {"cmd": "update", "plan": j.plan_now().to_json()})

    def _mix_plan(
        self, job: JobSpec, streams: tuple[MixStream, ...], images: MixImageFiles, sockets: dict[str, socket.socket]
    ) -> RecordingPlan:
        sock = sockets[MIX_PORT]
        return build_mix_plan(
            job,
            streams,
            spool_dir=self._spool_root / job.job_id,
            endpoint=Endpoint(self._host, sock.getsockname()[1], sock.fileno()),
            images=images,
            publish_domain=self._publish_domain,
            encoding=self._encoding,
            timing=self._timing,
            outbound_allow=self._outbound_allow,
        )

    async def _fetch_images(self, job: JobSpec) -> tuple[MixImageFiles, list[str]]:
        """The job's images (spec Table 4-175) read from storage, checked and written to its spool folder
        (``.image-*``); the problems, one line each (``background_image s3://b/x.png: no such object``)."""
        uris = _image_uris(job)
        if not uris or (job.params.get("mix_param") or {}).get("encode_template") == AUDIO_ONLY:
            return MixImageFiles(), []  # audio only: the video parameters are ignored
        location = (job.record_rule or {}).get("obs_addr", {}).get("location") or "local"
        folder = self._spool_root / job.job_id
        paths: dict[str, str] = {}
        problems: list[str] = []
        for uri in sorted(set(uris.values())):
            try:
                data = await self._outputs.read_image(uri, location, job.project_id)
                if len(data) > MAX_IMAGE_BYTES:
                    raise ValueError(f"larger than {MAX_IMAGE_BYTES // (1024 * 1024)} MiB")
                await asyncio.to_thread(_check_image, data)
                # A dot file, like the spool's bookkeeping: it keeps no finished job's folder alive.
                path = folder / f".image-{hashlib.sha256(uri.encode()).hexdigest()[:24]}"
                await asyncio.to_thread(_write_file, path, data)
                paths[uri] = str(path)
            except EmberError as exc:
                problems += [f"{name} {uri}: {exc.message}" for name, u in uris.items() if u == uri]
            except (ValueError, OSError) as exc:
                problems += [f"{name} {uri}: {exc}" for name, u in uris.items() if u == uri]
        users = tuple(
            (name.split(":", 1)[1], paths[uri])
            for name, uri in uris.items()
            if name.startswith("user_background_images:") and uri in paths
        )
        return (
            MixImageFiles(
                background=paths.get(uris.get("background_image", "")),
                default_user=paths.get(uris.get("default_user_background_image", "")),
                screen=paths.get(uris.get("screen_background_image", "")),
                users=users,
            ),
            problems,
        )

    async def _end(self, j: _Job) -> None:
        await self._command(j, {"cmd": "stop"})
        assert j.task is not None
        try:
            await asyncio.wait_for(asyncio.shield(j.task), self.stop_timeout)
        except TimeoutError:
            log.error("job %s: worker did not stop within %.0f s; killing it", j.spec.job_id, self.stop_timeout)
            if j.process is not None and j.process.returncode is None:
                j.process.kill()
            await j.task

    async def _command(self, j: _Job, command: dict[str, Any]) -> None:
        p = j.process
        if p is None or p.stdin is None or p.returncode is not None:
            return
        try:
            p.stdin.write((json.dumps(command) + "\n").encode())
            await p.stdin.drain()
        except (BrokenPipeError, ConnectionResetError):
            pass  # the worker is gone; its watcher handles that

    async def _supervise(self, j: _Job) -> None:
        job_id = j.spec.job_id
        detail: str | None = None
        try:
            while True:
                status = await self._run_worker(j)
                if j.open_files:
                    await self._salvage_open_files(j, j.fatal or _describe_exit(status))
                if j.restarting and not (j.stopping or j.closing):
                    j.restarting = False
                    continue
                if j.stopping or j.closing:
                    break
                # Unasked, a worker never ends: whatever its status, this job lost its recorder.
                reason = j.fatal or _describe_exit(status)
                now = time.monotonic()
                j.crashes = [t for t in j.crashes if now - t < self.restart_window] + [now]
                if len(j.crashes) > self.max_restarts:
                    detail = (
                        f"recording worker failed {len(j.crashes)} times in {self.restart_window:.0f} s, last: {reason}"
                    )
                    if j.lost:
                        detail += f"; unfinished files: {', '.join(j.lost)}"
                    log.error("job %s: %s", job_id, detail)
                    j.stopping = True
                    if self._jobs is not None:
                        await self._jobs.mark_stopped(job_id, FATAL_ERROR, detail)
                    break
                log.warning("job %s: recording worker %s; restarting it", job_id, reason)
                j.fatal = None
        except Exception:
            log.exception("job %s: recording supervisor failed", job_id)
            detail = "the recording supervisor failed"
            j.stopping = True
        finally:
            self._close_sockets(j.sockets)
            self._running.pop(job_id, None)
            if j.stopping and not j.closing:
                await self._stop_forward(job_id)
                try:
                    await self._outputs.job_over(j.ref, detail_message=detail)
                    SpoolJournal(self._spool_root / job_id).clear()
                except Exception:
                    log.exception("job %s: CLOUD_RECORD_OVER could not be recorded", job_id)

    async def _run_worker(self, j: _Job) -> int:
        """Run one worker until it exits; its reports handled in order. Returns the exit status."""
        fds = [s.fileno() for s in j.sockets.values()]
        process = await asyncio.create_subprocess_exec(
            self._python,
            "-m",
            "emberrtc.recording.worker",
            "-",
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            pass_fds=fds,
            env=worker_env(os.environ),
        )
        j.process, j.exited = process, False
        assert process.stdin is not None and process.stdout is not None and process.stderr is not None
        process.stdin.write(j.plan_now().to_json().encode() + b"\n")
        if j.stopping or j.closing:
            process.stdin.write(b'{"cmd": "stop"}\n')
        queue: asyncio.Queue[Report | None] = asyncio.Queue()
        reader = asyncio.create_task(self._read(j, process.stdout, queue))
        stderr = asyncio.create_task(self._log_stderr(j, process.stderr))
        deliver = asyncio.create_task(self._deliver(j, queue))
        try:
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                await process.stdin.drain()
            status = await process.wait()
            await reader
            await stderr
            await queue.put(None)
            await deliver
        except asyncio.CancelledError:
            if process.returncode is None:
                process.kill()
            raise
        return status

    async def _read(self, j: _Job, stream: asyncio.StreamReader, queue: asyncio.Queue[Report | None]) -> None:
        while line := await stream.readline():
            try:
                report = reports.decode(line)
            except ValueError:
                log.warning("job %s: unreadable worker output %r", j.spec.job_id, line[:200])
                continue
            for listener in self.listeners:
                try:
                    listener(j.spec.job_id, report)
                except Exception:
                    log.exception("recording listener failed")
            if isinstance(report, KeyframeRequest):
                task = asyncio.create_task(self._keyframe(j.spec.job_id, report.stream))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
            elif isinstance(report, reports.Progress | reports.Ready):
                pass
            else:
                queue.put_nowait(report)

    async def _keyframe(self, job_id: str, stream: str = "") -> None:
        try:
            if stream:
                await self._source.request_keyframe(job_id, stream)
            else:
                await self._source.request_keyframe(job_id)
        except Exception as exc:
            log.warning("job %s: keyframe request failed: %s", job_id, exc)

    async def _log_stderr(self, j: _Job, stream: asyncio.StreamReader) -> None:
        while line := await stream.readline():
            log.warning("job %s worker: %s", j.spec.job_id, line.decode(errors="replace").rstrip())

    async def _deliver(self, j: _Job, queue: asyncio.Queue[Report | None]) -> None:
        """File events to the outputs and job states to the job service, one at a time, in order."""
        while (report := await queue.get()) is not None:
            try:
                await self._handle(j, report)
            except EmberError as exc:
                log.error("job %s: %s failed: %s", j.spec.job_id, type(report).__name__, exc.message)
            except Exception:
                log.exception("job %s: handling %s failed", j.spec.job_id, type(report).__name__)

    async def _handle(self, j: _Job, report: Report) -> None:
        job_id = j.spec.job_id
        if isinstance(report, FileStarted | PartCompleted | FileCompleted):
            if isinstance(report, FileStarted):
                j.open_files[report.file_id] = report
                j.names.add(report.object_name)
            elif isinstance(report, FileCompleted):
                j.open_files.pop(report.file_id, None)
            await self._store(j.ref, report)
            SpoolJournal(self._spool_root / job_id).handled(report)
        if isinstance(report, MediaState) and self._jobs is not None:
            j.media = report.state
            if report.state == "recording":
                await self._jobs.mark_running(job_id, _description(j))
            elif report.state == "idle" and not (j.stopping or j.closing):
                await self._jobs.mark_idle(job_id)
        elif isinstance(report, PushState):
            before = _description(j)
            if report.state == "stopped":
                j.pushes.pop(report.target, None)
            else:
                j.pushes[report.target] = report
            if report.state == "retrying":
                log.warning("job %s: RTMP push to %s: %s", job_id, report.url, report.detail)
            await self._redescribe(j, before)
        elif isinstance(report, Behind):
            before = _description(j)
            if report.seconds and not j.behind:
                log.warning(
                    "job %s: the worker reads its media %.1f s late: this machine does not keep up",
                    job_id,
                    report.seconds,
                )
            elif not report.seconds:
                log.info("job %s: the worker keeps up with its media again", job_id)
            j.behind = report.seconds
            await self._redescribe(j, before)
        elif isinstance(report, WorkerError):
            log.error("job %s: recording worker: %s", job_id, report.reason)
            if report.fatal:
                j.fatal = report.reason
        elif isinstance(report, Exited):
            j.exited = True

    async def _redescribe(self, j: _Job, before: str) -> None:
        """The job's description again, if a report changed it from ``before`` while the job runs."""
        after = _description(j)
        if after != before and self._jobs is not None and not (j.stopping or j.closing):
            await self._jobs.describe(j.spec.job_id, after)

    async def _store(self, ref: JobRef, report: FileStarted | PartCompleted | FileCompleted) -> None:
        """A file report to the outputs: the callback for a new file, the upload (and callback) of a part
        or a complete file."""
        target = FileTarget(report.location, report.bucket, report.object_name)
        group = f"{ref.job_id}-{report.file_id}"
        if isinstance(report, FileStarted):
            await self._outputs.file_started(
                ref, record_format=report.record_format, target=target, start_time=report.start_time
            )
        elif isinstance(report, PartCompleted):
            await self._outputs.store_part(ref, path=Path(report.path), target=target, group=group)
        else:
            await self._outputs.file_completed(
                ref,
                record_format=report.record_format,
                path=Path(report.path),
                target=target,
                start_time=report.start_time,
                end_time=report.end_time,
                width=report.width,
                height=report.height,
                group=group,
                transcoded=report.transcoded,
            )

    async def _salvage_open_files(self, j: _Job, reason: str) -> None:
        """The worker ended with files it did not finish: keep what they hold (``salvage.py``)."""
        for started in list(j.open_files.values()):
            saved = await asyncio.to_thread(salvage, started)
            if saved is None:
                log.error(
                    "job %s: file %s (%s) held no media when the worker %s",
                    j.spec.job_id, started.path, started.object_name, reason,
                )  # fmt: skip
                j.open_files.pop(started.file_id, None)
                j.lost.append(started.object_name)
                continue
            log.warning(
                "job %s: the worker %s; file %s kept up to %.1f s",
                j.spec.job_id, reason, started.object_name, saved.completed.duration,
            )  # fmt: skip
            for part in saved.parts:
                await self._handle(j, part)
            await self._handle(j, saved.completed)

    # --- after a restart ----------------------------------------------------------------------------------

    async def _over_after_restart(self, job_id: str) -> None:
        """A job that recorded in an earlier server run stopped before it recorded again (its media did not
        come back): it still gets its ``CLOUD_RECORD_OVER``."""
        journal = SpoolJournal(self._spool_root / job_id)
        ref = journal.ref()
        if ref is None:
            # Not recorded here since this node's last start (maybe on a node that died, or here before a
            # restart): the event all the same if a recorder ever ran the job; once per job either way.
            try:
                await self._outputs.job_over_if_recorded(job_id)
            except Exception:
                log.exception("job %s: CLOUD_RECORD_OVER could not be recorded", job_id)
            return
        try:
            await self._outputs.job_over(ref)
        except Exception:
            log.exception("job %s: CLOUD_RECORD_OVER could not be recorded", job_id)
            return
        journal.clear()

    async def recover(self, lock_timeout: float | None = None) -> int:
        """What workers of a previous server run left in the spool: every file report the server did not
        handle (the journal says which), in order, and every file a worker did not finish, salvaged. Waits
        for such a worker to exit first (it finishes its files when its server goes away). Returns how many
        reports were handled."""
        if not self._spool_root.is_dir():
            return 0
        count = 0
        timeout = self.stop_timeout if lock_timeout is None else lock_timeout
        for folder in sorted(p for p in self._spool_root.iterdir() if (p / JOURNAL).exists()):
            journal = SpoolJournal(folder)
            ref = journal.ref()
            if ref is None:
                log.error("spool %s has a journal but no %s: its files are left as they are", folder, JOB_FILE)
                continue
            if not await asyncio.to_thread(journal.wait_unlocked, timeout):
                log.error(
                    "job %s: its old worker still runs after %.0f s; its files are left for later", ref.job_id, timeout
                )
                continue
            entries = journal.entries()
            done = journal.handled_keys()
            finished = {r.file_id for r in entries if isinstance(r, FileCompleted)}
            finished |= {k.split(":", 1)[1] for k in done if k.startswith("completed:")}
            unfinished = [r for r in entries if isinstance(r, FileStarted) and r.file_id not in finished]
            try:
                for report in entries:
                    if _key(report) not in done:
                        await self._store(ref, report)
                        journal.handled(report)
                        count += 1
                # Files no worker finished (killed with the server, or before it): keep what they hold.
                for started in unfinished:
                    saved = await asyncio.to_thread(salvage, started)
                    if saved is None:
                        log.error("job %s: file %s held no media", ref.job_id, started.object_name)
                        continue
                    outcome: list[PartCompleted | FileCompleted] = [*saved.parts, saved.completed]
                    for part in outcome:
                        await self._store(ref, part)
                        journal.handled(part)
                        count += 1
                # Stopped meanwhile (by another node of a cluster, while this one was down): its files are
                # reported now, and its end after them (unless the node that stopped it sent it already).
                if await self._outputs.job_stopped(ref.job_id):
                    await self._outputs.job_over(ref)
                    journal.clear()
            except Exception:
                log.exception("job %s: recovering its files failed; they stay in the spool", ref.job_id)
        return count

    async def _stop_forward(self, job_id: str) -> None:
        try:
            await self._source.stop_forward(job_id)
        except Exception as exc:
            log.warning("job %s: stopping the forward failed: %s", job_id, exc)


def _describe_exit(status: int) -> str:
    if status < 0:
        try:
            return f"was killed by {signal.Signals(-status).name}"
        except ValueError:
            return f"was killed by signal {-status}"
    return f"exited with status {status}"


JOB_FILE = ".job.json"  # the job's identity, for a server that restarts without the job in memory
HANDLED = ".handled.jsonl"  # keys of the journal's reports the server has handled


def _key(report: FileStarted | PartCompleted | FileCompleted) -> str:
    if isinstance(report, FileStarted):
        return f"started:{report.file_id}"
    if isinstance(report, PartCompleted):
        return f"part:{report.path}"
    return f"completed:{report.file_id}"


class SpoolJournal:
    """A job's spool folder as the server sees it: the worker's journal (``worker.JOURNAL``), which of its
    reports the server has handled, and who the job is."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def write_ref(self, ref: JobRef) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        tmp = self.folder / f"{JOB_FILE}.tmp"
        tmp.write_text(json.dumps(dataclasses.asdict(ref)))
        tmp.replace(self.folder / JOB_FILE)

    def ref(self) -> JobRef | None:
        try:
            return JobRef(**json.loads((self.folder / JOB_FILE).read_text()))
        except (OSError, ValueError, TypeError):
            return None

    def entries(self) -> list[FileStarted | PartCompleted | FileCompleted]:
        out: list[FileStarted | PartCompleted | FileCompleted] = []
        try:
            lines = (self.folder / JOURNAL).read_bytes().splitlines()
        except FileNotFoundError:
            return out
        for line in lines:
            try:
                report = reports.decode(line)
            except ValueError:
                continue  # a line torn by a crash
            if isinstance(report, FileStarted | PartCompleted | FileCompleted):
                out.append(report)
        return out

    def handled_keys(self) -> set[str]:
        try:
            return set((self.folder / HANDLED).read_text().splitlines())
        except FileNotFoundError:
            return set()

    def handled(self, report: FileStarted | PartCompleted | FileCompleted) -> None:
        with (self.folder / HANDLED).open("a") as fh:
            fh.write(_key(report) + "\n")

    def wait_unlocked(self, timeout: float) -> bool:
        """Wait (blocking) until no worker holds the job's lock; False after ``timeout`` seconds."""
        path = self.folder / LOCK
        if not path.exists():
            return True
        fd = os.open(path, os.O_RDWR)
        try:
            deadline = time.monotonic() + timeout
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    fcntl.flock(fd, fcntl.LOCK_UN)
                    return True
                except BlockingIOError:
                    if time.monotonic() >= deadline:
                        return False
                    time.sleep(0.05)
        finally:
            os.close(fd)

    def clear(self) -> None:
        """The job is over and everything in the journal handled: forget it (the media files stay until
        their upload is confirmed)."""
        for name in (JOURNAL, HANDLED, JOB_FILE, LOCK):
            with contextlib.suppress(FileNotFoundError):
                (self.folder / name).unlink()


def _image_uris(job: JobSpec) -> dict[str, str]:
    """A mixed job's image URIs by parameter (``user_background_images:{user_id}`` for the per-user ones)."""
    mix = job.params.get("mix_param") or {}
    uris = {name: str(mix[name]) for name in IMAGE_FIELDS if mix.get(name)}
    for entry in mix.get("user_background_images") or []:
        if entry.get("user_id") and entry.get("image_uri"):
            uris[f"user_background_images:{entry['user_id']}"] = str(entry["image_uri"])
    return uris


def _check_image(data: bytes) -> None:
    """Raise ``ValueError`` unless ``data`` is a picture the compositor can use (PNG or JPEG)."""
    from emberrtc.recording.mix_images import decode_image  # PyAV decoding: only for mixed jobs

    decode_image(data)


def _write_file(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    tmp.replace(path)


def _description(j: _Job) -> str:
    """The job's ``description`` while it runs: what it does, and any RTMP URL that is not pushing and why
    ("recording; pushing to 1 of 2 RTMP URLs; rtmp://host/app/***: retrying (Connection refused)")."""
    parts = []
    if j.media == "idle":
        parts.append("waiting for media")
    elif j.plan.formats:
        parts.append("recording")
    urls = len(j.plan.rtmp_urls)
    if urls:
        up = sum(1 for p in j.pushes.values() if p.state == "connected")
        what = f"{urls} RTMP URL{'s' if urls > 1 else ''}"
        parts.append(f"pushing to {what}" if up == urls else f"pushing to {up} of {what}")
        parts += [f"{p.url}: {p.state} ({p.detail})" for p in j.pushes.values() if p.state != "connected"]
    if j.image_problems:
        parts.append("images not used, the colour instead: " + "; ".join(j.image_problems))
    if j.behind:
        parts.append(f"{j.behind:.1f} s behind its media: this machine does not keep up with the job")
    return "; ".join(parts)[:1000]
