"""The public URL handed out in download links: configured, or derived from what Ember listens on."""

from __future__ import annotations

import pytest

from emberrtc.config import Settings
from emberrtc.deploy.public_url import PublicUrlUnknown, advertised_addresses, public_base_url
from emberrtc.media.ice_interfaces import Candidate


def test_configured_url_wins() -> None:
    s = Settings(host="0.0.0.0", public_url="https://rtc.example.com/")
    assert public_base_url(s, ("other.example.com",)) == "https://rtc.example.com"


def test_a_specific_address_is_the_one_clients_use_with_the_scheme_of_tls() -> None:
    assert public_base_url(Settings(host="10.0.0.5", port=8080)) == "http://10.0.0.5:8080"
    tls = Settings(host="10.0.0.5", port=8443, tls_cert="c.pem", tls_key="k.pem")
    assert public_base_url(tls) == "https://10.0.0.5:8443"
    assert public_base_url(Settings(host="10.0.0.5", port=443, tls_cert="c", tls_key="k")) == "https://10.0.0.5"
    assert public_base_url(Settings(host="2001:db8::5", port=80)) == "http://[2001:db8::5]"
    # Over TLS the URL names what the certificate covers: the address if it lists it, else its name.
    assert public_base_url(tls, ("rtc.example.com",), ("10.0.0.5",)) == "https://10.0.0.5:8443"
    assert public_base_url(tls, ("rtc.example.com",), ()) == "https://rtc.example.com:8443"


def test_a_wildcard_address_takes_the_certificate_name_then_the_public_ip() -> None:
    tls = Settings(host="0.0.0.0", port=443, tls_cert="c", tls_key="k", media_public_ip="203.0.113.9")
    # A wildcard name is no host; the first real DNS name is.
    assert public_base_url(tls, ("*.example.com", "rtc.example.com")) == "https://rtc.example.com"
    assert public_base_url(tls, ()) == "https://203.0.113.9"
    assert public_base_url(Settings(host="::", port=8080, media_public_ip="203.0.113.9")) == "http://203.0.113.9:8080"


@pytest.mark.parametrize("host", ["0.0.0.0", "::"])
def test_a_wildcard_address_with_nothing_to_go_on_is_refused_saying_what_to_set(host: str) -> None:
    with pytest.raises(PublicUrlUnknown) as refused:
        public_base_url(Settings(host=host, port=8080))
    message = str(refused.value)
    assert "EMBER_PUBLIC_URL=http://rtc.example.com:8080" in message and "EMBER_MEDIA_PUBLIC_IP" in message


def test_the_start_up_line_names_urls_media_addresses_and_ports(monkeypatch: pytest.MonkeyPatch) -> None:
    here = [Candidate("lo", "127.0.0.1"), Candidate("eth0", "10.0.0.5")]
    monkeypatch.setattr("emberrtc.media.ice_interfaces.machine_addresses", lambda: here)
    s = Settings(host="0.0.0.0", port=443, tls_cert="c", tls_key="k", media_public_ip="203.0.113.9")
    line = advertised_addresses(s, "https://rtc.example.com")
    assert "https://rtc.example.com" in line and "wss://rtc.example.com/v1/rtc/signalling" in line
    assert "media (ICE, UDP) at 203.0.113.9 (1:1 NAT of 10.0.0.5)" in line and "EMBER_MEDIA_PORTS" in line
    plain = advertised_addresses(Settings(media_ports="20000-20099"), "http://10.0.0.5:8080")
    assert "ws://10.0.0.5:8080/v1/rtc/signalling" in plain and "at 10.0.0.5, ports 20000-20099" in plain
