"""OpenAI-compatible LLM, STT and TTS against a local server speaking OpenAI's wire format."""

from __future__ import annotations

import asyncio
import io
import json
import wave
from collections.abc import AsyncIterator

import httpx
import numpy as np
import pytest
import pytest_asyncio

from callfleet.agents.chat import (
    ChatChunk,
    ChatContext,
    ChatMessage,
    FunctionCall,
    FunctionCallOutput,
)
from callfleet.agents.errors import (
    APIConnectionError,
    APIError,
    APIStatusError,
    APITimeoutError,
)
from callfleet.agents.providers.base import LLM, STT, TTS, SpeechEventType, ToolChoice
from callfleet.agents.providers.openai import OpenAILLM, OpenAISTT, OpenAITTS
from callfleet.agents.tools import FunctionTool, as_tool, function_tool
from callfleet.media.frame import AudioFrame
from callfleet.media.resample import resample
from callfleet.media.tones import sine
from tests.fakes.openai_server import (
    ChatReply,
    ErrorReply,
    FakeOpenAIServer,
    SpeechReply,
    ToolCallScript,
    TranscriptionReply,
)
from tests.peers.ports import free_port

KEY = "sk-test-0123456789"


@function_tool
async def book_callback(date: str, time: str, note: str = "") -> str:
    """Book a callback with a human agent.

    Args:
        date: the day, as YYYY-MM-DD
        time: the time of day, as HH:MM
        note: what the caller wants
    """
    return "booked"


@function_tool
async def end_call() -> None:
    """Hang up."""


TOOLS: list[FunctionTool] = [as_tool(book_callback), as_tool(end_call)]


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def running_server() -> AsyncIterator[FakeOpenAIServer]:
    async with FakeOpenAIServer() as server:
        yield server


@pytest.fixture
def server(running_server: FakeOpenAIServer) -> FakeOpenAIServer:
    running_server.reset()
    return running_server


@pytest_asyncio.fixture(loop_scope="session")
async def llm(server: FakeOpenAIServer) -> AsyncIterator[OpenAILLM]:
    provider = OpenAILLM("gpt-test", base_url=server.base_url, api_key=KEY, timeout_s=5.0)
    yield provider
    await provider.aclose()


def user_says(text: str) -> ChatContext:
    ctx = ChatContext()
    ctx.add_message(role="system", content="You are a polite receptionist.")
    ctx.add_message(role="user", content=text)
    return ctx


async def collect(
    llm: LLM,
    ctx: ChatContext,
    tools: list[FunctionTool] | None = None,
    tool_choice: ToolChoice = "auto",
) -> list[ChatChunk]:
    return [chunk async for chunk in llm.chat(chat_ctx=ctx, tools=tools, tool_choice=tool_choice)]


# -- LLM: streaming --------------------------------------------------------------------


async def test_providers_satisfy_the_protocols(server: FakeOpenAIServer) -> None:
    llm = OpenAILLM(base_url=server.base_url, api_key="")
    stt = OpenAISTT(base_url=server.base_url, api_key="")
    tts = OpenAITTS(base_url=server.base_url, api_key="")
    assert isinstance(llm, LLM) and isinstance(stt, STT) and isinstance(tts, TTS)
    assert (llm.label, stt.label, tts.label) == (
        "openai:gpt-4o-mini",
        "openai:gpt-4o-mini-transcribe",
        "openai:gpt-4o-mini-tts",
    )
    assert not stt.capabilities.streaming and stt.sample_rate == 16000
    assert tts.capabilities.streaming and tts.sample_rate == 24000
    for provider in (llm, stt, tts):
        await provider.aclose()
        await provider.aclose()  # idempotent


async def test_text_streams_as_several_chunks_then_usage(
    server: FakeOpenAIServer, llm: OpenAILLM
) -> None:
    server.script_chat(ChatReply(text=["Good ", "morning", ", how can I help?"]))
    chunks = await collect(llm, user_says("hi"))
    assert [c.delta for c in chunks if c.delta] == ["Good ", "morning", ", how can I help?"]
    assert all(not c.tool_calls for c in chunks)
    assert (chunks[-1].prompt_tokens, chunks[-1].completion_tokens) == (17, 9)


