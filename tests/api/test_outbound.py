"""Request forgery through record callback and RTMP push URLs (issue 11 item 4): every URL is checked by
the outbound policy (``domain.outbound``) when it is saved, and refused with RTC.00001003 saying why.

The suite's server allows its own receivers explicitly (``tests.conftest.make_settings``: ``127.0.0.1``
and the example.com names the API tests use); a resolver the test controls stands in for DNS.
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import pytest

from emberrtc.domain.outbound import OutboundPolicy
from tests.conftest import make_settings, make_tenant, token_for
from tests.support.server import ServerThread
from tests.support.spec_checks import create_app

# Each form of the issue, and the words the refusal must contain.
REFUSED = [
    ("169.254.169.254", "cloud metadata"),
    ("[::1]:6379", "loopback"),
    ("2130706433", "numeric form"),
    ("0x7f.1", "numeric form"),
    ("0177.0.0.1", "numeric form"),
    ("127.1", "numeric form"),
    ("127.0.0.2:6379", "loopback"),  # loopback beyond the allowed 127.0.0.1
    ("10.0.0.8", "private"),
    ("172.16.5.4", "private"),
    ("192.168.1.1", "private"),
    ("100.64.0.9", "carrier-grade NAT"),
    ("[fd00::8]", "unique-local"),
    ("[fe80::1%25eth0]", "zone id"),
    ("[::ffff:127.0.0.1]", "IPv4-mapped"),
    ("[::ffff:a9fe:a9fe]", "IPv4-mapped"),
    ("0.0.0.0", "unspecified"),
    ("224.0.0.1", "multicast"),
    ("me:pw@127.0.0.1", "user-info"),
]


class Resolver:
    def __init__(self, answers: dict[str, list[str]]) -> None:
        self.answers = answers

    def __call__(self, host: str, port: int) -> list[ipaddress.IPv4Address | ipaddress.IPv6Address]:
        if host not in self.answers:
            raise OSError(-2, "Name or service not known")
        return [ipaddress.ip_address(a) for a in self.answers[host]]


@pytest.fixture
def dns(server: ServerThread) -> Iterator[Resolver]:
    """The server's resolver, answering from ``answers``."""
    assert server.services is not None
    policy: OutboundPolicy = server.services.outbound
    before = policy.resolver
    policy.resolver = resolver = Resolver({})
    try:
        yield resolver
    finally:
        policy.resolver = before


@pytest.fixture
def app_id(http: httpx.Client) -> str:
    return create_app(http)


def refused(r: httpx.Response, *words: str) -> None:
    assert r.status_code == 400, r.text
    assert r.json()["error_code"] == "RTC.00001003", r.text
    for word in words:
        assert word in r.json()["error_msg"], r.text


def put_callback(http: httpx.Client, app_id: str, url: str) -> httpx.Response:
    return http.put(f"/v2/apps/{app_id}/record-callback", json={"url": url})


def start_push(http: httpx.Client, app_id: str, *urls: str, user: str = "u") -> httpx.Response:
    body: dict[str, Any] = {"room_id": "r", "user_id": user, "publish_param": {"rtmp_urls": list(urls)}}
    return http.post(f"/v2/apps/{app_id}/individual-stream-jobs", json=body)


@pytest.mark.parametrize(("host", "why"), REFUSED)
def test_each_forged_callback_destination_is_refused_when_saved(
    http: httpx.Client, app_id: str, host: str, why: str
) -> None:
    refused(put_callback(http, app_id, f"http://{host}/cb"), "url:", why)
    # Nothing was saved.
    assert not (http.get(f"/v2/apps/{app_id}/record-callback").json().get("record_callback") or {}).get("url")


@pytest.mark.parametrize(("host", "why"), REFUSED)
def test_each_forged_rtmp_destination_is_refused_when_saved(
    http: httpx.Client, app_id: str, host: str, why: str
) -> None:
    refused(start_push(http, app_id, "rtmp://live.example.com/app/a", f"rtmp://{host}/live/key"), "rtmp_urls[1]", why)


