"""The local spool: where recording workers write files before they are uploaded.

``{data_dir}/spool/{job_id}/{file name}``. A file leaves the spool only when the uploader has confirmed
that storage holds it (``storage.uploader``).
"""

from __future__ import annotations

import os
import re
import secrets
from pathlib import Path

from emberrtc.storage.errors import InvalidObjectName

_SAFE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._\-]{0,254}$")
# Marks a job folder whose job is over (a name no spool file can have: those start with a letter or digit).
# Other dot files are the recording engine's bookkeeping beside the media (its journal, its lock): once the
# job is over they keep no folder alive.
_OVER = ".job-over"


class Spool:
    def __init__(self, root: Path) -> None:
        self.root = root

    def job_dir(self, job_id: str) -> Path:
        if not _SAFE.fullmatch(job_id):
            raise InvalidObjectName(f"job id {job_id!r} cannot name a spool folder")
        return self.root / job_id

    def path_for(self, job_id: str, file_name: str) -> Path:
        """A path for a new file of ``job_id`` (the folder is created)."""
        if not _SAFE.fullmatch(file_name) or ".." in file_name:
            raise InvalidObjectName(f"spool file name {file_name!r} must be a plain file name")
        folder = self.job_dir(job_id)
        folder.mkdir(parents=True, exist_ok=True)
        return folder / file_name

    def contains(self, path: Path) -> bool:
        return path.resolve().is_relative_to(self.root.resolve())

    def remove(self, path: Path) -> None:
        """Delete a spooled file. Blocking. The job's folder goes too once the job is over and the folder
        holds nothing else (while the job runs, its worker may open the next file there at any moment)."""
        path.unlink(missing_ok=True)
        folder = path.parent
        if folder != self.root and self.contains(folder):
            self._drop_if_done(folder)

    def finish_job(self, job_id: str) -> None:
        """The job is over: its worker writes no more. Blocking."""
        folder = self.job_dir(job_id)
        if folder.is_dir():
            (folder / _OVER).touch()
            self._drop_if_done(folder)

    @staticmethod
    def _drop_if_done(folder: Path) -> None:
        try:
            names = {p.name for p in folder.iterdir()}
        except FileNotFoundError:
            return
        if _OVER in names and all(n.startswith(".") for n in names):
            for name in names - {_OVER}:
                (folder / name).unlink(missing_ok=True)
            (folder / _OVER).unlink(missing_ok=True)
            try:
                folder.rmdir()
            except OSError:
                pass  # something arrived meanwhile

    def node_id(self) -> str:
        """This spool's identity (``.node-id``, made once): uploads are claimed only by the node that holds
        their files. Tied to the folder rather than the host name, which containers change at will."""
        path = self.root / ".node-id"
        if not path.exists():
            self.root.mkdir(parents=True, exist_ok=True)
            tmp = self.root / f".node-id.{os.getpid()}.{secrets.token_hex(4)}"
            tmp.write_text(secrets.token_hex(16))
            try:
                os.link(tmp, path)
            except FileExistsError:
                pass
            finally:
                tmp.unlink()
        return path.read_text().strip()
