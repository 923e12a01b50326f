"""The one place that chooses implementations from configuration and wires the services together."""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from emberrtc.api.ratelimit import RateLimiter
from emberrtc.cluster.control import ClusterControl
from emberrtc.cluster.failover import NodeFailover
from emberrtc.cluster.node import ClusterNode, connect
from emberrtc.config import Settings, listens_on_loopback_only, outbound_allow_list, port_range, public_ip_list
from emberrtc.domain.app import AppService
from emberrtc.domain.clock import Clock, SystemClock
from emberrtc.domain.job import JobService, JobSupervisor
from emberrtc.domain.outbound import OutboundPolicy
from emberrtc.domain.ports import MediaPlane, MixPreviews, NoMediaPlane, RecordingEngine, UnavailableRecordingEngine
from emberrtc.domain.record_rule import RecordRuleService
from emberrtc.domain.room import RoomService
from emberrtc.domain.room_session import RoomSessionService
from emberrtc.domain.secrets import SecretBox
from emberrtc.domain.tenant import TenantService
from emberrtc.domain.usage import UsageService
from emberrtc.media.ice_interfaces import usable_addresses
from emberrtc.media.plane import JanusMediaPlane
from emberrtc.media.recording_source import PlaneMediaSource
from emberrtc.media.turn_config import TurnConfig
from emberrtc.media.turn_credentials import IceServers, load_turn_secret, parse_turn_urls
from emberrtc.media.turn_process import TurnProcess
from emberrtc.recording.mix_preview import LocalPreviews
from emberrtc.recording.outputs import RecordingOutputs
from emberrtc.recording.supervisor import RecordingSupervisor
from emberrtc.stats.collector import StatsCollector
from emberrtc.stats.janus import JanusStatsPoller
from emberrtc.stats.queries import StatsQueries
from emberrtc.stats.region import RegionLocator
from emberrtc.stats.rollup import StatsRollup
from emberrtc.stats.writer import StatsWriter
from emberrtc.storage.registry import StorageRegistry
from emberrtc.store.database import Database, default_url

log = logging.getLogger(__name__)


