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
    #: When ``ember credential revoke`` withdrew it; a revoked AK is refused like an unknown one. The row
    #: stays, so ``ember credential list`` can show it.
    revoked_at: Mapped[float | None] = mapped_column(Double, nullable=True)
    #: Last accepted signature, to the minute (each node writes it at most once a minute per AK).
    last_used_at: Mapped[float | None] = mapped_column(Double, nullable=True)


class Token(Base):
    """An IAM token; only its SHA-256 is kept."""

    __tablename__ = "tokens"

    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    domain_id: Mapped[str] = mapped_column(ForeignKey("tenants.domain_id", ondelete="CASCADE"), index=True)
    expires_at: Mapped[float] = mapped_column(Double, index=True)
    #: When ``ember token revoke`` withdrew it (refused like an unknown token from then on).
    revoked_at: Mapped[float | None] = mapped_column(Double, nullable=True)


class RevocationEpoch(Base):
    """One row: a counter raised in the same transaction as every revocation. Each node compares it with
    the value it last saw, at most once a second, and drops its cached credentials when it has moved
    (``TenantService``): a cheap primary-key read that works across processes without Redis."""

    __tablename__ = "revocation_epoch"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    epoch: Mapped[int] = mapped_column(BigInteger)


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
        # The jobs a node holds (its restart, a live node taking over after it died: ``JobService``).
        Index("ix_jobs_node_state", "node_id", "state"),
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
    #: Every change a node must notice (created, updated, stopped) moves it; indexed for the job supervisor's
    #: "changed since" query (``domain.job.JobService.tick``).
    update_time: Mapped[float] = mapped_column(Double, index=True)
    start_time: Mapped[float | None] = mapped_column(Double, nullable=True)
    stop_time: Mapped[float | None] = mapped_column(Double, nullable=True)
    #: When a job waiting for media stops (``max_idle_time``); NULL while it records and once it stopped.
    idle_deadline: Mapped[float | None] = mapped_column(Double, nullable=True, index=True)
    #: The node (``EMBER_NODE_ID``) whose recording engine runs the job: claimed by a conditional UPDATE
    #: when a node hands the job to its engine, so exactly one node runs it; NULL while nobody does
    #: (waiting in ``INIT``, released by a restart or by a live node after its node died).
    node_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    #: The node that last ran a recorder for the job (kept after its claim is released): a job stopped
    #: while no recorder runs it still gets its ``CLOUD_RECORD_OVER`` when this is set.
    recorded_on: Mapped[str | None] = mapped_column(String(64), nullable=True)


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
    #: Whose bucket (the job's app's project; ``storage.local_store`` keeps projects' buckets apart). None
    #: only for a file registered before buckets were kept per project: it goes to the shared buckets.
    project_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
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
        Index("ix_rooms_node_running", "node_id", "state"),
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
    #: In cluster mode the node (``EMBER_NODE_ID``) whose media plane holds this run; None on a single node.
    node_id: Mapped[str | None] = mapped_column(String(64), nullable=True)


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


# --- statistics (spec section 5; written by ``emberrtc.stats``, read by ``emberrtc.stats.queries``) ---------
#
# Column meanings and metric definitions: docs/statistics.md. Rates and loss are fractions (1 = 100 %),
# times in milliseconds unless the name ends in ``_s`` (seconds), bit rates in kbit/s.


