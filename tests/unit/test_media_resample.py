"""Streaming resampler: chunked == whole, tones keep their pitch, lengths are exact."""

from __future__ import annotations

import numpy as np
import pytest

from callfleet.media.analysis import dominant_frequency_hz
from callfleet.media.mix import rms_dbfs
from callfleet.media.resample import Resampler, resample
from callfleet.media.tones import sine, white_noise

RATE_PAIRS = [(8000, 16000), (16000, 8000), (44100, 8000), (48000, 16000), (8000, 48000)]


def expected_length(n: int, from_rate: int, to_rate: int) -> int:
    return (n * to_rate + from_rate // 2) // from_rate


def feed_in_chunks(samples: np.ndarray, resampler: Resampler, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    out, pos = [], 0
    while pos < len(samples):
        size = int(rng.integers(1, 700))
        out.append(resampler.process(samples[pos : pos + size]))
        pos += size
    out.append(resampler.flush())
    return np.concatenate(out)


@pytest.mark.parametrize(("from_rate", "to_rate"), RATE_PAIRS)
def test_one_khz_stays_one_khz_with_the_right_length(from_rate: int, to_rate: int) -> None:
    tone = sine(1000, 1000, from_rate, amplitude_dbfs=-6.0)
    out = resample(tone, from_rate, to_rate)
    assert out.dtype == np.int16
    assert len(out) == to_rate  # one second
    assert dominant_frequency_hz(out, to_rate) == pytest.approx(1000.0, abs=1.0)
    assert rms_dbfs(out) == pytest.approx(-6.0, abs=0.5)


@pytest.mark.parametrize(("from_rate", "to_rate"), RATE_PAIRS)
def test_chunked_feeding_equals_one_call(from_rate: int, to_rate: int) -> None:
    signal = white_noise(700, from_rate, level_dbfs=-20.0, seed=7)
    whole = resample(signal, from_rate, to_rate)
    chunked = feed_in_chunks(signal, Resampler(from_rate, to_rate), seed=from_rate)
    np.testing.assert_array_equal(chunked, whole)


def test_twenty_ms_frames_like_a_call() -> None:
    resampler = Resampler(8000, 16000)
    tone = sine(440, 1000, 8000)
    frames = [resampler.process(tone[i : i + 160]) for i in range(0, 8000, 160)]
    out = np.concatenate([*frames, resampler.flush()])
    assert len(out) == 16000
    assert sum(len(f) for f in frames) >= 16000 - 64  # only the filter delay is held back
    assert dominant_frequency_hz(out, 16000) == pytest.approx(440.0, abs=1.0)


@pytest.mark.parametrize("n", [0, 1, 7, 21, 100, 159, 12345])
@pytest.mark.parametrize(("from_rate", "to_rate"), RATE_PAIRS)
def test_length_is_exact_even_for_tiny_buffers(n: int, from_rate: int, to_rate: int) -> None:
    samples = np.full(n, 1000, np.int16)
    assert len(resample(samples, from_rate, to_rate)) == expected_length(n, from_rate, to_rate)


def test_output_is_time_aligned() -> None:
    impulse = np.zeros(2000, np.int16)
    impulse[1000] = 20000
    assert int(np.argmax(resample(impulse, 8000, 16000))) == 2000
    assert int(np.argmax(resample(impulse, 16000, 8000))) == 500


def test_flush_resets_for_the_next_stream() -> None:
    resampler = Resampler(16000, 8000)
    signal = white_noise(300, 16000, level_dbfs=-20.0, seed=3)
    first = np.concatenate([resampler.process(signal), resampler.flush()])
    second = np.concatenate([resampler.process(signal), resampler.flush()])
    np.testing.assert_array_equal(first, second)
    assert len(resampler.flush()) == 0


def test_identity_passes_samples_through_as_a_copy() -> None:
    resampler = Resampler(8000, 8000)
    samples = np.arange(-50, 50, dtype=np.int16)
    out = resampler.process(samples)
    np.testing.assert_array_equal(out, samples)
    assert out is not samples
    assert len(resampler.flush()) == 0
    np.testing.assert_array_equal(resample(samples, 8000, 8000), samples)


@pytest.mark.parametrize("rate", [0, -8000, 8000.0])
def test_rejects_bad_rates(rate: object) -> None:
    with pytest.raises(
        ValueError, match=rf"^from_rate must be a positive integer sample rate in Hz, got {rate}$"
    ):
        Resampler(rate, 8000)  # type: ignore[arg-type]


def test_rejects_non_int16_samples() -> None:
    with pytest.raises(
        ValueError, match=r"^Resampler expects 1-D int16 samples, got float32 with shape \(4,\)$"
    ):
        Resampler(8000, 16000).process(np.zeros(4, np.float32))
