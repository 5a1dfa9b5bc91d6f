"""G.711 μ-law (PCMU) and A-law (PCMA) companding with numpy lookup tables.

Bit-exact with the classic Sun Microsystems ``g711.c`` (``linear2ulaw``, ``ulaw2linear``,
``linear2alaw``, ``alaw2linear``), the code used by SoX, PJSIP and CPython's old
``audioop``. Input is 16-bit linear PCM; μ-law keeps the top 14 bits and A-law the top 13,
as in ITU-T G.711 tables 1 and 2. (ITU-T G.191's ``ulaw_compress`` truncates negative
samples one's-complement style, so it differs from Sun's by one code for some negative
samples that sit exactly on a decision boundary.)

All four tables are built once, at import: decoding is a 256-entry int16 lookup and encoding
a 65536-entry uint8 lookup indexed by the int16 sample viewed as uint16.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from callfleet.media.frame import PCM16

#: Bias added to μ-law magnitudes (in the 16-bit domain; ``BIAS >> 2`` in the 14-bit one).
BIAS = 0x84
#: Largest μ-law magnitude in the 14-bit domain before the bias is added.
CLIP = 8159
SIGN_BIT = 0x80
QUANT_MASK = 0x0F
SEG_MASK = 0x70
SEG_SHIFT = 4

# Upper end of each segment: A-law in the 13-bit domain, μ-law in the biased 14-bit one.
_SEG_AEND = np.array([0x1F, 0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF], np.int32)
_SEG_UEND = np.array([0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF, 0x1FFF], np.int32)


def _all_int16_in_uint16_order() -> npt.NDArray[np.int32]:
    """Every int16 value, ordered by its bit pattern read as uint16 (0, 1, ..., -1)."""
    return np.arange(65536, dtype=np.uint16).view(np.int16).astype(np.int32)


def _build_ulaw_encode() -> npt.NDArray[np.uint8]:
    pcm = _all_int16_in_uint16_order() >> 2
    mask = np.where(pcm < 0, 0x7F, 0xFF)
    mag = np.minimum(np.abs(pcm), CLIP) + (BIAS >> 2)
    seg = np.searchsorted(_SEG_UEND, mag, side="left").astype(np.int32)
    uval = (seg << 4) | ((mag >> (seg + 1)) & QUANT_MASK)
    uval = np.where(seg >= 8, 0x7F, uval)
    return (uval ^ mask).astype(np.uint8)


def _build_ulaw_decode() -> npt.NDArray[np.int16]:
    u = ~np.arange(256, dtype=np.int32) & 0xFF
    t = (((u & QUANT_MASK) << 3) + BIAS) << ((u & SEG_MASK) >> SEG_SHIFT)
    return np.where(u & SIGN_BIT, BIAS - t, t - BIAS).astype(np.int16)


def _build_alaw_encode() -> npt.NDArray[np.uint8]:
    pcm = _all_int16_in_uint16_order() >> 3
    mask = np.where(pcm >= 0, 0xD5, 0x55)
    mag = np.where(pcm >= 0, pcm, -pcm - 1)
    seg = np.searchsorted(_SEG_AEND, mag, side="left").astype(np.int32)
    quant = np.where(seg < 2, mag >> 1, mag >> seg) & QUANT_MASK
    aval = np.where(seg >= 8, 0x7F, (seg << SEG_SHIFT) | quant)
    return (aval ^ mask).astype(np.uint8)


def _build_alaw_decode() -> npt.NDArray[np.int16]:
    a = np.arange(256, dtype=np.int32) ^ 0x55
    seg = (a & SEG_MASK) >> SEG_SHIFT
    t = ((a & QUANT_MASK) << 4) + np.where(seg == 0, 8, 0x108)
    t = np.where(seg > 1, t << np.maximum(seg - 1, 0), t)
    return np.where(a & SIGN_BIT, t, -t).astype(np.int16)


ULAW_ENCODE_TABLE = _build_ulaw_encode()
ULAW_DECODE_TABLE = _build_ulaw_decode()
ALAW_ENCODE_TABLE = _build_alaw_encode()
ALAW_DECODE_TABLE = _build_alaw_decode()
for _table in (ULAW_ENCODE_TABLE, ULAW_DECODE_TABLE, ALAW_ENCODE_TABLE, ALAW_DECODE_TABLE):
    _table.setflags(write=False)


def _as_pcm16(pcm: PCM16) -> npt.NDArray[np.uint16]:
    if pcm.dtype != np.int16:
        raise ValueError(f"G.711 encoding expects int16 samples, got {pcm.dtype}")
    return pcm.view(np.uint16)


def _as_codes(data: bytes | npt.NDArray[np.uint8]) -> npt.NDArray[np.uint8]:
    if isinstance(data, np.ndarray):
        if data.dtype != np.uint8:
            raise ValueError(f"G.711 decoding expects bytes or uint8 codes, got {data.dtype}")
        return data
    return np.frombuffer(data, dtype=np.uint8)


def ulaw_encode(pcm: PCM16) -> npt.NDArray[np.uint8]:
    """μ-law codes (one byte per sample) for int16 ``pcm``; same shape as the input."""
    return ULAW_ENCODE_TABLE[_as_pcm16(pcm)]


def ulaw_decode(data: bytes | npt.NDArray[np.uint8]) -> PCM16:
    """int16 samples for μ-law codes given as ``bytes`` (an RTP payload) or a uint8 array."""
    return ULAW_DECODE_TABLE[_as_codes(data)]


def alaw_encode(pcm: PCM16) -> npt.NDArray[np.uint8]:
    """A-law codes (one byte per sample) for int16 ``pcm``; same shape as the input."""
    return ALAW_ENCODE_TABLE[_as_pcm16(pcm)]


def alaw_decode(data: bytes | npt.NDArray[np.uint8]) -> PCM16:
    """int16 samples for A-law codes given as ``bytes`` (an RTP payload) or a uint8 array."""
    return ALAW_DECODE_TABLE[_as_codes(data)]