class SessionStats(Base):
    """Join and first-frame facts of one room session (``room_sessions.session_id``), one row per session.

    Kept apart from ``room_sessions`` so the media plane's table stays as it is; written by the statistics
    writer in batches. A refused join has a row too (``ok`` False).
    """

    __tablename__ = "stats_sessions"
    __table_args__ = (Index("ix_stats_sessions_app_join", "app_id", "join_time"),)

    session_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    app_id: Mapped[str] = mapped_column(String(32))
    room_id: Mapped[str] = mapped_column(String(64))
    user_id: Mapped[str] = mapped_column(String(64))
    #: When the join request arrived (UNIX s), as ``room_sessions.join_time``.
    join_time: Mapped[float] = mapped_column(Double)
    #: True when the join succeeded (the client got ``joined``).
    ok: Mapped[bool] = mapped_column(Boolean)
    #: ``webrtc`` (browser SDK) or ``native`` (any other client, the Python client included).
    sdk_type: Mapped[str] = mapped_column(String(16))
    #: Network type the client reported (``wifi``, ``ethernet``, ``cellular``, ...), else ``unknown``.
    access_net: Mapped[str] = mapped_column(String(16))
    #: Province abbreviation of the client's address (spec 6.5), ``OT`` for private or unknown addresses.
    region: Mapped[str] = mapped_column(String(8))
    #: ISP of the client's address from the IP database, '' when unknown.
    isp: Mapped[str] = mapped_column(String(64), default="", server_default="")
    #: Time to join: from the join request to ``joined`` (client-measured when reported, else server-measured).
    join_ms: Mapped[float | None] = mapped_column(Double, nullable=True)
    #: From ``joined`` to the first decoded audio / video frame of any subscription (client-reported).
    first_audio_ms: Mapped[float | None] = mapped_column(Double, nullable=True)
    first_video_ms: Mapped[float | None] = mapped_column(Double, nullable=True)
    #: Error code of a refused join (``RTC.00001001`` ...), else None.
    fail_code: Mapped[str | None] = mapped_column(String(32), nullable=True)


class QosSample(Base):
    """One raw QoS sample (kept 5 days by default): what one user sent (``uplink``, ``peer_id`` ``"0"``) or
    received from one peer (``downlink``, ``peer_id`` the publisher) over ``interval_s`` ending at ``time``.

    Metric columns are named as the spec's ``mid`` values (5.10, Table 5-65): ``a`` audio, ``v`` camera
    video, ``d`` screen ("presentation"). A column is None when the source did not measure it.
    """

    __tablename__ = "stats_qos_samples"
    __table_args__ = (
        Index("ix_stats_qos_app_room_time", "app_id", "room_id", "time"),
        Index("ix_stats_qos_time", "time"),
        # spec 5.10 for one user (the usual question): that user's rows only, not the whole room's
        Index("ix_stats_qos_app_room_user_time", "app_id", "room_id", "user_id", "time"),
    )

    sample_id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    #: When Ember received the sample (UNIX s, "stime"); ``ctime`` is the client's clock (None for Janus).
    time: Mapped[float] = mapped_column(Double)
    ctime: Mapped[float | None] = mapped_column(Double, nullable=True)
    app_id: Mapped[str] = mapped_column(String(32))
    room_id: Mapped[str] = mapped_column(String(64))
    session_id: Mapped[str | None] = mapped_column(String(32), nullable=True)
    user_id: Mapped[str] = mapped_column(String(64))
    #: ``"0"`` for uplink (spec Table 5-69), else the user whose stream was received.
    peer_id: Mapped[str] = mapped_column(String(64))
    #: ``uplink`` or ``downlink``.
    direction: Mapped[str] = mapped_column(String(8))
    #: ``client`` (report over signalling) or ``janus`` (the SFU's view of the same leg).
    source: Mapped[str] = mapped_column(String(8))
    #: ``webrtc`` or ``native`` (see ``stats_sessions.sdk_type``).
    sdk_type: Mapped[str] = mapped_column(String(16))
    #: Seconds the sample covers.
    interval_s: Mapped[float] = mapped_column(Double)
    appcpu: Mapped[float | None] = mapped_column(Double, nullable=True)
    syscpu: Mapped[float | None] = mapped_column(Double, nullable=True)
    abit: Mapped[float | None] = mapped_column(Double, nullable=True)
    vbit: Mapped[float | None] = mapped_column(Double, nullable=True)
    dbit: Mapped[float | None] = mapped_column(Double, nullable=True)
    vfps: Mapped[float | None] = mapped_column(Double, nullable=True)
    dfps: Mapped[float | None] = mapped_column(Double, nullable=True)
    vblock: Mapped[float | None] = mapped_column(Double, nullable=True)
    dblock: Mapped[float | None] = mapped_column(Double, nullable=True)
    #: Audio freeze rate (not a spec ``mid``; the audio counterpart of ``vblock``).
    ablock: Mapped[float | None] = mapped_column(Double, nullable=True)
    aloss: Mapped[float | None] = mapped_column(Double, nullable=True)
    vloss: Mapped[float | None] = mapped_column(Double, nullable=True)
    dloss: Mapped[float | None] = mapped_column(Double, nullable=True)
    vwidth: Mapped[int | None] = mapped_column(Integer, nullable=True)
    vheight: Mapped[int | None] = mapped_column(Integer, nullable=True)
    dwidth: Mapped[int | None] = mapped_column(Integer, nullable=True)
    dheight: Mapped[int | None] = mapped_column(Integer, nullable=True)
    ajitter: Mapped[float | None] = mapped_column(Double, nullable=True)
    artt: Mapped[float | None] = mapped_column(Double, nullable=True)
    vjitter: Mapped[float | None] = mapped_column(Double, nullable=True)
    vrtt: Mapped[float | None] = mapped_column(Double, nullable=True)
    djitter: Mapped[float | None] = mapped_column(Double, nullable=True)
    drtt: Mapped[float | None] = mapped_column(Double, nullable=True)
    #: Packets sent (uplink) or received (downlink) in the interval, audio and video+screen.
    apackets: Mapped[int | None] = mapped_column(Integer, nullable=True)
    vpackets: Mapped[int | None] = mapped_column(Integer, nullable=True)
    #: NACKs received (uplink) or sent (downlink) in the interval.
    nacks: Mapped[int | None] = mapped_column(Integer, nullable=True)
    #: Janus link quality, 0-100 (Janus samples only).
    link_quality: Mapped[float | None] = mapped_column(Double, nullable=True)
    #: Milliseconds of freezes (gaps of 600 ms or more) in the interval, video+screen and audio.
    vfreeze_ms: Mapped[float | None] = mapped_column(Double, nullable=True)
    afreeze_ms: Mapped[float | None] = mapped_column(Double, nullable=True)
    #: Streams the client started publishing / subscribing in the interval, and those whose media started.
    push_attempts: Mapped[int | None] = mapped_column(Integer, nullable=True)
    push_ok: Mapped[int | None] = mapped_column(Integer, nullable=True)
    pull_attempts: Mapped[int | None] = mapped_column(Integer, nullable=True)
    pull_ok: Mapped[int | None] = mapped_column(Integer, nullable=True)


