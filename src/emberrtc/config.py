"""Ember's configuration: embedded defaults, overridden by ``EMBER_*`` environment variables and the CLI.

Every field is documented where it is declared.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields, replace
from pathlib import Path


def absolute_path(path: str | os.PathLike[str]) -> Path:
    """``path`` with ``~`` expanded, made absolute against the current folder and normalised (``..``)."""
    return Path(os.path.abspath(os.path.expanduser(os.fspath(path))))


def trusted_proxy_list(value: str) -> list[str]:
    """``EMBER_TRUSTED_PROXIES`` as a list of addresses and networks (``*`` alone: any)."""
    import ipaddress

    entries = [e.strip() for e in value.split(",") if e.strip()]
    if entries == ["*"]:
        return entries
    for entry in entries:
        try:
            ipaddress.ip_network(entry, strict=False)
        except ValueError:
            raise ValueError(f"trusted_proxies: {entry!r} is not an IP address or CIDR") from None
    return entries


@dataclass(frozen=True)
class RateLimit:
    """``count`` requests per ``period`` seconds, per tenant and API category (spec Table 1-2)."""

    count: int
    period: float


def _default_rate_limits() -> dict[str, RateLimit]:
    # spec Table 1-2: management APIs 60/min, job APIs 10/s, rooms 60/min, statistics 30/min
    per_min = RateLimit(60, 60.0)
    return {
        "apps": per_min,
        "record_rules": per_min,
        "auto_record": per_min,
        "record_callback": per_min,
        "mix_jobs": RateLimit(10, 1.0),
        "individual_jobs": RateLimit(10, 1.0),
        "rooms": per_min,
        "stats": RateLimit(30, 60.0),
        # Ember's own: refused signalling joins per app and client address (each is checked and recorded; a client
        # past this is refused at once, unrecorded, until its bucket refills).
        "refused_joins": RateLimit(20, 60.0),
    }


def _default_signin_limits() -> dict[str, RateLimit]:
    # A guesser at one address gets 10 tries, then one per 30 s; an address 30 over all users, then one
    # per 2 s; a user 50 over all addresses, then one per 12 s. A third party can hold a user's sign-in
    # shut only while it keeps failing at that rate, and it is open again 12 s after it stops.
    return {
        "user_address": RateLimit(10, 300.0),
        "address": RateLimit(30, 60.0),
        "user": RateLimit(50, 600.0),
    }


@dataclass(frozen=True)
class Settings:
    #: Folder for the database, the master key, the spool and local recordings.
    data_dir: Path = Path("./data")
    #: SQLAlchemy URL; empty means SQLite ``ember.db`` in ``data_dir``. ``EMBER_DATABASE_URL``.
    database_url: str = ""
    #: Address and port the HTTP API listens on.
    host: str = "127.0.0.1"
    port: int = 8080
    # --- the HTTP edge (api/edge.py): limits checked before a caller is known ----------------------------
    #: Largest request body in bytes, refused with 413 from ``Content-Length`` or as it streams in.
    #: ``EMBER_MAX_BODY_BYTES``.
    max_body_bytes: int = 1024 * 1024
    #: Largest request line plus headers in bytes, and most header fields, refused with 431.
    #: ``EMBER_MAX_HEADER_BYTES``, ``EMBER_MAX_HEADERS``.
    max_header_bytes: int = 64 * 1024
    max_headers: int = 100
    #: Seconds a client has to send a request's headers (from its first byte, or from connecting), and its
    #: whole body (from the end of the headers); past them the request gets 408 and the connection closes.
    #: ``EMBER_HEADER_TIMEOUT``, ``EMBER_BODY_TIMEOUT``.
    header_timeout: float = 10.0
    body_timeout: float = 30.0
    #: Seconds a connection refused at the edge (413, 431, 408) is held open, answered and with reading paused,
    #: before it is closed: a client reconnecting as soon as it is refused gets one refusal per connection per
    #: hold, at no cost meanwhile. 0 closes at once. ``EMBER_REFUSAL_HOLD``.
    refusal_hold: float = 1.0
    #: Most open HTTP connections, and most requests in progress, at once; past it a request gets 503.
    #: ``EMBER_MAX_CONCURRENCY``.
    max_concurrency: int = 1000
    #: Proxies whose ``X-Forwarded-For`` / ``X-Forwarded-Proto`` are believed: comma-separated addresses or
    #: CIDRs (``10.0.0.5,192.168.1.0/24``), ``*`` for any. Empty: none; the client address is the peer's.
    #: ``EMBER_TRUSTED_PROXIES``.
    trusted_proxies: str = ""
    #: Failed IAM sign-ins (``POST /v3/auth/tokens``) allowed per user name from one client address, per
    #: client address over all users, and per user name from all addresses; each a burst of ``count`` that
    #: refills at ``count/period`` per second. Past one: 429 with ``Retry-After``, the password not checked.
    signin_limits: dict[str, RateLimit] = field(default_factory=_default_signin_limits)
    #: scrypt cost (N) of stored passwords (OWASP: 2**17 with r=8, p=1, 128 MiB per hash). A stored hash of
    #: a lower cost is replaced at the user's next sign-in. ``EMBER_PASSWORD_SCRYPT_N``.
    password_scrypt_n: int = 2**17
    #: Passwords hashed at once (each holds 128 MiB at the default cost); others wait their turn.
    password_hash_concurrency: int = 2

    #: Applications one tenant may have (spec 6.2 RTC.00001017: 20 by default). ``EMBER_MAX_APPS``.
    max_apps_per_tenant: int = 20
    #: Lifetime of an IAM token in seconds (spec 3.2: 24 hours).
    token_ttl: int = 24 * 3600
    #: Largest allowed difference between ``X-Sdk-Date`` and the server's clock, in seconds.
    sdk_date_skew: int = 15 * 60
    #: Rate limiting per tenant and category; ``EMBER_RATE_LIMITS=off`` turns it off.
    rate_limits_enabled: bool = True
    rate_limits: dict[str, RateLimit] = field(default_factory=_default_rate_limits)
    #: With several nodes on one PostgreSQL: how long (seconds) a node may serve an app it read from its
    #: cache. With SQLite (one process) the cache never goes stale and this is not used.
    app_cache_ttl: float = 2.0
    #: How often (seconds) the job supervisor asks the database for what is due: jobs whose ``max_idle_time``
    #: ran out, jobs another node created for a room whose media is here, jobs another node stopped that
    #: record here. Each pass is a few indexed queries, whatever the number of jobs waiting.
    job_tick: float = 1.0
    #: Unfinished (``INIT`` or ``RUNNING``) recording jobs one app may have, single-stream and mixed together;
    #: starting one more through the API answers RTC.00001007 (JobExceed). Automatic recordings (spec 4.6)
    #: count too but are never refused: each records a publisher who is there. ``EMBER_MAX_UNFINISHED_JOBS_PER_APP``.
    max_unfinished_jobs_per_app: int = 100
    #: ``max_idle_time`` of automatic recording jobs (spec 4.6): seconds a publisher may be gone (left,
    #: reconnecting) before its job stops; a return within it continues the same job. 5-43200.
    auto_record_max_idle_time: int = 30
    #: Master key for secrets at rest (Fernet, urlsafe base64). Empty: ``master.key`` in ``data_dir``,
    #: created on first use. Give it explicitly (``EMBER_MASTER_KEY``) when several nodes share PostgreSQL.
    master_key: str = ""

    #: A MaxMind-format IP database (``.mmdb``, GeoIP2/GeoLite2 City layout) mapping client addresses to
    #: provinces for the statistics API (spec 6.5; ``stats.region``). Empty: every client counts as ``OT``.
    #: ``EMBER_IP_DATABASE``.
    ip_database: str = ""

    # --- statistics (stats/; definitions in docs/statistics.md) ------------------------------------------
    #: How often (seconds) the per-minute roll-up runs (it rewrites the last few minutes each time, so the
    #: real-time APIs lag by at most this much). Daily roll-ups and pruning run in the same loop.
    stats_rollup_interval: float = 15.0
    #: Days kept of raw QoS samples (spec 5.10: the QoS-details API reads the last 5 days).
    stats_sample_retention_days: int = 5
    #: Days kept of per-minute roll-ups (the real-time APIs span at most 1 day).
    stats_minute_retention_days: int = 2
    #: Days kept of daily roll-ups and per-session join facts (history: 31 days, users: 90 days).
    stats_day_retention_days: int = 400
    #: Days kept of abnormal events (spec 5.11).
    stats_event_retention_days: int = 31
    #: How often (seconds) each node asks its Janus for the statistics of every leg (admin ``handle_info``).
    stats_janus_interval: float = 5.0
    #: Serve Prometheus metrics at ``/metrics`` (unauthenticated, like any scrape target). ``EMBER_METRICS_ENABLED``.
    metrics_enabled: bool = True

    # --- media plane (media/) --------------------------------------------------------------------------
    #: Run the media plane (a supervised Janus) with the server. Off: no room ever runs (signalling refuses
    #: joins); for tests and tools that need only the control plane. ``EMBER_MEDIA_ENABLED``.
    media_enabled: bool = True
    #: The Janus executable (Debian package ``janus``, 1.1.x). ``EMBER_JANUS_BINARY``.
    janus_binary: str = "janus"
    #: Interface names or IP addresses (comma-separated) Janus gathers ICE candidates on. Empty: every
    #: interface (Janus never uses loopback). One IP also becomes the address in Janus's SDP. ``EMBER_MEDIA_IP``.
    media_ip: str = ""
    #: UDP ports for media, ``MIN-MAX`` (inclusive). Empty: the OS's ephemeral range. ``EMBER_MEDIA_PORTS``.
    media_ports: str = ""
    #: Most streams (camera or screen, each with its audio) published at once in one room.
    room_max_streams: int = 64
    #: Seconds between the keepalives of Ember's Janus session; below Janus's 60 s ``session_timeout``.
    #: ``EMBER_JANUS_KEEPALIVE``.
    janus_keepalive: float = 25.0

    # --- object storage (storage/) -------------------------------------------------------------------
    #: Where recordings go, per record-rule ``obs_addr.location``. Without configuration there is one
    #: location, ``local``: a folder per bucket under ``data_dir/storage``, served back by Ember for
    #: ``download_url``. More locations come from a JSON file (``storage_config``, ``EMBER_STORAGE_CONFIG``)
    #: and/or inline JSON (``storage_locations``, ``EMBER_STORAGE_LOCATIONS``; it wins over the file), both
    #: shaped ``{"cn-north-4": {"type": "s3", "endpoint": "https://obs.cn-north-4.myhuaweicloud.com",
    #: "region": "cn-north-4", "access_key": "...", "secret_key": "...", "addressing_style": "virtual"}}``
    #: (the file may also wrap that in ``{"locations": ...}``). ``type`` is ``s3`` or ``local``; see
    #: ``storage.registry.LocationConfig`` for every key. A rule naming any other location fails the job
    #: start with RTC.00001003.
    storage_config: str = ""
    storage_locations: str = ""
    #: Base URL of this server as the applications reach it, for ``download_url`` of locally stored
    #: files. Empty: ``http://{host}:{port}``.
    public_url: str = ""
    #: How long (seconds) a ``download_url`` stays valid: the signed local link, or the S3 presigned URL
    #: (SigV4 allows at most 7 days).
    download_url_ttl: int = 7 * 24 * 3600
    #: HMAC key signing local download links. Empty: ``download.key`` in ``data_dir``, created on first use.
    #: Give it explicitly (``EMBER_DOWNLOAD_URL_KEY``) when several nodes serve the same files.
    download_url_key: str = ""
    #: First retry delay of a failed upload (seconds); doubles per attempt up to ``upload_retry_max``.
    #: Uploads are retried for as long as it takes: the spool holds the only copy of the file.
    upload_retry_base: float = 2.0
    upload_retry_max: float = 300.0
    #: Uploads run at most this many at a time.
    upload_concurrency: int = 4

    # --- recording callbacks (callbacks/) ------------------------------------------------------------
    #: A callback counts as delivered when the application answers 2xx within this many seconds (4.3).
    callback_timeout: float = 10.0
    #: First retry delay of a failed callback (seconds); doubles per attempt, with jitter, up to the cap.
    callback_retry_base: float = 5.0
    callback_retry_max: float = 600.0
    #: How long (seconds) a callback is retried, counted from its first attempt, before it is given up
    #: (and recorded as given up). At least 24 hours.
    callback_retry_window: float = 24 * 3600
    #: Callbacks POSTed at most this many at a time (each to a different job: a job's are in order).
    callback_concurrency: int = 16

    def __post_init__(self) -> None:
        # Every path Ember derives from the data folder (database, Janus config, spool, storage) must mean
        # the same file whatever the working directory of whoever opens it (Janus runs with its config
        # folder as cwd): the folder is made absolute once, here, with ``~`` expanded.
        object.__setattr__(self, "data_dir", absolute_path(self.data_dir))
        if not 0.1 <= self.janus_keepalive <= 50:
            # Janus drops a session after 60 s without a request (janus_config.JanusConfig.session_timeout).
            raise ValueError(f"janus_keepalive must be 0.1-50 seconds, not {self.janus_keepalive}")
        for name in (
            "max_body_bytes",
            "max_header_bytes",
            "max_headers",
            "max_concurrency",
            "max_unfinished_jobs_per_app",
        ):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, not {getattr(self, name)}")
        if self.header_timeout <= 0 or self.body_timeout <= 0:
            raise ValueError("header_timeout and body_timeout must be positive")
        if not 0 <= self.refusal_hold <= 60:
            raise ValueError(f"refusal_hold must be 0-60 seconds, not {self.refusal_hold}")
        if self.password_scrypt_n < 2**14 or self.password_scrypt_n & (self.password_scrypt_n - 1):
            raise ValueError(f"password_scrypt_n must be a power of two, at least 2**14: {self.password_scrypt_n}")
        trusted_proxy_list(self.trusted_proxies)  # raises ValueError naming a bad entry
        if not 5 <= self.auto_record_max_idle_time <= 43200:
            # the range of max_idle_time in the API (spec Table 4-26)
            raise ValueError(f"auto_record_max_idle_time must be 5-43200 seconds, not {self.auto_record_max_idle_time}")

    def with_env(self, env: dict[str, str] | None = None) -> Settings:
        """Apply ``EMBER_*`` variables (``EMBER_DATA_DIR``, ``EMBER_DATABASE_URL``, ``EMBER_MAX_APPS``, ...)."""
        env = dict(os.environ if env is None else env)
        changes: dict[str, object] = {}
        names = {f.name: f for f in fields(self)}
        mapping = {"EMBER_MAX_APPS": "max_apps_per_tenant"}
        for key, value in env.items():
            if not key.startswith("EMBER_"):
                continue
            name = mapping.get(key, key[len("EMBER_") :].lower())
            if name == "rate_limits":
                changes["rate_limits_enabled"] = value.lower() not in ("off", "0", "false", "no")
                continue
            if name not in names or name in ("rate_limits", "signin_limits"):
                continue
            current = getattr(self, name)
            if isinstance(current, bool):
                changes[name] = value.lower() in ("1", "true", "yes", "on")
            elif isinstance(current, int):
                changes[name] = int(value)
            elif isinstance(current, float):
                changes[name] = float(value)
            elif isinstance(current, Path):
                changes[name] = Path(value)
            else:
                changes[name] = value
        return replace(self, **changes)  # type: ignore[arg-type]