async def test_text_reaches_the_caller_before_the_stream_ends(
    server: FakeOpenAIServer, llm: OpenAILLM
) -> None:
    # The server holds the rest of the reply until the first words were received: a
    # provider that buffered the whole body would never see them.
    reply = ChatReply(text=["Hold ", "on, ", "please."], pause_before_chunk=3, pause_s=20.0)
    server.script_chat(reply)
    stream = llm.chat(chat_ctx=user_says("hi"))
    first = await asyncio.wait_for(anext(stream), 5.0)
    second = await asyncio.wait_for(anext(stream), 5.0)
    assert (first.delta, second.delta) == ("Hold ", "on, ")
    server.resume(reply)
    rest = [chunk async for chunk in stream]
    assert [c.delta for c in rest if c.delta] == ["please."]


async def test_tool_call_arguments_split_over_chunks_become_one_call(
    server: FakeOpenAIServer, llm: OpenAILLM
) -> None:
    arguments = '{"date": "2025-03-14", "time": "15:30", "note": "caf\\u00e9 \\"terrace\\""}'
    call = ToolCallScript("book_callback", arguments, call_id="call_abc123", pieces=7)
    server.script_chat(ChatReply(text=["One moment."], tool_calls=[call]))
    chunks = await collect(llm, user_says("call me back tomorrow"), tools=TOOLS)

    with_calls = [c for c in chunks if c.tool_calls]
    assert len(with_calls) == 1
    (fnc,) = with_calls[0].tool_calls
    assert (fnc.call_id, fnc.name, fnc.arguments) == ("call_abc123", "book_callback", arguments)
    assert json.loads(fnc.arguments)["note"] == 'café "terrace"'
    # Text first, then the calls, then usage.
    assert chunks.index(with_calls[0]) > [c.delta for c in chunks].index("One moment.")
    assert chunks[-1].prompt_tokens == 17


async def test_parallel_tool_calls_come_in_one_chunk_in_order(
    server: FakeOpenAIServer, llm: OpenAILLM
) -> None:
    calls = [
        ToolCallScript("book_callback", '{"date": "2025-03-14", "time": "09:00"}', "call_1", 4),
        ToolCallScript("end_call", "{}", "call_2", 1),
    ]
    server.script_chat(ChatReply(tool_calls=calls))
    chunks = await collect(llm, user_says("book it and hang up"), tools=TOOLS)
    assert [c.delta for c in chunks if c.delta] == []
    (with_calls,) = [c for c in chunks if c.tool_calls]
    assert [(f.call_id, f.name, f.arguments) for f in with_calls.tool_calls] == [
        ("call_1", "book_callback", '{"date": "2025-03-14", "time": "09:00"}'),
        ("call_2", "end_call", "{}"),
    ]


# -- LLM: the request ------------------------------------------------------------------


async def test_request_body_translates_the_conversation(server: FakeOpenAIServer) -> None:
    llm = OpenAILLM(
        "gpt-test",
        base_url=server.base_url,
        api_key=KEY,
        temperature=0.3,
        max_completion_tokens=200,
        extra_headers={"OpenAI-Organization": "org-test"},
    )
    ctx = ChatContext(
        [
            ChatMessage(role="system", content="Be brief."),
            ChatMessage(role="developer", content="Never promise refunds."),
            ChatMessage(role="user", content="Book a callback and hang up."),
            ChatMessage(role="assistant", content="Sure."),
            FunctionCall(call_id="c1", name="book_callback", arguments='{"date": "x"}'),
            FunctionCall(call_id="c2", name="end_call", arguments="{}"),
            FunctionCallOutput(call_id="c1", name="book_callback", output="booked"),
            FunctionCallOutput(call_id="c2", name="end_call", output="bad", is_error=True),
            FunctionCall(call_id="c3", name="end_call", arguments=""),
            FunctionCallOutput(call_id="c3", name="end_call", output="ok"),
            ChatMessage(role="user", content="Thanks", interrupted=True),
        ]
    )
    await collect(llm, ctx, tools=TOOLS, tool_choice="book_callback")
    await llm.aclose()

    (request,) = server.requests_to("/v1/chat/completions")
    assert request.headers["authorization"] == f"Bearer {KEY}"
    assert request.headers["openai-organization"] == "org-test"
    assert request.headers["content-type"] == "application/json"
    body = request.json

    def tool_call(call_id: str, name: str, arguments: str) -> dict[str, object]:
        function = {"name": name, "arguments": arguments}
        return {"id": call_id, "type": "function", "function": function}

    assert body == {
        "model": "gpt-test",
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "developer", "content": "Never promise refunds."},
            {"role": "user", "content": "Book a callback and hang up."},
            {
                "role": "assistant",
                "content": "Sure.",
                "tool_calls": [
                    tool_call("c1", "book_callback", '{"date": "x"}'),
                    tool_call("c2", "end_call", "{}"),
                ],
            },
            {"role": "tool", "tool_call_id": "c1", "content": "booked"},
            {"role": "tool", "tool_call_id": "c2", "content": "bad"},
            {"role": "assistant", "tool_calls": [tool_call("c3", "end_call", "")]},
            {"role": "tool", "tool_call_id": "c3", "content": "ok"},
            {"role": "user", "content": "Thanks"},
        ],
        "stream": True,
        "stream_options": {"include_usage": True},
        "tools": [tool.schema() for tool in TOOLS],
        "tool_choice": {"type": "function", "function": {"name": "book_callback"}},
        "temperature": 0.3,
        "max_completion_tokens": 200,
    }
    assert body["tools"][0]["function"]["parameters"]["required"] == ["date", "time"]


