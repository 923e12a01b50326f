"""Generate the private configuration folder Ember runs Janus with.

Janus reads a folder of libconfig (``.jcfg``) files. Ember never uses the system's ``/etc/janus``: it
writes its own folder with only the videoroom plugin, the WebSocket transport (the Janus API Ember uses)
and the HTTP transport (admin API, and the ``info`` endpoint the supervisor polls) loaded, all bound to
loopback and protected by random secrets. Clients never talk to Janus directly
(DESIGN.md, "Media plane"), so nothing here is meant to be reachable from outside the host.

No STUN or TURN server is configured and mDNS resolution is off, so Janus sends no traffic anywhere on
its own; the only ICE candidates it gathers are on the interface or address in ``ice_enforce_list``.
"""

from __future__ import annotations

import contextlib
import glob
import ipaddress
import os
import secrets
import socket
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

__all__ = [
    "HTTP_TRANSPORT",
    "WEBSOCKETS_TRANSPORT",
    "VIDEOROOM_PLUGIN",
    "JanusConfig",
    "render_jcfg",
]

#: Shared-object names of the only plugin and transport Ember loads.
VIDEOROOM_PLUGIN = "libjanus_videoroom.so"
HTTP_TRANSPORT = "libjanus_http.so"
WEBSOCKETS_TRANSPORT = "libjanus_websockets.so"

# What Debian's janus 1.1 package ships. Used for the ``disable`` lists when the library folders cannot
# be read (for instance when generating a config on a machine without Janus); otherwise the folders'
# actual contents are added, so a plugin added by a newer package is disabled too.
_KNOWN_PLUGINS = (
    "libjanus_audiobridge.so",
    "libjanus_duktape.so",
    "libjanus_echotest.so",
    "libjanus_lua.so",
    "libjanus_nosip.so",
    "libjanus_recordplay.so",
    "libjanus_sip.so",
    "libjanus_streaming.so",
    "libjanus_textroom.so",
    "libjanus_videocall.so",
    "libjanus_videoroom.so",
    "libjanus_voicemail.so",
)
_KNOWN_TRANSPORTS = (
    "libjanus_http.so",
    "libjanus_mqtt.so",
    "libjanus_nanomsg.so",
    "libjanus_pfunix.so",
    "libjanus_rabbitmq.so",
    "libjanus_websockets.so",
)
_KNOWN_EVENT_HANDLERS = (
    "libjanus_gelfevh.so",
    "libjanus_mqttevh.so",
    "libjanus_nanomsgevh.so",
    "libjanus_rabbitmqevh.so",
    "libjanus_sampleevh.so",
    "libjanus_wsevh.so",
)
_KNOWN_LOGGERS = ("libjanus_jsonlog.so",)

# Debian installs Janus's modules under the multiarch library folder.
_DEFAULT_LIB_GLOB = "/usr/lib/*/janus"

#: A value that can be written to a jcfg file.
JcfgValue = str | int | bool | Sequence[str]


def _secret() -> str:
    return secrets.token_urlsafe(24)


