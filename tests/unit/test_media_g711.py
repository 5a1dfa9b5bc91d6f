"""G.711 tables against a scalar transcription of Sun Microsystems' g711.c."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from callfleet.media.g711 import alaw_decode, alaw_encode, ulaw_decode, ulaw_encode
from callfleet.media.mix import rms_dbfs
from callfleet.media.tones import sine

ALL_PCM = np.arange(-32768, 32768, dtype=np.int64).astype(np.int16)
ALL_CODES = np.arange(256, dtype=np.uint8)
Codec = Callable[[Any], Any]

# --- Sun g711.c, one sample at a time (Python ints: >> is arithmetic, as on short) ---------

SEG_AEND = [0x1F, 0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF]
SEG_UEND = [0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF, 0x1FFF]
BIAS = 0x84
CLIP = 8159


def search(val: int, table: list[int]) -> int:
    for i, end in enumerate(table):
        if val <= end:
            return i
    return len(table)


def linear2alaw(pcm_val: int) -> int:
    pcm_val >>= 3
    if pcm_val >= 0:
        mask = 0xD5
    else:
        mask = 0x55
        pcm_val = -pcm_val - 1
    seg = search(pcm_val, SEG_AEND)
    if seg >= 8:
        return 0x7F ^ mask
    aval = seg << 4
    aval |= (pcm_val >> 1) & 0xF if seg < 2 else (pcm_val >> seg) & 0xF
    return aval ^ mask


def alaw2linear(a_val: int) -> int:
    a_val ^= 0x55
    t = (a_val & 0xF) << 4
    seg = (a_val & 0x70) >> 4
    if seg == 0:
        t += 8
    elif seg == 1:
        t += 0x108
    else:
        t += 0x108
        t <<= seg - 1
    return t if a_val & 0x80 else -t


def linear2ulaw(pcm_val: int) -> int:
    pcm_val >>= 2
    if pcm_val < 0:
        pcm_val = -pcm_val
        mask = 0x7F
    else:
        mask = 0xFF
    pcm_val = min(pcm_val, CLIP)
    pcm_val += BIAS >> 2
    seg = search(pcm_val, SEG_UEND)
    if seg >= 8:
        return 0x7F ^ mask
    uval = (seg << 4) | ((pcm_val >> (seg + 1)) & 0xF)
    return uval ^ mask


def ulaw2linear(u_val: int) -> int:
    u_val = ~u_val & 0xFF
    t = ((u_val & 0xF) << 3) + BIAS
    t <<= (u_val & 0x70) >> 4
    return BIAS - t if u_val & 0x80 else t - BIAS


# --- bit exactness ------------------------------------------------------------------------


def test_ulaw_encode_matches_reference_for_every_int16() -> None:
    expected = np.array([linear2ulaw(int(v)) for v in ALL_PCM], np.uint8)
    np.testing.assert_array_equal(ulaw_encode(ALL_PCM), expected)


def test_alaw_encode_matches_reference_for_every_int16() -> None:
    expected = np.array([linear2alaw(int(v)) for v in ALL_PCM], np.uint8)
    np.testing.assert_array_equal(alaw_encode(ALL_PCM), expected)


def test_ulaw_decode_matches_reference_for_every_code() -> None:
    expected = np.array([ulaw2linear(int(c)) for c in ALL_CODES], np.int16)
    np.testing.assert_array_equal(ulaw_decode(ALL_CODES), expected)


def test_alaw_decode_matches_reference_for_every_code() -> None:
    expected = np.array([alaw2linear(int(c)) for c in ALL_CODES], np.int16)
    np.testing.assert_array_equal(alaw_decode(ALL_CODES), expected)


@pytest.mark.parametrize(
    ("pcm", "ulaw", "alaw"),
    [
        (0, 0xFF, 0xD5),
        (-1, 0x7E, 0x55),
        (8, 0xFE, 0xD5),
        (32767, 0x80, 0xAA),
        (-32768, 0x00, 0x2A),
    ],
)
def test_encode_anchor_values(pcm: int, ulaw: int, alaw: int) -> None:
    block = np.array([pcm], np.int16)
    assert ulaw_encode(block)[0] == ulaw
    assert alaw_encode(block)[0] == alaw


@pytest.mark.parametrize(
    ("code", "pcm"), [(0xFF, 0), (0x7F, 0), (0xFE, 8), (0x80, 32124), (0x00, -32124)]
)
def test_ulaw_decode_anchor_values(code: int, pcm: int) -> None:
    assert ulaw_decode(bytes([code]))[0] == pcm


@pytest.mark.parametrize(("code", "pcm"), [(0xD5, 8), (0x55, -8), (0xAA, 32256), (0x2A, -32256)])
def test_alaw_decode_anchor_values(code: int, pcm: int) -> None:
    assert alaw_decode(bytes([code]))[0] == pcm


# --- round trips and API ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("encode", "decode"), [(ulaw_encode, ulaw_decode), (alaw_encode, alaw_decode)]
)
def test_round_trip_error_is_within_half_a_step(encode: Codec, decode: Codec) -> None:
    back = decode(encode(ALL_PCM)).astype(np.int64)
    error = np.abs(back - ALL_PCM.astype(np.int64))
    bound = np.maximum(16, np.abs(ALL_PCM.astype(np.int64)) // 16)
    assert (error <= bound).all()


@pytest.mark.parametrize(
    ("encode", "decode"), [(ulaw_encode, ulaw_decode), (alaw_encode, alaw_decode)]
)
def test_tone_survives_companding_with_g711_snr(encode: Codec, decode: Codec) -> None:
    tone = sine(1000, 200, 8000, amplitude_dbfs=-10.0)
    error = decode(encode(tone)).astype(np.int64) - tone
    snr_db = rms_dbfs(tone) - rms_dbfs(error.astype(np.int16))
    assert snr_db > 35.0


def test_decoded_codes_re_encode_to_themselves() -> None:
    # μ-law has two zeros (0x7F is "-0"); every other code is its own reconstruction point.
    ulaw_back = ulaw_encode(ulaw_decode(ALL_CODES))
    assert np.flatnonzero(ulaw_back != ALL_CODES).tolist() == [0x7F]
    np.testing.assert_array_equal(alaw_encode(alaw_decode(ALL_CODES)), ALL_CODES)


def test_decode_accepts_bytes_and_arrays_alike() -> None:
    payload = bytes(range(0, 256, 3))
    np.testing.assert_array_equal(
        ulaw_decode(payload), ulaw_decode(np.frombuffer(payload, np.uint8))
    )
    np.testing.assert_array_equal(
        alaw_decode(payload), alaw_decode(np.frombuffer(payload, np.uint8))
    )
    assert ulaw_decode(payload).dtype == np.int16


def test_encode_keeps_shape_and_returns_uint8() -> None:
    block = np.zeros((3, 160), np.int16)
    assert ulaw_encode(block).shape == (3, 160)
    assert alaw_encode(block).dtype == np.uint8


def test_encode_rejects_non_int16() -> None:
    with pytest.raises(ValueError, match=r"^G\.711 encoding expects int16 samples, got float64$"):
        ulaw_encode(np.zeros(4))  # type: ignore[arg-type]


def test_decode_rejects_non_uint8_arrays() -> None:
    with pytest.raises(
        ValueError, match=r"^G\.711 decoding expects bytes or uint8 codes, got int16$"
    ):
        alaw_decode(np.zeros(4, np.int16))
