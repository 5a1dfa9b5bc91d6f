"""Silero VAD on real speech (made by Piper) between known silences: where speech starts
and ends, nothing on silence or noise, and the same events however the audio is cut."""

from __future__ import annotations

from collections.abc import AsyncIterator

import numpy as np
import pytest
import pytest_asyncio

from callfleet.agents.providers.base import VAD, VADEvent, VADEventType, VADStream
from callfleet.agents.providers.piper import PiperTTS
from callfleet.agents.providers.silero import SileroVAD, SileroVADStream
from callfleet.media.frame import PCM16, AudioFrame
from callfleet.media.resample import resample
from callfleet.media.tones import silence, white_noise

SENTENCE = "Hello, this is a test of the voice activity detector."
LEAD_S, TAIL_S = 1.0, 1.5
#: How far (s) a detected speech boundary may be from the audio's energy boundary.
TOLERANCE_S = 0.1


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def speech() -> AsyncIterator[tuple[PCM16, int]]:
    """One spoken sentence from Piper, deterministic (no noise), at its 22050 Hz."""
    tts = PiperTTS(noise_scale=0.0, noise_w_scale=0.0)
    frames = [f async for f in tts.synthesize(SENTENCE)]
    await tts.aclose()
    yield np.concatenate([f.samples for f in frames]), tts.sample_rate


def energy_bounds(samples: PCM16, rate: int, threshold_dbfs: float = -50.0) -> tuple[float, float]:
    """(first, last) instant (s) where a 10 ms block's RMS is above ``threshold_dbfs``."""
    block = rate // 100
    n = len(samples) // block
    rms = np.sqrt(np.mean(samples[: n * block].astype(np.float64).reshape(n, block) ** 2, axis=1))
    active = np.nonzero(
        20 * np.log10(np.maximum(rms, 1e-9) / (32767 / np.sqrt(2))) > threshold_dbfs
    )
    return active[0][0] * 0.01, (active[0][-1] + 1) * 0.01


async def feed(stream: VADStream, audio: PCM16, rate: int, sizes: list[int]) -> list[VADEvent]:
    """Pushes ``audio`` in chunks of ``sizes`` (cycled); checks ``captured_at`` and
    ``speaking`` on the way; returns all events."""
    events: list[VADEvent] = []
    pos, i = 0, 0
    while pos < len(audio):
        size = sizes[i % len(sizes)]
        frame = AudioFrame(audio[pos : pos + size], rate, captured_at=float(i))
        got = await stream.push_frame(frame)
        for ev in got:
            assert ev.captured_at == float(i)
        if got:
            assert stream.speaking == (got[-1].type is VADEventType.START_OF_SPEECH)
        events.extend(got)
        pos, i = pos + size, i + 1
    return events


def key(ev: VADEvent) -> tuple[object, ...]:
    audio = tuple((f.sample_rate, f.timestamp_s, f.samples.tobytes()) for f in ev.frames)
    return (ev.type, ev.timestamp_s, ev.speech_duration_s, ev.silence_duration_s, audio)


