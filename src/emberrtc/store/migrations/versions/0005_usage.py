"""usage accounting: recorded and transcoded seconds per recording file and UTC day

One row per (job, object name, day); the unique key makes counting a file idempotent, and the
(app, day) index serves the per-day totals (``domain.usage``).

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "usage_entries",
        sa.Column("entry_id", sa.String(length=32), nullable=False),
        sa.Column("app_id", sa.String(length=32), nullable=False),
        sa.Column("job_id", sa.String(length=32), nullable=False),
        sa.Column("object_name", sa.Text(), nullable=False),
        sa.Column("day", sa.String(length=10), nullable=False),
        sa.Column("recorded_seconds", sa.Double(), nullable=False),
        sa.Column("transcoded_seconds", sa.Double(), nullable=False),
        sa.Column("record_format", sa.String(length=16), nullable=False),
        sa.Column("width", sa.Integer(), nullable=True),
        sa.Column("height", sa.Integer(), nullable=True),
        sa.Column("create_time", sa.Double(), nullable=False),
        sa.ForeignKeyConstraint(["app_id"], ["apps.app_id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("entry_id"),
        sa.UniqueConstraint("job_id", "object_name", "day", name="uq_usage_entries_file_day"),
    )
    with op.batch_alter_table("usage_entries", schema=None) as batch_op:
        batch_op.create_index("ix_usage_entries_app_day", ["app_id", "day"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("usage_entries", schema=None) as batch_op:
        batch_op.drop_index("ix_usage_entries_app_day")
    op.drop_table("usage_entries")
