"""Where Ember may connect on an application's behalf: record callback URLs (spec 4.3) and RTMP push URLs
(spec Table 4-27). One policy, checked when a URL is saved and again at every delivery or connection.

A URL an application gives is parsed strictly (:func:`parse_destination`): ``http``/``https`` or
``rtmp``/``rtmps`` as asked, no user-info, a host that is a DNS name or a canonical IP literal. Numeric
hosts that resolvers take for addresses but that are not canonical (``2130706433``, ``0x7f.1``,
``0177.0.0.1``, ``127.1``; after IDNA normalisation, so full-width digits count too), IPv6 zone ids and
IPv4-mapped IPv6 literals are refused outright.

A host name is resolved (every A and AAAA answer) and every address must be public (:func:`classify`):
loopback, link-local, private, CGNAT (100.64.0.0/10), unique-local, multicast, reserved, unspecified and
the clouds' metadata addresses are refused unless the operator's allow-list (``EMBER_OUTBOUND_ALLOW``,
:class:`AllowList`) names them:

- a CIDR or address allows every destination address inside it;
- a host name (``callbacks.internal``, or ``*.corp.example`` for the names under it) allows whatever that
  name resolves to, except the metadata, unspecified and multicast addresses (only a CIDR naming them
  allows those), and is not resolved when a URL naming it is saved (the operator vouches for it).

At delivery the answer is resolved and judged again, and the connection goes to a vetted address, never to
a second resolution: a DNS answer that changes between the check and the connection (rebinding) cannot
slip through. Callers keep the URL's host for TLS (SNI, certificate) and ``Host``.
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
import socket
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Final
from urllib.parse import urlsplit

from emberrtc.domain.errors import InvalidParameterValue

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

HTTP_SCHEMES: Final = ("http", "https")
RTMP_SCHEMES: Final = ("rtmp", "rtmps")
DEFAULT_PORTS: Final = {"http": 80, "https": 443, "rtmp": 1935, "rtmps": 443}

#: Instance metadata services (AWS, GCP, Azure, OpenStack, Oracle: 169.254.169.254; AWS over IPv6;
#: Azure's wire server; Alibaba Cloud). Refused even for an allowed host name; only a CIDR allows them.
METADATA_ADDRESSES: Final = frozenset(
    ipaddress.ip_address(a) for a in ("169.254.169.254", "fd00:ec2::254", "168.63.129.16", "100.100.100.200")
)

#: The allow-list a server listening on loopback only starts with (``EMBER_OUTBOUND_ALLOW`` unset).
LOOPBACK_DEFAULT: Final = "127.0.0.0/8,::1/128"

# Special ranges named in refusals (the first match names the kind); anything else that Python does not
# call global is "reserved".
_KINDS: Final = tuple(
    (ipaddress.ip_network(net), kind)
    for net, kind in (
        ("0.0.0.0/8", "unspecified"),
        ("::/128", "unspecified"),
        ("127.0.0.0/8", "loopback"),
        ("::1/128", "loopback"),
        ("169.254.0.0/16", "link-local"),
        ("fe80::/10", "link-local"),
        ("10.0.0.0/8", "private"),
        ("172.16.0.0/12", "private"),
        ("192.168.0.0/16", "private"),
        ("100.64.0.0/10", "carrier-grade NAT"),
        ("fc00::/7", "unique-local"),
        ("224.0.0.0/4", "multicast"),
        ("ff00::/8", "multicast"),
    )
)
# RFC 1123 host name labels (and '_', which some internal names carry).
_LABEL = re.compile(r"^(?!-)[a-z0-9_-]{1,63}(?<!-)$")
# What inet_aton reads as a number: decimal, octal (leading 0) or hex (0x) parts.
_NUMERIC_PART = re.compile(r"^(0x[0-9a-f]*|[0-9]+)$")


class OutboundRefused(InvalidParameterValue):
    """A destination the outbound policy does not allow (spec 6.2 RTC.00001003, 400 when saved)."""


def _embedded_ipv4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address inside an IPv4-mapped, IPv4-compatible, NAT64 (64:ff9b::/96) or 6to4 address."""
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.sixtofour is not None:
        return ip.sixtofour
    packed = ip.packed
    if ip in ipaddress.ip_network("64:ff9b::/96") or (packed[:12] == bytes(12) and int(ip) > 1):
        return ipaddress.IPv4Address(packed[12:])
    return None


