"""A local Deepgram for tests: the live ``/v1/listen`` websocket and the pre-recorded
``POST /v1/listen``, on 127.0.0.1 free ports, speaking Deepgram's documented wire format
(https://developers.deepgram.com/reference/speech-to-text/listen-streaming,
https://developers.deepgram.com/reference/speech-to-text/listen-pre-recorded).

Scripted from tests: ``script`` lists ``Cue``s, each sent once a session has received
``after_bytes`` of audio; a cue's items are JSON messages (dicts), raw text (for
malformed messages), ``DROP`` (abort the TCP connection, no close frame) or ``Close``.
``on_finalize`` is sent on ``Finalize``, ``on_close_stream`` on ``CloseStream`` (by
default ``Metadata`` and a normal close, as Deepgram does). Everything received is
recorded per session: query, headers, audio, binary message sizes, control messages.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from http import HTTPStatus
from types import TracebackType
from typing import Any
from urllib.parse import parse_qs, urlsplit

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response


@dataclass(frozen=True)
class Close:
    """Close the websocket with ``code`` and ``reason``."""

    code: int = 1000
    reason: str = ""


class _Drop:
    def __repr__(self) -> str:
        return "DROP"


#: Abort the TCP connection (the client sees no close frame).
DROP = _Drop()

Item = dict[str, Any] | str | Close | _Drop


@dataclass
class Cue:
    after_bytes: int
    items: list[Item]


@dataclass
class DeepgramSession:
    """What one websocket client sent."""

    query: dict[str, list[str]]
    headers: dict[str, str]
    audio: bytearray = field(default_factory=bytearray)
    #: Size of each binary message, in order.
    audio_messages: list[int] = field(default_factory=list)
    #: ``type`` of each text message, in order ("KeepAlive", "Finalize", "CloseStream").
    control: list[str] = field(default_factory=list)
    #: Audio bytes received when each control message arrived.
    control_at_bytes: list[int] = field(default_factory=list)
    ended: asyncio.Event = field(default_factory=asyncio.Event)

    def param(self, name: str) -> str:
        (value,) = self.query[name]
        return value


@dataclass
class RestRequest:
    method: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes


def results(
    transcript: str,
    *,
    is_final: bool,
    speech_final: bool = False,
    start: float = 0.0,
    duration: float = 1.0,
    confidence: float = 0.98,
    from_finalize: bool = False,
) -> dict[str, Any]:
    """A ``Results`` message, words spread evenly over the stretch."""
    words = transcript.split()
    step = duration / max(1, len(words))
    return {
        "type": "Results",
        "channel_index": [0, 1],
        "duration": duration,
        "start": start,
        "is_final": is_final,
        "speech_final": speech_final,
        "channel": {
            "alternatives": [
                {
                    "transcript": transcript,
                    "confidence": confidence,
                    "words": [
                        {
                            "word": w.lower().strip(".,?!"),
                            "start": round(start + i * step, 3),
                            "end": round(start + (i + 1) * step, 3),
                            "confidence": confidence,
                            "punctuated_word": w,
                        }
                        for i, w in enumerate(words)
                    ],
                }
            ]
        },
        "metadata": {
            "request_id": str(uuid.uuid4()),
            "model_info": {"name": "general-nova-3", "version": "fake", "arch": "nova-3"},
            "model_uuid": str(uuid.uuid4()),
        },
        "from_finalize": from_finalize,
    }


def speech_started(timestamp: float) -> dict[str, Any]:
    return {"type": "SpeechStarted", "channel": [0, 1], "timestamp": timestamp}


def utterance_end(last_word_end: float) -> dict[str, Any]:
    return {"type": "UtteranceEnd", "channel": [0, 1], "last_word_end": last_word_end}


def metadata(duration: float = 0.0) -> dict[str, Any]:
    return {
        "type": "Metadata",
        "transaction_key": "deprecated",
        "request_id": str(uuid.uuid4()),
        "sha256": "0" * 64,
        "created": "2025-01-01T00:00:00.000Z",
        "duration": duration,
        "channels": 1,
    }


def prerecorded(transcript: str, *, duration: float, confidence: float = 0.97) -> dict[str, Any]:
    """A pre-recorded ``/v1/listen`` answer."""
    alt = results(transcript, is_final=True, duration=duration, confidence=confidence)
    alt_body = alt["channel"]["alternatives"][0]
    return {
        "metadata": {**metadata(duration), "models": ["fake"]},
        "results": {"channels": [{"alternatives": [alt_body]}]},
    }


class FakeDeepgramServer:
    """``async with FakeDeepgramServer() as dg:`` then ``DeepgramSTT(base_url=dg.url,
    batch_url=dg.rest_url, api_key=dg.api_key)``."""

    def __init__(self, *, api_key: str = "dg-test-key", handshake_delay_s: float = 0.0) -> None:
        self.api_key = api_key
        self.handshake_delay_s = handshake_delay_s
        self.script: list[Cue] = []
        self.on_finalize: list[Item] = []
        self.on_close_stream: list[Item] = [metadata(), Close(1000)]
        self.sessions: list[DeepgramSession] = []
        self.rejected_handshakes = 0
        self.rest_requests: list[RestRequest] = []
        self.rest_transcript = "hello from the fake"
        self.rest_status = 200
        self._server: Server | None = None
        self._rest: asyncio.Server | None = None
        self._release = asyncio.Event()
        self._changed = asyncio.Condition()
        self._handlers: set[asyncio.Task[None]] = set()

    @property
    def url(self) -> str:
        assert self._server is not None, "server not started"
        port = self._server.sockets[0].getsockname()[1]
        return f"ws://127.0.0.1:{port}/v1/listen"

    @property
    def rest_url(self) -> str:
        assert self._rest is not None, "server not started"
        port = self._rest.sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}/v1/listen"

    async def start(self) -> FakeDeepgramServer:
        self._server = await serve(
            self._handle, "127.0.0.1", 0, process_request=self._process_request
        )
        self._rest = await asyncio.start_server(self._handle_rest, "127.0.0.1", 0)
        return self

    async def aclose(self) -> None:
        self._release.set()
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(2.0):
                    await self._server.wait_closed()
        if self._rest is not None:
            self._rest.close()
            for task in self._handlers:
                task.cancel()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(2.0):
                    await self._rest.wait_closed()

    async def __aenter__(self) -> FakeDeepgramServer:
        return await self.start()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    # -- websocket --

    async def _process_request(self, ws: ServerConnection, request: Request) -> Response | None:
        if self.handshake_delay_s:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.handshake_delay_s):
                    await self._release.wait()
        if urlsplit(request.path).path != "/v1/listen":
            return ws.respond(HTTPStatus.NOT_FOUND, "not found\n")
        if request.headers.get("Authorization") != f"Token {self.api_key}":
            self.rejected_handshakes += 1
            return _json_response(
                ws,
                HTTPStatus.UNAUTHORIZED,
                {
                    "err_code": "INVALID_AUTH",
                    "err_msg": "Invalid credentials.",
                    "request_id": str(uuid.uuid4()),
                },
            )
        return None

    async def wait_until(self, predicate: Callable[[], bool], timeout_s: float = 5.0) -> None:
        """Returns once ``predicate()`` holds (checked whenever a session starts)."""
        async with asyncio.timeout(timeout_s), self._changed:
            await self._changed.wait_for(predicate)

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    async def _handle(self, ws: ServerConnection) -> None:
        assert ws.request is not None
        session = DeepgramSession(
            query=parse_qs(urlsplit(ws.request.path).query, keep_blank_values=True),
            headers=dict(ws.request.headers.raw_items()),
        )
        self.sessions.append(session)
        await self._notify()
        cues = sorted(self.script, key=lambda c: c.after_bytes)
        try:
            async for message in ws:
                if isinstance(message, bytes):
                    session.audio += message
                    session.audio_messages.append(len(message))
                    while cues and len(session.audio) >= cues[0].after_bytes:
                        if not await _play(ws, cues.pop(0).items):
                            return
                    continue
                kind = str(json.loads(message).get("type"))
                session.control.append(kind)
                session.control_at_bytes.append(len(session.audio))
                if kind == "Finalize" and not await _play(ws, self.on_finalize):
                    return
                if kind == "CloseStream" and not await _play(ws, self.on_close_stream):
                    return
        except ConnectionClosed:
            pass
        finally:
            session.ended.set()

    # -- pre-recorded REST --

    async def _handle_rest(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        try:
            async with asyncio.timeout(5.0):
                head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
                request_line, *header_lines = head.split("\r\n")
                method, target, _ = request_line.split(" ", 2)
                headers = {
                    k.strip().lower(): v.strip()
                    for k, v in (h.split(":", 1) for h in header_lines if h)
                }
                body = await reader.readexactly(int(headers.get("content-length", "0")))
            url = urlsplit(target)
            self.rest_requests.append(
                RestRequest(method, parse_qs(url.query, keep_blank_values=True), headers, body)
            )
            status, payload = self._rest_answer(method, url.path, headers, body)
            data = json.dumps(payload).encode()
            writer.write(
                f"HTTP/1.1 {status.value} {status.phrase}\r\n"
                f"Content-Type: application/json\r\nContent-Length: {len(data)}\r\n"
                "Connection: close\r\n\r\n".encode()
                + data
            )
            await writer.drain()
        except (TimeoutError, asyncio.IncompleteReadError, ConnectionError, ValueError):
            pass
        finally:
            self._handlers.discard(task)
            writer.close()

    def _rest_answer(
        self, method: str, path: str, headers: dict[str, str], body: bytes
    ) -> tuple[HTTPStatus, dict[str, Any]]:
        if method != "POST" or path != "/v1/listen":
            return HTTPStatus.NOT_FOUND, {"err_code": "NOT_FOUND", "err_msg": "Not found."}
        if headers.get("authorization") != f"Token {self.api_key}":
            return HTTPStatus.UNAUTHORIZED, {
                "err_code": "INVALID_AUTH",
                "err_msg": "Invalid credentials.",
            }
        if self.rest_status != 200:
            status = HTTPStatus(self.rest_status)
            return status, {"err_code": status.name, "err_msg": status.phrase}
        # A WAV file: 44-byte header, then 16-bit samples; the rate is at offset 24.
        rate = int.from_bytes(body[24:28], "little") if len(body) >= 44 else 16000
        duration = max(0, len(body) - 44) / 2 / max(1, rate)
        return HTTPStatus.OK, prerecorded(self.rest_transcript, duration=duration)


def _json_response(ws: ServerConnection, status: HTTPStatus, body: dict[str, Any]) -> Response:
    response = ws.respond(status, json.dumps(body))
    headers = Headers(
        [(k, v) for k, v in response.headers.raw_items() if k.lower() != "content-type"]
    )
    headers["Content-Type"] = "application/json"
    return Response(response.status_code, response.reason_phrase, headers, response.body)


async def _play(ws: ServerConnection, items: list[Item]) -> bool:
    """Sends ``items``; ``False`` once the connection was dropped or closed."""
    for item in items:
        if isinstance(item, _Drop):
            ws.transport.abort()
            return False
        if isinstance(item, Close):
            await ws.close(item.code, item.reason)
            return False
        await ws.send(item if isinstance(item, str) else json.dumps(item))
    return True