@dataclass(frozen=True)
class JanusConfig:
    """Everything Ember decides about a Janus instance; :meth:`write` turns it into a config folder.

    Secrets default to fresh random values, so two instances never share them.
    """

    #: TCP port of the Janus HTTP API (``http://bind_ip:http_port/janus``).
    http_port: int
    #: TCP port of the admin API (``http://bind_ip:admin_port/admin``).
    admin_port: int
    #: TCP port of the Janus API over WebSocket (``ws://bind_ip:ws_port``), the one Ember's client uses:
    #: secrets travel inside its messages, never in a URL (the HTTP long poll would need them in one).
    ws_port: int
    #: Address both HTTP servers bind to. Loopback: only Ember talks to Janus.
    bind_ip: str = "127.0.0.1"
    #: Secret every Janus API request must carry (``apisecret``).
    api_secret: str = field(default_factory=_secret)
    #: Secret every admin API request must carry (``admin_secret``).
    admin_secret: str = field(default_factory=_secret)
    #: Videoroom ``admin_key``: needed to create rooms and (with ``lock_rtp_forward``) to forward RTP.
    room_admin_key: str = field(default_factory=_secret)
    #: Comma-separated interfaces or IP addresses Janus may gather ICE candidates on (None: all).
    ice_enforce_list: str | None = None
    #: UDP port range for RTP/RTCP, inclusive (None: Janus's default, the whole ephemeral range).
    rtp_port_range: tuple[int, int] | None = None
    #: Public address(es) written in place of the private one in every candidate Janus offers (1:1 NAT,
    #: ``nat.nat_1_1_mapping``; ports kept). Comma-separated IPs, None: the gathered addresses as they are.
    nat_1_1_mapping: str | None = None
    #: Gather passive ICE-TCP candidates too. Janus 1.1 supports ICE-TCP only together with ICE-Lite
    #: (``nat.ice_tcp`` and ``nat.ice_lite``), which its documentation says not to use behind a 1:1 NAT.
    ice_tcp: bool = False
    #: Seconds without any request before Janus drops a session (0 disables the timeout).
    session_timeout: int = 60
    #: Janus log verbosity, 0 (none) to 7 (everything); 4 is Janus's default.
    debug_level: int = 4
    #: Use string room and participant IDs: SparkRTC's room_id and user_id are strings.
    string_ids: bool = True
    #: Folder holding Janus's ``plugins``, ``transports``, ``events`` and ``loggers`` folders; None
    #: finds Debian's multiarch folder, or leaves Janus's compiled-in defaults if there is none.
    lib_dir: Path | None = None

    def __post_init__(self) -> None:
        for name in ("http_port", "admin_port", "ws_port"):
            port = getattr(self, name)
            if not 0 < port < 65536:
                raise ValueError(f"{name} must be a TCP port number, got {port}")
        if len({self.http_port, self.admin_port, self.ws_port}) != 3:
            raise ValueError("http_port, admin_port and ws_port must differ")
        if self.rtp_port_range is not None:
            low, high = self.rtp_port_range
            if not 0 < low <= high < 65536:
                raise ValueError(f"rtp_port_range must be 1 <= min <= max <= 65535, got {self.rtp_port_range}")
        if self.ice_tcp and self.nat_1_1_mapping:
            raise ValueError("ice_tcp needs ICE-Lite, which does not work with nat_1_1_mapping (Janus's documentation)")
        if self.nat_1_1_mapping is not None:
            for entry in self.nat_1_1_mapping.split(","):
                ipaddress.ip_address(entry.strip())  # raises ValueError for anything but an IP address
        if not 0 <= self.debug_level <= 7:
            raise ValueError(f"debug_level must be in [0, 7], got {self.debug_level}")

    @property
    def http_url(self) -> str:
        """Base URL of the Janus API."""
        return f"http://{_url_host(self.bind_ip)}:{self.http_port}/janus"

    @property
    def ws_url(self) -> str:
        """URL of the Janus API WebSocket."""
        return f"ws://{_url_host(self.bind_ip)}:{self.ws_port}"

    @property
    def admin_url(self) -> str:
        """Base URL of the admin API."""
        return f"http://{_url_host(self.bind_ip)}:{self.admin_port}/admin"

    def resolved_lib_dir(self) -> Path | None:
        """The Janus module folder in use: ``lib_dir``, else Debian's, else None."""
        if self.lib_dir is not None:
            return self.lib_dir
        found = sorted(glob.glob(_DEFAULT_LIB_GLOB))
        return Path(found[0]) if found else None

    def files(self) -> dict[str, dict[str, dict[str, JcfgValue]]]:
        """The config folder's content: file name -> section -> key -> value."""
        lib_dir = self.resolved_lib_dir()
        general: dict[str, JcfgValue] = {
            "debug_level": self.debug_level,
            "debug_colors": False,
            "api_secret": self.api_secret,
            "admin_secret": self.admin_secret,
            "server_name": "ember",
            "session_timeout": self.session_timeout,
            # info requests would otherwise disclose library versions to anyone holding the port.
            "hide_dependencies": True,
            # Fail loudly instead of running with half the modules when the install is broken.
            "exit_on_dl_error": True,
            "protected_folders": ["/bin", "/boot", "/dev", "/etc", "/lib", "/proc", "/sbin", "/sys", "/usr"],
        }
        if lib_dir is not None:
            general.update(
                {
                    "plugins_folder": str(lib_dir / "plugins"),
                    "transports_folder": str(lib_dir / "transports"),
                    "events_folder": str(lib_dir / "events"),
                    "loggers_folder": str(lib_dir / "loggers"),
                }
            )
        sdp_ip = _single_ip(self.ice_enforce_list)
        if sdp_ip is not None:
            # Without it Janus autodetects "the" local IP for the SDP c= line, which inside a test
            # namespace without a default route falls back to 127.0.0.1.
            general["interface"] = sdp_ip

        media: dict[str, JcfgValue] = {}
        if self.rtp_port_range is not None:
            media["rtp_port_range"] = f"{self.rtp_port_range[0]}-{self.rtp_port_range[1]}"

        nat: dict[str, JcfgValue] = {
            "nice_debug": False,
            # Half-trickle: Janus puts its own candidates in the SDP it sends, so Ember never has to
            # relay Janus's trickled candidates to clients.
            "full_trickle": False,
            # Resolving .local candidates means multicast DNS queries on the LAN: never wanted here.
            "ignore_mdns": True,
        }
        if self.nat_1_1_mapping:
            # Host candidates carry the public address instead of the private one (a cloud VM's public IP
            # is on none of its interfaces); ICE-Lite stays off, as Janus's sample config requires for it.
            nat["nat_1_1_mapping"] = self.nat_1_1_mapping
            nat["keep_private_host"] = False
        if self.ice_tcp:
            # Janus: "Whether to enable ICE-TCP or not (warning: only works with ICE Lite)".
            nat["ice_lite"] = True
            nat["ice_tcp"] = True
        if self.ice_enforce_list:
            nat["ice_enforce_list"] = self.ice_enforce_list
        else:
            nat["ice_ignore_list"] = "vmnet"

        janus_jcfg: dict[str, dict[str, JcfgValue]] = {
            "general": general,
            "certificates": {},
            "media": media,
            "nat": nat,
            "plugins": {"disable": _disable_list(lib_dir, "plugins", _KNOWN_PLUGINS, keep=(VIDEOROOM_PLUGIN,))},
            "transports": {
                "disable": _disable_list(
                    lib_dir, "transports", _KNOWN_TRANSPORTS, keep=(HTTP_TRANSPORT, WEBSOCKETS_TRANSPORT)
                )
            },
            "loggers": {"disable": _disable_list(lib_dir, "loggers", _KNOWN_LOGGERS)},
            "events": {
                "broadcast": False,
                "disable": _disable_list(lib_dir, "events", _KNOWN_EVENT_HANDLERS),
            },
        }
        http_jcfg: dict[str, dict[str, JcfgValue]] = {
            "general": {
                "json": "compact",
                "base_path": "/janus",
                "http": True,
                "port": self.http_port,
                "ip": self.bind_ip,
                "https": False,
                # Second line of defence behind the loopback bind.
                **_acl("acl", self.bind_ip),
            },
            "admin": {
                "admin_base_path": "/admin",
                "admin_http": True,
                "admin_port": self.admin_port,
                "admin_ip": self.bind_ip,
                "admin_https": False,
                **_acl("admin_acl", self.bind_ip),
            },
            "cors": {},
        }
        websockets_jcfg: dict[str, dict[str, JcfgValue]] = {
            "general": {
                "json": "compact",
                "ws": True,
                "ws_port": self.ws_port,
                "ws_ip": self.bind_ip,
                "wss": False,
                # libwebsockets' own log lines: errors and warnings only.
                "ws_logging": "err,warn",
                **_acl("ws_acl", self.bind_ip),
            },
            "admin": {"admin_ws": False, "admin_wss": False},
        }
        videoroom_jcfg: dict[str, dict[str, JcfgValue]] = {
            "general": {
                "admin_key": self.room_admin_key,
                "lock_rtp_forward": True,
                "string_ids": self.string_ids,
            },
        }
        return {
            "janus.jcfg": janus_jcfg,
            "janus.transport.http.jcfg": http_jcfg,
            "janus.transport.websockets.jcfg": websockets_jcfg,
            "janus.plugin.videoroom.jcfg": videoroom_jcfg,
        }

    def write(self, directory: Path | str) -> Path:
        """Write the config folder into ``directory`` (created if needed); return the folder.

        Files are written owner-only because they hold the secrets.
        """
        folder = Path(directory)
        folder.mkdir(parents=True, exist_ok=True)
        for name, sections in self.files().items():
            path = folder / name
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as out:
                out.write(render_jcfg(sections))
        return folder


