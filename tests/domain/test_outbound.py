"""The outbound policy (``domain.outbound``): strict parsing, the address classes, the allow-list, resolution
with a resolver the test controls, and the default the configuration gives."""

from __future__ import annotations

import ipaddress
from dataclasses import replace

import pytest

from emberrtc.config import Settings, outbound_allow_list
from emberrtc.domain.outbound import (
    HTTP_SCHEMES,
    RTMP_SCHEMES,
    AllowList,
    OutboundPolicy,
    OutboundRefused,
    classify,
    parse_destination,
)

ip = ipaddress.ip_address


class Resolver:
    """What each name resolves to, changeable between calls; records every lookup."""

    def __init__(self, answers: dict[str, list[str]]) -> None:
        self.answers = answers
        self.asked: list[str] = []

    def __call__(self, host: str, port: int) -> list[ipaddress.IPv4Address | ipaddress.IPv6Address]:
        self.asked.append(host)
        if host not in self.answers:
            raise OSError(-2, "Name or service not known")
        return [ip(a) for a in self.answers[host]]


def policy(allow: str = "none", **answers: list[str]) -> OutboundPolicy:
    return OutboundPolicy(AllowList.parse(allow), Resolver({k.replace("_", "."): v for k, v in answers.items()}))


# --- parsing -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("http://2130706433/cb", "numeric form"),
        ("http://0x7f.1/cb", "numeric form"),
        ("http://0x7f000001/cb", "numeric form"),
        ("http://0177.0.0.1/cb", "numeric form"),
        ("http://127.1/cb", "numeric form"),
        ("http://127.0.0.1./cb", "numeric form"),
        ("http://10.0.1/cb", "numeric form"),
        ("http://[fe80::1%25eth0]/cb", "zone id"),
        ("http://[::ffff:127.0.0.1]/cb", "IPv4-mapped"),
        ("http://[::ffff:7f00:1]/cb", "IPv4-mapped"),
        ("http://user:pw@hooks.example.com/cb", "user-info"),
        ("http://hooks.example.com@127.0.0.1/cb", "user-info"),
        ("http://%31%32%37.0.0.1/cb", "not a valid host name"),
        ("http://hooks.example.com:0/cb", "port"),
        ("http://hooks.example.com:99999/cb", "port"),
        ("ftp://hooks.example.com/cb", "http:// or https://"),
        ("rtmp://hooks.example.com/cb", "http:// or https://"),
    ],
)
def test_odd_urls_are_refused_as_they_are_parsed(url: str, why: str) -> None:
    with pytest.raises(OutboundRefused, match=why) as caught:
        parse_destination(url, HTTP_SCHEMES)
    assert caught.value.code == "RTC.00001003" and caught.value.status == 400


def test_hosts_are_normalised_before_they_are_judged() -> None:
    # Full-width digits are 127.0.0.1 once IDNA-normalised: the check sees the address a resolver would.
    d = parse_destination("http://\uff11\uff12\uff17.\uff10.\uff10.\uff11:8080/cb", HTTP_SCHEMES)
    assert (d.host, d.ip, d.port) == ("127.0.0.1", ip("127.0.0.1"), 8080)
    d = parse_destination("https://Hooks.Example.COM/cb?x=1", HTTP_SCHEMES)
    assert (d.host, d.ip, d.port, d.host_header) == ("hooks.example.com", None, 443, "hooks.example.com")
    d = parse_destination("rtmp://[2001:4860::8888]:1936/live/key", RTMP_SCHEMES)
    assert (d.ip, d.port, d.host_header) == (ip("2001:4860::8888"), 1936, "[2001:4860::8888]:1936")
    assert parse_destination("rtmps://live.example.com/app/k", RTMP_SCHEMES).port == 443
    # A name whose labels merely start with digits or 0x is a name.
    assert parse_destination("http://0x7f.example.com/cb", HTTP_SCHEMES).ip is None