def classify(ip: IPAddress) -> str | None:
    """What kind of non-public address ``ip`` is ("loopback", "private", "cloud metadata", ...), or None
    when it is a public unicast address an outbound connection may go to."""
    if ip in METADATA_ADDRESSES:
        return "cloud metadata"
    if isinstance(ip, ipaddress.IPv6Address):
        inner = _embedded_ipv4(ip)
        if inner is not None:
            kind = classify(inner)
            return f"{kind}: {inner} inside an IPv6 address" if kind else None
        if ip in ipaddress.ip_network("2001::/32"):
            return "reserved (Teredo)"
    for net, kind in _KINDS:
        if ip in net:
            return kind
    if ip.is_multicast:
        return "multicast"
    if not ip.is_global:
        return "reserved"
    return None


def _never_by_name(ip: IPAddress) -> bool:
    """Addresses an allowed host name does not open (only a CIDR does)."""
    inner = _embedded_ipv4(ip) if isinstance(ip, ipaddress.IPv6Address) else None
    for a in (ip, inner):
        if a is not None and (a in METADATA_ADDRESSES or a.is_unspecified or a.is_multicast):
            return True
    return False


def normalise_host(host: str) -> str:
    """A URL's host as an ASCII, lower-case DNS name or IP literal; ValueError when it is neither, or when
    it is a numeric form that is not a canonical address (``2130706433``, ``0x7f.1``, ``127.1``)."""
    if host.startswith("[") or ":" in host:
        raise ValueError("IPv6 addresses must be written in brackets")
    try:
        ascii_host = host.encode("idna").decode("ascii").lower() if not host.isascii() else host.lower()
    except UnicodeError:
        raise ValueError(f"host {host!r} is not a valid host name") from None
    name = ascii_host.removesuffix(".")
    labels = name.split(".")
    if not name or not all(_LABEL.fullmatch(label) for label in labels):
        raise ValueError(f"host {host!r} is not a valid host name")
    if _NUMERIC_PART.fullmatch(labels[-1]):
        # A name whose last label is a number is an address to resolvers (inet_aton): only the canonical
        # dotted quad is accepted, so what is checked is what a resolver would connect to.
        try:
            ipaddress.IPv4Address(ascii_host)
        except ValueError:
            raise ValueError(
                f"host {host!r} is a numeric form that is not a canonical IPv4 address (write a.b.c.d)"
            ) from None
    return ascii_host


@dataclass(frozen=True)
class Destination:
    """A parsed outbound URL: its scheme, host (ASCII name or address, without brackets) and port."""

    url: str
    scheme: str
    host: str
    port: int
    #: The host when the URL names an address.
    ip: IPAddress | None

    @property
    def host_header(self) -> str:
        """``Host`` as the URL names it (the port only when it is not the scheme's default)."""
        host = f"[{self.host}]" if isinstance(self.ip, ipaddress.IPv6Address) else self.host
        return host if self.port == DEFAULT_PORTS[self.scheme] else f"{host}:{self.port}"

    def with_address(self, ip: IPAddress) -> str:
        """The URL with its host replaced by ``ip`` (to connect to a vetted address)."""
        parts = urlsplit(self.url)
        host = f"[{ip}]" if isinstance(ip, ipaddress.IPv6Address) else str(ip)
        netloc = host if parts.port is None else f"{host}:{parts.port}"
        return parts._replace(netloc=netloc).geturl()


