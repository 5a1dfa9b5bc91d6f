"""Voicemail beep detection on seeded synthetic tones, noise, music and espeak-ng speech.

The grid test and the false-alarm tests print their figures (run with ``-s`` to see them).
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Iterator

import numpy as np
import numpy.typing as npt
import pytest

from callfleet.agents.espeak import synthesize
from callfleet.media.beep import FRAME_MS, Beep, BeepDetector
from callfleet.media.frame import PCM16
from callfleet.media.g711 import alaw_decode, alaw_encode, ulaw_decode, ulaw_encode
from callfleet.media.resample import resample
from callfleet.media.tones import DTMF_FREQS, dtmf_sequence, ringback, silence, sine

RATES = (8000, 16000)
FULL_SCALE_RMS = 32767 / np.sqrt(2.0)

# The grid: tones x durations x levels x SNRs; rate, noise colour, codec and whether speech
# runs right up to the beep vary along it.
GRID_FREQS: tuple[tuple[float, ...], ...] = (
    (400.0,),
    (550.0,),
    (697.0,),
    (1000.0,),
    (1400.0,),
    (1777.0,),
    (2000.0,),
    (440.0, 480.0),
    (620.0, 1020.0),
    (1400.0, 1900.0),
)
GRID_DURATIONS_MS = (150.0, 250.0, 600.0, 2000.0)
GRID_LEVELS_DBFS = (-30.0, -18.0, -6.0)
GRID_SNRS_DB = (15.0, 25.0, 40.0)
CODECS = (None, "ulaw", "alaw")

TEXTS = (
    "Hi, you've reached the voicemail of John Smith. I'm not available right now, please "
    "leave your name, number and a brief message after the tone.",
    "Thank you for calling. Our office hours are Monday through Friday, nine a.m. to five "
    "p.m. Please stay on the line.",
    "Hello? Hello, who is this? Oh, hi! Yes, I can hear you now. What can I do for you today?",
    "The person you are trying to reach is not available. At the tone, please record your "
    "message. When you are finished, you may hang up.",
    "Well, I was thinking we could meet at noon, maybe around the corner at that little cafe "
    "you like so much.",
    "Ooooh, nooo, I'm sooo sorry. Mmmm. Aaaah. Eeeee. Yeah yeah yeah, alright, okay, bye now.",
    "Please press one for sales, two for support, or stay on the line to speak with an operator.",
    "We're sorry, all of our representatives are busy assisting other customers. Your call "
    "is important to us.",
)
VOICES = (
    ("en-us", 165),
    ("en-gb", 140),
    ("en-us+f3", 180),
    ("en-us+f5", 200),
    ("en+klatt4", 150),
    ("en-gb-x-rp+m3", 120),
    ("en-us+Annie", 170),
    ("en+belinda", 160),
    ("en+Alicia", 170),
    ("en-us+f2", 175),
)

# -- signals ------------------------------------------------------------------------------


def _pcm(x: npt.NDArray[np.float64]) -> PCM16:
    return np.clip(np.round(x), -32768, 32767).astype(np.int16)


def _noise(
    n: int, level_dbfs: float, rng: np.random.Generator, colour: str
) -> npt.NDArray[np.float64]:
    """Gaussian noise of RMS ``level_dbfs`` (re a full-scale sine), white or pink (-3 dB/oct)."""
    x = rng.standard_normal(n)
    if colour == "pink":
        spectrum = np.fft.rfft(x)
        spectrum /= np.sqrt(np.maximum(np.arange(len(spectrum)), 1))
        x = np.fft.irfft(spectrum, n)
    return x / np.sqrt(np.mean(x**2)) * FULL_SCALE_RMS * 10 ** (level_dbfs / 20)


def _tone(
    freqs: tuple[float, ...],
    duration_ms: float,
    rate: int,
    level_dbfs: float,
    rng: np.random.Generator,
) -> npt.NDArray[np.float64]:
    """Equal-level sines with random phases whose sum has an RMS of ``level_dbfs``."""
    t = np.arange(round(duration_ms * rate / 1000)) / rate
    amplitude = 32767 * 10 ** ((level_dbfs - 10 * np.log10(len(freqs))) / 20)
    return sum(
        (amplitude * np.sin(2 * np.pi * f * t + rng.uniform(0, 2 * np.pi)) for f in freqs),
        np.zeros(len(t)),
    )


def _codec(samples: PCM16, codec: str | None) -> PCM16:
    if codec == "ulaw":
        return ulaw_decode(ulaw_encode(samples))
    if codec == "alaw":
        return alaw_decode(alaw_encode(samples))
    return samples


def _scene(
    rate: int,
    freqs: tuple[float, ...],
    duration_ms: float,
    level_dbfs: float,
    snr_db: float,
    colour: str,
    codec: str | None,
    rng: np.random.Generator,
    speech: PCM16 | None = None,
    lead_ms: float = 800.0,
    tail_ms: float = 600.0,
) -> tuple[PCM16, float, float]:
    """A beep after ``lead_ms`` (speech at the beep's level ending right where it starts, if
    given), noise at ``snr_db`` below the beep, through ``codec``: (samples, start, end)."""
    lead, tail = round(lead_ms * rate / 1000), round(tail_ms * rate / 1000)
    beep = _tone(freqs, duration_ms, rate, level_dbfs, rng)
    x = np.zeros(lead + len(beep) + tail)
    x[lead : lead + len(beep)] = beep
    if speech is not None:
        words = speech[-lead:].astype(np.float64)
        rms = np.sqrt(np.mean(words**2))
        x[lead - len(words) : lead] += words / rms * FULL_SCALE_RMS * 10 ** (level_dbfs / 20)
    x += _noise(len(x), level_dbfs - snr_db, rng, colour)
    end = lead + len(beep)
    return _codec(_pcm(x), codec), lead * 1000 / rate, end * 1000 / rate


def _harmonic_note(
    f0: float,
    duration_ms: float,
    rate: int,
    rng: np.random.Generator,
    vibrato: float = 0.0,
    vibrato_hz: float = 5.5,
    decay_db_s: float = 0.0,
    harmonics: int = 12,
) -> npt.NDArray[np.float64]:
    """A voiced note: harmonics of ``f0`` shaped by two vowel formants (700 and 1200 Hz),
    frequency modulated by +-``vibrato`` (a fraction) at ``vibrato_hz``, peak 1.0."""
    t = np.arange(round(duration_ms * rate / 1000)) / rate
    inst = f0 * (1 + vibrato * np.sin(2 * np.pi * vibrato_hz * t + rng.uniform(0, 6.3)))
    phase = 2 * np.pi * np.cumsum(inst) / rate
    x = np.zeros(len(t))
    for k in range(1, harmonics + 1):
        f = k * f0
        if f >= rate / 2 * 0.9:
            break
        gain = (
            1
            / k**0.5
            * (0.2 + 1 / (1 + ((f - 700) / 150) ** 2) + 0.5 / (1 + ((f - 1200) / 200) ** 2))
        )
        x += gain * np.sin(k * phase + rng.uniform(0, 6.3))
    x *= 10 ** (-decay_db_s * t / 20)
    return x / np.max(np.abs(x))


def _at_level(x: npt.NDArray[np.float64], level_dbfs: float) -> PCM16:
    return _pcm(x / np.sqrt(np.mean(x**2)) * FULL_SCALE_RMS * 10 ** (level_dbfs / 20))


def _singing(rate: int, rng: np.random.Generator) -> Iterator[tuple[str, PCM16]]:
    """Sustained sung vowels, low to high voices, with +-1..3 % vibrato."""
    for f0, vibrato in itertools.product((110, 196, 262, 392, 523, 659, 880), (0.01, 0.02, 0.03)):
        note = _harmonic_note(
            f0, 1500, rate, rng, vibrato=vibrato, vibrato_hz=rng.uniform(4.5, 6.5)
        )
        yield f"sung {f0} Hz +-{vibrato:.0%}", _at_level(note, -18.0)


def _hold_music(rate: int, rng: np.random.Generator, decay_db_s: float, melody: bool) -> PCM16:
    """20 s of chords (bass + triad, each note a harmonic tone) changing every 0.5-1.2 s,
    sustained (organ) or decaying (piano), with or without a melody note on top."""
    progression = (
        (48, 60, 64, 67),
        (53, 60, 65, 69),
        (55, 59, 62, 67),
        (57, 60, 64, 69),
        (50, 62, 65, 69),
        (52, 59, 64, 68),
    )
    parts: list[npt.NDArray[np.float64]] = []
    total_ms = 0.0
    while total_ms < 20_000:
        chord = progression[int(rng.integers(len(progression)))]
        duration_ms = float(rng.uniform(500, 1200))
        notes = list(chord) + ([chord[-1] + 12 + int(rng.integers(0, 5))] if melody else [])
        mix = sum(
            _harmonic_note(
                440 * 2 ** ((m - 69) / 12),
                duration_ms,
                rate,
                rng,
                decay_db_s=decay_db_s,
                harmonics=6,
            )
            for m in notes
        )
        parts.append(np.asarray(mix))
        total_ms += duration_ms
    return _at_level(np.concatenate(parts), -20.0)


def _sit(rate: int, level_dbfs: float = -18.0) -> PCM16:
    """The 'number not in service' special information tone: 913.8, 1370.6 and 1776.7 Hz
    for 274, 274 and 380 ms (ANSI T1.401), between 0.5 s of silence."""
    tones = [sine(f, d, rate, level_dbfs) for f, d in ((913.8, 274), (1370.6, 274), (1776.7, 380))]
    return np.concatenate([silence(500, rate), *tones, silence(500, rate)])


def _espeak_corpus() -> dict[int, list[tuple[str, PCM16]]]:
    """Two sentences per voice (about 2.5 minutes), resampled to 8 and 16 kHz."""

    async def make() -> list[tuple[str, PCM16, int]]:
        out = []
        for i, (voice, wpm) in enumerate(VOICES):
            for j in range(2):
                text = TEXTS[(i + 3 * j) % len(TEXTS)]
                samples, rate = await synthesize(text, voice=voice, words_per_minute=wpm)
                out.append((f"{voice}@{wpm}", samples, rate))
        return out

    clips = asyncio.run(make())
    return {r: [(name, resample(s, rate, r)) for name, s, rate in clips] for r in RATES}


@pytest.fixture(scope="module")
def speech() -> dict[int, list[tuple[str, PCM16]]]:
    return _espeak_corpus()


def _detect(rate: int, samples: PCM16, chunk: int | None = None) -> list[Beep]:
    detector = BeepDetector(rate)
    if chunk is None:
        return detector.process(samples) + detector.flush()
    beeps: list[Beep] = []
    for i in range(0, len(samples), chunk):
        beeps += detector.process(samples[i : i + chunk])
    return beeps + detector.flush()


# -- detection ----------------------------------------------------------------------------


def test_detects_beeps_over_the_grid(speech: dict[int, list[tuple[str, PCM16]]]) -> None:
    rng = np.random.default_rng(2024)
    grid = itertools.product(GRID_FREQS, GRID_DURATIONS_MS, GRID_LEVELS_DBFS, GRID_SNRS_DB)
    rows: dict[str, dict[str, list[int]]] = {}  # group -> condition -> [good, total]
    start_errors: list[float] = []
    end_errors: list[float] = []
    failures: list[str] = []
    for k, (freqs, duration_ms, level, snr) in enumerate(grid):
        rate, colour, codec = RATES[k % 2], ("white", "pink")[k // 2 % 2], CODECS[k % 3]
        words = speech[rate][k % len(speech[rate])][1] if k % 4 < 2 else None
        samples, start, end = _scene(
            rate, freqs, duration_ms, level, snr, colour, codec, rng, speech=words
        )
        beeps = _detect(rate, samples)
        found = [b for b in beeps if abs(b.start_ms - start) <= 100]
        good = (
            len(beeps) == 1
            and len(found) == 1
            and len(found[0].freqs_hz) == len(freqs)
            and all(abs(a - b) <= 2.0 for a, b in zip(found[0].freqs_hz, freqs, strict=False))
            and abs(found[0].level_dbfs - level) <= 2.0
        )
        if found:
            start_errors.append(found[0].start_ms - start)
            end_errors.append(found[0].end_ms - end)
        if not good:
            failures.append(f"{freqs} {duration_ms} ms {level} dBFS {snr} dB: {beeps}")
        conditions = {
            "tone": f"{'+'.join(f'{f:g}' for f in freqs)} Hz",
            "duration": f"{duration_ms:g} ms",
            "level": f"{level:g} dBFS",
            "SNR": f"{snr:g} dB",
            "rate": f"{rate} Hz",
            "codec": str(codec),
            "before": "speech" if words is not None else "noise",
        }
        for group, condition in conditions.items():
            row = rows.setdefault(group, {}).setdefault(condition, [0, 0])
            row[0] += good
            row[1] += 1
    print("\nbeeps detected correctly (one beep, start within 100 ms, tones and level right):")
    for group, row_cells in rows.items():
        cells = [f"{c} {hits}/{total}" for c, (hits, total) in row_cells.items()]
        print(f"  {group:<9}" + ", ".join(cells))
    errors = np.abs(start_errors)
    n = k + 1
    print(
        f"{n - len(failures)}/{n} detected correctly; start error ms: median "
        f"{np.median(errors):.1f}, max {errors.max():.1f}; end error ms: median "
        f"{np.median(np.abs(end_errors)):.1f}, max {np.abs(end_errors).max():.1f}"
    )
    for failure in failures:
        print("  FAILED", failure)
    assert len(failures) <= 0.02 * n, failures
    assert errors.max() <= 100


@pytest.mark.parametrize("rate", RATES)
def test_start_end_frequency_and_level_are_measured(rate: int) -> None:
    rng = np.random.default_rng(7)
    samples, start, end = _scene(rate, (1000.0,), 500, -12.0, 30.0, "white", None, rng)
    [beep] = _detect(rate, samples)
    assert beep.start_ms == pytest.approx(start, abs=10)
    assert beep.end_ms == pytest.approx(end, abs=10)
    assert beep.duration_ms == pytest.approx(500, abs=15)
    assert beep.freqs_hz == (pytest.approx(1000.0, abs=0.5),)
    assert beep.level_dbfs == pytest.approx(-12.0, abs=0.5)
    assert not beep.is_sit


def test_dual_tone_reports_both_frequencies() -> None:
    rng = np.random.default_rng(8)
    samples, _, _ = _scene(8000, (1400.0, 1900.0), 400, -10.0, 30.0, "pink", "ulaw", rng)
    [beep] = _detect(8000, samples)
    assert beep.freqs_hz == (pytest.approx(1400, abs=1), pytest.approx(1900, abs=1))
    assert beep.level_dbfs == pytest.approx(-10.0, abs=1.0)


@pytest.mark.parametrize("codec", ["ulaw", "alaw"])
def test_g711_round_trip(codec: str) -> None:
    rng = np.random.default_rng(9)
    clean, start, end = _scene(8000, (850.0,), 300, -28.0, 40.0, "white", None, rng)
    [reference] = _detect(8000, clean)
    [beep] = _detect(8000, _codec(clean, codec))
    assert beep.start_ms == pytest.approx(reference.start_ms, abs=2)
    assert beep.end_ms == pytest.approx(reference.end_ms, abs=2)
    assert (beep.start_ms, beep.end_ms) == (
        pytest.approx(start, abs=10),
        pytest.approx(end, abs=10),
    )
    assert beep.freqs_hz == (pytest.approx(850, abs=0.5),)
    assert beep.level_dbfs == pytest.approx(-28, abs=0.5)


@pytest.mark.parametrize("dropout_ms", [10, 20])
@pytest.mark.parametrize("at_ms", [50, 300])
def test_a_short_dropout_does_not_split_or_hide_a_beep(dropout_ms: int, at_ms: int) -> None:
    """Lost packets played out as silence: the beep is still one beep, start to end."""
    tone = np.concatenate([silence(500, 8000), sine(1000, 600, 8000, -15.0), silence(500, 8000)])
    gap = round((500 + at_ms) * 8)
    tone[gap : gap + dropout_ms * 8] = 0
    [beep] = _detect(8000, tone)
    assert (beep.start_ms, beep.end_ms) == (pytest.approx(500, abs=10), pytest.approx(1100, abs=10))


def test_an_overtone_is_not_a_second_tone() -> None:
    tone = _pcm(
        _tone((500.0,), 400, 8000, -12.0, np.random.default_rng(1))
        + _tone((1000.0,), 400, 8000, -24.0, np.random.default_rng(2))
    )
    [beep] = _detect(8000, np.concatenate([silence(300, 8000), tone, silence(300, 8000)]))
    assert beep.freqs_hz == (pytest.approx(500, abs=0.5),)


def test_two_harmonics_of_a_voice_are_not_a_beep() -> None:
    """A steady 2:3 pair (harmonics 2 and 3 of a 200 Hz voice) is refused, like speech."""
    pair = _tone((400.0, 600.0), 400, 8000, -12.0, np.random.default_rng(3))
    samples = np.concatenate([silence(300, 8000), _pcm(pair), silence(300, 8000)])
    assert _detect(8000, samples) == []


def test_tones_shorter_than_the_minimum_are_ignored() -> None:
    rng = np.random.default_rng(10)
    short, _, _ = _scene(8000, (1000.0,), 100, -10.0, 40.0, "white", None, rng)
    assert _detect(8000, short) == []
    longer = BeepDetector(8000, min_duration_ms=400)
    samples, _, _ = _scene(8000, (1000.0,), 300, -10.0, 40.0, "white", None, rng)
    assert longer.process(samples) + longer.flush() == []


def test_quiet_and_out_of_band_tones_are_ignored() -> None:
    for freq, level in ((300.0, -10.0), (2500.0, -10.0), (1000.0, -55.0)):
        samples = np.concatenate(
            [silence(300, 8000), sine(freq, 500, 8000, level), silence(300, 8000)]
        )
        assert _detect(8000, samples) == [], (freq, level)


# -- streaming ----------------------------------------------------------------------------


def test_chunked_equals_whole(speech: dict[int, list[tuple[str, PCM16]]]) -> None:
    rng = np.random.default_rng(11)
    parts = []
    for i, freqs in enumerate(((1000.0,), (440.0, 480.0), (1777.0,))):
        samples, _, _ = _scene(
            8000, freqs, 300 + 200 * i, -15.0, 25.0, "pink", "ulaw", rng, speech=speech[8000][i][1]
        )
        parts.append(samples)
    stream = np.concatenate(parts)
    whole = _detect(8000, stream)
    assert len(whole) == 3
    for chunk in (7, 160, 511, 4096):
        assert _detect(8000, stream, chunk) == whole, chunk
    head = stream[:24000]  # sample by sample is slow: the first 3 s, with the first beep
    assert _detect(8000, head, 1) == _detect(8000, head) != []
    sizes = rng.integers(1, 2000, 400)
    cuts = np.cumsum(sizes)[np.cumsum(sizes) < len(stream)]
    detector = BeepDetector(8000)
    ragged = [b for piece in np.split(stream, cuts) for b in detector.process(piece)]
    assert ragged + detector.flush() == whole


def test_in_progress_is_reported_before_the_beep_ends() -> None:
    rng = np.random.default_rng(12)
    samples, start, end = _scene(16000, (1000.0,), 1000, -15.0, 30.0, "white", None, rng)
    detector = BeepDetector(16000)
    frame = 320  # 20 ms
    seen_at_ms: float | None = None
    reported_at_ms: float | None = None
    for i in range(0, len(samples), frame):
        now_ms = (i + frame) * 1000 / 16000
        beeps = detector.process(samples[i : i + frame])
        if seen_at_ms is None and detector.in_progress_since_ms is not None:
            seen_at_ms = now_ms
            assert detector.in_progress_since_ms == pytest.approx(start, abs=10)
        if beeps:
            reported_at_ms = now_ms
            assert detector.in_progress_since_ms is None
            assert beeps[0].start_ms == pytest.approx(start, abs=10)
    assert seen_at_ms is not None and reported_at_ms is not None
    print(
        f"\nconfirmed {seen_at_ms - start:.0f} ms after the start, "
        f"reported {reported_at_ms - end:.0f} ms after the end"
    )
    assert seen_at_ms - start <= 150 + FRAME_MS / 2 + 40
    assert reported_at_ms - end <= 120


def test_flush_reports_a_beep_still_sounding_and_starts_afresh() -> None:
    detector = BeepDetector(8000)
    tone = np.concatenate([silence(200, 8000), sine(700, 400, 8000, -10.0)])
    assert detector.process(tone) == []
    assert detector.in_progress_since_ms == pytest.approx(200, abs=10)
    [beep] = detector.flush()
    assert beep.start_ms == pytest.approx(200, abs=10)
    assert beep.end_ms == pytest.approx(600, abs=10)
    assert detector.in_progress_since_ms is None
    [again] = detector.process(tone) + detector.flush()
    assert again == beep


def test_bad_input_is_refused() -> None:
    with pytest.raises(ValueError, match="sample_rate must be a positive integer"):
        BeepDetector(0)
    with pytest.raises(ValueError, match="max_hz 5000"):
        BeepDetector(8000, max_hz=5000)
    with pytest.raises(ValueError, match="min_duration_ms must be at least 64"):
        BeepDetector(8000, min_duration_ms=10)
    with pytest.raises(ValueError, match="expects 1-D int16 samples, got float64"):
        BeepDetector(8000).process(np.zeros(160))  # type: ignore[arg-type]


# -- what is not a beep -------------------------------------------------------------------


@pytest.mark.parametrize("rate", RATES)
def test_no_beep_in_speech(rate: int, speech: dict[int, list[tuple[str, PCM16]]]) -> None:
    seconds = 0.0
    false = []
    for i, (name, samples) in enumerate(speech[rate]):
        samples = _codec(samples, CODECS[i % 3])
        seconds += len(samples) / rate
        false += [(name, b) for b in _detect(rate, samples)]
        seconds += len(samples) / rate  # and again, faster and higher pitched
        faster = resample(samples, round(rate * 1.25), rate)
        false += [(f"{name} x1.25", b) for b in _detect(rate, faster)]
    print(
        f"\n{rate} Hz: {seconds:.0f} s of speech in {len(VOICES)} voices: "
        f"{len(false)} false beeps {false}"
    )
    assert seconds >= 40
    assert false == []


def test_no_beep_in_singing() -> None:
    rng = np.random.default_rng(13)
    false = []
    for rate in RATES:
        for name, samples in _singing(rate, rng):
            false += [(name, rate, b) for b in _detect(rate, samples)]
    print(f"\nsinging: {len(false)} false beeps {false}")
    assert false == []


@pytest.mark.parametrize(("decay_db_s", "melody"), [(0.0, False), (12.0, False), (6.0, True)])
def test_no_beep_in_hold_music(decay_db_s: float, melody: bool) -> None:
    rng = np.random.default_rng(14)
    music = _hold_music(8000, rng, decay_db_s, melody)
    noisy = _codec(_pcm(music + _noise(len(music), -50.0, rng, "pink")), "ulaw")
    assert _detect(8000, noisy) == []


@pytest.mark.parametrize("colour", ["white", "pink"])
def test_no_beep_in_noise(colour: str) -> None:
    rng = np.random.default_rng(15)
    for rate, level in itertools.product(RATES, (-40.0, -20.0, -6.0)):
        noise = _pcm(_noise(rate * 10, level, rng, colour))
        assert _detect(rate, noise) == [], (rate, level)


@pytest.mark.parametrize("tone_ms", [70, 150, 400, 1000])
def test_no_beep_on_dtmf(tone_ms: float) -> None:
    rng = np.random.default_rng(16)
    for rate, level in itertools.product(RATES, (-20.0, -8.0)):
        keys = dtmf_sequence("".join(DTMF_FREQS), rate, tone_ms, 80, level)
        noisy = _pcm(keys + _noise(len(keys), level - 25, rng, "white"))
        assert _detect(rate, noisy) == [], (rate, level)


# -- tones that are reported, and how -----------------------------------------------------


def test_ringback_is_reported_as_a_dual_tone_beep() -> None:
    """Ringback is only heard before the answer; if it is fed anyway, each 2 s burst comes
    out as a 440 + 480 Hz beep (it cannot be told from a dual-tone beep by its sound)."""
    beeps = _detect(8000, ringback(12_000, 8000, amplitude_dbfs=-16.0))
    assert [round(b.start_ms / 1000) for b in beeps] == [0, 6]
    for b in beeps:
        assert b.freqs_hz == (pytest.approx(440, abs=1), pytest.approx(480, abs=1))
        assert b.duration_ms == pytest.approx(2000, abs=20)


@pytest.mark.parametrize("rate", RATES)
def test_sit_segments_are_flagged(rate: int) -> None:
    beeps = _detect(rate, _sit(rate))
    assert [b.freqs_hz[0] for b in beeps] == [
        pytest.approx(913.8, abs=1),
        pytest.approx(1370.6, abs=1),
        pytest.approx(1776.7, abs=1),
    ]
    assert [round(b.duration_ms / 10) * 10 for b in beeps] == [270, 270, 380]
    assert all(b.is_sit for b in beeps)