def test_a_vetted_address_replaces_the_host_and_keeps_the_rest() -> None:
    d = parse_destination("https://hooks.example.com:8443/cb/x?token=t", HTTP_SCHEMES)
    assert d.with_address(ip("203.0.113.7")) == "https://203.0.113.7:8443/cb/x?token=t"
    assert d.with_address(ip("2001:db8::7")) == "https://[2001:db8::7]:8443/cb/x?token=t"
    assert d.host_header == "hooks.example.com:8443"


# --- address classes -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("address", "kind"),
    [
        ("127.0.0.1", "loopback"),
        ("127.255.0.9", "loopback"),
        ("::1", "loopback"),
        ("169.254.169.254", "cloud metadata"),
        ("fd00:ec2::254", "cloud metadata"),
        ("168.63.129.16", "cloud metadata"),
        ("169.254.1.1", "link-local"),
        ("fe80::1", "link-local"),
        ("10.1.2.3", "private"),
        ("172.16.0.1", "private"),
        ("192.168.1.1", "private"),
        ("100.64.0.1", "carrier-grade NAT"),
        ("fd12:3456::1", "unique-local"),
        ("224.0.0.251", "multicast"),
        ("ff02::1", "multicast"),
        ("0.0.0.0", "unspecified"),
        ("::", "unspecified"),
        ("240.0.0.1", "reserved"),
        ("255.255.255.255", "reserved"),
        ("192.0.2.1", "reserved"),
        ("2001:db8::1", "reserved"),
        ("::ffff:10.0.0.1", "private: 10.0.0.1 inside an IPv6 address"),
        ("64:ff9b::a9fe:a9fe", "cloud metadata: 169.254.169.254 inside an IPv6 address"),
        ("2002:c0a8:101::1", "private: 192.168.1.1 inside an IPv6 address"),
        ("2001:0:4136:e378::1", "reserved (Teredo)"),
    ],
)
def test_non_public_addresses_are_named(address: str, kind: str) -> None:
    assert classify(ip(address)) == kind


@pytest.mark.parametrize("address", ["8.8.8.8", "93.184.215.14", "2606:4700:4700::1111", "64:ff9b::808:808"])
def test_public_addresses_pass(address: str) -> None:
    assert classify(ip(address)) is None


# --- the policy ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "http://169.254.169.254/latest/meta-data/",
        "http://[::1]:6379/",
        "http://127.0.0.1:6379/",
        "http://10.0.0.5/cb",
        "http://100.64.0.1/cb",
        "http://[fc00::5]/cb",
        "http://0.0.0.0:8080/cb",
        "http://224.0.0.1/cb",
    ],
)
async def test_non_public_literals_are_refused_by_default(url: str) -> None:
    p = policy()
    with pytest.raises(OutboundRefused, match="not an allowed destination"):
        await p.check(url, HTTP_SCHEMES)


async def test_a_name_is_refused_when_any_answer_is_not_public() -> None:
    p = policy(hooks_example_net=["93.184.215.14", "10.0.0.5"])
    with pytest.raises(OutboundRefused, match=r"host hooks.example.net resolves to 10.0.0.5 \(private\)"):
        await p.check("https://hooks.example.net/cb", HTTP_SCHEMES)
    p = policy(hooks_example_net=["93.184.215.14", "2606:4700::6810:84e5"])
    assert (await p.check("https://hooks.example.net/cb", HTTP_SCHEMES)).host == "hooks.example.net"
    with pytest.raises(OutboundRefused, match="could not be resolved"):
        await p.check("https://nowhere.example.net/cb", HTTP_SCHEMES)


async def test_cidrs_and_addresses_in_the_allow_list_open_what_they_name_only() -> None:
    p = policy("127.0.0.1, 10.20.0.0/16, [::1]", internal_corp=["10.20.3.4"], other_corp=["10.21.0.1"])
    for url in ("http://127.0.0.1:9000/cb", "http://[::1]:9000/cb", "http://internal.corp/cb"):
        await p.check(url, HTTP_SCHEMES)
    for url in ("http://127.0.0.2/cb", "http://other.corp/cb", "http://169.254.169.254/"):
        with pytest.raises(OutboundRefused):
            await p.check(url, HTTP_SCHEMES)


