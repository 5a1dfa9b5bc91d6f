"""The interfaces every provider implements, and the events they produce.

Providers are small: a VAD turns frames into speech start/end events, an STT turns
speech into text (a whole utterance with ``recognize``, or a live ``stream`` when the
service streams), an LLM streams ``ChatChunk``s, a TTS streams audio for one piece of
text. Errors are raised as ``callfleet.agents.errors.APIError`` subclasses.
"""

from __future__ import annotations

import enum
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Literal, Protocol, runtime_checkable

from callfleet.agents.chat import ChatChunk, ChatContext
from callfleet.agents.tools import FunctionTool
from callfleet.media.frame import PCM16, AudioFrame

ToolChoice = Literal["auto", "required", "none"] | str
"""``auto``, ``required``, ``none``, or the name of one tool the LLM must call."""


# -- VAD -------------------------------------------------------------------------------


class VADEventType(enum.Enum):
    START_OF_SPEECH = "start_of_speech"
    END_OF_SPEECH = "end_of_speech"


@dataclass
class VADEvent:
    type: VADEventType
    #: Stream time (s since the first frame pushed) at which the event was decided.
    timestamp_s: float
    #: Speech so far (START: the speech that triggered it; END: the whole utterance), s.
    speech_duration_s: float
    #: Silence that ended the utterance (END only), s.
    silence_duration_s: float = 0.0
    #: The utterance's audio with some padding before it (END only), at the VAD's rate.
    frames: list[AudioFrame] = field(default_factory=list)
    #: ``captured_at`` of the frame that completed the decision (for latency metrics).
    captured_at: float | None = None


@runtime_checkable
class VADStream(Protocol):
    async def push_frame(self, frame: AudioFrame) -> list[VADEvent]:
        """Feed one frame (any rate; resampled inside); returns the events it caused."""
        ...

    @property
    def speaking(self) -> bool: ...

    async def aclose(self) -> None: ...


@runtime_checkable
class VAD(Protocol):
    label: str

    def stream(self) -> VADStream: ...


# -- STT -------------------------------------------------------------------------------


class SpeechEventType(enum.Enum):
    START_OF_SPEECH = "start_of_speech"
    INTERIM_TRANSCRIPT = "interim_transcript"
    FINAL_TRANSCRIPT = "final_transcript"
    END_OF_SPEECH = "end_of_speech"


@dataclass
class SpeechData:
    text: str
    language: str = ""
    confidence: float = 0.0
    start_s: float = 0.0
    end_s: float = 0.0


@dataclass
class SpeechEvent:
    type: SpeechEventType
    alternatives: list[SpeechData] = field(default_factory=list)

    @property
    def text(self) -> str:
        return self.alternatives[0].text if self.alternatives else ""


@dataclass(frozen=True)
class STTCapabilities:
    #: ``stream()`` is implemented (a live connection to the service).
    streaming: bool
    interim_results: bool = False


@runtime_checkable
class RecognizeStream(Protocol):
    """A live recognition session: push audio, read events until ``end_input``."""

    def push_frame(self, frame: AudioFrame) -> None: ...

    def flush(self) -> None:
        """The current utterance has ended: finalize what was heard so far."""
        ...

    def end_input(self) -> None: ...

    def __aiter__(self) -> AsyncIterator[SpeechEvent]: ...

    async def aclose(self) -> None: ...


@runtime_checkable
class STT(Protocol):
    label: str
    capabilities: STTCapabilities
    #: The rate the provider wants audio at (Hz); callers may pass any rate.
    sample_rate: int

    async def recognize(
        self, audio: PCM16, sample_rate: int, *, language: str | None = None
    ) -> SpeechEvent:
        """Transcribe one whole utterance; returns a FINAL_TRANSCRIPT event."""
        ...

    def stream(self, *, language: str | None = None) -> RecognizeStream:
        """A live recognition session (only when ``capabilities.streaming``)."""
        ...

    async def aclose(self) -> None: ...


# -- LLM -------------------------------------------------------------------------------


@runtime_checkable
class LLM(Protocol):
    label: str

    def chat(
        self,
        *,
        chat_ctx: ChatContext,
        tools: list[FunctionTool] | None = None,
        tool_choice: ToolChoice = "auto",
    ) -> AsyncIterator[ChatChunk]:
        """Stream the reply to ``chat_ctx``: text deltas, then any complete tool calls."""
        ...

    async def aclose(self) -> None: ...


# -- TTS -------------------------------------------------------------------------------


@dataclass(frozen=True)
class TTSCapabilities:
    #: Audio arrives while the text is still being synthesized (a live connection).
    streaming: bool


@runtime_checkable
class TTS(Protocol):
    label: str
    capabilities: TTSCapabilities
    #: The rate of the frames ``synthesize`` yields (Hz).
    sample_rate: int

    def synthesize(self, text: str) -> AsyncIterator[AudioFrame]:
        """Audio for ``text`` (one sentence or a few), as it becomes available."""
        ...

    async def aclose(self) -> None: ...
