"""callback outbox and upload spool

Revision ID: 0003
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "uploads",
        sa.Column("upload_id", sa.String(length=32), nullable=False),
        sa.Column("node_id", sa.String(length=128), nullable=False),
        sa.Column("job_id", sa.String(length=32), nullable=True),
        sa.Column("group_key", sa.String(length=128), nullable=True),
        sa.Column("location", sa.String(length=64), nullable=False),
        sa.Column("bucket", sa.String(length=64), nullable=False),
        sa.Column("object_name", sa.Text(), nullable=False),
        sa.Column("content_type", sa.String(length=128), nullable=False),
        sa.Column("spool_path", sa.Text(), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("md5", sa.String(length=32), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.Double(), nullable=False),
        sa.Column("next_attempt_at", sa.Double(), nullable=False),
        sa.Column("uploaded_at", sa.Double(), nullable=True),
        sa.Column("etag", sa.String(length=128), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("upload_id"),
    )
    with op.batch_alter_table("uploads", schema=None) as batch_op:
        batch_op.create_index("ix_uploads_due", ["node_id", "state", "next_attempt_at"], unique=False)
        batch_op.create_index(batch_op.f("ix_uploads_job_id"), ["job_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_uploads_group_key"), ["group_key"], unique=False)

    op.create_table(
        "callback_outbox",
        sa.Column("event_id", sa.String(length=32), nullable=False),
        sa.Column("app_id", sa.String(length=32), nullable=False),
        sa.Column("job_id", sa.String(length=32), nullable=False),
        sa.Column("sequence", sa.Integer(), nullable=False),
        sa.Column("event_type", sa.String(length=32), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("ready", sa.Boolean(), nullable=False),
        sa.Column("hold_group", sa.String(length=128), nullable=True),
        sa.Column("finished", sa.Boolean(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.Double(), nullable=False),
        sa.Column("first_attempt_at", sa.Double(), nullable=True),
        sa.Column("next_attempt_at", sa.Double(), nullable=False),
        sa.Column("delivered_at", sa.Double(), nullable=True),
        sa.Column("gave_up_at", sa.Double(), nullable=True),
        sa.Column("last_status", sa.Integer(), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("event_id"),
        sa.UniqueConstraint("job_id", "sequence", name="uq_callback_outbox_job_sequence"),
    )
    with op.batch_alter_table("callback_outbox", schema=None) as batch_op:
        batch_op.create_index("ix_callback_outbox_due", ["finished", "ready", "next_attempt_at"], unique=False)
        batch_op.create_index(batch_op.f("ix_callback_outbox_app_id"), ["app_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_callback_outbox_hold_group"), ["hold_group"], unique=False)

    op.create_table(
        "callback_sequences",
        sa.Column("job_id", sa.String(length=32), nullable=False),
        sa.Column("last_sequence", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("job_id"),
    )


def downgrade() -> None:
    op.drop_table("callback_sequences")
    with op.batch_alter_table("callback_outbox", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_callback_outbox_hold_group"))
        batch_op.drop_index(batch_op.f("ix_callback_outbox_app_id"))
        batch_op.drop_index("ix_callback_outbox_due")
    op.drop_table("callback_outbox")
    with op.batch_alter_table("uploads", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_uploads_group_key"))
        batch_op.drop_index(batch_op.f("ix_uploads_job_id"))
        batch_op.drop_index("ix_uploads_due")
    op.drop_table("uploads")
