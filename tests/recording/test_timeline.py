"""The job timeline: track alignment by arrival, interruptions found and collapsed, wall-clock mapping."""

from __future__ import annotations

import pytest

from emberrtc.recording.timeline import StreamClock, Timeline

WALL = 1_700_000_000.0


def timeline() -> Timeline:
    return Timeline(lambda: WALL, interruption=1.0)


def test_rtp_time_rules_once_a_track_is_anchored() -> None:
    tl = timeline()
    base = 0xFFFF_0000  # the 32-bit timestamp wraps during the stream
    places = [tl.place("video", 1, (base + i * 3000) % 2**32, 90_000, arrival=0.001 * i) for i in range(60)]
    assert places[0].time == 0.0
    assert places[-1].time == pytest.approx(59 / 30)
    assert all(p.interruption is None for p in places)


def test_a_joining_track_lines_up_with_the_frame_that_arrived_before_it() -> None:
    tl = timeline()
    # Video frames 0..29 arrived 10 ms apart (faster than real time); all were placed before any audio.
    for i in range(30):
        tl.place("video", 1, i * 3000, 90_000, arrival=0.01 * i)
    # The first audio packet arrived just after video frame 3 (kernel timestamp), whatever its RTP base.
    audio = tl.place("audio", 2, 123_456, 48_000, arrival=0.031)
    assert audio.time == pytest.approx(0.1 + 0.001)
    later = tl.place("audio", 2, 123_456 + 960, 48_000, arrival=0.5)
    assert later.time == pytest.approx(audio.time + 0.02)  # then its own clock rules


def test_a_same_ssrc_jump_is_an_interruption_cut_out_of_recording_time() -> None:
    tl = timeline()
    for i in range(31):
        last = tl.place("video", 1, i * 3000, 90_000, arrival=0.0)
    assert last.time == pytest.approx(1.0)
    resumed = tl.place("video", 1, 30 * 3000 + 20 * 90_000, 90_000, arrival=0.0)  # paused 20 s
    assert resumed.interruption == pytest.approx(20.0)
    assert resumed.input_time == pytest.approx(21.0)
    assert resumed.time == pytest.approx(1.02)  # recording resumes right after the last frame
    # Wall clock: the frame before the pause at WALL + 1 s, the one after it at WALL + 21 s.
    assert tl.wall_at(last.time) == pytest.approx(WALL + 1.0)
    assert tl.wall_at(resumed.time) == pytest.approx(WALL + 21.0)


def test_short_silences_are_not_interruptions() -> None:
    tl = timeline()
    tl.place("audio", 1, 0, 48_000, arrival=0.0)
    p = tl.place("audio", 1, int(0.9 * 48_000), 48_000, arrival=0.0)  # 900 ms of DTX
    assert p.interruption is None and p.time == pytest.approx(0.9)


def test_a_new_sender_is_placed_after_the_wall_clock_silence() -> None:
    tl = timeline()
    for i in range(30):
        tl.place("video", 1, i * 3000, 90_000, arrival=10.0 + i / 30)
    # A re-published stream: new SSRC and timestamp base, 12 s of silence (arrival) later.
    p = tl.place("video", 2, 77, 90_000, arrival=10.0 + 29 / 30 + 12.0)
    assert p.interruption == pytest.approx(12.0)
    assert tl.wall_at(p.time) == pytest.approx(WALL + 29 / 30 + 12.0)


def test_backward_timestamps_reanchor_and_time_never_goes_back() -> None:
    tl = timeline()
    a = tl.place("video", 1, 900_000, 90_000, arrival=0.0)
    b = tl.place("video", 1, 3000, 90_000, arrival=0.0)  # 10 s back: not a pause, a new base
    assert b.interruption is None and b.time > a.time


def test_a_track_resuming_just_before_the_one_that_revealed_the_gap_stays_after_it() -> None:
    tl = timeline()
    for i in range(50):  # audio up to 0.98 s, video (30 fps) up to 0.9667 s, interleaved
        tl.place("audio", 1, i * 960, 48_000, arrival=0.0)
        if i < 30:
            tl.place("video", 2, i * 3000, 90_000, arrival=0.0)
    # After a 20 s pause both resume; audio (21.02 s) is read first though the video frame (21.0 s) is older.
    audio = tl.place("audio", 1, 51 * 960 + 20 * 48_000, 48_000, arrival=0.0)
    video = tl.place("video", 2, 30 * 3000 + 20 * 90_000, 90_000, arrival=0.0)
    assert audio.interruption == pytest.approx(20.04) and video.interruption is None
    assert video.time > 0.98  # after everything recorded before the pause
    assert tl.wall_at(video.time) == pytest.approx(WALL + 21.0, abs=0.03)
    assert tl.wall_at(audio.time) == pytest.approx(WALL + 21.02)
    assert tl.wall_at(0.98) == pytest.approx(WALL + 0.98)


def test_a_stream_clock_maps_timestamps_by_its_earliest_packet_and_measures_lateness() -> None:
    clock = StreamClock(90_000, max_delay=1.0, window=3.0)
    base = 4_294_900_000  # wraps within the run
    for n in range(30):  # on time: 30 frames a second
        clock.arrived((base + 3000 * n) % (1 << 32), 10.0 + n / 30)
    assert clock.due((base + 3000 * 29) % (1 << 32)) == pytest.approx(10.0 + 29 / 30)
    assert clock.delay(11.0) == pytest.approx(0.0, abs=1e-9)
    # From frame 30 on, the stream comes 0.3 s late: its frames are still due when their timestamps say.
    for n in range(30, 60):
        clock.arrived((base + 3000 * n) % (1 << 32), 10.3 + n / 30)
    assert clock.due((base + 3000 * 59) % (1 << 32)) == pytest.approx(10.0 + 59 / 30)
    assert clock.delay(12.3) == pytest.approx(0.3)
    # On time again: the delay is kept for the window, then falls.
    for n in range(60, 100):
        clock.arrived((base + 3000 * n) % (1 << 32), 10.0 + n / 30)
    assert clock.delay(10.0 + 100 / 30) == pytest.approx(0.3)
    for n in range(100, 200):
        clock.arrived((base + 3000 * n) % (1 << 32), 10.0 + n / 30)
    assert clock.delay(10.0 + 199 / 30) == pytest.approx(0.0, abs=1e-9)
    # A packet earlier than any before it moves the mapping; one over max_delay late starts it afresh.
    clock.arrived((base + 3000 * 200) % (1 << 32), 10.0 + 200 / 30 - 0.05)
    assert clock.due((base + 3000 * 200) % (1 << 32)) == pytest.approx(10.0 + 200 / 30 - 0.05)
    clock.arrived(123, 30.0)  # a new timestamp base
    assert clock.due(123) == pytest.approx(30.0) and clock.delay(30.0) == 0.0