def parse_destination(url: str, schemes: Iterable[str]) -> Destination:
    """``url`` parsed strictly (see the module docstring); OutboundRefused says what is wrong."""
    schemes = tuple(schemes)
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise OutboundRefused(f"{_schemes_text(schemes)} URL has an invalid host or port") from None
    if parts.scheme not in schemes or not parts.hostname:
        raise OutboundRefused(f"the URL must be {_schemes_text(schemes)} with a host")
    if "@" in parts.netloc:
        raise OutboundRefused("the URL must not carry user-info (user:password@)")
    if port == 0:
        raise OutboundRefused("the URL's port must be 1-65535")
    bracketed = parts.netloc.rpartition("@")[2].startswith("[")
    hostname = parts.hostname
    ip: IPAddress | None = None
    if bracketed:
        if "%" in hostname:
            raise OutboundRefused("the URL's IPv6 address must not carry a zone id (%)")
        try:
            ip = ipaddress.IPv6Address(hostname)
        except ValueError:
            raise OutboundRefused(f"the URL's host [{hostname}] is not an IPv6 address") from None
        if ip.ipv4_mapped is not None:
            raise OutboundRefused("the URL's host is an IPv4-mapped IPv6 address: write the IPv4 address")
        host = str(ip)
    else:
        try:
            host = normalise_host(hostname)
        except ValueError as exc:
            raise OutboundRefused(f"the URL's {exc}") from None
        try:
            ip = ipaddress.IPv4Address(host)
        except ValueError:
            ip = None
    return Destination(url, parts.scheme, host, port if port is not None else DEFAULT_PORTS[parts.scheme], ip)


def _schemes_text(schemes: tuple[str, ...]) -> str:
    return " or ".join(f"{s}://" for s in schemes)


@dataclass(frozen=True)
class AllowList:
    """The operator's exceptions (``EMBER_OUTBOUND_ALLOW``): networks, and host names (``*.`` for the names
    under a domain)."""

    networks: tuple[IPNetwork, ...] = ()
    names: tuple[str, ...] = ()

    @classmethod
    def parse(cls, value: str) -> AllowList:
        """Comma-separated CIDRs, addresses and host names; ``none`` alone: nothing. ValueError names a bad
        entry."""
        entries = [e.strip() for e in value.split(",") if e.strip()]
        if [e.lower() for e in entries] == ["none"]:
            return cls()
        networks: list[IPNetwork] = []
        names: list[str] = []
        for entry in entries:
            try:
                networks.append(ipaddress.ip_network(entry.strip("[]"), strict=False))
                continue
            except ValueError:
                pass
            wildcard = entry.startswith("*.")
            try:
                name = normalise_host(entry[2:] if wildcard else entry).removesuffix(".")
            except ValueError:
                raise ValueError(f"outbound_allow: {entry!r} is not a CIDR, an address or a host name") from None
            names.append(f"*.{name}" if wildcard else name)
        return cls(tuple(networks), tuple(names))

    @classmethod
    def from_entries(cls, entries: Iterable[str]) -> AllowList:
        """The list :meth:`entries` gave (an empty one: nothing allowed)."""
        return cls.parse(",".join(entries) or "none")

    def entries(self) -> tuple[str, ...]:
        """The list as text (it travels to recording workers in their plan)."""
        return tuple(str(n) for n in self.networks) + self.names

    def allows_address(self, ip: IPAddress) -> bool:
        return any(ip.version == n.version and ip in n for n in self.networks)

    def allows_name(self, host: str) -> bool:
        host = host.removesuffix(".")
        for name in self.names:
            if name.startswith("*."):
                if host.endswith(name[1:]):
                    return True
            elif host == name:
                return True
        return False

    def __str__(self) -> str:
        return ",".join(self.entries()) or "none"


Resolver = Callable[[str, int], list[IPAddress]]


