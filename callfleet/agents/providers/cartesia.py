"""Cartesia text to speech over one long-lived websocket.

Wire format, from Cartesia's "Text to Speech (WebSocket)" reference
(https://docs.cartesia.ai/api-reference/tts/websocket) and API conventions
(https://docs.cartesia.ai/use-the-api/api-conventions): the handshake to
``wss://api.cartesia.ai/tts/websocket`` carries ``X-API-Key`` and ``Cartesia-Version``.
Each generation request names a ``context_id``; the server answers with ``chunk``
messages (base64 ``data``), then ``done``, or an ``error`` (``error`` or ``title`` /
``message``, with a ``status_code``), each carrying the ``context_id``, so several
generations share the connection. ``{"context_id": ..., "cancel": true}`` stops one.
Cartesia recommends one websocket for many generations, opened before the first.

Message handling follows LiveKit's ``livekit-plugins-cartesia`` (``tts.py``).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import logging
import os
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed, WebSocketException
from websockets.protocol import State

from callfleet.agents.errors import (
    APIConnectionError,
    APIError,
    APIStatusError,
    APITimeoutError,
)
from callfleet.agents.providers.base import TTSCapabilities
from callfleet.agents.providers.ws import open_websocket
from callfleet.media.frame import AudioFrame

logger = logging.getLogger(__name__)

DEFAULT_BASE_URL = "wss://api.cartesia.ai/tts/websocket"
DEFAULT_API_VERSION = "2025-04-16"
API_KEY_ENV = "CARTESIA_API_KEY"
API_KEY_HEADER = "X-API-Key"
API_VERSION_HEADER = "Cartesia-Version"
#: The voice of the examples in Cartesia's API reference.
DEFAULT_VOICE_ID = "a0e99841-438c-4a64-b679-ae501e7d6091"
#: Sample rates Cartesia's ``output_format`` accepts (Hz).
SAMPLE_RATES = (8000, 16000, 22050, 24000, 44100, 48000)


# -- wire format -----------------------------------------------------------------------


@dataclass(frozen=True)
class GenerationRequest:
    model_id: str
    transcript: str
    voice_id: str
    language: str
    sample_rate: int
    context_id: str

    def to_json(self) -> str:
        return json.dumps(
            {
                "model_id": self.model_id,
                "transcript": self.transcript,
                "voice": {"mode": "id", "id": self.voice_id},
                "output_format": {
                    "container": "raw",
                    "encoding": "pcm_s16le",
                    "sample_rate": self.sample_rate,
                },
                "language": self.language,
                "context_id": self.context_id,
                "continue": False,
            }
        )


def cancel_request(context_id: str) -> str:
    return json.dumps({"context_id": context_id, "cancel": True})


@dataclass(frozen=True)
class Chunk:
    context_id: str
    audio: bytes


@dataclass(frozen=True)
class Done:
    context_id: str


@dataclass(frozen=True)
class ErrorMessage:
    #: ``""`` when the error concerns the connection, not one generation.
    context_id: str
    message: str
    status_code: int | None

    def to_error(self, provider: str) -> APIError:
        if self.status_code is not None and self.status_code >= 400:
            return APIStatusError(self.message, status_code=self.status_code, provider=provider)
        return APIError(self.message, provider=provider)


@dataclass(frozen=True)
class Other:
    """A message callfleet does not use (``timestamps``, ``flush_done``, ...)."""

    context_id: str
    type: str


ServerMessage = Chunk | Done | ErrorMessage | Other


def parse_server_message(text: str) -> ServerMessage:
    """One text message from the websocket; ``ValueError`` for anything else."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        raise ValueError(f"Cartesia sent a message that is not JSON: {text[:80]!r}") from None
    if not isinstance(data, dict) or not isinstance(data.get("type"), str):
        raise ValueError(f"Cartesia sent a message without a type: {text[:80]!r}")
    kind: str = data["type"]
    context_id = str(data.get("context_id") or "")
    if kind == "chunk":
        if not isinstance(data.get("data"), str):
            raise ValueError("Cartesia chunk message has no data")
        try:
            audio = base64.b64decode(data["data"], validate=True)
        except binascii.Error:
            raise ValueError("Cartesia chunk message data is not base64") from None
        return Chunk(context_id, audio)
    if kind == "done":
        return Done(context_id)
    if kind == "error":
        parts = [str(data[k]) for k in ("title", "message", "error") if data.get(k)]
        code = data.get("status_code")
        return ErrorMessage(
            context_id,
            ": ".join(parts) or "unspecified error",
            code if isinstance(code, int) else None,
        )
    return Other(context_id, kind)


