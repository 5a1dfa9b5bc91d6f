"""A local OpenAI API server for tests, speaking OpenAI's documented wire format.

Real HTTP on 127.0.0.1 and a free port (FastAPI on uvicorn, in a thread of its own), so
providers are tested through httpx, sockets, chunked transfer and SSE framing as they
would be against api.openai.com:

- ``POST /v1/chat/completions`` (https://platform.openai.com/docs/api-reference/chat):
  with ``stream: true`` a ``text/event-stream`` of ``data: <chat.completion.chunk>`` events
  (a first delta with the role, one per text piece, tool calls as an ``index``/``id``/
  ``function.name`` delta followed by ``function.arguments`` pieces, a delta with the
  ``finish_reason``, a usage chunk with empty ``choices`` when
  ``stream_options.include_usage``, then ``data: [DONE]``); otherwise one
  ``chat.completion`` object.
- ``POST /v1/audio/transcriptions``
  (https://platform.openai.com/docs/api-reference/audio/createTranscription): a
  multipart form (``file``, ``model``, ``language``, ``response_format``), answered with
  ``{"text": ...}`` (or plain text for ``response_format=text``).
- ``POST /v1/audio/speech``
  (https://platform.openai.com/docs/api-reference/audio/createSpeech): ``response_format
  "pcm"`` only: raw 24 kHz int16 little-endian mono, sent in several body chunks.

Errors use OpenAI's error object, ``{"error": {"message", "type", "param", "code"}}``
(https://platform.openai.com/docs/guides/error-codes). With ``api_key`` set, requests
without ``Authorization: Bearer <api_key>`` get OpenAI's 401.

Tests script the replies, one per request, per endpoint (``script_chat``,
``script_transcription``, ``script_speech``; an empty queue gives a default reply) and
read ``requests``, what the server received (headers, parsed JSON, form fields, files).
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
import uuid
from collections import deque
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from email.message import Message
from email.parser import BytesHeaderParser
from email.policy import HTTP
from types import TracebackType
from typing import Any

import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse

from callfleet.media.tones import sine

HOST = "127.0.0.1"
#: Rate of ``pcm`` speech (Hz), as OpenAI sends it.
PCM_SAMPLE_RATE = 24000


def _call_id() -> str:
    return f"call_{uuid.uuid4().hex[:24]}"


@dataclass
class ToolCallScript:
    """A tool call the model makes; ``arguments`` is the exact JSON text it streams."""

    name: str
    arguments: str
    call_id: str = field(default_factory=_call_id)
    #: ``arguments`` is streamed in this many pieces, cut at even intervals.
    pieces: int = 3


@dataclass
class ChatReply:
    """One chat completion: text pieces (one chunk each), then tool calls."""

    text: Sequence[str] = ()
    tool_calls: Sequence[ToolCallScript] = ()
    #: Default: ``tool_calls`` when there are tool calls, else ``stop``.
    finish_reason: str | None = None
    prompt_tokens: int = 17
    completion_tokens: int = 9
    #: Seconds between the response headers and the first chunk.
    first_chunk_delay_s: float = 0.0
    #: Seconds between two chunks.
    chunk_interval_s: float = 0.0
    #: Before chunk number N (0-based), stop sending until ``FakeOpenAIServer.resume``
    #: or ``pause_s`` seconds pass.
    pause_before_chunk: int | None = None
    pause_s: float = 30.0
    #: Before chunk number N, send ``malformed_data`` as an event's data.
    malformed_before_chunk: int | None = None
    malformed_data: str = '{"id": "chatcmpl-fake", "object": "chat.completion.chunk", "choi'
    #: End the body before chunk number N, with neither a finish_reason nor [DONE].
    end_before_chunk: int | None = None
    #: After the chunks, send this error object's message inside the stream (no [DONE]).
    stream_error: str | None = None
    resumed: asyncio.Event = field(default_factory=asyncio.Event, repr=False)


@dataclass
class ErrorReply:
    """An HTTP error status with OpenAI's error object."""

    status: int
    message: str
    type: str = "invalid_request_error"
    code: str | None = None
    param: str | None = None

    def response(self) -> JSONResponse:
        error = {"message": self.message, "type": self.type, "param": self.param}
        return JSONResponse({"error": {**error, "code": self.code}}, status_code=self.status)


@dataclass
class TranscriptionReply:
    text: str
    delay_s: float = 0.0