def render_jcfg(sections: Mapping[str, Mapping[str, JcfgValue]]) -> str:
    """Render sections of settings in Janus's libconfig syntax."""
    lines = ["# Generated by Ember; edits are overwritten at the next start."]
    for section, settings in sections.items():
        lines.append(f"{section}: {{")
        for key, value in settings.items():
            lines.append(f"\t{key} = {_render_value(value)}")
        lines.append("}")
    return "\n".join(lines) + "\n"


def _render_value(value: JcfgValue) -> str:
    # bool before int: bool is an int subclass.
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return _quote(value)
    return "[" + ", ".join(_quote(item) for item in value) + "]"


def _quote(text: str) -> str:
    if any(ord(char) < 0x20 for char in text):
        raise ValueError(f"control characters cannot be written to a jcfg file: {text!r}")
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _disable_list(lib_dir: Path | None, kind: str, known: Iterable[str], keep: Iterable[str] = ()) -> str:
    names = set(known)
    if lib_dir is not None and (lib_dir / kind).is_dir():
        # Janus loads every file whose name ends in .so (not the versioned libfoo.so.1 links).
        names.update(path.name for path in (lib_dir / kind).glob("*.so"))
    names.difference_update(keep)
    return ",".join(sorted(names))


def _single_ip(enforce_list: str | None) -> str | None:
    if not enforce_list or "," in enforce_list:
        return None
    try:
        return str(ipaddress.ip_address(enforce_list.strip()))
    except ValueError:
        return None


def _acl(key: str, bind_ip: str) -> dict[str, JcfgValue]:
    # Janus matches the ACL as a prefix of the client's address; on a loopback bind every client
    # address is a loopback one, on any other bind the caller decides who may connect.
    address = ipaddress.ip_address(bind_ip)
    if not address.is_loopback:
        return {}
    return {key: "127." if address.version == 4 else "::1"}


def _url_host(ip: str) -> str:
    return f"[{ip}]" if ":" in ip else ip


def free_loopback_ports(n: int) -> list[int]:
    """``n`` different TCP ports on loopback that are free now, for Janus's HTTP, admin and WebSocket
    transports. All are held open while they are chosen: a port closed before the next is asked for may be
    handed out again, and Janus cannot listen twice on one."""
    with contextlib.ExitStack() as held:
        ports = []
        for _ in range(n):
            sock = held.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
            sock.bind(("127.0.0.1", 0))
            ports.append(int(sock.getsockname()[1]))
        return ports