# -- the provider ----------------------------------------------------------------------


@dataclass
class _CartesiaOptions:
    model: str
    voice: str
    language: str
    api_key: str
    base_url: str
    api_version: str
    sample_rate: int
    connect_timeout_s: float
    timeout_s: float
    close_timeout_s: float


_Inbox = asyncio.Queue[ServerMessage | APIError]


class CartesiaTTS:
    """Cartesia Sonic over one websocket, reused by every ``synthesize`` call.

    Options (keyword-only):

    - ``model``: Cartesia model id, default ``"sonic-2"``.
    - ``voice``: voice id, default ``DEFAULT_VOICE_ID`` (from Cartesia's examples).
    - ``language``: language of the text, default ``"en"``.
    - ``api_key``: default the ``CARTESIA_API_KEY`` environment variable.
    - ``base_url``: websocket endpoint, default ``wss://api.cartesia.ai/tts/websocket``.
    - ``api_version``: the ``Cartesia-Version`` header, default ``"2025-04-16"``.
    - ``sample_rate``: rate of the audio asked for and of the frames (Hz), default 24000.
    - ``connect_timeout_s``: longest wait for the websocket handshake (s), default 10.
    - ``timeout_s``: longest wait for the next message of a generation (its first audio,
      or the next chunk) (s), default 10.
    - ``close_timeout_s``: longest wait for the close handshake (s), default 2.

    The connection opens on the first ``synthesize`` (or ``connect()``) and again after
    it closes; concurrent generations share it, told apart by ``context_id``.
    """

    capabilities = TTSCapabilities(streaming=True)

    def __init__(
        self,
        *,
        model: str = "sonic-2",
        voice: str = DEFAULT_VOICE_ID,
        language: str = "en",
        api_key: str | None = None,
        base_url: str = DEFAULT_BASE_URL,
        api_version: str = DEFAULT_API_VERSION,
        sample_rate: int = 24000,
        connect_timeout_s: float = 10.0,
        timeout_s: float = 10.0,
        close_timeout_s: float = 2.0,
    ) -> None:
        key = api_key if api_key is not None else os.environ.get(API_KEY_ENV, "")
        if not key:
            raise ValueError(f"Cartesia api_key is missing: pass api_key or set {API_KEY_ENV}")
        if sample_rate not in SAMPLE_RATES:
            raise ValueError(
                f"sample_rate must be one of {', '.join(map(str, SAMPLE_RATES))} Hz, "
                f"got {sample_rate}"
            )
        self._opts = _CartesiaOptions(
            model=model,
            voice=voice,
            language=language,
            api_key=key,
            base_url=base_url,
            api_version=api_version,
            sample_rate=sample_rate,
            connect_timeout_s=connect_timeout_s,
            timeout_s=timeout_s,
            close_timeout_s=close_timeout_s,
        )
        self.label = f"cartesia:{model}"
        self.sample_rate = sample_rate
        self._ws: ClientConnection | None = None
        self._connect_lock = asyncio.Lock()
        self._recv_task: asyncio.Task[None] | None = None
        self._contexts: dict[str, _Inbox] = {}
        self._closed = False

    async def connect(self) -> None:
        """Opens the websocket now, so that the first generation does not wait for it."""
        await self._connection()

    async def synthesize(self, text: str) -> AsyncIterator[AudioFrame]:
        """Frames of ``text`` spoken, as the chunks arrive (no frames for blank text).
        Stopping early (``aclose()`` on the iterator) cancels the generation."""
        if not text.strip():
            return
        opts = self._opts
        context_id = str(uuid.uuid4())
        request = GenerationRequest(
            opts.model, text, opts.voice, opts.language, opts.sample_rate, context_id
        )
        ws = await self._connection()
        inbox: _Inbox = asyncio.Queue()
        self._contexts[context_id] = inbox
        finished = False
        try:
            try:
                async with asyncio.timeout(opts.timeout_s):
                    await ws.send(request.to_json())
            except ConnectionClosed as e:
                finished = True
                raise APIConnectionError(
                    "Cartesia connection closed before the request was sent", provider=self.label
                ) from e
            except TimeoutError:
                raise APITimeoutError(
                    f"could not send the request within {opts.timeout_s} s", provider=self.label
                ) from None
            samples = 0
            carry = b""  # an odd byte left over from the previous chunk
            while True:
                try:
                    async with asyncio.timeout(opts.timeout_s):
                        msg = await inbox.get()
                except TimeoutError:
                    raise APITimeoutError(
                        f"no audio from Cartesia for {opts.timeout_s} s", provider=self.label
                    ) from None
                if isinstance(msg, APIError):
                    finished = True
                    raise msg
                if isinstance(msg, Chunk):
                    data = carry + msg.audio
                    even = len(data) - len(data) % 2
                    carry = data[even:]
                    if even:
                        frame = AudioFrame.from_bytes(
                            data[:even], opts.sample_rate, timestamp_s=samples / opts.sample_rate
                        )
                        samples += len(frame.samples)
                        yield frame
                elif isinstance(msg, Done):
                    finished = True
                    return
                elif isinstance(msg, ErrorMessage):
                    finished = True
                    raise msg.to_error(self.label)
        finally:
            self._contexts.pop(context_id, None)
            if not finished:
                await self._cancel(ws, context_id)

    async def aclose(self) -> None:
        """Closes the connection; generations still running fail. Idempotent."""
        if self._closed:
            return
        self._closed = True
        ws, self._ws = self._ws, None
        if self._recv_task is not None:
            self._recv_task.cancel()
            await asyncio.wait([self._recv_task], timeout=self._opts.close_timeout_s)
        if ws is not None:
            await self._close_ws(ws)
        self._fail_all(APIConnectionError("CartesiaTTS was closed", provider=self.label))

    # -- connection --

    async def _connection(self) -> ClientConnection:
        if self._closed:
            raise APIConnectionError("CartesiaTTS is closed", provider=self.label, retryable=False)
        async with self._connect_lock:
            if self._ws is not None and self._ws.state is State.OPEN:
                return self._ws
            ws = await self._open()
            if self._closed:  # aclose() ran while connecting
                await self._close_ws(ws)
                raise APIConnectionError("CartesiaTTS is closed", provider=self.label)
            self._ws = ws
            self._recv_task = asyncio.create_task(self._recv_loop(ws), name=f"{self.label} recv")
            return ws

    async def _open(self) -> ClientConnection:
        opts = self._opts
        headers = {API_KEY_HEADER: opts.api_key, API_VERSION_HEADER: opts.api_version}
        return await open_websocket(
            opts.base_url,
            headers,
            provider=self.label,
            connect_timeout_s=opts.connect_timeout_s,
            close_timeout_s=opts.close_timeout_s,
        )

    async def _recv_loop(self, ws: ClientConnection) -> None:
        """Routes each message to its generation by ``context_id``; when the connection
        ends, every generation still waiting fails."""
        error: APIError
        try:
            async for raw in ws:
                if isinstance(raw, bytes):
                    logger.debug("%s: ignoring a binary message", self.label)
                    continue
                try:
                    msg = parse_server_message(raw)
                except ValueError as e:
                    error = APIError(str(e), provider=self.label)
                    await self._close_ws(ws)
                    break
                inbox = self._contexts.get(msg.context_id)
                if inbox is not None:
                    inbox.put_nowait(msg)
                elif isinstance(msg, ErrorMessage) and not msg.context_id:
                    self._fail_all(msg.to_error(self.label))
                else:
                    logger.debug("%s: message for no waiting context: %.80s", self.label, raw)
            else:
                error = APIConnectionError(
                    f"Cartesia closed the connection (close code {ws.close_code})",
                    provider=self.label,
                )
        except ConnectionClosed as e:
            detail = f"close code {e.rcvd.code}" if e.rcvd is not None else "no close frame"
            error = APIConnectionError(
                f"Cartesia connection dropped ({detail})", provider=self.label
            )
        if self._ws is ws:
            self._ws = None
        self._fail_all(error)

    def _fail_all(self, error: APIError) -> None:
        for inbox in self._contexts.values():
            inbox.put_nowait(error)

    async def _cancel(self, ws: ClientConnection, context_id: str) -> None:
        """Best effort: tells Cartesia to stop a generation nobody reads any more."""
        if ws.state is not State.OPEN:
            return
        try:
            async with asyncio.timeout(self._opts.close_timeout_s):
                await ws.send(cancel_request(context_id))
        except (TimeoutError, ConnectionClosed):
            logger.debug("%s: could not cancel context %s", self.label, context_id)

    async def _close_ws(self, ws: ClientConnection) -> None:
        try:
            async with asyncio.timeout(self._opts.close_timeout_s + 1.0):
                await ws.close()
        except (TimeoutError, OSError, WebSocketException):
            logger.debug("%s: websocket close did not complete", self.label)
