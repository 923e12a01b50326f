"""The SFU's samples: Janus ``handle_info`` counters (the shape Janus 1.1 answers) turned into interval rows."""

from __future__ import annotations

from typing import Any

import pytest

from emberrtc.media.plane import HandleView, StreamKind
from emberrtc.stats.janus import janus_rows


def info(direction: str, *, packets: int, lost: int, nbytes: int, video_rtt: int = 40) -> dict[str, Any]:
    """A ``handle_info`` answer with one video and one audio m-line (cumulative counters)."""
    side, other = ("in", "out") if direction == "uplink" else ("out", "in")

    def medium(kind: str, base: int, rtt: int) -> dict[str, Any]:
        rtcp = {
            "base": base,
            "rtt": rtt,
            "lost": lost if direction == "uplink" else 0,
            "lost-by-remote": lost if direction == "downlink" else 0,
            "jitter-local": 5,
            "jitter-remote": 7,
            "in-link-quality": 90,
            "out-link-quality": 80,
        }
        return {
            "type": kind,
            "rtcp": {"main": rtcp},
            "stats": {
                side: {"packets": packets, "bytes": nbytes, "nacks": packets // 100},
                other: {"packets": 0, "bytes": 0},
            },
        }

    return {"webrtc": {"media": {"0": medium("video", 90000, video_rtt), "1": medium("audio", 48000, 20)}}}


def view(direction: str, stream: StreamKind = StreamKind.CAMERA) -> HandleView:
    peer = "0" if direction == "uplink" else "alice"
    return HandleView("app", "room", "bob", "sess", direction, peer, stream, 1, 42)


def test_the_first_poll_only_takes_the_counters_then_intervals_become_rows() -> None:
    previous: dict[Any, Any] = {}
    v = view("downlink")
    assert (
        janus_rows(v, info("downlink", packets=100, lost=0, nbytes=10_000), previous, now=10.0, sdk_type="native") == []
    )
    [row] = janus_rows(v, info("downlink", packets=500, lost=100, nbytes=60_000), previous, now=15.0, sdk_type="native")
    assert (row["source"], row["direction"], row["peer_id"], row["interval_s"]) == ("janus", "downlink", "alice", 5.0)
    # Janus sent 400 packets in the interval and the client reported 100 of them lost.
    assert row["vloss"] == pytest.approx(100 / 400) and row["aloss"] == pytest.approx(100 / 400)
    assert row["vbit"] == pytest.approx(50_000 * 8 / 1000 / 5) and row["vrtt"] == 40 and row["artt"] == 20
    assert row["vjitter"] == 7  # downlink: the jitter the client reported
    assert row["link_quality"] == 80 and row["vpackets"] == 400 and row["apackets"] == 400 and row["nacks"] == 8


def test_uplink_uses_what_janus_received_and_screen_video_goes_to_d_columns() -> None:
    previous: dict[Any, Any] = {}
    v = view("uplink", StreamKind.SCREEN)
    janus_rows(v, info("uplink", packets=0, lost=0, nbytes=0), previous, now=0.0, sdk_type="webrtc")
    [row] = janus_rows(
        v, info("uplink", packets=90, lost=10, nbytes=5000, video_rtt=0), previous, now=5.0, sdk_type="webrtc"
    )
    assert row["dloss"] == pytest.approx(0.1) and row["vloss"] is None and row["djitter"] == 5
    assert row["drtt"] is None  # 0: Janus has no round trip yet
    assert row["aloss"] is None  # a screen's audio is not camera audio
    assert row["link_quality"] == 90 and row["sdk_type"] == "webrtc"
