"""room runs and user sessions (statistics of rooms and users)

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "rooms",
        sa.Column("room_uid", sa.String(length=32), nullable=False),
        sa.Column("app_id", sa.String(length=32), nullable=False),
        sa.Column("room_id", sa.String(length=64), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("start_time", sa.Double(), nullable=False),
        sa.Column("end_time", sa.Double(), nullable=True),
        sa.Column("duration", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(["app_id"], ["apps.app_id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("room_uid"),
    )
    with op.batch_alter_table("rooms", schema=None) as batch_op:
        batch_op.create_index("ix_rooms_app_start", ["app_id", "start_time"], unique=False)
        batch_op.create_index("ix_rooms_app_room_start", ["app_id", "room_id", "start_time"], unique=False)
        batch_op.create_index(
            "uq_rooms_running",
            ["app_id", "room_id"],
            unique=True,
            sqlite_where=sa.text("state = 'RUNNING'"),
            postgresql_where=sa.text("state = 'RUNNING'"),
        )

    op.create_table(
        "room_sessions",
        sa.Column("session_id", sa.String(length=32), nullable=False),
        sa.Column("app_id", sa.String(length=32), nullable=False),
        sa.Column("room_uid", sa.String(length=32), nullable=True),
        sa.Column("room_id", sa.String(length=64), nullable=False),
        sa.Column("user_id", sa.String(length=64), nullable=False),
        sa.Column("nickname", sa.String(length=256), nullable=True),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("fail_reason", sa.Text(), nullable=True),
        sa.Column("leave_reason", sa.String(length=32), nullable=True),
        sa.Column("join_time", sa.Double(), nullable=False),
        sa.Column("leave_time", sa.Double(), nullable=True),
        sa.Column("client_ip", sa.String(length=64), nullable=True),
        sa.Column("platform", sa.String(length=128), nullable=True),
        sa.Column("sdk_version", sa.String(length=64), nullable=True),
        sa.Column("device_model", sa.String(length=128), nullable=True),
        sa.Column("published_streams", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(["app_id"], ["apps.app_id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["room_uid"], ["rooms.room_uid"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("session_id"),
    )
    with op.batch_alter_table("room_sessions", schema=None) as batch_op:
        batch_op.create_index("ix_room_sessions_app_join", ["app_id", "join_time"], unique=False)
        batch_op.create_index("ix_room_sessions_app_room_join", ["app_id", "room_id", "join_time"], unique=False)
        batch_op.create_index("ix_room_sessions_room_state", ["room_uid", "state"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("room_sessions", schema=None) as batch_op:
        batch_op.drop_index("ix_room_sessions_room_state")
        batch_op.drop_index("ix_room_sessions_app_room_join")
        batch_op.drop_index("ix_room_sessions_app_join")
    op.drop_table("room_sessions")
    with op.batch_alter_table("rooms", schema=None) as batch_op:
        batch_op.drop_index("uq_rooms_running")
        batch_op.drop_index("ix_rooms_app_room_start")
        batch_op.drop_index("ix_rooms_app_start")
    op.drop_table("rooms")
