"""Instant stand-ins for the voice models, for turn-taking tests and the framework
overhead benchmark: the test phone "speaks" tone bursts, ``ToneSTT`` hears the tone's
frequency as a phrase, ``FakeLLM`` replies from a script, ``ToneTTS`` "speaks" a tone
as long as the text. They implement the provider protocols of
``callfleet.agents.providers.base`` exactly; the models they replace are tested on
their own."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import numpy as np

from callfleet.agents.chat import ChatChunk, ChatContext, FunctionCall
from callfleet.agents.errors import APIError
from callfleet.agents.providers.base import (
    SpeechData,
    SpeechEvent,
    SpeechEventType,
    STTCapabilities,
    TTSCapabilities,
    VADEvent,
    VADEventType,
)
from callfleet.agents.tools import FunctionTool
from callfleet.media.frame import PCM16, AudioFrame, samples_per_frame
from callfleet.media.tones import sine


class EnergyVAD:
    """Speech = frames louder than ``threshold_dbfs``."""

    label = "energy"

    def __init__(
        self,
        *,
        threshold_dbfs: float = -35.0,
        min_speech_s: float = 0.06,
        min_silence_s: float = 0.3,
    ) -> None:
        self.threshold_dbfs = threshold_dbfs
        self.min_speech_s = min_speech_s
        self.min_silence_s = min_silence_s

    def stream(self) -> EnergyVADStream:
        return EnergyVADStream(self)


class EnergyVADStream:
    def __init__(self, vad: EnergyVAD) -> None:
        self._vad = vad
        self._t = 0.0
        self._voiced_s = 0.0
        self._silence_s = 0.0
        self._speech_s = 0.0
        self._speaking = False
        self._frames: list[AudioFrame] = []

    @property
    def speaking(self) -> bool:
        return self._speaking

    async def push_frame(self, frame: AudioFrame) -> list[VADEvent]:
        self._t += frame.duration_s
        rms = (
            float(np.sqrt(np.mean(frame.samples.astype(np.float64) ** 2)))
            if len(frame.samples)
            else 0
        )
        loud = 20 * np.log10(max(rms, 1e-9) / 32768) > self._vad.threshold_dbfs
        events: list[VADEvent] = []
        if self._speaking:
            self._frames.append(frame)
            self._speech_s += frame.duration_s
            self._silence_s = 0.0 if loud else self._silence_s + frame.duration_s
            if self._silence_s >= self._vad.min_silence_s:
                self._speaking = False
                events.append(
                    VADEvent(
                        VADEventType.END_OF_SPEECH,
                        self._t,
                        self._speech_s - self._silence_s,
                        self._silence_s,
                        self._frames,
                        frame.captured_at,
                    )
                )
                self._frames = []
        else:
            self._voiced_s = self._voiced_s + frame.duration_s if loud else 0.0
            if loud:
                self._frames.append(frame)
            else:
                self._frames = []
            if self._voiced_s >= self._vad.min_speech_s:
                self._speaking, self._speech_s, self._silence_s = True, self._voiced_s, 0.0
                events.append(
                    VADEvent(
                        VADEventType.START_OF_SPEECH,
                        self._t,
                        self._speech_s,
                        captured_at=frame.captured_at,
                    )
                )
        return events

    async def aclose(self) -> None:
        pass


#: Tone frequency (Hz) → what ToneSTT hears.
TONE_WORDS: dict[int, str] = {
    500: "Hello?",
    700: "Yes, this is Sam.",
    900: "Book me for Tuesday please.",
    1100: "Wait, stop.",
    1300: "Transfer me to billing.",
}


def tone_for(text: str) -> int:
    for hz, words in TONE_WORDS.items():
        if words == text:
            return hz
    raise KeyError(text)


class ToneSTT:
    """Hears the dominant frequency of an utterance as one of ``TONE_WORDS`` (nearest
    within 50 Hz); anything else is silence (empty transcript)."""

    label = "tone-stt"
    capabilities = STTCapabilities(streaming=False)
    sample_rate = 8000

    def __init__(self, *, delay_s: float = 0.0) -> None:
        self.delay_s = delay_s
        self.calls = 0

    async def recognize(
        self, audio: PCM16, sample_rate: int, *, language: str | None = None
    ) -> SpeechEvent:
        self.calls += 1
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        text = ""
        if len(audio) > sample_rate // 20:
            spectrum = np.abs(np.fft.rfft(audio.astype(np.float64)))
            peak_hz = float(np.argmax(spectrum[1:]) + 1) * sample_rate / len(audio)
            nearest = min(TONE_WORDS, key=lambda hz: abs(hz - peak_hz))
            if abs(nearest - peak_hz) < 50:
                text = TONE_WORDS[nearest]
        return SpeechEvent(SpeechEventType.FINAL_TRANSCRIPT, [SpeechData(text=text)])

    def stream(self, *, language: str | None = None) -> object:
        raise NotImplementedError("ToneSTT transcribes whole utterances")

    async def aclose(self) -> None:
        pass


@dataclass
class Reply:
    text: str = ""
    tool_calls: list[tuple[str, str]] = field(default_factory=list)  # (name, json args)
    error: APIError | None = None
    delay_s: float = 0.0


class FakeLLM:
    """Replies from a queue of ``Reply``s (then ``default``); records what it was asked."""

    label = "fake-llm"

    def __init__(self, replies: list[Reply] | None = None, *, default: str = "Okay.") -> None:
        self.replies: deque[Reply] = deque(replies or [])
        self.default = default
        self.requests: list[tuple[ChatContext, list[FunctionTool], str]] = []

    async def chat(
        self,
        *,
        chat_ctx: ChatContext,
        tools: list[FunctionTool] | None = None,
        tool_choice: str = "auto",
    ) -> AsyncIterator[ChatChunk]:
        self.requests.append((chat_ctx, list(tools or []), tool_choice))
        reply = self.replies.popleft() if self.replies else Reply(self.default)
        if reply.delay_s:
            await asyncio.sleep(reply.delay_s)
        if reply.error is not None:
            raise reply.error
        for word in reply.text.split(" "):
            if word:
                yield ChatChunk(delta=word + " ")
        if reply.tool_calls:
            calls = tuple(
                FunctionCall(call_id=f"call_{i}", name=name, arguments=args)
                for i, (name, args) in enumerate(reply.tool_calls)
            )
            yield ChatChunk(tool_calls=calls)

    async def aclose(self) -> None:
        pass


class ToneTTS:
    """``ms_per_char`` of a ``hz`` tone per character of text, in 20 ms frames."""

    label = "tone-tts"
    capabilities = TTSCapabilities(streaming=False)

    def __init__(
        self, *, hz: float = 400.0, ms_per_char: float = 40.0, sample_rate: int = 16000
    ) -> None:
        self.hz = hz
        self.ms_per_char = ms_per_char
        self.sample_rate = sample_rate
        self.texts: list[str] = []
        self.fail_next = 0

    async def synthesize(self, text: str) -> AsyncIterator[AudioFrame]:
        self.texts.append(text)
        if self.fail_next:
            self.fail_next -= 1
            raise APIError("synthesis failed", provider=self.label)
        duration_ms = max(20.0, self.ms_per_char * len(text))
        audio = sine(self.hz, duration_ms, self.sample_rate, amplitude_dbfs=-10.0)
        step = samples_per_frame(self.sample_rate)
        for start in range(0, len(audio), step):
            yield AudioFrame(audio[start : start + step], self.sample_rate)

    async def aclose(self) -> None:
        pass


# Phone menu (IVR) phrases for tests/integration/test_agent_dtmf_ivr.py: frequencies
# kept 50 Hz or more from the other words, the 1700 Hz "noise" and the DTMF tones.
TONE_WORDS.update(
    {
        1550: "For billing, press 2. For sales, press 3.",
        1800: "To speak to a person, press 1.",
        2000: "Hi, this is Alex, how can I help?",
    }
)
