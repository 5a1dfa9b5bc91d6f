"""DeepgramSTT against the local fake Deepgram (tests/fakes/deepgram_server.py)."""

from __future__ import annotations

import asyncio
import io
import time
import wave
from collections.abc import AsyncIterator

import numpy as np
import pytest
import pytest_asyncio

from callfleet.agents.errors import (
    APIConnectionError,
    APIError,
    APIStatusError,
    APITimeoutError,
)
from callfleet.agents.providers.base import STT, RecognizeStream, SpeechEvent, SpeechEventType
from callfleet.agents.providers.deepgram import (
    DeepgramRecognizeStream,
    DeepgramSTT,
    EventMapper,
    Results,
    ServerError,
    SpeechStarted,
    UtteranceEnd,
    batch_url_for,
    parse_server_message,
)
from callfleet.media.frame import AudioFrame
from callfleet.media.resample import resample
from tests.fakes.deepgram_server import (
    DROP,
    Cue,
    FakeDeepgramServer,
    results,
    speech_started,
    utterance_end,
)

T = SpeechEventType
#: Generous bound for one event from the loopback fake (s).
WAIT_S = 5.0


@pytest_asyncio.fixture(loop_scope="session")
async def dg() -> AsyncIterator[FakeDeepgramServer]:
    async with FakeDeepgramServer() as server:
        yield server


def make_stt(dg: FakeDeepgramServer, **kwargs: object) -> DeepgramSTT:
    options: dict[str, object] = {
        "api_key": dg.api_key,
        "base_url": dg.url,
        "batch_url": dg.rest_url,
        "connect_timeout_s": 2.0,
        "close_timeout_s": 2.0,
    }
    options.update(kwargs)
    return DeepgramSTT(**options)  # type: ignore[arg-type]


def noise(n: int, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).integers(-8000, 8000, n).astype(np.int16)


def frames(samples: np.ndarray, sample_rate: int, frame_ms: int = 20) -> list[AudioFrame]:
    step = sample_rate * frame_ms // 1000
    return [
        AudioFrame(samples[i : i + step], sample_rate, i / sample_rate)
        for i in range(0, len(samples), step)
    ]


async def collect(stream: DeepgramRecognizeStream) -> list[SpeechEvent]:
    out: list[SpeechEvent] = []
    async with asyncio.timeout(WAIT_S):
        async for event in stream:
            out.append(event)
    return out


async def error_of(stream: DeepgramRecognizeStream) -> BaseException:
    with pytest.raises(APIError) as info:
        await collect(stream)
    return info.value


# -- wire format -----------------------------------------------------------------------


def test_parse_results_message() -> None:
    text = (
        '{"type":"Results","start":1.5,"duration":0.5,"is_final":true,"speech_final":false,'
        '"channel":{"alternatives":[{"transcript":"hi there","confidence":0.9,"words":['
        '{"word":"hi","start":1.6,"end":1.7},{"word":"there","start":1.75,"end":1.9}]}]}}'
    )
    msg = parse_server_message(text)
    assert msg == Results(
        is_final=True,
        speech_final=False,
        start_s=1.5,
        duration_s=0.5,
        transcript="hi there",
        confidence=0.9,
        words_start_s=1.6,
        words_end_s=1.9,
    )
    data = msg.speech_data("en-US")
    assert (data.text, data.language, data.start_s, data.end_s) == ("hi there", "en-US", 1.6, 1.9)


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ('{"type":"Results"', 'Deepgram sent a message that is not JSON: \'{"type":"Results"\''),
        ("[1, 2]", "Deepgram sent a message without a type: '[1, 2]'"),
        ('{"type":"Results","channel":{}}', "Deepgram Results message has no channel.alternatives"),
        (
            '{"type":"Results","channel":{"alternatives":[{}]}}',
            "Deepgram Results message has no alternatives[0].transcript",
        ),
    ],
)
def test_parse_rejects_bad_messages(text: str, error: str) -> None:
    with pytest.raises(ValueError) as info:
        parse_server_message(text)
    assert str(info.value) == error


def test_parse_ignores_unknown_types() -> None:
    assert parse_server_message('{"type":"SomethingNew"}') is None


def test_parse_error_message() -> None:
    msg = parse_server_message(
        '{"type":"Error","variant":"DATA-0000","description":"bad audio","message":"x"}'
    )
    assert msg == ServerError("DATA-0000: bad audio: x")


def test_capabilities_follow_interim_results() -> None:
    assert not DeepgramSTT(api_key="k", interim_results=False).capabilities.interim_results


