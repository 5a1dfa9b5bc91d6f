"""An OpenAI-compatible chat model, streamed (OpenAI, vLLM, Ollama, llama.cpp server).

``POST /chat/completions`` with ``stream: true`` and ``stream_options.include_usage``; the
reply comes as server-sent events whose ``data:`` lines are ``chat.completion.chunk``
objects, ending with ``data: [DONE]``. Text arrives in ``choices[0].delta.content``; tool
calls in ``choices[0].delta.tool_calls`` pieces that share an ``index`` (the first carries
``id`` and ``function.name``, the rest pieces of ``function.arguments``); the last chunk
before ``[DONE]`` has empty ``choices`` and the ``usage``. An ``error`` object inside the
stream, a chunk that is not JSON (or not shaped like a chunk), a JSON body where the
stream should be, and a stream that ends before a ``finish_reason`` or ``[DONE]`` raise
``APIError``.

References: API reference "Chat Completions → Create chat completion" and "The chat
completion chunk object", https://platform.openai.com/docs/api-reference/chat ; guide
"Function calling → Streaming", https://platform.openai.com/docs/guides/function-calling
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx

from callfleet.agents.chat import ChatChunk, ChatContext, ChatMessage, FunctionCall
from callfleet.agents.errors import APIError
from callfleet.agents.providers.base import ToolChoice
from callfleet.agents.providers.openai_http import (
    DEFAULT_TIMEOUT_S,
    OPENAI_BASE_URL,
    SNIPPET_CHARS,
    OpenAIHTTPBase,
)
from callfleet.agents.tools import FunctionTool

#: ``tool_choice`` values that are not a tool name.
TOOL_CHOICE_MODES = ("auto", "required", "none")


def chat_messages(chat_ctx: ChatContext) -> list[dict[str, Any]]:
    """``chat_ctx`` as Chat Completions ``messages``. Function calls join the assistant
    message right before them (its text, or the calls just before), as ``tool_calls``;
    each output is a ``tool`` message answering its ``tool_call_id``."""
    messages: list[dict[str, Any]] = []
    for item in chat_ctx.items:
        if isinstance(item, ChatMessage):
            messages.append({"role": item.role, "content": item.content})
        elif isinstance(item, FunctionCall):
            call = {
                "id": item.call_id,
                "type": "function",
                "function": {"name": item.name, "arguments": item.arguments},
            }
            if messages and messages[-1]["role"] == "assistant":
                messages[-1].setdefault("tool_calls", []).append(call)
            else:
                messages.append({"role": "assistant", "tool_calls": [call]})
        else:
            messages.append({"role": "tool", "tool_call_id": item.call_id, "content": item.output})
    return messages


def tool_choice_param(tool_choice: ToolChoice, tools: list[FunctionTool]) -> str | dict[str, Any]:
    """``tool_choice`` in the API's form; a tool name must be one of ``tools``."""
    if tool_choice in TOOL_CHOICE_MODES:
        return tool_choice
    names = [tool.name for tool in tools]
    if tool_choice not in names:
        raise ValueError(
            f"tool_choice {tool_choice!r} is neither one of {TOOL_CHOICE_MODES} "
            f"nor the name of a tool given ({', '.join(names) or 'no tools'})"
        )
    return {"type": "function", "function": {"name": tool_choice}}


@dataclass
class _PendingCall:
    """A tool call being assembled from ``tool_calls`` deltas that share an ``index``."""

    call_id: str = ""
    name: str = ""
    arguments: str = ""

    def complete(self) -> FunctionCall:
        return FunctionCall(
            call_id=self.call_id or f"call_{uuid.uuid4().hex[:24]}",
            name=self.name,
            arguments=self.arguments,
        )


@dataclass
class _StreamState:
    """One chat stream so far: tool calls being assembled (by ``index``), chunks read,
    and whether the server said it was done (a ``finish_reason`` or ``[DONE]``)."""

    pending: dict[int, _PendingCall] = field(default_factory=dict)
    chunks: int = 0
    finished: bool = False

    def take_calls(self) -> ChatChunk:
        calls = tuple(call.complete() for call in self.pending.values())
        self.pending.clear()
        return ChatChunk(tool_calls=calls)


async def _sse_data(lines: AsyncIterator[str]) -> AsyncGenerator[str, None]:
    """The ``data`` of each server-sent event (WHATWG HTML "Server-sent events", event
    stream interpretation): ``data:`` lines joined by newlines, dispatched on a blank
    line; comments and the other fields are ignored. Unlike the spec, an event the body
    ends without a blank line after is still given (servers that omit the last one)."""
    data: list[str] = []
    async for line in lines:
        if not line:
            if data:
                yield "\n".join(data)
                data = []
        elif line.startswith("data:"):
            value = line[5:]
            data.append(value[1:] if value.startswith(" ") else value)
    if data:
        yield "\n".join(data)


