"""Ember's configuration: embedded defaults, overridden by ``EMBER_*`` environment variables and the CLI.

Every field is documented where it is declared.
"""

from __future__ import annotations

import os
import re
import socket
from dataclasses import dataclass, field, fields, replace
from pathlib import Path

from emberrtc.domain.outbound import LOOPBACK_DEFAULT, AllowList


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


def port_range(value: str, name: str) -> tuple[int, int]:
    """``MIN-MAX`` as two port numbers, ``1 <= MIN <= MAX <= 65535``."""
    low, sep, high = value.partition("-")
    try:
        pair = (int(low), int(high))
    except ValueError:
        pair = (0, 0)
    if not sep or not 0 < pair[0] <= pair[1] < 65536:
        raise ValueError(f"{name} must be MIN-MAX with 1 <= MIN <= MAX <= 65535, not {value!r}")
    return pair


def listens_on_loopback_only(host: str) -> bool:
    """Is ``host`` (the address the API listens on) a loopback address or ``localhost``?"""
    import ipaddress

    if host.lower().removesuffix(".") == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def outbound_allow_list(settings: Settings) -> AllowList:
    """The effective allow-list of outbound destinations (``Settings.outbound_allow``, or its default)."""
    if settings.outbound_allow.strip():
        return AllowList.parse(settings.outbound_allow)
    return AllowList.parse(LOOPBACK_DEFAULT if listens_on_loopback_only(settings.host) else "none")


def public_ip_list(value: str) -> list[str]:
    """``EMBER_MEDIA_PUBLIC_IP`` as a list of IP addresses (each checked)."""
    import ipaddress

    ips = []
    for entry in (e.strip() for e in value.split(",")):
        if not entry:
            continue
        try:
            ip = ipaddress.ip_address(entry)
        except ValueError:
            raise ValueError(f"media_public_ip: {entry!r} is not an IP address") from None
        if ip.is_unspecified or ip.is_loopback:
            raise ValueError(f"media_public_ip: {entry!r} cannot be reached from another machine")
        ips.append(str(ip))
    return ips


def public_url_parts(url: str) -> tuple[str, str]:
    """``EMBER_PUBLIC_URL`` checked: an ``http``/``https`` URL with a host and nothing after the path.
    Returns (scheme, host)."""
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"public_url: {url!r} is not an http:// or https:// URL with a host name")
    if parts.query or parts.fragment or parts.username or parts.password:
        raise ValueError(f"public_url: {url!r} must have no credentials, query or fragment")
    try:
        _ = parts.port  # raises for a port that is not a number in 0-65535
    except ValueError:
        raise ValueError(f"public_url: {url!r} has a bad port") from None
    return parts.scheme, parts.hostname


_NODE_ID = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


