"""job claims: the node that runs each recording job

- ``jobs.node_id``: the node whose recording engine runs the job, claimed with a conditional UPDATE
  (``JobService``), so that exactly one node of a cluster runs each job; NULL while nobody runs it.
- ``jobs.recorded_on``: the node that last ran a recorder for it (kept when the claim is released).
- ``ix_jobs_node_state``: a node's own jobs (its restart; a live node taking over a dead node's jobs).

Revision ID: 0011_job_claims
Revises: 0010_jobs
"""

import sqlalchemy as sa
from alembic import op

revision = "0011_job_claims"
down_revision = "0010_jobs"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("node_id", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("recorded_on", sa.String(length=64), nullable=True))
        batch_op.create_index("ix_jobs_node_state", ["node_id", "state"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.drop_index("ix_jobs_node_state")
        batch_op.drop_column("recorded_on")
        batch_op.drop_column("node_id")
