"""Tables. Times are UNIX seconds (float, UTC) so SQLite and PostgreSQL behave the same.

Secrets never sit here in the clear: passwords and tokens are hashed, SKs, app keys and
callback auth keys are encrypted with the data folder's master key (see ``domain.secrets``).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Double,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    pass


class Tenant(Base):
    """An account (IAM domain) with its one project and one IAM user."""

    __tablename__ = "tenants"

    domain_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    domain_name: Mapped[str] = mapped_column(String(128), unique=True)
    project_id: Mapped[str] = mapped_column(String(32), unique=True)
    project_name: Mapped[str] = mapped_column(String(128))
    user_name: Mapped[str] = mapped_column(String(128))
    password_hash: Mapped[str] = mapped_column(String(256))
    created_at: Mapped[float] = mapped_column(Double)


class Credential(Base):
    """An AK/SK pair; the SK is stored encrypted because verifying HMAC needs it back."""

    __tablename__ = "credentials"

    ak: Mapped[str] = mapped_column(String(64), primary_key=True)
    domain_id: Mapped[str] = mapped_column(ForeignKey("tenants.domain_id", ondelete="CASCADE"), index=True)
    sk_encrypted: Mapped[str] = mapped_column(Text)
    created_at: Mapped[float] = mapped_column(Double)


class Token(Base):
    """An IAM token; only its SHA-256 is kept."""

    __tablename__ = "tokens"

    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    domain_id: Mapped[str] = mapped_column(ForeignKey("tenants.domain_id", ondelete="CASCADE"), index=True)
    expires_at: Mapped[float] = mapped_column(Double, index=True)


class App(Base):
    """An application (spec 4.5) with its callback and auto-record settings (4.3, 4.6)."""

    __tablename__ = "apps"
    __table_args__ = (UniqueConstraint("domain_id", "app_name", name="uq_apps_domain_name"),)

    app_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    domain_id: Mapped[str] = mapped_column(ForeignKey("tenants.domain_id", ondelete="CASCADE"), index=True)
    app_name: Mapped[str] = mapped_column(String(256))
    state: Mapped[str] = mapped_column(String(16))
    state_update_time: Mapped[float] = mapped_column(Double)
    scope: Mapped[str] = mapped_column(String(16))
    create_time: Mapped[float] = mapped_column(Double)
    auth_enable: Mapped[bool] = mapped_column(Boolean)
    auth_expire: Mapped[int] = mapped_column(Integer)
    app_key_encrypted: Mapped[str] = mapped_column(Text)
    auth_update_time: Mapped[float] = mapped_column(Double)
    record_callback_url: Mapped[str | None] = mapped_column(Text, nullable=True)
    record_callback_auth_key_encrypted: Mapped[str | None] = mapped_column(Text, nullable=True)
    record_callback_events: Mapped[list[str] | None] = mapped_column(JSON, nullable=True)
    record_callback_update_time: Mapped[float | None] = mapped_column(Double, nullable=True)
    auto_record_mode: Mapped[str] = mapped_column(String(32))
    auto_record_rule_id: Mapped[str | None] = mapped_column(String(32), nullable=True)
    auto_record_update_time: Mapped[float] = mapped_column(Double)


class RecordRule(Base):
    """A recording rule (spec 4.9): one per application and ``obs_addr.location``."""

    __tablename__ = "record_rules"
    __table_args__ = (UniqueConstraint("app_id", "location", name="uq_rules_app_location"),)

    rule_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    app_id: Mapped[str] = mapped_column(ForeignKey("apps.app_id", ondelete="CASCADE"), index=True)
    location: Mapped[str] = mapped_column(String(64))
    obs_addr: Mapped[dict[str, Any]] = mapped_column(JSON)
    record_formats: Mapped[list[str]] = mapped_column(JSON)
    hls_config: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    mp4_config: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    create_time: Mapped[float] = mapped_column(Double)
    update_time: Mapped[float] = mapped_column(Double)


class Job(Base):
    """A single-stream (``kind='individual'``) or mixed-stream (``kind='mix'``) job (4.4, 4.8)."""

    __tablename__ = "jobs"
    __table_args__ = (
        Index("ix_jobs_app_state", "app_id", "state"),
        # spec 4.4.1 / RTC.00001006: one unfinished single-stream job per room and user (per slot: API jobs,
        # automatic camera jobs and automatic screen jobs are counted apart)
        Index(
            "uq_jobs_individual_active",
            "app_id",
            "room_id",
            "user_id",
            "slot",
            unique=True,
            sqlite_where=text("kind = 'individual' AND state != 'STOPPED'"),
            postgresql_where=text("kind = 'individual' AND state != 'STOPPED'"),
        ),
    )

    job_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    app_id: Mapped[str] = mapped_column(ForeignKey("apps.app_id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(16))
    room_id: Mapped[str] = mapped_column(String(256))
    user_id: Mapped[str | None] = mapped_column(String(256), nullable=True)
    #: ``api`` (started through the API), ``auto_m`` / ``auto_a`` (automatic camera / screen recording).
    slot: Mapped[str] = mapped_column(String(16), default="api", server_default="api")
    stream_name: Mapped[str] = mapped_column(Text)
    params: Mapped[dict[str, Any]] = mapped_column(JSON)
    record_rule_id: Mapped[str | None] = mapped_column(String(32), nullable=True, index=True)
    state: Mapped[str] = mapped_column(String(16))
    stop_reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    description: Mapped[str | None] = mapped_column(Text, nullable=True)
    create_time: Mapped[float] = mapped_column(Double)
    update_time: Mapped[float] = mapped_column(Double)
    start_time: Mapped[float | None] = mapped_column(Double, nullable=True)
    stop_time: Mapped[float | None] = mapped_column(Double, nullable=True)
    idle_deadline: Mapped[float | None] = mapped_column(Double, nullable=True, index=True)


class Upload(Base):
    """A finished recording file in the local spool, on its way to storage (``storage.uploader``).

    ``state``: ``pending`` until storage has confirmed the object (size and MD5/ETag), then ``stored``;
    ``lost`` when the spool file vanished and storage does not hold it either. Each node uploads only
    its own spool (``node_id``).
    """

    __tablename__ = "uploads"
    __table_args__ = (Index("ix_uploads_due", "node_id", "state", "next_attempt_at"),)

    upload_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    node_id: Mapped[str] = mapped_column(String(128))
    job_id: Mapped[str | None] = mapped_column(String(32), nullable=True, index=True)
    #: Files that make one recording file (an HLS playlist and its segments) share a group.
    group_key: Mapped[str | None] = mapped_column(String(128), nullable=True, index=True)
    location: Mapped[str] = mapped_column(String(64))
    bucket: Mapped[str] = mapped_column(String(64))
    object_name: Mapped[str] = mapped_column(Text)
    content_type: Mapped[str] = mapped_column(String(128))
    spool_path: Mapped[str] = mapped_column(Text)
    size: Mapped[int] = mapped_column(BigInteger)
    md5: Mapped[str] = mapped_column(String(32))
    state: Mapped[str] = mapped_column(String(16))
    attempts: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[float] = mapped_column(Double)
    next_attempt_at: Mapped[float] = mapped_column(Double)
    uploaded_at: Mapped[float | None] = mapped_column(Double, nullable=True)
    etag: Mapped[str | None] = mapped_column(String(128), nullable=True)
    last_error: Mapped[str | None] = mapped_column(Text, nullable=True)


class CallbackEvent(Base):
    """The transactional outbox of recording callbacks (spec 4.3, 6.6; ``callbacks.outbox``).

    Delivered in ``sequence`` order per job. ``ready`` is False while the event waits for its file to be
    stored (``hold_group``). ``finished`` once delivered (``delivered_at``) or given up (``gave_up_at``).
    """

    __tablename__ = "callback_outbox"
    __table_args__ = (
        UniqueConstraint("job_id", "sequence", name="uq_callback_outbox_job_sequence"),
        Index("ix_callback_outbox_due", "finished", "ready", "next_attempt_at"),
    )

    event_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    app_id: Mapped[str] = mapped_column(String(32), index=True)
    job_id: Mapped[str] = mapped_column(String(32))
    sequence: Mapped[int] = mapped_column(Integer)
    event_type: Mapped[str] = mapped_column(String(32))
    #: The JSON body, sent byte for byte on every attempt.
    body: Mapped[str] = mapped_column(Text)
    ready: Mapped[bool] = mapped_column(Boolean)
    hold_group: Mapped[str | None] = mapped_column(String(128), nullable=True, index=True)
    finished: Mapped[bool] = mapped_column(Boolean)
    attempts: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[float] = mapped_column(Double)
    first_attempt_at: Mapped[float | None] = mapped_column(Double, nullable=True)
    next_attempt_at: Mapped[float] = mapped_column(Double)
    delivered_at: Mapped[float | None] = mapped_column(Double, nullable=True)
    gave_up_at: Mapped[float | None] = mapped_column(Double, nullable=True)
    last_status: Mapped[int | None] = mapped_column(Integer, nullable=True)
    last_error: Mapped[str | None] = mapped_column(Text, nullable=True)


class CallbackSequence(Base):
    """The last callback ``sequence`` handed out per job (one atomic upsert per event)."""

    __tablename__ = "callback_sequences"

    job_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    last_sequence: Mapped[int] = mapped_column(Integer)


class Room(Base):
    """One run of a room, from its first join to its last leave (spec 5.1 ``RtcServerRoomInfo``).

    A room ID used again after its room closed starts a new run (a new row). At most one run per room
    ID is ``RUNNING``.
    """

    __tablename__ = "rooms"
    __table_args__ = (
        Index("ix_rooms_app_start", "app_id", "start_time"),
        Index("ix_rooms_app_room_start", "app_id", "room_id", "start_time"),
        Index(
            "uq_rooms_running",
            "app_id",
            "room_id",
            unique=True,
            sqlite_where=text("state = 'RUNNING'"),
            postgresql_where=text("state = 'RUNNING'"),
        ),
    )

    room_uid: Mapped[str] = mapped_column(String(32), primary_key=True)
    app_id: Mapped[str] = mapped_column(ForeignKey("apps.app_id", ondelete="CASCADE"))
    room_id: Mapped[str] = mapped_column(String(64))
    #: ``RUNNING`` or ``CLOSED``.
    state: Mapped[str] = mapped_column(String(16))
    start_time: Mapped[float] = mapped_column(Double)
    end_time: Mapped[float | None] = mapped_column(Double, nullable=True)
    #: Whole seconds from start to end, set when the room closes.
    duration: Mapped[int | None] = mapped_column(Integer, nullable=True)
    #: The rule of ``AUTO_INDIVIDUAL_RECORD`` when this run started (spec 4.6: only rooms created after the
    #: setting are recorded automatically); None when automatic recording was off.
    auto_record_rule_id: Mapped[str | None] = mapped_column(String(32), nullable=True)


class RoomSession(Base):
    """One user's attempt to be in a room (spec 5.2 ``RtcUser``): ``ONLINE`` then ``OFFLINE``, or ``FAIL``."""

    __tablename__ = "room_sessions"
    __table_args__ = (
        Index("ix_room_sessions_app_join", "app_id", "join_time"),
        Index("ix_room_sessions_app_room_join", "app_id", "room_id", "join_time"),
        Index("ix_room_sessions_room_state", "room_uid", "state"),
    )

    session_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    app_id: Mapped[str] = mapped_column(ForeignKey("apps.app_id", ondelete="CASCADE"))
    #: The room run joined; None for a refused join while the room was not running.
    room_uid: Mapped[str | None] = mapped_column(ForeignKey("rooms.room_uid", ondelete="CASCADE"), nullable=True)
    room_id: Mapped[str] = mapped_column(String(64))
    user_id: Mapped[str] = mapped_column(String(64))
    nickname: Mapped[str | None] = mapped_column(String(256), nullable=True)
    #: ``ONLINE``, ``OFFLINE`` or ``FAIL``.
    state: Mapped[str] = mapped_column(String(16))
    #: Why the join was refused (``FAIL``): the error code and message the client got.
    fail_reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    #: Why the user went (``OFFLINE``): left, disconnected, removed, replaced, dismissed, media_restart, shutdown.
    leave_reason: Mapped[str | None] = mapped_column(String(32), nullable=True)
    join_time: Mapped[float] = mapped_column(Double)
    leave_time: Mapped[float | None] = mapped_column(Double, nullable=True)
    client_ip: Mapped[str | None] = mapped_column(String(64), nullable=True)
    platform: Mapped[str | None] = mapped_column(String(128), nullable=True)
    sdk_version: Mapped[str | None] = mapped_column(String(64), nullable=True)
    device_model: Mapped[str | None] = mapped_column(String(128), nullable=True)
    #: Kinds of the streams published during the session (``camera``, ``screen``), in order of first publication.
    published_streams: Mapped[list[str]] = mapped_column(JSON)


