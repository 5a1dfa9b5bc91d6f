"""Deepgram speech to text: live streaming over a websocket, pre-recorded over REST.

Wire formats, from Deepgram's documentation:

- Live audio, ``wss://api.deepgram.com/v1/listen``
  (https://developers.deepgram.com/reference/speech-to-text/listen-streaming): the
  handshake carries ``Authorization: Token <key>`` and the options as query parameters.
  The client sends binary linear16 audio and the JSON control messages ``KeepAlive``
  (https://developers.deepgram.com/docs/audio-keep-alive), ``Finalize``
  (https://developers.deepgram.com/docs/finalize) and ``CloseStream``
  (https://developers.deepgram.com/docs/close-stream). The server sends ``Results``
  (``is_final``, ``speech_final``, ``start``, ``duration``, ``channel.alternatives``),
  ``SpeechStarted`` (``vad_events=true``), ``UtteranceEnd`` (``utterance_end_ms``) and
  ``Metadata``; after ``CloseStream`` it sends what is left and closes with code 1000
  (https://developers.deepgram.com/docs/understand-endpointing-interim-results,
  https://developers.deepgram.com/docs/utterance-end).
- Pre-recorded audio, ``POST https://api.deepgram.com/v1/listen``
  (https://developers.deepgram.com/reference/speech-to-text/listen-pre-recorded): the body
  is the audio (a WAV file here), the transcript is
  ``results.channels[0].alternatives[0]``.

Events follow LiveKit's ``livekit-plugins-deepgram`` (``stt.py``): ``SpeechStarted`` (or
the first words) gives START_OF_SPEECH once, non-empty results give INTERIM / FINAL
transcripts, and ``speech_final`` or ``UtteranceEnd`` gives END_OF_SPEECH once.
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
import os
import wave
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode, urlsplit, urlunsplit

import httpx
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import (
    ConnectionClosed,
    ConnectionClosedError,
    WebSocketException,
)

from callfleet.agents.errors import (
    APIConnectionError,
    APIError,
    APIStatusError,
    APITimeoutError,
)
from callfleet.agents.providers.base import (
    SpeechData,
    SpeechEvent,
    SpeechEventType,
    STTCapabilities,
)
from callfleet.agents.providers.ws import open_websocket
from callfleet.media.frame import PCM16, AudioFrame
from callfleet.media.resample import Resampler

logger = logging.getLogger(__name__)

DEFAULT_BASE_URL = "wss://api.deepgram.com/v1/listen"
API_KEY_ENV = "DEEPGRAM_API_KEY"

MSG_KEEPALIVE = json.dumps({"type": "KeepAlive"})
MSG_FINALIZE = json.dumps({"type": "Finalize"})
MSG_CLOSE_STREAM = json.dumps({"type": "CloseStream"})

#: Duration of the audio in one binary message (ms); Deepgram suggests 20 to 100 ms.
SEND_CHUNK_MS = 50


# -- wire format -----------------------------------------------------------------------


@dataclass(frozen=True)
class Results:
    """A ``Results`` message: one alternative of one stretch of audio."""

    is_final: bool
    speech_final: bool
    #: Where the stretch starts and how long it is, on the stream's clock (s).
    start_s: float
    duration_s: float
    transcript: str
    confidence: float
    #: First word's start and last word's end (s), when the words are given.
    words_start_s: float | None = None
    words_end_s: float | None = None
    from_finalize: bool = False

    @classmethod
    def parse(cls, data: dict[str, Any]) -> Results:
        channel = data.get("channel")
        alternatives = channel.get("alternatives") if isinstance(channel, dict) else None
        if not isinstance(alternatives, list) or not alternatives:
            raise ValueError("Deepgram Results message has no channel.alternatives")
        alt = alternatives[0]
        if not isinstance(alt, dict) or not isinstance(alt.get("transcript"), str):
            raise ValueError("Deepgram Results message has no alternatives[0].transcript")
        words = alt.get("words") or []
        return cls(
            is_final=bool(data.get("is_final")),
            speech_final=bool(data.get("speech_final")),
            start_s=float(data.get("start") or 0.0),
            duration_s=float(data.get("duration") or 0.0),
            transcript=alt["transcript"],
            confidence=float(alt.get("confidence") or 0.0),
            words_start_s=float(words[0].get("start") or 0.0) if words else None,
            words_end_s=float(words[-1].get("end") or 0.0) if words else None,
            from_finalize=bool(data.get("from_finalize")),
        )

    def speech_data(self, language: str) -> SpeechData:
        start = self.words_start_s if self.words_start_s is not None else self.start_s
        end = self.words_end_s if self.words_end_s is not None else self.start_s + self.duration_s
        return SpeechData(
            text=self.transcript,
            language=language,
            confidence=self.confidence,
            start_s=start,
            end_s=end,
        )


@dataclass(frozen=True)
class SpeechStarted:
    """``SpeechStarted``: Deepgram's VAD heard speech begin at ``timestamp_s``."""

    timestamp_s: float


