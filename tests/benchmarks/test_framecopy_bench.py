"""Copying a 20 ms frame out of / into a PJSUA2 ByteVector: bytes() vs the ctypes path."""

from __future__ import annotations

import time

import numpy as np
import pjsua2 as pj
import pytest

from callfleet.sip import framecopy

pytestmark = pytest.mark.benchmark


def _per_call_us(fn: object, repeats: int) -> list[float]:
    runs = []
    for _ in range(7):
        start = time.perf_counter()
        for _ in range(repeats):
            fn()  # type: ignore[operator]
        runs.append((time.perf_counter() - start) / repeats * 1e6)
    return runs


@pytest.mark.parametrize("sample_rate", [8000, 16000])
def test_frame_copy_speed(sample_rate: int) -> None:
    samples = np.arange(sample_rate // 50, dtype=np.int16)
    vec = pj.ByteVector()
    framecopy.write_pcm16(vec, samples)
    slow = _per_call_us(lambda: bytes(vec), 200)
    fast_read = _per_call_us(lambda: framecopy.read_vector(vec), 20000)
    fast_write = _per_call_us(lambda: framecopy.write_vector(vec, samples.tobytes()), 20000)
    print(
        f"\n[framecopy] {len(samples)} samples: bytes(vec) median {np.median(slow):.1f} µs "
        f"(min {min(slow):.1f}, max {max(slow):.1f}); ctypes read median "
        f"{np.median(fast_read):.2f} µs (min {min(fast_read):.2f}, max {max(fast_read):.2f}); "
        f"ctypes write median {np.median(fast_write):.2f} µs"
    )
    assert framecopy.read_vector(vec) == bytes(vec)
