"""``ember doctor``: check a deployment from the inside, each problem with its fix in one line.

Run on the server's machine as the server's user, with the server's settings (``--env-file`` reads the
unit's environment file). It changes nothing: it connects, reads and writes one scratch file it removes.

Checks: the public URL can be told; the HTTP(S) port answers on every address the server listens on (and
presents the certificate in the file); the TLS certificate and key are readable, belong together, and are
valid for more than ``doctor_cert_days``; Janus is installed, has an address clients can reach, and its
API and admin API answer; the data folder is writable with ``doctor_min_free_mb`` free; the database
answers; this machine's clock agrees with the database server's within ``doctor_max_clock_skew``; with
``redis_url`` (a cluster), Redis answers PING, is recent enough and near enough (``doctor_max_redis_ms``);
the TURN relay answers and grants an allocation with Ember's credentials, and answers a STUN Binding
request over UDP at the addresses clients are told, not only over loopback (a host firewall dropping UDP
to the relay's port).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import ipaddress
import os
import re
import secrets
import shutil
import socket
import ssl
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import httpx
from cryptography import x509

from emberrtc.api.tls import CertificateError, ServerCertificate
from emberrtc.config import Settings
from emberrtc.deploy.public_url import PublicUrlUnknown, is_wildcard, public_base_url, url_for
from emberrtc.domain.clock import Clock, SystemClock
from emberrtc.domain.redaction import mask_urls


@dataclass(frozen=True)
class Finding:
    """One check's outcome: ``fix`` is set exactly when it is a problem."""

    check: str
    detail: str
    fix: str = ""

    @property
    def ok(self) -> bool:
        return not self.fix

    def render(self) -> str:
        if self.ok:
            return f"ok    {self.check}: {self.detail}"
        return f"FAIL  {self.check}: {self.detail}\n      fix: {self.fix}"


def _problem(check: str, detail: str, fix: str) -> Finding:
    return Finding(check, detail, fix)


def _jcfg_value(text: str, key: str) -> str | None:
    match = re.search(rf'^\s*{re.escape(key)}\s*=\s*"?([^"\n]*)"?\s*$', text, re.MULTILINE)
    return match.group(1) if match else None