@dataclass(frozen=True)
class UtteranceEnd:
    """``UtteranceEnd``: no new word for ``utterance_end_ms`` after ``last_word_end_s``."""

    last_word_end_s: float


@dataclass(frozen=True)
class ServerError:
    """An ``Error`` message (the SDKs' ``ErrorResponse``)."""

    description: str


ServerMessage = Results | SpeechStarted | UtteranceEnd | ServerError


def parse_server_message(text: str) -> ServerMessage | None:
    """One text message from the live endpoint; ``None`` for a type callfleet does not
    use (``Metadata``, new types). Raises ``ValueError`` for anything that is not a
    Deepgram message."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        raise ValueError(f"Deepgram sent a message that is not JSON: {text[:80]!r}") from None
    if not isinstance(data, dict) or not isinstance(data.get("type"), str):
        raise ValueError(f"Deepgram sent a message without a type: {text[:80]!r}")
    kind = data["type"]
    if kind == "Results":
        return Results.parse(data)
    if kind == "SpeechStarted":
        return SpeechStarted(float(data.get("timestamp") or 0.0))
    if kind == "UtteranceEnd":
        return UtteranceEnd(float(data.get("last_word_end") or 0.0))
    if kind == "Error":
        parts = [str(data[k]) for k in ("variant", "description", "message") if data.get(k)]
        return ServerError(": ".join(parts) or "unspecified error")
    return None


def parse_prerecorded(data: Any, language: str) -> SpeechEvent:
    """The FINAL_TRANSCRIPT of a pre-recorded ``/v1/listen`` answer."""
    try:
        channel = data["results"]["channels"][0]
        alt = channel["alternatives"][0]
        transcript = alt["transcript"]
    except (KeyError, IndexError, TypeError):
        raise ValueError(
            "Deepgram answer has no results.channels[0].alternatives[0].transcript"
        ) from None
    words = alt.get("words") or []
    duration = float((data.get("metadata") or {}).get("duration") or 0.0)
    return SpeechEvent(
        SpeechEventType.FINAL_TRANSCRIPT,
        [
            SpeechData(
                text=str(transcript),
                language=str(channel.get("detected_language") or language),
                confidence=float(alt.get("confidence") or 0.0),
                start_s=float(words[0].get("start") or 0.0) if words else 0.0,
                end_s=float(words[-1].get("end") or 0.0) if words else duration,
            )
        ],
    )


class EventMapper:
    """Turns Deepgram messages into ``SpeechEvent``s, with START / END once per utterance."""

    def __init__(self, language: str) -> None:
        self.language = language
        self.speaking = False

    def handle(self, msg: ServerMessage) -> list[SpeechEvent]:
        events: list[SpeechEvent] = []
        if isinstance(msg, SpeechStarted):
            events += self._start()
        elif isinstance(msg, Results):
            if msg.transcript:
                events += self._start()
                kind = (
                    SpeechEventType.FINAL_TRANSCRIPT
                    if msg.is_final
                    else SpeechEventType.INTERIM_TRANSCRIPT
                )
                events.append(SpeechEvent(kind, [msg.speech_data(self.language)]))
            if msg.speech_final:
                events += self._end()
        elif isinstance(msg, UtteranceEnd):
            events += self._end()
        return events

    def _start(self) -> list[SpeechEvent]:
        if self.speaking:
            return []
        self.speaking = True
        return [SpeechEvent(SpeechEventType.START_OF_SPEECH)]

    def _end(self) -> list[SpeechEvent]:
        if not self.speaking:
            return []
        self.speaking = False
        return [SpeechEvent(SpeechEventType.END_OF_SPEECH)]


# -- options ---------------------------------------------------------------------------


@dataclass
class _DeepgramOptions:
    model: str
    language: str | None
    api_key: str
    base_url: str
    batch_url: str
    sample_rate: int
    interim_results: bool
    endpointing_ms: int | None
    utterance_end_ms: int | None
    smart_format: bool
    keyterms: tuple[str, ...]
    connect_timeout_s: float
    request_timeout_s: float
    close_timeout_s: float
    keepalive_s: float | None


def _flag(value: bool) -> str:
    return "true" if value else "false"


def stream_query(opts: _DeepgramOptions, language: str | None) -> list[tuple[str, str]]:
    """The query parameters of the live handshake."""
    params = [
        ("encoding", "linear16"),
        ("sample_rate", str(opts.sample_rate)),
        ("channels", "1"),
        ("model", opts.model),
    ]
    if language:
        params.append(("language", language))
    params += [
        ("interim_results", _flag(opts.interim_results)),
        ("endpointing", "false" if opts.endpointing_ms is None else str(opts.endpointing_ms)),
        ("vad_events", "true"),
        ("smart_format", _flag(opts.smart_format)),
    ]
    if opts.utterance_end_ms is not None:
        params.append(("utterance_end_ms", str(opts.utterance_end_ms)))
    params += [("keyterm", k) for k in opts.keyterms]
    return params


def batch_url_for(base_url: str) -> str:
    """The REST URL of a live URL: ``wss://`` becomes ``https://``, ``ws://`` ``http://``."""
    parts = urlsplit(base_url)
    scheme = {"wss": "https", "ws": "http"}.get(parts.scheme, parts.scheme)
    return urlunsplit((scheme, *parts[1:]))


