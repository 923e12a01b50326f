"""The base URL applications and browsers reach this server by (``download_url``s, start-up log).

``EMBER_PUBLIC_URL`` wins. Otherwise it is derived from what the server listens on: a specific address is
the one clients use (``http(s)://{host}:{port}``), unless a TLS certificate names the server and not that
address (then the certificate's name: browsers check it). A wildcard address (``0.0.0.0``, ``::``) names no
machine a client could reach, so the name comes from the TLS certificate (its first DNS name that is not a
wildcard), else from ``EMBER_MEDIA_PUBLIC_IP``; with neither, ``ember serve`` refuses to start and says
what to set, rather than handing out ``http://0.0.0.0:8080/...`` links that work nowhere.
"""

from __future__ import annotations

import ipaddress

from emberrtc.config import Settings, public_ip_list


class PublicUrlUnknown(ValueError):
    """No public URL is configured and none can be derived; the message says what to set."""


def is_wildcard(host: str) -> bool:
    """True for an address that means "every interface" (``0.0.0.0``, ``::``, empty)."""
    if not host:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_unspecified
    except ValueError:
        return False


def url_for(scheme: str, host: str, port: int) -> str:
    """``scheme://host:port`` with IPv6 in brackets and the scheme's default port left out."""
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    default = {"http": 80, "https": 443}[scheme]
    return f"{scheme}://{host}" if port == default else f"{scheme}://{host}:{port}"


def public_base_url(
    settings: Settings, certificate_names: tuple[str, ...] = (), certificate_ips: tuple[str, ...] = ()
) -> str:
    """The public base URL (no trailing slash), or :class:`PublicUrlUnknown`.

    ``certificate_names`` and ``certificate_ips``: the DNS names and IP addresses of the served TLS
    certificate (``api.tls.read_certificate``). Over TLS the URL must name what the certificate covers: a
    specific listening address is used when the certificate lists it, else the certificate's first name.
    """
    if settings.public_url:
        return settings.public_url.rstrip("/")
    scheme = "https" if settings.tls_cert else "http"
    names = [n for n in certificate_names if not n.startswith("*")]
    specific = not is_wildcard(settings.host)
    if specific and (not names or settings.host.strip("[]") in certificate_ips):
        return url_for(scheme, settings.host, settings.port)
    if names:
        return url_for(scheme, names[0], settings.port)
    public_ips = public_ip_list(settings.media_public_ip)
    if public_ips:
        return url_for(scheme, public_ips[0], settings.port)
    example = url_for(scheme, "rtc.example.com", settings.port)
    raise PublicUrlUnknown(
        f"ember serve listens on every interface ({settings.host or '0.0.0.0'}) and cannot tell which name or "
        f"address clients reach it by, so its download links would point nowhere: set EMBER_PUBLIC_URL to the "
        f"URL applications and browsers use (e.g. EMBER_PUBLIC_URL={example}), or EMBER_MEDIA_PUBLIC_IP to this "
        "machine's public address, or listen on one address with --host"
    )


def advertised_addresses(settings: Settings, public_url: str) -> str:
    """One log line saying what clients will be told to use: the URL (and the signalling WebSocket's), and
    the media addresses and ports Janus offers in its ICE candidates."""
    from emberrtc.media.ice_interfaces import usable_addresses

    ws = "wss" if public_url.startswith("https:") else "ws"
    signalling = f"{ws}{public_url[public_url.index(':') :]}/v1/rtc/signalling"
    listen = f"{settings.host}:{settings.port}" + (" (TLS)" if settings.tls_cert else "")
    line = (
        f"clients are told: API, SDK and downloads at {public_url}, signalling at {signalling} (listening on {listen})"
    )
    if not settings.media_enabled:
        return line + "; no media plane (EMBER_MEDIA_ENABLED=false)"
    private = sorted({c.ip for c in usable_addresses(settings.media_ip)})
    public = public_ip_list(settings.media_public_ip)
    if public:
        media = f"{', '.join(public)} (1:1 NAT of {', '.join(private) or 'no local address'})"
    else:
        media = ", ".join(private) or "no address (see the warning about EMBER_MEDIA_IP)"
    ports = (
        f"ports {settings.media_ports}"
        if settings.media_ports
        else "any port of the ephemeral range (set EMBER_MEDIA_PORTS=MIN-MAX to open a fixed range in a firewall)"
    )
    transport = "UDP and TCP (ICE-TCP)" if settings.media_ice_tcp else "UDP"
    return f"{line}; media (ICE, {transport}) at {media}, {ports}"
