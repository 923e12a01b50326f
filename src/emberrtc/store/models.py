"""Tables. Times are UNIX seconds (float, UTC) so SQLite and PostgreSQL behave the same.

Secrets never sit here in the clear: passwords and tokens are hashed, SKs, app keys and
callback auth keys are encrypted with the data folder's master key (see ``domain.secrets``).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import JSON, Boolean, Double, ForeignKey, Index, Integer, String, Text, UniqueConstraint, text
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
        # spec 4.4.1 / RTC.00001006: one unfinished single-stream job per room and user
        Index(
            "uq_jobs_individual_active",
            "app_id",
            "room_id",
            "user_id",
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
