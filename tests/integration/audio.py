"""Audio checks for call tests: collect what a call hears, and which tone it was."""

from __future__ import annotations

import asyncio

import numpy as np

from callfleet.media.analysis import dominant_frequency_hz
from callfleet.media.frame import PCM16, AudioFrame
from callfleet.media.wav import read_wav
from callfleet.sip.call import Call


async def collect(call: Call, seconds: float) -> list[AudioFrame]:
    """Frames ``call`` receives during the next ``seconds`` (or until it ends)."""
    frames: list[AudioFrame] = []

    async def read() -> None:
        async for frame in call.audio_in:
            frames.append(frame)

    task = asyncio.ensure_future(read())
    await asyncio.wait([task], timeout=seconds)
    task.cancel()
    return frames


def pcm(frames: list[AudioFrame]) -> PCM16:
    return np.concatenate([f.samples for f in frames]) if frames else np.zeros(0, np.int16)


def tone_of(samples: PCM16, sample_rate: int) -> float:
    """Dominant frequency of the loud part of ``samples`` (Hz)."""
    assert len(samples) > sample_rate // 4, f"too little audio: {len(samples)} samples"
    return dominant_frequency_hz(samples, sample_rate)


def tone_of_wav(path: str, skip_s: float = 0.3) -> float:
    samples, rate = read_wav(path)
    return tone_of(samples[int(skip_s * rate) :], rate)


def assert_tone(freq_hz: float, expected_hz: float, tolerance_hz: float = 5.0) -> None:
    assert abs(freq_hz - expected_hz) <= tolerance_hz, f"heard {freq_hz:.1f} Hz, not {expected_hz}"
