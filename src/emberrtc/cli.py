"""``ember``: run the server, manage tenants and credentials, read recording usage, deploy and check.

    ember serve [--host 127.0.0.1] [--port 8080] [--data-dir DIR] [--tls-cert FILE --tls-key FILE]
    ember doctor [--env-file FILE] [--host H] [--port P] [--tls-cert FILE --tls-key FILE] [--data-dir DIR]
    ember install-service [--user ember] [--data-dir /var/lib/ember] [--env-file F] [--unit-path F] [--dry-run]
    ember tenant create NAME (--password PW | --password-file FILE|-) [--project-name NAME] [--json] [--data-dir DIR]
    ember credential create --tenant NAME [--json] [--data-dir DIR]
    ember credential list [--tenant NAME] [--json] [--data-dir DIR]
    ember credential revoke AK [--json] [--data-dir DIR]
    ember token revoke (--user NAME [--tenant NAME] | --tenant NAME) [--json] [--data-dir DIR]
    ember usage --app-id APP [--from YYYY-MM-DD] [--to YYYY-MM-DD] [--json] [--data-dir DIR]
    ember cluster status [--redis-url URL] [--cluster-name NAME] [--json]
    ember bot --server URL --app-id ID (--app-key KEY | --app-key-file FILE|-) --room ROOM --user USER [...]

The database is SQLite in the data folder unless ``EMBER_DATABASE_URL`` names another (PostgreSQL).
Tenant, credential and token commands write to the same database, so they work while the server runs
(a revoked AK is refused by every node within ``EMBER_REVOCATION_CHECK_INTERVAL`` seconds, a revoked token
at once).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import logging
import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from emberrtc.config import Settings, absolute_path
from emberrtc.domain.errors import EmberError
from emberrtc.domain.redaction import MaskUrlsFilter


def _settings(args: argparse.Namespace, base: Settings | None = None) -> Settings:
    if base is not None:
        settings = base
    else:
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
    cert, key = getattr(args, "tls_cert", None), getattr(args, "tls_key", None)
    if cert or key:
        try:
            settings = replace(settings, tls_cert=cert or settings.tls_cert, tls_key=key or settings.tls_key)
        except ValueError as exc:
            print(f"ember: bad configuration: {exc}", file=sys.stderr)
            raise SystemExit(2) from None
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


def _iso(t: float | None) -> str | None:
    """A stored UNIX time as ``2026-12-03T09:30:00Z`` (None stays None)."""
    return None if t is None else datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _credential_data(c: Any) -> dict[str, Any]:
    return {
        "ak": c.ak,
        "tenant": c.tenant,
        "user_name": c.user_name,
        "state": c.state,
        "created_at": _iso(c.created_at),
        "last_used_at": _iso(c.last_used_at),
        "revoked_at": _iso(c.revoked_at),
    }


async def _credential_list(args: argparse.Namespace) -> None:
    from emberrtc.bootstrap import build

    services = await build(_settings(args))
    try:
        creds = await services.tenants.list_credentials(args.tenant)
    finally:
        await services.db.close()
    data = [_credential_data(c) for c in creds]
    head = ("ak", "tenant", "user", "state", "created", "last used", "revoked")
    rows = [
        (
            d["ak"],
            d["tenant"],
            d["user_name"],
            d["state"],
            d["created_at"],
            d["last_used_at"] or "never",
            d["revoked_at"] or "-",
        )
        for d in data
    ]
    widths = [max(len(str(r[i])) for r in [head, *rows]) for i in range(len(head))]
    lines = ["  ".join(str(v).ljust(w) for v, w in zip(r, widths, strict=True)).rstrip() for r in [head, *rows]]
    if not rows:
        lines.append("(no credentials)")
    print(json.dumps({"credentials": data}) if args.json else "\n".join(lines))


async def _credential_revoke(args: argparse.Namespace) -> None:
    from emberrtc.bootstrap import build

    services = await build(_settings(args))
    try:
        cred, already = await services.tenants.revoke_credential(args.ak)
    finally:
        await services.db.close()
    data = _credential_data(cred) | {"already_revoked": already}
    text = f"{cred.ak} of tenant {cred.tenant} " + (
        f"was revoked already, at {data['revoked_at']}"
        if already
        else f"revoked at {data['revoked_at']}: every node refuses it within "
        f"{services.settings.revocation_check_interval:g} s"
    )
    _emit(args, data, text)


async def _token_revoke(args: argparse.Namespace) -> None:
    from emberrtc.bootstrap import build

    services = await build(_settings(args))
    try:
        done = await services.tenants.revoke_tokens(user_name=args.user, tenant_name=args.tenant)
    finally:
        await services.db.close()
    data = {"tenants": done.tenants, "revoked": done.revoked}
    whose = f"IAM user {args.user}" if args.user else f"tenant {args.tenant}"
    _emit(args, data, f"{done.revoked} unexpired token(s) of {whose} revoked; signing in again gives a new one")


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
        signal after shutting down, which service managers report as a failure. ``ready`` is called once the
        server serves: its start-up (Janus, the relay) done and its socket listening."""

        ready: Callable[[], None] | None = None

        async def startup(self, sockets: Any = None) -> None:
            await super().startup(sockets=sockets)
            if self.started and self.ready is not None:
                self.ready()

        def handle_exit(self, sig: int, frame: Any) -> None:
            super().handle_exit(sig, frame)
            self._captured_signals.clear()

    return CleanExitServer