@dataclass
class Services:
    settings: Settings
    clock: Clock
    db: Database
    tenants: TenantService
    apps: AppService
    rules: RecordRuleService
    jobs: JobService
    rooms: RoomService
    rate_limiter: RateLimiter
    #: Failed IAM sign-ins per user and client address (``settings.signin_limits``), always on.
    signin_limiter: RateLimiter
    supervisor: JobSupervisor
    room_sessions: RoomSessionService
    #: Object storage by ``obs_addr.location``; recording outputs (spool uploads, callback outbox delivery).
    storage: StorageRegistry
    outputs: RecordingOutputs
    #: Recorded and transcoded seconds per app and day (counted by ``outputs`` as files complete).
    usage: UsageService
    #: Statistics: what signalling reports (buffered, written in batches) and the roll-ups with pruning.
    stats_collector: StatsCollector
    stats_rollup: StatsRollup
    #: The statistics API's reads (spec section 5).
    stats_queries: StatsQueries
    background: list[object] = field(default_factory=list)
    #: The media plane (Janus) when ``settings.media_enabled``; None: no room can run.
    plane: JanusMediaPlane | None = None
    #: The recording engine fed by the media plane (None without a media plane: jobs cannot record).
    recorder: RecordingSupervisor | None = None
    media_source: PlaneMediaSource | None = None
    #: Mixed jobs' live previews: this node's (``recorder``), and in a cluster any node's.
    previews: MixPreviews = field(default_factory=lambda: LocalPreviews(None))
    #: The SFU's statistics of every leg (polled from Janus's admin API) when there is a media plane.
    stats_janus: JanusStatsPoller | None = None
    #: Where record callbacks and RTMP pushes may go (``EMBER_OUTBOUND_ALLOW``), checked when a URL is saved
    #: and at every delivery.
    outbound: OutboundPolicy = field(default_factory=OutboundPolicy)
    #: This node as a member of a cluster (``settings.redis_url``); None on a single node.
    cluster: ClusterNode | None = None
    #: In a cluster: this node's watch over the others (a dead node's rooms closed, its jobs released).
    failover: NodeFailover | None = None
    #: What this cluster node does for the others: calls for its rooms, app changes (None on a single node).
    cluster_control: ClusterControl | None = None
    #: The TURN relay clients are handed at join (none: ``IceServers(())``), set by :meth:`start`.
    ice_servers: IceServers = field(default_factory=lambda: IceServers(()))
    #: The embedded relay (``EMBER_TURN=embedded``) supervised with the server.
    turn_relay: TurnProcess | None = None

    async def start(self) -> None:
        """Begin background work (the job supervisor, Janus, the TURN relay); the schema is already migrated."""
        # Here, not in build(): the CLI's other commands build services too, and need no relay.
        self.ice_servers, self.turn_relay = turn_from_settings(self.settings)
        if self.cluster_control is not None:
            # Before the node can host a room: calls for its rooms, app changes from the others.
            await self.cluster_control.start()
        if self.cluster is not None:
            # First: a second process with a live node's ID is refused before it closes that node's rooms.
            await self.cluster.start()
        # Rooms live in this process: whatever a previous run left open ended with it (in a cluster, the
        # runs of this node only).
        await self.room_sessions.recover()
        # Recordings of the previous run: its workers' last files are stored and reported, then its
        # unfinished jobs wait for their media to resume.
        if self.recorder is not None:
            await self.recorder.recover()
        await self.jobs.recover()
        if self.plane is not None:
            await self.plane.start()
        if self.turn_relay is not None:
            await self.turn_relay.start()
        if self.ice_servers.urls:
            kind = "embedded" if self.turn_relay is not None else "external"
            log.info("TURN relay (%s) handed to clients: %s", kind, ", ".join(self.ice_servers.urls))
        self.supervisor.start()
        if self.failover is not None:
            self.failover.start()
        self.outputs.start()
        self.stats_collector.writer.start()
        self.stats_rollup.start()
        if self.stats_janus is not None:
            self.stats_janus.start()

    async def close(self) -> None:
        if self.failover is not None:
            await self.failover.stop()
        if self.cluster is not None:
            # Out of the cluster first: no room is placed here any more.
            if self.cluster_control is not None:
                await self.cluster_control.close()
            await self.cluster.close()
        # No new job starts; running ones finish their files (reported to the outputs) and stay resumable.
        await self.supervisor.stop()
        await self.jobs.close()
        if self.recorder is not None:
            await self.recorder.close()
        if self.media_source is not None:
            await self.media_source.close()
        await self.outputs.stop()
        if self.stats_janus is not None:
            await self.stats_janus.stop()
        await self.stats_rollup.stop()
        await self.stats_collector.writer.stop()
        if self.turn_relay is not None:
            await self.turn_relay.stop()
        if self.plane is not None:
            await self.plane.stop()
        await self.db.close()


def _public_host(settings: Settings) -> str:
    """The host name clients reach this server by (``public_url``'s, else the listening address)."""
    return urlsplit(settings.public_url).hostname or settings.host if settings.public_url else settings.host


def turn_from_settings(settings: Settings) -> tuple[IceServers, TurnProcess | None]:
    """The ICE servers handed to clients and, with ``EMBER_TURN=embedded``, the relay to run.

    Raises ``ValueError`` saying what to set when the configuration cannot work."""
    if settings.turn_urls:
        secret = load_turn_secret(settings.turn_secret, settings.turn_secret_file, None)
        return IceServers(parse_turn_urls(settings.turn_urls), secret, settings.turn_credential_ttl), None
    if settings.turn != "embedded":
        return IceServers(()), None
    single = _single_ip(settings.media_ip)
    # The relay sends only to Janus: the addresses it gathers candidates on, and the public ones its
    # candidates are mapped to behind 1:1 NAT (EMBER_MEDIA_PUBLIC_IP).
    peers = [c.ip.split("%")[0] for c in usable_addresses(settings.media_ip)]
    peers += public_ip_list(settings.media_public_ip)
    if not peers:
        raise ValueError("EMBER_TURN=embedded: Janus has no media address the relay could send to; set EMBER_MEDIA_IP")
    host = settings.turn_host or single or (_public_host(settings) if settings.public_url else "")
    if not host or host in ("0.0.0.0", "::") or _is_loopback(host):
        raise ValueError(
            "EMBER_TURN=embedded: say how clients reach the relay: set EMBER_TURN_HOST to this server's "
            "public name or address (or EMBER_MEDIA_IP to one address)"
        )
    # The server's own certificate (EMBER_TLS_CERT/KEY) serves turns: too unless the relay has its own.
    cert = settings.turn_tls_cert or settings.tls_cert
    key = settings.turn_tls_key or settings.tls_key
    config = TurnConfig(
        secret=load_turn_secret(settings.turn_secret, settings.turn_secret_file, settings.data_dir),
        allowed_peers=tuple(dict.fromkeys(peers)),
        port=settings.turn_port,
        tls_port=turn_tls_port(settings) if cert else TURNS_PORT,
        relay_ports=port_range(settings.turn_relay_ports, "turn_relay_ports"),
        relay_ip=single,
        tls_cert=Path(cert).absolute() if cert else None,
        tls_key=Path(key).absolute() if key else None,
    )
    relay = TurnProcess(
        config, settings.data_dir / "turn", binary=settings.turn_binary, log_max_bytes=settings.turn_log_max_mb * 2**20
    )
    return IceServers(config.urls(host), config.secret, settings.turn_credential_ttl), relay


