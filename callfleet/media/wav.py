"""WAV files: read PCM / G.711 WAV into int16 mono, write PCM16 (mono or multi-channel).

Reading parses the RIFF chunks itself (the stdlib ``wave`` reads only integer PCM): it
accepts PCM of 8 (unsigned), 16, 24 and 32 bits, μ-law (format tag 7) and A-law (tag 6),
and ``WAVE_FORMAT_EXTENSIBLE`` wrapping any of those. Wider samples are truncated to their
top 16 bits; several channels are averaged into one. Writing uses the stdlib ``wave``,
which rewrites the header after every write, so a recording that is still growing is a
valid file at every moment. Format reference: Microsoft "Multimedia Programming Interface
and Data Specifications 1.0" (RIFF WAVE) and ``mmreg.h`` for the format tags.
"""

from __future__ import annotations

import os
import struct
import wave
from types import TracebackType

import numpy as np
import numpy.typing as npt

from callfleet.media.frame import PCM16
from callfleet.media.g711 import alaw_decode, ulaw_decode
from callfleet.media.resample import resample

StrPath = str | os.PathLike[str]

WAVE_FORMAT_PCM = 0x0001
WAVE_FORMAT_IEEE_FLOAT = 0x0003
WAVE_FORMAT_ALAW = 0x0006
WAVE_FORMAT_MULAW = 0x0007
WAVE_FORMAT_EXTENSIBLE = 0xFFFE

# Names for the error message of an unsupported format tag.
_FORMAT_NAMES = {
    0x0002: "Microsoft ADPCM",
    WAVE_FORMAT_IEEE_FLOAT: "IEEE float",
    0x0011: "IMA ADPCM",
    0x0031: "GSM 6.10",
    0x0055: "MPEG Layer 3",
}
# Size of a data chunk written by a streaming writer that never came back to fix it.
_UNKNOWN_SIZE = 0xFFFFFFFF


def _chunks(name: str, data: bytes) -> dict[bytes, bytes]:
    """The first chunk of each id in a RIFF/WAVE file."""
    if data[:4] != b"RIFF" or (len(data) >= 12 and data[8:12] != b"WAVE"):
        raise ValueError(f"{name} is not a RIFF/WAVE file")
    if len(data) < 12:
        raise ValueError(f"{name} is truncated: {len(data)} bytes is too short for a RIFF header")
    chunks: dict[bytes, bytes] = {}
    pos = 12
    while pos + 8 <= len(data):
        cid = data[pos : pos + 4]
        (size,) = struct.unpack_from("<I", data, pos + 4)
        body = pos + 8
        if cid == b"data" and size == _UNKNOWN_SIZE:
            size = len(data) - body
        if body + size > len(data):
            label = cid.decode("latin-1").rstrip()
            raise ValueError(
                f"{name} is truncated: its {label!r} chunk declares {size} bytes "
                f"but only {len(data) - body} follow"
            )
        chunks.setdefault(cid, data[body : body + size])
        pos = body + size + (size & 1)  # chunks are padded to an even size
    return chunks