async def _serve(args: argparse.Namespace) -> None:
    from emberrtc.api.app import create_app
    from emberrtc.api.edge import server_config
    from emberrtc.api.tls import CertificateError, ServerCertificate
    from emberrtc.bootstrap import build
    from emberrtc.deploy.public_url import PublicUrlUnknown, advertised_addresses, public_base_url

    settings = _settings(args)
    certificate: ServerCertificate | None = None
    if settings.tls_cert:
        try:
            certificate = ServerCertificate(settings.tls_cert, settings.tls_key)
        except CertificateError as exc:
            print(f"ember: {exc}", file=sys.stderr)
            raise SystemExit(2) from None
    try:
        public_url = public_base_url(
            settings, *((certificate.info.names, certificate.info.ip_addresses) if certificate else ())
        )
    except PublicUrlUnknown as exc:
        print(f"ember: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    settings = replace(settings, public_url=public_url)
    if settings.media_enabled:
        from emberrtc.media.janus_process import JanusNotInstalledError
        from emberrtc.media.plane import JanusMediaPlane

        try:
            JanusMediaPlane.check_installed(settings.janus_binary)
        except JanusNotInstalledError as exc:
            print(f"ember: {exc}", file=sys.stderr)
            raise SystemExit(2) from None
    _check_turn(settings)
    _check_port_free(settings)
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
    config.load()
    log = logging.getLogger(__name__)
    if certificate is not None:
        # The one context the listener keeps; SIGHUP re-loads the files into it (api/tls.py).
        config.ssl = certificate.context
        asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, certificate.reload_logged)
        days = certificate.info.days_left(datetime.now(UTC))
        if days < settings.doctor_cert_days:
            log.warning(
                "the TLS certificate %s %s: renew it and send SIGHUP (systemctl reload ember)",
                settings.tls_cert,
                f"expires in {days:.1f} days" if days > 0 else "has expired",
            )
    else:
        # systemctl reload sends SIGHUP; its default action would end the server (a "clean" exit that
        # Restart=on-failure does not restart).
        asyncio.get_running_loop().add_signal_handler(
            signal.SIGHUP, lambda: log.info("SIGHUP: no TLS certificate to reload; nothing else is reloaded")
        )
    log.info("Ember data folder: %s", settings.data_dir)
    told = await asyncio.to_thread(advertised_addresses, settings, public_url)
    no_tenant = not await services.tenants.any_tenant()

    def ready() -> None:
        # Once it serves, not before: the README has operators wait for this line before `ember doctor`.
        log.info("%s", told)
        if no_tenant:
            log.info(
                "no tenant yet: in another terminal, from this folder, create one with `.venv/bin/ember tenant "
                "create NAME --password-file -` (README, Quick start); then sign in at %s/console",
                public_url.rstrip("/"),
            )

    _tune_gc()
    server = _CleanExitServer(config)
    server.ready = ready
    await server.serve()