class StatsMinute(Base):
    """Per-minute roll-up per application, room and SDK type (kept 2 days by default): the real-time APIs.

    Counters only (sums and counts), so any set of rows adds up: rates are computed at query time (for
    example ``JoinSuccessRate = sum(join_ok) / sum(join_attempts)``). Written idempotently by the roll-up.
    """

    __tablename__ = "stats_minutes"
    __table_args__ = (
        UniqueConstraint("app_id", "minute", "room_id", "sdk_type", name="uq_stats_minutes_key"),
        Index("ix_stats_minutes_app_room_minute", "app_id", "room_id", "minute"),
    )

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True)
    app_id: Mapped[str] = mapped_column(String(32))
    room_id: Mapped[str] = mapped_column(String(64))
    sdk_type: Mapped[str] = mapped_column(String(16))
    #: Start of the minute (UNIX s, a multiple of 60).
    minute: Mapped[int] = mapped_column(BigInteger)
    #: Sessions in the room at any moment of the minute (successful joins only).
    online_users: Mapped[int] = mapped_column(Integer)
    #: Join attempts that started in the minute; of them, successful; successful within 5 s.
    join_attempts: Mapped[int] = mapped_column(Integer)
    join_ok: Mapped[int] = mapped_column(Integer)
    join_ok_5s: Mapped[int] = mapped_column(Integer)
    #: First audio / video frame times of joins in the minute: sum (ms) and count.
    first_audio_ms_sum: Mapped[float] = mapped_column(Double)
    first_audio_n: Mapped[int] = mapped_column(Integer)
    first_video_ms_sum: Mapped[float] = mapped_column(Double)
    first_video_n: Mapped[int] = mapped_column(Integer)
    #: Downlink (client) seconds receiving video / audio, and seconds of freezes in them.
    video_recv_s: Mapped[float] = mapped_column(Double)
    video_freeze_s: Mapped[float] = mapped_column(Double)
    audio_recv_s: Mapped[float] = mapped_column(Double)
    audio_freeze_s: Mapped[float] = mapped_column(Double)
    #: Transmission samples and excellent ones (docs/statistics.md: loss and RTT thresholds).
    video_up_samples: Mapped[int] = mapped_column(Integer)
    video_up_excellent: Mapped[int] = mapped_column(Integer)
    audio_up_samples: Mapped[int] = mapped_column(Integer)
    audio_up_excellent: Mapped[int] = mapped_column(Integer)
    video_e2e_samples: Mapped[int] = mapped_column(Integer)
    video_e2e_excellent: Mapped[int] = mapped_column(Integer)
    audio_e2e_samples: Mapped[int] = mapped_column(Integer)
    audio_e2e_excellent: Mapped[int] = mapped_column(Integer)
    #: RTT of all samples (uplink and downlink), sum (ms) and count: the mean is the one-way delay estimate.
    video_rtt_sum: Mapped[float] = mapped_column(Double)
    video_rtt_n: Mapped[int] = mapped_column(Integer)
    audio_rtt_sum: Mapped[float] = mapped_column(Double)
    audio_rtt_n: Mapped[int] = mapped_column(Integer)
    #: Streams published / subscribed (attempts) and those whose media started (client-reported).
    push_attempts: Mapped[int] = mapped_column(Integer)
    push_ok: Mapped[int] = mapped_column(Integer)
    pull_attempts: Mapped[int] = mapped_column(Integer)
    pull_ok: Mapped[int] = mapped_column(Integer)
    #: Communication (receive) seconds by tier of the received video, or audio only.
    comm_audio_s: Mapped[float] = mapped_column(Double)
    comm_sd_s: Mapped[float] = mapped_column(Double)
    comm_hd_s: Mapped[float] = mapped_column(Double)
    comm_uhd_s: Mapped[float] = mapped_column(Double)


