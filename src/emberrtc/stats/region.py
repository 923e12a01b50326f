"""Where a client is: its IP address mapped to a province abbreviation (spec 6.5, Table 6-2) and an ISP.

The mapping reads an IP database in MaxMind's format (``.mmdb``: GeoIP2/GeoLite2 City, or any database
laid out like it) when the operator configures one (``EMBER_IP_DATABASE``), through the ``maxminddb``
package. Table 6-2's abbreviations are the ISO 3166-2:CN subdivision codes (``GD`` for Guangdong), which
is what such a database holds in ``subdivisions[0].iso_code`` for an address in China; Hong Kong, Macao
and Taiwan are countries there (``country.iso_code`` ``HK``, ``MO``, ``TW``). Everything else counts as
``OT`` ("Others"): private, loopback and link-local addresses, addresses the database does not know,
addresses outside those regions, and every address when no database is configured.

The ISP is the record's ``isp`` field (GeoIP2 ISP layout) or ``traits.isp`` (GeoIP2 Enterprise layout)
when the database has one, else ``""``.
"""

from __future__ import annotations

import ipaddress
import logging
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

OTHERS = "OT"

#: spec 6.5 Table 6-2: province name -> abbreviation (the names are the spec's spellings).
PROVINCES: dict[str, str] = {
    "Others": "OT",
    "Beijing": "BJ",
    "Tianjin": "TJ",
    "Chongqing": "CQ",
    "Shanghai": "SH",
    "Guangdong": "GD",
    "Hainan": "HI",
    "Guangxi": "GX",
    "Yunnan": "YN",
    "Shanxi": "SX",
    "Hebei": "HE",
    "Inner Mongolia": "NM",
    "Ningxia": "NX",
    "Liaoning": "LN",
    "Jilin": "JL",
    "Heilongjiang": "HL",
    "Jiangsu": "JS",
    "Zhejiang": "ZJ",
    "Jiangxi": "JX",
    "Shandong": "SD",
    "Fujian": "FJ",
    "Anhui": "AH",
    "Sichuan": "SC",
    "Tibet": "XZ",
    "Shannxi": "SN",
    "Qinghai": "QH",
    "Xinjiang": "XJ",
    "Gansu": "GS",
    "Guizhou": "GZ",
    "Hubei": "HB",
    "Hunan": "HN",
    "Henan": "HA",
    "Hong Kong": "HK",
    "Macao": "MO",
    "Taiwan": "TW",
}
ABBREVIATIONS = frozenset(PROVINCES.values())
_BY_NAME = {name.lower(): abbr for name, abbr in PROVINCES.items()}
# Common other spellings of the same provinces (the spec's "Shannxi" is Shaanxi).
_BY_NAME.update({"shaanxi": "SN", "xizang": "XZ", "macau": "MO", "neimenggu": "NM", "nei mongol": "NM"})
_COUNTRY_REGIONS = frozenset({"HK", "MO", "TW"})


def region_code(value: str) -> str | None:
    """The abbreviation for a province given as a name (``Guangdong``) or an abbreviation (``GD``), in any
    case; None when it is neither (the ``region`` filter of spec 5.2)."""
    text = value.strip()
    if text.upper() in ABBREVIATIONS:
        return text.upper()
    return _BY_NAME.get(text.lower())


@dataclass(frozen=True)
class Location:
    """A client's province abbreviation (``OT`` when unknown) and ISP (``""`` when unknown)."""

    region: str = OTHERS
    isp: str = ""


UNKNOWN = Location()


def _is_public(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    return ip.is_global and not ip.is_multicast


def location_of_record(record: Any) -> Location:
    """Read a MaxMind-format record (City or ISP layout) into a :class:`Location`."""
    if not isinstance(record, dict):
        return UNKNOWN
    isp = record.get("isp")
    traits = record.get("traits")
    if not isinstance(isp, str) and isinstance(traits, dict):
        isp = traits.get("isp")
    isp = isp if isinstance(isp, str) else ""
    country = record.get("country")
    country_code = country.get("iso_code") if isinstance(country, dict) else None
    region = OTHERS
    if country_code in _COUNTRY_REGIONS:
        region = str(country_code)
    elif country_code == "CN":
        subdivisions = record.get("subdivisions")
        if isinstance(subdivisions, list) and subdivisions and isinstance(subdivisions[0], dict):
            code = subdivisions[0].get("iso_code")
            if isinstance(code, str) and code.upper() in ABBREVIATIONS:
                region = code.upper()
    return Location(region, isp[:64])


class RegionLocator:
    """Maps client addresses to :class:`Location`; without a database every address is ``OT``.

    The database is opened once (memory-mapped by ``maxminddb``) and shared; lookups are thread-safe.
    A database that cannot be opened is logged and treated as absent, so statistics still count (as
    ``OT``) rather than refusing joins.
    """

    def __init__(self, database: Path | None = None) -> None:
        self._reader: Any = None
        self._lock = threading.Lock()
        if database is not None:
            try:
                import maxminddb

                self._reader = maxminddb.open_database(str(database))
            except (OSError, ValueError, RuntimeError, ImportError) as exc:  # InvalidDatabaseError: RuntimeError
                log.error("cannot open the IP database %s (every client counts as OT): %s", database, exc)

    @property
    def has_database(self) -> bool:
        return self._reader is not None

    def locate(self, address: str | None) -> Location:
        """The location of ``address`` (an IPv4 or IPv6 literal); ``OT`` for private or unknown ones."""
        if not address:
            return UNKNOWN
        try:
            ip = ipaddress.ip_address(address.strip().strip("[]"))
        except ValueError:
            return UNKNOWN
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        if not _is_public(ip) or self._reader is None:
            return UNKNOWN
        try:
            record = self._reader.get(str(ip))
        except (ValueError, RuntimeError):
            # an IPv6 address looked up in an IPv4-only database (ValueError), or a corrupt record
            return UNKNOWN
        return location_of_record(record)

    def close(self) -> None:
        with self._lock:
            if self._reader is not None:
                self._reader.close()
                self._reader = None
