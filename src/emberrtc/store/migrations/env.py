"""Alembic environment: always driven with a live connection from ``emberrtc.store.database.Database.migrate``."""

from alembic import context

from emberrtc.store.models import Base

connection = context.config.attributes.get("connection")
if connection is None:  # pragma: no cover - the CLI always passes one
    raise RuntimeError("run migrations through emberrtc.store.database.Database.migrate()")

context.configure(connection=connection, target_metadata=Base.metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
