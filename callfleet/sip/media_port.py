"""PCM in and out of a call through a PJSUA2 ``AudioMediaPort``.

The conference bridge's clock thread calls ``onFrameReceived`` with what the far end
said and ``onFrameRequested`` for what we say, once per 20 ms tick. Both callbacks stay
tiny: received PCM is copied out (see ``framecopy``) and handed to the asyncio loop;
outgoing PCM is pulled from a ``PlayoutBuffer`` that the loop fills.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from typing import Any

import numpy as np
import pjsua2 as pj

from callfleet.media.frame import FRAME_MS, PCM16, AudioFrame, samples_per_frame
from callfleet.media.playout import PlayoutBuffer
from callfleet.media.resample import Resampler
from callfleet.media.wav import WavWriter
from callfleet.sip.framecopy import read_vector, write_vector

log = logging.getLogger(__name__)

#: Received frames buffered for a slow consumer before the oldest are dropped (10 s).
MAX_QUEUED_IN_FRAMES = 500


# SWIG accessors called directly: the property wrappers add a Python call per access,
# and these run 100 times a second per call on the clock thread.
_frame_buf = pj.pjsua2._pjsua2.MediaFrame_buf_get
_frame_type_set = pj.pjsua2._pjsua2.MediaFrame_type_set
_AUDIO = pj.PJMEDIA_FRAME_TYPE_AUDIO


class CallMediaPort(pj.AudioMediaPort):
    """Runs on the clock thread. ``deliver(pcm_bytes, sent, captured_at)`` is posted to
    the loop for every received frame (empty bytes when the tick carried no audio);
    ``sent`` is what we played on the same tick. Kept minimal: every microsecond here
    is spent 100 times a second per call while holding the GIL."""

    def __init__(
        self,
        sample_rate: int,
        playout: PlayoutBuffer,
        deliver: Callable[[bytes, PCM16 | None, float], None],
        to_loop: Callable[..., None],
    ) -> None:
        super().__init__()
        self.destroyed = False
        self.sample_rate = sample_rate
        self._playout = playout
        self._deliver = deliver
        self._to_loop = to_loop
        self._last_sent: PCM16 | None = None
        self.ticks_in = 0
        self.ticks_out = 0

    def create(self, name: str) -> None:
        fmt = pj.MediaFormatAudio()
        fmt.init(pj.PJMEDIA_FORMAT_PCM, self.sample_rate, 1, FRAME_MS * 1000, 16)
        self.createPort(name, fmt)

    def onFrameRequested(self, frame: Any) -> None:
        # PJSUA2 hands a frame of type NONE with its capacity in ``size``; leaving it
        # untouched sends silence.
        self.ticks_out += 1
        samples = self._playout.pull()
        self._last_sent = samples
        if samples is not None:
            _frame_type_set(frame, _AUDIO)
            write_vector(_frame_buf(frame), samples.tobytes())

    def onFrameReceived(self, frame: Any) -> None:
        self.ticks_in += 1
        data = read_vector(_frame_buf(frame))
        self._to_loop(self._deliver, data, self._last_sent, time.perf_counter())


class AudioInput:
    """What the far end says, as an async iterator of 20 ms ``AudioFrame``s.

    One consumer reads it (``async for frame in call.audio_in``); iteration ends when
    the call ends. A consumer that falls more than ``MAX_QUEUED_IN_FRAMES`` behind loses
    the oldest frames (counted in ``dropped``) rather than growing memory.
    """

    def __init__(self, call_id: str) -> None:
        self.call_id = call_id
        self._frames: deque[AudioFrame] = deque()
        self._waiter: asyncio.Future[None] | None = None
        self._closed = False
        self.dropped = 0
        self.received = 0

    def put(self, frame: AudioFrame) -> None:
        if self._closed:
            return
        self.received += 1
        if len(self._frames) >= MAX_QUEUED_IN_FRAMES:
            self._frames.popleft()
            self.dropped += 1
        self._frames.append(frame)
        self._wake()

    def close(self) -> None:
        self._closed = True
        self._wake()

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    def __aiter__(self) -> AsyncIterator[AudioFrame]:
        return self

    async def __anext__(self) -> AudioFrame:
        while not self._frames:
            if self._closed:
                raise StopAsyncIteration
            self._waiter = asyncio.get_running_loop().create_future()
            await self._waiter
            self._waiter = None
        return self._frames.popleft()


class AudioOutput:
    """What we say: frames are queued and played out paced by the media clock.

    ``write`` accepts any sample rate (resampled to the call's rate). ``clear()`` drops
    all queued audio before the next tick (barge-in). ``wait_played()`` resolves when
    everything written so far has gone out, or the queue was cleared.
    """

    def __init__(self, sample_rate: int, to_loop: Callable[..., None]) -> None:
        self.sample_rate = sample_rate
        # The clock thread reports an emptied queue; the loop resolves the waiters.
        self.buffer = PlayoutBuffer(
            sample_rate,
            samples_per_frame(sample_rate),
            on_empty=lambda: to_loop(self._wake),
            on_start=lambda at: to_loop(self._started, at),
        )
        self._resamplers: dict[int, Resampler] = {}
        self._waiters: list[asyncio.Future[bool]] = []
        self._start_waiters: list[asyncio.Future[float]] = []

    def write(self, frame: AudioFrame | PCM16, sample_rate: int | None = None) -> None:
        if isinstance(frame, AudioFrame):
            samples, rate = frame.samples, frame.sample_rate
        else:
            samples, rate = frame, sample_rate or self.sample_rate
        if rate != self.sample_rate:
            resampler = self._resamplers.get(rate)
            if resampler is None:
                resampler = self._resamplers[rate] = Resampler(rate, self.sample_rate)
            samples = resampler.process(samples)
        self.buffer.push(samples)

    def finish(self) -> None:
        """The current utterance is complete: running dry is no longer an underrun."""
        for rate, resampler in self._resamplers.items():
            tail = resampler.flush()
            if len(tail):
                self.buffer.push(tail)
            self._resamplers[rate] = Resampler(rate, self.sample_rate)
        self.buffer.finish()

    def clear(self) -> int:
        """Drop queued audio; returns the milliseconds dropped. Waiters get ``False``."""
        dropped = self.buffer.clear()
        self._wake(played=False)
        return dropped * 1000 // self.sample_rate

    def pause(self) -> None:
        """Hold queued audio (silence goes out) until ``resume()``."""
        self.buffer.pause()

    def resume(self) -> None:
        self.buffer.resume()

    @property
    def queued_ms(self) -> float:
        return self.buffer.queued_s * 1000

    async def wait_played(self) -> bool:
        """Wait until the queue is empty: ``True`` when it played out, ``False`` if it was
        cleared (barge-in) or the call ended first."""
        if not self.buffer.queued_samples:
            return True
        fut: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._waiters.append(fut)
        return await fut

    def next_start(self) -> asyncio.Future[float]:
        """Resolves with the ``perf_counter()`` time at which the clock thread sends the
        first frame of the next burst of audio (audio written into an empty queue): when
        the agent's voice really went out. Cancel it if no such burst comes."""
        fut: asyncio.Future[float] = asyncio.get_running_loop().create_future()
        self._start_waiters.append(fut)
        return fut

    def _started(self, at: float) -> None:
        waiters, self._start_waiters = self._start_waiters, []
        for fut in waiters:
            if not fut.done():
                fut.set_result(at)

    def close(self) -> None:
        self._wake(played=False)
        for fut in self._start_waiters:
            fut.cancel()
        self._start_waiters.clear()

    def _wake(self, played: bool = True) -> None:
        if played and self.buffer.queued_samples:
            return  # refilled since the clock thread saw it empty
        waiters, self._waiters = self._waiters, []
        for fut in waiters:
            if not fut.done():
                fut.set_result(played)


class StereoRecorder:
    """Both directions of a call to one WAV file: left = far end, right = us."""

    def __init__(self, path: str, sample_rate: int) -> None:
        self.path = path
        self._writer = WavWriter(path, sample_rate, channels=2)

    def write(self, received: PCM16, sent: PCM16 | None) -> None:
        frame = np.zeros((len(received), 2), np.int16)
        frame[:, 0] = received
        if sent is not None and len(sent) == len(received):
            frame[:, 1] = sent
        self._writer.write(frame)

    def close(self) -> None:
        self._writer.close()