class OpenAILLM(OpenAIHTTPBase):
    """An OpenAI-compatible chat model, streamed.

    Args:
        model: model name sent to the server. Default ``gpt-4o-mini``.
        base_url: API root, ending in ``/v1``. Default OpenAI's.
        api_key: bearer token; ``None`` reads ``OPENAI_API_KEY``; ``""`` sends none
            (local servers). Required for OpenAI itself.
        temperature: sampling temperature, 0 to 2; ``None`` (default) leaves the
            server's default.
        max_completion_tokens: cap on the reply's tokens; ``None`` (default): no cap.
        timeout_s: seconds allowed to connect and receive the first chunk, and the
            longest gap between two chunks. Default 10.
        extra_headers: headers added to every request (e.g. an organization or proxy).
        client: an ``httpx.AsyncClient`` to share; by default one is created and
            ``aclose()`` closes it.
    """

    def __init__(
        self,
        model: str = "gpt-4o-mini",
        *,
        base_url: str = OPENAI_BASE_URL,
        api_key: str | None = None,
        temperature: float | None = None,
        max_completion_tokens: int | None = None,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        extra_headers: dict[str, str] | None = None,
        client: httpx.AsyncClient | None = None,
    ) -> None:
        if temperature is not None and not 0.0 <= temperature <= 2.0:
            raise ValueError(f"temperature must be between 0 and 2, got {temperature!r}")
        if max_completion_tokens is not None and max_completion_tokens <= 0:
            raise ValueError(
                f"max_completion_tokens must be positive, got {max_completion_tokens!r}"
            )
        super().__init__(
            model,
            base_url=base_url,
            api_key=api_key,
            timeout_s=timeout_s,
            extra_headers=extra_headers,
            client=client,
        )
        self.temperature = temperature
        self.max_completion_tokens = max_completion_tokens

    def request_body(
        self,
        chat_ctx: ChatContext,
        tools: list[FunctionTool] | None = None,
        tool_choice: ToolChoice = "auto",
    ) -> dict[str, Any]:
        """The JSON body ``chat()`` posts to ``/chat/completions``."""
        body: dict[str, Any] = {
            "model": self.model,
            "messages": chat_messages(chat_ctx),
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        if tools:
            body["tools"] = [tool.schema() for tool in tools]
            body["tool_choice"] = tool_choice_param(tool_choice, tools)
        elif tool_choice not in TOOL_CHOICE_MODES:
            raise ValueError(f"tool_choice {tool_choice!r} names a tool, but no tools were given")
        if self.temperature is not None:
            body["temperature"] = self.temperature
        if self.max_completion_tokens is not None:
            body["max_completion_tokens"] = self.max_completion_tokens
        return body

    async def chat(
        self,
        *,
        chat_ctx: ChatContext,
        tools: list[FunctionTool] | None = None,
        tool_choice: ToolChoice = "auto",
    ) -> AsyncIterator[ChatChunk]:
        """Stream the reply: a ``ChatChunk`` per text delta, then one chunk with every
        complete tool call, then one with the token usage (when the server reports it)."""
        body = self.request_body(chat_ctx, tools, tool_choice)
        state = _StreamState()
        with self._errors("first chunk of the chat stream"):
            async with (
                asyncio.timeout(self._timeout_s) as first_chunk,
                self._client.stream(
                    "POST",
                    self._url("/chat/completions"),
                    json=body,
                    headers=self._headers,
                    timeout=self._timeout,
                ) as response,
            ):
                await self._raise_for_status(response)
                await self._refuse_json(response, "a text/event-stream")
                async with contextlib.aclosing(_sse_data(response.aiter_lines())) as events:
                    async for data in events:
                        first_chunk.reschedule(None)  # from here on, httpx's read timeout
                        if data.strip() == "[DONE]":
                            state.finished = True
                            break
                        for chunk in self._read_chunk(data, state):
                            yield chunk
        if not state.finished:
            raise APIError(
                f"chat stream ended without a finish_reason or [DONE] "
                f"after {state.chunks} chunk(s)",
                provider=self.label,
            )
        if state.pending:  # [DONE] came without a finish_reason
            yield state.take_calls()

    def _read_chunk(self, data: str, state: _StreamState) -> list[ChatChunk]:
        """The ``ChatChunk``s one ``chat.completion.chunk`` gives; tool call deltas are
        gathered in ``state`` until the choice finishes."""
        try:
            obj = json.loads(data)
        except ValueError as e:
            raise APIError(
                f"malformed chunk in the chat stream ({e}): {data[:SNIPPET_CHARS]!r}",
                provider=self.label,
            ) from e
        if not isinstance(obj, dict):
            raise APIError(
                f"malformed chunk in the chat stream (not a JSON object): {data[:SNIPPET_CHARS]!r}",
                provider=self.label,
            )
        if obj.get("error"):
            error = obj["error"]
            message = error.get("message") if isinstance(error, dict) else error
            raise APIError(f"error in the chat stream: {message}", provider=self.label)
        state.chunks += 1
        try:
            return self._chunks_of(obj, state)
        except (AttributeError, TypeError) as e:
            raise APIError(
                f"unexpected chunk in the chat stream ({e}): {data[:SNIPPET_CHARS]!r}",
                provider=self.label,
            ) from e

    def _chunks_of(self, obj: dict[str, Any], state: _StreamState) -> list[ChatChunk]:
        out: list[ChatChunk] = []
        for choice in obj.get("choices") or ():
            if choice.get("index", 0) != 0:
                continue  # we ask for one choice (n=1)
            delta = choice.get("delta") or {}
            if isinstance(delta.get("content"), str) and delta["content"]:
                out.append(ChatChunk(delta=delta["content"]))
            for position, part in enumerate(delta.get("tool_calls") or ()):
                call = state.pending.setdefault(part.get("index", position), _PendingCall())
                function = part.get("function") or {}
                call.call_id = call.call_id or part.get("id") or ""
                call.name = call.name or function.get("name") or ""
                call.arguments += function.get("arguments") or ""
            if choice.get("finish_reason"):
                state.finished = True
                if state.pending:
                    out.append(state.take_calls())
        usage = obj.get("usage")
        if isinstance(usage, dict):
            out.append(
                ChatChunk(
                    prompt_tokens=usage.get("prompt_tokens"),
                    completion_tokens=usage.get("completion_tokens"),
                )
            )
        return out