async def test_tool_choice_modes_and_no_tools(server: FakeOpenAIServer, llm: OpenAILLM) -> None:
    await collect(llm, user_says("a"), tools=TOOLS, tool_choice="required")
    await collect(llm, user_says("b"))
    first, second = (r.json for r in server.requests_to("/v1/chat/completions"))
    assert first["tool_choice"] == "required"
    assert "tools" not in second and "tool_choice" not in second
    assert "temperature" not in second and "max_completion_tokens" not in second


async def test_unknown_tool_choice_is_refused_before_any_request(
    server: FakeOpenAIServer, llm: OpenAILLM
) -> None:
    with pytest.raises(ValueError, match=r"tool_choice 'transfer' is neither .*book_callback"):
        await collect(llm, user_says("a"), tools=TOOLS, tool_choice="transfer")
    with pytest.raises(ValueError, match=r"tool_choice 'end_call' names a tool, but no tools"):
        await collect(llm, user_says("a"), tool_choice="end_call")
    assert server.requests_to("/v1/chat/completions") == []


async def test_no_authorization_header_without_a_key(
    server: FakeOpenAIServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    local = OpenAILLM("llama3", base_url=server.base_url)
    await collect(local, user_says("hi"))
    await local.aclose()
    monkeypatch.setenv("OPENAI_API_KEY", "sk-from-env")
    from_env = OpenAILLM("llama3", base_url=server.base_url)
    await collect(from_env, user_says("hi"))
    await from_env.aclose()
    first, second = server.requests_to("/v1/chat/completions")
    assert "authorization" not in first.headers
    assert second.headers["authorization"] == "Bearer sk-from-env"


def test_openai_itself_needs_a_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with pytest.raises(ValueError, match=r"api_key is required for https://api\.openai\.com/v1"):
        OpenAILLM()
    with pytest.raises(ValueError, match=r"temperature must be between 0 and 2, got 3\.0"):
        OpenAILLM(api_key="k", temperature=3.0)
    with pytest.raises(ValueError, match=r"speed must be between 0\.25 and 4\.0, got 5\.0"):
        OpenAITTS(api_key="k", speed=5.0)
    with pytest.raises(ValueError, match=r"timeout_s must be positive, got 0"):
        OpenAISTT(api_key="k", timeout_s=0)


# -- LLM: errors -----------------------------------------------------------------------


async def test_wrong_key_is_a_401_that_is_not_retryable(
    server: FakeOpenAIServer, llm: OpenAILLM
) -> None:
    server.api_key = "sk-the-right-one"
    with pytest.raises(APIStatusError) as info:
        await collect(llm, user_says("hi"))
    error = info.value
    assert error.status_code == 401 and not error.retryable
    assert error.provider == "openai:gpt-test"
    assert str(error).startswith("openai:gpt-test: Incorrect API key provided: sk-***89.")
    assert str(error).endswith("(status 401)")
    assert json.loads(error.body)["error"]["code"] == "invalid_api_key"


@pytest.mark.parametrize(
    ("status", "kind"),
    [(500, "server_error"), (503, "server_error"), (429, "rate_limit_exceeded"), (408, "x")],
)
async def test_server_errors_and_rate_limits_are_retryable(
    server: FakeOpenAIServer, llm: OpenAILLM, status: int, kind: str
) -> None:
    message = f"Scripted failure {status}"
    server.script_chat(ErrorReply(status, message, type=kind, code=kind))
    with pytest.raises(APIStatusError) as info:
        await collect(llm, user_says("hi"))
    assert info.value.status_code == status and info.value.retryable
    assert f"{message} (status {status})" in str(info.value)


async def test_bad_request_is_not_retryable(server: FakeOpenAIServer, llm: OpenAILLM) -> None:
    server.script_chat(ErrorReply(400, "Invalid value for 'temperature'.", param="temperature"))
    with pytest.raises(APIStatusError, match=r"Invalid value for 'temperature'\. \(status 400\)"):
        await collect(llm, user_says("hi"))


async def test_closed_port_is_a_connection_error() -> None:
    url = f"http://127.0.0.1:{free_port('tcp')}/v1"
    llm = OpenAILLM(base_url=url, api_key="", timeout_s=5.0)
    stt = OpenAISTT(base_url=url, api_key="", timeout_s=5.0)
    tts = OpenAITTS(base_url=url, api_key="", timeout_s=5.0)
    calls = [
        collect(llm, user_says("hi")),
        stt.recognize(sine(300, 200, 16000), 16000),
        anext(tts.synthesize("hello")),
    ]
    for call in calls:
        with pytest.raises(APIConnectionError, match=r"cannot reach http://127\.0\.0\.1") as info:
            await call
        assert not isinstance(info.value, APITimeoutError)
        assert info.value.retryable
        assert isinstance(info.value.__cause__, httpx.ConnectError)
    for provider in (llm, stt, tts):
        await provider.aclose()


async def test_no_first_chunk_within_the_timeout(server: FakeOpenAIServer) -> None:
    llm = OpenAILLM("gpt-test", base_url=server.base_url, api_key="", timeout_s=0.3)
    server.script_chat(ChatReply(text=["late"], first_chunk_delay_s=3.0))
    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(APITimeoutError, match=r"0\.3 s") as info:
        await collect(llm, user_says("hi"))
    assert loop.time() - started < 2.5
    assert info.value.retryable and info.value.provider == "openai:gpt-test"
    await llm.aclose()


async def test_timeout_bounds_gaps_not_the_whole_stream(server: FakeOpenAIServer) -> None:
    # Six gaps of 0.15 s: each well inside the 0.4 s timeout, together well beyond it.
    llm = OpenAILLM("gpt-test", base_url=server.base_url, api_key="", timeout_s=0.4)
    tts = OpenAITTS(base_url=server.base_url, api_key="", timeout_s=0.4)
    pieces = ["a", "b", "c", "d", "e"]
    server.script_chat(ChatReply(text=pieces, chunk_interval_s=0.15))
    server.script_speech(SpeechReply(duration_ms=100.0, chunk_bytes=800, chunk_interval_s=0.15))
    chunks = await collect(llm, user_says("hi"))
    frames = [frame async for frame in tts.synthesize("hello")]
    assert [c.delta for c in chunks if c.delta] == pieces
    assert sum(len(f.samples) for f in frames) == 2400
    await llm.aclose()
    await tts.aclose()


async def test_a_stream_that_stalls_times_out(server: FakeOpenAIServer) -> None:
    llm = OpenAILLM("gpt-test", base_url=server.base_url, api_key="", timeout_s=0.3)
    server.script_chat(ChatReply(text=["Let me ", "check"], pause_before_chunk=2, pause_s=5.0))
    received: list[str] = []
    with pytest.raises(APITimeoutError):
        async for chunk in llm.chat(chat_ctx=user_says("hi")):
            received.append(chunk.delta)
    assert received == ["Let me "]
    await llm.aclose()


async def test_malformed_chunk_is_an_api_error_naming_it(
    server: FakeOpenAIServer, llm: OpenAILLM
) -> None:
    server.script_chat(ChatReply(text=["Fine", "?"], malformed_before_chunk=2))
    received: list[str] = []
    with pytest.raises(APIError) as info:
        async for chunk in llm.chat(chat_ctx=user_says("hi")):
            received.append(chunk.delta)
    assert received == ["Fine"]
    assert type(info.value) is APIError
    message = str(info.value)
    assert message.startswith("openai:gpt-test: malformed chunk in the chat stream (")
    assert message.endswith(
        """: '{"id": "chatcmpl-fake", "object": "chat.completion.chunk", "choi'"""
    )
    assert isinstance(info.value.__cause__, json.JSONDecodeError)


async def test_chunk_of_unexpected_shape_is_an_api_error(
    server: FakeOpenAIServer, llm: OpenAILLM
) -> None:
    server.script_chat(
        ChatReply(text=["x"], malformed_before_chunk=1, malformed_data='{"choices": [7]}')
    )
    with pytest.raises(APIError) as info:
        await collect(llm, user_says("hi"))
    assert type(info.value) is APIError
    assert str(info.value) == (
        "openai:gpt-test: unexpected chunk in the chat stream "
        """('int' object has no attribute 'get'): '{"choices": [7]}'"""
    )


async def test_stream_cut_short_is_an_api_error(server: FakeOpenAIServer, llm: OpenAILLM) -> None:
    server.script_chat(ChatReply(text=["Your balance is"], end_before_chunk=2))
    received: list[str] = []
    with pytest.raises(APIError) as info:
        async for chunk in llm.chat(chat_ctx=user_says("balance?")):
            received.append(chunk.delta)
    assert received == ["Your balance is"]
    assert str(info.value) == (
        "openai:gpt-test: chat stream ended without a finish_reason or [DONE] after 2 chunk(s)"
    )


async def test_json_instead_of_a_stream_is_an_api_error() -> None:
    # Some compatible servers answer a failed stream with status 200 and a JSON error.
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"error": {"message": "model 'llama9' not found"}})

    client = httpx.AsyncClient(transport=httpx.MockTransport(handler))
    llm = OpenAILLM("llama9", base_url="http://llm.invalid/v1", api_key="", client=client)
    tts = OpenAITTS("kokoro", base_url="http://tts.invalid/v1", api_key="", client=client)
    with pytest.raises(
        APIError,
        match=r"^openai:llama9: expected a text/event-stream, got JSON: model 'llama9' not found$",
    ):
        await collect(llm, user_says("hi"))
    with pytest.raises(
        APIError, match=r"^openai:kokoro: expected audio/pcm, got JSON: model 'llama9'"
    ):
        await anext(tts.synthesize("hi"))
    await client.aclose()