def _check_port_free(settings: Settings) -> None:
    """Refuse to start, saying what to do, when another program already listens on the API's address
    (most often an `ember serve` left running in another terminal)."""
    import errno
    import socket

    family = socket.AF_INET6 if ":" in settings.host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the server binds: TIME_WAIT is no clash
        try:
            probe.bind((settings.host, settings.port))
        except OSError as exc:
            if exc.errno != errno.EADDRINUSE:
                return  # the server's own bind reports anything else
            print(
                f"ember: {settings.host}:{settings.port} is already in use by another program (another "
                "`ember serve`, perhaps in another terminal): stop it, or give this one another port with "
                "--port N (EMBER_PORT)",
                file=sys.stderr,
            )
            raise SystemExit(2) from None


def _check_turn(settings: Settings) -> None:
    """Refuse to start, saying what to set or install, when the TURN relay's configuration cannot work."""
    from emberrtc.bootstrap import turn_from_settings
    from emberrtc.media.turn_process import TurnNotInstalledError, TurnProcess

    try:
        if settings.turn == "embedded":
            TurnProcess.check_installed(settings.turn_binary)
        turn_from_settings(settings)
    except TurnNotInstalledError as exc:
        print(f"ember: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    except ValueError as exc:
        print(f"ember: bad configuration: {exc}", file=sys.stderr)
        raise SystemExit(2) from None


async def _doctor(args: argparse.Namespace) -> None:
    from emberrtc.deploy.doctor import Doctor, read_env_file

    env = dict(os.environ)
    if args.env_file:
        try:
            env.update(read_env_file(Path(args.env_file)))
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            print(f"ember doctor: cannot read {args.env_file}: {exc}", file=sys.stderr)
            raise SystemExit(2) from None
    try:
        base = Settings().with_env(env)
    except ValueError as exc:
        print(f"ember doctor: bad configuration: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    settings = _settings(args, base)
    findings = await Doctor(settings).run()
    for finding in findings:
        print(finding.render())
    problems = sum(not f.ok for f in findings)
    print(f"{problems} problem{'s' if problems != 1 else ''} found" if problems else "no problem found")
    if problems:
        raise SystemExit(1)


async def _install_service(args: argparse.Namespace) -> None:
    from emberrtc.deploy.service_unit import ServiceUnit, ember_executable, install, next_steps

    try:
        unit = ServiceUnit(
            executable=ember_executable(),
            user=args.user,
            data_dir=absolute_path(args.data_dir),
            env_file=absolute_path(args.env_file),
        )
    except (ValueError, FileNotFoundError) as exc:
        print(f"ember install-service: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    unit_path = absolute_path(args.unit_path)
    if args.dry_run:
        print(f"# {unit_path}")
        print(unit.render(), end="")
        return
    if os.geteuid() != 0:
        print(
            "ember install-service: needs root (it creates a user and writes to /etc): run it with sudo, "
            "or --dry-run to see the unit",
            file=sys.stderr,
        )
        raise SystemExit(2)
    try:
        done = install(unit, unit_path)
    except (OSError, subprocess.CalledProcessError) as exc:
        print(f"ember install-service: {exc}", file=sys.stderr)
        raise SystemExit(1) from None
    for line in done:
        print(f"done: {line}")
    if unit.in_home:
        print(
            f"warning: {unit.executable} is under a home folder, which the user {unit.user} may not be able "
            "to read: install Ember in /opt (python3 -m venv /opt/ember && /opt/ember/bin/pip install .)"
        )
    print("next:")
    for line in next_steps(unit, unit_path):
        print(f"  {line}")


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
    serve.add_argument(
        "--tls-cert",
        metavar="FILE",
        help="PEM certificate chain: serve HTTPS and WSS only (with --tls-key; or $EMBER_TLS_CERT); SIGHUP reloads it",
    )
    serve.add_argument("--tls-key", metavar="FILE", help="PEM private key of --tls-cert (or $EMBER_TLS_KEY)")
    data_dir(serve)
    serve.set_defaults(run=_serve)

    doctor = sub.add_parser(
        "doctor",
        help="check this server's deployment: ports, TLS, Janus, storage, database, clock, Redis, TURN relay (UDP)",
        description="Check a deployment from the inside, as the server's user with the server's settings: "
        "each problem is printed with its fix in one line; the exit status is 1 when there is one.",
    )
    doctor.add_argument(
        "--env-file", metavar="FILE", help="read EMBER_* settings from this file too (the unit's EnvironmentFile)"
    )
    doctor.add_argument("--host", help="address the server listens on (default: the settings')")
    doctor.add_argument("--port", type=int, help="port the server listens on (default: the settings')")
    doctor.add_argument("--tls-cert", metavar="FILE", help="the server's certificate (default: $EMBER_TLS_CERT)")
    doctor.add_argument("--tls-key", metavar="FILE", help="the server's key (default: $EMBER_TLS_KEY)")
    data_dir(doctor)
    doctor.set_defaults(run=_doctor)

    from emberrtc.deploy.service_unit import DEFAULT_DATA_DIR, DEFAULT_ENV_FILE, DEFAULT_UNIT_PATH, DEFAULT_USER

    service = sub.add_parser(
        "install-service",
        help="install Ember as a systemd service (user, data folder, settings file, unit)",
        description="Create a system user and its data folder, a settings file (when there is none) and a "
        "systemd unit running `ember serve` with restart on failure and logs in the journal. Needs root; "
        "--dry-run prints the unit only.",
    )
    service.add_argument("--user", default=DEFAULT_USER, help=f"system user to run as (default {DEFAULT_USER})")
    service.add_argument("--data-dir", default=str(DEFAULT_DATA_DIR), help=f"data folder (default {DEFAULT_DATA_DIR})")
    service.add_argument(
        "--env-file", default=str(DEFAULT_ENV_FILE), help=f"EMBER_* settings file (default {DEFAULT_ENV_FILE})"
    )
    service.add_argument(
        "--unit-path", default=str(DEFAULT_UNIT_PATH), help=f"where to write the unit (default {DEFAULT_UNIT_PATH})"
    )
    service.add_argument("--dry-run", action="store_true", help="print the unit and change nothing")
    service.set_defaults(run=_install_service)

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
    cl = cred.add_parser(
        "list",
        help="list AK/SK credentials (never their SKs)",
        description="List the access keys (AK) of every tenant, or of one: tenant, IAM user, state (active "
        "or revoked), when each was created, last used (to the minute; 'never' if not since it was made) and "
        "revoked. Secret keys are never shown.",
    )
    cl.add_argument("--tenant", help="only this tenant's (domain name)")
    cl.add_argument("--json", action="store_true", help="print JSON")
    data_dir(cl)
    cl.set_defaults(run=_credential_list)
    cr = cred.add_parser(
        "revoke",
        help="revoke an AK/SK pair at once, on every node",
        description="Revoke an access key: requests signed with it are refused with 401 (RTC.00001001) by "
        "every server sharing this database within EMBER_REVOCATION_CHECK_INTERVAL seconds (1 by default). "
        "It cannot be reinstated: create a new credential instead.",
    )
    cr.add_argument("ak", metavar="AK", help="the access key to revoke")
    cr.add_argument("--json", action="store_true", help="print JSON")
    data_dir(cr)
    cr.set_defaults(run=_credential_revoke)

    token = sub.add_parser("token", help="revoke IAM tokens").add_subparsers(dest="action", required=True)
    tr = token.add_parser(
        "revoke",
        help="revoke every token of an IAM user or of a tenant",
        description="Revoke every unexpired IAM token (POST /v3/auth/tokens) of an IAM user or of a whole "
        "tenant: from now on they are refused with 401 (RTC.00001001) on every node. The user can still sign "
        "in with the password and get a new token.",
    )
    tr.add_argument("--user", help="the IAM user's name (add --tenant if several tenants have one so named)")
    tr.add_argument("--tenant", help="the tenant (domain) name: all its tokens, or its user named by --user")
    tr.add_argument("--json", action="store_true", help="print JSON")
    data_dir(tr)
    tr.set_defaults(run=_token_revoke, needs_one_of=("user", "tenant"))

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
    p = parser()
    args = p.parse_args(argv)
    needs = getattr(args, "needs_one_of", ())
    if needs and all(getattr(args, name) is None for name in needs):
        p.error(f"{args.command} {args.action}: give " + " or ".join(f"--{name}" for name in needs))
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
