"""Object names held by recording files, so that no job ever stores over another job's file.

A recording file's object name comes from its rule's templates (``recording.plan``), and two jobs can
arrive at the same name: two apps of a tenant with the same rule, two jobs of one stream, a prefix
without ``{file_start_time}``, or an object already in the bucket. When a file starts (or, for a file
whose start the server never handled, when its first piece arrives), its name is claimed: a row in
``object_claims``, unique per location, namespace (the project, where the location keeps projects'
buckets apart) and bucket, inserted only when no other file holds the name and storage has no object of
that name. A name that is taken gives way to ``{stem}-{job}{.ext}`` (the first 8 characters of the job
id), then ``{stem}-{job}-2{.ext}`` and so on. The unique key decides between jobs on every node at once.

Everything the file produces follows its claim: ``RECORD_NEW_FILE_START`` and ``RECORD_FILE_COMPLETE``
name the claimed object, an HLS playlist's segments are ``{claimed stem}_{index}.ts`` and the playlist
is rewritten to name them (:func:`rename_segments`). A claim is keyed by the job and the name its
templates planned (unique per job), so replaying a file's reports after a restart finds the same name.

The claim covers what Ember writes. Storage is written create-exclusive besides (``put_file``): an
object someone else put under a claimed name after the file started is not replaced (the upload fails,
and is retried, with ``ObjectExists``).
"""

from __future__ import annotations

import functools
import logging
import re
from urllib.parse import quote

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from emberrtc.domain.clock import Clock
from emberrtc.domain.errors import EmberError
from emberrtc.domain.secrets import new_hex_id
from emberrtc.storage.errors import ObjectExists
from emberrtc.storage.object_store import ObjectStore, validate_object_name
from emberrtc.storage.registry import StorageRegistry
from emberrtc.store.database import Database
from emberrtc.store.models import ObjectClaim

log = logging.getLogger(__name__)

PLAYLIST, SEGMENT = ".m3u8", ".ts"
#: Names tried for one file before giving up (each a storage HEAD and an insert).
MAX_TRIES = 20
# An HLS segment as ``recording.writers.HlsWriter`` names it: ``{playlist stem}_{index}.ts``.
_SEGMENT = re.compile(r"^(?P<stem>.+)_(?P<index>[0-9]+)\.ts$", re.DOTALL)


def alternative(name: str, job_id: str, n: int) -> str:
    """The ``n``-th name (from 1) to try when ``name`` is taken: ``{stem}-{job}{.ext}``, then with ``-n``."""
    folder, sep, base = name.rpartition("/")
    stem, dot, ext = base.rpartition(".")
    if not dot or not stem:
        stem, dot, ext = base, "", ""
    tag = job_id[:8] if n == 1 else f"{job_id[:8]}-{n}"
    return f"{folder}{sep}{stem}-{tag}{dot}{ext}"


def playlist_of(segment: str) -> tuple[str, str] | None:
    """``(playlist name, index)`` of an HLS segment's object name, else None."""
    folder, sep, base = segment.rpartition("/")
    m = _SEGMENT.fullmatch(base)
    if m is None:
        return None
    return f"{folder}{sep}{m['stem']}{PLAYLIST}", m["index"]


def rename_segments(text: str, planned: str, actual: str) -> str:
    """A playlist written for ``planned`` with its own segment lines renamed after ``actual``."""
    old_stem = planned.rpartition("/")[2].removesuffix(PLAYLIST)
    new_stem = actual.rpartition("/")[2].removesuffix(PLAYLIST)
    # The writer writes each segment as the quoted file name (``HlsWriter._end_segment``).
    own = re.compile(re.escape(quote(f"{old_stem}_")) + r"([0-9]+)" + re.escape(SEGMENT))
    lines = text.split("\n")
    for i, line in enumerate(lines):
        m = own.fullmatch(line.strip())
        if m is not None:
            lines[i] = quote(f"{new_stem}_{m[1]}{SEGMENT}")
    return "\n".join(lines)


class ObjectClaims:
    """Claims object names for recording files (see the module docstring)."""

    def __init__(self, db: Database, registry: StorageRegistry, clock: Clock) -> None:
        self._db = db
        self._registry = registry
        self._clock = clock

    async def claim(self, job_id: str, location: str, project: str | None, bucket: str, planned: str) -> str:
        """The object name of the file ``planned`` of ``job_id``: ``planned`` when it was free, else the first
        free :func:`alternative`. The same answer every time for the same job and planned name."""
        held = await self._db.run(lambda s: _held(s, job_id, planned))
        if held is not None:
            return held
        store = self._registry.get(location, project)
        for n in range(MAX_TRIES):
            name = validate_object_name(planned if n == 0 else alternative(planned, job_id, n))
            if await _in_storage(store, bucket, name):
                continue
            claim = ObjectClaim(
                claim_id=new_hex_id(),
                location=location,
                namespace=store.namespace,
                bucket=bucket,
                object_name=name,
                job_id=job_id,
                planned_name=planned,
                created_at=self._clock.now(),
            )
            try:
                await self._db.run(functools.partial(_add, claim))
            except IntegrityError:
                # Another file holds the name (or this one was claimed meanwhile: then that is the answer).
                held = await self._db.run(lambda s: _held(s, job_id, planned))
                if held is not None:
                    return held
                continue
            if name != planned:
                log.warning("job %s: %r is taken in bucket %r; the file is stored as %r", job_id, planned, bucket, name)
            return name
        raise ObjectExists(f"object {planned!r} and {MAX_TRIES - 1} alternatives are taken in bucket {bucket!r}")

    async def part(self, job_id: str, location: str, project: str | None, bucket: str, planned: str) -> str:
        """The object name of a piece of a file: an HLS segment follows its playlist's claim."""
        owner = playlist_of(planned)
        if owner is None:
            return await self.claim(job_id, location, project, bucket, planned)
        playlist, index = owner
        actual = await self.claim(job_id, location, project, bucket, playlist)
        return f"{actual.removesuffix(PLAYLIST)}_{index}{SEGMENT}"


def _add(claim: ObjectClaim, s: Session) -> None:
    s.add(claim)


def _held(s: Session, job_id: str, planned: str) -> str | None:
    return s.scalar(
        select(ObjectClaim.object_name).where(ObjectClaim.job_id == job_id, ObjectClaim.planned_name == planned)
    )


async def _in_storage(store: ObjectStore, bucket: str, name: str) -> bool:
    """Does storage hold ``name`` (for a playlist: or its first segment)? Unknown (storage unreachable)
    counts as no: the claim still keeps other jobs off, and the create-exclusive write keeps the rest."""
    names = [name]
    if name.endswith(PLAYLIST):
        names.append(f"{name.removesuffix(PLAYLIST)}_00000{SEGMENT}")
    for candidate in names:
        try:
            if await store.head(bucket, candidate) is not None:
                return True
        except EmberError as exc:
            log.warning("could not tell whether %r is in bucket %r: %s", candidate, bucket, exc.message)
            return False
    return False