def test_rtmp_urls_are_checked_in_mixed_jobs_and_updates(http: httpx.Client, app_id: str) -> None:
    mix = {"room_id": "m", "encode_template": "audio_only"}
    r = http.post(
        f"/v2/apps/{app_id}/mix-stream-jobs",
        json={"mix_param": mix, "publish_param": {"rtmp_urls": ["rtmp://169.254.169.254/live/k"]}},
    )
    refused(r, "rtmp_urls[0]", "cloud metadata")
    r = start_push(http, app_id, "rtmp://live.example.com/app/a")
    assert r.status_code == 201, r.text
    job = f"/v2/apps/{app_id}/individual-stream-jobs/{r.json()['job_id']}"
    refused(http.put(job, json={"publish_param": {"rtmp_urls": ["rtmps://[::1]/live/k"]}}), "loopback")
    assert http.get(job).json()["publish_param"] == {"rtmp_urls": ["rtmp://live.example.com/app/a"]}
    assert http.delete(job).status_code == 204


def test_a_name_resolving_to_a_private_address_is_refused(http: httpx.Client, app_id: str, dns: Resolver) -> None:
    dns.answers["hooks.example.net"] = ["93.184.215.14", "192.168.7.7"]
    refused(put_callback(http, app_id, "https://hooks.example.net/cb"), "resolves to 192.168.7.7 (private)")
    refused(start_push(http, app_id, "rtmp://hooks.example.net/live/k"), "resolves to 192.168.7.7 (private)")
    dns.answers["ip6.example.net"] = ["::1"]
    refused(put_callback(http, app_id, "http://ip6.example.net:6379/"), "resolves to ::1 (loopback)")
    refused(put_callback(http, app_id, "https://unknown.example.net/cb"), "could not be resolved")
    # A public answer is saved.
    dns.answers["hooks.example.net"] = ["93.184.215.14"]
    r = put_callback(http, app_id, "https://hooks.example.net/cb")
    assert r.status_code == 200, r.text
    assert http.get(f"/v2/apps/{app_id}/record-callback").json()["record_callback"]["url"] == (
        "https://hooks.example.net/cb"
    )


def test_the_allow_list_opens_its_cidrs_and_names(http: httpx.Client, app_id: str, dns: Resolver) -> None:
    # By CIDR: the suite allows 127.0.0.1 (its receivers), and no other loopback address.
    assert put_callback(http, app_id, "http://127.0.0.1:9/cb").status_code == 200
    refused(put_callback(http, app_id, "http://127.0.0.2:9/cb"), "loopback")
    # By name: *.example.com names are allowed whatever they resolve to (and not looked up when saved) ...
    dns.answers["hooks.example.com"] = ["10.1.1.1"]
    assert put_callback(http, app_id, "https://hooks.example.com/cb").status_code == 200
    assert start_push(http, app_id, "rtmp://hooks.example.com/live/k").status_code == 201
    # ... but a name outside the list with the same answer is refused.
    dns.answers["hooks.example.org"] = ["10.1.1.1"]
    refused(put_callback(http, app_id, "https://hooks.example.org/cb"), "resolves to 10.1.1.1 (private)")


# --- the default, for the quick start: loopback is allowed when the API listens on loopback only -------------


@pytest.mark.parametrize(("host", "loopback_allowed"), [("127.0.0.1", True), ("0.0.0.0", False)])
def test_without_ember_outbound_allow_loopback_follows_the_listening_address(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, host: str, loopback_allowed: bool
) -> None:
    settings = replace(make_settings(tmp_path / "data"), host=host, outbound_allow="")
    with caplog.at_level(logging.INFO, logger="emberrtc.bootstrap"):
        srv = ServerThread(settings).start()
    try:
        t = make_tenant(srv)
        with httpx.Client(base_url=srv.url, headers={"X-Auth-Token": token_for(srv, t)}) as http:
            app_id = create_app(http)
            for url in ("http://127.0.0.1:9/ember-events", "http://[::1]:9/ember-events"):
                r = put_callback(http, app_id, url)
                if loopback_allowed:
                    assert r.status_code == 200, r.text
                else:
                    refused(r, "loopback")
            refused(put_callback(http, app_id, "http://169.254.169.254/"), "cloud metadata")
            refused(put_callback(http, app_id, "http://10.0.0.1/"), "private")
    finally:
        srv.stop()
    said = [r.getMessage() for r in caplog.records if r.getMessage().startswith("outbound:")]
    if loopback_allowed:
        assert said == [
            "outbound: the API listens on loopback only (127.0.0.1), so callbacks and RTMP pushes may also reach "
            "loopback addresses (127.0.0.0/8,::1/128); set EMBER_OUTBOUND_ALLOW to choose (e.g. 'none')"
        ]
    else:
        assert said == [
            "outbound: callbacks and RTMP pushes reach public addresses only; EMBER_OUTBOUND_ALLOW names exceptions"
        ]
