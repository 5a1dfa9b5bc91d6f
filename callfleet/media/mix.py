"""Mixing, gain, level and channel interleaving for int16 audio.

Levels are in dBFS relative to a full-scale sine (AES17): a sine of amplitude 32767 has an
RMS of 0 dBFS, a full-scale square wave +3 dBFS. Everything that adds or amplifies
saturates at the int16 limits instead of wrapping around.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

from callfleet.media.frame import PCM16

#: RMS of a full-scale int16 sine, the 0 dBFS reference.
FULL_SCALE_RMS = 32767 / math.sqrt(2.0)
#: What ``rms_dbfs`` returns for digital silence or an empty block (instead of -inf).
SILENCE_DBFS = -120.0


def _check(what: str, samples: PCM16) -> None:
    if samples.dtype != np.int16 or samples.ndim != 1:
        raise ValueError(
            f"{what} must be 1-D int16, got {samples.dtype} with shape {samples.shape}"
        )


def _saturate(x: npt.NDArray[np.int64] | npt.NDArray[np.float64]) -> PCM16:
    return np.clip(x, -32768, 32767).astype(np.int16)


def mix(*tracks: PCM16) -> PCM16:
    """The sample-wise sum of ``tracks``, saturated to int16. Shorter tracks are padded with
    silence, so the result is as long as the longest (empty when no tracks are given)."""
    for i, track in enumerate(tracks):
        _check(f"mix track {i}", track)
    total = np.zeros(max((len(t) for t in tracks), default=0), np.int64)
    for track in tracks:
        total[: len(track)] += track
    return _saturate(total)


def gain(samples: PCM16, db: float) -> PCM16:
    """``samples`` amplified by ``db`` decibels (negative attenuates), rounded to the nearest
    integer and saturated to int16."""
    _check("gain samples", samples)
    return _saturate(np.round(samples * 10.0 ** (db / 20.0)))


def rms_dbfs(samples: PCM16) -> float:
    """RMS level in dBFS (0 dBFS = a full-scale sine). Digital silence and empty input give
    ``SILENCE_DBFS`` (-120.0) rather than -inf, and no result is lower than that."""
    _check("rms_dbfs samples", samples)
    if len(samples) == 0:
        return SILENCE_DBFS
    rms = math.sqrt(float(np.mean(np.square(samples, dtype=np.float64))))
    if rms == 0.0:
        return SILENCE_DBFS
    return max(SILENCE_DBFS, 20.0 * math.log10(rms / FULL_SCALE_RMS))


def interleave(left: PCM16, right: PCM16) -> npt.NDArray[np.int16]:
    """A stereo block of shape ``(n, 2)``; the shorter channel is padded with silence."""
    _check("interleave left", left)
    _check("interleave right", right)
    out = np.zeros((max(len(left), len(right)), 2), np.int16)
    out[: len(left), 0] = left
    out[: len(right), 1] = right
    return out