async def test_an_allowed_name_opens_its_answers_but_not_metadata() -> None:
    resolver = Resolver({"hooks.internal": ["10.9.8.7"], "a.svc.internal": ["169.254.169.254"]})
    p = OutboundPolicy(AllowList.parse("hooks.internal,*.svc.internal"), resolver)
    # Saved without a lookup (the operator vouches for the name) ...
    await p.check("http://hooks.internal/cb", HTTP_SCHEMES)
    assert resolver.asked == []
    # ... and at delivery its private answer is allowed, a metadata answer is not.
    assert (await p.vet_async("http://hooks.internal/cb", HTTP_SCHEMES)).addresses == (ip("10.9.8.7"),)
    with pytest.raises(OutboundRefused, match="allowed by CIDR only"):
        await p.vet_async("http://a.svc.internal/cb", HTTP_SCHEMES)
    # The wildcard covers names under the domain, not the domain itself or look-alikes.
    assert p.allow.allows_name("x.svc.internal") and not p.allow.allows_name("svc.internal")
    assert not p.allow.allows_name("evilsvc.internal") and not p.allow.allows_name("hooks.internal.evil.com")


def test_delivery_time_vetting_sees_a_changed_answer() -> None:
    resolver = Resolver({"hooks.example.net": ["93.184.215.14"]})
    p = OutboundPolicy(AllowList(), resolver)
    assert p.vet("rtmp://hooks.example.net/live/k", RTMP_SCHEMES).addresses == (ip("93.184.215.14"),)
    resolver.answers["hooks.example.net"] = ["127.0.0.1"]  # rebinding
    with pytest.raises(OutboundRefused, match=r"resolves to 127.0.0.1 \(loopback\)"):
        p.vet("rtmp://hooks.example.net/live/k", RTMP_SCHEMES)


def test_the_allow_list_parses_strictly() -> None:
    a = AllowList.parse(" 10.0.0.0/8 ,127.0.0.1, ::1 , hooks.internal, *.corp.example ")
    assert a.entries() == ("10.0.0.0/8", "127.0.0.1/32", "::1/128", "hooks.internal", "*.corp.example")
    assert AllowList.from_entries(a.entries()) == a
    assert AllowList.parse("none") == AllowList() == AllowList.from_entries(())
    for bad in ("10.0.0.0/33", "0x7f.1", "http://x", "a b", "*.", "127.1"):
        with pytest.raises(ValueError, match="outbound_allow"):
            AllowList.parse(bad)


# --- the default ---------------------------------------------------------------------------------------------


def test_loopback_is_allowed_by_default_only_when_the_api_listens_on_loopback() -> None:
    loopback = AllowList.parse("127.0.0.0/8,::1")
    assert outbound_allow_list(Settings()) == loopback  # the default --host 127.0.0.1
    assert outbound_allow_list(replace(Settings(), host="localhost")) == loopback
    assert outbound_allow_list(replace(Settings(), host="::1")) == loopback
    assert outbound_allow_list(replace(Settings(), host="0.0.0.0")) == AllowList()
    assert outbound_allow_list(replace(Settings(), host="10.0.0.2")) == AllowList()
    # Set, the variable is the whole list (loopback included only if named).
    s = Settings().with_env({"EMBER_OUTBOUND_ALLOW": "10.0.0.0/8"})
    assert outbound_allow_list(s) == AllowList.parse("10.0.0.0/8")
    assert outbound_allow_list(Settings().with_env({"EMBER_OUTBOUND_ALLOW": "none"})) == AllowList()
    with pytest.raises(ValueError, match="'10.0.0.0/99'"):
        Settings().with_env({"EMBER_OUTBOUND_ALLOW": "10.0.0.0/99"})
