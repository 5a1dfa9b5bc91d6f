"""CartesiaTTS against the local fake Cartesia (tests/fakes/cartesia_server.py)."""

from __future__ import annotations

import asyncio
import base64
import time
import uuid
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
from callfleet.agents.providers.base import TTS
from callfleet.agents.providers.cartesia import (
    DEFAULT_API_VERSION,
    DEFAULT_VOICE_ID,
    CartesiaTTS,
    Chunk,
    Done,
    ErrorMessage,
    Other,
    parse_server_message,
)
from callfleet.media.frame import AudioFrame
from tests.fakes.cartesia_server import FakeCartesiaServer

WAIT_S = 5.0


@pytest_asyncio.fixture(loop_scope="session")
async def car() -> AsyncIterator[FakeCartesiaServer]:
    async with FakeCartesiaServer() as server:
        yield server


def make_tts(car: FakeCartesiaServer, **kwargs: object) -> CartesiaTTS:
    options: dict[str, object] = {
        "api_key": car.api_key,
        "base_url": car.url,
        "connect_timeout_s": 2.0,
        "timeout_s": 2.0,
    }
    options.update(kwargs)
    return CartesiaTTS(**options)  # type: ignore[arg-type]


async def speak(tts: CartesiaTTS, text: str) -> list[AudioFrame]:
    async with asyncio.timeout(WAIT_S):
        return [frame async for frame in tts.synthesize(text)]


def pcm_bytes(frames: list[AudioFrame]) -> bytes:
    return b"".join(f.to_bytes() for f in frames)


# -- wire format -----------------------------------------------------------------------


def test_parse_server_messages() -> None:
    audio = b"\x01\x00\xff\x7f"
    b64 = base64.b64encode(audio).decode()
    chunk = f'{{"type":"chunk","data":"{b64}","done":false,"status_code":206,"context_id":"a"}}'
    assert parse_server_message(chunk) == Chunk("a", audio)
    assert parse_server_message('{"type":"done","done":true,"context_id":"a"}') == Done("a")
    assert parse_server_message(
        '{"type":"error","done":true,"error":"Invalid model","status_code":400,"context_id":"b"}'
    ) == ErrorMessage("b", "Invalid model", 400)
    # The newer error shape: title and message.
    assert parse_server_message(
        '{"type":"error","title":"Invalid model","message":"not a valid model ID",'
        '"error_code":"model_not_found","status_code":400}'
    ) == ErrorMessage("", "Invalid model: not a valid model ID", 400)
    assert parse_server_message('{"type":"flush_done","context_id":"c"}') == Other(
        "c", "flush_done"
    )


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ('{"type":"chunk"', 'Cartesia sent a message that is not JSON: \'{"type":"chunk"\''),
        ('{"data":"AAAA"}', 'Cartesia sent a message without a type: \'{"data":"AAAA"}\''),
        ('{"type":"chunk","context_id":"a"}', "Cartesia chunk message has no data"),
        ('{"type":"chunk","data":"not base64!"}', "Cartesia chunk message data is not base64"),
    ],
)
def test_parse_rejects_bad_messages(text: str, error: str) -> None:
    with pytest.raises(ValueError) as info:
        parse_server_message(text)
    assert str(info.value) == error


def test_options_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CARTESIA_API_KEY", raising=False)
    with pytest.raises(ValueError, match="pass api_key or set CARTESIA_API_KEY"):
        CartesiaTTS()
    with pytest.raises(ValueError, match=r"sample_rate must be one of .* got 11025"):
        CartesiaTTS(api_key="k", sample_rate=11025)
    monkeypatch.setenv("CARTESIA_API_KEY", "from-env")
    tts = CartesiaTTS(model="sonic-2")
    assert isinstance(tts, TTS)
    assert (tts.label, tts.sample_rate, tts.capabilities.streaming) == (
        "cartesia:sonic-2",
        24000,
        True,
    )


# -- synthesis -------------------------------------------------------------------------


async def test_frames_at_requested_rate_with_all_samples(car: FakeCartesiaServer) -> None:
    car.chunk_bytes = 1001  # odd: samples straddle chunk boundaries
    tts = make_tts(car, sample_rate=16000, voice="voice-123", language="de", model="sonic-2")
    frames = await speak(tts, "Hallo Welt.")
    assert frames and all(f.sample_rate == 16000 for f in frames)
    (req,) = car.requests
    context_id = req["context_id"]
    assert pcm_bytes(frames) == bytes(car.sent[context_id])
    assert sum(len(f.samples) for f in frames) == 16000 * car.duration_ms // 1000
    # Timestamps follow the samples.
    starts = np.cumsum([0] + [len(f.samples) for f in frames[:-1]]) / 16000
    assert [f.timestamp_s for f in frames] == pytest.approx(list(starts))
    assert req == {
        "model_id": "sonic-2",
        "transcript": "Hallo Welt.",
        "voice": {"mode": "id", "id": "voice-123"},
        "output_format": {"container": "raw", "encoding": "pcm_s16le", "sample_rate": 16000},
        "language": "de",
        "context_id": context_id,
        "continue": False,
    }
    assert str(uuid.UUID(context_id)) == context_id
    (conn,) = car.connections
    assert conn.headers["X-API-Key"] == car.api_key
    assert conn.headers["Cartesia-Version"] == DEFAULT_API_VERSION
    await tts.aclose()


async def test_default_voice_and_rate(car: FakeCartesiaServer) -> None:
    tts = make_tts(car)
    frames = await speak(tts, "Hello.")
    assert sum(len(f.samples) for f in frames) == 24000 * car.duration_ms // 1000
    assert car.requests[0]["voice"]["id"] == DEFAULT_VOICE_ID
    assert car.requests[0]["output_format"]["sample_rate"] == 24000
    await tts.aclose()


