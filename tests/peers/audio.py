"""Small audio helpers for peer tests: G.711 mu-law, tone generation/detection, WAV and
raw RTP packets (no external dependencies)."""

from __future__ import annotations

import math
import os
import struct
import wave
from collections.abc import Sequence

_BIAS = 0x84
_CLIP = 32635


def _ulaw_encode_sample(sample: int) -> int:
    sign = 0x80 if sample < 0 else 0
    if sample < 0:
        sample = -sample
    sample = min(sample, _CLIP) + _BIAS
    exponent = 7
    mask = 0x4000
    while exponent > 0 and not sample & mask:
        exponent -= 1
        mask >>= 1
    mantissa = (sample >> (exponent + 3)) & 0x0F
    return ~(sign | (exponent << 4) | mantissa) & 0xFF


def _ulaw_decode_byte(byte: int) -> int:
    byte = ~byte & 0xFF
    sign = byte & 0x80
    exponent = (byte >> 4) & 0x07
    mantissa = byte & 0x0F
    sample = (((mantissa << 3) + _BIAS) << exponent) - _BIAS
    return -sample if sign else sample


_ULAW_DECODE = [_ulaw_decode_byte(b) for b in range(256)]


def ulaw_encode(samples: Sequence[int]) -> bytes:
    """Linear 16-bit samples -> G.711 mu-law (PCMU) bytes."""
    return bytes(_ulaw_encode_sample(int(s)) for s in samples)


def ulaw_decode(data: bytes) -> list[int]:
    """G.711 mu-law (PCMU) bytes -> linear 16-bit samples."""
    return [_ULAW_DECODE[b] for b in data]


def tone(
    freq_hz: float, n: int, rate: int = 8000, amplitude: float = 0.3, start: int = 0
) -> list[int]:
    """``n`` samples of a sine at ``freq_hz`` starting at sample index ``start``."""
    peak = 32767 * amplitude
    return [int(peak * math.sin(2 * math.pi * freq_hz * (start + i) / rate)) for i in range(n)]


def goertzel_power(samples: Sequence[int], freq_hz: float, rate: int = 8000) -> float:
    """Relative power of ``freq_hz`` in ``samples`` (normalised by length and energy)."""
    n = len(samples)
    if n == 0:
        return 0.0
    coeff = 2 * math.cos(2 * math.pi * freq_hz / rate)
    s1 = s2 = 0.0
    for x in samples:
        s0 = x + coeff * s1 - s2
        s2, s1 = s1, s0
    power = s1 * s1 + s2 * s2 - coeff * s1 * s2
    energy = sum(float(x) * x for x in samples)
    return power / (energy * n / 2) if energy > 0 else 0.0


def rms(samples: Sequence[int]) -> float:
    if not samples:
        return 0.0
    return math.sqrt(sum(float(x) * x for x in samples) / len(samples))


def read_wav(path: str | os.PathLike[str]) -> tuple[list[int], int]:
    """Read a 16-bit WAV; return (first-channel samples, sample rate)."""
    with wave.open(str(path), "rb") as w:
        if w.getsampwidth() != 2:
            raise ValueError(f"{path}: only 16-bit WAV supported")
        channels = w.getnchannels()
        rate = w.getframerate()
        frames = w.readframes(w.getnframes())
    samples = list(struct.unpack(f"<{len(frames) // 2}h", frames))
    return samples[::channels], rate


def rtp_packet(
    payload: bytes, seq: int, timestamp: int, ssrc: int, pt: int = 0, marker: bool = False
) -> bytes:
    """A plain RTP packet (version 2, no CSRC/extension)."""
    return (
        struct.pack(
            "!BBHII", 0x80, (0x80 if marker else 0) | pt, seq & 0xFFFF, timestamp & 0xFFFFFFFF, ssrc
        )
        + payload
    )


def rtp_payload(packet: bytes) -> tuple[int, bytes]:
    """(payload type, payload) of an RTP packet (skips CSRCs and a header extension)."""
    if len(packet) < 12:
        raise ValueError("short RTP packet")
    cc = packet[0] & 0x0F
    offset = 12 + 4 * cc
    if packet[0] & 0x10:
        ext_len = struct.unpack("!H", packet[offset + 2 : offset + 4])[0]
        offset += 4 + 4 * ext_len
    return packet[1] & 0x7F, packet[offset:]