#: TURN over TLS's registered port (RFC 7065), for when 443 is Ember's own.
TURNS_PORT = 5349


def turn_tls_port(settings: Settings) -> int:
    """The embedded relay's ``turns:`` port: ``EMBER_TURN_TLS_PORT``, else 443 (what the strictest firewalls
    pass), else 5349 when 443 is Ember's own HTTPS port. ``ValueError`` when it collides with another listener."""
    port = settings.turn_tls_port or (TURNS_PORT if settings.port == 443 else 443)
    # coturn listens on every address, so any address Ember's API is on collides with it.
    if port == settings.port:
        raise ValueError(
            f"EMBER_TURN_TLS_PORT={port} is also Ember's own port (EMBER_PORT): the relay's TLS and the API cannot "
            f"both listen on it; unset EMBER_TURN_TLS_PORT (the relay then takes {TURNS_PORT}) or give the API "
            "another port"
        )
    if port == settings.turn_port:
        raise ValueError(f"EMBER_TURN_TLS_PORT={port} is also EMBER_TURN_PORT: give TURN over TLS its own port")
    if settings.media_ice_tcp and settings.media_ports:
        low, high = port_range(settings.media_ports, "media_ports")
        if low <= port <= high:
            raise ValueError(
                f"EMBER_TURN_TLS_PORT={port} is in EMBER_MEDIA_PORTS ({settings.media_ports}), where Janus listens "
                "for ICE-TCP: give the relay's TLS a port outside the range"
            )
    return port


def _single_ip(media_ip: str) -> str | None:
    try:
        return str(ipaddress.ip_address(media_ip.strip()))
    except ValueError:
        return None


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def _log_outbound(settings: Settings, outbound: OutboundPolicy) -> None:
    """Say at start-up where callbacks and RTMP pushes may go besides public addresses."""
    if settings.outbound_allow.strip():
        log.info("outbound: callbacks and RTMP pushes may also reach %s (EMBER_OUTBOUND_ALLOW)", outbound.allow)
    elif listens_on_loopback_only(settings.host):
        log.info(
            "outbound: the API listens on loopback only (%s), so callbacks and RTMP pushes may also reach "
            "loopback addresses (%s); set EMBER_OUTBOUND_ALLOW to choose (e.g. 'none')",
            settings.host,
            outbound.allow,
        )
    else:
        log.info(
            "outbound: callbacks and RTMP pushes reach public addresses only; EMBER_OUTBOUND_ALLOW names exceptions"
        )


def database_url(settings: Settings) -> str:
    return settings.database_url or default_url(settings.data_dir)


def private_folder(folder: Path) -> None:
    """Create the data folder owner-only (0700), or make an existing one so: it holds the database, its
    WAL, the keys, recordings and Janus's log. (``ember`` also runs with umask 077, so what is created in
    it is 0600/0700 too.)"""
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    if folder.stat().st_uid == os.getuid() and folder.stat().st_mode & 0o077:
        folder.chmod(0o700)


