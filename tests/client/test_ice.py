"""Which TURN URL the Python client gives aiortc (one only): the most preferred that works from here."""

from __future__ import annotations

import asyncio
import time

import pytest

from emberrtc.client import ice

UDP, TCP, TLS = "turn:r.example:3478?transport=udp", "turn:r.example:3478?transport=tcp", "turns:r.example:5349"
SERVERS = [{"urls": [UDP, TCP, TLS], "username": "1700000000:s", "credential": "pw"}]


def fake_probes(monkeypatch: pytest.MonkeyPatch, outcomes: dict[str, tuple[float, bool]]) -> list[str]:
    """Replace the real allocation by ``url -> (seconds it takes, whether it works)``; return the URLs probed."""
    probed: list[str] = []

    async def probe(url: str, username: str, password: str, within: float = ice.PROBE_TIMEOUT) -> bool:
        assert (username, password) == ("1700000000:s", "pw")
        probed.append(url)
        delay, works = outcomes[url]
        await asyncio.sleep(min(delay, within))
        return works and delay < within

    monkeypatch.setattr(ice, "probe_turn", probe)
    return probed


async def chosen(servers: list[dict[str, object]] = SERVERS) -> tuple[list[str], float]:
    started = time.monotonic()
    picked = await ice.choose_ice_servers(servers)
    return [str(s.urls) for s in picked], time.monotonic() - started


async def test_udp_preferred_when_it_works(monkeypatch: pytest.MonkeyPatch) -> None:
    probed = fake_probes(monkeypatch, {UDP: (0.05, True), TCP: (0.01, True), TLS: (0.02, True)})
    urls, took = await chosen()
    assert urls == [UDP] and took < 0.4 and probed == [UDP, TCP, TLS]
    assert (await ice.choose_ice_servers(SERVERS))[0].username == "1700000000:s"


async def test_tcp_when_udp_is_dropped_without_waiting_for_the_udp_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    fake_probes(monkeypatch, {UDP: (60, True), TCP: (0.02, True), TLS: (0.03, True)})
    urls, took = await chosen()
    assert urls == [TCP] and ice.GRACE <= took < ice.GRACE + 0.5


async def test_a_preferred_url_answering_within_the_grace_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    fake_probes(monkeypatch, {UDP: (0.2, True), TCP: (0.01, True), TLS: (0.01, True)})
    assert (await chosen())[0] == [UDP]


async def test_tls_when_only_it_works_and_none_when_nothing_does(monkeypatch: pytest.MonkeyPatch) -> None:
    fake_probes(monkeypatch, {UDP: (0.01, False), TCP: (0.01, False), TLS: (0.05, True)})
    urls, took = await chosen()
    assert urls == [TLS] and took < 0.4
    fake_probes(monkeypatch, {UDP: (0.01, False), TCP: (0.02, False), TLS: (0.03, False)})
    assert (await chosen())[0] == []


async def test_no_relay_no_probe(monkeypatch: pytest.MonkeyPatch) -> None:
    probed = fake_probes(monkeypatch, {})
    assert await ice.choose_ice_servers([]) == []
    # What aioice cannot use (STUN, turns: over UDP) is not probed.
    assert await ice.choose_ice_servers([{"urls": ["stun:r.example"], "username": "u", "credential": "c"}]) == []
    assert probed == []
