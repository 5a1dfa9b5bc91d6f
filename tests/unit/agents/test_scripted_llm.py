"""The scripted dialogue engine: matching, states, templates, tools, validation."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pytest

from callfleet.agents.chat import ChatChunk, ChatContext, FunctionCall, FunctionCallOutput
from callfleet.agents.providers.base import LLM, ToolChoice
from callfleet.agents.providers.scripted import (
    CALL_ID_PREFIX,
    DialogueScript,
    ScriptedLLM,
    ScriptError,
    normalize,
)
from callfleet.agents.tools import FunctionTool, build_tool

SCRIPT = """
variables: {company: Acme, slot: "3 pm"}
greeting: "Hi {first_name}, this is {company}."
fallback: "Sorry, I didn't catch that. Could you say it again?"
reprompt: "Are you still there?"
intents:
  - name: wrong_person
    match: ["wrong number", "wrong person", "who is this"]
    reply: "I'm sorry to have bothered you."
  - name: confirm
    match: ["yes", "sure", "that works", "that's right", "regex:(?P<slot>\\\\d{1,2} ?[ap]m)"]
    reply: "Great, {first_name}, you're booked for {slot}."
    tool: {name: book_appointment, arguments: {slot: "{slot}", who: "{first_name}"}}
    after_tool: "Done. Your confirmation number is {result.number}."
    after_tool_error: "Sorry, booking failed: {result}"
    set: {confirmed: "yes"}
    next: closing
  - name: decline
    match: ["no", "not interested"]
    reply: "No problem, {first_name}. Goodbye."
  - name: thanks_closing
    state: closing
    match: ["thanks", "yes"]
    reply: "You're welcome. Anything else, {first_name}?"
    next: start