def _host_node_id() -> str:
    """The host name, cut to what a node ID may hold."""
    name = re.sub(r"[^A-Za-z0-9_.-]", "-", socket.gethostname())[:64]
    return name or "node"


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
    #: PEM certificate chain and private key: with both, the API, the signalling WebSocket, the SDK, the demo
    #: and downloads are served over TLS only (https, wss). ``SIGHUP`` reads them again (``systemctl reload``):
    #: new connections get the new certificate, open ones keep theirs. ``EMBER_TLS_CERT``, ``EMBER_TLS_KEY``.
    tls_cert: str = ""
    tls_key: str = ""
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
    #: Seconds between a node's reads of the revocation epoch (``ember credential revoke``): a revoked AK
    #: may be accepted from the node's cache for at most this long. ``EMBER_REVOCATION_CHECK_INTERVAL``.
    revocation_check_interval: float = 1.0
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
    #: The public address(es) of this machine when it sits behind a 1:1 NAT (a cloud VM whose public IP is
    #: on none of its interfaces): Janus writes it in place of the private address in every candidate it
    #: offers (``nat_1_1_mapping``), keeping the ports. Comma-separated IPs. ``EMBER_MEDIA_PUBLIC_IP``.
    media_public_ip: str = ""
    #: Offer ICE-TCP candidates too (passive TCP, for clients whose network passes no UDP). Janus 1.1 does
    #: ICE-TCP only in ICE-Lite mode, which its documentation advises against behind a 1:1 NAT, so this is
    #: refused together with ``media_public_ip``. ``EMBER_MEDIA_ICE_TCP``.
    media_ice_tcp: bool = False
    #: Most streams (camera or screen, each with its audio) published at once in one room.
    room_max_streams: int = 64
    #: Seconds between the keepalives of Ember's Janus session; below Janus's 60 s ``session_timeout``.
    #: ``EMBER_JANUS_KEEPALIVE``.
    janus_keepalive: float = 25.0

    # --- TURN relay for clients (media/turn_*.py; README "TURN relay") --------------------------------
    #: ``embedded``: ``ember serve`` runs and supervises a coturn relay (Debian package ``coturn``) on a
    #: generated config in ``data_dir/turn``. Empty: no relay of its own (an external one may still be named
    #: by ``turn_urls``). ``EMBER_TURN``.
    turn: str = ""
    #: ICE server URLs handed to clients, comma-separated (``turn:relay.example.com:3478?transport=udp,
    #: turns:relay.example.com:5349?transport=tcp``): an external relay sharing ``turn_secret``. With
    #: ``turn=embedded`` leave it empty: the URLs follow from ``turn_host`` and the ports. ``EMBER_TURN_URLS``.
    turn_urls: str = ""
    #: Secret shared with the relay (coturn ``static-auth-secret``) from which Ember makes time-limited
    #: credentials (TURN REST API scheme). Or a file holding it (``turn_secret_file``). Embedded without
    #: either: ``turn.key`` in ``data_dir``, created on first use. ``EMBER_TURN_SECRET``, ``EMBER_TURN_SECRET_FILE``.
    turn_secret: str = ""
    turn_secret_file: str = ""
    #: Seconds a TURN credential handed at join stays valid (the relay refuses its allocations and
    #: refreshes after that, so it bounds a relayed call's length). ``EMBER_TURN_CREDENTIAL_TTL``.
    turn_credential_ttl: int = 24 * 3600
    #: Name or address clients reach the embedded relay by (in its URLs; for ``turns:`` the name its
    #: certificate is for). Empty: the address of ``media_ip`` when it is one IP address, else the host of
    #: ``public_url``. ``EMBER_TURN_HOST``.
    turn_host: str = ""
    #: Embedded relay: port for TURN over UDP and TCP, and the UDP ports of its relayed addresses
    #: (``MIN-MAX``). ``EMBER_TURN_PORT``, ``EMBER_TURN_RELAY_PORTS``.
    turn_port: int = 3478
    turn_relay_ports: str = "49152-65535"
    #: Embedded relay: port for TURN over TLS (``turns:``, only with a certificate). 0: 443, which the
    #: strictest firewalls pass, unless Ember's own ``port`` is 443 (then 5349, TURN's standard TLS port).
    #: Ember's own port is refused. ``EMBER_TURN_TLS_PORT``.
    turn_tls_port: int = 0
    #: Embedded relay: coturn's log (``data_dir/turn/turnserver.log``) is rotated when it passes this many MiB;
    #: one older file (``turnserver.log.1``) is kept. ``EMBER_TURN_LOG_MAX_MB``.
    turn_log_max_mb: int = 16
    #: Certificate chain and key (PEM) for ``turns:`` on the embedded relay. Empty: ``tls_cert``/``tls_key``
    #: when the server has them, else no TLS transport. ``EMBER_TURN_TLS_CERT``, ``EMBER_TURN_TLS_KEY``.
    turn_tls_cert: str = ""
    turn_tls_key: str = ""
    #: The coturn executable (``apt-get install coturn``). ``EMBER_TURN_BINARY``.
    turn_binary: str = "turnserver"

    # --- object storage (storage/) -------------------------------------------------------------------
    #: Where recordings go, per record-rule ``obs_addr.location``. Without configuration there is one
    #: location, ``local``: a folder per project and bucket under ``data_dir/storage``
    #: (``{project_id}/{bucket}``, ``storage.local_store``), served back by Ember for ``download_url``.
    #: More locations come from a JSON file (``storage_config``, ``EMBER_STORAGE_CONFIG``) and/or inline
    #: JSON (``storage_locations``, ``EMBER_STORAGE_LOCATIONS``; it wins over the file), both shaped
    #: ``{"cn-north-4": {"type": "s3", "endpoint": "https://obs.cn-north-4.myhuaweicloud.com",
    #: "region": "cn-north-4", "access_key": "...", "secret_key": "...", "addressing_style": "virtual"}}``
    #: (the file may also wrap that in ``{"locations": ...}``). ``type`` is ``s3`` or ``local``; see
    #: ``storage.registry.LocationConfig`` for every key. A rule naming any other location fails the job
    #: start with RTC.00001003.
    storage_config: str = ""
    storage_locations: str = ""
    #: Base URL of this server as applications and browsers reach it (``https://rtc.example.com``), for
    #: ``download_url`` of locally stored files. Empty: derived by ``ember serve`` (deploy/public_url.py):
    #: ``http(s)://{host}:{port}`` on a specific address; on a wildcard one (``0.0.0.0``) the TLS
    #: certificate's name, else ``media_public_ip``, else ``ember serve`` refuses to start. ``EMBER_PUBLIC_URL``.
    public_url: str = ""
    #: How long (seconds) a ``download_url`` stays valid: the signed local link, or the S3 presigned URL
    #: (SigV4 allows at most 7 days).
    download_url_ttl: int = 7 * 24 * 3600
    # --- cluster (cluster/; docs/scaling.md) -------------------------------------------------------------
    #: Redis URL (``redis://host:6379/0``). Set, this node is one of a cluster sharing this Redis and the
    #: PostgreSQL at ``database_url`` (required: SQLite is refused): nodes register there with their load,
    #: and each room is placed on one node, where its clients are sent. Empty: one node on its own, as
    #: always. ``EMBER_REDIS_URL``.
    redis_url: str = ""
    #: This node's name in the cluster: letters, digits, ``.``, ``_``, ``-`` (at most 64). Empty: the host
    #: name. Two live nodes cannot share one. ``EMBER_NODE_ID``.
    node_id: str = ""
    #: Names the cluster's keys in Redis (``ember:{cluster_name}:...``), so several clusters can share one
    #: Redis. ``EMBER_CLUSTER_NAME``.
    cluster_name: str = "ember"
    #: Seconds between a node's heartbeats (its load, in Redis), and after which a node not heard from is
    #: dead (its Redis registration expires). ``EMBER_CLUSTER_HEARTBEAT``, ``EMBER_CLUSTER_NODE_TTL``.
    cluster_heartbeat: float = 2.0
    cluster_node_ttl: float = 10.0
    #: Seconds a call to the node hosting a room (remove users, dismiss, job changes made through another
    #: node) may take from sending to answer; past it the call fails (RTC.00002000). ``EMBER_CLUSTER_CALL_TIMEOUT``.
    cluster_call_timeout: float = 1.0

    #: HMAC key signing local download links. Empty: ``download.key`` in ``data_dir``, created on first use.
    #: Give it explicitly (``EMBER_DOWNLOAD_URL_KEY``) when several nodes serve the same files.
    download_url_key: str = ""
    #: First retry delay of a failed upload (seconds); doubles per attempt up to ``upload_retry_max``.
    #: Uploads are retried for as long as it takes: the spool holds the only copy of the file.
    upload_retry_base: float = 2.0
    upload_retry_max: float = 300.0
    #: Uploads run at most this many at a time.
    upload_concurrency: int = 4

    # --- outbound destinations (domain/outbound.py) ----------------------------------------------------
    #: Destinations that record callbacks and RTMP pushes may reach although they are not public
    #: addresses: comma-separated CIDRs or addresses (``10.0.0.0/8``, ``127.0.0.1``) and host names
    #: (``hooks.internal``, ``*.corp.example`` for the names under it); ``none``: nothing. Empty (unset):
    #: loopback (``127.0.0.0/8``, ``::1``) when the server listens on a loopback address only (the
    #: default ``--host 127.0.0.1``, where only this machine can call the API), else nothing. When set,
    #: it is the whole list. Give every node the same list. ``EMBER_OUTBOUND_ALLOW``.
    outbound_allow: str = ""

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

    # --- ember doctor (deploy/doctor.py) ----------------------------------------------------------------
    #: A TLS certificate expiring within this many days is reported. ``EMBER_DOCTOR_CERT_DAYS``.
    doctor_cert_days: int = 14
    #: Free space (MiB) the data folder's file system must keep; less is reported. ``EMBER_DOCTOR_MIN_FREE_MB``.
    doctor_min_free_mb: int = 1024
    #: Largest difference (seconds) between this machine's clock and the database server's. Signatures carry
    #: times (join ``ctime``, ``X-Sdk-Date`` within ``sdk_date_skew``, callbacks), and nodes must agree on
    #: them. ``EMBER_DOCTOR_MAX_CLOCK_SKEW``.
    doctor_max_clock_skew: float = 5.0
    #: Longest Redis round trip (median of a few PINGs, milliseconds) ``ember doctor`` accepts with
    #: ``redis_url``: every join on a cluster asks Redis where its room is. ``EMBER_DOCTOR_MAX_REDIS_MS``.
    doctor_max_redis_ms: float = 50.0

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
        if not 0 < self.revocation_check_interval <= 60:  # also NaN
            raise ValueError(
                f"revocation_check_interval must be in (0, 60] seconds, not {self.revocation_check_interval}"
            )
        if not 0 <= self.refusal_hold <= 60:
            raise ValueError(f"refusal_hold must be 0-60 seconds, not {self.refusal_hold}")
        if self.password_scrypt_n < 2**14 or self.password_scrypt_n & (self.password_scrypt_n - 1):
            raise ValueError(f"password_scrypt_n must be a power of two, at least 2**14: {self.password_scrypt_n}")
        trusted_proxy_list(self.trusted_proxies)  # raises ValueError naming a bad entry
        outbound_allow_list(self)  # raises ValueError naming a bad entry
        if bool(self.tls_cert) != bool(self.tls_key):
            raise ValueError("tls_cert and tls_key go together: give both (EMBER_TLS_CERT, EMBER_TLS_KEY) or neither")
        public_ip_list(self.media_public_ip)  # raises ValueError naming a bad entry
        if self.media_ice_tcp and self.media_public_ip:
            raise ValueError(
                "media_ice_tcp cannot be used with media_public_ip: Janus does ICE-TCP only in ICE-Lite mode, "
                "which does not work behind a 1:1 NAT"
            )
        if self.public_url:
            public_url_parts(self.public_url)  # raises ValueError saying what is wrong

        if not self.node_id:
            object.__setattr__(self, "node_id", _host_node_id())
        if not _NODE_ID.fullmatch(self.node_id):
            raise ValueError(f"node_id must be 1-64 letters, digits, '.', '_' or '-', not {self.node_id!r}")
        if not _NODE_ID.fullmatch(self.cluster_name):
            raise ValueError(f"cluster_name must be 1-64 letters, digits, '.', '_' or '-', not {self.cluster_name!r}")
        if self.redis_url:
            self._check_cluster()
        if not 5 <= self.auto_record_max_idle_time <= 43200:
            # the range of max_idle_time in the API (spec Table 4-26)
            raise ValueError(f"auto_record_max_idle_time must be 5-43200 seconds, not {self.auto_record_max_idle_time}")

        if self.turn not in ("", "embedded"):
            raise ValueError(f"turn must be 'embedded' or empty, not {self.turn!r}")
        if self.turn and self.turn_urls:
            raise ValueError("turn_urls names an external relay: leave it empty with turn=embedded")
        if self.turn_secret and self.turn_secret_file:
            raise ValueError("give turn_secret or turn_secret_file, not both")
        if self.turn_urls and not (self.turn_secret or self.turn_secret_file):
            raise ValueError("an external relay (turn_urls) needs its shared secret: turn_secret or turn_secret_file")
        if not 60 <= self.turn_credential_ttl <= 7 * 24 * 3600:
            raise ValueError(f"turn_credential_ttl must be 60-604800 seconds, not {self.turn_credential_ttl}")
        if not 0 < self.turn_port < 65536:
            raise ValueError(f"turn_port must be a port number, not {self.turn_port}")
        if not 0 <= self.turn_tls_port < 65536:
            raise ValueError(f"turn_tls_port must be a port number (or 0: automatic), not {self.turn_tls_port}")
        if self.turn_log_max_mb < 1:
            raise ValueError(f"turn_log_max_mb must be at least 1, not {self.turn_log_max_mb}")
        if bool(self.turn_tls_cert) != bool(self.turn_tls_key):
            raise ValueError("turn_tls_cert and turn_tls_key go together: give both or neither")
        port_range(self.turn_relay_ports, "turn_relay_ports")

    def _check_cluster(self) -> None:
        """A cluster needs what every node shares (PostgreSQL) and what each must say of itself."""
        if not self.redis_url.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("redis_url must be a redis://, rediss:// or unix:// URL")
        scheme = self.database_url.partition(":")[0].partition("+")[0]
        if scheme not in ("postgresql", "postgres"):
            raise ValueError(
                "cluster mode (EMBER_REDIS_URL) needs EMBER_DATABASE_URL on PostgreSQL: every node shares the "
                "database, and SQLite is one machine's file"
                + ("" if not self.database_url else f" (the database URL's scheme is {scheme!r})")
            )
        if not self.public_url.startswith(("http://", "https://")):
            raise ValueError(
                "cluster mode (EMBER_REDIS_URL) needs EMBER_PUBLIC_URL, this node's http(s):// URL as clients "
                "reach it: clients of a room this node hosts are sent there"
            )
        if not 0 < self.cluster_call_timeout <= 30:
            raise ValueError(f"cluster_call_timeout ({self.cluster_call_timeout}) must be above 0 and at most 30 s")
        if not 0 < self.cluster_heartbeat < self.cluster_node_ttl:
            raise ValueError(
                f"cluster_heartbeat ({self.cluster_heartbeat}) must be positive and below cluster_node_ttl "
                f"({self.cluster_node_ttl})"
            )

    @property
    def cluster_mode(self) -> bool:
        """Is this node part of a cluster (``redis_url`` set)?"""
        return bool(self.redis_url)

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
