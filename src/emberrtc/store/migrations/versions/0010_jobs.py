"""jobs changed since: an index on ``jobs.update_time``

The job supervisor of each node asks, every pass, which jobs changed in the last few seconds (created,
updated or stopped, maybe by another node), instead of loading every unfinished job (issue 11 item 3).

Revision ID: 0010_jobs
Revises: 0009_cluster
"""

from alembic import op

revision = "0010_jobs"
down_revision = "0009_cluster"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.create_index("ix_jobs_update_time", ["update_time"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.drop_index("ix_jobs_update_time")