class UsageEntry(Base):
    """Recorded and transcoded seconds of one recording file on one UTC day (``domain.usage``).

    One row per file (``job_id``, ``object_name``) and day: a file spanning midnight has a row for each
    day. The unique key makes counting a file idempotent (a replayed completion inserts nothing); totals
    are ``SUM ... GROUP BY day``.
    """

    __tablename__ = "usage_entries"
    __table_args__ = (
        UniqueConstraint("job_id", "object_name", "day", name="uq_usage_entries_file_day"),
        Index("ix_usage_entries_app_day", "app_id", "day"),
    )

    entry_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    app_id: Mapped[str] = mapped_column(ForeignKey("apps.app_id", ondelete="CASCADE"))
    job_id: Mapped[str] = mapped_column(String(32))
    #: The file's object name (MP4 file or HLS playlist) in storage.
    object_name: Mapped[str] = mapped_column(Text)
    #: UTC day, ``YYYY-MM-DD``.
    day: Mapped[str] = mapped_column(String(10))
    recorded_seconds: Mapped[float] = mapped_column(Double)
    #: ``recorded_seconds`` when the file's video was re-encoded, else 0.
    transcoded_seconds: Mapped[float] = mapped_column(Double)
    #: ``MP4`` or ``HLS``.
    record_format: Mapped[str] = mapped_column(String(16))
    #: The file's video size (None for audio-only files): the statistics API splits usage by resolution.
    width: Mapped[int | None] = mapped_column(Integer, nullable=True)
    height: Mapped[int | None] = mapped_column(Integer, nullable=True)
    create_time: Mapped[float] = mapped_column(Double)
