"""Which of this machine's network addresses Janus can gather ICE candidates on.

Janus (libnice) never offers a loopback address as an ICE candidate. A machine, container or network
namespace whose only interface is ``lo`` therefore runs Janus fine, but no client can ever connect media:
every publish and subscribe fails at ICE. ``ember serve`` checks at start (:func:`ice_warning`) and says so
in its own log, naming ``EMBER_MEDIA_IP``, instead of leaving the reason in ``janus.log``.

The matching follows Janus's ``nat.ice_enforce_list`` (``EMBER_MEDIA_IP``): an entry names an interface or
an address, and matches an interface whose name, or an address whose text, starts with it. Without the
setting every interface but the ignored ones (``vmnet``, as Ember's generated config says) is used.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

import ifaddr

IGNORED_PREFIXES = ("vmnet",)  # janus_config: nat.ice_ignore_list when no enforce list is given


@dataclass(frozen=True)
class Candidate:
    """One address Janus may gather a host candidate on."""

    interface: str
    ip: str


def machine_addresses() -> list[Candidate]:
    """Every address of every interface of this machine (in the current network namespace)."""
    found: list[Candidate] = []
    for adapter in ifaddr.get_adapters():
        for ip in adapter.ips:
            text = ip.ip if isinstance(ip.ip, str) else ip.ip[0]
            found.append(Candidate(adapter.nice_name, text))
    return found


def usable_addresses(media_ip: str, addresses: list[Candidate] | None = None) -> list[Candidate]:
    """The addresses Janus would gather ICE candidates on with ``EMBER_MEDIA_IP`` = ``media_ip``."""
    addresses = machine_addresses() if addresses is None else addresses
    wanted = [item.strip() for item in media_ip.split(",") if item.strip()]
    usable = []
    for c in addresses:
        try:
            ip = ipaddress.ip_address(c.ip.split("%")[0])
        except ValueError:
            continue
        if ip.is_loopback or ip.is_unspecified:
            continue
        if wanted:
            if not any(c.interface.startswith(w) or c.ip.startswith(w) for w in wanted):
                continue
        elif c.interface.startswith(IGNORED_PREFIXES):
            continue
        usable.append(c)
    return usable


def ice_warning(media_ip: str, addresses: list[Candidate] | None = None) -> str | None:
    """A warning for the log when no client could reach Janus's media, or None when some address is usable."""
    addresses = machine_addresses() if addresses is None else addresses
    if usable_addresses(media_ip, addresses):
        return None
    present = ", ".join(sorted({f"{c.interface} {c.ip}" for c in addresses})) or "none"
    if media_ip:
        reason = f"EMBER_MEDIA_IP={media_ip!r} matches no non-loopback interface or address of this machine"
    else:
        reason = "this machine has no network interface but loopback"
    return (
        f"Janus has no address to gather ICE candidates on ({reason}; addresses here: {present}). Janus never "
        "uses loopback for media, so no client will be able to publish or subscribe: every call fails at ICE. "
        "Run Ember where clients can reach a network interface, and set EMBER_MEDIA_IP to that interface or "
        "address (e.g. EMBER_MEDIA_IP=eth0 or EMBER_MEDIA_IP=192.0.2.10)."
    )