async def test_error_object_in_the_stream_is_an_api_error(
    server: FakeOpenAIServer, llm: OpenAILLM
) -> None:
    server.script_chat(ChatReply(text=["Par"], stream_error="The server had an error"))
    with pytest.raises(APIError) as info:
        await collect(llm, user_says("hi"))
    assert type(info.value) is APIError
    assert str(info.value) == "openai:gpt-test: error in the chat stream: The server had an error"


# -- STT -------------------------------------------------------------------------------


async def test_stt_sends_a_16khz_wav_and_returns_the_text(server: FakeOpenAIServer) -> None:
    stt = OpenAISTT("whisper-test", base_url=server.base_url, api_key=KEY, language="en-US")
    server.script_transcription(TranscriptionReply(" I'd like to book a table. "))
    audio = sine(440, 500, 8000)
    event = await stt.recognize(audio, 8000)
    await stt.aclose()

    assert event.type is SpeechEventType.FINAL_TRANSCRIPT
    assert event.text == "I'd like to book a table."
    assert event.alternatives[0].language == "en"
    assert event.alternatives[0].end_s == pytest.approx(0.5)

    (request,) = server.requests_to("/v1/audio/transcriptions")
    assert request.headers["authorization"] == f"Bearer {KEY}"
    assert request.headers["content-type"].startswith("multipart/form-data; boundary=")
    assert request.form == {"model": "whisper-test", "response_format": "json", "language": "en"}
    upload = request.files["file"]
    assert (upload.filename, upload.content_type) == ("audio.wav", "audio/wav")
    with wave.open(io.BytesIO(upload.data), "rb") as wav:
        params = (wav.getnchannels(), wav.getsampwidth(), wav.getframerate(), wav.getnframes())
        sent = np.frombuffer(wav.readframes(wav.getnframes()), "<i2")
    assert params == (1, 2, 16000, 8000)
    np.testing.assert_array_equal(sent, resample(audio, 8000, 16000))


