"""``ember``: run the server, manage tenants and credentials, read recording usage.

    ember serve [--host 127.0.0.1] [--port 8080] [--data-dir DIR]
    ember tenant create NAME (--password PW | --password-file FILE|-) [--project-name NAME] [--json] [--data-dir DIR]
    ember credential create --tenant NAME [--json] [--data-dir DIR]
    ember usage --app-id APP [--from YYYY-MM-DD] [--to YYYY-MM-DD] [--json] [--data-dir DIR]
    ember cluster status [--redis-url URL] [--cluster-name NAME] [--json]
    ember bot --server URL --app-id ID (--app-key KEY | --app-key-file FILE|-) --room ROOM --user USER [...]

The database is SQLite in the data folder unless ``EMBER_DATABASE_URL`` names another (PostgreSQL).
Tenant and credential commands write to the same database, so they work while the server runs.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import logging
import os
import sys
import textwrap
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from emberrtc.config import Settings
from emberrtc.domain.errors import EmberError
from emberrtc.domain.redaction import MaskUrlsFilter


def _settings(args: argparse.Namespace) -> Settings:
    try:
        settings = Settings().with_env()
    except ValueError as exc:  # a bad EMBER_* value: say which, without a traceback
        print(f"ember: bad configuration: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    if getattr(args, "data_dir", None):
        settings = replace(settings, data_dir=Path(args.data_dir))
    if getattr(args, "host", None):
        settings = replace(settings, host=args.host)
    if getattr(args, "port", None):
        settings = replace(settings, port=args.port)
    return settings


def secret_argument(value: str | None, path: str | None, what: str) -> str:
    """A secret given on the command line (visible to other users in ``ps``), or read from a file or, for
    ``-``, standard input: its first line, without the line break."""
    if value is not None:
        return value
    assert path is not None  # argparse requires one of the two
    try:
        text = sys.stdin.readline() if path == "-" else Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        print(f"ember: cannot read the {what} from {path}: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    secret = text.splitlines()[0] if text.strip() else ""
    if not secret:
        print(f"ember: no {what} in {'standard input' if path == '-' else path}", file=sys.stderr)
        raise SystemExit(2)
    return secret


def _emit(args: argparse.Namespace, data: dict[str, Any], text: str) -> None:
    print(json.dumps(data) if args.json else text)


async def _tenant_create(args: argparse.Namespace) -> None:
    from emberrtc.bootstrap import build

    password = secret_argument(args.password, args.password_file, "password")
    services = await build(_settings(args))
    try:
        p = await services.tenants.create_tenant(args.name, password, project_name=args.project_name)
    finally:
        await services.db.close()
    data = {
        "domain_id": p.domain_id,
        "domain_name": p.domain_name,
        "project_id": p.project_id,
        "user_name": p.user_name,
    }
    _emit(args, data, "\n".join(f"{k}: {v}" for k, v in data.items()))


async def _credential_create(args: argparse.Namespace) -> None:
    from emberrtc.bootstrap import build

    services = await build(_settings(args))
    try:
        ak, sk, p = await services.tenants.create_credential(args.tenant)
    finally:
        await services.db.close()
    data = {"ak": ak, "sk": sk, "project_id": p.project_id, "domain_id": p.domain_id}
    _emit(args, data, "\n".join(f"{k}: {v}" for k, v in data.items()) + "\nKeep the SK: it is not shown again.")


async def _cluster_status(args: argparse.Namespace) -> None:
    import time

    from redis.asyncio import Redis

    from emberrtc.cluster.keyspace import Keyspace
    from emberrtc.cluster.presence import live_nodes

    url = args.redis_url or os.environ.get("EMBER_REDIS_URL", "")
    if not url:
        print("ember: no cluster: give --redis-url or set EMBER_REDIS_URL", file=sys.stderr)
        raise SystemExit(2)
    name = args.cluster_name or os.environ.get("EMBER_CLUSTER_NAME") or "ember"
    redis = Redis.from_url(url, decode_responses=True, socket_timeout=5, socket_connect_timeout=5)
    try:
        nodes = await live_nodes(redis, Keyspace(name))
    finally:
        await redis.aclose()
    data = {"cluster_name": name, "nodes": [n.as_json() for n in nodes]}
    now = time.time()
    head = ("node", "public_url", "participants", "rooms", "workers", "cpu%", "seen")
    lines = ["{:<20}  {:<32}  {:>12}  {:>5}  {:>7}  {:>5}  {:>5}".format(*head)]
    lines += [
        f"{n.node_id:<20}  {n.public_url:<32}  {n.load.participants:>12}  {n.load.rooms:>5}  "
        f"{n.load.recording_workers:>7}  {n.load.cpu:>5.1f}  {max(0.0, now - n.heartbeat_at):>4.1f}s"
        for n in nodes
    ]
    lines.append(f"{len(nodes)} live node(s) in cluster {name}")
    _emit(args, data, "\n".join(lines))


async def _usage(args: argparse.Namespace) -> None:
    from emberrtc.bootstrap import build

    services = await build(_settings(args))
    try:
        days = await services.usage.days(None, args.app_id, args.start, args.end)
    finally:
        await services.db.close()
    recorded = sum(d["recorded_seconds"] for d in days)
    transcoded = sum(d["transcoded_seconds"] for d in days)
    data = {
        "app_id": args.app_id,
        "from": args.start,
        "to": args.end,
        "days": days,
        "recorded_seconds": recorded,
        "transcoded_seconds": transcoded,
    }
    lines = [f"{'day':<10}  {'recorded_s':>12}  {'transcoded_s':>12}  {'files':>5}"]
    lines += [
        f"{d['day']:<10}  {d['recorded_seconds']:>12.3f}  {d['transcoded_seconds']:>12.3f}  {d['files']:>5}"
        for d in days
    ]
    lines.append(f"{'total':<10}  {recorded:>12.3f}  {transcoded:>12.3f}  {sum(d['files'] for d in days):>5}")
    if not days:
        lines.append("(no recording in this period)")
    _emit(args, data, "\n".join(lines))


def _clean_exit_server() -> type:
    import uvicorn

    class CleanExitServer(uvicorn.Server):
        """SIGTERM/SIGINT stop the server cleanly, and then the process exits 0: uvicorn would re-raise the
        signal after shutting down, which service managers report as a failure."""

        def handle_exit(self, sig: int, frame: Any) -> None:
            super().handle_exit(sig, frame)
            self._captured_signals.clear()

    return CleanExitServer


async def _serve(args: argparse.Namespace) -> None:
    from emberrtc.api.app import create_app
    from emberrtc.api.edge import server_config
    from emberrtc.bootstrap import build

    settings = _settings(args)
    if settings.media_enabled:
        from emberrtc.media.janus_process import JanusNotInstalledError
        from emberrtc.media.plane import JanusMediaPlane

        try:
            JanusMediaPlane.check_installed(settings.janus_binary)
        except JanusNotInstalledError as exc:
            print(f"ember: {exc}", file=sys.stderr)
            raise SystemExit(2) from None
    if settings.cluster_mode:
        from emberrtc.cluster.node import check_reachable

        await check_reachable(settings)  # before anything is made: a clear refusal (main prints it)
    services = await build(settings)
    if services.cluster is not None:
        try:
            # Before listening: a node ID another live node holds is refused here, with its reason.
            await services.cluster.start()
        except EmberError:
            await services.db.close()
            raise
    _CleanExitServer = _clean_exit_server()
    app = create_app(services)
    # log_config=None: uvicorn's loggers go through the root handler and its URL masking (main()), like
    # every other line, instead of handlers of their own.
    config = server_config(app, settings, log_config=None)
    logging.getLogger(__name__).info("Ember data folder: %s", settings.data_dir)
    _tune_gc()
    await _CleanExitServer(config).serve()


def _tune_gc() -> None:
    """What was built at start (modules, services, the app) lives as long as the server: out of the
    collector's sight (``gc.freeze``). Requests that wait on the database survive young collections, and
    with the default thresholds they trigger full collections over that large heap every few hundred
    requests. A young collection costs what is alive at that moment (the requests in flight), not what
    was allocated, so a ten times larger young generation makes them ten times rarer at about the same
    cost each (docs/decisions.md, bench/api.py)."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 20, 10)


