"""Fixtures for the recording-output tests: a database on each backend, a fake clock, a secret box, an HTTP receiver."""

from tests.support.database import db, db_url
from tests.support.fixtures import box, clock, receiver

__all__ = ["box", "clock", "db", "db_url", "receiver"]