def _wav_bytes(audio: PCM16, sample_rate: int) -> bytes:
    buf = io.BytesIO()
    with wave.open(buf, "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(sample_rate)
        wav.writeframes(audio.astype("<i2", copy=False).tobytes())
    return buf.getvalue()


def _error_detail(body: str) -> str:
    """Deepgram's ``err_msg`` (or the start of the body) for an error message."""
    try:
        data = json.loads(body)
    except ValueError:
        return body[:200]
    if isinstance(data, dict):
        return str(data.get("err_msg") or data.get("message") or body[:200])
    return body[:200]


def _describe_close(exc: ConnectionClosed) -> str:
    if exc.rcvd is None:
        return "no close frame"
    reason = f" {exc.rcvd.reason}" if exc.rcvd.reason else ""
    return f"close code {exc.rcvd.code}{reason}"


# -- the provider ----------------------------------------------------------------------


class DeepgramSTT:
    """Deepgram STT: ``stream()`` for live calls, ``recognize()`` for one utterance.

    Options (keyword-only):

    - ``model``: Deepgram model, default ``"nova-3"``.
    - ``language``: BCP-47 tag, default ``"en-US"``; ``None`` leaves Deepgram's default.
    - ``api_key``: default the ``DEEPGRAM_API_KEY`` environment variable.
    - ``base_url``: live endpoint, default ``wss://api.deepgram.com/v1/listen``.
    - ``batch_url``: pre-recorded endpoint; default ``base_url`` with ``https://``.
    - ``sample_rate``: rate the audio is sent at (Hz), default 16000; frames of any
      rate are resampled to it.
    - ``interim_results``: send interim transcripts, default ``True``.
    - ``endpointing_ms``: silence that makes Deepgram finalize with ``speech_final``
      (ms), default 25; ``None`` disables endpointing.
    - ``utterance_end_ms``: gap after the last word before ``UtteranceEnd`` (ms),
      default 1000 (needs ``interim_results``); ``None`` disables it.
    - ``smart_format``: numbers, dates and punctuation formatted, default ``True``.
    - ``keyterms``: terms to boost (Nova-3 ``keyterm``), default none.
    - ``connect_timeout_s``: longest wait for the websocket handshake or the HTTP
      connection (s), default 10.
    - ``request_timeout_s``: longest wait for a pre-recorded answer (s), default 30.
    - ``close_timeout_s``: longest wait for the server to close the stream after
      ``CloseStream``, and for a close handshake (s), default 5.
    - ``keepalive_s``: idle time after which ``KeepAlive`` is sent (s), default 5;
      ``None`` disables it (Deepgram closes a stream idle for 10 s).
    """

    def __init__(
        self,
        *,
        model: str = "nova-3",
        language: str | None = "en-US",
        api_key: str | None = None,
        base_url: str = DEFAULT_BASE_URL,
        batch_url: str | None = None,
        sample_rate: int = 16000,
        interim_results: bool = True,
        endpointing_ms: int | None = 25,
        utterance_end_ms: int | None = 1000,
        smart_format: bool = True,
        keyterms: Sequence[str] = (),
        connect_timeout_s: float = 10.0,
        request_timeout_s: float = 30.0,
        close_timeout_s: float = 5.0,
        keepalive_s: float | None = 5.0,
    ) -> None:
        key = api_key if api_key is not None else os.environ.get(API_KEY_ENV, "")
        if not key:
            raise ValueError(f"Deepgram api_key is missing: pass api_key or set {API_KEY_ENV}")
        if sample_rate <= 0:
            raise ValueError(f"sample_rate must be a positive rate in Hz, got {sample_rate}")
        if keepalive_s is not None and keepalive_s <= 0:
            raise ValueError(f"keepalive_s must be positive or None, got {keepalive_s}")
        if isinstance(keyterms, str):
            raise ValueError(f"keyterms must be a sequence of terms, got the string {keyterms!r}")
        self._opts = _DeepgramOptions(
            model=model,
            language=language,
            api_key=key,
            base_url=base_url,
            batch_url=batch_url or batch_url_for(base_url),
            sample_rate=sample_rate,
            interim_results=interim_results,
            endpointing_ms=endpointing_ms,
            utterance_end_ms=utterance_end_ms,
            smart_format=smart_format,
            keyterms=tuple(keyterms),
            connect_timeout_s=connect_timeout_s,
            request_timeout_s=request_timeout_s,
            close_timeout_s=close_timeout_s,
            keepalive_s=keepalive_s,
        )
        self.label = f"deepgram:{model}"
        self.capabilities = STTCapabilities(streaming=True, interim_results=interim_results)
        self.sample_rate = sample_rate
        self._http: httpx.AsyncClient | None = None
        self._streams: set[DeepgramRecognizeStream] = set()

    async def recognize(
        self, audio: PCM16, sample_rate: int, *, language: str | None = None
    ) -> SpeechEvent:
        """One utterance through the pre-recorded endpoint (sent as a WAV file)."""
        opts = self._opts
        lang = language or opts.language
        params: list[tuple[str, str | int | float | bool | None]] = [
            ("model", opts.model),
            ("smart_format", _flag(opts.smart_format)),
        ]
        if lang:
            params.append(("language", lang))
        params += [("keyterm", k) for k in opts.keyterms]
        if self._http is None:
            self._http = httpx.AsyncClient(
                timeout=httpx.Timeout(opts.request_timeout_s, connect=opts.connect_timeout_s)
            )
        try:
            resp = await self._http.post(
                opts.batch_url,
                params=params,
                content=_wav_bytes(audio, sample_rate),
                headers={"Authorization": f"Token {opts.api_key}", "Content-Type": "audio/wav"},
            )
        except httpx.TimeoutException as e:
            raise APITimeoutError(
                f"no answer from {opts.batch_url} within {opts.request_timeout_s} s",
                provider=self.label,
            ) from e
        except httpx.HTTPError as e:
            raise APIConnectionError(
                f"cannot reach {opts.batch_url}: {e!r}", provider=self.label
            ) from e
        if resp.status_code >= 400:
            raise APIStatusError(
                f"pre-recorded request failed: {_error_detail(resp.text)}",
                status_code=resp.status_code,
                provider=self.label,
                body=resp.text,
            )
        try:
            return parse_prerecorded(resp.json(), lang or "")
        except ValueError as e:  # also json.JSONDecodeError
            raise APIError(f"bad pre-recorded answer: {e}", provider=self.label) from e

    def stream(self, *, language: str | None = None) -> DeepgramRecognizeStream:
        """A live session; connects at once (call from a running event loop)."""
        stream = DeepgramRecognizeStream(
            self._opts,
            language=language or self._opts.language,
            label=self.label,
            on_close=self._streams.discard,
        )
        self._streams.add(stream)
        return stream

    async def aclose(self) -> None:
        """Closes the open streams and the HTTP client."""
        await asyncio.gather(*(s.aclose() for s in list(self._streams)))
        if self._http is not None:
            http, self._http = self._http, None
            await http.aclose()


class DeepgramRecognizeStream:
    """One live Deepgram session (a ``RecognizeStream``).

    ``push_frame`` resamples to the STT's rate and queues ~50 ms binary messages;
    ``flush`` sends ``Finalize``; ``end_input`` sends ``CloseStream``, after which the
    iterator ends once Deepgram has sent its last results and closed. Errors are raised
    from the iterator. ``aclose`` stops at once (use ``end_input`` to drain).
    """

    def __init__(
        self,
        opts: _DeepgramOptions,
        *,
        language: str | None,
        label: str,
        on_close: Callable[[DeepgramRecognizeStream], None] | None = None,
    ) -> None:
        self._opts = opts
        self._label = label
        self._mapper = EventMapper(language or "")
        self._url = f"{opts.base_url}?{urlencode(stream_query(opts, language))}"
        self._chunk_bytes = 2 * (opts.sample_rate * SEND_CHUNK_MS // 1000)
        self._resampler: Resampler | None = None
        self._pending = bytearray()
        self._outbox: asyncio.Queue[bytes | str] = asyncio.Queue()
        self._events: asyncio.Queue[SpeechEvent | APIError | None] = asyncio.Queue()
        self._input_ended = False
        self._close_stream_sent = False
        self._exhausted = False
        self._closed = False
        self._on_close = on_close
        self._send_task: asyncio.Task[None] | None = None
        self._recv_task: asyncio.Task[None] | None = None
        self._run_task: asyncio.Task[None] = asyncio.create_task(
            self._run(), name=f"{label} stream"
        )

    # -- input (synchronous, called from the pipeline) --

    def push_frame(self, frame: AudioFrame) -> None:
        if self._input_ended:
            raise RuntimeError("push_frame() after end_input() or aclose()")
        if self._run_task.done():
            return  # the stream failed: the error waits for the reader, the audio is dropped
        if self._resampler is None or self._resampler.from_rate != frame.sample_rate:
            if self._resampler is not None:
                self._append(self._resampler.flush())
            self._resampler = Resampler(frame.sample_rate, self._opts.sample_rate)
        self._append(self._resampler.process(frame.samples))
        while len(self._pending) >= self._chunk_bytes:
            self._outbox.put_nowait(bytes(self._pending[: self._chunk_bytes]))
            del self._pending[: self._chunk_bytes]

    def flush(self) -> None:
        """Sends the audio queued so far, then ``Finalize``. (The resampler keeps its
        few samples of filter delay, so that the stream stays continuous.)"""
        if self._input_ended or self._run_task.done():
            return
        self._send_pending()
        self._outbox.put_nowait(MSG_FINALIZE)

    def end_input(self) -> None:
        """Sends the rest of the audio, then ``CloseStream``. Idempotent."""
        if self._input_ended:
            return
        if self._resampler is not None:
            self._append(self._resampler.flush())
        self._send_pending()
        self._outbox.put_nowait(MSG_CLOSE_STREAM)
        self._input_ended = True

    def _append(self, samples: PCM16) -> None:
        self._pending += samples.astype("<i2", copy=False).tobytes()

    def _send_pending(self) -> None:
        if self._pending:
            self._outbox.put_nowait(bytes(self._pending))
            self._pending.clear()

    # -- output --

    def __aiter__(self) -> DeepgramRecognizeStream:
        return self

    async def __anext__(self) -> SpeechEvent:
        if self._exhausted:
            raise StopAsyncIteration
        item = await self._events.get()
        if item is None:
            self._exhausted = True
            raise StopAsyncIteration
        if isinstance(item, APIError):
            self._exhausted = True
            raise item
        return item

    async def aclose(self) -> None:
        """Stops the session now (no final results); idempotent, bounded in time."""
        if self._closed:
            return
        self._closed = True
        self._input_ended = True
        tasks = [t for t in (self._send_task, self._recv_task, self._run_task) if t is not None]
        for task in tasks:
            task.cancel()
        _, pending = await asyncio.wait(tasks, timeout=self._opts.close_timeout_s + 1.0)
        if pending:
            logger.warning("%s: stream tasks still running after aclose()", self._label)
        self._events.put_nowait(None)  # wakes a reader still waiting
        if self._on_close is not None:
            self._on_close(self)

    # -- background --

    async def _run(self) -> None:
        ws: ClientConnection | None = None
        try:
            ws = await self._connect()
            self._send_task = asyncio.create_task(self._send_loop(ws))
            self._recv_task = asyncio.create_task(self._recv_loop(ws))
            await asyncio.wait(
                {self._send_task, self._recv_task}, return_when=asyncio.FIRST_COMPLETED
            )
            if not self._recv_task.done():
                self._send_task.result()  # re-raises a bug in the send loop
                try:
                    async with asyncio.timeout(self._opts.close_timeout_s):
                        await self._recv_task
                except TimeoutError:
                    raise APITimeoutError(
                        f"Deepgram did not close the stream within "
                        f"{self._opts.close_timeout_s} s of CloseStream",
                        provider=self._label,
                    ) from None
            self._recv_task.result()
            self._events.put_nowait(None)
        except APIError as e:
            logger.warning("%s: stream failed: %s", self._label, e)
            self._events.put_nowait(e)
        except Exception as e:
            logger.exception("%s: stream failed", self._label)
            self._events.put_nowait(APIError(f"stream failed: {e!r}", provider=self._label))
        finally:
            for task in (self._send_task, self._recv_task):
                if task is not None:
                    task.cancel()
            if ws is not None:
                try:
                    async with asyncio.timeout(self._opts.close_timeout_s):
                        await ws.close()
                except (TimeoutError, OSError, WebSocketException):
                    logger.debug("%s: websocket close did not complete", self._label)

    async def _connect(self) -> ClientConnection:
        opts = self._opts
        return await open_websocket(
            self._url,
            {"Authorization": f"Token {opts.api_key}"},
            provider=self._label,
            connect_timeout_s=opts.connect_timeout_s,
            close_timeout_s=opts.close_timeout_s,
            shown_url=opts.base_url,
            error_detail=_error_detail,
        )

    async def _send_loop(self, ws: ClientConnection) -> None:
        """Sends audio and control messages; ``KeepAlive`` after ``keepalive_s`` idle.
        Returns after ``CloseStream``, or when the connection closes (the receive loop
        reports why)."""
        keepalive_s = self._opts.keepalive_s
        try:
            while True:
                try:
                    async with asyncio.timeout(keepalive_s):
                        item = await self._outbox.get()
                except TimeoutError:
                    await ws.send(MSG_KEEPALIVE)
                    continue
                if item == MSG_CLOSE_STREAM:
                    self._close_stream_sent = True  # before the server can answer it
                await ws.send(item)
                if item == MSG_CLOSE_STREAM:
                    return
        except ConnectionClosed:
            return

    async def _recv_loop(self, ws: ClientConnection) -> None:
        try:
            async for message in ws:
                if isinstance(message, bytes):
                    logger.debug("%s: ignoring a binary message", self._label)
                    continue
                try:
                    msg = parse_server_message(message)
                except ValueError as e:
                    raise APIError(str(e), provider=self._label) from e
                if isinstance(msg, ServerError):
                    raise APIError(f"Deepgram error: {msg.description}", provider=self._label)
                if msg is None:
                    logger.debug("%s: ignoring message %.80s", self._label, message)
                    continue
                for event in self._mapper.handle(msg):
                    self._events.put_nowait(event)
        except ConnectionClosedError as e:
            raise APIConnectionError(
                f"Deepgram connection dropped ({_describe_close(e)})", provider=self._label
            ) from e
        if not self._close_stream_sent:
            detail = "no close frame"
            if ws.close_code is not None:
                detail = f"close code {ws.close_code} {ws.close_reason or ''}".strip()
            raise APIConnectionError(
                f"Deepgram closed the stream before CloseStream ({detail})",
                provider=self._label,
            )