async def _bot(args: argparse.Namespace) -> None:
    from emberrtc.client.bot import BotOptions, run_bot
    from emberrtc.client.synthetic import parse_colour

    try:
        parse_colour(args.color)
    except ValueError as exc:
        print(f"ember bot: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    if not args.report_every >= 0:  # also NaN
        print("ember bot: --report-every must be 0 (no media lines) or a number of seconds", file=sys.stderr)
        raise SystemExit(2)
    for name in ("aioice", "aiortc"):  # their INFO lines are per ICE check and per packet burst
        logging.getLogger(name).setLevel(logging.WARNING)
    options = BotOptions(
        server=args.server,
        app_id=args.app_id,
        app_key=secret_argument(args.app_key, args.app_key_file, "app key"),
        room=args.room,
        user=args.user,
        colour=args.color,
        tone=args.tone,
        screen=args.screen,
        codec=args.codec,
        report_every=args.report_every,
        receive=not args.no_receive,
    )
    status = await run_bot(options)
    if status:
        raise SystemExit(status)


class _Parser(argparse.ArgumentParser):
    """An argument parser whose epilog can come from ``epilog_from``, called only when the help is printed
    (``ember bot``'s exit statuses live in a module that imports aiortc: too slow for every command)."""

    def __init__(self, *args: Any, epilog_from: Callable[[], str] | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.epilog_from = epilog_from

    def format_help(self) -> str:
        if self.epilog_from is not None:
            self.epilog = self.epilog_from()
        return super().format_help()


def _bot_exit_statuses() -> str:
    from emberrtc.client.bot import EXIT_STATUSES

    wrap = textwrap.TextWrapper(width=100, initial_indent="", subsequent_indent=" " * 7)
    return "exit status:\n" + "\n".join(
        wrap.fill(f"  {status:<4} {why}") for status, why in sorted(EXIT_STATUSES.items())
    )


def parser() -> argparse.ArgumentParser:
    top = _Parser(
        prog="ember",
        description="Ember: a self-hosted real-time audio/video server speaking the SparkRTC server API.",
    )
    sub = top.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def data_dir(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--data-dir", help="data folder (database, master key, recordings); default ./data or $EMBER_DATA_DIR"
        )

    serve = sub.add_parser(
        "serve",
        help="run the API server and the media plane (a supervised Janus)",
        description="Run Ember on the embedded defaults: SQLite in the data folder.",
    )
    serve.add_argument("--host", help="address to listen on (default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port to listen on (default 8080)")
    data_dir(serve)
    serve.set_defaults(run=_serve)

    tenant = sub.add_parser("tenant", help="manage tenants (accounts)").add_subparsers(dest="action", required=True)
    tc = tenant.add_parser(
        "create",
        help="create a tenant with one project and one IAM user",
        description="Create a tenant. Its IAM user has the tenant's name and the given password; "
        "use them with POST /v3/auth/tokens.",
    )
    tc.add_argument("name", help="account (domain) name, also the IAM user name")
    secret = tc.add_mutually_exclusive_group(required=True)
    secret.add_argument("--password", help="the IAM user's password (at least 8 characters)")
    secret.add_argument(
        "--password-file",
        metavar="FILE",
        help="read the password from the first line of FILE, or of standard input for '-' (keeps it out of ps)",
    )
    tc.add_argument("--project-name", default="ember", help="name of the tenant's project (default: ember)")
    tc.add_argument("--json", action="store_true", help="print JSON")
    data_dir(tc)
    tc.set_defaults(run=_tenant_create)

    cred = sub.add_parser("credential", help="manage AK/SK credentials").add_subparsers(dest="action", required=True)
    cc = cred.add_parser(
        "create",
        help="create an AK/SK pair for a tenant",
        description="Create an access key (AK) and secret key (SK) for signing requests the "
        "way the official SDK does. The SK is printed once.",
    )
    cc.add_argument("--tenant", required=True, help="tenant (domain) name")
    cc.add_argument("--json", action="store_true", help="print JSON")
    data_dir(cc)
    cc.set_defaults(run=_credential_create)

    usage = sub.add_parser(
        "usage",
        help="recorded and transcoded seconds of an application, per UTC day",
        description="Print an application's recording usage per UTC day: recorded seconds (the media "
        "span of every completed MP4 file or HLS playlist, split at midnight UTC) and transcoded seconds "
        "(the part whose video Ember re-encoded, e.g. VP8 to H.264; H.264 passed through, audio-only "
        "files and Opus-to-AAC audio count 0). Days without recording are left out. Each file is counted "
        "once, when it completes.",
    )
    usage.add_argument("--app-id", required=True, help="application ID")
    usage.add_argument(
        "--from", dest="start", metavar="YYYY-MM-DD", help="first UTC day to show (default: the earliest with usage)"
    )
    usage.add_argument(
        "--to", dest="end", metavar="YYYY-MM-DD", help="last UTC day to show, included (default: the latest)"
    )
    usage.add_argument("--json", action="store_true", help="print JSON")
    data_dir(usage)
    usage.set_defaults(run=_usage)

    cluster = sub.add_parser("cluster", help="a cluster of Ember nodes (EMBER_REDIS_URL)").add_subparsers(
        dest="action", required=True
    )
    cs = cluster.add_parser(
        "status",
        help="list the cluster's live nodes and their load",
        description="List the live nodes of the cluster (those heard from within EMBER_CLUSTER_NODE_TTL, 10 s) "
        "with their load from their last heartbeat: participants and rooms they host, recording workers, CPU.",
    )
    cs.add_argument("--redis-url", help="the cluster's Redis (default: $EMBER_REDIS_URL)")
    cs.add_argument("--cluster-name", help="the cluster's name (default: $EMBER_CLUSTER_NAME or ember)")
    cs.add_argument("--json", action="store_true", help="print JSON")
    cs.set_defaults(run=_cluster_status)

    bot = sub.add_parser(
        "bot",
        help="join a room and publish a synthetic camera (colour, moving marker, tone) until stopped",
        # Filled here: the raw formatter (for the exit statuses below) does not wrap the description.
        description=textwrap.fill(
            "Join a room as USER and publish a synthetic camera: a solid colour with a moving marker and a "
            "tone. Signs its own join with the app key, and receives the others' streams. Every few seconds it "
            "prints what it sends (frames, bitrate, what the server reports receiving) and what it receives. "
            "Runs until Ctrl-C; exits printing why when removed, when the room is dismissed or when the join "
            "is refused (exit statuses below).",
            width=100,
        ),
        epilog_from=_bot_exit_statuses,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    bot.add_argument("--server", required=True, help="Ember's URL, e.g. http://127.0.0.1:8080")
    bot.add_argument("--app-id", required=True, help="application ID")
    key = bot.add_mutually_exclusive_group(required=True)
    key.add_argument("--app-key", help="the app's authentication.app_key (signs the join)")
    key.add_argument(
        "--app-key-file",
        metavar="FILE",
        help="read the app key from the first line of FILE, or of standard input for '-'",
    )
    bot.add_argument("--room", required=True, help="room ID")
    bot.add_argument("--user", required=True, help="user ID")
    bot.add_argument("--color", default="red", help="camera colour: a name (red, green, blue, ...) or #RRGGBB")
    bot.add_argument("--tone", type=float, default=440.0, help="tone frequency in Hz (default 440)")
    bot.add_argument("--screen", action="store_true", help="also publish a screen-share stream")
    bot.add_argument("--codec", choices=("h264", "vp8"), help="video codec (default: the server's choice)")
    bot.add_argument(
        "--report-every",
        type=float,
        default=5.0,
        metavar="SECONDS",
        help="seconds between the lines saying what is sent and received (default 5; 0: none)",
    )
    bot.add_argument(
        "--no-receive", action="store_true", help="do not receive the others' streams (by default, every one)"
    )
    bot.set_defaults(run=_bot)
    return top


def _configure_logging() -> None:
    """INFO to stderr, with every URL's credentials and query masked (``domain/redaction.py``): URLs
    reach the log from Ember's lines and from libraries' messages and tracebacks alike."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for handler in logging.getLogger().handlers:
        handler.addFilter(MaskUrlsFilter())
    logging.getLogger("alembic").setLevel(logging.WARNING)
    # httpx logs every request's URL at INFO (a callback's query token, each Janus admin call): WARNING only.
    for name in ("httpx", "httpcore"):
        logging.getLogger(name).setLevel(logging.WARNING)


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    # Everything Ember creates (database, WAL, keys, recordings, Janus's config and log) is the owner's
    # only; the data folder itself is made 0700 (bootstrap.private_folder).
    os.umask(0o077)
    _configure_logging()
    try:
        asyncio.run(args.run(args))
    except EmberError as exc:
        print(f"ember: {exc.detail or exc.message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