class Doctor:
    """The checks, run against ``settings`` (as ``ember serve`` would read them) and ``clock``."""

    def __init__(self, settings: Settings, *, clock: Clock | None = None, timeout: float = 3.0) -> None:
        self.settings = settings
        self.clock = clock or SystemClock()
        self.timeout = timeout
        self._certificate: ServerCertificate | None = None

    async def run(self) -> list[Finding]:
        """Every check in order; a check that fails in an unforeseen way is reported, not raised."""
        findings: list[Finding] = []
        steps: list[tuple[str, Callable[[], Awaitable[list[Finding]]]]] = [
            ("tls certificate", self.check_certificate),
            ("public url", self.check_public_url),
            ("listening", self.check_listening),
            ("janus", self.check_janus),
            ("storage", self.check_storage),
            ("database", self.check_database_and_clock),
            ("redis", self.check_redis),
            ("turn", self.check_turn),
            ("udp", self.check_udp),
        ]
        for name, step in steps:
            try:
                findings += await step()
            except Exception as exc:  # a doctor reports; it does not crash on the thing it examines
                findings.append(_problem(name, f"the check itself failed: {mask_urls(repr(exc))}", "report this"))
        return findings

    # -- TLS and addresses -----------------------------------------------------------------------------

    def _now(self) -> dt.datetime:
        return dt.datetime.fromtimestamp(self.clock.now(), dt.UTC)

    async def check_certificate(self) -> list[Finding]:
        s = self.settings
        if not s.tls_cert:
            return [Finding("tls certificate", "none (plain HTTP; browsers give camera and microphone only to HTTPS)")]
        reload = "systemctl reload ember"
        try:
            self._certificate = await asyncio.to_thread(ServerCertificate, s.tls_cert, s.tls_key)
        except CertificateError as exc:
            return [
                _problem(
                    "tls certificate",
                    str(exc),
                    f"make {s.tls_cert} and {s.tls_key} a matching PEM pair readable by the server's user "
                    f"(e.g. chgrp ember FILE && chmod 640 FILE), then {reload}",
                )
            ]
        info = self._certificate.info
        now = self._now()
        names = ", ".join(info.names + info.ip_addresses) or "no name"
        if info.not_before > now:
            return [
                _problem(
                    "tls certificate",
                    f"{s.tls_cert} is not valid before {info.not_before:%Y-%m-%d %H:%M} UTC",
                    "check this machine's clock (timedatectl) or the certificate's dates",
                )
            ]
        left = info.days_left(now)
        if left <= 0:
            return [
                _problem(
                    "tls certificate",
                    f"{s.tls_cert} ({names}) expired on {info.not_after:%Y-%m-%d}",
                    f"renew it (e.g. certbot renew) and run {reload}",
                )
            ]
        if left < s.doctor_cert_days:
            return [
                _problem(
                    "tls certificate",
                    f"{s.tls_cert} ({names}) expires in {left:.1f} days, on {info.not_after:%Y-%m-%d}",
                    f"renew it now (e.g. certbot renew) and run {reload}",
                )
            ]
        return [Finding("tls certificate", f"{names}, serial {info.serial:x}, valid for {left:.0f} more days")]

    async def check_public_url(self) -> list[Finding]:
        info = self._certificate.info if self._certificate else None
        try:
            url = public_base_url(self.settings, *((info.names, info.ip_addresses) if info else ()))
        except PublicUrlUnknown as exc:
            return [_problem("public url", "cannot be told", str(exc).split(": ", 1)[1])]
        if self.settings.public_url.startswith("http:") and self.settings.tls_cert:
            return [
                _problem(
                    "public url",
                    f"{url} is plain HTTP but the server serves HTTPS only",
                    "set EMBER_PUBLIC_URL to the https:// URL",
                )
            ]
        return [Finding("public url", f"{url} (download links and the start-up line use it)")]

    def _listen_addresses(self) -> list[str]:
        host = self.settings.host
        if not is_wildcard(host):
            return [host]
        from emberrtc.media.ice_interfaces import machine_addresses

        want_v6 = ":" in host
        found = []
        for c in machine_addresses():
            ip = ipaddress.ip_address(c.ip.split("%")[0])
            if ip.is_link_local or (ip.version == 6 and not want_v6):
                continue
            found.append(str(ip))
        return sorted(set(found), key=lambda a: (":" in a, a))

    async def check_listening(self) -> list[Finding]:
        s = self.settings
        scheme = "https" if s.tls_cert else "http"
        findings = []
        for address in self._listen_addresses():
            url = url_for(scheme, address, s.port)
            try:
                async with httpx.AsyncClient(verify=False, trust_env=False, timeout=self.timeout) as http:
                    response = await http.get(f"{url}/")
                answered = response.status_code == 200 and "Ember" in response.text
                detail = f"{url} answers" if answered else f"{url} answers {response.status_code}, not Ember's page"
            except httpx.HTTPError as exc:
                answered, detail = False, f"nothing answers at {url} ({type(exc).__name__}: {exc or 'no detail'})"
            if not answered:
                findings.append(
                    _problem(
                        "listening",
                        detail,
                        "start the server (systemctl start ember; journalctl -u ember says why it stopped), "
                        f"check EMBER_HOST/EMBER_PORT and that no other program holds port {s.port}",
                    )
                )
                continue
            served = await asyncio.to_thread(self._served_serial, address) if s.tls_cert else None
            if self._certificate is not None and served is not None and served != self._certificate.info.serial:
                findings.append(
                    _problem(
                        "listening",
                        f"{url} presents certificate serial {served:x}, not the file's "
                        f"{self._certificate.info.serial:x}",
                        "run systemctl reload ember (SIGHUP) so the server reads the renewed certificate",
                    )
                )
                continue
            findings.append(Finding("listening", detail))
        return findings

    def _served_serial(self, address: str) -> int | None:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        try:
            with (
                socket.create_connection((address, self.settings.port), timeout=self.timeout) as raw,
                context.wrap_socket(raw) as tls,
            ):
                der = tls.getpeercert(binary_form=True)
        except OSError:
            return None
        return x509.load_der_x509_certificate(der).serial_number if der else None

    # -- Janus -------------------------------------------------------------------------------------------

    async def check_janus(self) -> list[Finding]:
        s = self.settings
        if not s.media_enabled:
            return [Finding("janus", "media plane off (EMBER_MEDIA_ENABLED=false): no room can run")]
        findings = []
        if shutil.which(s.janus_binary) is None:
            return [_problem("janus", f"{s.janus_binary!r} is not installed", "apt-get install janus")]
        from emberrtc.media.ice_interfaces import ice_warning

        warning = await asyncio.to_thread(ice_warning, s.media_ip)
        if warning:
            findings.append(
                _problem(
                    "janus",
                    warning.split(" Janus never uses loopback")[0],
                    "set EMBER_MEDIA_IP to the interface or address clients reach (e.g. EMBER_MEDIA_IP=eth0)",
                )
            )
        folder = s.data_dir / "janus"
        try:
            http_cfg = (folder / "janus.transport.http.jcfg").read_text()
            core_cfg = (folder / "janus.jcfg").read_text()
        except FileNotFoundError:
            return [
                *findings,
                _problem(
                    "janus",
                    f"no Janus configuration in {folder}: ember serve has not run on this data folder",
                    "start the server (systemctl start ember), or give the server's --data-dir",
                ),
            ]
        except PermissionError:
            return [
                *findings,
                _problem(
                    "janus",
                    f"cannot read Janus's configuration in {folder}",
                    "run ember doctor as the server's user (sudo -u ember ember doctor ...)",
                ),
            ]
        port, admin_port = _jcfg_value(http_cfg, "port"), _jcfg_value(http_cfg, "admin_port")
        secret = _jcfg_value(core_cfg, "admin_secret")
        fix = (
            f"ember serve restarts Janus by itself: see {folder / 'janus.log'} and journalctl -u ember; "
            "if the server is stopped, start it"
        )
        try:
            async with httpx.AsyncClient(trust_env=False, timeout=self.timeout) as http:
                info = (await http.get(f"http://127.0.0.1:{port}/janus/info")).json()
                if "janus.plugin.videoroom" not in info.get("plugins", {}):
                    return [*findings, _problem("janus", f"port {port} answers without the videoroom plugin", fix)]
                pong = (
                    await http.post(
                        f"http://127.0.0.1:{admin_port}/admin",
                        json={"janus": "ping", "transaction": secrets.token_hex(6), "admin_secret": secret},
                    )
                ).json()
        except (httpx.HTTPError, ValueError) as exc:
            return [
                *findings,
                _problem("janus", f"Janus does not answer on 127.0.0.1:{port} ({type(exc).__name__})", fix),
            ]
        if pong.get("janus") != "pong":
            return [*findings, _problem("janus", f"the admin API (port {admin_port}) answers {pong}", fix)]
        version = info.get("version_string", "?")
        findings.append(Finding("janus", f"Janus {version} answers (API port {port}, admin port {admin_port})"))
        return findings

    # -- storage ------------------------------------------------------------------------------------------

    async def check_storage(self) -> list[Finding]:
        s = self.settings
        folder = s.data_dir
        findings = []
        probe = folder / f".doctor-{secrets.token_hex(4)}"
        try:
            await asyncio.to_thread(_write_probe, probe)
        except OSError as exc:
            findings.append(
                _problem(
                    "storage",
                    f"cannot write in {folder}: {exc.strerror or exc}",
                    f"give the server's user the folder (chown -R ember: {folder}) and free space on its disk",
                )
            )
        usage = shutil.disk_usage(folder) if folder.exists() else None
        if usage is None:
            return findings
        free_mb = usage.free / 2**20
        used = 100 * (usage.total - usage.free) / usage.total if usage.total else 100.0
        if free_mb < s.doctor_min_free_mb:
            findings.append(
                _problem(
                    "storage",
                    f"{free_mb:.0f} MiB free on the file system of {folder} ({used:.0f} % used), under the "
                    f"{s.doctor_min_free_mb} MiB recordings need (EMBER_DOCTOR_MIN_FREE_MB)",
                    "free space or grow the disk (recordings are spooled here before upload)",
                )
            )
        elif not findings:
            findings.append(Finding("storage", f"{folder} writable, {free_mb:.0f} MiB free ({used:.0f} % used)"))
        return findings

    # -- database and clock -----------------------------------------------------------------------------

    async def check_database_and_clock(self) -> list[Finding]:
        from sqlalchemy import text

        from emberrtc.bootstrap import database_url
        from emberrtc.store.database import Database

        s = self.settings
        url = database_url(s)
        if not s.database_url and not (s.data_dir / "ember.db").exists():
            return [
                _problem(
                    "database",
                    f"no database in {s.data_dir}",
                    "start the server once on this data folder (it creates the database), or give its --data-dir",
                )
            ]
        db = Database(url)
        try:
            async with asyncio.timeout(self.timeout * 2):
                if db.dialect == "sqlite":
                    await db.run(lambda session: session.execute(text("SELECT 1")).scalar())
                    server_time = None
                else:
                    server_time = await db.run(
                        lambda session: session.execute(text("SELECT extract(epoch FROM clock_timestamp())")).scalar()
                    )
        except Exception as exc:
            return [
                _problem(
                    "database",
                    f"{db.dialect} does not answer: {mask_urls(str(exc).splitlines()[0] if str(exc) else repr(exc))}",
                    "check EMBER_DATABASE_URL and that the database server runs and accepts this user",
                )
            ]
        finally:
            await db.close()
        findings = [Finding("database", f"{db.dialect} answers")]
        if server_time is None:
            findings.append(Finding("clock", "SQLite: the database uses this machine's clock (nothing to compare)"))
            return findings
        skew = self.clock.now() - float(server_time)
        if abs(skew) > s.doctor_max_clock_skew:
            findings.append(
                _problem(
                    "clock",
                    f"this machine's clock is {abs(skew):.1f} s {'ahead of' if skew > 0 else 'behind'} the database "
                    f"server's (at most {s.doctor_max_clock_skew:g} s: join signatures, X-Sdk-Date and callbacks "
                    "carry times)",
                    "synchronise both clocks with NTP (timedatectl set-ntp true, or chrony)",
                )
            )
        else:
            findings.append(Finding("clock", f"within {abs(skew):.2f} s of the database server's"))
        return findings

    # -- Redis (cluster) ----------------------------------------------------------------------------------

    async def check_redis(self) -> list[Finding]:
        """With ``redis_url``: Redis answers PING (with the URL's password), its version, its round trip."""
        from redis.asyncio import Redis
        from redis.exceptions import AuthenticationError, RedisError, ResponseError

        s = self.settings
        if not s.redis_url:
            return []
        where = mask_urls(s.redis_url)
        redis = Redis.from_url(
            s.redis_url, decode_responses=True, socket_timeout=self.timeout, socket_connect_timeout=self.timeout
        )
        try:
            await redis.ping()
            info = await redis.info("server")
            times = []
            for _ in range(5):
                started = time.perf_counter()
                await redis.ping()
                times.append((time.perf_counter() - started) * 1000)
        except (AuthenticationError, ResponseError) as exc:
            if "HELLO" in str(exc):
                return [_old_redis(where, "it does not know HELLO")]
            # ResponseError: AUTH given to a Redis without a password, or a command refused by an ACL.
            return [
                _problem(
                    "redis",
                    f"{where} refuses this node: {exc}",
                    "put Redis's user and password in EMBER_REDIS_URL (redis://USER:PASSWORD@HOST:6379/0), or "
                    "none if it has no password",
                )
            ]
        except (RedisError, OSError) as exc:
            return [
                _problem(
                    "redis",
                    f"{where} does not answer ({type(exc).__name__}: {mask_urls(str(exc)) or 'no detail'})",
                    "start Redis (systemctl start redis-server) or correct EMBER_REDIS_URL; every node of the "
                    "cluster must reach it",
                )
            ]
        finally:
            await redis.aclose()
        version = str(info.get("redis_version", "?"))
        median = sorted(times)[len(times) // 2]
        findings = []
        if _version_tuple(version) < REDIS_MIN_VERSION:
            findings.append(_old_redis(where, f"it is Redis {version}"))
        if median > s.doctor_max_redis_ms:
            findings.append(
                _problem(
                    "redis",
                    f"{where} answers in {median:.1f} ms (median of 5 PINGs), over {s.doctor_max_redis_ms:g} ms "
                    "(EMBER_DOCTOR_MAX_REDIS_MS): every join waits for it",
                    "run Redis in the same data centre as the nodes, and check its load (redis-cli --latency)",
                )
            )
        if not findings:
            findings.append(Finding("redis", f"{where}: Redis {version} answers PING in {median:.1f} ms"))
        return findings

    # -- TURN ----------------------------------------------------------------------------------------------

    async def check_turn(self) -> list[Finding]:
        """The TURN relay: installed, configured, answering, and granting allocations with the credentials
        Ember makes (embedded: over loopback; external: at each URL)."""
        from emberrtc.bootstrap import turn_from_settings
        from emberrtc.client.ice import probe_turn
        from emberrtc.media.turn_credentials import turn_credential
        from emberrtc.media.turn_process import stun_binding

        s = self.settings
        if not s.turn and not s.turn_urls:
            return [
                Finding(
                    "turn",
                    "not configured (EMBER_TURN, EMBER_TURN_URLS): clients whose network blocks UDP to the media "
                    "ports cannot connect media",
                )
            ]
        if s.turn == "embedded":
            if shutil.which(s.turn_binary) is None:
                return [_problem("turn", f"{s.turn_binary!r} is not installed", "apt-get install coturn")]
            if not (s.turn_secret or s.turn_secret_file or (s.data_dir / "turn.key").exists()):
                return [
                    _problem(
                        "turn",
                        f"no turn.key in {s.data_dir}: ember serve has not run with EMBER_TURN=embedded here",
                        "start the server (systemctl start ember), or give the server's --data-dir",
                    )
                ]
        try:
            servers, relay = turn_from_settings(s)
        except ValueError as exc:
            return [_problem("turn", str(exc), "set what the message names (README: TURN relay)")]
        username, password = turn_credential(servers.secret, "ember-doctor", int(self.clock.now()) + 60)
        if relay is not None:
            local = ("127.0.0.1", relay.config.port)
            if not await stun_binding(local, self.timeout):
                return [
                    _problem(
                        "turn",
                        f"the embedded relay does not answer on port {relay.config.port}",
                        f"start the server (systemctl start ember); the relay's log: {relay.log_path}",
                    )
                ]
            url = f"turn:127.0.0.1:{relay.config.port}?transport=udp"
            if not await probe_turn(url, username, password, within=self.timeout):
                return [
                    _problem(
                        "turn",
                        f"the embedded relay on port {relay.config.port} refuses Ember's credentials",
                        "restart the server: the running relay has another secret (EMBER_TURN_SECRET changed?)",
                    )
                ]
            return [
                Finding(
                    "turn", f"embedded relay answers and grants allocations; clients are told {', '.join(servers.urls)}"
                )
            ]
        findings = []
        for url in servers.urls:
            if await probe_turn(url, username, password, within=self.timeout):
                findings.append(Finding("turn", f"{url} grants allocations with Ember's credentials"))
            else:
                findings.append(
                    _problem(
                        "turn",
                        f"{url} gives no allocation with Ember's credentials (unreachable, or another secret)",
                        "check that this host reaches the relay and that EMBER_TURN_SECRET is its static-auth-secret",
                    )
                )
        return findings

    async def check_udp(self) -> list[Finding]:
        """UDP to the embedded relay from this machine at the addresses clients reach it by (not loopback):
        a STUN Binding request answered there shows that no firewall on this host drops the relay's UDP."""
        from emberrtc.bootstrap import turn_from_settings
        from emberrtc.media.ice_interfaces import usable_addresses
        from emberrtc.media.turn_process import stun_binding

        s = self.settings
        if s.turn != "embedded":
            # An external relay's UDP URL is probed by the turn check (an allocation over UDP).
            return []
        try:
            servers, relay = turn_from_settings(s)
        except ValueError:
            return []  # the turn check says what to set
        assert relay is not None
        port = relay.config.port
        if not await stun_binding(("127.0.0.1", port), self.timeout):
            return []  # not running: the turn check says so
        host = servers.urls[0].split(":", 1)[1].rsplit(":", 1)[0].strip("[]")
        resolved = await asyncio.to_thread(_resolve, host, port)
        local = [ip for ip in resolved if _is_local(ip)]
        # Behind a 1:1 NAT clients' packets arrive at the private address the public one maps to: probe
        # the media addresses then (the cloud's own firewall cannot be seen from the inside).
        # (Link-local addresses are not where clients come from, and need a scope to be reached.)
        targets = local or [
            c.ip for c in usable_addresses(s.media_ip) if not ipaddress.ip_address(c.ip.split("%")[0]).is_link_local
        ]
        findings = []
        for ip in targets:
            if await stun_binding((ip, port), self.timeout):
                findings.append(Finding("udp", f"the relay answers STUN over UDP at {_host_port(ip, port)}"))
                continue
            low, high = relay.config.relay_ports
            findings.append(
                _problem(
                    "udp",
                    f"the relay answers STUN over loopback but not at {_host_port(ip, port)}: a firewall on "
                    "this machine drops UDP to it",
                    f"let UDP {port} and {low}-{high} in (nft list ruleset shows the rule; e.g. ufw allow {port}/udp "
                    f"&& ufw allow {low}:{high}/udp)",
                )
            )
        if not local and resolved:
            findings.append(
                Finding(
                    "udp",
                    f"clients reach the relay at {host} ({', '.join(resolved)}), not on this machine (1:1 NAT): "
                    f"the cloud's firewall must let UDP {port} in too",
                )
            )
        return findings


#: The oldest Redis Ember supports: users with passwords (ACLs, ``redis://USER:PASSWORD@...``) and RESP3 come
#: with 6.0. redis-py opens every connection with HELLO (RESP3); up to 8.1 it gives up on a server that does
#: not know it, from 8.2 it falls back to RESP2 (then the version in INFO tells).
REDIS_MIN_VERSION = (6, 0)


def _old_redis(where: str, why: str) -> Finding:
    return _problem(
        "redis",
        f"{where} is older than {'.'.join(map(str, REDIS_MIN_VERSION))} ({why}; Ember supports Redis 6.0 and later)",
        "upgrade Redis (apt-get install redis-server on a current Debian or Ubuntu)",
    )


def _version_tuple(version: str) -> tuple[int, ...]:
    parts = []
    for part in version.split(".")[:2]:
        digits = re.match(r"\d+", part)
        parts.append(int(digits.group(0)) if digits else 0)
    return tuple(parts)


def _is_local(ip: str) -> bool:
    """True when ``ip`` is one of this machine's addresses (binding to it succeeds; nothing is sent)."""
    family = socket.AF_INET6 if ":" in ip else socket.AF_INET
    try:
        with socket.socket(family, socket.SOCK_DGRAM) as probe:
            probe.bind((ip, 0))
    except OSError:
        return False
    return True


def _host_port(ip: str, port: int) -> str:
    return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"


def _resolve(host: str, port: int) -> list[str]:
    try:
        answers = socket.getaddrinfo(host, port, type=socket.SOCK_DGRAM)
    except OSError:
        return []
    return list(dict.fromkeys(str(a[4][0]) for a in answers))


def _write_probe(path: Path) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, b"ember doctor\n" * 256)
        os.fsync(fd)
    finally:
        os.close(fd)
        path.unlink(missing_ok=True)


def read_env_file(path: Path) -> dict[str, str]:
    """``KEY=VALUE`` lines of a systemd environment file (comments, blank lines, optional quotes)."""
    env: dict[str, str] = {}
    for number, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        key, sep, value = line.partition("=")
        key = key.strip()
        if not sep or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key):
            raise ValueError(f"{path}:{number}: not a KEY=VALUE line")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        env[key] = value
    return env
