"""Finishing the files of a recording worker that could not finish them itself (SIGKILL, a crash, power loss).

A worker reports every file it starts (``FileStarted``) before writing to it. When it dies without having
reported the file complete, the supervisor (at once) or the next server run (from the worker's journal)
calls :func:`salvage`, which makes the file what the worker would have made of it up to the moment it died:

- **MP4** files are written fragmented (``writers.MP4_FRAGMENTS``: a ``moof``/``mdat`` pair every 2 s of
  media). Everything up to the last complete fragment is a valid file; a torn fragment at the end is cut
  off. At most ~2 s of media before the death are lost.
- **HLS** playlists are rewritten after every segment, so the spool's playlist lists every closed segment.
  The segment being written is cut to whole TS packets and added when it holds media; the playlist is closed
  (``VOD``, ``#EXT-X-ENDLIST``).

The result is the ``FileCompleted`` report the worker would have sent (with the parts to store first, for
HLS), so the file is uploaded and ``RECORD_FILE_COMPLETE`` sent as for any other file. Nothing to keep (the
worker died before the first fragment) gives None.
"""

from __future__ import annotations

import logging
import math
import os
import re
import struct
from dataclasses import dataclass
from pathlib import Path

import av

from emberrtc.recording.plan import HLS, MP4
from emberrtc.recording.reports import FileCompleted, FileStarted, PartCompleted

log = logging.getLogger(__name__)

_TS_PACKET = 188


@dataclass(frozen=True)
class Salvaged:
    parts: list[PartCompleted]  # HLS: the segment that was being written, to store before the playlist
    completed: FileCompleted


def salvage(started: FileStarted) -> Salvaged | None:
    """Make the file of ``started`` complete and valid; None when it holds no media. Blocking (file I/O)."""
    path = Path(started.path)
    if not path.exists():
        return None
    try:
        if started.record_format == MP4:
            return _mp4(started, path)
        if started.record_format == HLS:
            return _hls(started, path)
    except (OSError, av.error.FFmpegError, ValueError) as exc:
        log.error("file %s (%s) could not be salvaged: %s", path, started.object_name, exc)
        return None
    raise ValueError(f"unknown record format {started.record_format!r}")


def complete_mp4_length(data: bytes) -> int:
    """Length of the part of a fragmented MP4 that ends with its last complete fragment (0: none)."""
    offset, end, moof = 0, 0, False
    while offset + 8 <= len(data):
        size, kind = struct.unpack(">I4s", data[offset : offset + 8])
        if size == 1:
            if offset + 16 > len(data):
                break
            size = struct.unpack(">Q", data[offset + 8 : offset + 16])[0]
        if size < 8 or offset + size > len(data):
            break  # torn: the worker died while writing this box
        if kind == b"moof":
            moof = True
        elif kind == b"mdat" and moof:
            end, moof = offset + size, False
        offset += size
    return end


def _mp4(started: FileStarted, path: Path) -> Salvaged | None:
    keep = complete_mp4_length(path.read_bytes())
    if keep == 0:
        return None
    if keep < path.stat().st_size:
        with path.open("r+b") as fh:
            fh.truncate(keep)
            os.fsync(fh.fileno())
    duration, width, height = _probe(path)
    if duration <= 0:
        return None
    return Salvaged([], _completed(started, duration, width, height))


_EXTINF = re.compile(r"#EXTINF:([0-9.]+),")


def _hls(started: FileStarted, playlist: Path) -> Salvaged | None:
    lines = playlist.read_text().splitlines()
    segments: list[tuple[str, float]] = []
    pending: float | None = None
    for line in lines:
        m = _EXTINF.match(line)
        if m:
            pending = float(m.group(1))
        elif line and not line.startswith("#") and pending is not None:
            segments.append((line, pending))
            pending = None
    parts: list[PartCompleted] = []
    # The segment being written: ``{file_id}-{index:05d}.ts`` in the spool, ``{stem}_{index:05d}.ts`` as object.
    index = len(segments)
    partial = playlist.with_name(f"{started.file_id}-{index:05d}.ts")
    if partial.exists():
        size = partial.stat().st_size
        whole = size - size % _TS_PACKET
        if whole < size:
            with partial.open("r+b") as fh:
                fh.truncate(whole)
        seconds = _probe(partial)[0] if whole else 0.0
        if seconds > 0:
            folder, _, name = started.object_name.rpartition("/")
            base = f"{name.removesuffix('.m3u8')}_{index:05d}.ts"
            obj = f"{folder}/{base}" if folder else base
            parts.append(PartCompleted(started.file_id, str(partial), started.location, started.bucket, obj))
            segments.append((base, seconds))
        else:
            partial.unlink()
    if not segments:
        return None
    target = max(math.ceil(d) for _, d in segments)
    text = ["#EXTM3U", "#EXT-X-VERSION:3", f"#EXT-X-TARGETDURATION:{target}", "#EXT-X-MEDIA-SEQUENCE:0"]
    text.append("#EXT-X-PLAYLIST-TYPE:VOD")
    for uri, seconds in segments:
        text += [f"#EXTINF:{seconds:.3f},", uri]
    text.append("#EXT-X-ENDLIST")
    tmp = playlist.with_name(f".{playlist.name}.tmp")
    tmp.write_text("\n".join(text) + "\n")
    os.replace(tmp, playlist)
    first = playlist.with_name(f"{started.file_id}-00000.ts")
    width = height = None
    if first.exists():
        _, width, height = _probe(first)
    elif parts:
        _, width, height = _probe(Path(parts[0].path))
    duration = sum(seconds for _, seconds in segments)
    log.info("salvaged HLS playlist %s: %d segments, %.1f s", playlist, len(segments), duration)
    return Salvaged(parts, _completed(started, duration, width, height))


def _probe(path: Path) -> tuple[float, int | None, int | None]:
    """Seconds of media (from the packets' own timestamps), and the video size."""
    with av.open(str(path)) as c:
        width = height = None
        if c.streams.video:
            v = c.streams.video[0]
            width, height = v.codec_context.width or None, v.codec_context.height or None
        start: float | None = None
        end = 0.0
        for packet in c.demux():
            if packet.pts is None or packet.time_base is None:
                continue
            t0 = float(packet.pts * packet.time_base)
            t1 = t0 + float((packet.duration or 0) * packet.time_base)
            start = t0 if start is None else min(start, t0)
            end = max(end, t1)
        return (end - start if start is not None else 0.0), width, height


def _completed(started: FileStarted, duration: float, width: int | None, height: int | None) -> FileCompleted:
    return FileCompleted(
        file_id=started.file_id,
        record_format=started.record_format,
        path=started.path,
        location=started.location,
        bucket=started.bucket,
        object_name=started.object_name,
        start_time=started.start_time,
        end_time=started.start_time + duration,
        duration=duration,
        width=width,
        height=height,
        transcoded=started.transcoded,
    )
