"""In-band DTMF detector throughput, as multiples of real time (figures, not assertions).

Run with ``make bench``. The audio is a minute of DTMF sequences, 15 dB S/N white noise and
silence; it is fed both in one call and in 20 ms frames (one RTP packet each, as on a call).
"""

from __future__ import annotations

import time

import numpy as np
import pytest

from callfleet.media.dtmf_detect import DtmfDetector
from callfleet.media.frame import samples_per_frame
from callfleet.media.tones import dtmf_sequence, silence, white_noise

pytestmark = pytest.mark.benchmark

SECONDS = 60
REPEATS = 5


def _audio(sample_rate: int) -> np.ndarray:
    digits = dtmf_sequence("0123456789*#ABCD" * 4, sample_rate, tone_ms=60, gap_ms=60)
    noise = white_noise(1000 * SECONDS, sample_rate, level_dbfs=-22.0, seed=7)
    x = np.concatenate([digits, silence(2000, sample_rate)])
    x = np.tile(x, SECONDS * sample_rate // len(x) + 1)[: len(noise)]
    return np.clip(x.astype(np.int32) + noise, -32768, 32767).astype(np.int16)


def _best_seconds(x: np.ndarray, sample_rate: int, chunk: int) -> tuple[float, int]:
    best, digits = float("inf"), 0
    for _ in range(REPEATS):
        detector = DtmfDetector(sample_rate)
        start = time.perf_counter()
        events = [e for i in range(0, len(x), chunk) for e in detector.process(x[i : i + chunk])]
        events += detector.flush()
        best = min(best, time.perf_counter() - start)
        digits = len(events)
    return best, digits


@pytest.mark.parametrize("sample_rate", [8000, 16000])
def test_dtmf_detector_throughput(sample_rate: int) -> None:
    x = _audio(sample_rate)
    audio_s = len(x) / sample_rate
    frame = samples_per_frame(sample_rate)
    whole_s, digits = _best_seconds(x, sample_rate, len(x))
    framed_s, framed_digits = _best_seconds(x, sample_rate, frame)
    print(
        f"\n[dtmf_detect] {sample_rate} Hz, {audio_s:.0f} s of audio, {digits} digits: "
        f"one call {audio_s / whole_s:.0f}x real time; 20 ms frames "
        f"{audio_s / framed_s:.0f}x real time ({framed_s / (len(x) / frame) * 1e6:.0f} µs "
        f"per frame)"
    )
    assert framed_digits == digits
