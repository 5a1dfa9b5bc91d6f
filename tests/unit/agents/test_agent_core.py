"""The pieces of the agent model that need no call: tool schemas and argument checks,
text transforms and sentence chunking, options, chat context."""

from __future__ import annotations

import json
from enum import Enum
from typing import Any, Literal

import pytest

from callfleet.agents.agent import Agent
from callfleet.agents.chat import ChatContext, FunctionCall, FunctionCallOutput
from callfleet.agents.options import NOT_GIVEN, SessionOptions
from callfleet.agents.recognition import looks_unfinished
from callfleet.agents.tools import RunContext, ToolError, as_tool, function_tool
from callfleet.agents.transforms import (
    SentenceChunker,
    resolve_transforms,
    strip_emoji,
    strip_markdown,
)


class Color(Enum):
    RED = "red"
    BLUE = "blue"


class Shop(Agent):
    def __init__(self) -> None:
        super().__init__(instructions="sell")

    @function_tool
    async def order(
        self,
        item: str,
        quantity: int,
        context: RunContext[Any],
        color: Color = Color.RED,
        size: Literal["s", "m", "l"] | None = None,
    ) -> str:
        """Order an item for the caller.

        Args:
            item: what to order
            quantity: how many
        """
        return f"{quantity} {item}"

    @function_tool(name="lookup_hours", description="Opening hours.")
    def hours(self) -> str:
        return "9 to 5"


def test_tool_schema_comes_from_hints_and_docstring() -> None:
    tools = {t.name: t for t in Shop().tools}
    assert set(tools) == {"order", "lookup_hours"}
    schema = tools["order"].schema()["function"]
    assert schema["description"] == "Order an item for the caller."
    params = schema["parameters"]
    assert params["required"] == ["item", "quantity"]
    assert params["properties"]["item"] == {"description": "what to order", "type": "string"}
    assert params["properties"]["quantity"]["type"] == "integer"
    assert "context" not in params["properties"]  # injected, not shown to the LLM
    assert tools["lookup_hours"].schema()["function"]["description"] == "Opening hours."
    assert tools["lookup_hours"].schema()["function"]["parameters"]["properties"] == {}


def test_tool_arguments_are_validated_with_exact_messages() -> None:
    tool = {t.name: t for t in Shop().tools}["order"]
    assert tool.parse_arguments('{"item": "pen", "quantity": "3"}')["quantity"] == 3
    with pytest.raises(ToolError, match=r"^arguments of order are not valid JSON: "):
        tool.parse_arguments("{item")
    with pytest.raises(ToolError, match=r"^arguments of order must be a JSON object$"):
        tool.parse_arguments("[1]")
    with pytest.raises(ToolError, match=r"^bad arguments for order: quantity: Field required$"):
        tool.parse_arguments('{"item": "pen"}')
    with pytest.raises(ToolError, match=r"bad arguments for order: size: "):
        tool.parse_arguments('{"item": "pen", "quantity": 1, "size": "xl"}')


async def test_tool_invoke_passes_the_run_context() -> None:
    seen: list[object] = []

    @function_tool
    async def note(text: str, ctx: RunContext[Any]) -> str:
        """Note something."""
        seen.append(ctx)
        return text.upper()

    context = RunContext(session=None, function_call=FunctionCall("c1", "note", "{}"))  # type: ignore[arg-type]
    assert await as_tool(note).invoke(context, '{"text": "hi"}') == "HI"
    assert seen == [context]


def test_duplicate_tool_names_are_refused() -> None:
    @function_tool(name="order")
    def other(item: str) -> str:
        """Another order."""
        return item

    with pytest.raises(ValueError, match=r"agent has several tools named \['order'\]"):
        Agent.__init__(Shop.__new__(Shop), instructions="x", tools=[other])


def test_bad_tool_name_is_refused() -> None:
    with pytest.raises(ValueError, match="tool name 'bad name' must match"):

        @function_tool(name="bad name")
        def f() -> None:
            """x"""


def test_markdown_and_emoji_are_stripped_for_speech() -> None:
    text = "# Plans\n- **Gold**: $10 👍\n- *Silver* see [our site](https://x.example)\n`code`"
    assert strip_emoji(strip_markdown(text)).split("\n") == [
        "Plans",
        "Gold: $10 ",
        "Silver see our site",
        "code",
    ]
    assert strip_markdown("3 * 4 * 5 = 60") == "3 * 4 * 5 = 60"  # arithmetic is not emphasis
    with pytest.raises(ValueError, match="unknown tts_text_transform 'nope'; known: "):
        resolve_transforms(["nope"])


def test_sentence_chunker_cuts_streamed_text_into_sentences() -> None:
    chunker = SentenceChunker()
    text = (
        "Hello, this is Dr. Smith from Acme calling about your visit on Monday. "
        "Is now a good time? I can call back at 3 p.m. if that is better for you."
    )
    pieces: list[str] = []
    for i in range(0, len(text), 7):  # deltas of any size
        pieces += chunker.push(text[i : i + 7])
    pieces += chunker.flush()
    assert pieces == [
        "Hello, this is Dr. Smith from Acme calling about your visit on Monday.",
        "Is now a good time? I can call back at 3 p.m. if that is better for you.",
    ]
    assert " ".join(pieces) == text


def test_sentence_chunker_cuts_a_long_first_clause_early() -> None:
    chunker = SentenceChunker(first_min_chars=40)
    out = chunker.push("Thanks for waiting on the line with us today, I have looked at your ")
    assert out == ["Thanks for waiting on the line with us today,"]
    assert chunker.flush() == ["I have looked at your"]


@pytest.mark.parametrize(
    ("text", "unfinished"),
    [
        ("I want to book", False),
        ("I want to book and", True),
        ("Tuesday, um", True),
        ("my number is,", True),
        ("That works.", False),
    ],
)
def test_trailing_words_mark_an_unfinished_turn(text: str, unfinished: bool) -> None:
    assert looks_unfinished(text) is unfinished


def test_options_validate_and_update_only_what_is_given() -> None:
    options = SessionOptions()
    assert (options.min_endpointing_delay, options.max_endpointing_delay) == (0.5, 3.0)
    assert options.max_tool_steps == 3 and options.user_away_timeout == 15.0
    updated = options.updated(min_endpointing_delay=0.2, max_tool_steps=NOT_GIVEN)
    assert updated.min_endpointing_delay == 0.2 and updated.max_tool_steps == 3
    with pytest.raises(ValueError, match=r"max_endpointing_delay \(0.1\) is below"):
        options.updated(max_endpointing_delay=0.1)
    with pytest.raises(ValueError, match="min_interruption_duration must be a number >= 0"):
        options.updated(min_interruption_duration=-1)
    with pytest.raises(TypeError, match=r"unknown session options: \['nope'\]"):
        options.updated(nope=1)
    with pytest.raises(TypeError, match="unknown session options"):
        Agent(instructions="x", turn_handling={"min_endpoint_delay": 0.1})


def test_chat_context_transcript_is_json_ready() -> None:
    ctx = ChatContext()
    ctx.add_message(role="assistant", content="Hi", interrupted=True)
    ctx.insert(FunctionCall("c1", "book", '{"day": "Tue"}'))
    ctx.insert(FunctionCallOutput("c1", "book", "no slots", is_error=True))
    dicts = ctx.to_dicts()
    json.dumps(dicts)
    assert [d["type"] for d in dicts] == ["message", "function_call", "function_call_output"]
    assert dicts[0]["interrupted"] is True and dicts[2]["is_error"] is True
    assert ctx.copy().items == ctx.items and ctx.copy().items is not ctx.items