"""


def book_appointment(slot: str, who: str = "") -> str:
    """Book the slot."""
    return "ok"


def transfer_call() -> str:
    """Transfer to a human."""
    return "ok"


TOOLS: list[FunctionTool] = [build_tool(book_appointment), build_tool(transfer_call)]


def make(**options: Any) -> ScriptedLLM:
    options.setdefault("variables", {"first_name": "Ann"})
    return ScriptedLLM.from_yaml(SCRIPT, **options)


async def run(
    llm: ScriptedLLM,
    ctx: ChatContext,
    *,
    tools: list[FunctionTool] | None = TOOLS,
    tool_choice: ToolChoice = "auto",
) -> list[ChatChunk]:
    return [c async for c in llm.chat(chat_ctx=ctx, tools=tools, tool_choice=tool_choice)]


def text_of(chunks: list[ChatChunk]) -> str:
    return "".join(c.delta for c in chunks)


def calls_of(chunks: list[ChatChunk]) -> list[FunctionCall]:
    return [call for c in chunks for call in c.tool_calls]


def conversation(*user: str) -> ChatContext:
    ctx = ChatContext()
    ctx.add_message(role="system", content="You are a scheduling assistant.")
    for text in user:
        ctx.add_message(role="user", content=text)
        ctx.add_message(role="assistant", content="(reply)")
    ctx.items.pop()  # the last user message is the one to answer
    return ctx


async def say(llm: ScriptedLLM, *user: str, **kwargs: Any) -> str:
    return text_of(await run(llm, conversation(*user), **kwargs))


def test_is_an_llm() -> None:
    llm = make()
    assert isinstance(llm, LLM)
    assert llm.label == "scripted"


def test_normalize() -> None:
    assert normalize("  That's RIGHT!!  ") == "thats right"
    assert normalize("e-mail, me\u2019ll") == "e mail mell"


@pytest.mark.parametrize(
    ("user", "expected"),
    [
        ("YES!!!", "Great, Ann, you're booked for 3 pm."),
        ("Sure.", "Great, Ann, you're booked for 3 pm."),
        ("Hmm... that's right, yes", "Great, Ann, you're booked for 3 pm."),
        ("That, works?", "Great, Ann, you're booked for 3 pm."),
        ("Who is THIS?", "I'm sorry to have bothered you."),
        ("No.", "No problem, Ann. Goodbye."),
        ("yesterday", "Sorry, I didn't catch that. Could you say it again?"),
        ("nothing at all", "Sorry, I didn't catch that. Could you say it again?"),
        ("works that", "Sorry, I didn't catch that. Could you say it again?"),
    ],
)
async def test_matching_ignores_case_and_punctuation_on_word_boundaries(
    user: str, expected: str
) -> None:
    assert await say(make(), user) == expected


async def test_first_intent_in_order_wins() -> None:
    # "wrong number" is listed before "no" (decline): both match, the first wins.
    assert await say(make(), "No, wrong number") == "I'm sorry to have bothered you."


async def test_regex_captures_become_variables() -> None:
    llm = make()
    chunks = await run(llm, conversation("Could we do 10am instead?"))
    assert text_of(chunks) == "Great, Ann, you're booked for 10am."
    assert json.loads(calls_of(chunks)[0].arguments) == {"slot": "10am", "who": "Ann"}
    # with a phrase and a regex matching, the captures still apply
    assert await say(llm, "yes, 4 pm works") == "Great, Ann, you're booked for 4 pm."


async def test_states_next_and_scoped_intents_first() -> None:
    llm = make()
    # before "confirm", the closing intent does not match "thanks"
    assert await say(llm, "thanks") == "Sorry, I didn't catch that. Could you say it again?"
    # after "confirm" (next: closing), "yes" matches the closing intent before the global
    ctx = conversation("yes", "yes")
    assert llm.replay(ctx).state == "start"  # closing's next goes back to start
    assert text_of(await run(llm, ctx)) == "You're welcome. Anything else, Ann?"
    # and back in start, "yes" is the booking again
    assert await say(llm, "yes", "thanks", "yes") == "Great, Ann, you're booked for 3 pm."
    state = llm.replay(conversation("yes"))
    assert state.state == "closing"
    assert state.last_intent is not None and state.last_intent.name == "confirm"
    assert state.variables["confirmed"] == "yes"


async def test_state_is_replayed_from_each_context_not_kept() -> None:
    llm = make()
    assert await say(llm, "yes", "thanks") == "You're welcome. Anything else, Ann?"
    # the same engine, another conversation: starts afresh
    assert await say(llm, "thanks") == "Sorry, I didn't catch that. Could you say it again?"
    assert llm.replay(ChatContext()).state == "start"


async def test_template_variable_precedence() -> None:
    script = {
        "variables": {"a": "script", "b": "script", "c": 3},
        "fallback": "{a} {b} {c} {d}",
        "intents": [{"name": "set_b", "match": ["set"], "reply": "ok", "set": {"b": "intent"}}],
    }
    llm = ScriptedLLM.from_dict(script, variables={"a": "engine", "b": "engine"})
    assert await say(llm, "hm") == "engine engine 3"
    assert await say(llm, "set", "hm") == "engine intent 3"
    llm.update_variables({"d": 4.5, "a": None})
    assert await say(llm, "hm") == "engine 3 4.5"  # "{a}" is empty; replies are stripped
    assert llm.variables == {"a": "", "b": "engine", "c": "3", "d": "4.5"}


async def test_missing_variable_renders_empty_with_a_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    llm = make(variables={})
    with caplog.at_level(logging.WARNING, logger="callfleet.agents.providers.scripted"):
        assert await say(llm, "no") == "No problem, . Goodbye."
    assert (
        "scripted: intent decline: template variable first_name is not set; rendering it empty"
        in caplog.messages
    )


async def test_literal_braces() -> None:
    llm = ScriptedLLM.from_dict(
        {"fallback": "{{company}} is {company}", "variables": {"company": "Acme"},
         "intents": [{"name": "x", "match": ["x"], "reply": "x"}]}
    )  # fmt: skip
    assert await say(llm, "hm") == "{company} is Acme"


async def test_reply_streams_in_several_chunks() -> None:
    chunks = await run(make(), conversation("no"))
    assert [c.delta for c in chunks] == ["No ", "problem, ", "Ann. ", "Goodbye."]
    assert all(not c.tool_calls for c in chunks)


async def test_delay_s() -> None:
    with pytest.raises(ValueError, match=r"^delay_s must be >= 0, got -1$"):
        make(delay_s=-1)
    assert await say(make(delay_s=0.001), "no") == "No problem, Ann. Goodbye."


async def test_tool_call_then_after_tool_with_result_fields() -> None:
    llm = make()
    ctx = conversation("yes please")
    chunks = await run(llm, ctx)
    assert text_of(chunks) == "Great, Ann, you're booked for 3 pm."
    assert chunks[-1].delta == "" and len(chunks[-1].tool_calls) == 1
    call = chunks[-1].tool_calls[0]
    assert call.name == "book_appointment"
    assert call.call_id.startswith(CALL_ID_PREFIX)
    assert json.loads(call.arguments) == {"slot": "3 pm", "who": "Ann"}
    again = calls_of(await run(llm, conversation("yes please")))[0]
    assert again.call_id != call.call_id

    ctx.add_message(role="assistant", content="Great, Ann, you're booked for 3 pm.")
    ctx.insert(call)
    output = json.dumps({"number": "A-17", "ok": True})
    ctx.insert(FunctionCallOutput(call_id=call.call_id, name=call.name, output=output))
    chunks = await run(llm, ctx)
    assert text_of(chunks) == "Done. Your confirmation number is A-17."
    assert not calls_of(chunks)


@pytest.mark.parametrize(
    ("after_tool", "output", "expected"),
    [
        ("Number {result}.", '"B-2"', "Number B-2."),  # a JSON string is unquoted
        ("Number {result}.", "plain text", "Number plain text."),
        ("Got {result}.", '{"a": 1}', 'Got {"a": 1}.'),
        ("Got {result.a.b} {result.items.1} {result.flag}", '{"a": {"b": 2}, "items": [1, 2],'
         ' "flag": false}', "Got 2 2 false"),
        ("Got {result.nope}.", '{"a": 1}', "Got ."),
    ],
)  # fmt: skip
async def test_result_templates(after_tool: str, output: str, expected: str) -> None:
    llm = ScriptedLLM.from_dict(
        {
            "fallback": "?",
            "intents": [
                {
                    "name": "book",
                    "match": ["book"],
                    "tool": {"name": "book_appointment"},
                    "after_tool": after_tool,
                }
            ],
        }
    )
    ctx = conversation("book it")
    chunks = await run(llm, ctx)
    assert text_of(chunks) == ""  # a tool-only intent says nothing first
    call = calls_of(chunks)[0]
    assert call.arguments == "{}"
    ctx.insert(call)
    ctx.insert(FunctionCallOutput(call_id=call.call_id, name=call.name, output=output))
    assert text_of(await run(llm, ctx)) == expected


async def test_tool_error_output() -> None:
    llm = make()
    ctx = conversation("yes")
    call = calls_of(await run(llm, ctx))[0]
    ctx.insert(call)
    ctx.insert(
        FunctionCallOutput(call_id=call.call_id, name=call.name, output="slot taken", is_error=True)
    )
    ctx.add_message(role="system", content="(a trailing instruction is ignored)")
    assert text_of(await run(llm, ctx)) == "Sorry, booking failed: slot taken"


async def test_output_of_a_call_the_script_did_not_make_gets_the_fallback(
    caplog: pytest.LogCaptureFixture,
) -> None:
    llm = make()
    ctx = conversation("no")
    call = FunctionCall(call_id="call_other", name="transfer_call", arguments="{}")
    ctx.insert(call)
    ctx.insert(FunctionCallOutput(call_id="call_other", name="transfer_call", output="ok"))
    with caplog.at_level(logging.WARNING):
        assert text_of(await run(llm, ctx)) == (
            "Sorry, I didn't catch that. Could you say it again?"
        )
    assert "answers no tool call the script asked for" in caplog.text


async def test_tool_choice_none_never_calls_tools() -> None:
    chunks = await run(make(), conversation("yes"), tool_choice="none")
    assert text_of(chunks) == "Great, Ann, you're booked for 3 pm."
    assert calls_of(chunks) == []


async def test_tool_not_offered_is_not_called(caplog: pytest.LogCaptureFixture) -> None:
    llm = make()
    with caplog.at_level(logging.WARNING):
        chunks = await run(llm, conversation("yes"), tools=[TOOLS[1]])
    assert text_of(chunks) == "Great, Ann, you're booked for 3 pm."
    assert calls_of(chunks) == []
    assert (
        "scripted: intent confirm asks for tool book_appointment, which is not among the "
        "tools offered (transfer_call); replying without it" in caplog.messages
    )
    assert calls_of(await run(llm, conversation("yes"), tools=None)) == []
    # a named tool_choice forces another tool: not called either
    assert calls_of(await run(llm, conversation("yes"), tool_choice="transfer_call")) == []
    forced = calls_of(await run(llm, conversation("yes"), tool_choice="book_appointment"))
    assert [c.name for c in forced] == ["book_appointment"]
    assert len(calls_of(await run(llm, conversation("yes"), tool_choice="required"))) == 1


async def test_greeting_and_reprompt() -> None:
    llm = make()
    ctx = ChatContext()
    ctx.add_message(role="system", content="instructions")
    assert text_of(await run(llm, ctx)) == "Hi Ann, this is Acme."
    ctx.add_message(role="assistant", content="Hi Ann, this is Acme.")
    assert text_of(await run(llm, ctx)) == "Are you still there?"
    ctx.add_message(role="user", content="   ")
    assert text_of(await run(llm, ctx)) == "Are you still there?"
    without = ScriptedLLM.from_dict(
        {"fallback": "Pardon?", "intents": [{"name": "x", "match": ["x"], "reply": "x"}]}
    )
    assert text_of(await run(without, ChatContext())) == "Pardon?"


async def test_from_file(tmp_path: Path) -> None:
    path = tmp_path / "script.yaml"
    path.write_text(SCRIPT, encoding="utf-8")
    llm = ScriptedLLM.from_file(path, variables={"first_name": "Bo"})
    assert await say(llm, "no") == "No problem, Bo. Goodbye."
    path.write_text("fallback: hi\nintents: []\n", encoding="utf-8")
    with pytest.raises(ScriptError) as info:
        ScriptedLLM.from_file(path)
    assert str(info.value) == f"{path}: 'intents' must be a non-empty list of mappings"


def test_invalid_yaml() -> None:
    with pytest.raises(ScriptError, match=r"^script is not valid YAML: "):
        ScriptedLLM.from_yaml("intents: [unclosed")


def _script(**intent: Any) -> dict[str, Any]:
    first = {"name": "greet", "match": ["hello"], "reply": "Hi."}
    return {"fallback": "Sorry?", "intents": [first, {"name": "confirm", **intent}]}


VALID = {"match": ["yes"], "reply": "Good."}


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (["a"], "script must be a mapping, got list"),
        ({"fallback": "x", "intent": []}, "script has unknown field 'intent'"),
        ({"intents": [{"name": "a", "match": ["a"], "reply": "a"}]},
         "'fallback' must be a non-empty string"),
        ({"fallback": " ", "intents": []}, "'fallback' must be a non-empty string"),
        ({"fallback": "x"}, "'intents' must be a non-empty list of mappings"),
        ({"fallback": "x {result}", "intents": [{"name": "a", "match": ["a"], "reply": "a"}]},
         "'fallback' uses {result}, which only 'after_tool' and 'after_tool_error' can use"),
        ({"fallback": "x", "variables": ["a"], "intents": []},
         "'variables' must be a mapping of names to strings or numbers"),
        ({"fallback": "x", "variables": {"first name": "a"}, "intents": []},
         "'variables' name 'first name' is not a variable name"),
        ({"fallback": "x", "initial_state": 3, "intents": []},
         "'initial_state' must be a non-empty string"),
        ({"fallback": "x", "intents": ["yes"]}, "intent 1 must be a mapping, got str"),
        (_script(match=["yes"]) | {"intents": [{"match": ["a"]}]},
         "intent 1: 'name' must be a non-empty string"),
        (_script(name="greet", **VALID), "intent 2 (greet): 'name' is already used by intent 1"),
        (_script(match="yes", reply="x"),
         "intent 2 (confirm): 'match' must be a non-empty list of strings"),
        (_script(match=[], reply="x"),
         "intent 2 (confirm): 'match' must be a non-empty list of strings"),
        (_script(match=["yes", 2], reply="x"),
         "intent 2 (confirm): 'match' must be a non-empty list of strings"),
        (_script(match=["yes", "?!"], reply="x"),
         "intent 2 (confirm): 'match' entry 2 ('?!') has no words"),
        (_script(match=["regex:(unclosed"], reply="x"),
         "intent 2 (confirm): 'match' entry 1 is not a valid regex: missing ), unterminated "
         "subpattern at position 0"),
        (_script(match=["yes"]), "intent 2 (confirm): needs a 'reply' or a 'tool'"),
        (_script(**VALID, rply="x"), "intent 2 (confirm): unknown field 'rply'"),
        (_script(match=["yes"], reply=""),
         "intent 2 (confirm): 'reply' must be a non-empty string"),
        (_script(match=["yes"], reply="{result}"),
         "intent 2 (confirm): 'reply' uses {result}, which only 'after_tool' and "
         "'after_tool_error' can use"),
        (_script(**VALID, tool="book"),
         "intent 2 (confirm): 'tool' must be a mapping with 'name' and 'arguments'"),
        (_script(**VALID, tool={"name": "book", "args": {}}),
         "intent 2 (confirm): 'tool' must be a mapping with 'name' and 'arguments'"),
        (_script(**VALID, tool={"arguments": {}}),
         "intent 2 (confirm): 'tool.name' must be a non-empty string"),
        (_script(**VALID, tool={"name": "book", "arguments": ["a"]}),
         "intent 2 (confirm): 'tool.arguments' must be a mapping"),
        (_script(**VALID, tool={"name": "book", "arguments": {"a": ["{result.x}"]}}),
         "intent 2 (confirm): 'tool.arguments' uses {result}, which only 'after_tool' and "
         "'after_tool_error' can use"),
        (_script(**VALID, after_tool="Done."), "intent 2 (confirm): 'after_tool' needs a 'tool'"),
        (_script(**VALID, after_tool_error="Oops."),
         "intent 2 (confirm): 'after_tool_error' needs a 'tool'"),
        (_script(**VALID, set=["a"]),
         "intent 2 (confirm): 'set' must be a mapping of names to strings or numbers"),
        (_script(**VALID, set={"result": "x"}),
         "intent 2 (confirm): 'set' name 'result' is not a variable name"),
        (_script(**VALID, next=""), "intent 2 (confirm): 'next' must be a non-empty string"),
        (_script(**VALID, next="closng"),
         "intent 2 (confirm): 'next' names unknown state 'closng' (no intent has it in 'state')"),
        (_script(**VALID, state=[]),
         "intent 2 (confirm): 'state' must be a string or a non-empty list of strings"),
    ],
)  # fmt: skip
def test_validation_errors_name_the_field(data: Any, message: str) -> None:
    with pytest.raises(ScriptError) as info:
        DialogueScript.parse(data)
    assert str(info.value) == message


def test_valid_states_and_defaults() -> None:
    script = DialogueScript.parse(
        _script(**VALID, state=["offer", "closing"], next="offer") | {"initial_state": "offer"}
    )
    assert script.initial_state == "offer"
    assert script.reprompt == "Sorry?"  # defaults to the fallback
    assert script.intents[1].states == frozenset({"offer", "closing"})