def test_mapper_gives_start_and_end_once_per_utterance() -> None:
    mapper = EventMapper("en")

    def kinds(msg: object) -> list[SpeechEventType]:
        return [e.type for e in mapper.handle(msg)]  # type: ignore[arg-type]

    def res(text: str, final: bool, endpoint: bool = False) -> Results:
        return Results(final, endpoint, 0.0, 1.0, text, 0.9)

    assert kinds(res("", False)) == []  # silence: no event
    assert kinds(SpeechStarted(0.2)) == [T.START_OF_SPEECH]
    assert kinds(SpeechStarted(0.3)) == []
    assert kinds(res("hel", False)) == [T.INTERIM_TRANSCRIPT]
    assert kinds(res("hello", True, endpoint=True)) == [T.FINAL_TRANSCRIPT, T.END_OF_SPEECH]
    assert kinds(UtteranceEnd(1.0)) == []
    # Words without a SpeechStarted still open an utterance.
    assert kinds(res("again", False)) == [T.START_OF_SPEECH, T.INTERIM_TRANSCRIPT]
    assert kinds(res("", True, endpoint=False)) == []
    assert kinds(UtteranceEnd(2.0)) == [T.END_OF_SPEECH]


def test_batch_url_follows_base_url() -> None:
    assert batch_url_for("wss://api.deepgram.com/v1/listen") == "https://api.deepgram.com/v1/listen"
    assert batch_url_for("ws://127.0.0.1:9/v1/listen") == "http://127.0.0.1:9/v1/listen"


def test_missing_api_key_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DEEPGRAM_API_KEY", raising=False)
    with pytest.raises(ValueError, match="pass api_key or set DEEPGRAM_API_KEY"):
        DeepgramSTT()