@pytest.mark.parametrize(
    ("vad_rate", "input_rate"), [(8000, 8000), (16000, 16000), (16000, 8000), (8000, 22050)]
)
async def test_finds_start_and_end_of_speech_between_silences(
    speech: tuple[PCM16, int], vad_rate: int, input_rate: int
) -> None:
    spoken = resample(speech[0], speech[1], input_rate)
    onset, offset = energy_bounds(spoken, input_rate)
    audio = np.concatenate(
        [silence(LEAD_S * 1000, input_rate), spoken, silence(TAIL_S * 1000, input_rate)]
    )
    vad = SileroVAD(sample_rate=vad_rate)
    assert isinstance(vad, VAD)
    stream = vad.stream()
    assert isinstance(stream, VADStream)

    events = await feed(stream, audio, input_rate, [input_rate // 50])  # 20 ms frames

    assert [e.type for e in events] == [VADEventType.START_OF_SPEECH, VADEventType.END_OF_SPEECH]
    start, end = events
    assert start.timestamp_s - start.speech_duration_s == pytest.approx(
        LEAD_S + onset, abs=TOLERANCE_S
    )
    assert start.speech_duration_s >= 0.05
    assert start.timestamp_s < LEAD_S + onset + 0.2  # decided soon after speech began
    assert end.timestamp_s - end.silence_duration_s == pytest.approx(
        LEAD_S + offset, abs=TOLERANCE_S
    )
    assert 0.4 <= end.silence_duration_s < 0.4 + 0.033  # min_silence, in 32 ms windows
    assert end.speech_duration_s == pytest.approx(offset - onset, abs=2 * TOLERANCE_S)
    # The utterance audio: prefix padding (0.3 s) before the speech, up to the decision.
    (utterance,) = end.frames
    assert utterance.sample_rate == vad_rate
    speech_start = start.timestamp_s - start.speech_duration_s
    assert utterance.timestamp_s == pytest.approx(speech_start - 0.3, abs=1e-6)
    assert utterance.timestamp_s + utterance.duration_s == pytest.approx(end.timestamp_s, abs=1e-6)
    assert not stream.speaking
    assert stream.probability < 0.1
    await stream.aclose()


async def test_chunk_sizes_do_not_change_the_events(speech: tuple[PCM16, int]) -> None:
    spoken = resample(speech[0], speech[1], 8000)
    gap = silence(800, 8000)
    audio = np.concatenate([silence(500, 8000), spoken, gap, spoken, silence(1000, 8000)])
    rng = np.random.default_rng(11)
    random_sizes = [int(s) for s in rng.integers(1, 2000, size=200)]
    for vad_rate in (8000, 16000):  # 16000: through the resampler
        vad = SileroVAD(sample_rate=vad_rate)
        whole = await feed(vad.stream(), audio, 8000, [len(audio)])
        assert [e.type.name for e in whole] == ["START_OF_SPEECH", "END_OF_SPEECH"] * 2
        for sizes in ([160], [1, 7, 333], random_sizes):
            chunked = await feed(vad.stream(), audio, 8000, sizes)
            assert [key(e) for e in chunked] == [key(e) for e in whole], (vad_rate, sizes[:3])


@pytest.mark.parametrize("vad_rate", [8000, 16000])
async def test_nothing_on_silence_or_low_white_noise(vad_rate: int) -> None:
    vad = SileroVAD(sample_rate=vad_rate)
    for audio in (silence(3000, vad_rate), white_noise(3000, vad_rate, -45.0, seed=5)):
        stream = vad.stream()
        assert await feed(stream, audio, vad_rate, [vad_rate // 50]) == []
        assert not stream.speaking
        assert stream.probability < vad.activation_threshold


async def test_min_silence_joins_utterances_and_update_options(speech: tuple[PCM16, int]) -> None:
    spoken = resample(speech[0], speech[1], 16000)
    audio = np.concatenate(
        [silence(500, 16000), spoken, silence(700, 16000), spoken, silence(2000, 16000)]
    )
    vad = SileroVAD()
    assert len(await feed(vad.stream(), audio, 16000, [320])) == 4
    vad.update_options(min_silence_duration_s=1.2)
    events = await feed(vad.stream(), audio, 16000, [320])
    assert [e.type for e in events] == [VADEventType.START_OF_SPEECH, VADEventType.END_OF_SPEECH]
    assert events[1].speech_duration_s > 2 * (len(spoken) / 16000) - 0.3
    assert vad.activation_threshold == 0.5  # untouched
    assert vad.deactivation_threshold == pytest.approx(0.35)


async def test_long_utterance_audio_is_capped(speech: tuple[PCM16, int]) -> None:
    spoken = resample(speech[0], speech[1], 8000)
    vad = SileroVAD(sample_rate=8000, max_buffered_speech_s=1.0)
    audio = np.concatenate([silence(500, 8000), spoken, silence(1000, 8000)])
    events = await feed(vad.stream(), audio, 8000, [160])
    (utterance,) = events[-1].frames
    assert utterance.duration_s <= 1.0
    assert events[-1].speech_duration_s > 2.0  # the event still measures all of it


async def test_closed_stream_refuses_frames() -> None:
    stream: SileroVADStream = SileroVAD(sample_rate=8000).stream()
    assert await stream.push_frame(AudioFrame.silence(8000)) == []
    await stream.aclose()
    await stream.aclose()  # idempotent
    with pytest.raises(RuntimeError, match="closed"):
        await stream.push_frame(AudioFrame.silence(8000))


def test_options_are_checked() -> None:
    with pytest.raises(ValueError, match="sample_rate must be 8000 or 16000 Hz, got 44100"):
        SileroVAD(sample_rate=44100)
    with pytest.raises(ValueError, match="deactivation_threshold"):
        SileroVAD(activation_threshold=0.4, deactivation_threshold=0.6)
    vad = SileroVAD()
    with pytest.raises(ValueError, match="min_silence_duration_s must be >= 0 s, got -1"):
        vad.update_options(min_silence_duration_s=-1)
    assert SileroVAD(activation_threshold=0.1).deactivation_threshold == 0.01
