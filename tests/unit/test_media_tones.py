"""Tone generators: lengths, levels, DTMF and ringback content checked with analysis.py."""

from __future__ import annotations

import numpy as np
import pytest

from callfleet.media.analysis import dominant_frequency_hz, goertzel_power, tone_energy_ratio
from callfleet.media.mix import rms_dbfs
from callfleet.media.tones import (
    DTMF_FREQS,
    beep,
    dtmf_sequence,
    dtmf_tone,
    dual_tone,
    ringback,
    silence,
    sine,
    white_noise,
)

ALL_DTMF = sorted({f for pair in DTMF_FREQS.values() for f in pair})


def test_sine_length_level_and_frequency() -> None:
    tone = sine(1000, 250, 16000, amplitude_dbfs=-10.0)
    assert tone.dtype == np.int16
    assert len(tone) == 4000
    assert int(np.abs(tone).max()) == pytest.approx(32767 * 10 ** (-10 / 20), abs=1)
    assert rms_dbfs(tone) == pytest.approx(-10.0, abs=0.01)
    assert dominant_frequency_hz(tone, 16000) == pytest.approx(1000.0, abs=0.5)


def test_sine_phase_in_radians() -> None:
    assert sine(1000, 10, 8000, amplitude_dbfs=0.0)[0] == 0
    assert sine(1000, 10, 8000, amplitude_dbfs=0.0, phase=np.pi / 2)[0] == 32767


def test_full_scale_sum_saturates_instead_of_wrapping() -> None:
    tone = dual_tone(500, 700, 100, 8000, amplitude_dbfs=0.0)
    assert tone.max() == 32767
    assert tone.min() == -32768


def test_dtmf_table_is_q23() -> None:
    assert len(DTMF_FREQS) == 16
    assert DTMF_FREQS["1"] == (697, 1209)
    assert DTMF_FREQS["0"] == (941, 1336)
    assert DTMF_FREQS["#"] == (941, 1477)
    assert DTMF_FREQS["D"] == (941, 1633)
    assert ALL_DTMF == [697, 770, 852, 941, 1209, 1336, 1477, 1633]


@pytest.mark.parametrize("digit", list(DTMF_FREQS))
def test_each_digit_holds_exactly_its_two_frequencies(digit: str) -> None:
    tone = dtmf_tone(digit, 100, 8000)
    assert len(tone) == 800
    low, high = DTMF_FREQS[digit]
    for freq in ALL_DTMF:
        ratio = tone_energy_ratio(tone, freq, 8000)
        if freq in (low, high):
            assert ratio == pytest.approx(0.5, abs=0.02)
        else:
            assert ratio < 0.01


def test_lower_case_letters_are_accepted() -> None:
    np.testing.assert_array_equal(dtmf_tone("a", 50, 8000), dtmf_tone("A", 50, 8000))


@pytest.mark.parametrize("digit", ["x", "E", "", "12"])
def test_invalid_digit_is_named(digit: str) -> None:
    with pytest.raises(ValueError) as info:
        dtmf_tone(digit, 100, 8000)
    assert str(info.value) == f"invalid DTMF digit {digit!r}: expected one of 0-9, *, #, A-D"


def test_twist_raises_the_second_tone() -> None:
    tone = dual_tone(697, 1209, 200, 8000, amplitude_dbfs=-12.0, twist_db=4.0)
    low = goertzel_power(tone, 697, 8000)
    high = goertzel_power(tone, 1209, 8000)
    assert 10 * np.log10(high / low) == pytest.approx(4.0, abs=0.05)
    assert 10 * np.log10(low) == pytest.approx(-12.0, abs=0.05)


def test_dtmf_sequence_layout() -> None:
    seq = dtmf_sequence("19#", 8000, tone_ms=60, gap_ms=40)
    assert len(seq) == 3 * 480 + 2 * 320
    starts = [0, 800, 1600]
    for digit, start in zip("19#", starts, strict=True):
        segment = seq[start : start + 480]
        for freq in DTMF_FREQS[digit]:
            assert tone_energy_ratio(segment, freq, 8000) > 0.45
    assert not seq[480:800].any()
    assert not seq[1280:1600].any()
    assert len(dtmf_sequence("", 8000)) == 0


def test_dtmf_sequence_names_the_bad_digit() -> None:
    with pytest.raises(ValueError, match=r"^invalid DTMF digit 'z'"):
        dtmf_sequence("12z", 8000)


def test_beep_defaults() -> None:
    tone = beep()
    assert len(tone) == 4000
    assert dominant_frequency_hz(tone, 8000) == pytest.approx(1000.0, abs=0.5)


def on_off_pattern(tone: np.ndarray, sample_rate: int, block_ms: int = 100) -> list[bool]:
    block = sample_rate * block_ms // 1000
    return [bool(np.abs(tone[i : i + block]).max() > 1000) for i in range(0, len(tone), block)]


def test_us_ringback_cadence_and_frequencies() -> None:
    tone = ringback(12000, 8000)
    assert len(tone) == 96000
    assert on_off_pattern(tone, 8000, 1000) == [True, True, False, False, False, False] * 2
    burst = tone[:16000]
    assert tone_energy_ratio(burst, 440, 8000) > 0.45
    assert tone_energy_ratio(burst, 480, 8000) > 0.45


def test_uk_ringback_cadence_and_frequencies() -> None:
    tone = ringback(3000, 16000, region="uk")
    pattern = on_off_pattern(tone, 16000)
    cycle = [True] * 4 + [False] * 2 + [True] * 4 + [False] * 20
    assert pattern == cycle
    burst = tone[: 16000 * 4 // 10]
    assert tone_energy_ratio(burst, 400, 16000) > 0.45
    assert tone_energy_ratio(burst, 450, 16000) > 0.45


def test_unknown_ringback_region() -> None:
    with pytest.raises(ValueError, match=r"^unknown ringback region 'fr': expected one of uk, us$"):
        ringback(1000, 8000, region="fr")


def test_silence() -> None:
    quiet = silence(20, 8000)
    assert quiet.dtype == np.int16
    assert len(quiet) == 160
    assert not quiet.any()


def test_white_noise_level_and_seed() -> None:
    noise = white_noise(1000, 8000, level_dbfs=-20.0, seed=42)
    assert rms_dbfs(noise) == pytest.approx(-20.0, abs=0.2)
    np.testing.assert_array_equal(noise, white_noise(1000, 8000, level_dbfs=-20.0, seed=42))
    assert not np.array_equal(noise, white_noise(1000, 8000, level_dbfs=-20.0, seed=43))
    for freq in (300, 1000, 3000):
        assert tone_energy_ratio(noise, freq, 8000) < 0.02


def test_frequency_above_nyquist_is_refused() -> None:
    with pytest.raises(
        ValueError,
        match=r"^freq_hz 5000 is outside 0\.\.4000 Hz \(the Nyquist range of sample_rate 8000\)$",
    ):
        sine(5000, 100, 8000)


def test_negative_duration_is_refused() -> None:
    with pytest.raises(ValueError, match=r"^duration_ms must not be negative, got -5$"):
        silence(-5, 8000)


def test_bad_sample_rate_is_refused() -> None:
    with pytest.raises(ValueError, match=r"^sample_rate must be positive, got 0$"):
        sine(1000, 100, 0)
