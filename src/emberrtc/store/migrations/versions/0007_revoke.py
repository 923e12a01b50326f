"""revocation: revoked and last-used times of credentials, revoked tokens, the revocation epoch

``revocation_epoch`` holds one row (id 1) whose counter every revocation raises; nodes poll it to drop
cached credentials (``domain.tenant``).

Revision ID: 0007_revoke
Revises: 0006
"""

import sqlalchemy as sa
from alembic import op

revision = "0007_revoke"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("credentials", sa.Column("revoked_at", sa.Double(), nullable=True))
    op.add_column("credentials", sa.Column("last_used_at", sa.Double(), nullable=True))
    op.add_column("tokens", sa.Column("revoked_at", sa.Double(), nullable=True))
    epoch = op.create_table(
        "revocation_epoch",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("epoch", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.bulk_insert(epoch, [{"id": 1, "epoch": 0}])


def downgrade() -> None:
    op.drop_table("revocation_epoch")
    # SQLite drops columns by copying the table (batch mode); PostgreSQL alters it in place.
    with op.batch_alter_table("tokens") as batch_op:
        batch_op.drop_column("revoked_at")
    with op.batch_alter_table("credentials") as batch_op:
        batch_op.drop_column("last_used_at")
        batch_op.drop_column("revoked_at")
