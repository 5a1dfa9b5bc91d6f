"""Streaming sample-rate conversion of int16 mono audio, on top of ``av.AudioResampler``.

FFmpeg's swresample keeps its filter history between frames, so a stream fed in chunks of
any size comes out the same as the whole stream fed at once, sample for sample. The
resampler holds back a few samples of filter delay; ``flush()`` returns them at the end.
"""

from __future__ import annotations

from fractions import Fraction

import av
import numpy as np

from callfleet.media.frame import PCM16

# Upper bound on the 20 ms blocks of silence flush() feeds to drain the filter (1 s).
_MAX_FLUSH_BLOCKS = 50


def _check_rate(name: str, rate: int) -> None:
    if isinstance(rate, bool) or not isinstance(rate, int) or rate <= 0:
        raise ValueError(f"{name} must be a positive integer sample rate in Hz, got {rate!r}")


class Resampler:
    """Converts one int16 mono stream from ``from_rate`` Hz to ``to_rate`` Hz.

    Call ``process()`` with consecutive chunks, then ``flush()`` once at the end of the
    stream; after ``flush()`` the resampler starts afresh for a new stream. The whole stream
    comes out as ``n * to_rate / from_rate`` samples (rounded half up) for ``n`` in, time
    aligned (no leading delay). When the rates are equal the samples are passed through
    (copied) without touching FFmpeg.
    """

    def __init__(self, from_rate: int, to_rate: int) -> None:
        _check_rate("from_rate", from_rate)
        _check_rate("to_rate", to_rate)
        self.from_rate = from_rate
        self.to_rate = to_rate
        self._resampler: av.AudioResampler | None = None
        # Samples fed in (also the pts of the next frame) and given out in this stream.
        self._fed = 0
        self._emitted = 0

    @property
    def is_identity(self) -> bool:
        return self.from_rate == self.to_rate

    def process(self, samples: PCM16) -> PCM16:
        """Resampled audio for the next chunk of the stream. It may be a few samples short
        of ``len(samples) * to_rate / from_rate`` (FFmpeg's filter delay): those come out
        with the next chunk or from ``flush()``."""
        if samples.dtype != np.int16 or samples.ndim != 1:
            raise ValueError(
                f"Resampler expects 1-D int16 samples, got {samples.dtype} "
                f"with shape {samples.shape}"
            )
        if self.is_identity:
            return samples.copy()
        if len(samples) == 0:
            return np.zeros(0, np.int16)
        return self._feed(samples)

    def flush(self) -> PCM16:
        """The rest of the stream: the samples held back by the filter delay, made up to the
        exact total length by running silence through the filter. Resets the resampler."""
        if self._resampler is None:
            return np.zeros(0, np.int16)
        total = (self._fed * self.to_rate + self.from_rate // 2) // self.from_rate
        padding = np.zeros(max(1, self.from_rate // 50), np.int16)  # 20 ms of silence
        parts: list[PCM16] = []
        already = self._emitted
        for _ in range(_MAX_FLUSH_BLOCKS):
            if self._emitted >= total:
                break
            parts.append(self._feed(padding))
        self._resampler, self._fed, self._emitted = None, 0, 0
        tail = np.concatenate(parts) if parts else np.zeros(0, np.int16)
        return tail[: max(0, total - already)]

    def _feed(self, samples: PCM16) -> PCM16:
        frame = av.AudioFrame.from_ndarray(
            np.ascontiguousarray(samples).reshape(1, -1), format="s16", layout="mono"
        )
        frame.sample_rate = self.from_rate
        frame.time_base = Fraction(1, self.from_rate)
        frame.pts = self._fed
        if self._resampler is None:
            self._resampler = av.AudioResampler(format="s16", layout="mono", rate=self.to_rate)
        out = _concat(self._resampler.resample(frame))
        self._fed += len(samples)
        self._emitted += len(out)
        return out


def _concat(frames: list[av.AudioFrame]) -> PCM16:
    if not frames:
        return np.zeros(0, np.int16)
    return np.concatenate([f.to_ndarray().reshape(-1) for f in frames]).astype(np.int16)


def resample(samples: PCM16, from_rate: int, to_rate: int) -> PCM16:
    """A whole int16 mono buffer converted from ``from_rate`` Hz to ``to_rate`` Hz; the
    result has ``len(samples) * to_rate / from_rate`` samples, rounded half up."""
    resampler = Resampler(from_rate, to_rate)
    head = resampler.process(samples)
    if resampler.is_identity:
        return head
    return np.concatenate([head, resampler.flush()])
