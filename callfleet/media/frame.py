"""The unit of audio inside callfleet: a block of int16 mono samples that knows its rate."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

PCM16 = npt.NDArray[np.int16]

#: Frame duration used on calls (RTP ptime and the conference bridge clock).
FRAME_MS = 20


def samples_per_frame(sample_rate: int, frame_ms: int = FRAME_MS) -> int:
    """Samples in one frame of ``frame_ms`` milliseconds at ``sample_rate`` Hz."""
    return sample_rate * frame_ms // 1000


@dataclass(frozen=True, slots=True)
class AudioFrame:
    """``samples`` (int16 mono) at ``sample_rate`` Hz; ``timestamp_s`` is when the frame
    starts on the stream's own clock (seconds since the stream began)."""

    samples: PCM16
    sample_rate: int
    timestamp_s: float = 0.0
    # Free-form tags (e.g. "early" for frames that arrived before the answer).
    flags: frozenset[str] = field(default_factory=frozenset)
    #: ``time.perf_counter()`` when the media thread took the frame off the wire, for
    #: latency measurements; ``None`` for synthesised audio.
    captured_at: float | None = None

    def __post_init__(self) -> None:
        if self.samples.dtype != np.int16 or self.samples.ndim != 1:
            raise ValueError(
                f"AudioFrame samples must be 1-D int16, got {self.samples.dtype} "
                f"with shape {self.samples.shape}"
            )
        if self.sample_rate <= 0:
            raise ValueError(f"AudioFrame sample_rate must be positive, got {self.sample_rate}")

    @property
    def duration_s(self) -> float:
        return len(self.samples) / self.sample_rate

    @property
    def duration_ms(self) -> float:
        return 1000.0 * len(self.samples) / self.sample_rate

    def to_bytes(self) -> bytes:
        """Little-endian PCM16, as RTP stacks and WAV files want it."""
        return self.samples.astype("<i2", copy=False).tobytes()

    @classmethod
    def from_bytes(cls, data: bytes, sample_rate: int, timestamp_s: float = 0.0) -> AudioFrame:
        if len(data) % 2:
            raise ValueError(f"PCM16 data must have an even length, got {len(data)} bytes")
        return cls(np.frombuffer(data, dtype="<i2").astype(np.int16), sample_rate, timestamp_s)

    @classmethod
    def silence(cls, sample_rate: int, duration_ms: int = FRAME_MS) -> AudioFrame:
        return cls(np.zeros(samples_per_frame(sample_rate, duration_ms), np.int16), sample_rate)
