"""Client addresses to provinces (spec 6.5) through a real MaxMind-format database read by ``maxminddb``."""

from __future__ import annotations

from pathlib import Path

import pytest

from emberrtc.stats.region import OTHERS, Location, RegionLocator, region_code
from tests.support.mmdb import write_mmdb


@pytest.fixture
def database(tmp_path: Path) -> Path:
    return write_mmdb(
        tmp_path / "city.mmdb",
        {
            "1.2.3.0/24": {"country": {"iso_code": "CN"}, "subdivisions": [{"iso_code": "GD"}], "isp": "CTCC"},
            "1.2.4.0/24": {"country": {"iso_code": "CN"}, "subdivisions": [{"iso_code": "SN"}]},
            "1.2.5.0/24": {"country": {"iso_code": "CN"}},  # no province known
            "5.6.7.0/24": {"country": {"iso_code": "HK"}, "traits": {"isp": "HKBN"}},
            "8.8.8.0/24": {"country": {"iso_code": "US"}, "subdivisions": [{"iso_code": "CA"}]},
        },
    )


def test_public_addresses_map_to_provinces(database: Path) -> None:
    locator = RegionLocator(database)
    assert locator.has_database
    assert locator.locate("1.2.3.4") == Location("GD", "CTCC")
    assert locator.locate("1.2.4.200").region == "SN"
    assert locator.locate("1.2.5.1") == Location(OTHERS, "")
    assert locator.locate("5.6.7.8") == Location("HK", "HKBN")  # Hong Kong is a country in the database
    assert locator.locate("8.8.8.8").region == OTHERS  # outside Table 6-2
    assert locator.locate("9.9.9.9").region == OTHERS  # not in the database
    assert locator.locate("::ffff:1.2.3.4").region == "GD"  # IPv4-mapped IPv6 as the server may see it
    locator.close()


@pytest.mark.parametrize("address", ["127.0.0.1", "10.1.2.3", "192.168.0.9", "169.254.1.1", "::1", "fe80::1", "", None])
def test_private_and_loopback_addresses_are_others(database: Path, address: str | None) -> None:
    assert RegionLocator(database).locate(address) == Location(OTHERS, "")


@pytest.mark.parametrize("address", ["not an ip", "1.2.3", "2001:db8::1", "2a00:1450::1"])
def test_unreadable_or_unknown_addresses_are_others(database: Path, address: str) -> None:
    assert RegionLocator(database).locate(address).region == OTHERS


def test_without_a_database_everyone_is_others(tmp_path: Path) -> None:
    assert RegionLocator(None).locate("1.2.3.4") == Location(OTHERS, "")
    broken = tmp_path / "broken.mmdb"
    broken.write_bytes(b"not a database")
    locator = RegionLocator(broken)  # logged, not fatal: statistics still count, as OT
    assert not locator.has_database and locator.locate("1.2.3.4").region == OTHERS


def test_region_filter_names_and_abbreviations() -> None:
    assert region_code("Guangdong") == "GD" and region_code("gd") == "GD" and region_code(" GD ") == "GD"
    assert region_code("Shannxi") == "SN" and region_code("Shaanxi") == "SN"  # the spec's spelling, and the usual
    assert region_code("Inner Mongolia") == "NM" and region_code("Others") == "OT"
    assert region_code("Atlantis") is None and region_code("XX") is None


def test_the_database_is_configured_by_environment(tmp_path: Path) -> None:
    from emberrtc.config import Settings

    settings = Settings(data_dir=tmp_path).with_env({"EMBER_IP_DATABASE": str(tmp_path / "city.mmdb")})
    assert settings.ip_database == str(tmp_path / "city.mmdb")
    assert Settings(data_dir=tmp_path).with_env({}).ip_database == ""