class StatsDay(Base):
    """Daily roll-up per application (UTC day; kept 400 days by default): history and usage APIs.

    The counters of ``stats_minutes`` summed over the day, plus the day's distinct and peak figures.
    Written for finished days only (today is never in this table).
    """

    __tablename__ = "stats_days"
    __table_args__ = (UniqueConstraint("app_id", "day", name="uq_stats_days_key"),)

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True)
    app_id: Mapped[str] = mapped_column(String(32))
    #: ``YYYY-MM-DD`` (UTC).
    day: Mapped[str] = mapped_column(String(10))
    #: Distinct (room, user) pairs with a successful join; successful joins; room runs with a user that day.
    user_count: Mapped[int] = mapped_column(Integer)
    session_count: Mapped[int] = mapped_column(Integer)
    room_count: Mapped[int] = mapped_column(Integer)
    #: Peak over the day's minutes of online users (all rooms) and of rooms with a user online.
    max_online_users: Mapped[int] = mapped_column(Integer)
    max_online_rooms: Mapped[int] = mapped_column(Integer)
    join_attempts: Mapped[int] = mapped_column(Integer)
    join_ok: Mapped[int] = mapped_column(Integer)
    join_ok_5s: Mapped[int] = mapped_column(Integer)
    first_audio_ms_sum: Mapped[float] = mapped_column(Double)
    first_audio_n: Mapped[int] = mapped_column(Integer)
    first_video_ms_sum: Mapped[float] = mapped_column(Double)
    first_video_n: Mapped[int] = mapped_column(Integer)
    video_recv_s: Mapped[float] = mapped_column(Double)
    video_freeze_s: Mapped[float] = mapped_column(Double)
    audio_recv_s: Mapped[float] = mapped_column(Double)
    audio_freeze_s: Mapped[float] = mapped_column(Double)
    video_up_samples: Mapped[int] = mapped_column(Integer)
    video_up_excellent: Mapped[int] = mapped_column(Integer)
    audio_up_samples: Mapped[int] = mapped_column(Integer)
    audio_up_excellent: Mapped[int] = mapped_column(Integer)
    video_e2e_samples: Mapped[int] = mapped_column(Integer)
    video_e2e_excellent: Mapped[int] = mapped_column(Integer)
    audio_e2e_samples: Mapped[int] = mapped_column(Integer)
    audio_e2e_excellent: Mapped[int] = mapped_column(Integer)
    video_rtt_sum: Mapped[float] = mapped_column(Double)
    video_rtt_n: Mapped[int] = mapped_column(Integer)
    audio_rtt_sum: Mapped[float] = mapped_column(Double)
    audio_rtt_n: Mapped[int] = mapped_column(Integer)
    push_attempts: Mapped[int] = mapped_column(Integer)
    push_ok: Mapped[int] = mapped_column(Integer)
    pull_attempts: Mapped[int] = mapped_column(Integer)
    pull_ok: Mapped[int] = mapped_column(Integer)
    comm_audio_s: Mapped[float] = mapped_column(Double)
    comm_sd_s: Mapped[float] = mapped_column(Double)
    comm_hd_s: Mapped[float] = mapped_column(Double)
    comm_uhd_s: Mapped[float] = mapped_column(Double)