def test_environment_key_and_label(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DEEPGRAM_API_KEY", "from-env")
    stt = DeepgramSTT(model="nova-2-phonecall")
    assert isinstance(stt, STT)
    assert stt.label == "deepgram:nova-2-phonecall"
    assert stt.capabilities.streaming and stt.capabilities.interim_results
    assert stt.sample_rate == 16000


# -- live streaming ----------------------------------------------------------------------


async def test_interim_then_final_events_in_order(dg: FakeDeepgramServer) -> None:
    dg.script = [
        Cue(3200, [speech_started(0.1), results("hello", is_final=False, duration=0.1)]),
        Cue(
            6400,
            [
                results("hello world", is_final=True, speech_final=True, start=0.0, duration=0.2),
                utterance_end(0.2),
            ],
        ),
    ]
    stt = make_stt(dg)
    stream = stt.stream()
    assert isinstance(stream, RecognizeStream)
    for frame in frames(noise(16000 * 3 // 10), 16000):
        stream.push_frame(frame)
    stream.end_input()
    events = await collect(stream)
    assert [(e.type, e.text) for e in events] == [
        (T.START_OF_SPEECH, ""),
        (T.INTERIM_TRANSCRIPT, "hello"),
        (T.FINAL_TRANSCRIPT, "hello world"),
        (T.END_OF_SPEECH, ""),
    ]
    final = events[2].alternatives[0]
    assert final.language == "en-US"
    assert final.confidence == pytest.approx(0.98)
    assert (final.start_s, final.end_s) == (0.0, 0.2)
    await stt.aclose()


async def test_handshake_query_and_auth(dg: FakeDeepgramServer) -> None:
    stt = make_stt(
        dg,
        model="nova-3",
        endpointing_ms=300,
        utterance_end_ms=1200,
        smart_format=False,
        keyterms=("callfleet", "Deepgram"),
    )
    stream = stt.stream(language="fr")
    stream.end_input()
    assert await collect(stream) == []
    (session,) = dg.sessions
    assert session.headers["Authorization"] == f"Token {dg.api_key}"
    assert {k: v for k, v in session.query.items()} == {
        "encoding": ["linear16"],
        "sample_rate": ["16000"],
        "channels": ["1"],
        "model": ["nova-3"],
        "language": ["fr"],
        "interim_results": ["true"],
        "endpointing": ["300"],
        "vad_events": ["true"],
        "smart_format": ["false"],
        "utterance_end_ms": ["1200"],
        "keyterm": ["callfleet", "Deepgram"],
    }
    assert session.control == ["CloseStream"]
    await stt.aclose()


async def test_disabled_options_are_sent_as_deepgram_expects(dg: FakeDeepgramServer) -> None:
    stt = make_stt(dg, endpointing_ms=None, utterance_end_ms=None, interim_results=False)
    stream = stt.stream()
    stream.end_input()
    await collect(stream)
    (session,) = dg.sessions
    assert session.param("endpointing") == "false"
    assert session.param("interim_results") == "false"
    assert "utterance_end_ms" not in session.query
    await stt.aclose()


async def test_audio_is_resampled_and_batched(dg: FakeDeepgramServer) -> None:
    pcm8k = noise(8000)  # 1 s at 8 kHz, in 20 ms frames
    stt = make_stt(dg)
    stream = stt.stream()
    for frame in frames(pcm8k, 8000):
        stream.push_frame(frame)
    stream.end_input()
    await collect(stream)
    (session,) = dg.sessions
    expected = resample(pcm8k, 8000, 16000).astype("<i2").tobytes()
    assert len(session.audio) == 32000
    assert bytes(session.audio) == expected
    # 50 ms messages (1600 bytes at 16 kHz); only the end of the stream is shorter.
    assert set(session.audio_messages[:-1]) == {1600}
    assert 0 < session.audio_messages[-1] <= 1600
    assert session.control == ["CloseStream"]
    assert session.control_at_bytes == [32000]
    await stt.aclose()


async def test_keepalive_sent_when_idle(dg: FakeDeepgramServer) -> None:
    stt = make_stt(dg, keepalive_s=0.1)
    stream = stt.stream()
    await asyncio.sleep(0.45)
    stream.end_input()
    await collect(stream)
    (session,) = dg.sessions
    assert session.control[-1] == "CloseStream"
    keepalives = session.control[:-1]
    assert keepalives and set(keepalives) == {"KeepAlive"}
    assert 3 <= len(keepalives) <= 5
    await stt.aclose()


async def test_no_keepalive_while_audio_flows(dg: FakeDeepgramServer) -> None:
    stt = make_stt(dg, keepalive_s=0.15)
    stream = stt.stream()
    for frame in frames(noise(16000 * 4 // 10), 16000):  # 0.4 s in real time
        stream.push_frame(frame)
        await asyncio.sleep(0.02)
    stream.end_input()
    await collect(stream)
    assert dg.sessions[0].control == ["CloseStream"]
    await stt.aclose()


async def test_flush_sends_finalize_after_the_audio(dg: FakeDeepgramServer) -> None:
    dg.on_finalize = [
        results("finalized", is_final=True, from_finalize=True, duration=0.3),
    ]
    stt = make_stt(dg)
    stream = stt.stream()
    pcm = noise(16000 * 3 // 10)  # 16 kHz in: no resampling, bytes are exact
    for frame in frames(pcm, 16000):
        stream.push_frame(frame)
    stream.flush()
    async with asyncio.timeout(WAIT_S):
        first = await anext(stream)
        second = await anext(stream)
    assert [(first.type, second.type)] == [(T.START_OF_SPEECH, T.FINAL_TRANSCRIPT)]
    assert second.text == "finalized"
    stream.end_input()
    await collect(stream)
    (session,) = dg.sessions
    assert session.control == ["Finalize", "CloseStream"]
    assert session.control_at_bytes == [len(pcm) * 2, len(pcm) * 2]
    await stt.aclose()


async def test_bad_token_is_a_status_error_not_retryable(dg: FakeDeepgramServer) -> None:
    stt = make_stt(dg, api_key="wrong")
    stream = stt.stream()
    error = await error_of(stream)
    assert isinstance(error, APIStatusError)
    assert error.status_code == 401
    assert not error.retryable
    assert "Invalid credentials." in str(error)
    assert dg.rejected_handshakes == 1 and dg.sessions == []
    stream.push_frame(AudioFrame(noise(320), 16000))  # dropped, not an error
    stream.flush()
    await stt.aclose()


async def test_dropped_connection_is_a_connection_error(dg: FakeDeepgramServer) -> None:
    dg.script = [Cue(3200, [results("partial", is_final=False), DROP])]
    stt = make_stt(dg)
    stream = stt.stream()
    for frame in frames(noise(16000), 16000):
        stream.push_frame(frame)
    events: list[SpeechEvent] = []
    with pytest.raises(APIConnectionError) as info:
        async with asyncio.timeout(WAIT_S):
            async for event in stream:
                events.append(event)
    assert type(info.value) is APIConnectionError
    assert info.value.retryable
    assert "connection dropped (no close frame)" in str(info.value)
    assert [e.type for e in events] == [T.START_OF_SPEECH, T.INTERIM_TRANSCRIPT]
    # The iterator is over after the error.
    with pytest.raises(StopAsyncIteration):
        await anext(stream)
    await stt.aclose()


async def test_server_close_before_close_stream_is_a_connection_error(
    dg: FakeDeepgramServer,
) -> None:
    from tests.fakes.deepgram_server import Close

    dg.script = [Cue(1, [Close(1011, "NET-0001")])]
    stt = make_stt(dg)
    stream = stt.stream()
    stream.push_frame(AudioFrame(noise(1600), 16000))
    error = await error_of(stream)
    assert type(error) is APIConnectionError
    assert "1011" in str(error) and "NET-0001" in str(error)
    await stt.aclose()


async def test_malformed_json_is_an_api_error(dg: FakeDeepgramServer) -> None:
    dg.script = [Cue(1, ['{"type": "Results", "channel": '])]
    stt = make_stt(dg)
    stream = stt.stream()
    stream.push_frame(AudioFrame(noise(1600), 16000))
    error = await error_of(stream)
    assert type(error) is APIError
    assert "not JSON" in str(error)
    assert str(error).startswith("deepgram:nova-3: ")
    await stt.aclose()


async def test_handshake_timeout() -> None:
    async with FakeDeepgramServer(handshake_delay_s=3.0) as slow:
        stt = make_stt(slow, connect_timeout_s=0.2)
        stream = stt.stream()
        started = time.monotonic()
        error = await error_of(stream)
        assert isinstance(error, APITimeoutError)
        assert time.monotonic() - started < 1.5
        await stt.aclose()


async def test_no_close_after_close_stream_times_out(dg: FakeDeepgramServer) -> None:
    dg.on_close_stream = []  # Deepgram never closes
    stt = make_stt(dg, close_timeout_s=0.2)
    stream = stt.stream()
    stream.end_input()
    error = await error_of(stream)
    assert isinstance(error, APITimeoutError)
    assert "within 0.2 s of CloseStream" in str(error)
    await stt.aclose()


async def test_aclose_is_idempotent_and_bounded(dg: FakeDeepgramServer) -> None:
    stt = make_stt(dg)
    stream = stt.stream()
    stream.push_frame(AudioFrame(noise(320), 16000))
    await dg.wait_until(lambda: bool(dg.sessions))
    reader = asyncio.create_task(collect(stream))
    started = time.monotonic()
    await stream.aclose()
    await stream.aclose()
    assert time.monotonic() - started < 1.0
    assert await reader == []  # a waiting reader is released
    with pytest.raises(RuntimeError, match="after end_input"):
        stream.push_frame(AudioFrame(noise(320), 16000))
    async with asyncio.timeout(WAIT_S):
        await dg.sessions[0].ended.wait()
    await stt.aclose()


async def test_stt_aclose_closes_open_streams(dg: FakeDeepgramServer) -> None:
    stt = make_stt(dg)
    streams = [stt.stream(), stt.stream()]
    await dg.wait_until(lambda: len(dg.sessions) == 2)
    await stt.aclose()
    async with asyncio.timeout(WAIT_S):
        for session in dg.sessions:
            await session.ended.wait()
    for stream in streams:
        assert await collect(stream) == []


# -- pre-recorded ------------------------------------------------------------------------


async def test_recognize_posts_wav_and_parses_transcript(dg: FakeDeepgramServer) -> None:
    dg.rest_transcript = "press one for sales"
    stt = make_stt(dg, keyterms=("sales",))
    pcm = noise(8000)
    event = await stt.recognize(pcm, 8000, language="en-GB")
    assert event.type is T.FINAL_TRANSCRIPT
    assert event.text == "press one for sales"
    data = event.alternatives[0]
    assert data.language == "en-GB"
    assert data.confidence == pytest.approx(0.97)
    assert data.end_s == pytest.approx(1.0)
    (req,) = dg.rest_requests
    assert req.method == "POST"
    assert req.headers["authorization"] == f"Token {dg.api_key}"
    assert req.headers["content-type"] == "audio/wav"
    assert req.query == {
        "model": ["nova-3"],
        "smart_format": ["true"],
        "language": ["en-GB"],
        "keyterm": ["sales"],
    }
    with wave.open(io.BytesIO(req.body)) as wav:
        assert (wav.getframerate(), wav.getnchannels(), wav.getsampwidth()) == (8000, 1, 2)
        assert wav.readframes(wav.getnframes()) == pcm.astype("<i2").tobytes()
    await stt.aclose()


@pytest.mark.parametrize(("status", "retryable"), [(401, False), (429, True), (503, True)])
async def test_recognize_http_errors(dg: FakeDeepgramServer, status: int, retryable: bool) -> None:
    stt = make_stt(dg, api_key="wrong") if status == 401 else make_stt(dg)
    dg.rest_status = 200 if status == 401 else status
    with pytest.raises(APIStatusError) as info:
        await stt.recognize(noise(1600), 16000)
    assert info.value.status_code == status
    assert info.value.retryable is retryable
    await stt.aclose()


async def test_recognize_unreachable_is_a_connection_error() -> None:
    stt = DeepgramSTT(api_key="k", batch_url="http://127.0.0.1:9/v1/listen", connect_timeout_s=1)
    with pytest.raises(APIConnectionError):
        await stt.recognize(noise(1600), 16000)
    await stt.aclose()
