"""The conversation as the LLM sees it: messages, tool calls and their outputs.

Shaped after LiveKit's ``ChatContext``: an ordered list of items, each with an id and
a creation time, that the session appends to and providers translate into their own
wire format.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Literal

ChatRole = Literal["system", "user", "assistant", "developer"]


def _item_id(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:12]}"


@dataclass
class ChatMessage:
    role: ChatRole
    content: str
    id: str = field(default_factory=lambda: _item_id("msg"))
    created_at: float = field(default_factory=time.time)
    #: The agent was interrupted: ``content`` is only what was spoken before it stopped.
    interrupted: bool = False
    type: Literal["message"] = "message"


@dataclass
class FunctionCall:
    """The LLM asked to run a tool; ``arguments`` is the raw JSON text it produced."""

    call_id: str
    name: str
    arguments: str
    id: str = field(default_factory=lambda: _item_id("fnc"))
    created_at: float = field(default_factory=time.time)
    type: Literal["function_call"] = "function_call"


@dataclass
class FunctionCallOutput:
    call_id: str
    name: str
    output: str
    is_error: bool = False
    id: str = field(default_factory=lambda: _item_id("out"))
    created_at: float = field(default_factory=time.time)
    type: Literal["function_call_output"] = "function_call_output"


ChatItem = ChatMessage | FunctionCall | FunctionCallOutput


class ChatContext:
    """An ordered conversation. ``copy()`` before handing it to code that may edit it."""

    def __init__(self, items: Iterable[ChatItem] = ()) -> None:
        self.items: list[ChatItem] = list(items)

    @classmethod
    def empty(cls) -> ChatContext:
        return cls()

    def add_message(
        self, *, role: ChatRole, content: str, interrupted: bool = False
    ) -> ChatMessage:
        message = ChatMessage(role=role, content=content, interrupted=interrupted)
        self.items.append(message)
        return message

    def insert(self, item: ChatItem) -> None:
        self.items.append(item)

    def copy(self) -> ChatContext:
        return ChatContext(self.items)

    def messages(self) -> list[ChatMessage]:
        return [item for item in self.items if isinstance(item, ChatMessage)]

    def to_dicts(self) -> list[dict[str, object]]:
        """A JSON-ready transcript (for call results and logs)."""
        out: list[dict[str, object]] = []
        for item in self.items:
            if isinstance(item, ChatMessage):
                entry: dict[str, object] = {"type": "message", "role": item.role}
                entry["content"] = item.content
                if item.interrupted:
                    entry["interrupted"] = True
            elif isinstance(item, FunctionCall):
                entry = {"type": "function_call", "name": item.name}
                entry["call_id"], entry["arguments"] = item.call_id, item.arguments
            else:
                entry = {"type": "function_call_output", "name": item.name}
                entry["call_id"], entry["output"] = item.call_id, item.output
                if item.is_error:
                    entry["is_error"] = True
            entry["created_at"] = item.created_at
            out.append(entry)
        return out

    def __len__(self) -> int:
        return len(self.items)


@dataclass(frozen=True)
class ChatChunk:
    """One piece of a streamed LLM reply: text to speak, and/or complete tool calls
    (providers assemble streamed argument deltas before yielding a call)."""

    delta: str = ""
    tool_calls: tuple[FunctionCall, ...] = ()
    #: Token usage when the provider reports it (usually on the last chunk).
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