@dataclass
class SpeechReply:
    """A sine tone as ``pcm`` speech, sent in ``chunk_bytes`` pieces."""

    freq_hz: float = 440.0
    duration_ms: float = 300.0
    #: Odd by default, so that pieces split samples.
    chunk_bytes: int = 1001
    #: Pause between pieces (s), so that they reach the client as separate reads.
    chunk_interval_s: float = 0.002
    first_chunk_delay_s: float = 0.0

    def pcm(self) -> bytes:
        tone = sine(self.freq_hz, self.duration_ms, PCM_SAMPLE_RATE, amplitude_dbfs=-6.0)
        return tone.astype("<i2").tobytes()


@dataclass
class UploadedFile:
    filename: str
    content_type: str
    data: bytes


@dataclass
class RecordedRequest:
    method: str
    path: str
    #: Header names in lower case.
    headers: dict[str, str]
    json: Any = None
    form: dict[str, str] = field(default_factory=dict)
    files: dict[str, UploadedFile] = field(default_factory=dict)


def _sse(payload: Any) -> str:
    data = payload if isinstance(payload, str) else json.dumps(payload)
    return f"data: {data}\n\n"


def _pieces(text: str, count: int) -> list[str]:
    size = max(1, -(-len(text) // max(1, count)))
    return [text[i : i + size] for i in range(0, len(text), size)] or [""]


def _usage(reply: ChatReply) -> dict[str, Any]:
    return {
        "prompt_tokens": reply.prompt_tokens,
        "completion_tokens": reply.completion_tokens,
        "total_tokens": reply.prompt_tokens + reply.completion_tokens,
        "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0},
    }


def _finish_reason(reply: ChatReply) -> str:
    return reply.finish_reason or ("tool_calls" if reply.tool_calls else "stop")


def chat_chunks(model: str, reply: ChatReply, *, include_usage: bool) -> list[dict[str, Any]]:
    """The ``chat.completion.chunk`` objects OpenAI would stream for ``reply``."""
    head = {
        "id": f"chatcmpl-{uuid.uuid4().hex[:24]}",
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": model,
        "service_tier": "default",
        "system_fingerprint": "fp_fake",
    }

    def chunk(delta: dict[str, Any], finish_reason: str | None = None) -> dict[str, Any]:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
        out: dict[str, Any] = {**head, "choices": [choice]}
        if include_usage:
            out["usage"] = None
        return out

    chunks = [chunk({"role": "assistant", "content": "", "refusal": None})]
    chunks += [chunk({"content": piece}) for piece in reply.text]
    for index, call in enumerate(reply.tool_calls):
        function = {"name": call.name, "arguments": ""}
        first = {"index": index, "id": call.call_id, "type": "function", "function": function}
        chunks.append(chunk({"tool_calls": [first]}))
        for piece in _pieces(call.arguments, call.pieces):
            chunks.append(
                chunk({"tool_calls": [{"index": index, "function": {"arguments": piece}}]})
            )
    chunks.append(chunk({}, _finish_reason(reply)))
    if include_usage:
        chunks.append({**head, "choices": [], "usage": _usage(reply)})
    return chunks


def chat_completion(model: str, reply: ChatReply) -> dict[str, Any]:
    """The ``chat.completion`` object OpenAI would return for ``reply`` without streaming."""
    message: dict[str, Any] = {
        "role": "assistant",
        "content": "".join(reply.text) or None,
        "refusal": None,
    }
    calls = [
        {
            "id": c.call_id,
            "type": "function",
            "function": {"name": c.name, "arguments": c.arguments},
        }
        for c in reply.tool_calls
    ]
    if calls:
        message["tool_calls"] = calls
    choice = {
        "index": 0,
        "message": message,
        "logprobs": None,
        "finish_reason": _finish_reason(reply),
    }
    return {
        "id": f"chatcmpl-{uuid.uuid4().hex[:24]}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [choice],
        "usage": _usage(reply),
    }


def parse_multipart(
    content_type: str, body: bytes
) -> tuple[dict[str, str], dict[str, UploadedFile]]:
    """Fields and files of a ``multipart/form-data`` body (RFC 7578), byte-exact."""
    header = BytesHeaderParser(policy=HTTP).parsebytes(
        f"Content-Type: {content_type}\r\n\r\n".encode()
    )
    boundary = header.get_param("boundary")
    if header.get_content_type() != "multipart/form-data" or not isinstance(boundary, str):
        raise ValueError(
            f"Content-Type {content_type!r} is not multipart/form-data with a boundary"
        )
    fields: dict[str, str] = {}
    files: dict[str, UploadedFile] = {}
    parts = body.split(b"--" + boundary.encode())
    for part in parts[1:-1]:
        head, sep, data = part.removeprefix(b"\r\n").partition(b"\r\n\r\n")
        if not sep:
            raise ValueError("multipart part has no blank line after its headers")
        headers: Message = BytesHeaderParser(policy=HTTP).parsebytes(head + b"\r\n\r\n")
        name = headers.get_param("name", header="content-disposition")
        if not isinstance(name, str):
            raise ValueError("multipart part has no name in its Content-Disposition")
        data = data.removesuffix(b"\r\n")
        filename = headers.get_filename()
        if filename is None:
            fields[name] = data.decode()
        else:
            content = headers.get_content_type() if "content-type" in headers else ""
            files[name] = UploadedFile(filename, content, data)
    return fields, files


class FakeOpenAIServer:
    """``async with FakeOpenAIServer() as server:`` serves on ``server.base_url``.

    Args:
        api_key: when set, requests must carry ``Authorization: Bearer <api_key>``.
    """

    def __init__(self, *, api_key: str | None = None) -> None:
        self.api_key = api_key
        self.requests: list[RecordedRequest] = []
        self._lock = threading.Lock()
        self._chat: deque[ChatReply | ErrorReply] = deque()
        self._transcriptions: deque[TranscriptionReply | ErrorReply] = deque()
        self._speech: deque[SpeechReply | ErrorReply] = deque()
        self._sock: socket.socket | None = None
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.app = self._build_app()

    # -- scripting ---------------------------------------------------------------------

    @property
    def port(self) -> int:
        if self._sock is None:
            raise RuntimeError("FakeOpenAIServer is not started")
        return int(self._sock.getsockname()[1])

    @property
    def base_url(self) -> str:
        return f"http://{HOST}:{self.port}/v1"

    def script_chat(self, *replies: ChatReply | ErrorReply) -> None:
        with self._lock:
            self._chat.extend(replies)

    def script_transcription(self, *replies: TranscriptionReply | ErrorReply) -> None:
        with self._lock:
            self._transcriptions.extend(replies)

    def script_speech(self, *replies: SpeechReply | ErrorReply) -> None:
        with self._lock:
            self._speech.extend(replies)

    def resume(self, reply: ChatReply) -> None:
        """End the pause of ``reply``'s stream (``pause_before_chunk``)."""
        if self._loop is not None:
            self._loop.call_soon_threadsafe(reply.resumed.set)

    def requests_to(self, path: str) -> list[RecordedRequest]:
        with self._lock:
            return [r for r in self.requests if r.path == path]

    def reset(self) -> None:
        """Forget scripted replies, recorded requests and ``api_key``."""
        with self._lock:
            self.requests.clear()
            self._chat.clear()
            self._transcriptions.clear()
            self._speech.clear()
        self.api_key = None

    # -- lifecycle ---------------------------------------------------------------------

    async def start(self) -> FakeOpenAIServer:
        # Bound and listening before the thread starts: connections wait in the backlog
        # until uvicorn accepts them, so there is nothing to wait for here.
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind((HOST, 0))
        sock.listen(64)
        self._sock = sock
        config = uvicorn.Config(
            self.app,
            lifespan="off",
            log_level="warning",
            access_log=False,
            timeout_graceful_shutdown=1,
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._run, name="fake-openai", daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        assert self._server is not None and self._sock is not None

        async def serve() -> None:
            self._loop = asyncio.get_running_loop()
            assert self._server is not None and self._sock is not None
            await self._server.serve(sockets=[self._sock])

        asyncio.run(serve())

    async def stop(self) -> None:
        if self._server is None or self._thread is None:
            return
        self._server.should_exit = True
        await asyncio.to_thread(self._thread.join, 10.0)
        if self._thread.is_alive():
            raise RuntimeError("FakeOpenAIServer did not stop within 10 s")
        self._server = self._thread = None
        if self._sock is not None:
            self._sock.close()

    async def __aenter__(self) -> FakeOpenAIServer:
        return await self.start()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    # -- the API -----------------------------------------------------------------------

    def _record(self, request: Request, **parsed: Any) -> None:
        headers = {k.lower(): v for k, v in request.headers.items()}
        with self._lock:
            self.requests.append(
                RecordedRequest(request.method, request.url.path, headers, **parsed)
            )

    def _next(self, queue: deque[Any], default: Any) -> Any:
        with self._lock:
            return queue.popleft() if queue else default

    def _denied(self, request: Request) -> JSONResponse | None:
        if self.api_key is None:
            return None
        auth = request.headers.get("authorization", "")
        if not auth:
            message = (
                "You didn't provide an API key. You need to provide your API key in an "
                "Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY)."
            )
            return ErrorReply(401, message).response()
        if auth != f"Bearer {self.api_key}":
            key = auth.removeprefix("Bearer ")
            message = (
                f"Incorrect API key provided: {key[:3]}***{key[-2:]}. You can find your API "
                "key at https://platform.openai.com/account/api-keys."
            )
            return ErrorReply(401, message, code="invalid_api_key").response()
        return None

    def _build_app(self) -> FastAPI:
        app = FastAPI()

        @app.post("/v1/chat/completions")
        async def chat_completions(request: Request) -> Response:
            try:
                body = json.loads(await request.body())
            except ValueError:
                self._record(request)
                return ErrorReply(
                    400, "We could not parse the JSON body of your request."
                ).response()
            self._record(request, json=body)
            if (denied := self._denied(request)) is not None:
                return denied
            if not isinstance(body, dict) or not body.get("messages"):
                return ErrorReply(
                    400, "Missing required parameter: 'messages'.", param="messages"
                ).response()
            reply = self._next(self._chat, ChatReply(text=["Hello", "!"]))
            if isinstance(reply, ErrorReply):
                return reply.response()
            model = str(body.get("model", ""))
            if not body.get("stream"):
                return JSONResponse(chat_completion(model, reply))
            include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
            events = self._chat_events(
                chat_chunks(model, reply, include_usage=include_usage), reply
            )
            return StreamingResponse(events, media_type="text/event-stream; charset=utf-8")

        @app.post("/v1/audio/transcriptions")
        async def transcriptions(request: Request) -> Response:
            try:
                form, files = parse_multipart(
                    request.headers.get("content-type", ""), await request.body()
                )
            except ValueError as e:
                self._record(request)
                return ErrorReply(400, str(e)).response()
            self._record(request, form=form, files=files)
            if (denied := self._denied(request)) is not None:
                return denied
            if "file" not in files:
                return ErrorReply(
                    400, "Missing required parameter: 'file'.", param="file"
                ).response()
            if not form.get("model"):
                return ErrorReply(
                    400, "you must provide a model parameter", param="model"
                ).response()
            reply = self._next(self._transcriptions, TranscriptionReply("hello"))
            if isinstance(reply, ErrorReply):
                return reply.response()
            await asyncio.sleep(reply.delay_s)
            if form.get("response_format") == "text":
                return PlainTextResponse(reply.text + "\n")
            return JSONResponse({"text": reply.text})

        @app.post("/v1/audio/speech")
        async def speech(request: Request) -> Response:
            body = json.loads(await request.body())
            self._record(request, json=body)
            if (denied := self._denied(request)) is not None:
                return denied
            if not body.get("input"):
                return ErrorReply(
                    400, "Missing required parameter: 'input'.", param="input"
                ).response()
            if body.get("response_format") != "pcm":
                wanted = body.get("response_format")
                message = f"this fake only sends response_format 'pcm', not {wanted!r}"
                return ErrorReply(400, message, param="response_format").response()
            reply = self._next(self._speech, SpeechReply())
            if isinstance(reply, ErrorReply):
                return reply.response()
            return StreamingResponse(self._speech_body(reply), media_type="audio/pcm")

        return app

    async def _chat_events(
        self, chunks: list[dict[str, Any]], reply: ChatReply
    ) -> AsyncIterator[str]:
        await asyncio.sleep(reply.first_chunk_delay_s)
        for number, chunk in enumerate(chunks):
            if number:
                await asyncio.sleep(reply.chunk_interval_s)
            if number == reply.pause_before_chunk:
                try:
                    await asyncio.wait_for(reply.resumed.wait(), reply.pause_s)
                except TimeoutError:
                    pass
            if number == reply.end_before_chunk:
                return
            if number == reply.malformed_before_chunk:
                yield _sse(reply.malformed_data)
            yield _sse(chunk)
        if reply.stream_error is not None:
            yield _sse(
                {
                    "error": {
                        "message": reply.stream_error,
                        "type": "server_error",
                        "param": None,
                        "code": None,
                    }
                }
            )
            return
        yield _sse("[DONE]")

    async def _speech_body(self, reply: SpeechReply) -> AsyncIterator[bytes]:
        pcm = reply.pcm()
        await asyncio.sleep(reply.first_chunk_delay_s)
        for start in range(0, len(pcm), reply.chunk_bytes):
            if start:
                await asyncio.sleep(reply.chunk_interval_s)
            yield pcm[start : start + reply.chunk_bytes]