def _decode(name: str, fmt: bytes, data: bytes) -> tuple[npt.NDArray[np.int16], int, int]:
    """Interleaved int16 samples, channel count and sample rate."""
    if len(fmt) < 16:
        raise ValueError(f"{name} has a {len(fmt)}-byte fmt chunk, shorter than 16 bytes")
    tag, channels, rate, _byte_rate, _block_align, bits = struct.unpack_from("<HHIIHH", fmt)
    if tag == WAVE_FORMAT_EXTENSIBLE:
        if len(fmt) < 40:
            raise ValueError(
                f"{name} has a {len(fmt)}-byte WAVE_FORMAT_EXTENSIBLE fmt chunk, "
                "shorter than 40 bytes"
            )
        (tag,) = struct.unpack_from("<H", fmt, 24)  # the SubFormat GUID starts with the tag
    if channels == 0:
        raise ValueError(f"{name} declares 0 channels")
    if rate == 0:
        raise ValueError(f"{name} declares a sample rate of 0 Hz")
    if tag == WAVE_FORMAT_PCM:
        width = (bits + 7) // 8
        if not 1 <= width <= 4:
            raise ValueError(f"{name} uses unsupported PCM sample width of {bits} bits")
    elif tag in (WAVE_FORMAT_MULAW, WAVE_FORMAT_ALAW):
        width = 1
        if bits != 8:
            raise ValueError(f"{name} declares {bits}-bit G.711 samples; G.711 is 8-bit")
    else:
        kind = _FORMAT_NAMES.get(tag, "unknown")
        raise ValueError(f"{name} uses unsupported format tag {tag} ({kind})")
    frame_bytes = width * channels
    raw = np.frombuffer(data, np.uint8, count=len(data) // frame_bytes * frame_bytes)
    if tag == WAVE_FORMAT_MULAW:
        return ulaw_decode(raw), channels, rate
    if tag == WAVE_FORMAT_ALAW:
        return alaw_decode(raw), channels, rate
    if width == 1:  # 8-bit PCM is unsigned, centred on 128
        return ((raw.astype(np.int16) - 128) << 8).astype(np.int16), channels, rate
    # Keep the two most significant bytes of each little-endian sample.
    top = raw.reshape(-1, width)[:, width - 2 :]
    return top.copy().view("<i2").reshape(-1).astype(np.int16), channels, rate


def read_wav(path: StrPath, *, sample_rate: int | None = None) -> tuple[PCM16, int]:
    """The samples of a WAV file as int16 mono, and their sample rate in Hz.

    Several channels are averaged (rounded) into one. With ``sample_rate`` the audio is
    resampled to that rate (and that rate is returned). Raises ``ValueError`` naming the
    file for anything that is not a readable WAV file.
    """
    name = os.fspath(path)
    with open(name, "rb") as f:
        data = f.read()
    chunks = _chunks(name, data)
    fmt = chunks.get(b"fmt ")
    if fmt is None:
        raise ValueError(f"{name} has no fmt chunk")
    body = chunks.get(b"data")
    if body is None:
        raise ValueError(f"{name} has no data chunk")
    samples, channels, rate = _decode(name, fmt, body)
    if channels > 1:
        mixed = samples.reshape(-1, channels).mean(axis=1)
        samples = np.round(mixed).astype(np.int16)
    if sample_rate is not None and sample_rate != rate:
        return resample(samples, rate, sample_rate), sample_rate
    return samples, rate


def _channels_of(samples: npt.NDArray[np.int16]) -> int:
    if samples.dtype != np.int16 or samples.ndim not in (1, 2):
        raise ValueError(
            f"WAV samples must be int16 with shape (n,) or (n, channels), got "
            f"{samples.dtype} with shape {samples.shape}"
        )
    return 1 if samples.ndim == 1 else samples.shape[1]


def write_wav(path: StrPath, samples: npt.NDArray[np.int16], sample_rate: int) -> None:
    """Write a PCM16 WAV file: 1-D ``samples`` are mono, shape ``(n, channels)`` is
    interleaved multi-channel audio."""
    with WavWriter(path, sample_rate, _channels_of(samples)) as writer:
        writer.write(samples)


class WavWriter:
    """A PCM16 WAV file written as it grows (a call recording).

    The header is written on open and rewritten after every ``write()``, so the file is
    valid whenever it is read, and ``close()`` leaves it final. Use from one thread.
    """

    def __init__(self, path: StrPath, sample_rate: int, channels: int = 1) -> None:
        if sample_rate <= 0:
            raise ValueError(f"WAV sample_rate must be positive, got {sample_rate}")
        if channels <= 0:
            raise ValueError(f"WAV channels must be positive, got {channels}")
        self.path = os.fspath(path)
        self.sample_rate = sample_rate
        self.channels = channels
        #: Frames (samples per channel) written so far.
        self.frames_written = 0
        self._file = open(self.path, "wb")  # closed by close()
        self._wave: wave.Wave_write | None = wave.open(self._file, "wb")
        self._wave.setnchannels(channels)
        self._wave.setsampwidth(2)
        self._wave.setframerate(sample_rate)
        self._wave.writeframes(b"")  # the header, so an empty recording is a valid file
        self._file.flush()

    @classmethod
    def open(cls, path: StrPath, sample_rate: int, channels: int = 1) -> WavWriter:
        """Same as ``WavWriter(path, sample_rate, channels)``."""
        return cls(path, sample_rate, channels)

    @property
    def closed(self) -> bool:
        return self._wave is None

    @property
    def duration_s(self) -> float:
        return self.frames_written / self.sample_rate

    def write(self, samples: npt.NDArray[np.int16]) -> None:
        """Append int16 samples: 1-D for a mono file, shape ``(n, channels)`` otherwise."""
        if self._wave is None:
            raise ValueError(f"WavWriter for {self.path} is closed")
        channels = _channels_of(samples)
        if channels != self.channels:
            raise ValueError(
                f"WavWriter for {self.channels} channel(s) got samples with shape {samples.shape}"
            )
        self._wave.writeframes(np.ascontiguousarray(samples, dtype="<i2").tobytes())
        self._file.flush()
        self.frames_written += samples.shape[0]

    def close(self) -> None:
        """Finish the header and close the file; calling it again does nothing."""
        if self._wave is not None:
            w, self._wave = self._wave, None
            try:
                w.close()
            finally:
                self._file.close()

    def __enter__(self) -> WavWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
