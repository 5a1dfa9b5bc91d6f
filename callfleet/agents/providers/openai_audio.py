"""OpenAI-compatible speech-to-text and text-to-speech over HTTP.

- ``OpenAISTT``: ``POST /audio/transcriptions``, a multipart form with one WAV ``file``,
  ``model``, ``language`` and ``response_format=json``, answered with ``{"text": ...}``.
  API reference "Audio → Create transcription":
  https://platform.openai.com/docs/api-reference/audio/createTranscription
- ``OpenAITTS``: ``POST /audio/speech`` with ``response_format: "pcm"``: raw 24 kHz
  16-bit signed little-endian mono samples with no header, sent while they are
  synthesized. API reference "Audio → Create speech":
  https://platform.openai.com/docs/api-reference/audio/createSpeech
"""

from __future__ import annotations

import asyncio
import io
import logging
import wave
from collections.abc import AsyncIterator
from typing import Any

import httpx

from callfleet.agents.errors import APIError
from callfleet.agents.providers.base import (
    RecognizeStream,
    SpeechData,
    SpeechEvent,
    SpeechEventType,
    STTCapabilities,
    TTSCapabilities,
)
from callfleet.agents.providers.openai_http import (
    DEFAULT_TIMEOUT_S,
    OPENAI_BASE_URL,
    SNIPPET_CHARS,
    OpenAIHTTPBase,
)
from callfleet.media.frame import PCM16, AudioFrame
from callfleet.media.resample import resample

logger = logging.getLogger(__name__)

#: Rate of ``response_format: "pcm"`` speech (Hz), fixed by the API.
PCM_SAMPLE_RATE = 24000
#: Rate of the WAV files sent for transcription (Hz).
STT_SAMPLE_RATE = 16000


def _wav_bytes(samples: PCM16, sample_rate: int) -> bytes:
    """A mono PCM16 WAV file in memory."""
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(sample_rate)
        out.writeframes(samples.astype("<i2", copy=False).tobytes())
    return buffer.getvalue()


class OpenAISTT(OpenAIHTTPBase):
    """OpenAI (or compatible, e.g. a faster-whisper server) transcription of whole
    utterances. Not streaming: the pipeline's VAD cuts the utterances.

    Args:
        model: default ``gpt-4o-mini-transcribe`` (``whisper-1`` works too).
        base_url, api_key, timeout_s, extra_headers, client: as for ``OpenAILLM``;
            ``timeout_s`` (default 10) bounds the whole request.
        language: ISO-639-1 code of the speech (``en-US`` is sent as ``en``); ``""``
            lets the model detect it. Default ``en``.
    """

    capabilities = STTCapabilities(streaming=False)
    sample_rate = STT_SAMPLE_RATE

    def __init__(
        self,
        model: str = "gpt-4o-mini-transcribe",
        *,
        base_url: str = OPENAI_BASE_URL,
        api_key: str | None = None,
        language: str = "en",
        timeout_s: float = DEFAULT_TIMEOUT_S,
        extra_headers: dict[str, str] | None = None,
        client: httpx.AsyncClient | None = None,
    ) -> None:
        super().__init__(
            model,
            base_url=base_url,
            api_key=api_key,
            timeout_s=timeout_s,
            extra_headers=extra_headers,
            client=client,
        )
        self.language = language

    async def recognize(
        self, audio: PCM16, sample_rate: int, *, language: str | None = None
    ) -> SpeechEvent:
        """Transcribe one utterance (int16 mono at ``sample_rate`` Hz, sent as a 16 kHz
        WAV file); returns a FINAL_TRANSCRIPT event."""
        language = (self.language if language is None else language).split("-")[0]
        samples = resample(audio, sample_rate, STT_SAMPLE_RATE)
        duration_s = len(samples) / STT_SAMPLE_RATE
        if len(samples) == 0:
            return SpeechEvent(SpeechEventType.FINAL_TRANSCRIPT, [SpeechData("", language)])
        form = {"model": self.model, "response_format": "json"}
        if language:
            form["language"] = language
        upload = {"file": ("audio.wav", _wav_bytes(samples, STT_SAMPLE_RATE), "audio/wav")}
        with self._errors("transcription"):
            async with asyncio.timeout(self._timeout_s):
                response = await self._client.post(
                    self._url("/audio/transcriptions"),
                    data=form,
                    files=upload,
                    headers=self._headers,
                    timeout=self._timeout,
                )
                await self._raise_for_status(response)
        try:
            text = response.json()["text"]
            if not isinstance(text, str):
                raise TypeError(f"text is {type(text).__name__}")
        except (ValueError, KeyError, TypeError) as e:
            raise APIError(
                f"transcription response has no text ({e!r}): {response.text[:SNIPPET_CHARS]!r}",
                provider=self.label,
            ) from e
        data = SpeechData(text.strip(), language, end_s=duration_s)
        return SpeechEvent(SpeechEventType.FINAL_TRANSCRIPT, [data])

    def stream(self, *, language: str | None = None) -> RecognizeStream:
        raise NotImplementedError(
            f"{self.label} transcribes whole utterances: use recognize() (capabilities."
            "streaming is False)"
        )


