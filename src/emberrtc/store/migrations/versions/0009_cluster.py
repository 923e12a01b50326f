"""cluster: which node hosts a room run

- ``rooms.node_id``: the node (``EMBER_NODE_ID``) whose media plane holds the run, in cluster mode; NULL
  for a single node. A node starting again closes only the runs it held (``RoomSessionService.recover``),
  not those of the other nodes sharing the database.

Revision ID: 0009_cluster
Revises: 0008_storage
"""

import sqlalchemy as sa
from alembic import op

revision = "0009_cluster"
down_revision = "0008_storage"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("rooms", schema=None) as batch_op:
        batch_op.add_column(sa.Column("node_id", sa.String(length=64), nullable=True))
        batch_op.create_index("ix_rooms_node_running", ["node_id", "state"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("rooms", schema=None) as batch_op:
        batch_op.drop_index("ix_rooms_node_running")
        batch_op.drop_column("node_id")