def system_resolver(host: str, port: int) -> list[IPAddress]:
    """Every address (A and AAAA) the system resolver gives for ``host``, in its order, without duplicates."""
    out: list[IPAddress] = []
    for _family, _type, _proto, _canon, sockaddr in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM):
        ip = ipaddress.ip_address(str(sockaddr[0]).partition("%")[0])
        if ip not in out:
            out.append(ip)
    return out


@dataclass(frozen=True)
class Vetted:
    """A destination and the addresses it may be connected to (in the resolver's order)."""

    destination: Destination
    addresses: tuple[IPAddress, ...]


@dataclass
class OutboundPolicy:
    """The check of every outbound destination (see the module docstring). ``resolver`` (default: the
    system's, :func:`system_resolver`) is swappable: tests control what a name resolves to."""

    allow: AllowList = field(default_factory=AllowList)
    resolver: Resolver | None = None
    #: Longest wait for a resolution in :meth:`check` and :meth:`vet_async`.
    resolve_timeout: float = 10.0

    # --- when a URL is saved ---------------------------------------------------------------------------

    async def check(self, url: str, schemes: Iterable[str]) -> Destination:
        """The save-time check: the URL parses strictly and, unless the operator allows its host by name, its
        host resolves to allowed addresses only. OutboundRefused (RTC.00001003) says why not."""
        d = parse_destination(url, schemes)
        if d.ip is None and self.allow.allows_name(d.host):
            return d
        await self._resolve_and_judge(d)
        return d

    # --- at every delivery or connection ---------------------------------------------------------------

    async def vet_async(self, url: str, schemes: Iterable[str]) -> Vetted:
        """The delivery-time check, resolving off the event loop: the addresses to connect to."""
        d = parse_destination(url, schemes)
        return Vetted(d, await self._resolve_and_judge(d))

    def vet(self, url: str, schemes: Iterable[str]) -> Vetted:
        """:meth:`vet_async` for a thread that may block (an RTMP push's)."""
        d = parse_destination(url, schemes)
        return Vetted(d, self._judge(d, self._lookup(d)))

    # --- the rules -------------------------------------------------------------------------------------

    async def _resolve_and_judge(self, d: Destination) -> tuple[IPAddress, ...]:
        if d.ip is not None:
            return self._judge(d, [d.ip])
        try:
            async with asyncio.timeout(self.resolve_timeout):
                answers = await asyncio.to_thread(self._lookup, d)
        except TimeoutError:
            raise OutboundRefused(f"host {d.host} could not be resolved within {self.resolve_timeout:g} s") from None
        return self._judge(d, answers)

    def _lookup(self, d: Destination) -> list[IPAddress]:
        if d.ip is not None:
            return [d.ip]
        try:
            answers = (self.resolver or system_resolver)(d.host, d.port)
        except (OSError, UnicodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else type(exc).__name__
            raise OutboundRefused(f"host {d.host} could not be resolved ({reason})") from None
        if not answers:
            raise OutboundRefused(f"host {d.host} could not be resolved (no address)")
        return answers

    def _judge(self, d: Destination, answers: list[IPAddress]) -> tuple[IPAddress, ...]:
        """Every answer must be allowed (one bad answer refuses the host: a resolver may rotate them)."""
        by_name = d.ip is None and self.allow.allows_name(d.host)
        for ip in answers:
            if self.allow.allows_address(ip):
                continue
            if by_name and not _never_by_name(ip):
                continue
            kind = classify(ip) if not by_name else "cloud metadata, unspecified or multicast: allowed by CIDR only"
            if kind is None:
                continue
            named = f"host {d.host} resolves to {ip}" if d.ip is None else f"address {ip}"
            raise OutboundRefused(
                f"{named} ({kind}), which is not an allowed destination (the operator may allow it with "
                "EMBER_OUTBOUND_ALLOW)"
            )
        return tuple(answers)