async def test_concurrent_calls_get_only_their_own_audio(car: FakeCartesiaServer) -> None:
    car.frequencies = {"first sentence": 300.0, "second sentence": 1200.0}
    car.chunk_bytes = 960
    tts = make_tts(car)
    first, second = await asyncio.gather(
        speak(tts, "first sentence"), speak(tts, "second sentence")
    )
    req1, req2 = car.request_for("first sentence"), car.request_for("second sentence")
    assert pcm_bytes(first) == bytes(car.sent[req1["context_id"]])
    assert pcm_bytes(second) == bytes(car.sent[req2["context_id"]])
    assert pcm_bytes(first) != pcm_bytes(second)
    assert len(car.connections) == 1
    await tts.aclose()


async def test_connection_reused_across_calls(car: FakeCartesiaServer) -> None:
    tts = make_tts(car)
    await tts.connect()
    for text in ("one.", "two.", "three."):
        assert await speak(tts, text)
    assert len(car.connections) == 1
    assert len(car.requests) == 3
    await tts.aclose()
    async with asyncio.timeout(WAIT_S):
        await car.connections[0].ended.wait()


async def test_reconnects_after_the_connection_drops(car: FakeCartesiaServer) -> None:
    car.drop_on = {"boom"}
    tts = make_tts(car)
    assert await speak(tts, "before.")
    with pytest.raises(APIConnectionError) as info:
        await speak(tts, "boom")
    assert "connection dropped (no close frame)" in str(info.value)
    assert await speak(tts, "after.")
    assert len(car.connections) == 2
    await tts.aclose()


async def test_error_message_is_an_api_status_error(car: FakeCartesiaServer) -> None:
    car.errors = {"bad": {"error": "Invalid voice: voice not found", "status_code": 400}}
    tts = make_tts(car)
    with pytest.raises(APIStatusError) as info:
        await speak(tts, "bad")
    assert info.value.status_code == 400
    assert not info.value.retryable
    assert "Invalid voice: voice not found" in str(info.value)
    # The connection survives one generation's error.
    assert await speak(tts, "good.")
    assert len(car.connections) == 1
    await tts.aclose()


async def test_error_without_status_is_an_api_error(car: FakeCartesiaServer) -> None:
    car.errors = {"odd": {"title": "Generation failed", "message": "try again"}}
    tts = make_tts(car)
    with pytest.raises(APIError) as info:
        await speak(tts, "odd")
    assert type(info.value) is APIError
    assert str(info.value) == "cartesia:sonic-2: Generation failed: try again"
    await tts.aclose()


async def test_stall_is_a_timeout_and_the_context_is_cancelled(car: FakeCartesiaServer) -> None:
    car.stall = {"silence"}
    tts = make_tts(car, timeout_s=0.2)
    started = time.monotonic()
    with pytest.raises(APITimeoutError):
        await speak(tts, "silence")
    assert time.monotonic() - started < 1.0
    (req,) = car.requests
    await car.wait_until(lambda: bool(car.cancels))
    assert car.cancels == [req["context_id"]]
    await tts.aclose()


async def test_stopping_early_cancels_the_context(car: FakeCartesiaServer) -> None:
    car.chunk_interval_s = 0.02
    tts = make_tts(car)
    gen = tts.synthesize("a long sentence")
    async with asyncio.timeout(WAIT_S):
        first = await anext(gen)
        await gen.aclose()  # type: ignore[attr-defined]
    await car.wait_until(lambda: bool(car.cancels))
    assert len(first.samples) > 0
    assert car.cancels == [car.requests[0]["context_id"]]
    await tts.aclose()


async def test_bad_key_is_a_status_error_not_retryable(car: FakeCartesiaServer) -> None:
    tts = make_tts(car, api_key="wrong")
    with pytest.raises(APIStatusError) as info:
        await speak(tts, "Hello.")
    assert info.value.status_code == 401
    assert not info.value.retryable
    assert car.connections == []
    await tts.aclose()


async def test_malformed_json_fails_waiting_generations(car: FakeCartesiaServer) -> None:
    tts = make_tts(car)
    car.stall = {"waiting"}
    gen = tts.synthesize("waiting")
    task: asyncio.Task[AudioFrame] = asyncio.create_task(anext(gen))  # type: ignore[arg-type]
    await car.wait_until(lambda: bool(car.requests))
    await car.send_raw("{not json")
    with pytest.raises(APIError) as info:
        async with asyncio.timeout(WAIT_S):
            await task
    assert type(info.value) is APIError
    assert "not JSON" in str(info.value)
    await tts.aclose()


async def test_blank_text_sends_nothing(car: FakeCartesiaServer) -> None:
    tts = make_tts(car)
    assert await speak(tts, "  ") == []
    assert car.requests == [] and car.connections == []
    await tts.aclose()


async def test_aclose_is_idempotent_and_fails_running_generations(
    car: FakeCartesiaServer,
) -> None:
    car.stall = {"pending"}
    tts = make_tts(car)
    task = asyncio.create_task(speak(tts, "pending"))
    await car.wait_until(lambda: bool(car.requests))
    started = time.monotonic()
    await tts.aclose()
    await tts.aclose()
    assert time.monotonic() - started < 1.0
    with pytest.raises(APIConnectionError):
        await task
    with pytest.raises(APIConnectionError, match="closed"):
        await speak(tts, "after close")
    async with asyncio.timeout(WAIT_S):
        await car.connections[0].ended.wait()