async def build(
    settings: Settings,
    *,
    clock: Clock | None = None,
    media: MediaPlane | None = None,
    recorder: RecordingEngine | None = None,
) -> Services:
    """Create the data folder, migrate the database and assemble every service."""
    clock = clock or SystemClock()
    private_folder(settings.data_dir)
    db = Database(database_url(settings))
    await db.migrate()
    box = SecretBox.from_settings(settings.master_key, settings.data_dir)
    outbound = OutboundPolicy(outbound_allow_list(settings))
    _log_outbound(settings, outbound)
    plane = media if isinstance(media, JanusMediaPlane) else None
    if media is None and settings.media_enabled:
        plane = media = JanusMediaPlane.from_settings(settings)
    media = media or NoMediaPlane()
    storage = StorageRegistry.from_settings(settings, clock)
    # Before anything is stored: local buckets of old, shared by all tenants, moved aside (kept reachable).
    await asyncio.to_thread(storage.migrate_layouts)
    apps = AppService(
        db,
        box,
        clock,
        settings.max_apps_per_tenant,
        cache_ttl=None if db.dialect == "sqlite" else settings.app_cache_ttl,
        outbound=outbound,
    )
    outputs = RecordingOutputs.from_settings(settings, db, box, clock, storage, outbound)
    engine: RecordingSupervisor | None = None
    source: PlaneMediaSource | None = None
    if recorder is None and plane is not None:
        source = PlaneMediaSource(plane)
        recorder = engine = RecordingSupervisor(
            outputs, source, spool_root=outputs.spool.root, outbound_allow=outbound.allow.entries()
        )
        source.attach(engine)
    jobs = JobService(
        db,
        clock,
        media,
        recorder or UnavailableRecordingEngine(),
        storage=outputs,
        auto_max_idle_time=settings.auto_record_max_idle_time,
        outbound=outbound,
        max_unfinished=settings.max_unfinished_jobs_per_app,
        node_id=settings.node_id,
        cluster=settings.cluster_mode,
    )
    if engine is not None:
        engine.attach(jobs)
    if plane is not None:
        # A stream going live wakes the job supervisor for its room: jobs waiting for media start then,
        # without any pass over the jobs that wait.
        plane.feed_listeners.append(lambda feed: jobs.stream_live(*feed.room))
    tenants = TenantService(
        db,
        box,
        clock,
        settings.token_ttl,
        scrypt_n=settings.password_scrypt_n,
        hash_concurrency=settings.password_hash_concurrency,
        revocation_check=settings.revocation_check_interval,
    )
    cluster = control = None
    rooms_media: MediaPlane = media
    previews: MixPreviews = LocalPreviews(engine.preview if engine is not None else None)
    rate_limiter = RateLimiter(settings.rate_limits, clock, settings.rate_limits_enabled)
    signin_limiter = RateLimiter(settings.signin_limits, clock)
    if settings.cluster_mode:
        cluster = ClusterNode(settings, connect(settings), plane.hosted if plane is not None else dict)
        # Room management and job changes act on the room's node; limits and the app cache are shared.
        control = ClusterControl(settings, cluster.redis)
        rooms_media = control.media_plane(media)
        control.route_jobs(jobs)
        previews = control.previews(previews)
        apps.changed = control.cache_changes("apps", apps.forget).changed
        tenants.revoked = control.cache_changes("credentials", lambda ak: tenants.forget()).changed
        rate_limiter = control.rate_limiter(settings.rate_limits, clock, settings.rate_limits_enabled, name="api")
        signin_limiter = control.rate_limiter(settings.signin_limits, clock, name="signin")
    room_sessions = RoomSessionService(db, box, clock, node_id=settings.node_id if cluster else None)
    failover = None
    if cluster is not None:
        failover = NodeFailover(
            cluster.redis,
            cluster.keys,
            settings.node_id,
            rooms=room_sessions,
            jobs=jobs,
            interval=settings.cluster_heartbeat,
            node_ttl=settings.cluster_node_ttl,
        )
    locator = RegionLocator(Path(settings.ip_database) if settings.ip_database else None)
    collector = StatsCollector(StatsWriter(db), clock, locator)
    return Services(
        settings=settings,
        clock=clock,
        db=db,
        tenants=tenants,
        apps=apps,
        rules=RecordRuleService(db, clock, apps),
        jobs=jobs,
        rooms=RoomService(apps, rooms_media, jobs),
        rate_limiter=rate_limiter,
        signin_limiter=signin_limiter,
        supervisor=JobSupervisor(jobs, settings.job_tick),
        room_sessions=room_sessions,
        storage=storage,
        outputs=outputs,
        usage=UsageService(db),
        stats_collector=collector,
        stats_rollup=StatsRollup.from_settings(settings, db, clock),
        stats_queries=StatsQueries(db, clock, _public_host(settings)),
        plane=plane,
        outbound=outbound,
        recorder=engine,
        media_source=source,
        previews=previews,
        cluster=cluster,
        failover=failover,
        cluster_control=control,
        stats_janus=None
        if plane is None
        else JanusStatsPoller(
            plane, collector.writer, clock, collector.sdk_type_of_session, settings.stats_janus_interval
        ),
    )
