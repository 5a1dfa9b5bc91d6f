"""Spectral checks on int16 audio: which tone is this, and is that tone in there?

Used by tests (which tone did each side of a call hear) and diagnostics; these are block
functions, not streaming detectors.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

from callfleet.media.frame import PCM16

FULL_SCALE = 32767


def _as_float(samples: PCM16, sample_rate: int) -> npt.NDArray[np.float64]:
    if samples.ndim != 1 or len(samples) == 0:
        raise ValueError(f"expected a non-empty 1-D block of samples, got shape {samples.shape}")
    if sample_rate <= 0:
        raise ValueError(f"sample_rate must be positive, got {sample_rate}")
    return samples.astype(np.float64)


def _check_freq(freq_hz: float, sample_rate: int) -> None:
    if not 0 < freq_hz < sample_rate / 2:
        raise ValueError(
            f"freq_hz {freq_hz} is outside 0..{sample_rate / 2:g} Hz "
            f"(exclusive; the Nyquist range of sample_rate {sample_rate})"
        )


def goertzel_power(samples: PCM16, freq_hz: float, sample_rate: int) -> float:
    """Power of ``samples`` at exactly ``freq_hz`` (no window), relative to a full-scale sine.

    This is the single-frequency DFT ``X`` that the Goertzel recurrence computes (evaluated
    here as one vectorised dot product), normalised as ``(2 |X| / (N * 32767)) ** 2``: a sine
    of amplitude ``A`` at ``freq_hz`` gives ``(A / 32767) ** 2``, so 1.0 at full scale, 0.1 at
    -10 dBFS. A tone ``d`` Hz away falls off as the Dirichlet kernel of the block (zero at
    ``d = k * sample_rate / N``), so use blocks of a few tens of milliseconds for detection.
    """
    x = _as_float(samples, sample_rate)
    _check_freq(freq_hz, sample_rate)
    omega = 2.0 * math.pi * freq_hz / sample_rate
    n = np.arange(len(x), dtype=np.float64)
    re = float(np.dot(x, np.cos(omega * n)))
    im = float(np.dot(x, np.sin(omega * n)))
    amplitude = 2.0 * math.hypot(re, im) / len(x)
    return (amplitude / FULL_SCALE) ** 2


def dominant_frequency_hz(
    samples: PCM16, sample_rate: int, min_hz: float = 100, max_hz: float = 4000
) -> float:
    """The frequency in Hz of the strongest spectral peak between ``min_hz`` and ``max_hz``
    (clamped to the Nyquist frequency).

    Hann window, spectrum zero-padded to at most 1 Hz per bin, and a parabola through the
    log magnitudes of the peak bin and its neighbours: within a fraction of a hertz for a
    clean tone of 100 ms or more. Raises ``ValueError`` when the band holds no energy.
    """
    x = _as_float(samples, sample_rate)
    top_hz = min(max_hz, sample_rate / 2)
    if not 0 <= min_hz < top_hz:
        raise ValueError(f"min_hz {min_hz} must be at least 0 and below max_hz {top_hz:g}")
    nfft = max(len(x), sample_rate)
    spectrum = np.abs(np.fft.rfft((x - x.mean()) * np.hanning(len(x)), nfft))
    lo = math.ceil(min_hz * nfft / sample_rate)
    hi = math.floor(top_hz * nfft / sample_rate)
    k = lo + int(np.argmax(spectrum[lo : hi + 1]))
    if spectrum[k] == 0.0:
        raise ValueError(f"no energy between {min_hz:g} and {top_hz:g} Hz")
    offset = 0.0
    if 0 < k < len(spectrum) - 1:
        tiny = spectrum[k] * 1e-12
        a, b, c = np.log(np.maximum(spectrum[k - 1 : k + 2], tiny))
        denominator = a - 2.0 * b + c
        if denominator < 0.0:
            offset = 0.5 * (a - c) / denominator
    return (k + offset) * sample_rate / nfft


def tone_energy_ratio(
    samples: PCM16, freq_hz: float, sample_rate: int, tolerance_hz: float = 10.0
) -> float:
    """Fraction (0..1) of the block's energy (after removing DC) within ``tolerance_hz`` of
    ``freq_hz``, from a Hann-windowed spectrum; the band is widened by the window's main
    lobe (two bins, ``2 * sample_rate / len(samples)`` Hz) on each side. A pure tone gives
    ~1.0, each tone of a DTMF digit ~0.5, silence 0.0."""
    x = _as_float(samples, sample_rate)
    _check_freq(freq_hz, sample_rate)
    power = np.abs(np.fft.rfft((x - x.mean()) * np.hanning(len(x)))) ** 2
    power[1 : (len(x) + 1) // 2] *= 2.0  # one-sided spectrum: count negative frequencies
    total = float(power.sum())
    if total == 0.0:
        return 0.0
    freqs = np.fft.rfftfreq(len(x), 1.0 / sample_rate)
    half_width = tolerance_hz + 2.0 * sample_rate / len(x)
    return float(power[np.abs(freqs - freq_hz) <= half_width].sum()) / total


def tone_present(
    samples: PCM16,
    freq_hz: float,
    sample_rate: int,
    min_ratio: float = 0.5,
    tolerance_hz: float = 10.0,
) -> bool:
    """Whether at least ``min_ratio`` of the block's energy lies at ``freq_hz`` (see
    ``tone_energy_ratio``). For one tone of a dual tone (DTMF, ringback) use ~0.3."""
    return tone_energy_ratio(samples, freq_hz, sample_rate, tolerance_hz) >= min_ratio
