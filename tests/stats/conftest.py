"""Fixtures for the statistics tests: a database on each backend, a fake clock, a secret box."""

from tests.support.database import db, db_url
from tests.support.fixtures import box, clock

__all__ = ["box", "clock", "db", "db_url"]
