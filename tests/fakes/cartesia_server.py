"""A local Cartesia TTS websocket for tests, on a 127.0.0.1 free port, speaking the
documented format (https://docs.cartesia.ai/api-reference/tts/websocket): a generation
request with a ``context_id`` is answered with ``chunk`` messages (base64 ``pcm_s16le``
at the requested ``sample_rate``), then ``done``; ``{"context_id", "cancel": true}``
stops a generation. Each generation runs in its own task, so concurrent contexts
interleave on the connection as they do on Cartesia.

Scripted per transcript: ``frequencies`` (the tone's pitch, default ``frequency_hz``),
``errors`` (an error message instead of audio), ``stall`` (never answered), ``drop_on``
(the TCP connection is aborted). Records connections, handshake headers, requests,
cancels and the exact audio bytes sent per context.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from http import HTTPStatus
from types import TracebackType
from typing import Any
from urllib.parse import parse_qs, urlsplit

import numpy as np
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from callfleet.media.frame import PCM16


def tone(frequency_hz: float, duration_ms: int, sample_rate: int) -> PCM16:
    n = sample_rate * duration_ms // 1000
    t = np.arange(n) / sample_rate
    return (8000 * np.sin(2 * np.pi * frequency_hz * t)).astype(np.int16)


@dataclass
class CartesiaConnection:
    headers: dict[str, str]
    query: dict[str, list[str]]
    ended: asyncio.Event = field(default_factory=asyncio.Event)


class FakeCartesiaServer:
    """``async with FakeCartesiaServer() as car:`` then ``CartesiaTTS(base_url=car.url,
    api_key=car.api_key)``."""

    def __init__(
        self,
        *,
        api_key: str = "car-test-key",
        duration_ms: int = 300,
        chunk_bytes: int = 4800,
        chunk_interval_s: float = 0.002,
        frequency_hz: float = 440.0,
    ) -> None:
        self.api_key = api_key
        self.duration_ms = duration_ms
        self.chunk_bytes = chunk_bytes
        self.chunk_interval_s = chunk_interval_s
        self.frequency_hz = frequency_hz
        self.frequencies: dict[str, float] = {}
        self.errors: dict[str, dict[str, Any]] = {}
        self.stall: set[str] = set()
        self.drop_on: set[str] = set()
        self.connections: list[CartesiaConnection] = []
        self.requests: list[dict[str, Any]] = []
        self.cancels: list[str] = []
        #: context_id → the PCM bytes sent for it.
        self.sent: dict[str, bytearray] = {}
        self._server: Server | None = None
        self._changed = asyncio.Condition()

    @property
    def url(self) -> str:
        assert self._server is not None, "server not started"
        port = self._server.sockets[0].getsockname()[1]
        return f"ws://127.0.0.1:{port}/tts/websocket"

    async def start(self) -> FakeCartesiaServer:
        self._server = await serve(
            self._handle, "127.0.0.1", 0, process_request=self._process_request
        )
        return self

    async def aclose(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(2.0):
                    await self._server.wait_closed()

    async def __aenter__(self) -> FakeCartesiaServer:
        return await self.start()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def send_raw(self, text: str) -> None:
        """Sends ``text`` as is on every open connection (for malformed messages)."""
        assert self._server is not None, "server not started"
        for ws in self._server.connections:
            await ws.send(text)

    def request_for(self, transcript: str) -> dict[str, Any]:
        (req,) = [r for r in self.requests if r.get("transcript") == transcript]
        return req

    def _process_request(self, ws: ServerConnection, request: Request) -> Response | None:
        url = urlsplit(request.path)
        if url.path != "/tts/websocket":
            return ws.respond(HTTPStatus.NOT_FOUND, "not found\n")
        query = parse_qs(url.query)
        key = request.headers.get("X-API-Key") or query.get("api_key", [""])[0]
        if key != self.api_key:
            return ws.respond(HTTPStatus.UNAUTHORIZED, '{"error":"Invalid API key"}')
        if not (request.headers.get("Cartesia-Version") or query.get("cartesia_version")):
            return ws.respond(HTTPStatus.BAD_REQUEST, '{"error":"Cartesia-Version is missing"}')
        return None

    async def wait_until(self, predicate: Callable[[], bool], timeout_s: float = 5.0) -> None:
        """Returns once ``predicate()`` holds (checked on every connection, request and
        cancel)."""
        async with asyncio.timeout(timeout_s), self._changed:
            await self._changed.wait_for(predicate)

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    async def _handle(self, ws: ServerConnection) -> None:
        assert ws.request is not None
        conn = CartesiaConnection(
            headers=dict(ws.request.headers.raw_items()),
            query=parse_qs(urlsplit(ws.request.path).query),
        )
        self.connections.append(conn)
        await self._notify()
        generations: dict[str, asyncio.Task[None]] = {}
        try:
            async for message in ws:
                req = json.loads(message)
                context_id = str(req.get("context_id", ""))
                if req.get("cancel"):
                    self.cancels.append(context_id)
                    await self._notify()
                    task = generations.pop(context_id, None)
                    if task is not None:
                        task.cancel()
                    continue
                self.requests.append(req)
                await self._notify()
                transcript = str(req.get("transcript", ""))
                if transcript in self.drop_on:
                    ws.transport.abort()
                    return
                generations[context_id] = asyncio.create_task(self._generate(ws, req))
        except ConnectionClosed:
            pass
        finally:
            for task in generations.values():
                task.cancel()
            conn.ended.set()

    async def _generate(self, ws: ServerConnection, req: dict[str, Any]) -> None:
        context_id = str(req.get("context_id", ""))
        transcript = str(req.get("transcript", ""))
        fmt = req.get("output_format") or {}
        with contextlib.suppress(ConnectionClosed):
            if transcript in self.stall:
                return
            if transcript in self.errors:
                await ws.send(
                    json.dumps(
                        {"type": "error", "done": True, "context_id": context_id}
                        | self.errors[transcript]
                    )
                )
                return
            problem = _invalid(req, fmt)
            if problem:
                await ws.send(
                    json.dumps(
                        {
                            "type": "error",
                            "done": True,
                            "error": problem,
                            "status_code": 400,
                            "context_id": context_id,
                        }
                    )
                )
                return
            freq = self.frequencies.get(transcript, self.frequency_hz)
            pcm = tone(freq, self.duration_ms, int(fmt["sample_rate"])).astype("<i2").tobytes()
            sent = self.sent.setdefault(context_id, bytearray())
            for i in range(0, len(pcm), self.chunk_bytes):
                part = pcm[i : i + self.chunk_bytes]
                await ws.send(
                    json.dumps(
                        {
                            "type": "chunk",
                            "data": base64.b64encode(part).decode(),
                            "done": False,
                            "status_code": 206,
                            "step_time": 1.0,
                            "context_id": context_id,
                        }
                    )
                )
                sent += part
                await asyncio.sleep(self.chunk_interval_s)
            await ws.send(
                json.dumps(
                    {"type": "done", "done": True, "status_code": 206, "context_id": context_id}
                )
            )


def _invalid(req: dict[str, Any], fmt: dict[str, Any]) -> str:
    """What is wrong with a generation request, as Cartesia would say it, or ``""``."""
    for name in ("model_id", "transcript", "voice", "context_id"):
        if not req.get(name):
            return f"Invalid request: {name} is required"
    if fmt.get("container") != "raw" or fmt.get("encoding") != "pcm_s16le":
        return "Invalid output_format: this fake speaks raw pcm_s16le only"
    if fmt.get("sample_rate") not in (8000, 16000, 22050, 24000, 44100, 48000):
        return f"Invalid output_format: sample_rate {fmt.get('sample_rate')!r}"
    return ""
