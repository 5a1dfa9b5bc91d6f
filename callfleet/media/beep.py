"""Streaming detection of the voicemail beep: a steady single or dual tone in 400-2000 Hz.

Hann frames of ``FRAME_MS`` every ``HOP_MS``. A frame is *tonal* when its one or two
strongest in-band peaks hold ``min_tonality`` of its energy above ``FLOOR_HZ`` and are
louder than ``min_level_dbfs``; tonal frames whose peak moves less than ``FREQ_STEP_HZ``
a frame form a *run*. A run is a beep if it lasts ``min_duration_ms`` (less
``DURATION_SLACK_MS``) and, over the frames wholly inside it, its peak frequency varies by
at most ``MAX_FREQ_SPREAD_HZ``, its level by ``MAX_LEVEL_SPREAD_DB`` and its median
tonality is ``MIN_STEADY_TONALITY`` or more. Tone generators hold all three; speech and
singing glide, wobble and swell even on a sustained vowel: of the 92 runs long enough to
be checked in 3000 s of espeak-ng speech (20 voices, 8 and 16 kHz), none passed and all but
one failed two checks or more. Limits: a sung note above 400 Hz held with under ~0.5 %
pitch wobble passes (it is a beep with overtones), while a beep whose overtones outside the
band carry over 10 % of its energy (a 1 kHz square wave) fails the tonality check. A dropout
(lost packets without concealment) delays the confirmation until ``STEADY_WINDOW_MS`` later;
one of over ~30 ms splits the beep in two.

Not beeps: a DTMF pair (ITU-T Q.23 +- ``DTMF_TOL``), two tones in a ratio of small whole
numbers (``VOICE_RATIOS``: two harmonics of a voice, e.g. 400 + 600 Hz; an overtone of the
louder tone is just dropped). Tones under ~40 Hz apart are reported as one. A single tone
on a special information tone segment (ANSI T1.401) is flagged ``is_sit`` (a carrier
intercept: hang up). Ringback (440 + 480 Hz, 2 s on) cannot be told from a dual-tone beep
and each burst is reported as one: it only precedes the answer, so do not feed early media.

Times are ms from the first sample fed (since construction or ``flush()``). A beep starts
and ends where the energy in its peaks crosses half its steady value (a few ms from the
truth). ``in_progress_since_ms`` is set ~``min_duration_ms + FRAME_MS / 2`` after a beep
starts (180 ms by default); ``process()`` returns the ``Beep`` ~``FRAME_MS / 2 +
MAX_GAP_FRAMES * HOP_MS`` (~70-80 ms) after it ends, when the caller can start talking.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from callfleet.media.frame import PCM16
from callfleet.media.tones import DTMF_FREQS

#: Analysis window (Hann; 64 ms resolves tones 40 Hz apart) and hop, ms.
FRAME_MS = 64.0
HOP_MS = 10.0
#: FFT length: a power of two at least ZERO_PAD frames; a peak is +- LOBE_BINS frame bins.
ZERO_PAD = 4
LOBE_BINS = 2
#: Energy below this (hum, rumble) does not count against tonality, Hz.
FLOOR_HZ = 100.0
#: Largest move of a run's peak from one frame to the next, Hz.
FREQ_STEP_HZ = 8.0
#: Steadiness over a beep's interior frames: frequency range (Hz), level range (dB) of its
#: peak(s), and median tonality.
MAX_FREQ_SPREAD_HZ = 2.0
MAX_LEVEL_SPREAD_DB = 2.0
MIN_STEADY_TONALITY = 0.9
#: The steadiness of a run is judged over its last this many ms (or all of it if shorter).
STEADY_WINDOW_MS = 300.0
#: A second peak is a tone of the run if at most DUAL_FRAME_DB weaker in a frame, and is
#: reported if at most DUAL_REPORT_DB weaker over the beep.
DUAL_FRAME_DB = 6.0
DUAL_REPORT_DB = 20.0
#: Non-matching frames that end a run; a run counts as long enough if it measures
#: ``min_duration_ms`` less DURATION_SLACK_MS.
MAX_GAP_FRAMES = 3
DURATION_SLACK_MS = 15.0
#: Frames kept before a run (to find where its tone rose), frames of a run whose spectra
#: are kept (for its frequencies), frames analysed at once (bounds memory).
HISTORY_FRAMES = 8
MAX_STORED_FRAMES = 100
MAX_BATCH_FRAMES = 256
#: Relative tolerances: of the band edges, of a DTMF pair, of a voice ratio.
BAND_TOL = 0.01
DTMF_TOL = 0.02
HARMONIC_TOL = 0.01
#: Frequency ratios p/q of two harmonics of one voice (p, q <= 5).
VOICE_RATIOS = ((2, 1), (3, 1), (4, 1), (5, 1), (3, 2), (4, 3), (5, 2), (5, 3), (5, 4))
#: Special information tone segments (ANSI T1.401): Hz (+- SIT_TOL) and duration, ms.
SIT_FREQS_HZ = (913.8, 985.2, 1370.6, 1428.5, 1776.7)
SIT_TOL = 0.01
SIT_DURATION_MS = (230.0, 430.0)

_FULL_SCALE_MS = 32767.0**2 / 2.0  # mean square of a full-scale sine (0 dBFS)
_NEW_TONE = -1.0  # _match: the run has become a dual tone
_DTMF = tuple(DTMF_FREQS.values())


@dataclass(frozen=True, slots=True)
class Beep:
    """A detected tone: ``start_ms``/``end_ms`` from the start of the stream, its one or two
    frequencies in Hz (ascending), its RMS level in dBFS (AES17, all tones together: a
    -10 dBFS sine gives -10.0) and whether it looks like a special information tone."""

    start_ms: float
    end_ms: float
    freqs_hz: tuple[float, ...]
    level_dbfs: float
    is_sit: bool = False

    @property
    def duration_ms(self) -> float:
        return self.end_ms - self.start_ms


@dataclass(slots=True)
class _Run:
    """Tonal frames around the same tone(s), preceded by the frames of the history."""

    first: int  # frame index of energy[0] (the history before the run's first tonal frame)
    tones_hz: list[float]
    bins: npt.NDArray[np.bool_]  # spectral bins of the tones' peaks
    energy: list[float]  # per frame: power in ``bins``
    peak_hz: list[float]  # per frame: the peak that matched the run, NaN if none
    tonality: list[float]  # per frame: share of energy in the two strongest peaks
    band: list[npt.NDArray[np.float64]]  # per frame (the first ones): in-band power
    last: int  # frame index of the last matching frame
    start_ms: float | None = None  # set once the run is confirmed as a beep
    rejected: bool = False  # confirmed, but a DTMF key or a voice


class BeepDetector:
    """Finds beeps in one int16 mono stream at ``sample_rate`` Hz, fed in chunks of any size;
    the chunking does not change the result.

    ``min_duration_ms`` (150): shortest beep. ``min_hz``/``max_hz`` (400/2000 Hz): band of
    its tones. ``min_level_dbfs`` (-45): quietest tone. ``min_tonality`` (0.75): share of a
    frame's energy above ``FLOOR_HZ`` in its two strongest in-band peaks for it to count.
    """

    def __init__(
        self,
        sample_rate: int,
        *,
        min_duration_ms: float = 150.0,
        min_hz: float = 400.0,
        max_hz: float = 2000.0,
        min_level_dbfs: float = -45.0,
        min_tonality: float = 0.75,
    ) -> None:
        if isinstance(sample_rate, bool) or not isinstance(sample_rate, int) or sample_rate <= 0:
            raise ValueError(f"sample_rate must be a positive integer in Hz, got {sample_rate!r}")
        if not 0 < min_hz < max_hz <= 0.45 * sample_rate:
            raise ValueError(
                f"min_hz {min_hz} and max_hz {max_hz} must satisfy 0 < min_hz < max_hz <= "
                f"{0.45 * sample_rate:g} Hz (0.45 x sample_rate {sample_rate})"
            )
        if min_duration_ms < FRAME_MS:
            raise ValueError(
                f"min_duration_ms must be at least {FRAME_MS:g}, got {min_duration_ms}"
            )
        if not 0 < min_tonality <= 1:
            raise ValueError(f"min_tonality must be in (0, 1], got {min_tonality}")
        self.sample_rate = sample_rate
        self.min_duration_ms = min_duration_ms
        self.min_hz, self.max_hz = min_hz, max_hz
        self.min_tonality = min_tonality
        self._win = round(FRAME_MS * sample_rate / 1000)
        self._hop = round(HOP_MS * sample_rate / 1000)
        self._nfft = 1 << math.ceil(math.log2(self._win * ZERO_PAD))
        self._window = np.hanning(self._win)
        self._bin_hz = sample_rate / self._nfft
        self._lobe = LOBE_BINS * self._nfft // self._win
        self._floor_bin = math.ceil(FLOOR_HZ / self._bin_hz)
        margin = self._lobe + 1
        self._lo = max(1, math.floor(min_hz / self._bin_hz) - margin)
        self._hi = math.ceil(max_hz / self._bin_hz) + margin
        # A sine's power summed over its peak (one-sided) is mean_square * _per_ms.
        self._per_ms = self._nfft / 2 * float(self._window @ self._window)
        self._min_energy = 10 ** (min_level_dbfs / 10) * _FULL_SCALE_MS * self._per_ms
        self._reset()

    def _reset(self) -> None:
        # Half a frame of silence before the stream: frame i is centred on sample i * hop.
        self._buf = np.zeros(self._win // 2, np.int16)
        self._frame = 0  # index of the next frame
        self._history: deque[npt.NDArray[np.float64]] = deque(maxlen=HISTORY_FRAMES)
        self._run: _Run | None = None
        # Tones of a beep that a tonal frame just ended (in a sequence of tones), which the
        # run starting on that frame must not take as its second tone.
        self._ended: list[float] = []

    @property
    def in_progress_since_ms(self) -> float | None:
        """Start (ms) of the beep being heard once it has lasted ``min_duration_ms``, until
        ``process()`` returns it; ``None`` otherwise."""
        run = self._run
        return None if run is None or run.rejected else run.start_ms

    def process(self, samples: PCM16) -> list[Beep]:
        """Feed the next chunk; returns the beeps that have ended, oldest first."""
        if samples.dtype != np.int16 or samples.ndim != 1:
            raise ValueError(
                f"BeepDetector expects 1-D int16 samples, got {samples.dtype} "
                f"with shape {samples.shape}"
            )
        self._buf = np.concatenate([self._buf, samples])
        n = max(0, (len(self._buf) - self._win) // self._hop + 1)
        if n == 0:
            return []
        frames = np.lib.stride_tricks.sliding_window_view(self._buf, self._win)[:: self._hop]
        beeps: list[Beep] = []
        for i in range(0, n, MAX_BATCH_FRAMES):
            beeps += self._analyse(frames[i : min(i + MAX_BATCH_FRAMES, n)].astype(np.float64))
        self._buf = self._buf[n * self._hop :]
        return beeps

    def flush(self) -> list[Beep]:
        """End the stream: returns the beep still sounding, if any, and starts afresh."""
        beeps = self.process(np.zeros(self._win, np.int16))
        if self._run is not None:
            beeps += self._close(self._run)
        self._reset()
        return beeps

    def _analyse(self, frames: npt.NDArray[np.float64]) -> list[Beep]:
        """Spectral peaks of a batch of frames (each row independent), then one step each."""
        frames -= frames.mean(axis=1, keepdims=True)
        power = np.abs(np.fft.rfft(frames * self._window, self._nfft, axis=1)) ** 2
        band = power[:, self._lo : self._hi + 1]
        peaks = np.zeros_like(band)
        inner = (band[:, 1:-1] >= band[:, :-2]) & (band[:, 1:-1] > band[:, 2:])
        peaks[:, 1:-1] = np.where(inner, band[:, 1:-1], 0.0)
        offsets = np.arange(band.shape[1])[None, :]
        k1 = np.argmax(peaks, axis=1)
        near1 = np.abs(offsets - k1[:, None]) <= self._lobe
        k2 = np.argmax(np.where(near1, 0.0, peaks), axis=1)
        rows = np.arange(len(frames))
        near2 = (np.abs(offsets - k2[:, None]) <= self._lobe) & (peaks[rows, k2] > 0)[:, None]
        e1 = np.sum(np.where(near1, band, 0.0), axis=1)
        e12 = np.sum(np.where(near1 | near2, band, 0.0), axis=1)
        ratio = e12 / np.maximum(np.sum(power[:, self._floor_bin :], axis=1), 1e-30)
        tonal = (peaks[rows, k1] > 0) & (ratio >= self.min_tonality) & (e12 >= self._min_energy)
        dual = e12 - e1 >= e1 * 10 ** (-DUAL_FRAME_DB / 10)
        f1, f2 = self._peak_hz(band, k1), self._peak_hz(band, k2)
        beeps: list[Beep] = []
        for i in range(len(frames)):
            f2_i = float(f2[i]) if dual[i] else None
            beeps += self._step(power[i].copy(), float(ratio[i]) * tonal[i], float(f1[i]), f2_i)
        return beeps

    def _peak_hz(
        self, band: npt.NDArray[np.float64], k: npt.NDArray[np.intp]
    ) -> npt.NDArray[np.float64]:
        """Frequency (Hz) of the peak at bin ``k`` of each row: parabola through log powers."""
        rows, k = np.arange(len(band)), np.clip(k, 1, band.shape[1] - 2)
        a, b, c = (np.log(np.maximum(band[rows, k + d], 1e-30)) for d in (-1, 0, 1))
        den = np.where(a - 2 * b + c < 0, a - 2 * b + c, -1.0)
        offset = np.clip(np.where(a - 2 * b + c < 0, 0.5 * (a - c) / den, 0.0), -1, 1)
        return (self._lo + k + offset) * self._bin_hz

    def _step(
        self, power: npt.NDArray[np.float64], tonality: float, f1: float, f2: float | None
    ) -> list[Beep]:
        """One frame: its power spectrum, tonality (0 when not tonal) and peak(s) in Hz."""
        index, tonal = self._frame, tonality > 0
        self._frame += 1
        self._history.append(power)
        run, beeps = self._run, []
        if run is not None:
            match = self._match(run, f1, f2, grow=run.start_ms is None) if tonal else None
            if match == _NEW_TONE:
                self._run = self._new_run(index, run.tones_hz, tonality)
                return []
            run.energy.append(float(power[run.bins].sum()))
            run.peak_hz.append(math.nan if match is None else match)
            run.tonality.append(tonality)
            if len(run.band) < MAX_STORED_FRAMES:
                run.band.append(power[self._lo : self._hi + 1])
            if match is not None:
                run.last = index
                if run.start_ms is None:
                    self._try_confirm(run)
                return []
            if tonal or index - run.last >= MAX_GAP_FRAMES:
                beeps = self._close(run)
                self._ended = run.tones_hz if tonal and run.start_ms is not None else []
                self._run = run = None
        if run is None and tonal:
            tones = [f1] if f2 is None or _near(f2, self._ended) else [f1, f2]
            self._run = self._new_run(index, tones, tonality)
        elif run is None:
            self._ended = []
        return beeps

    def _new_run(self, index: int, tones: list[float], tonality: float) -> _Run:
        """A run whose first tonal frame is ``index`` (the newest frame of the history)."""
        bins = np.zeros(self._nfft // 2 + 1, dtype=bool)
        for t in tones:
            k = round(t / self._bin_hz)
            bins[k - self._lobe : k + self._lobe + 1] = True
        n, history = len(self._history), self._history
        energy = [float(p[bins].sum()) for p in history]
        band = [p[self._lo : self._hi + 1] for p in history]
        peak_hz, tonalities = [*[math.nan] * (n - 1), tones[0]], [*[0.0] * (n - 1), tonality]
        return _Run(index - n + 1, tones, bins, energy, peak_hz, tonalities, band, index)

    def _match(self, run: _Run, f1: float, f2: float | None, grow: bool) -> float | None:
        """The peak (Hz) by which a tonal frame continues the run, or ``None``: its strongest
        peak within ``FREQ_STEP_HZ`` of one of the run's tones, or its second peak of the
        only tone (the louder of two tones may change); the tones follow the peaks. If
        ``grow``, a one-tone run meeting a dual frame with one new peak takes both peaks as
        its tones and ``_NEW_TONE`` is returned."""
        tones = run.tones_hz
        peaks = [f1] if f2 is None else [f1, f2]
        near = [min(range(len(tones)), key=lambda t: abs(f - tones[t])) for f in peaks]
        hits = [abs(f - tones[j]) <= FREQ_STEP_HZ for f, j in zip(peaks, near, strict=True)]
        if len(peaks) == 2 and len(tones) == 1 and hits[0] != hits[1]:
            if grow and not _near(peaks[hits.index(False)], self._ended):
                tones[:] = peaks
                return _NEW_TONE
        elif not hits[0]:
            return None
        for f, j, hit in zip(peaks, near, hits, strict=True):
            if hit:
                tones[j] = f
        return peaks[hits.index(True)]

    def _centre_ms(self, index: int) -> float:
        return (index * self._hop + self._win / 2 - self._win // 2) * 1000 / self.sample_rate

    def _edges_ms(self, run: _Run) -> tuple[float, float, float]:
        """(start ms, end ms, steady tone energy): where the tone energy crosses half the
        median of the matching frames, outward from (or inward to) the first and last."""
        matching = _matching(run)
        steady = float(np.median([run.energy[n] for n in matching]))
        energy, half = run.energy, steady / 2
        i, j = matching[0], matching[-1]
        while energy[i] < half:  # the first matching frames may only be the tone's rise
            i += 1
        while i > 0 and energy[i - 1] >= half:
            i -= 1
        while energy[j] < half:
            j -= 1
        while j < len(energy) - 1 and energy[j + 1] >= half:
            j += 1
        hop_ms = self._hop * 1000 / self.sample_rate
        start, end = self._centre_ms(run.first + i), self._centre_ms(run.first + j)
        if i > 0:  # interpolate between the frames either side of the crossing
            start -= (energy[i] - half) / (energy[i] - energy[i - 1]) * hop_ms
        if j < len(energy) - 1:
            end += (energy[j] - half) / (energy[j] - energy[j + 1]) * hop_ms
        return start, end, steady

    def _interior(self, run: _Run, start_ms: float, end_ms: float) -> list[int]:
        """Offsets of the matching frames that lie wholly between ``start_ms`` and ``end_ms``."""
        lo, hi = start_ms + FRAME_MS / 2, end_ms - FRAME_MS / 2
        return [n for n in _matching(run) if lo <= self._centre_ms(run.first + n) <= hi]

    def _qualifies(self, run: _Run, start_ms: float, end_ms: float) -> bool:
        """Whether the run, from ``start_ms`` to ``end_ms``, is long enough and was steady
        over its last ``STEADY_WINDOW_MS`` (so a dropout early in a long beep is forgiven)."""
        frames = self._interior(run, max(start_ms, end_ms - STEADY_WINDOW_MS), end_ms)
        if end_ms - start_ms < self.min_duration_ms - DURATION_SLACK_MS or len(frames) < 3:
            return False
        by_tone: dict[int, list[float]] = {}
        for f in (run.peak_hz[n] for n in frames):
            j = min(range(len(run.tones_hz)), key=lambda t: abs(f - run.tones_hz[t]))
            by_tone.setdefault(j, []).append(f)
        energies = [run.energy[n] for n in frames]
        return (
            max(max(v) - min(v) for v in by_tone.values()) <= MAX_FREQ_SPREAD_HZ
            and max(energies) <= min(energies) * 10 ** (MAX_LEVEL_SPREAD_DB / 10)
            and float(np.median([run.tonality[n] for n in frames])) >= MIN_STEADY_TONALITY
        )

    def _try_confirm(self, run: _Run) -> None:
        """Confirm a young run as a beep once it qualifies (older runs: at their end)."""
        too_short = (run.last - run.first) * HOP_MS < self.min_duration_ms - DURATION_SLACK_MS
        if too_short or len(run.energy) > MAX_STORED_FRAMES:
            return
        start, _, _ = self._edges_ms(run)
        now = self._centre_ms(run.last)
        if self._qualifies(run, start, now):
            run.start_ms = start
            run.rejected = self._tones(run, self._interior(run, start, now)) is None

    def _tones(self, run: _Run, frames: list[int]) -> tuple[float, ...] | None:
        """The one or two tones (Hz, ascending) of the summed spectra of ``frames``, or
        ``None`` if they are a DTMF pair or two harmonics of a voice."""
        stored = [n for n in frames if n < len(run.band)]
        band = np.sum([run.band[n] for n in stored or range(len(run.band))], axis=0)[None, :]
        k1 = int(np.argmax(band[0]))
        masked = band[0].copy()
        masked[max(k1 - self._lobe, 0) : k1 + self._lobe + 1] = 0.0
        inner = (masked[1:-1] >= band[0, :-2]) & (masked[1:-1] > band[0, 2:]) & (masked[1:-1] > 0)
        k2 = int(np.argmax(np.where(inner, masked[1:-1], 0.0))) + 1
        f1 = float(self._peak_hz(band, np.array([k1]))[0])
        if not inner.any() or band[0, k2] < band[0, k1] * 10 ** (-DUAL_REPORT_DB / 10):
            return (f1,)
        f2 = float(self._peak_hz(band, np.array([k2]))[0])
        low, high = min(f1, f2), max(f1, f2)
        for p, q in VOICE_RATIOS:
            if abs(high / low - p / q) <= HARMONIC_TOL * p / q:
                return (f1,) if q == 1 and f1 < f2 else None  # an overtone, or a voice
        dtmf = (abs(low - a) <= DTMF_TOL * a and abs(high - b) <= DTMF_TOL * b for a, b in _DTMF)
        return None if any(dtmf) else (low, high)

    def _close(self, run: _Run) -> list[Beep]:
        """The run as a beep, if it is one, now that it has ended."""
        if run.rejected:
            return []
        start, end, steady = self._edges_ms(run)
        if end - start < self.min_duration_ms - DURATION_SLACK_MS or (
            run.start_ms is None and not self._qualifies(run, start, end)
        ):
            return []
        tones = self._tones(run, self._interior(run, start, end))
        lo, hi = self.min_hz * (1 - BAND_TOL), self.max_hz * (1 + BAND_TOL)
        if tones is None or not all(lo <= t <= hi for t in tones):
            return []
        level = 10 * math.log10(max(steady / self._per_ms / _FULL_SCALE_MS, 1e-12))
        sit = len(tones) == 1 and SIT_DURATION_MS[0] <= end - start <= SIT_DURATION_MS[1]
        sit = sit and any(abs(tones[0] - f) <= SIT_TOL * f for f in SIT_FREQS_HZ)
        freqs = tuple(round(t, 1) for t in tones)
        return [Beep(round(start, 1), round(end, 1), freqs, round(level, 1), sit)]


def _matching(run: _Run) -> list[int]:
    """Offsets of the run's frames that matched it (``peak_hz`` not NaN)."""
    return [n for n, f in enumerate(run.peak_hz) if f == f]


def _near(freq_hz: float, tones_hz: list[float]) -> bool:
    return any(abs(freq_hz - t) <= FREQ_STEP_HZ for t in tones_hz)