# -- TTS -------------------------------------------------------------------------------


class OpenAITTS(OpenAIHTTPBase):
    """OpenAI (or compatible) speech synthesis, streamed as raw 24 kHz PCM.

    Args:
        model: default ``gpt-4o-mini-tts`` (``tts-1`` and ``tts-1-hd`` work too).
        voice: voice name, default ``alloy``.
        instructions: how to speak (tone, accent, pace); ``None`` (default) sends none.
            Ignored by ``tts-1`` and ``tts-1-hd``.
        speed: 0.25 to 4.0; ``None`` (default) is the server's 1.0.
        base_url, api_key, timeout_s, extra_headers, client: as for ``OpenAILLM``;
            ``timeout_s`` (default 10) bounds the wait for the first audio and the
            longest gap in the stream.
    """

    capabilities = TTSCapabilities(streaming=True)
    sample_rate = PCM_SAMPLE_RATE

    def __init__(
        self,
        model: str = "gpt-4o-mini-tts",
        *,
        voice: str = "alloy",
        base_url: str = OPENAI_BASE_URL,
        api_key: str | None = None,
        instructions: str | None = None,
        speed: float | None = None,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        extra_headers: dict[str, str] | None = None,
        client: httpx.AsyncClient | None = None,
    ) -> None:
        if speed is not None and not 0.25 <= speed <= 4.0:
            raise ValueError(f"speed must be between 0.25 and 4.0, got {speed!r}")
        if not voice:
            raise ValueError("voice must not be empty")
        super().__init__(
            model,
            base_url=base_url,
            api_key=api_key,
            timeout_s=timeout_s,
            extra_headers=extra_headers,
            client=client,
        )
        self.voice = voice
        self.instructions = instructions
        self.speed = speed

    def request_body(self, text: str) -> dict[str, Any]:
        """The JSON body ``synthesize()`` posts to ``/audio/speech``."""
        body: dict[str, Any] = {
            "model": self.model,
            "input": text,
            "voice": self.voice,
            "response_format": "pcm",
        }
        if self.instructions is not None:
            body["instructions"] = self.instructions
        if self.speed is not None:
            body["speed"] = self.speed
        return body

    async def synthesize(self, text: str) -> AsyncIterator[AudioFrame]:
        """Frames of int16 samples at 24 kHz, one per piece of the body as it arrives (a
        sample split between two pieces goes out with the second)."""
        if not text.strip():
            return
        carry = b""
        sent = 0  # samples yielded so far, for the frames' timestamps
        with self._errors("audio"):
            async with (
                asyncio.timeout(self._timeout_s) as first_audio,
                self._client.stream(
                    "POST",
                    self._url("/audio/speech"),
                    json=self.request_body(text),
                    headers=self._headers,
                    timeout=self._timeout,
                ) as response,
            ):
                await self._raise_for_status(response)
                await self._refuse_json(response, "audio/pcm")
                async for piece in response.aiter_bytes():
                    first_audio.reschedule(None)  # from here on, httpx's read timeout
                    data = carry + piece if carry else piece
                    whole = len(data) & ~1
                    carry = data[whole:]
                    if whole:
                        frame = AudioFrame.from_bytes(
                            data[:whole], PCM_SAMPLE_RATE, timestamp_s=sent / PCM_SAMPLE_RATE
                        )
                        sent += whole // 2
                        yield frame
        if carry:
            logger.warning("%s: speech ended with half a sample; dropped 1 byte", self.label)
