"""faster-whisper with the packaged Whisper base model: Piper's sentences come back as
their words (also from 8 kHz phone audio), silence and noise come back empty."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
import pytest
import pytest_asyncio

from callfleet.agents.errors import APIError
from callfleet.agents.providers.base import STT, SpeechEventType
from callfleet.agents.providers.piper import PiperTTS
from callfleet.agents.providers.whisper import WhisperSTT
from callfleet.media.frame import PCM16
from callfleet.media.resample import resample
from callfleet.media.tones import silence, white_noise

SENTENCES = (
    "Please call me back tomorrow morning about my appointment.",
    "Yes, I would like to speak to a human agent now.",
)


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def spoken() -> AsyncIterator[list[tuple[PCM16, int]]]:
    """Each sentence spoken by Piper (deterministic), at 22050 Hz."""
    tts = PiperTTS(noise_scale=0.0, noise_w_scale=0.0)
    out = []
    for text in SENTENCES:
        frames = [f async for f in tts.synthesize(text)]
        out.append((np.concatenate([f.samples for f in frames]), tts.sample_rate))
    await tts.aclose()
    yield out


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def stt() -> AsyncIterator[WhisperSTT]:
    """One model for the module; loaded by the first test's concurrent calls."""
    stt = WhisperSTT()
    yield stt
    await stt.aclose()


def words(text: str) -> set[str]:
    return set(re.sub(r"[^a-z0-9' ]", " ", text.lower()).split())


def assert_mostly_heard(heard: str, said: str) -> None:
    expected = words(said)
    assert len(expected & words(heard)) >= 0.8 * len(expected), (heard, said)


async def test_transcribes_piper_sentences_concurrently(
    stt: WhisperSTT, spoken: list[tuple[PCM16, int]]
) -> None:
    assert isinstance(stt, STT)
    assert not stt.capabilities.streaming
    assert stt.sample_rate == 16000
    # Both before the model is loaded: it is loaded once and shared.
    events = await asyncio.gather(*(stt.recognize(a, rate) for a, rate in spoken))
    for event, said, (audio, rate) in zip(events, SENTENCES, spoken, strict=True):
        assert event.type is SpeechEventType.FINAL_TRANSCRIPT
        assert_mostly_heard(event.text, said)
        assert event.text == event.text.strip()
        data = event.alternatives[0]
        assert data.language == "en"
        assert 0.5 < data.confidence <= 1.0
        assert data.end_s == pytest.approx(len(audio) / rate, abs=0.01)


async def test_transcribes_eight_khz_phone_audio(
    stt: WhisperSTT, spoken: list[tuple[PCM16, int]]
) -> None:
    audio, rate = spoken[1]
    narrowband = resample(audio, rate, 8000)
    padded = np.concatenate([silence(300, 8000), narrowband, silence(400, 8000)])
    event = await stt.recognize(padded, 8000, language="en")
    assert_mostly_heard(event.text, SENTENCES[1])


@pytest.mark.parametrize(
    "audio",
    [
        silence(2000, 16000),
        white_noise(2000, 16000, -70.0, seed=1),  # below the level gate
        white_noise(2000, 16000, -40.0, seed=2),  # above it: Whisper's "you" is dropped
        white_noise(2000, 16000, -20.0, seed=3),
    ],
    ids=["silence", "noise-70dB", "noise-40dB", "noise-20dB"],
)
async def test_no_text_without_speech(stt: WhisperSTT, audio: PCM16) -> None:
    event = await stt.recognize(audio, 16000)
    assert event.type is SpeechEventType.FINAL_TRANSCRIPT
    assert event.text == ""
    assert event.alternatives[0].confidence == 0.0


def test_stream_is_not_offered() -> None:
    with pytest.raises(NotImplementedError, match="VAD"):
        WhisperSTT().stream()


async def test_bad_input_and_bad_model(tmp_path: Path) -> None:
    stt = WhisperSTT(model_dir=tmp_path)
    with pytest.raises(ValueError, match="1-D int16"):
        await stt.recognize(np.zeros(100, np.float32), 16000)
    with pytest.raises(APIError) as excinfo:
        await stt.recognize(white_noise(500, 16000, -20.0, seed=4), 16000)
    assert excinfo.value.provider == "faster-whisper"
    assert excinfo.value.retryable is False
    assert excinfo.value.__cause__ is not None
    with pytest.raises(ValueError, match="beam_size must be an integer >= 1, got 0"):
        WhisperSTT(beam_size=0)


async def test_a_repetition_loop_is_dropped(stt: WhisperSTT) -> None:
    """Text that repeats itself over and over (a Whisper loop, here provoked by speech
    that really repeats) compresses over 2.4 times and is dropped; a sentence is not."""
    tts = PiperTTS(noise_scale=0.0, noise_w_scale=0.0)
    looped = np.concatenate(
        [f.samples async for f in tts.synthesize(" ".join(["Thank you, thank you."] * 10))]
    )
    plain = np.concatenate([f.samples async for f in tts.synthesize(SENTENCES[0])])
    await tts.aclose()
    assert (await stt.recognize(looped, tts.sample_rate)).text == ""
    assert_mostly_heard((await stt.recognize(plain, tts.sample_rate)).text, SENTENCES[0])
