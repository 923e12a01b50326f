"""statistics: session join facts, raw QoS samples, per-minute and daily roll-ups, abnormal events

Tables and metric definitions: docs/statistics.md.

Revision ID: 0006
Revises: 0005
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "stats_abnormal_events",
        sa.Column("event_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("time", sa.Double(), nullable=False),
        sa.Column("app_id", sa.String(length=32), nullable=False),
        sa.Column("room_id", sa.String(length=64), nullable=False),
        sa.Column("user_id", sa.String(length=64), nullable=False),
        sa.Column("session_id", sa.String(length=32), nullable=True),
        sa.Column("stage", sa.String(length=16), nullable=False),
        sa.Column("location", sa.String(length=8), nullable=False),
        sa.Column("peer_uid", sa.String(length=64), nullable=False),
        sa.Column("abnormal_type", sa.Integer(), nullable=False),
        sa.Column("abnormal_factor", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("event_id"),
    )
    op.create_index(
        "ix_stats_abnormal_app_room_time", "stats_abnormal_events", ["app_id", "room_id", "time"], unique=False
    )
    op.create_index("ix_stats_abnormal_app_time", "stats_abnormal_events", ["app_id", "time"], unique=False)
    op.create_table(
        "stats_days",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("app_id", sa.String(length=32), nullable=False),
        sa.Column("day", sa.String(length=10), nullable=False),
        sa.Column("user_count", sa.Integer(), nullable=False),
        sa.Column("session_count", sa.Integer(), nullable=False),
        sa.Column("room_count", sa.Integer(), nullable=False),
        sa.Column("max_online_users", sa.Integer(), nullable=False),
        sa.Column("max_online_rooms", sa.Integer(), nullable=False),
        sa.Column("join_attempts", sa.Integer(), nullable=False),
        sa.Column("join_ok", sa.Integer(), nullable=False),
        sa.Column("join_ok_5s", sa.Integer(), nullable=False),
        sa.Column("first_audio_ms_sum", sa.Double(), nullable=False),
        sa.Column("first_audio_n", sa.Integer(), nullable=False),
        sa.Column("first_video_ms_sum", sa.Double(), nullable=False),
        sa.Column("first_video_n", sa.Integer(), nullable=False),
        sa.Column("video_recv_s", sa.Double(), nullable=False),
        sa.Column("video_freeze_s", sa.Double(), nullable=False),
        sa.Column("audio_recv_s", sa.Double(), nullable=False),
        sa.Column("audio_freeze_s", sa.Double(), nullable=False),
        sa.Column("video_up_samples", sa.Integer(), nullable=False),
        sa.Column("video_up_excellent", sa.Integer(), nullable=False),
        sa.Column("audio_up_samples", sa.Integer(), nullable=False),
        sa.Column("audio_up_excellent", sa.Integer(), nullable=False),
        sa.Column("video_e2e_samples", sa.Integer(), nullable=False),
        sa.Column("video_e2e_excellent", sa.Integer(), nullable=False),
        sa.Column("audio_e2e_samples", sa.Integer(), nullable=False),
        sa.Column("audio_e2e_excellent", sa.Integer(), nullable=False),
        sa.Column("video_rtt_sum", sa.Double(), nullable=False),
        sa.Column("video_rtt_n", sa.Integer(), nullable=False),
        sa.Column("audio_rtt_sum", sa.Double(), nullable=False),
        sa.Column("audio_rtt_n", sa.Integer(), nullable=False),
        sa.Column("push_attempts", sa.Integer(), nullable=False),
        sa.Column("push_ok", sa.Integer(), nullable=False),
        sa.Column("pull_attempts", sa.Integer(), nullable=False),
        sa.Column("pull_ok", sa.Integer(), nullable=False),
        sa.Column("comm_audio_s", sa.Double(), nullable=False),
        sa.Column("comm_sd_s", sa.Double(), nullable=False),
        sa.Column("comm_hd_s", sa.Double(), nullable=False),
        sa.Column("comm_uhd_s", sa.Double(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("app_id", "day", name="uq_stats_days_key"),
    )
    op.create_table(
        "stats_marks",
        sa.Column("name", sa.String(length=32), nullable=False),
        sa.Column("done_until", sa.Double(), nullable=False),
        sa.PrimaryKeyConstraint("name"),
    )
    op.create_table(
        "stats_minutes",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("app_id", sa.String(length=32), nullable=False),
        sa.Column("room_id", sa.String(length=64), nullable=False),
        sa.Column("sdk_type", sa.String(length=16), nullable=False),
        sa.Column("minute", sa.BigInteger(), nullable=False),
        sa.Column("online_users", sa.Integer(), nullable=False),
        sa.Column("join_attempts", sa.Integer(), nullable=False),
        sa.Column("join_ok", sa.Integer(), nullable=False),
        sa.Column("join_ok_5s", sa.Integer(), nullable=False),
        sa.Column("first_audio_ms_sum", sa.Double(), nullable=False),
        sa.Column("first_audio_n", sa.Integer(), nullable=False),
        sa.Column("first_video_ms_sum", sa.Double(), nullable=False),
        sa.Column("first_video_n", sa.Integer(), nullable=False),
        sa.Column("video_recv_s", sa.Double(), nullable=False),
        sa.Column("video_freeze_s", sa.Double(), nullable=False),
        sa.Column("audio_recv_s", sa.Double(), nullable=False),
        sa.Column("audio_freeze_s", sa.Double(), nullable=False),
        sa.Column("video_up_samples", sa.Integer(), nullable=False),
        sa.Column("video_up_excellent", sa.Integer(), nullable=False),
        sa.Column("audio_up_samples", sa.Integer(), nullable=False),
        sa.Column("audio_up_excellent", sa.Integer(), nullable=False),
        sa.Column("video_e2e_samples", sa.Integer(), nullable=False),
        sa.Column("video_e2e_excellent", sa.Integer(), nullable=False),
        sa.Column("audio_e2e_samples", sa.Integer(), nullable=False),
        sa.Column("audio_e2e_excellent", sa.Integer(), nullable=False),
        sa.Column("video_rtt_sum", sa.Double(), nullable=False),
        sa.Column("video_rtt_n", sa.Integer(), nullable=False),
        sa.Column("audio_rtt_sum", sa.Double(), nullable=False),
        sa.Column("audio_rtt_n", sa.Integer(), nullable=False),
        sa.Column("push_attempts", sa.Integer(), nullable=False),
        sa.Column("push_ok", sa.Integer(), nullable=False),
        sa.Column("pull_attempts", sa.Integer(), nullable=False),
        sa.Column("pull_ok", sa.Integer(), nullable=False),
        sa.Column("comm_audio_s", sa.Double(), nullable=False),
        sa.Column("comm_sd_s", sa.Double(), nullable=False),
        sa.Column("comm_hd_s", sa.Double(), nullable=False),
        sa.Column("comm_uhd_s", sa.Double(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("app_id", "minute", "room_id", "sdk_type", name="uq_stats_minutes_key"),
    )
    op.create_index("ix_stats_minutes_app_room_minute", "stats_minutes", ["app_id", "room_id", "minute"], unique=False)
    op.create_table(
        "stats_qos_samples",
        sa.Column(
            "sample_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False
        ),
        sa.Column("time", sa.Double(), nullable=False),
        sa.Column("ctime", sa.Double(), nullable=True),
        sa.Column("app_id", sa.String(length=32), nullable=False),
        sa.Column("room_id", sa.String(length=64), nullable=False),
        sa.Column("session_id", sa.String(length=32), nullable=True),
        sa.Column("user_id", sa.String(length=64), nullable=False),
        sa.Column("peer_id", sa.String(length=64), nullable=False),
        sa.Column("direction", sa.String(length=8), nullable=False),
        sa.Column("source", sa.String(length=8), nullable=False),
        sa.Column("sdk_type", sa.String(length=16), nullable=False),
        sa.Column("interval_s", sa.Double(), nullable=False),
        sa.Column("appcpu", sa.Double(), nullable=True),
        sa.Column("syscpu", sa.Double(), nullable=True),
        sa.Column("abit", sa.Double(), nullable=True),
        sa.Column("vbit", sa.Double(), nullable=True),
        sa.Column("dbit", sa.Double(), nullable=True),
        sa.Column("vfps", sa.Double(), nullable=True),
        sa.Column("dfps", sa.Double(), nullable=True),
        sa.Column("vblock", sa.Double(), nullable=True),
        sa.Column("dblock", sa.Double(), nullable=True),
        sa.Column("ablock", sa.Double(), nullable=True),
        sa.Column("aloss", sa.Double(), nullable=True),
        sa.Column("vloss", sa.Double(), nullable=True),
        sa.Column("dloss", sa.Double(), nullable=True),
        sa.Column("vwidth", sa.Integer(), nullable=True),
        sa.Column("vheight", sa.Integer(), nullable=True),
        sa.Column("dwidth", sa.Integer(), nullable=True),
        sa.Column("dheight", sa.Integer(), nullable=True),
        sa.Column("ajitter", sa.Double(), nullable=True),
        sa.Column("artt", sa.Double(), nullable=True),
        sa.Column("vjitter", sa.Double(), nullable=True),
        sa.Column("vrtt", sa.Double(), nullable=True),
        sa.Column("djitter", sa.Double(), nullable=True),
        sa.Column("drtt", sa.Double(), nullable=True),
        sa.Column("apackets", sa.Integer(), nullable=True),
        sa.Column("vpackets", sa.Integer(), nullable=True),
        sa.Column("nacks", sa.Integer(), nullable=True),
        sa.Column("link_quality", sa.Double(), nullable=True),
        sa.Column("vfreeze_ms", sa.Double(), nullable=True),
        sa.Column("afreeze_ms", sa.Double(), nullable=True),
        sa.Column("push_attempts", sa.Integer(), nullable=True),
        sa.Column("push_ok", sa.Integer(), nullable=True),
        sa.Column("pull_attempts", sa.Integer(), nullable=True),
        sa.Column("pull_ok", sa.Integer(), nullable=True),
        sa.PrimaryKeyConstraint("sample_id"),
    )
    op.create_index("ix_stats_qos_app_room_time", "stats_qos_samples", ["app_id", "room_id", "time"], unique=False)
    op.create_index("ix_stats_qos_time", "stats_qos_samples", ["time"], unique=False)
    op.create_index(
        "ix_stats_qos_app_room_user_time", "stats_qos_samples", ["app_id", "room_id", "user_id", "time"], unique=False
    )
    op.create_table(
        "stats_sessions",
        sa.Column("session_id", sa.String(length=32), nullable=False),
        sa.Column("app_id", sa.String(length=32), nullable=False),
        sa.Column("room_id", sa.String(length=64), nullable=False),
        sa.Column("user_id", sa.String(length=64), nullable=False),
        sa.Column("join_time", sa.Double(), nullable=False),
        sa.Column("ok", sa.Boolean(), nullable=False),
        sa.Column("sdk_type", sa.String(length=16), nullable=False),
        sa.Column("access_net", sa.String(length=16), nullable=False),
        sa.Column("region", sa.String(length=8), nullable=False),
        sa.Column("isp", sa.String(length=64), server_default="", nullable=False),
        sa.Column("join_ms", sa.Double(), nullable=True),
        sa.Column("first_audio_ms", sa.Double(), nullable=True),
        sa.Column("first_video_ms", sa.Double(), nullable=True),
        sa.Column("fail_code", sa.String(length=32), nullable=True),
        sa.PrimaryKeyConstraint("session_id"),
    )
    op.create_index("ix_stats_sessions_app_join", "stats_sessions", ["app_id", "join_time"], unique=False)


def downgrade() -> None:

    op.drop_index("ix_stats_sessions_app_join", table_name="stats_sessions")
    op.drop_table("stats_sessions")
    op.drop_index("ix_stats_qos_app_room_user_time", table_name="stats_qos_samples")
    op.drop_index("ix_stats_qos_time", table_name="stats_qos_samples")
    op.drop_index("ix_stats_qos_app_room_time", table_name="stats_qos_samples")
    op.drop_table("stats_qos_samples")
    op.drop_index("ix_stats_minutes_app_room_minute", table_name="stats_minutes")
    op.drop_table("stats_minutes")
    op.drop_table("stats_marks")
    op.drop_table("stats_days")
    op.drop_index("ix_stats_abnormal_app_time", table_name="stats_abnormal_events")
    op.drop_index("ix_stats_abnormal_app_room_time", table_name="stats_abnormal_events")
    op.drop_table("stats_abnormal_events")
