"""Goertzel power, dominant frequency and tone presence on seeded synthetic signals."""

from __future__ import annotations

import numpy as np
import pytest

from callfleet.media.analysis import (
    dominant_frequency_hz,
    goertzel_power,
    tone_energy_ratio,
    tone_present,
)
from callfleet.media.mix import mix
from callfleet.media.tones import dtmf_tone, silence, sine, white_noise


@pytest.mark.parametrize(("dbfs", "power"), [(0.0, 1.0), (-10.0, 0.1), (-20.0, 0.01)])
def test_goertzel_power_is_relative_to_a_full_scale_sine(dbfs: float, power: float) -> None:
    tone = sine(1000, 100, 8000, amplitude_dbfs=dbfs)
    assert goertzel_power(tone, 1000, 8000) == pytest.approx(power, rel=1e-3)


def test_goertzel_power_off_frequency_is_small() -> None:
    tone = sine(1000, 100, 8000)  # 10 Hz resolution: 1100 Hz is on a null
    assert goertzel_power(tone, 1100, 8000) < 1e-6
    assert goertzel_power(tone, 1040, 8000) < 1e-4


def test_goertzel_power_works_between_bins() -> None:
    tone = sine(697.3, 45, 8000, amplitude_dbfs=-6.0)  # not a DFT bin centre
    assert goertzel_power(tone, 697.3, 8000) == pytest.approx(10 ** (-6 / 10), rel=0.01)


@pytest.mark.parametrize(
    ("freq", "rate"),
    [(440.0, 8000), (1000.0, 8000), (1633.0, 8000), (2999.5, 16000), (123.4, 48000)],
)
def test_dominant_frequency_of_a_one_second_tone(freq: float, rate: int) -> None:
    assert dominant_frequency_hz(sine(freq, 1000, rate), rate) == pytest.approx(freq, abs=0.1)


def test_dominant_frequency_of_a_short_noisy_tone() -> None:
    tone = mix(sine(1234.5, 100, 8000, -10.0), white_noise(100, 8000, -30.0, seed=11))
    assert dominant_frequency_hz(tone, 8000) == pytest.approx(1234.5, abs=2.0)


def test_dominant_frequency_respects_the_band() -> None:
    both = mix(sine(300, 500, 8000, -6.0), sine(2000, 500, 8000, -20.0))
    assert dominant_frequency_hz(both, 8000) == pytest.approx(300.0, abs=0.5)
    assert dominant_frequency_hz(both, 8000, min_hz=1000) == pytest.approx(2000.0, abs=0.5)
    assert dominant_frequency_hz(both, 8000, max_hz=1000) == pytest.approx(300.0, abs=0.5)


def test_dominant_frequency_of_silence_raises() -> None:
    with pytest.raises(ValueError, match=r"^no energy between 100 and 4000 Hz$"):
        dominant_frequency_hz(silence(100, 8000), 8000, max_hz=5000)


def test_dominant_frequency_rejects_an_empty_band() -> None:
    with pytest.raises(ValueError, match=r"^min_hz 500 must be at least 0 and below max_hz 400$"):
        dominant_frequency_hz(sine(440, 100, 8000), 8000, min_hz=500, max_hz=400)


def test_tone_present_for_the_tone_and_not_for_its_neighbours() -> None:
    tone = sine(1000, 200, 8000)
    assert tone_present(tone, 1000, 8000)
    assert not tone_present(tone, 1100, 8000)
    assert tone_energy_ratio(tone, 1000, 8000) == pytest.approx(1.0, abs=1e-6)


def test_tone_present_tolerates_a_small_offset() -> None:
    tone = sine(1008, 500, 8000)
    assert tone_present(tone, 1000, 8000)
    assert not tone_present(tone, 1000, 8000, tolerance_hz=0.0)


def test_tone_present_in_noise() -> None:
    noisy = mix(sine(440, 500, 8000, -10.0), white_noise(500, 8000, -25.0, seed=2))
    assert tone_present(noisy, 440, 8000, min_ratio=0.9)
    assert not tone_present(white_noise(500, 8000, -10.0, seed=3), 440, 8000, min_ratio=0.1)


def test_dtmf_halves() -> None:
    tone = dtmf_tone("8", 80, 8000)
    assert tone_present(tone, 852, 8000, min_ratio=0.4)
    assert tone_present(tone, 1336, 8000, min_ratio=0.4)
    assert not tone_present(tone, 941, 8000, min_ratio=0.1)


def test_silence_holds_no_tone() -> None:
    assert tone_energy_ratio(silence(100, 8000), 1000, 8000) == 0.0
    assert not tone_present(silence(100, 8000), 1000, 8000)


def test_bad_inputs() -> None:
    with pytest.raises(
        ValueError, match=r"^expected a non-empty 1-D block of samples, got shape \(0,\)$"
    ):
        goertzel_power(np.zeros(0, np.int16), 1000, 8000)
    with pytest.raises(
        ValueError,
        match=r"^freq_hz 4000 is outside 0\.\.4000 Hz "
        r"\(exclusive; the Nyquist range of sample_rate 8000\)$",
    ):
        tone_present(sine(440, 100, 8000), 4000, 8000)
