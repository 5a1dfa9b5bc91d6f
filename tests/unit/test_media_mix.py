"""Mixing, gain, levels and interleaving: saturation instead of wrap-around."""

from __future__ import annotations

import numpy as np
import pytest

from callfleet.media.mix import SILENCE_DBFS, gain, interleave, mix, rms_dbfs
from callfleet.media.tones import sine, white_noise


def pcm(*values: int) -> np.ndarray:
    return np.array(values, np.int16)


def test_mix_sums_and_saturates_both_ways() -> None:
    a = pcm(30000, -30000, 100, -5)
    b = pcm(30000, -30000, 200, 5)
    np.testing.assert_array_equal(mix(a, b), pcm(32767, -32768, 300, 0))


def test_mix_pads_shorter_tracks_with_silence() -> None:
    out = mix(pcm(1, 2, 3, 4, 5), pcm(10), pcm(100, 100))
    np.testing.assert_array_equal(out, pcm(111, 102, 3, 4, 5))
    assert out.dtype == np.int16


def test_mix_of_one_track_is_a_copy_and_of_none_is_empty() -> None:
    track = pcm(1, -2, 3)
    out = mix(track)
    np.testing.assert_array_equal(out, track)
    assert out is not track
    assert len(mix()) == 0


def test_mix_names_the_bad_track() -> None:
    with pytest.raises(
        ValueError, match=r"^mix track 1 must be 1-D int16, got int32 with shape \(2,\)$"
    ):
        mix(pcm(1, 2), np.zeros(2, np.int32))


def test_gain_values_and_saturation() -> None:
    samples = pcm(1000, -1000, 20000, -20000, 0)
    np.testing.assert_array_equal(
        gain(samples, 20 * np.log10(2)), pcm(2000, -2000, 32767, -32768, 0)
    )
    np.testing.assert_array_equal(gain(samples, -20.0), pcm(100, -100, 2000, -2000, 0))
    np.testing.assert_array_equal(gain(samples, 0.0), samples)


def test_gain_changes_the_level_by_that_many_db() -> None:
    noise = white_noise(500, 8000, level_dbfs=-30.0, seed=5)
    assert rms_dbfs(gain(noise, 12.0)) - rms_dbfs(noise) == pytest.approx(12.0, abs=0.01)


def test_rms_dbfs_reference_is_a_full_scale_sine() -> None:
    assert rms_dbfs(sine(1000, 1000, 8000, amplitude_dbfs=0.0)) == pytest.approx(0.0, abs=0.01)
    assert rms_dbfs(sine(1000, 1000, 8000, amplitude_dbfs=-20.0)) == pytest.approx(-20.0, abs=0.01)
    square = np.where(np.arange(800) % 8 < 4, 32767, -32767).astype(np.int16)
    assert rms_dbfs(square) == pytest.approx(3.01, abs=0.01)


def test_rms_dbfs_of_silence_is_the_floor() -> None:
    assert SILENCE_DBFS == -120.0
    assert rms_dbfs(np.zeros(160, np.int16)) == SILENCE_DBFS
    assert rms_dbfs(np.zeros(0, np.int16)) == SILENCE_DBFS
    one_lsb_in_a_million = np.zeros(1_000_000, np.int16)
    one_lsb_in_a_million[0] = 1
    assert rms_dbfs(one_lsb_in_a_million) == SILENCE_DBFS  # clamped, never below the floor


def test_interleave_pads_the_shorter_channel() -> None:
    out = interleave(pcm(1, 2, 3), pcm(-1))
    assert out.shape == (3, 2)
    assert out.dtype == np.int16
    np.testing.assert_array_equal(out, [[1, -1], [2, 0], [3, 0]])
    np.testing.assert_array_equal(interleave(pcm(), pcm(7, 8)), [[0, 7], [0, 8]])


def test_interleave_rejects_stereo_input() -> None:
    with pytest.raises(
        ValueError, match=r"^interleave right must be 1-D int16, got int16 with shape \(2, 2\)$"
    ):
        interleave(pcm(1), np.zeros((2, 2), np.int16))