class AbnormalEvent(Base):
    """An abnormal user-experience event (spec 5.11, Table 5-76), kept 31 days by default."""

    __tablename__ = "stats_abnormal_events"
    __table_args__ = (
        Index("ix_stats_abnormal_app_time", "app_id", "time"),
        Index("ix_stats_abnormal_app_room_time", "app_id", "room_id", "time"),
    )

    event_id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    time: Mapped[float] = mapped_column(Double)
    app_id: Mapped[str] = mapped_column(String(32))
    room_id: Mapped[str] = mapped_column(String(64))
    user_id: Mapped[str] = mapped_column(String(64))
    session_id: Mapped[str | None] = mapped_column(String(32), nullable=True)
    #: ``join_room`` or ``communication``.
    stage: Mapped[str] = mapped_column(String(16))
    #: ``local`` or ``remote``; ``peer_uid`` is the remote user ('' when local).
    location: Mapped[str] = mapped_column(String(8))
    peer_uid: Mapped[str] = mapped_column(String(64))
    #: 1 join over 5 s, 2 video freeze, 3 audio freeze (Table 5-76).
    abnormal_type: Mapped[int] = mapped_column(Integer)
    #: The factor code of Table 5-76 (type 1: 1..15 and the 8-digit codes; types 2, 3: 1..21).
    abnormal_factor: Mapped[int] = mapped_column(Integer)


class StatsMark(Base):
    """How far a background roll-up has got (``name``: ``minutes``, ``days``): shared by all nodes."""

    __tablename__ = "stats_marks"

    name: Mapped[str] = mapped_column(String(32), primary_key=True)
    #: UNIX s up to which (exclusive) the roll-up is complete.
    done_until: Mapped[float] = mapped_column(Double)


class ObjectClaim(Base):
    """An object name a recording file holds (``recording.object_names``), so that no other job's file
    is ever stored under it. Claimed when the file starts, before a byte is uploaded; the unique key on
    the name (within its location, namespace and bucket) decides between jobs on every node at once.

    ``namespace``: the project for a location that keeps projects' buckets apart (local), else empty
    (an S3 bucket is one for every project). ``planned_name``: the name the job's templates gave the file;
    ``object_name`` differs when that was taken.
    """

    __tablename__ = "object_claims"
    __table_args__ = (
        UniqueConstraint("location", "namespace", "bucket", "object_name", name="uq_object_claims_name"),
        UniqueConstraint("job_id", "planned_name", name="uq_object_claims_planned"),
    )

    claim_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    location: Mapped[str] = mapped_column(String(64))
    namespace: Mapped[str] = mapped_column(String(64))
    bucket: Mapped[str] = mapped_column(String(64))
    object_name: Mapped[str] = mapped_column(Text)
    job_id: Mapped[str] = mapped_column(String(32))
    planned_name: Mapped[str] = mapped_column(Text)
    created_at: Mapped[float] = mapped_column(Double)
