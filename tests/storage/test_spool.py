"""The spool's folders: plain names only, and a job's folder kept until the job is over and emptied."""

from __future__ import annotations

from pathlib import Path

import pytest

from emberrtc.storage.errors import InvalidObjectName
from emberrtc.storage.spool import Spool


def test_names(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool")
    assert spool.path_for("job1", "a1b2-mp40001.mp4") == tmp_path / "spool" / "job1" / "a1b2-mp40001.mp4"
    for job, name in (("../x", "a.mp4"), ("job1", "../a.mp4"), ("job1", "a/b.mp4"), ("job1", ".hidden"), ("", "a")):
        with pytest.raises(InvalidObjectName):
            spool.path_for(job, name)
    assert spool.contains(spool.path_for("job1", "a.mp4"))
    assert not spool.contains(tmp_path / "elsewhere.mp4")


def test_job_folder_lives_until_the_job_is_over_and_empty(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool")
    a, b = spool.path_for("job1", "a.mp4"), spool.path_for("job1", "b.mp4")
    a.write_bytes(b"a")
    b.write_bytes(b"b")
    spool.remove(a)
    assert not a.exists() and b.exists()
    spool.finish_job("job1")
    assert b.exists()  # still to be uploaded
    spool.remove(b)
    assert not (tmp_path / "spool" / "job1").exists()

    spool.path_for("job2", "c.mp4").write_bytes(b"c")
    spool.remove(spool.path_for("job2", "c.mp4"))
    assert (tmp_path / "spool" / "job2").is_dir()  # running: the next file may come
    spool.finish_job("job2")
    assert not (tmp_path / "spool" / "job2").exists()
    spool.finish_job("job3")  # never had a folder: nothing to do


def test_node_id_is_stable(tmp_path: Path) -> None:
    first = Spool(tmp_path / "spool").node_id()
    assert len(first) == 32 and Spool(tmp_path / "spool").node_id() == first
    assert Spool(tmp_path / "other").node_id() != first


def test_the_recording_bookkeeping_keeps_no_finished_folder_alive(tmp_path: Path) -> None:
    from emberrtc.recording.supervisor import HANDLED, JOB_FILE
    from emberrtc.recording.worker import JOURNAL, LOCK

    spool = Spool(tmp_path / "spool")
    media = spool.path_for("job1", "a.mp4")
    media.write_bytes(b"a")
    for name in (JOURNAL, LOCK, HANDLED, JOB_FILE):
        assert name.startswith(".")  # never a media file's name (those start with a letter or digit)
        (media.parent / name).write_text("x")
    spool.finish_job("job1")
    assert media.exists() and (media.parent / JOURNAL).exists()  # the file is still to be uploaded
    spool.remove(media)
    assert not (tmp_path / "spool" / "job1").exists()

    folder = spool.path_for("job2", "b.mp4").parent
    (folder / JOURNAL).write_text("x")
    spool.finish_job("job2")  # all uploaded before the job ended
    assert not folder.exists()
