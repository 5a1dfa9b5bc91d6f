"""Test and signalling tones as int16 mono numpy arrays.

Levels are in dBFS relative to a full-scale sine: a sine of amplitude 32767 is 0 dBFS, so
``amplitude_dbfs=-10.0`` gives a peak of ``32767 * 10 ** (-10 / 20)`` ≈ 10362. Samples
that would exceed the int16 range saturate. Durations are in milliseconds and become
``round(duration_ms * sample_rate / 1000)`` samples.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from callfleet.media.frame import PCM16

FULL_SCALE = 32767

#: DTMF digit -> (low-group Hz, high-group Hz), ITU-T Q.23.
DTMF_FREQS: dict[str, tuple[int, int]] = {
    "1": (697, 1209),
    "2": (697, 1336),
    "3": (697, 1477),
    "A": (697, 1633),
    "4": (770, 1209),
    "5": (770, 1336),
    "6": (770, 1477),
    "B": (770, 1633),
    "7": (852, 1209),
    "8": (852, 1336),
    "9": (852, 1477),
    "C": (852, 1633),
    "*": (941, 1209),
    "0": (941, 1336),
    "#": (941, 1477),
    "D": (941, 1633),
}

#: Ringback per region: (f1 Hz, f2 Hz) and the cadence as (on ms, off ms) pairs, repeated.
RINGBACK: dict[str, tuple[tuple[int, int], tuple[tuple[int, int], ...]]] = {
    "us": ((440, 480), ((2000, 4000),)),
    "uk": ((400, 450), ((400, 200), (400, 2000))),
}


def _n_samples(duration_ms: float, sample_rate: int) -> int:
    if sample_rate <= 0:
        raise ValueError(f"sample_rate must be positive, got {sample_rate}")
    if duration_ms < 0:
        raise ValueError(f"duration_ms must not be negative, got {duration_ms}")
    return round(duration_ms * sample_rate / 1000)


def _amplitude(dbfs: float) -> float:
    return FULL_SCALE * 10.0 ** (dbfs / 20.0)


def _to_pcm16(x: npt.NDArray[np.float64]) -> PCM16:
    return np.clip(np.round(x), -32768, 32767).astype(np.int16)


def _sine(
    freq_hz: float, n: int, sample_rate: int, dbfs: float, phase: float
) -> npt.NDArray[np.float64]:
    if not 0 <= freq_hz <= sample_rate / 2:
        raise ValueError(
            f"freq_hz {freq_hz} is outside 0..{sample_rate / 2:g} Hz "
            f"(the Nyquist range of sample_rate {sample_rate})"
        )
    t = np.arange(n, dtype=np.float64) / sample_rate
    return _amplitude(dbfs) * np.sin(2.0 * np.pi * freq_hz * t + phase)


def sine(
    freq_hz: float,
    duration_ms: float,
    sample_rate: int,
    amplitude_dbfs: float = -10.0,
    phase: float = 0.0,
) -> PCM16:
    """A sine of ``freq_hz`` Hz, peak ``amplitude_dbfs`` dBFS, starting at ``phase`` radians."""
    n = _n_samples(duration_ms, sample_rate)
    return _to_pcm16(_sine(freq_hz, n, sample_rate, amplitude_dbfs, phase))


def dual_tone(
    f1_hz: float,
    f2_hz: float,
    duration_ms: float,
    sample_rate: int,
    amplitude_dbfs: float = -10.0,
    twist_db: float = 0.0,
) -> PCM16:
    """The sum of two sines: ``f1_hz`` at ``amplitude_dbfs`` and ``f2_hz`` at
    ``amplitude_dbfs + twist_db`` (each level is per component, so the peak of the sum is up
    to 6 dB higher). For DTMF, f1 is the low group and a positive twist a louder high group.
    """
    n = _n_samples(duration_ms, sample_rate)
    low = _sine(f1_hz, n, sample_rate, amplitude_dbfs, 0.0)
    high = _sine(f2_hz, n, sample_rate, amplitude_dbfs + twist_db, 0.0)
    return _to_pcm16(low + high)


def dtmf_tone(
    digit: str,
    duration_ms: float,
    sample_rate: int,
    amplitude_dbfs: float = -10.0,
    twist_db: float = 0.0,
) -> PCM16:
    """The DTMF tone for ``digit`` (0-9, *, #, A-D; a-d accepted), see ``dual_tone``."""
    freqs = DTMF_FREQS.get(digit.upper())
    if freqs is None:
        raise ValueError(f"invalid DTMF digit {digit!r}: expected one of 0-9, *, #, A-D")
    return dual_tone(freqs[0], freqs[1], duration_ms, sample_rate, amplitude_dbfs, twist_db)


def dtmf_sequence(
    digits: str,
    sample_rate: int,
    tone_ms: float = 100,
    gap_ms: float = 100,
    amplitude_dbfs: float = -10.0,
) -> PCM16:
    """``digits`` as DTMF tones of ``tone_ms`` each with ``gap_ms`` of silence between them
    (none before the first or after the last)."""
    tones = [dtmf_tone(d, tone_ms, sample_rate, amplitude_dbfs) for d in digits]
    gap = silence(gap_ms, sample_rate)
    parts: list[PCM16] = []
    for i, tone in enumerate(tones):
        if i:
            parts.append(gap)
        parts.append(tone)
    return np.concatenate(parts) if parts else np.zeros(0, np.int16)


def beep(
    freq_hz: float = 1000,
    duration_ms: float = 500,
    sample_rate: int = 8000,
    amplitude_dbfs: float = -10.0,
) -> PCM16:
    """A plain sine beep (1 kHz, 500 ms, 8 kHz by default)."""
    return sine(freq_hz, duration_ms, sample_rate, amplitude_dbfs)


def ringback(
    duration_ms: float,
    sample_rate: int,
    region: str = "us",
    amplitude_dbfs: float = -10.0,
) -> PCM16:
    """Ringback for ``duration_ms``, starting at the beginning of an "on" period.

    ``"us"``: 440 + 480 Hz, 2 s on, 4 s off. ``"uk"``: 400 + 450 Hz, 0.4 s on, 0.2 s off,
    0.4 s on, 2 s off. ``amplitude_dbfs`` is per component, as in ``dual_tone``.
    """
    spec = RINGBACK.get(region)
    if spec is None:
        raise ValueError(
            f"unknown ringback region {region!r}: expected one of {', '.join(sorted(RINGBACK))}"
        )
    (f1, f2), cadence = spec
    tone = dual_tone(f1, f2, duration_ms, sample_rate, amplitude_dbfs)
    gate = np.zeros(len(tone), dtype=bool)
    t_ms = 0
    while t_ms < duration_ms:
        for on_ms, off_ms in cadence:
            start = round(t_ms * sample_rate / 1000)
            gate[start : start + round(on_ms * sample_rate / 1000)] = True
            t_ms += on_ms + off_ms
    return np.where(gate, tone, 0).astype(np.int16)


def silence(duration_ms: float, sample_rate: int) -> PCM16:
    """``duration_ms`` of digital silence (zeros)."""
    return np.zeros(_n_samples(duration_ms, sample_rate), np.int16)


def white_noise(
    duration_ms: float,
    sample_rate: int,
    level_dbfs: float = -30.0,
    seed: int | None = None,
) -> PCM16:
    """Gaussian white noise whose RMS is ``level_dbfs`` relative to a full-scale sine (RMS
    32767 / √2), from ``numpy.random.default_rng(seed)``: the same seed, the same noise."""
    n = _n_samples(duration_ms, sample_rate)
    rms = _amplitude(level_dbfs) / np.sqrt(2.0)
    return _to_pcm16(np.random.default_rng(seed).standard_normal(n) * rms)
