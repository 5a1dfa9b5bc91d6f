"""Playout buffer between an asyncio producer and a media clock that pulls fixed frames.

The producer (an agent, a WAV player) pushes PCM of any length; the media clock thread
pulls exactly one frame every tick. An empty buffer yields silence, so the clock never
stalls; a partially filled frame is padded with silence only when nothing else is
queued. ``clear()`` drops everything queued, which is how barge-in stops the agent
within one frame. Thread safe: push/clear from the loop, pull from the clock thread.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable

import numpy as np

from callfleet.media.frame import PCM16


class PlayoutBuffer:
    """FIFO of int16 samples at one ``sample_rate``, pulled ``frame_samples`` at a time."""

    def __init__(
        self,
        sample_rate: int,
        frame_samples: int,
        *,
        max_s: float = 600.0,
        on_empty: Callable[[], None] | None = None,
        on_start: Callable[[float], None] | None = None,
    ) -> None:
        """``on_empty`` is called (on the puller's thread, outside the lock) each time a
        pull takes the last queued samples, so a waiter can learn that playout is done
        without polling; ``on_start(perf_counter_s)`` when a pull plays the first frame
        of a burst (audio pushed into an empty buffer)."""
        self.sample_rate = sample_rate
        self.frame_samples = frame_samples
        self._max_samples = int(max_s * sample_rate)
        self._chunks: deque[PCM16] = deque()
        self._queued = 0
        self._lock = threading.Lock()
        self.on_empty = on_empty
        self.on_start = on_start
        self._silence = np.zeros(frame_samples, np.int16)
        #: Ticks that found too little audio while a producer was mid-stream (between its
        #: first ``push`` and ``finish``/``clear``): an audible gap.
        self.underruns = 0
        self._streaming = False
        #: Frames pulled that carried queued audio.
        self.frames_played = 0
        # Incremented by clear() so a waiter can tell its audio was dropped.
        self.generation = 0
        self._paused = False
        # Set by a push into an empty buffer; the next pull that plays audio records
        # ``started_at`` and counts ``starts``: when audio really went out.
        self._start_pending = False
        #: ``time.perf_counter()`` of the tick that played the first frame of the latest
        #: burst of audio (a push into an empty buffer), and how many bursts have started.
        self.started_at: float | None = None
        self.starts = 0

    @property
    def queued_samples(self) -> int:
        return self._queued

    @property
    def queued_s(self) -> float:
        return self._queued / self.sample_rate

    def push(self, samples: PCM16) -> None:
        if samples.dtype != np.int16:
            raise ValueError(f"playout expects int16 samples, got {samples.dtype}")
        if len(samples) == 0:
            return
        with self._lock:
            if self._queued + len(samples) > self._max_samples:
                raise OverflowError(
                    f"playout buffer full: {self._queued / self.sample_rate:.1f} s queued"
                )
            if self._queued == 0:
                self._start_pending = True
            self._chunks.append(samples.copy())  # the producer may reuse its array
            self._queued += len(samples)
            self._streaming = True

    def finish(self) -> None:
        """The producer has pushed its last samples: running dry now is not an underrun."""
        with self._lock:
            self._streaming = False

    @property
    def paused(self) -> bool:
        return self._paused

    def pause(self) -> None:
        """Hold the queued audio: ticks play silence until ``resume()`` (a possible
        barge-in that may turn out to be a cough)."""
        with self._lock:
            self._paused = True

    def resume(self) -> None:
        with self._lock:
            self._paused = False

    def clear(self) -> int:
        """Drop all queued audio; returns how many samples were dropped."""
        with self._lock:
            dropped = self._queued
            self._chunks.clear()
            self._queued = 0
            self._streaming = False
            self._paused = False
            self._start_pending = False
            self.generation += 1
            return dropped

    def pull(self) -> PCM16 | None:
        """One frame of queued audio, or ``None`` when nothing is queued (caller sends
        silence or nothing). A short tail is padded with silence."""
        n = self.frame_samples
        with self._lock:
            if self._paused:
                return None
            if self._queued == 0:
                if self._streaming:
                    self.underruns += 1
                return None
            out = np.empty(n, np.int16)
            filled = 0
            while filled < n and self._chunks:
                head = self._chunks[0]
                take = min(n - filled, len(head))
                out[filled : filled + take] = head[:take]
                filled += take
                if take == len(head):
                    self._chunks.popleft()
                else:
                    self._chunks[0] = head[take:]
            self._queued -= filled
            self.frames_played += 1
            started = self._start_pending
            if started:
                self._start_pending = False
                self.started_at = time.perf_counter()
                self.starts += 1
            if filled < n:
                out[filled:] = 0
                if self._streaming:
                    self.underruns += 1
            emptied = self._queued == 0
        if started and self.on_start is not None and self.started_at is not None:
            self.on_start(self.started_at)
        if emptied and self.on_empty is not None:
            self.on_empty()
        return out
