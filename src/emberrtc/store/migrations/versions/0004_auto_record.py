"""automatic recording: rooms remember the rule in force when they opened; job slots

Joins the two branches (0002 rooms, 0003 outbox and uploads).

- ``rooms.auto_record_rule_id``: the record rule of ``AUTO_INDIVIDUAL_RECORD`` when the room run started
  (spec 4.6: the setting applies only to rooms created after it), NULL when automatic recording was off.
- ``jobs.slot``: ``api`` for jobs started through the API, ``auto_m``/``auto_a`` for automatic camera and
  screen jobs. One unfinished single-stream job per app, room, user *and slot*: the API's RTC.00001006
  rule between API jobs is unchanged, and a user's automatic camera and screen jobs can run together.

Revision ID: 0004
Revises: 0002, 0003
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = ("0002", "0003")
branch_labels = None
depends_on = None

_ACTIVE = "kind = 'individual' AND state != 'STOPPED'"


def upgrade() -> None:
    with op.batch_alter_table("rooms", schema=None) as batch_op:
        batch_op.add_column(sa.Column("auto_record_rule_id", sa.String(length=32), nullable=True))
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("slot", sa.String(length=16), nullable=False, server_default="api"))
        batch_op.drop_index("uq_jobs_individual_active")
        batch_op.create_index(
            "uq_jobs_individual_active",
            ["app_id", "room_id", "user_id", "slot"],
            unique=True,
            sqlite_where=sa.text(_ACTIVE),
            postgresql_where=sa.text(_ACTIVE),
        )


def downgrade() -> None:
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.drop_index("uq_jobs_individual_active")
        batch_op.create_index(
            "uq_jobs_individual_active",
            ["app_id", "room_id", "user_id"],
            unique=True,
            sqlite_where=sa.text(_ACTIVE),
            postgresql_where=sa.text(_ACTIVE),
        )
        batch_op.drop_column("slot")
    with op.batch_alter_table("rooms", schema=None) as batch_op:
        batch_op.drop_column("auto_record_rule_id")
