"""OpenAI-compatible LLM, speech-to-text and text-to-speech, over plain HTTP (``httpx``,
not the OpenAI SDK).

The same classes talk to OpenAI and to servers that copy its REST API (vLLM, Ollama, the
llama.cpp server, speaches / faster-whisper servers): point ``base_url`` at them; local
servers need no API key (pass ``api_key=""``, or leave ``OPENAI_API_KEY`` unset).

- ``OpenAILLM`` (``openai_llm``): streamed ``POST /chat/completions``,
  https://platform.openai.com/docs/api-reference/chat
- ``OpenAISTT`` (``openai_audio``): ``POST /audio/transcriptions``,
  https://platform.openai.com/docs/api-reference/audio/createTranscription
- ``OpenAITTS`` (``openai_audio``): ``POST /audio/speech`` as raw 24 kHz PCM,
  https://platform.openai.com/docs/api-reference/audio/createSpeech

Failures are callfleet errors (``openai_http``): ``APIStatusError`` for an HTTP error
status (with the server's ``error.message``), ``APIConnectionError`` when the server
cannot be reached, ``APITimeoutError`` when nothing arrives within ``timeout_s``, and
``APIError`` for an error or a malformed chunk inside a stream.
"""

from __future__ import annotations

from callfleet.agents.providers.openai_audio import (
    PCM_SAMPLE_RATE,
    STT_SAMPLE_RATE,
    OpenAISTT,
    OpenAITTS,
)
from callfleet.agents.providers.openai_http import DEFAULT_TIMEOUT_S, OPENAI_BASE_URL
from callfleet.agents.providers.openai_llm import (
    TOOL_CHOICE_MODES,
    OpenAILLM,
    chat_messages,
    tool_choice_param,
)

__all__ = [
    "DEFAULT_TIMEOUT_S",
    "OPENAI_BASE_URL",
    "PCM_SAMPLE_RATE",
    "STT_SAMPLE_RATE",
    "TOOL_CHOICE_MODES",
    "OpenAILLM",
    "OpenAISTT",
    "OpenAITTS",
    "chat_messages",
    "tool_choice_param",
]
