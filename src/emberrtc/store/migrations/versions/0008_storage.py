"""storage per project: the project of each upload, and the object names recording files hold

``uploads.project_id`` says whose bucket a file goes to (local locations keep each project's buckets
apart); pending uploads of existing installs get their job's app's project. ``object_claims`` holds
the object name of every recording file, unique per location, namespace and bucket, so that no job
ever stores over another's file (``recording.object_names``).

Revision ID: 0008_storage
Revises: 0007_revoke
"""

import sqlalchemy as sa
from alembic import op

revision = "0008_storage"
down_revision = "0007_revoke"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("uploads", schema=None) as batch_op:
        batch_op.add_column(sa.Column("project_id", sa.String(length=64), nullable=True))
    op.execute(
        "UPDATE uploads SET project_id = (SELECT tenants.project_id FROM jobs"
        " JOIN apps ON apps.app_id = jobs.app_id JOIN tenants ON tenants.domain_id = apps.domain_id"
        " WHERE jobs.job_id = uploads.job_id) WHERE project_id IS NULL AND job_id IS NOT NULL"
    )
    op.create_table(
        "object_claims",
        sa.Column("claim_id", sa.String(length=32), nullable=False),
        sa.Column("location", sa.String(length=64), nullable=False),
        sa.Column("namespace", sa.String(length=64), nullable=False),
        sa.Column("bucket", sa.String(length=64), nullable=False),
        sa.Column("object_name", sa.Text(), nullable=False),
        sa.Column("job_id", sa.String(length=32), nullable=False),
        sa.Column("planned_name", sa.Text(), nullable=False),
        sa.Column("created_at", sa.Double(), nullable=False),
        sa.PrimaryKeyConstraint("claim_id"),
        sa.UniqueConstraint("location", "namespace", "bucket", "object_name", name="uq_object_claims_name"),
        sa.UniqueConstraint("job_id", "planned_name", name="uq_object_claims_planned"),
    )


def downgrade() -> None:
    op.drop_table("object_claims")
    with op.batch_alter_table("uploads", schema=None) as batch_op:
        batch_op.drop_column("project_id")