async def test_stt_language_per_call_and_auto_detect(server: FakeOpenAIServer) -> None:
    stt = OpenAISTT(base_url=server.base_url, api_key="")
    await stt.recognize(sine(300, 200, 16000), 16000, language="de")
    await stt.recognize(sine(300, 200, 16000), 16000, language="")
    await stt.aclose()
    first, second = server.requests_to("/v1/audio/transcriptions")
    assert first.form["language"] == "de"
    assert "language" not in second.form


async def test_stt_errors_and_no_streaming(server: FakeOpenAIServer) -> None:
    stt = OpenAISTT(base_url=server.base_url, api_key="")
    server.script_transcription(ErrorReply(400, "Audio file is too short.", param="file"))
    with pytest.raises(APIStatusError, match=r"Audio file is too short\. \(status 400\)") as info:
        await stt.recognize(sine(300, 200, 16000), 16000)
    assert not info.value.retryable
    server.script_transcription(TranscriptionReply("slow", delay_s=3.0))
    fast = OpenAISTT(base_url=server.base_url, api_key="", timeout_s=0.3)
    with pytest.raises(APITimeoutError):
        await fast.recognize(sine(300, 200, 16000), 16000)
    with pytest.raises(NotImplementedError, match="use recognize"):
        stt.stream()
    await stt.aclose()
    await fast.aclose()


