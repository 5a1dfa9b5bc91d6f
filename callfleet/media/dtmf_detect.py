"""In-band DTMF detection: which keys were pressed, and when, in int16 mono audio.

Tones per ITU-T Q.23 (``tones.DTMF_FREQS``); the receiver meets ITU-T Q.24 as the reference
detectors state it (Asterisk ``main/dsp.c``; SpanDSP ``dtmf.c``, Steve Underwood): tones of
40 ms or more are detected, 20 ms or less rejected; frequency error within ±1.5 % accepted,
beyond ±3.5 % rejected; normal twist to 8 dB and reverse twist to 4 dB accepted; 15 dB S/N
works; speech and music raise no digit (talk-off).

Method, after the references: the stream is cut into blocks of ``DTMF_GSIZE`` samples (102
at 8 kHz, 12.75 ms; scaled with the rate). In each block the strongest row (low group) and
column (high group) tone are fitted together by least squares, on a ±3 % frequency grid so
that an accepted frequency error costs no energy, and the block holds that digit when both
reach ``DTMF_THRESHOLD_DBFS``, no other DTMF frequency (after the fitted pair is removed) is
within ``DTMF_RELATIVE_PEAK_*`` of them, and they carry ``DTMF_TO_TOTAL_ENERGY`` of the
block's energy. A digit begins when two consecutive blocks hold it and, over both, the twist
is within ``DTMF_NORMAL_TWIST`` / ``DTMF_REVERSE_TWIST``, the column's second harmonic is
``DTMF_2ND_HARMONIC_COL`` below it, and each tone is stronger at its nominal frequency than
``2 * DTMF_FREQ_TOLERANCE`` above or below it (Hann window), which puts the frequency
accept/reject boundary at ±``DTMF_FREQ_TOLERANCE``. It ends after ``DTMF_MISSES_TO_END``
blocks that do not hold it.

A block holds a tone only when the tone fills about ``DTMF_TO_TOTAL_ENERGY`` of it, so each
edge is known to within a block; ``start_ms`` and ``end_ms`` are the middle of that range
(about ±7 ms). Times are milliseconds on the stream's clock, from the first sample given to
``process()`` after construction or ``flush()``.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from callfleet.media.frame import PCM16
from callfleet.media.tones import DTMF_FREQS, FULL_SCALE
from callfleet.media.wav import StrPath, read_wav

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.intp]
BoolArray = npt.NDArray[np.bool_]

#: The rate the block size is given at (and ``detect_file`` resamples to), Hz.
SAMPLE_RATE = 8000
#: Samples per detection block at ``SAMPLE_RATE``: 12.75 ms, as Asterisk and SpanDSP.
DTMF_GSIZE = 102
#: Lowest level of each tone, dBFS (sine peak, as in ``tones``); -45 dBFS is SpanDSP's
#: -42 dBm0, the G.711 full-scale sine being +3.14 dBm0.
DTMF_THRESHOLD_DBFS = -45.0
# Twist as power ratios, in the convention of Asterisk dsp.c and SpanDSP dtmf.c, whose test is
# ``col < row * DTMF_REVERSE_TWIST and col * DTMF_NORMAL_TWIST > row``: "normal" twist is a
# high group (column) WEAKER than the low group, "reverse" twist a STRONGER one (Bellcore's
# "forward" twist is the other way round). The references put the limits at exactly 8 dB
# (6.31) and 4 dB (2.51); ours are 1 dB wider, so tones at the limits pass despite noise.
#: Largest accepted low-to-high group power ratio (9 dB).
DTMF_NORMAL_TWIST = 7.94
#: Largest accepted high-to-low group power ratio (5 dB).
DTMF_REVERSE_TWIST = 3.16
#: The best row and column must be this much stronger than the others of their group (8 dB).
DTMF_RELATIVE_PEAK_ROW = 6.31
DTMF_RELATIVE_PEAK_COL = 6.31
#: The column must be this much stronger than its second harmonic (18 dB, as SpanDSP's older
#: detector); harmonic-rich music otherwise finds DTMF pairs among its partials.
DTMF_2ND_HARMONIC_COL = 63.1
#: Fraction of a block's energy the two tones must carry. Asterisk's 42.0 is 0.82 of its
#: full-tone value (``DTMF_GSIZE / 2``); ours is higher because the fit follows frequency
#: error: full blocks reach 0.91 at 15 dB S/N, while the two blocks a 20 ms tone straddles
#: never both exceed 0.85, which is what rejects it.
DTMF_TO_TOTAL_ENERGY = 0.88
#: Accept/reject boundary of the frequency error, midway between ±1.5 % and ±3.5 %.
DTMF_FREQ_TOLERANCE = 0.025
#: Consecutive blocks that begin a digit (the start checks span a block and the one before)
#: and blocks that end it (Asterisk's ``hits_to_begin`` / ``misses_to_end``; 2 blocks fit
#: into any 40 ms pause).
DTMF_HITS_TO_BEGIN = 2
DTMF_MISSES_TO_END = 2

_ROWS = sorted({low for low, _ in DTMF_FREQS.values()})
_COLS = sorted({high for _, high in DTMF_FREQS.values()})
_DIGITS = {freqs: digit for digit, freqs in DTMF_FREQS.items()}
#: Digit of candidate index ``row * 4 + col``.
_DIGIT_AT = [_DIGITS[(low, high)] for low in _ROWS for high in _COLS]
#: Relative frequency grid the tones are fitted on; each DTMF tone's nominal grid entry.
_SEARCH = (-0.03, -0.02, -0.01, 0.0, 0.01, 0.02, 0.03)
_S = len(_SEARCH)
_NOMINAL = [t * _S + _SEARCH.index(0.0) for t in range(8)]


@dataclass(frozen=True, slots=True)
class DtmfTone:
    """One key press: ``digit`` (0-9, *, #, A-D) heard from ``start_ms`` to ``end_ms``."""

    digit: str
    start_ms: float
    end_ms: float

    @property
    def duration_ms(self) -> float:
        return self.end_ms - self.start_ms


def _cos_sin(freqs_hz: list[float], n: int, sample_rate: int) -> FloatArray:
    """Columns ``cos, sin`` for each frequency, over ``n`` samples."""
    phase = np.outer(np.arange(n), 2.0 * math.pi * np.asarray(freqs_hz) / sample_rate)
    out = np.empty((n, 2 * len(freqs_hz)))
    out[:, 0::2], out[:, 1::2] = np.cos(phase), np.sin(phase)
    return out


@dataclass(frozen=True, slots=True)
class _Tables:
    """What a detector at one sample rate correlates with, and the least-squares algebra."""

    block_size: int
    #: (n, 2K): cos and sin of each grid frequency (fundamentals, then second harmonics).
    basis: FloatArray
    #: (3, K): for each frequency, the quadratic form (``G^-2`` of its cos and sin columns) that
    #: turns the two correlations into the squared amplitude of the best-fitting sinusoid.
    single: FloatArray
    #: (4S, 4S, 4, 4): inverse Gram of a row and a column sinusoid on the grid: fits both.
    pair_inv: FloatArray
    #: (4S, 4S, 16, 4): correlation of the nominal DTMF sinusoids with such a pair.
    cross: FloatArray
    #: (2n, 48): Hann-windowed cos and sin at each DTMF frequency times 1 - 2t, 1, 1 + 2t.
    probes: FloatArray


def _amp2_forms(gram: FloatArray) -> FloatArray:
    """(3, K) forms from (K, 2, 2) Grams: |beta|^2 = c' G^-2 c for the fit beta = G^-1 c."""
    inv = np.linalg.inv(gram)
    q = inv @ inv
    return np.stack([q[:, 0, 0], 2.0 * q[:, 0, 1], q[:, 1, 1]])


def _amp2(corr: FloatArray, forms: FloatArray) -> FloatArray:
    """Squared amplitudes from (..., K, 2) cos/sin correlations and (3, K) forms."""
    c, s = corr[..., 0], corr[..., 1]
    return c * c * forms[0] + c * s * forms[1] + s * s * forms[2]


@functools.lru_cache(maxsize=8)
def _tables(sample_rate: int) -> _Tables:
    n = round(DTMF_GSIZE * sample_rate / SAMPLE_RATE)
    grid = [f * (1.0 + o) for f in [*_ROWS, *_COLS, *(2 * c for c in _COLS)] for o in _SEARCH]
    basis = _cos_sin(grid, n, sample_rate)
    gram = basis.T @ basis
    k = np.arange(len(grid))
    single = np.stack([2 * k, 2 * k + 1], axis=1)  # (K, 2) columns of each frequency
    r, c = np.meshgrid(np.arange(4 * _S), np.arange(4 * _S, 8 * _S), indexing="ij")
    pair = np.concatenate([single[r], single[c]], axis=2)  # (4S, 4S, 4) columns of each pair
    nominal = single[_NOMINAL].reshape(16)
    m = DTMF_HITS_TO_BEGIN * n
    probes = [f * (1.0 + j * 2.0 * DTMF_FREQ_TOLERANCE) for f in _ROWS + _COLS for j in (-1, 0, 1)]
    hann = 0.5 - 0.5 * np.cos(2.0 * math.pi * np.arange(m) / m)
    return _Tables(
        block_size=n,
        basis=basis,
        single=_amp2_forms(gram[single[:, :, None], single[:, None, :]]),
        pair_inv=np.linalg.inv(gram[pair[..., :, None], pair[..., None, :]]),
        cross=gram[nominal[None, None, :, None], pair[..., None, :]],
        probes=hann[:, None] * _cos_sin(probes, m, sample_rate),
    )


class DtmfDetector:
    """Streaming DTMF receiver for int16 mono audio at ``sample_rate`` Hz (8000 or more).

    Feed consecutive chunks of any size to ``process()``: it returns the tones that ended in
    them, and a stream cut into chunks gives exactly the events of the whole stream in one
    call. ``flush()`` at the end of the stream returns a tone still sounding and starts afresh.
    """

    def __init__(self, sample_rate: int = SAMPLE_RATE) -> None:
        if isinstance(sample_rate, bool) or not isinstance(sample_rate, int) or sample_rate < 8000:
            raise ValueError(
                f"DtmfDetector sample_rate must be an integer of at least 8000 Hz, "
                f"got {sample_rate!r}"
            )
        self.sample_rate = sample_rate
        self._t = _tables(sample_rate)
        #: Samples per detection block.
        self.block_size = n = self._t.block_size
        self._edge = (DTMF_TO_TOTAL_ENERGY - 0.5) * n
        self._min_amp2 = (FULL_SCALE * 10.0 ** (DTMF_THRESHOLD_DBFS / 20.0)) ** 2
        self._reset()

    def _reset(self) -> None:
        self._pending: PCM16 = np.zeros(0, np.int16)
        self._heard = 0  # samples given to process()
        self._blocks = 0  # complete blocks processed
        # The last block: its samples, its digit (-1 for none) and fitted powers.
        self._prev_block = np.zeros(self.block_size)
        self._prev_digit = -1
        self._prev_powers = np.zeros(3)
        self._run_start = 0  # first block of the current run of one digit
        self._current = -1  # digit being heard, -1 for none
        self._start_block = self._last_hit = self._misses = 0

    def process(self, samples: PCM16) -> list[DtmfTone]:
        """Tones that ended within this chunk (each tone is reported once, when it ends)."""
        if not isinstance(samples, np.ndarray) or samples.dtype != np.int16 or samples.ndim != 1:
            raise ValueError(
                f"DtmfDetector expects 1-D int16 samples, got "
                f"{getattr(samples, 'dtype', type(samples).__name__)} "
                f"with shape {getattr(samples, 'shape', None)}"
            )
        n = self.block_size
        self._heard += len(samples)
        data = np.concatenate([self._pending, samples])
        count = len(data) // n
        self._pending = data[count * n :]
        if count == 0:
            return []
        blocks = data[: count * n].reshape(count, n).astype(np.float64)
        digits, powers = self._fit(blocks)
        starts = self._starts(blocks, digits, powers)
        self._prev_block, self._prev_powers = blocks[-1], powers[-1]
        tones: list[DtmfTone] = []
        for digit, start in zip(digits.tolist(), starts.tolist(), strict=True):
            self._step(digit, start, tones)
        return tones

    def flush(self) -> list[DtmfTone]:
        """The tone still sounding at the end of the stream, if any; then start afresh."""
        tones = [self._end()] if self._current >= 0 else []
        self._reset()
        return tones

    def _fit(self, blocks: FloatArray) -> tuple[IntArray, FloatArray]:
        """Per block: ``row * 4 + col`` of the digit whose tones pass the level, relative
        peak and energy tests, or -1; and the squared amplitudes of that row, that column and
        the column's second harmonic, in sample units."""
        t, b = self._t, np.arange(len(blocks))
        corr = (blocks @ t.basis).reshape(len(blocks), -1, 2)
        amp2 = _amp2(corr, t.single)  # squared amplitude of each grid sinusoid alone
        fund = amp2[:, : 8 * _S].reshape(-1, 8, _S)
        shift = fund.argmax(axis=2)  # best grid point of each DTMF tone
        peak = fund.max(axis=2)
        row = peak[:, :4].argmax(axis=1)
        col = peak[:, 4:].argmax(axis=1)
        ri = row * _S + shift[b, row]
        ci = col * _S + shift[b, 4 + col]
        pair = np.concatenate([corr[b, ri], corr[b, 4 * _S + ci]], axis=1)
        fit = (t.pair_inv[ri, ci] @ pair[:, :, None])[:, :, 0]  # both tones at once
        low2 = fit[:, 0] ** 2 + fit[:, 1] ** 2
        high2 = fit[:, 2] ** 2 + fit[:, 3] ** 2
        explained = (pair * fit).sum(axis=1)
        energy = np.einsum("bn,bn->b", blocks, blocks)
        # The other DTMF frequencies once the fitted pair (and its leakage) is taken out.
        rest = corr[:, _NOMINAL] - (t.cross[ri, ci] @ fit[:, :, None]).reshape(-1, 8, 2)
        others = _amp2(rest, t.single[:, _NOMINAL])
        others[b, row] = others[b, 4 + col] = 0.0
        ok = (
            (low2 >= self._min_amp2)
            & (high2 >= self._min_amp2)
            & (others[:, :4].max(axis=1) * DTMF_RELATIVE_PEAK_ROW < low2)
            & (others[:, 4:].max(axis=1) * DTMF_RELATIVE_PEAK_COL < high2)
            & (explained >= DTMF_TO_TOTAL_ENERGY * energy)
        )
        powers = np.stack([low2, high2, amp2[:, 8 * _S :][b, ci]], axis=1)
        return np.where(ok, row * 4 + col, -1), powers

    def _starts(self, blocks: FloatArray, digits: IntArray, powers: FloatArray) -> BoolArray:
        """Per block, whether it and the block before hold the same digit with acceptable
        twist, a weak second harmonic and both tones within ``DTMF_FREQ_TOLERANCE``."""
        before = np.concatenate([[self._prev_digit], digits[:-1]])
        ok = (digits >= 0) & (digits == before)
        idx = np.flatnonzero(ok)
        if len(idx) == 0:
            return ok
        every = np.concatenate([self._prev_block[None], blocks])
        low2, high2, second2 = (
            np.concatenate([self._prev_powers[None], powers])[idx] + powers[idx]
        ).T
        spec = np.concatenate([every[idx], every[idx + 1]], axis=1) @ self._t.probes
        probe = (spec[:, 0::2] ** 2 + spec[:, 1::2] ** 2).reshape(len(idx), 8, 3)
        p, d = np.arange(len(idx)), digits[idx]
        row, col = probe[p, d // 4], probe[p, 4 + d % 4]
        ok[idx] = (
            (low2 < high2 * DTMF_NORMAL_TWIST)
            & (high2 < low2 * DTMF_REVERSE_TWIST)
            & (second2 * DTMF_2ND_HARMONIC_COL < high2)
            & (row[:, 1] > np.maximum(row[:, 0], row[:, 2]))
            & (col[:, 1] > np.maximum(col[:, 0], col[:, 2]))
        )
        return ok

    def _step(self, digit: int, start: bool, tones: list[DtmfTone]) -> None:
        k = self._blocks
        if digit != self._prev_digit:
            self._run_start = k
        if self._current >= 0:
            if digit == self._current:
                self._last_hit, self._misses = k, 0
            else:
                self._misses += 1
                if self._misses >= DTMF_MISSES_TO_END:
                    tones.append(self._end())
        if start and digit != self._current:
            if self._current >= 0:
                tones.append(self._end())
            self._current, self._start_block = digit, self._run_start
            self._last_hit, self._misses = k, 0
        self._prev_digit = digit
        self._blocks += 1

    def _end(self) -> DtmfTone:
        n, ms = self.block_size, 1000.0 / self.sample_rate
        start = max(0.0, self._start_block * n - self._edge)
        end = min(float(self._heard), (self._last_hit + 1) * n + self._edge)
        tone = DtmfTone(_DIGIT_AT[self._current], start * ms, end * ms)
        self._current = -1
        return tone


def detect_file(path: StrPath) -> list[DtmfTone]:
    """The DTMF tones in a WAV file (any format ``read_wav`` reads; resampled to 8 kHz)."""
    samples, rate = read_wav(path, sample_rate=SAMPLE_RATE)
    detector = DtmfDetector(rate)
    return detector.process(samples) + detector.flush()
