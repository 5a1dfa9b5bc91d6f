"""AudioFrame and frame sizes."""

from __future__ import annotations

import numpy as np
import pytest

from callfleet.media.frame import FRAME_MS, AudioFrame, samples_per_frame


def test_samples_per_frame() -> None:
    assert FRAME_MS == 20
    assert samples_per_frame(8000) == 160
    assert samples_per_frame(16000) == 320
    assert samples_per_frame(48000, 10) == 480


def test_bytes_round_trip_is_little_endian() -> None:
    frame = AudioFrame(np.array([1, -2, 32767, -32768], np.int16), 8000, timestamp_s=0.5)
    data = frame.to_bytes()
    assert data[:4] == b"\x01\x00\xfe\xff"
    back = AudioFrame.from_bytes(data, 8000, 0.5)
    np.testing.assert_array_equal(back.samples, frame.samples)
    assert back.timestamp_s == 0.5


def test_silence_and_duration() -> None:
    frame = AudioFrame.silence(16000)
    assert len(frame.samples) == 320
    assert not frame.samples.any()
    assert frame.duration_ms == pytest.approx(20.0)
    assert frame.duration_s == pytest.approx(0.02)


def test_validation() -> None:
    with pytest.raises(ValueError, match=r"^AudioFrame samples must be 1-D int16, got float64"):
        AudioFrame(np.zeros(4), 8000)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"^AudioFrame sample_rate must be positive, got 0$"):
        AudioFrame(np.zeros(4, np.int16), 0)
    with pytest.raises(ValueError, match=r"^PCM16 data must have an even length, got 3 bytes$"):
        AudioFrame.from_bytes(b"\0\0\0", 8000)