# -- TTS -------------------------------------------------------------------------------


async def test_tts_streams_the_pcm_as_24khz_frames(server: FakeOpenAIServer) -> None:
    tts = OpenAITTS(
        "tts-test",
        voice="coral",
        base_url=server.base_url,
        api_key=KEY,
        instructions="Speak warmly.",
        speed=1.25,
    )
    reply = SpeechReply(freq_hz=523.0, duration_ms=250.0, chunk_bytes=1001)
    server.script_speech(reply)
    frames = [frame async for frame in tts.synthesize("Hello there.")]
    await tts.aclose()

    expected = np.frombuffer(reply.pcm(), "<i2")
    assert len(frames) > 1
    assert all(f.sample_rate == 24000 and f.samples.dtype == np.int16 for f in frames)
    received = np.concatenate([f.samples for f in frames])
    assert 2 * len(received) == len(reply.pcm()) == 12000
    np.testing.assert_array_equal(received, expected)
    starts = np.cumsum([0] + [len(f.samples) for f in frames[:-1]]) / 24000
    assert [f.timestamp_s for f in frames] == pytest.approx(list(starts))

    (request,) = server.requests_to("/v1/audio/speech")
    assert request.headers["authorization"] == f"Bearer {KEY}"
    assert request.json == {
        "model": "tts-test",
        "input": "Hello there.",
        "voice": "coral",
        "response_format": "pcm",
        "instructions": "Speak warmly.",
        "speed": 1.25,
    }


async def test_tts_joins_samples_split_across_body_pieces() -> None:
    # A transport that hands the body over in exactly these pieces, so that samples are
    # split at known places (over TCP the reads may merge pieces).
    pcm = sine(300, 10, 24000).astype("<i2").tobytes()  # 240 samples, 480 bytes
    sizes = [1, 3, 1, 2, 101, 1, 371]  # sums to 480
    pieces = [pcm[sum(sizes[:i]) : sum(sizes[: i + 1])] for i in range(len(sizes))]
    assert b"".join(pieces) == pcm

    class Body(httpx.AsyncByteStream):
        async def __aiter__(self) -> AsyncIterator[bytes]:
            for piece in pieces:
                yield piece

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, stream=Body())

    client = httpx.AsyncClient(transport=httpx.MockTransport(handler))
    tts = OpenAITTS(base_url="http://tts.invalid/v1", api_key="", client=client)
    frames: list[AudioFrame] = [frame async for frame in tts.synthesize("hi")]
    await tts.aclose()
    assert not client.is_closed  # a client passed in belongs to the caller
    await client.aclose()

    # 1 byte: nothing yet; +3 -> 2 samples; +1 -> 0; +2 -> 1 (with the carried byte); ...
    assert [len(f.samples) for f in frames] == [2, 1, 51, 186]
    np.testing.assert_array_equal(
        np.concatenate([f.samples for f in frames]), np.frombuffer(pcm, "<i2")
    )


async def test_tts_errors(server: FakeOpenAIServer) -> None:
    tts = OpenAITTS(base_url=server.base_url, api_key="", timeout_s=0.3)
    server.script_speech(ErrorReply(429, "Rate limit reached", type="requests"))
    with pytest.raises(APIStatusError, match=r"Rate limit reached \(status 429\)") as info:
        await anext(tts.synthesize("hello"))
    assert info.value.retryable
    server.script_speech(SpeechReply(first_chunk_delay_s=3.0))
    with pytest.raises(APITimeoutError):
        await anext(tts.synthesize("hello"))
    assert [f async for f in tts.synthesize("  ")] == []  # nothing to say: no request
    assert len(server.requests_to("/v1/audio/speech")) == 2
    await tts.aclose()
