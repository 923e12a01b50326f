"""The mixed-stream audio: the three loudest inputs, resampled, summed without clipping (checked by FFT)."""

from __future__ import annotations

import av
import numpy as np
import pytest

from emberrtc.recording.audio_mixer import CEILING, AudioMixer
from emberrtc.synthetic import SineTone, dominant_frequency

BLOCK = 1024


def run(mixer: AudioMixer, tones: dict[str, SineTone], seconds: float) -> np.ndarray:
    """Feed the tones as a real-time source would (a little ahead of the pulls) and pull ``seconds``; the
    mixed stereo as a (2, n) array."""
    sent = {user: 0 for user in tones}
    out: list[np.ndarray] = []
    pulled = 0
    while pulled < seconds * mixer.sample_rate:
        for user, tone in tones.items():
            # keep each input ~2 blocks ahead of the output, in its own rate's terms
            while tone.time_of(sent[user]) < (pulled + 2 * BLOCK) / mixer.sample_rate:
                mixer.push(user, tone.frame(sent[user]))
                sent[user] += 1
        frame = mixer.pull(BLOCK)
        assert (frame.samples, frame.sample_rate, frame.format.name, frame.layout.name) == (
            BLOCK,
            48_000,
            "fltp",
            "stereo",
        )
        out.append(frame.to_ndarray())
        pulled += BLOCK
    return np.concatenate(out, axis=1)


def magnitude(signal: np.ndarray, frequency: float, rate: int = 48_000) -> float:
    spectrum = np.abs(np.fft.rfft(signal * np.hanning(len(signal)))) / len(signal)
    bin_ = round(frequency * len(signal) / rate)
    return float(spectrum[bin_ - 3 : bin_ + 4].max())


def test_the_three_loudest_are_mixed_the_quietest_is_not() -> None:
    tones = {
        "loud": SineTone(440, amplitude=0.25),
        "middle": SineTone(700, amplitude=0.15),
        "soft": SineTone(1100, amplitude=0.08),
        "quietest": SineTone(1700, amplitude=0.04),
    }
    mixer = AudioMixer()
    mixed = run(mixer, tones, 2.0)[:, 48_000:]  # the second second: levels settled
    assert set(mixer.speaking) == {"loud", "middle", "soft"}
    for channel in mixed:
        present = [magnitude(channel, f) for f in (440, 700, 1100)]
        assert present[0] > present[1] > present[2] > 0.01
        assert magnitude(channel, 1700) < 0.01 * present[2]


def test_loud_inputs_never_go_beyond_full_scale() -> None:
    tones = {f"u{i}": SineTone(300 + 170 * i, amplitude=0.95) for i in range(4)}
    mixed = run(AudioMixer(), tones, 1.5)
    assert float(np.max(np.abs(mixed))) <= CEILING + 1e-6
    assert float(np.max(np.abs(mixed))) > 0.5  # still loud: limited, not muted


def test_any_rate_and_layout_is_resampled_to_48k_stereo() -> None:
    tones = {
        "phone": SineTone(500, sample_rate=16_000, samples_per_frame=320, amplitude=0.3),
        "cd": SineTone(1200, sample_rate=44_100, samples_per_frame=441, layout="stereo", amplitude=0.2),
    }
    mixer = AudioMixer()
    mixed = run(mixer, tones, 1.5)[:, 24_000:]
    for channel in mixed:
        assert magnitude(channel, 500) > 0.05 and magnitude(channel, 1200) > 0.03
    frame = mixer.pull(480)
    assert frame.samples == 480


def test_silence_without_inputs_and_after_a_user_leaves() -> None:
    mixer = AudioMixer()
    silent = mixer.pull(960).to_ndarray()
    assert silent.shape == (2, 960) and not silent.any()
    run(mixer, {"a": SineTone(440, amplitude=0.3)}, 0.2)
    mixer.remove("a")
    assert not mixer.pull(960).to_ndarray().any()


def test_an_input_that_stops_leaves_silence_not_its_old_audio() -> None:
    mixer = AudioMixer()
    tone = SineTone(440, amplitude=0.3)
    mixer.push("a", tone.frame(0))  # 960 samples
    first = mixer.pull(BLOCK).to_ndarray()
    assert first[:, :900].any() and not first[:, 960:].any()
    assert not mixer.pull(BLOCK).to_ndarray().any()
    with pytest.raises(ValueError):
        mixer.pull(0)


def test_a_single_voice_is_passed_at_its_level() -> None:
    mixed = run(AudioMixer(), {"a": SineTone(440, amplitude=0.3)}, 1.0)
    assert dominant_frequency_of(mixed[0]) == pytest.approx(440, abs=2)
    assert float(np.max(np.abs(mixed))) == pytest.approx(0.3, abs=0.01)


def dominant_frequency_of(signal: np.ndarray) -> float:
    import av

    frame = av.AudioFrame.from_ndarray(signal.astype(np.float32).reshape(1, -1), format="flt", layout="mono")
    frame.sample_rate = 48_000
    return dominant_frequency([frame])


def test_a_queue_holds_half_a_second_the_newest() -> None:
    mixer = AudioMixer()
    tone = SineTone(440, amplitude=0.3)
    for n in range(60):  # 1.2 s, nothing pulled
        mixer.push("a", tone.frame(n))
    assert mixer.dropped == 60 * 960 - 24_000
    kept = mixer.pull(24_000).to_ndarray()
    assert np.abs(kept[:, -100:]).max() > 0.1
    assert not mixer.pull(960).to_ndarray().any()


def test_the_choice_follows_who_is_loud_now() -> None:
    mixer = AudioMixer()
    quiet = {"a": 0.2, "b": 0.15, "c": 0.1, "d": 0.02}
    tones = {u: SineTone(300 + 200 * i, amplitude=a) for i, (u, a) in enumerate(quiet.items())}
    run(mixer, tones, 1.0)
    assert set(mixer.speaking) == {"a", "b", "c"}
    # d starts talking loudly, c falls silent: within a second the mix is a, b and d.
    tones["d"] = SineTone(900, amplitude=0.3)
    tones["c"] = SineTone(700, amplitude=0.001)
    mixed = run(mixer, tones, 1.0)
    assert set(mixer.speaking) == {"a", "b", "d"}
    assert magnitude(mixed[0][-24_000:], 900) > 0.05


def test_audio_given_a_position_is_placed_there_and_small_offsets_are_followed() -> None:
    mixer = AudioMixer(48_000, max_queue=2.0)

    def frame(n: int = 960) -> av.AudioFrame:  # a constant level, as the Opus decoder gives (fltp 48 kHz)
        f = av.AudioFrame.from_ndarray(np.full((2, n), 0.3, np.float32), format="fltp", layout="stereo")
        f.sample_rate = 48_000
        return f

    mixer.push("a", frame(), at=0)
    mixer.push("a", frame(), at=960 + 480)  # 10 ms off: within the slack, it follows
    mixer.push("a", frame(), at=2 * 960 + 9600)  # 200 ms later: silence before it
    out = mixer.pull(3 * 960 + 9600).to_ndarray()[0]
    assert (out[: 2 * 960] > 0.29).all()  # the first two frames back to back
    assert not out[2 * 960 : 2 * 960 + 9600].any()  # the gap
    assert (out[-960:] > 0.29).all()  # the third frame at its place
    assert mixer.position == len(out)
    # Audio for a position partly played already: its late part is cut, the rest plays at once.
    mixer.push("a", frame(3 * 960), at=mixer.position - 2 * 960)
    block = mixer.pull(2 * 960).to_ndarray()[0]
    assert (block[:960] > 0.29).all() and not block[960:].any()
