"""Hearing the user: VAD, speech to text and the end of the user's turn.

Frames of the callee's audio go through the VAD and into the agent's ``stt_node``. The
VAD decides when speech starts and ends; the STT provides the words. A turn ends when
the user has been silent for the endpointing delay (``min_endpointing_delay`` when the
transcript looks complete, ``max_endpointing_delay`` when it trails off with "and",
"um" or a comma) and there is a transcript; speech that resumes before then continues
the same turn.

The audio stream handed to ``stt_node`` carries the VAD's decisions as empty frames
flagged ``vad_start`` / ``vad_end``: a streaming STT ignores the first and finalizes
on the second; a whole-utterance STT (faster-whisper, OpenAI) is wrapped in
``SegmentedSTTStream``, which transcribes each segment the VAD marks.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from callfleet.agents.aio import Channel, cancel_and_wait
from callfleet.agents.errors import APIError
from callfleet.agents.options import SessionOptions
from callfleet.agents.providers.base import (
    STT,
    RecognizeStream,
    SpeechData,
    SpeechEvent,
    SpeechEventType,
    VADEvent,
    VADEventType,
    VADStream,
)
from callfleet.media.frame import AudioFrame

log = logging.getLogger(__name__)

VAD_START_FLAG = frozenset({"vad_start"})
VAD_END_FLAG = frozenset({"vad_end"})
#: Audio kept before the VAD's start decision and prepended to a segment (s): the VAD
#: decides a little after the first syllable.
PRE_ROLL_S = 0.5
#: Longest segment a whole-utterance STT is given (s); longer speech is cut.
MAX_SEGMENT_S = 30.0
#: How long after the end of speech a streaming STT may take to send its final
#: transcript (s).
STREAMING_FINAL_WAIT_S = 1.5

# A transcript that ends like this is probably not the end of the turn.
_UNFINISHED = re.compile(
    r"(?:,|\.\.\.|…|\b(?:and|but|or|so|because|um+|uh+|er|like|with|the|a|to|of|my|is))\s*$",
    re.I,
)


def marker(flags: frozenset[str], sample_rate: int) -> AudioFrame:
    return AudioFrame(np.zeros(0, np.int16), sample_rate, flags=flags)


def looks_unfinished(text: str) -> bool:
    return bool(_UNFINISHED.search(text.strip()))


class SegmentedSTTStream:
    """A ``RecognizeStream`` over a whole-utterance STT: frames between a ``vad_start``
    and a ``vad_end`` marker (plus ``PRE_ROLL_S`` before) are transcribed as one
    segment; segments are transcribed in order, one at a time."""

    def __init__(self, stt: STT, *, language: str | None = None) -> None:
        self._stt = stt
        self._language = language
        self._pre_roll: deque[AudioFrame] = deque()
        self._pre_roll_s = 0.0
        self._segment: list[AudioFrame] | None = None
        self._segment_s = 0.0
        self._events: Channel[SpeechEvent] = Channel()
        self._queue: Channel[list[AudioFrame]] = Channel()
        self._error: APIError | None = None
        self.recognize_task = asyncio.create_task(self._recognize_segments())

    def push_frame(self, frame: AudioFrame) -> None:
        if frame.flags == VAD_START_FLAG:
            self._segment, self._segment_s = list(self._pre_roll), self._pre_roll_s
            return
        if frame.flags == VAD_END_FLAG:
            self.flush()
            return
        self._pre_roll.append(frame)
        self._pre_roll_s += frame.duration_s
        while self._pre_roll_s > PRE_ROLL_S and self._pre_roll:
            self._pre_roll_s -= self._pre_roll.popleft().duration_s
        if self._segment is not None:
            self._segment.append(frame)
            self._segment_s += frame.duration_s
            if self._segment_s >= MAX_SEGMENT_S:
                self.flush()
                self._segment, self._segment_s = [], 0.0

    def flush(self) -> None:
        if self._segment:
            self._queue.send(self._segment)
        self._segment, self._segment_s = None, 0.0

    def end_input(self) -> None:
        self.flush()
        self._queue.close()

    async def _recognize_segments(self) -> None:
        try:
            async for frames in self._queue:
                rate = frames[0].sample_rate
                audio = np.concatenate([f.samples for f in frames])
                event = await self._stt.recognize(audio, rate, language=self._language)
                if event.type is not SpeechEventType.FINAL_TRANSCRIPT:
                    event = SpeechEvent(SpeechEventType.FINAL_TRANSCRIPT, event.alternatives)
                if not event.alternatives:
                    event.alternatives.append(SpeechData(text=""))
                self._events.send(event)
        except APIError as e:
            self._error = e
        finally:
            self._events.close()

    def __aiter__(self) -> AsyncIterator[SpeechEvent]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[SpeechEvent]:
        async for event in self._events:
            yield event
        if self._error is not None:
            raise self._error

    async def aclose(self) -> None:
        self._queue.close()
        await cancel_and_wait(self.recognize_task)


class _MarkerFilter:
    """A streaming provider's stream, fed VAD markers: ``vad_end`` finalizes (flush),
    ``vad_start`` is dropped."""

    def __init__(self, stream: RecognizeStream) -> None:
        self._stream = stream

    def push_frame(self, frame: AudioFrame) -> None:
        if frame.flags == VAD_END_FLAG:
            self._stream.flush()
        elif frame.flags != VAD_START_FLAG:
            self._stream.push_frame(frame)

    def flush(self) -> None:
        self._stream.flush()

    def end_input(self) -> None:
        self._stream.end_input()

    def __aiter__(self) -> AsyncIterator[SpeechEvent]:
        return aiter(self._stream)

    async def aclose(self) -> None:
        await self._stream.aclose()


def open_stt_stream(stt: STT, *, language: str | None = None) -> RecognizeStream:
    """A stream over ``stt`` that understands the VAD markers of the audio it is fed."""
    if stt.capabilities.streaming:
        return _MarkerFilter(stt.stream(language=language))
    return SegmentedSTTStream(stt, language=language)


class RecognitionHooks(Protocol):
    def on_start_of_speech(self, event: VADEvent) -> None: ...

    def on_end_of_speech(self, event: VADEvent) -> None: ...

    def on_transcript(self, text: str, *, is_final: bool) -> None: ...

    def on_empty_turn(self) -> None: ...

    def on_transcript_ready(self, text: str) -> None:
        """The final transcript is in, the endpointing delay has not passed yet."""
        ...

    def on_end_of_turn(self, turn: UserTurn) -> None:
        """Must not block: the recognition carries on listening."""
        ...


@dataclass
class UserTurn:
    text: str
    #: ``perf_counter()`` of the end of the user's speech (last voiced frame).
    end_of_speech_at: float
    #: ``perf_counter()`` when the VAD decided the speech had ended (the deciding frame
    #: came off the wire then).
    vad_end_at: float
    #: ``perf_counter()`` when the final transcript arrived.
    transcript_at: float
    committed_at: float


SttNode = Callable[[AsyncIterator[AudioFrame]], AsyncIterator[SpeechEvent]]


class AudioRecognition:
    """One per session. ``push_frame`` from the session's audio task."""

    def __init__(
        self,
        hooks: RecognitionHooks,
        vad_stream: VADStream,
        options: Callable[[], SessionOptions],
    ) -> None:
        self._hooks = hooks
        self._vad = vad_stream
        self._options = options
        self._stt_audio: Channel[AudioFrame] | None = None
        self._streaming_stt = False
        self.stt_task: asyncio.Task[None] | None = None
        self.end_of_turn_task: asyncio.Task[None] | None = None
        self._transcript: list[str] = []
        self._transcript_at = 0.0
        self._segments_open = 0  # whole-utterance STT: segments sent, not yet transcribed
        self._segments_done: asyncio.Event = asyncio.Event()
        self._segments_done.set()
        self._final_seen: asyncio.Event = asyncio.Event()
        self._end_of_speech_at = 0.0
        self._vad_end_at = 0.0
        self.speaking = False
        #: Speech (s) of the current utterance when the VAD said it started.
        self.speech_started_at = 0.0

    # -- STT wiring ---------------------------------------------------------------------

    async def start_stt(self, node: SttNode, *, streaming: bool) -> None:
        """(Re)start the STT node (at the start and when an agent with another STT takes
        over)."""
        await self.stop_stt()
        self._streaming_stt = streaming
        self._stt_audio = Channel()
        self.stt_task = asyncio.create_task(self._read_stt(node(aiter(self._stt_audio))))

    async def stop_stt(self) -> None:
        if self._stt_audio is not None:
            self._stt_audio.close()
        await cancel_and_wait(self.stt_task)
        self._stt_audio = None

    async def _read_stt(self, events: AsyncIterator[SpeechEvent]) -> None:
        try:
            async for event in events:
                self._on_stt_event(event)
        except APIError as e:
            log.error("speech to text failed: %s", e)
            self._segments_open = 0
            self._segments_done.set()

    def _on_stt_event(self, event: SpeechEvent) -> None:
        if event.type is SpeechEventType.INTERIM_TRANSCRIPT and event.text:
            self._hooks.on_transcript(event.text, is_final=False)
        elif event.type is SpeechEventType.FINAL_TRANSCRIPT:
            text = event.text.strip()
            if text:
                self._transcript.append(text)
                self._transcript_at = time.perf_counter()
                self._hooks.on_transcript(text, is_final=True)
            self._final_seen.set()
            if not self._streaming_stt and self._segments_open:
                self._segments_open -= 1
                if not self._segments_open:
                    self._segments_done.set()

    # -- audio ----------------------------------------------------------------------------

    async def push_frame(self, frame: AudioFrame) -> None:
        events = await self._vad.push_frame(frame)
        if self._stt_audio is not None:
            self._stt_audio.send(frame)
        for event in events:
            if event.type is VADEventType.START_OF_SPEECH:
                self._on_vad_start(event, frame.sample_rate)
            else:
                self._on_vad_end(event, frame.sample_rate)

    def _on_vad_start(self, event: VADEvent, rate: int) -> None:
        self.speaking = True
        self.speech_started_at = time.perf_counter() - event.speech_duration_s
        if self.end_of_turn_task is not None:
            self.end_of_turn_task.cancel()  # the user goes on: same turn
        if self._stt_audio is not None:
            self._stt_audio.send(marker(VAD_START_FLAG, rate))
        self._hooks.on_start_of_speech(event)

    def _on_vad_end(self, event: VADEvent, rate: int) -> None:
        self.speaking = False
        decided_at = event.captured_at or time.perf_counter()
        self._vad_end_at = decided_at
        self._end_of_speech_at = decided_at - event.silence_duration_s
        self._final_seen.clear()
        if self._stt_audio is not None:
            if not self._streaming_stt:
                self._segments_open += 1
                self._segments_done.clear()
            self._stt_audio.send(marker(VAD_END_FLAG, rate))
        self._hooks.on_end_of_speech(event)
        self.end_of_turn_task = asyncio.create_task(self._end_of_turn())

    async def _wait_transcript(self) -> None:
        if self._streaming_stt:
            if not self._final_seen.is_set():
                try:
                    await asyncio.wait_for(self._final_seen.wait(), STREAMING_FINAL_WAIT_S)
                except TimeoutError:
                    pass
        else:
            await self._segments_done.wait()

    async def _end_of_turn(self) -> None:
        await self._wait_transcript()
        text = " ".join(self._transcript).strip()
        if not text:
            self._hooks.on_empty_turn()
            return
        self._hooks.on_transcript_ready(text)
        options = self._options()
        delay = (
            options.max_endpointing_delay
            if looks_unfinished(text)
            else options.min_endpointing_delay
        )
        remaining = self._end_of_speech_at + delay - time.perf_counter()
        if remaining > 0:
            await asyncio.sleep(remaining)
        turn = UserTurn(
            text=text,
            end_of_speech_at=self._end_of_speech_at,
            vad_end_at=self._vad_end_at,
            transcript_at=self._transcript_at,
            committed_at=time.perf_counter(),
        )
        self._transcript.clear()
        self._hooks.on_end_of_turn(turn)

    async def aclose(self) -> None:
        await cancel_and_wait(self.end_of_turn_task)
        await self.stop_stt()
        await self._vad.aclose()
