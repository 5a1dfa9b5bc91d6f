"""Fallback adapters: switching, temporary and permanent disabling, recovery."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

import numpy as np
import pytest

from callfleet.agents.chat import ChatChunk, ChatContext
from callfleet.agents.errors import APIConnectionError, APIError
from callfleet.agents.fallback import FallbackLLM, FallbackSTT, FallbackTTS
from callfleet.agents.providers.base import (
    LLM,
    STT,
    TTS,
    RecognizeStream,
    SpeechData,
    SpeechEvent,
    SpeechEventType,
    STTCapabilities,
    ToolChoice,
    TTSCapabilities,
)
from callfleet.agents.tools import FunctionTool
from callfleet.media.frame import PCM16, AudioFrame

# -- test doubles of the provider protocols ---------------------------------------------


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class FlakyLLM:
    """Replies with its label's words; ``mode`` makes it fail on demand: "fail" before
    any output, "fail_mid" after the first chunk, "crash" with a non-API exception,
    "hang" never answers."""

    def __init__(self, label: str) -> None:
        self.label = label
        self.mode = "ok"
        self.calls = 0
        self.closed = 0

    async def chat(
        self,
        *,
        chat_ctx: ChatContext,
        tools: list[FunctionTool] | None = None,
        tool_choice: ToolChoice = "auto",
    ) -> AsyncIterator[ChatChunk]:
        self.calls += 1
        if self.mode == "fail":
            raise APIConnectionError(f"{self.label} is down")
        if self.mode == "crash":
            raise RuntimeError("bug")
        if self.mode == "hang":
            await asyncio.Event().wait()
        yield ChatChunk(delta=f"{self.label} ")
        if self.mode == "fail_mid":
            raise APIConnectionError(f"{self.label} dropped")
        yield ChatChunk(delta="says hi")

    async def aclose(self) -> None:
        self.closed += 1


class FlakyTTS:
    def __init__(self, label: str, sample_rate: int) -> None:
        self.label = label
        self.sample_rate = sample_rate
        self.capabilities = TTSCapabilities(streaming=False)
        self.mode = "ok"
        self.calls = 0

    async def synthesize(self, text: str) -> AsyncIterator[AudioFrame]:
        self.calls += 1
        if self.mode == "fail":
            raise APIError(f"{self.label} is down")
        for _ in range(3):
            yield AudioFrame.silence(self.sample_rate)
            if self.mode == "fail_mid":
                raise APIError(f"{self.label} dropped")

    async def aclose(self) -> None:
        pass


class FakeRecognizeStream:
    def __init__(self, label: str, fail: bool) -> None:
        self.label = label
        self.fail = fail
        self.frames = 0
        self.ended = False

    def push_frame(self, frame: AudioFrame) -> None:
        self.frames += 1

    def flush(self) -> None:
        pass

    def end_input(self) -> None:
        self.ended = True

    async def __aiter__(self) -> AsyncIterator[SpeechEvent]:
        yield SpeechEvent(SpeechEventType.START_OF_SPEECH)
        if self.fail:
            raise APIConnectionError(f"{self.label} stream dropped")
        yield SpeechEvent(
            SpeechEventType.FINAL_TRANSCRIPT, [SpeechData(f"{self.label} heard {self.frames}")]
        )

    async def aclose(self) -> None:
        pass


class FlakySTT:
    def __init__(self, label: str, *, streaming: bool, sample_rate: int = 16000) -> None:
        self.label = label
        self.capabilities = STTCapabilities(streaming=streaming)
        self.sample_rate = sample_rate
        self.mode = "ok"  # "fail": recognize and stream() raise; "fail_stream": events fail
        self.calls = 0

    async def recognize(
        self, audio: PCM16, sample_rate: int, *, language: str | None = None
    ) -> SpeechEvent:
        self.calls += 1
        if self.mode == "fail":
            raise APIError(f"{self.label} is down")
        text = f"{self.label}: {len(audio)} samples at {sample_rate} Hz ({language})"
        return SpeechEvent(SpeechEventType.FINAL_TRANSCRIPT, [SpeechData(text)])

    def stream(self, *, language: str | None = None) -> RecognizeStream:
        self.calls += 1
        if self.mode == "fail":
            raise APIError(f"{self.label} refused the stream")
        return FakeRecognizeStream(self.label, fail=self.mode == "fail_stream")

    async def aclose(self) -> None:
        pass


# -- helpers ---------------------------------------------------------------------------


class Changes(list[tuple[str, bool]]):
    def __call__(self, label: str, available: bool) -> None:
        self.append((label, available))


async def ask(llm: FallbackLLM) -> str:
    return "".join([c.delta async for c in llm.chat(chat_ctx=ChatContext())])


def make_llm(
    clock: FakeClock, changes: Changes | None = None
) -> tuple[FallbackLLM, FlakyLLM, FlakyLLM]:
    a, b = FlakyLLM("a"), FlakyLLM("b")
    llm = FallbackLLM([a, b], clock=clock, on_availability_changed=changes)
    return llm, a, b


# -- LLM -------------------------------------------------------------------------------


async def test_label_and_protocols() -> None:
    llm, _, _ = make_llm(FakeClock())
    assert llm.label == "fallback(a,b)"
    assert isinstance(llm, LLM)
    stt = FallbackSTT([FlakySTT("x", streaming=True)])
    tts = FallbackTTS([FlakyTTS("y", 22050)])
    assert isinstance(stt, STT) and isinstance(tts, TTS)
    assert (stt.label, tts.label) == ("fallback(x)", "fallback(y)")


async def test_uses_the_first_provider_while_it_works() -> None:
    llm, a, b = make_llm(FakeClock())
    assert await ask(llm) == "a says hi"
    assert await ask(llm) == "a says hi"
    assert (a.calls, b.calls) == (2, 0)


async def test_switches_on_error_before_output(caplog: pytest.LogCaptureFixture) -> None:
    changes = Changes()
    llm, a, b = make_llm(FakeClock(), changes)
    a.mode = "fail"
    with caplog.at_level(logging.WARNING, logger="callfleet.agents.fallback"):
        assert await ask(llm) == "b says hi"
    assert changes == [("a", False)]
    assert (a.calls, b.calls) == (1, 1)
    assert (
        "fallback(a,b): provider a failed before producing output (a is down); "
        "unavailable for 60.0 s" in caplog.messages
    )
    status = llm.status()
    assert [s.available for s in status] == [False, True]
    assert status[0].consecutive_failures == 1
    assert status[0].last_error == "a is down"
    assert status[0].disabled_until == 1060.0


async def test_any_exception_switches_but_cancellation_does_not_count() -> None:
    llm, a, _ = make_llm(FakeClock())
    a.mode = "crash"
    assert await ask(llm) == "b says hi"
    assert llm.status()[0].last_error == "bug"

    llm, a, b = make_llm(FakeClock())
    a.mode = "hang"
    task = asyncio.ensure_future(ask(llm))
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert llm.status()[0].consecutive_failures == 0
    assert b.calls == 0


async def test_no_switch_after_partial_output() -> None:
    llm, a, b = make_llm(FakeClock())
    a.mode = "fail_mid"
    received: list[str] = []
    with pytest.raises(APIConnectionError, match=r"^a dropped$"):
        async for chunk in llm.chat(chat_ctx=ChatContext()):
            received.append(chunk.delta)
    assert received == ["a "]
    assert b.calls == 0
    assert llm.status()[0].consecutive_failures == 1  # it still counts
    a.mode = "ok"
    assert await ask(llm) == "b says hi"  # a is disabled for a while


async def test_temporary_disable_and_recovery() -> None:
    clock, changes = FakeClock(), Changes()
    llm, a, b = make_llm(clock, changes)
    a.mode = "fail"
    assert await ask(llm) == "b says hi"
    a.mode = "ok"
    clock.advance(59.9)
    assert await ask(llm) == "b says hi"
    assert a.calls == 1  # skipped while disabled
    clock.advance(0.1)
    assert await ask(llm) == "a says hi"
    assert (a.calls, b.calls) == (2, 2)
    assert changes == [("a", False), ("a", True)]
    assert llm.status()[0].consecutive_failures == 0
    assert llm.status()[0].available


async def test_permanent_disable_after_three_consecutive_failures(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock, changes = FakeClock(), Changes()
    llm, a, b = make_llm(clock, changes)
    a.mode = "fail"
    with caplog.at_level(logging.ERROR, logger="callfleet.agents.fallback"):
        for _ in range(3):
            assert await ask(llm) == "b says hi"
            clock.advance(60)
    assert a.calls == 3
    assert (
        "fallback(a,b): provider a failed before producing output (a is down); "
        "3 failures in a row, disabled permanently" in caplog.messages
    )
    a.mode = "ok"
    clock.advance(10_000)
    assert await ask(llm) == "b says hi"
    assert (a.calls, b.calls) == (3, 4)
    assert llm.status()[0].permanently_disabled
    assert changes == [("a", False)]


async def test_success_resets_the_failure_count() -> None:
    clock = FakeClock()
    llm, a, _ = make_llm(clock)
    for mode in ("fail", "fail", "ok", "fail", "fail"):
        a.mode = mode
        await ask(llm)
        clock.advance(60)
    assert a.calls == 5
    assert llm.status()[0].consecutive_failures == 2
    assert not llm.status()[0].permanently_disabled


async def test_early_stop_after_output_counts_as_success() -> None:
    clock = FakeClock()
    llm, a, _ = make_llm(clock)
    a.mode = "fail"
    await ask(llm)
    clock.advance(60)
    a.mode = "ok"
    stream = llm.chat(chat_ctx=ChatContext())
    assert (await anext(stream)).delta == "a "
    await stream.aclose()  # type: ignore[attr-defined]
    assert llm.status()[0].consecutive_failures == 0


async def test_all_failed() -> None:
    clock = FakeClock()
    llm, a, b = make_llm(clock)
    a.mode = b.mode = "fail"
    with pytest.raises(APIError) as info:
        await ask(llm)
    assert str(info.value) == "all providers failed: a: a is down; b: b is down"
    assert info.value.retryable is False
    assert isinstance(info.value.__cause__, APIConnectionError)
    # while both are disabled, nothing is tried
    with pytest.raises(APIError, match=r"^all providers failed: a: a is down; b: b is down$"):
        await ask(llm)
    assert (a.calls, b.calls) == (1, 1)
    for _ in range(2):
        clock.advance(60)
        with pytest.raises(APIError):
            await ask(llm)
    with pytest.raises(APIError) as info:
        await ask(llm)
    assert str(info.value) == (
        "all providers failed: a: a is down (disabled permanently); "
        "b: b is down (disabled permanently)"
    )


async def test_options_are_validated_and_permanent_disable_can_be_off() -> None:
    with pytest.raises(ValueError, match=r"^FallbackLLM needs at least one provider$"):
        FallbackLLM([])
    with pytest.raises(ValueError, match=r"^temporary_disable_s must be >= 0, got -1$"):
        FallbackLLM([FlakyLLM("a")], temporary_disable_s=-1)
    with pytest.raises(
        ValueError, match=r"^permanent_disable_after_attempts must be >= 1 or None, got 0$"
    ):
        FallbackLLM([FlakyLLM("a")], permanent_disable_after_attempts=0)
    clock = FakeClock()
    a, b = FlakyLLM("a"), FlakyLLM("b")
    llm = FallbackLLM(
        [a, b], clock=clock, temporary_disable_s=5, permanent_disable_after_attempts=None
    )
    a.mode = "fail"
    for _ in range(5):
        await ask(llm)
        clock.advance(5)
    assert a.calls == 5
    assert llm.status()[0].consecutive_failures == 5


async def test_a_failing_callback_does_not_break_the_request() -> None:
    def boom(label: str, available: bool) -> None:
        raise RuntimeError("callback bug")

    a, b = FlakyLLM("a"), FlakyLLM("b")
    a.mode = "fail"
    llm = FallbackLLM([a, b], on_availability_changed=boom)
    assert await ask(llm) == "b says hi"


async def test_aclose_closes_every_provider_once() -> None:
    llm, a, b = make_llm(FakeClock())
    await llm.aclose()
    await llm.aclose()
    assert (a.closed, b.closed) == (1, 1)


# -- TTS -------------------------------------------------------------------------------


async def test_tts_falls_back_before_the_first_frame_at_the_providers_rate() -> None:
    clock, changes = FakeClock(), Changes()
    a, b = FlakyTTS("a", 22050), FlakyTTS("b", 16000)
    tts = FallbackTTS([a, b], clock=clock, on_availability_changed=changes)
    assert tts.sample_rate == 22050
    assert tts.capabilities == TTSCapabilities(streaming=False)
    a.mode = "fail"
    frames = [f async for f in tts.synthesize("hello")]
    assert [f.sample_rate for f in frames] == [16000] * 3
    assert changes == [("a", False)]
    clock.advance(60)
    a.mode = "ok"
    frames = [f async for f in tts.synthesize("hello")]
    assert [f.sample_rate for f in frames] == [22050] * 3
    assert changes == [("a", False), ("a", True)]


async def test_tts_error_after_a_frame_is_raised() -> None:
    a, b = FlakyTTS("a", 22050), FlakyTTS("b", 16000)
    tts = FallbackTTS([a, b], clock=FakeClock())
    a.mode = "fail_mid"
    frames: list[AudioFrame] = []
    with pytest.raises(APIError, match=r"^a dropped$"):
        async for frame in tts.synthesize("hello"):
            frames.append(frame)
    assert len(frames) == 1
    assert b.calls == 0
    b.mode = "fail"
    with pytest.raises(APIError, match=r"^all providers failed: a: a dropped; b: b is down$"):
        [f async for f in tts.synthesize("hello")]


# -- STT -------------------------------------------------------------------------------


async def test_stt_recognize_falls_back() -> None:
    clock = FakeClock()
    a, b = FlakySTT("a", streaming=False, sample_rate=8000), FlakySTT("b", streaming=True)
    stt = FallbackSTT([a, b], clock=clock)
    assert stt.sample_rate == 8000
    assert stt.capabilities == STTCapabilities(streaming=False)
    audio = np.zeros(160, np.int16)
    a.mode = "fail"
    event = await stt.recognize(audio, 8000, language="en")
    assert event.text == "b: 160 samples at 8000 Hz (en)"
    assert (await stt.recognize(audio, 8000)).text == "b: 160 samples at 8000 Hz (None)"
    assert a.calls == 1
    b.mode = "fail"
    with pytest.raises(APIError, match=r"^all providers failed: a: a is down; b: b is down$"):
        await stt.recognize(audio, 8000)


async def test_stt_stream_uses_the_first_streaming_provider_that_opens() -> None:
    clock, changes = FakeClock(), Changes()
    a = FlakySTT("a", streaming=False)
    b, c = FlakySTT("b", streaming=True), FlakySTT("c", streaming=True)
    stt = FallbackSTT([a, b, c], clock=clock, on_availability_changed=changes)
    b.mode = "fail"
    stream = stt.stream(language="en")
    stream.push_frame(AudioFrame.silence(16000))
    stream.end_input()
    events = [e async for e in stream]
    await stream.aclose()
    assert [e.text for e in events] == ["", "c heard 1"]
    assert a.calls == 0
    assert changes == [("b", False)]
    c.mode = "fail"
    with pytest.raises(
        APIError, match=r"^all providers failed: b: b refused the stream; c: c refused the stream$"
    ):
        stt.stream()


async def test_stt_stream_error_is_recorded_and_raised() -> None:
    clock, changes = FakeClock(), Changes()
    b, c = FlakySTT("b", streaming=True), FlakySTT("c", streaming=True)
    stt = FallbackSTT([b, c], clock=clock, on_availability_changed=changes)
    b.mode = "fail_stream"
    stream = stt.stream()
    with pytest.raises(APIConnectionError, match=r"^b stream dropped$"):
        [e async for e in stream]
    assert changes == [("b", False)]
    assert stt.status()[0].consecutive_failures == 1
    assert c.calls == 0
    b.mode = "ok"
    assert [e.text async for e in stt.stream()] == ["", "c heard 0"]  # b is disabled a while
    clock.advance(60)
    assert [e.text async for e in stt.stream()] == ["", "b heard 0"]
    assert changes == [("b", False), ("b", True)]


async def test_stt_stream_without_a_streaming_provider() -> None:
    stt = FallbackSTT([FlakySTT("a", streaming=False)])
    with pytest.raises(APIError, match=r"^no provider of fallback\(a\) streams$"):
        stt.stream()
