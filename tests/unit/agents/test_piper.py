"""Piper with the packaged joe voice: int16 frames at 22050 Hz of a plausible length, one
per sentence, the first one out before the later sentences are synthesized."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
import pytest
import pytest_asyncio

from callfleet.agents.errors import APIError
from callfleet.agents.models import piper_joe_voice
from callfleet.agents.providers.base import TTS
from callfleet.agents.providers.piper import PiperTTS
from callfleet.media.frame import AudioFrame
from callfleet.media.mix import rms_dbfs

FOUR_SENTENCES = (
    "Hello, this is Joe calling from the dental clinic. "
    "I am confirming your appointment for tomorrow at ten in the morning. "
    "Please bring your insurance card and arrive ten minutes early. "
    "If you need to reschedule, just tell me and I will find another time."
)


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def tts() -> AsyncIterator[PiperTTS]:
    tts = PiperTTS()
    await tts.prewarm()
    yield tts
    await tts.aclose()


async def collect(tts: PiperTTS, text: str) -> list[AudioFrame]:
    return [f async for f in tts.synthesize(text)]


async def test_frames_are_int16_at_the_voice_rate(tts: PiperTTS) -> None:
    assert isinstance(tts, TTS)
    assert tts.label == "piper"
    assert tts.sample_rate == 22050
    assert not tts.capabilities.streaming
    frames = await collect(tts, "The quick brown fox jumps over the lazy dog.")
    assert len(frames) == 1
    (frame,) = frames
    assert frame.samples.dtype == np.int16
    assert frame.sample_rate == 22050
    assert 1.5 < frame.duration_s < 5.0  # nine words
    assert rms_dbfs(frame.samples) > -30.0  # speech, not silence


async def test_first_sentence_arrives_before_the_rest_is_synthesized(tts: PiperTTS) -> None:
    started = time.perf_counter()
    arrivals: list[float] = []
    frames: list[AudioFrame] = []
    async for frame in tts.synthesize(FOUR_SENTENCES):
        arrivals.append(time.perf_counter() - started)
        frames.append(frame)
    total_s = time.perf_counter() - started
    assert len(frames) == 4  # one per sentence
    assert arrivals[0] < 0.6 * total_s, (arrivals, total_s)
    assert arrivals == sorted(arrivals) and arrivals[-1] - arrivals[0] > 0.3 * total_s
    # Frames follow each other on the synthesis clock.
    offset = 0.0
    for frame in frames:
        assert frame.timestamp_s == pytest.approx(offset)
        offset += frame.duration_s
    assert 8.0 < offset < 20.0  # 45 words


async def test_empty_text_yields_nothing_and_early_stop_is_clean(tts: PiperTTS) -> None:
    assert await collect(tts, "") == []
    assert await collect(tts, "  \n ") == []
    async for _ in tts.synthesize(FOUR_SENTENCES):
        break  # the consumer stops after the first sentence
    assert len(await collect(tts, "Still working.")) == 1


async def test_options_change_the_speech(tts: PiperTTS) -> None:
    text = "Thank you for your time today."
    tts.update_options(noise_scale=0.0, noise_w_scale=0.0)  # deterministic
    try:
        first = np.concatenate([f.samples for f in await collect(tts, text)])
        again = np.concatenate([f.samples for f in await collect(tts, text)])
        np.testing.assert_array_equal(first, again)
        tts.update_options(length_scale=1.5)
        slow = np.concatenate([f.samples for f in await collect(tts, text)])
        assert len(slow) > 1.3 * len(first)
        tts.update_options(volume=0.25)
        quiet = np.concatenate([f.samples for f in await collect(tts, text)])
        assert int(np.max(np.abs(quiet))) < 0.3 * 32767
        with pytest.raises(ValueError, match="length_scale must be > 0 or None, got -1"):
            tts.update_options(length_scale=-1)
    finally:
        tts.update_options(noise_scale=None, noise_w_scale=None, length_scale=None, volume=1.0)


@pytest.fixture
def broken_voice(tmp_path: Path) -> Path:
    """A valid voice config next to a model file that is not ONNX."""
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"not an onnx model")
    Path(f"{broken}.json").write_text(piper_joe_voice().config_path.read_text())
    return broken


async def test_errors_name_the_provider(tmp_path: Path, broken_voice: Path) -> None:
    with pytest.raises(APIError, match="voice config") as excinfo:
        PiperTTS(model_path=tmp_path / "missing.onnx")
    assert excinfo.value.provider == "piper"
    tts = PiperTTS(model_path=broken_voice)
    assert tts.sample_rate == 22050
    with pytest.raises(APIError) as excinfo:
        await collect(tts, "Hello.")
    assert excinfo.value.provider == "piper"
    assert excinfo.value.__cause__ is not None
