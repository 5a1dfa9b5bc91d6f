"""In-band DTMF detection against the ITU-T Q.24 figures, on seeded synthetic signals.

Twist follows Asterisk/SpanDSP (see ``dtmf_detect``): "normal" twist is a weaker high group,
which is ``twist_db < 0`` for ``tones.dtmf_tone``; "reverse" twist a stronger one.
"""

from __future__ import annotations

import numpy as np
import pytest

from callfleet.agents.espeak import synthesize
from callfleet.media.dtmf_detect import DtmfDetector, DtmfTone, detect_file
from callfleet.media.g711 import alaw_decode, alaw_encode, ulaw_decode, ulaw_encode
from callfleet.media.resample import resample
from callfleet.media.tones import DTMF_FREQS, dtmf_tone, dual_tone, silence, white_noise
from callfleet.media.wav import write_wav

DIGITS = "0123456789*#ABCD"
TIMING_MS = 15.0


def detect(samples: np.ndarray, sample_rate: int = 8000) -> list[DtmfTone]:
    detector = DtmfDetector(sample_rate)
    return detector.process(samples) + detector.flush()


def padded(tone: np.ndarray, sample_rate: int, lead: int = 0) -> np.ndarray:
    """``tone`` after 50 ms + ``lead`` samples of silence, with 100 ms of silence after."""
    before = np.zeros(sample_rate // 20 + lead, np.int16)
    return np.concatenate([before, tone, silence(100, sample_rate)])


def assert_one(events: list[DtmfTone], digit: str, start_ms: float, end_ms: float) -> None:
    assert [e.digit for e in events] == [digit]
    assert events[0].start_ms == pytest.approx(start_ms, abs=TIMING_MS)
    assert events[0].end_ms == pytest.approx(end_ms, abs=TIMING_MS)


def sequence(
    digits: str, sample_rate: int, tone_ms: float, gap_ms: float
) -> tuple[np.ndarray, list[tuple[str, float, float]]]:
    """DTMF tones with gaps (and a gap first), and the truth as (digit, start, end) in ms."""
    parts, truth, t_ms = [], [], 0.0
    for digit in digits:
        parts += [silence(gap_ms, sample_rate), dtmf_tone(digit, tone_ms, sample_rate)]
        truth.append((digit, t_ms + gap_ms, t_ms + gap_ms + tone_ms))
        t_ms += gap_ms + tone_ms
    parts.append(silence(gap_ms, sample_rate))
    return np.concatenate(parts), truth


def assert_sequence(events: list[DtmfTone], truth: list[tuple[str, float, float]]) -> None:
    assert "".join(e.digit for e in events) == "".join(d for d, _, _ in truth)
    for event, (_, start_ms, end_ms) in zip(events, truth, strict=True):
        assert event.start_ms == pytest.approx(start_ms, abs=TIMING_MS)
        assert event.end_ms == pytest.approx(end_ms, abs=TIMING_MS)


@pytest.mark.parametrize("sample_rate", [8000, 16000, 44100])
@pytest.mark.parametrize("digit", list(DIGITS))
def test_every_digit(digit: str, sample_rate: int) -> None:
    events = detect(padded(dtmf_tone(digit, 100, sample_rate), sample_rate), sample_rate)
    assert_one(events, digit, 50, 150)
    assert events[0].duration_ms == pytest.approx(100, abs=2 * TIMING_MS)


def test_duration_and_lower_case_digits() -> None:
    tone = DtmfTone("5", 10.0, 60.0)
    assert tone.duration_ms == 50.0
    assert detect(padded(dtmf_tone("a", 60, 8000), 8000))[0].digit == "A"


@pytest.mark.parametrize("sample_rate", [8000, 16000])
@pytest.mark.parametrize("duration_ms", [40, 50, 100])
def test_tones_of_40_ms_and_more_are_detected_at_any_alignment(
    duration_ms: int, sample_rate: int
) -> None:
    block = DtmfDetector(sample_rate).block_size
    for i, digit in enumerate(DIGITS):
        lead = (i * 37) % block  # where the tone falls against the detector's blocks
        x = padded(dtmf_tone(digit, duration_ms, sample_rate), sample_rate, lead)
        start_ms = 50 + 1000 * lead / sample_rate
        assert_one(detect(x, sample_rate), digit, start_ms, start_ms + duration_ms)


@pytest.mark.parametrize("sample_rate", [8000, 16000])
@pytest.mark.parametrize("duration_ms", [10, 20])
def test_tones_of_20_ms_and_less_are_rejected_at_any_alignment(
    duration_ms: int, sample_rate: int
) -> None:
    block = DtmfDetector(sample_rate).block_size
    for digit in DIGITS:
        for lead in range(0, block, 7):
            x = padded(dtmf_tone(digit, duration_ms, sample_rate), sample_rate, lead)
            assert detect(x, sample_rate) == [], (digit, lead)


SHIFTS = [(1, 0), (-1, 0), (0, 1), (0, -1), (1, 1), (-1, -1), (1, -1), (-1, 1)]


@pytest.mark.parametrize(("low_sign", "high_sign"), SHIFTS)
def test_frequency_error_of_1_5_percent_is_accepted(low_sign: int, high_sign: int) -> None:
    for i, (digit, (low, high)) in enumerate(DTMF_FREQS.items()):
        f1, f2 = low * (1 + 0.015 * low_sign), high * (1 + 0.015 * high_sign)
        x = padded(dual_tone(f1, f2, 60, 8000), 8000, lead=i * 13)
        start_ms = 50 + i * 13 / 8
        assert_one(detect(x), digit, start_ms, start_ms + 60)


@pytest.mark.parametrize(("low_sign", "high_sign"), SHIFTS)
def test_frequency_error_of_3_5_percent_is_rejected(low_sign: int, high_sign: int) -> None:
    for i, (low, high) in enumerate(DTMF_FREQS.values()):
        f1, f2 = low * (1 + 0.035 * low_sign), high * (1 + 0.035 * high_sign)
        x = padded(dual_tone(f1, f2, 200, 8000), 8000, lead=i * 13)
        assert detect(x) == [], (f1, f2)


@pytest.mark.parametrize(
    ("twist_db", "detected"),
    [
        (-8.0, True),  # normal twist 8 dB: high group 8 dB below the low group
        (4.0, True),  # reverse twist 4 dB: high group 4 dB above the low group
        (-10.0, False),
        (6.0, False),
    ],
)
def test_twist(twist_db: float, detected: bool) -> None:
    for digit in DIGITS:
        events = detect(padded(dtmf_tone(digit, 60, 8000, twist_db=twist_db), 8000))
        if detected:
            assert_one(events, digit, 50, 110)
        else:
            assert events == [], digit


@pytest.mark.parametrize(("level_dbfs", "detected"), [(-10.0, True), (-40.0, True), (-50.0, False)])
def test_level_threshold(level_dbfs: float, detected: bool) -> None:
    events = detect(padded(dtmf_tone("7", 60, 8000, amplitude_dbfs=level_dbfs), 8000))
    assert [e.digit for e in events] == (["7"] if detected else [])


def with_noise(x: np.ndarray, snr_db: float, signal_power: float, seed: int) -> np.ndarray:
    """``x`` plus white noise ``snr_db`` below ``signal_power`` (mean square, int16 units)."""
    noise = white_noise(1000 * len(x) / 8000, 8000, level_dbfs=0.0, seed=seed).astype(float)
    noise *= np.sqrt(signal_power / 10 ** (snr_db / 10) / np.mean(noise**2))
    return np.clip(np.round(x + noise), -32768, 32767).astype(np.int16)


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize(("tone_ms", "gap_ms"), [(40, 40), (50, 50), (100, 100)])
def test_15_db_snr_white_noise(seed: int, tone_ms: int, gap_ms: int) -> None:
    x, truth = sequence(DIGITS, 8000, tone_ms, gap_ms)
    power = float(np.mean(dtmf_tone("5", 1000, 8000).astype(float) ** 2))  # dual-tone power
    assert_sequence(detect(with_noise(x, 15.0, power, seed)), truth)


def test_noise_alone_raises_nothing() -> None:
    assert detect(white_noise(5000, 8000, level_dbfs=-10.0, seed=3)) == []
    assert detect(silence(1000, 8000)) == []


@pytest.mark.parametrize("sample_rate", [8000, 16000])
def test_sequences_with_40_ms_gaps_separate(sample_rate: int) -> None:
    x, truth = sequence("1111223*#0ABCD99", sample_rate, 40, 40)
    assert_sequence(detect(x, sample_rate), truth)


def test_back_to_back_digits_without_a_gap() -> None:
    x = np.concatenate([dtmf_tone("1", 80, 8000), dtmf_tone("2", 80, 8000), silence(50, 8000)])
    assert_sequence(detect(x), [("1", 0, 80), ("2", 80, 160)])


def test_a_long_press_is_one_digit() -> None:
    x = np.concatenate([dtmf_tone("#", 2000, 8000), silence(100, 8000)])
    assert_sequence(detect(x), [("#", 0, 2000)])


def test_a_tone_still_sounding_is_returned_by_flush() -> None:
    detector = DtmfDetector(8000)
    assert detector.process(np.concatenate([silence(30, 8000), dtmf_tone("9", 200, 8000)])) == []
    [tone] = detector.flush()
    assert (tone.digit, tone.end_ms) == ("9", 230.0)
    assert tone.start_ms == pytest.approx(30, abs=TIMING_MS)
    # flush() starts a new stream: its clock starts at zero again.
    events = detector.process(padded(dtmf_tone("3", 60, 8000), 8000)) + detector.flush()
    assert_one(events, "3", 50, 110)


@pytest.mark.parametrize("seed", range(6))
def test_chunked_equals_whole(seed: int) -> None:
    rng = np.random.default_rng(seed)
    x, _ = sequence("159#D*0", 8000, 45, 45)
    power = float(np.mean(dtmf_tone("5", 1000, 8000).astype(float) ** 2))
    x = with_noise(x, 15.0, power, seed)
    whole = detect(x)
    assert len(whole) == 7
    detector = DtmfDetector(8000)
    chunked: list[DtmfTone] = []
    pos = 0
    while pos < len(x):
        size = int(rng.integers(0, 400)) if seed else 1
        chunked += detector.process(x[pos : pos + size])
        pos += size
    assert chunked + detector.flush() == whole


@pytest.mark.parametrize(
    ("encode", "decode"), [(ulaw_encode, ulaw_decode), (alaw_encode, alaw_decode)]
)
def test_g711_round_trip(encode: object, decode: object) -> None:
    x, truth = sequence(DIGITS, 8000, 50, 50)
    coded = decode(encode(x))  # type: ignore[operator]
    assert_sequence(detect(coded), truth)


def test_detect_file_resamples(tmp_path: object) -> None:
    x, truth = sequence("42*7", 16000, 60, 60)
    path = f"{tmp_path}/digits.wav"
    write_wav(path, np.stack([x, x], axis=1), 16000)  # stereo, 16 kHz
    assert_sequence(detect_file(path), truth)


@pytest.mark.parametrize("bad", [np.zeros(160, np.float32), np.zeros((2, 80), np.int16), [0] * 160])
def test_bad_samples_are_refused(bad: object) -> None:
    with pytest.raises(ValueError, match="DtmfDetector expects 1-D int16 samples"):
        DtmfDetector(8000).process(bad)  # type: ignore[arg-type]


@pytest.mark.parametrize("rate", [4000, 0, 8000.0, True])
def test_bad_sample_rate_is_refused(rate: object) -> None:
    with pytest.raises(ValueError, match="DtmfDetector sample_rate must"):
        DtmfDetector(rate)  # type: ignore[arg-type]


# Talk-off: speech and music must raise no digit.

SENTENCES = [
    "Thank you for calling. Please listen carefully, as our menu options have changed.",
    "For billing questions, press one. For technical support, press two.",
    "Hello, this is Maria from the dental office, calling to confirm your appointment "
    "tomorrow at nine thirty.",
    "One, two, three, four, five, six, seven, eight, nine, zero, star, pound.",
    "Eeeeee, ooooo, mmmmmm. Beep beep beep. Ding dong. Whistle a happy tune.",
]


@pytest.mark.asyncio(loop_scope="session")
@pytest.mark.parametrize("voice", ["en-us", "en-us+f3", "de"])
async def test_no_digits_in_speech(voice: str) -> None:
    for text in SENTENCES:
        for words_per_minute in (120, 190):
            speech, rate = await synthesize(text, voice=voice, words_per_minute=words_per_minute)
            speech = resample(speech, rate, 8000)
            assert len(speech) > 8000
            assert detect(speech) == [], (voice, text)
            louder = np.clip(speech.astype(float) * 3, -32768, 32767).astype(np.int16)
            assert detect(louder) == [], (voice, text, "louder")


def music(
    seed: int, seconds: float = 4.0, partials: int = 8, notes: tuple[int, int] = (1, 3)
) -> np.ndarray:
    """Piano-like chords at 8 kHz: ``notes[0]..notes[1]`` distinct equal-tempered notes with
    ``partials`` harmonics falling as 1/h^1.2, percussive envelopes and a 0.5 % vibrato."""
    rng = np.random.default_rng(seed)
    out = np.zeros(int(seconds * 8000))
    pos = 0
    while pos < len(out):
        n = min(int(rng.uniform(0.15, 0.6) * 8000), len(out) - pos)
        t = np.arange(n) / 8000
        envelope = np.minimum(1.0, t * 200) * np.exp(-t * rng.uniform(2, 6))
        vibrato = 1 + 0.005 * np.sin(2 * np.pi * rng.uniform(4, 6) * t)
        chord = rng.choice(
            np.arange(45, 96), size=int(rng.integers(notes[0], notes[1] + 1)), replace=False
        )
        for note in chord:
            f_hz = 440.0 * 2 ** ((note - 69) / 12)
            phase = 2 * np.pi * f_hz * np.cumsum(vibrato) / 8000
            for h in range(1, partials + 1):
                if h * f_hz < 4000:
                    out[pos : pos + n] += envelope * np.sin(h * phase) / h**1.2
        pos += n
    return np.round(out / np.abs(out).max() * 20000).astype(np.int16)


@pytest.mark.parametrize("seed", range(12))
def test_no_digits_in_piano_like_music(seed: int) -> None:
    assert detect(music(seed)) == []


@pytest.mark.parametrize("seed", range(12))
def test_no_digits_in_three_note_chords_of_sines(seed: int) -> None:
    assert detect(music(seed, partials=1, notes=(3, 3))) == []
