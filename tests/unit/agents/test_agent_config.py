"""Agents defined in YAML: validation errors, templates, secrets, providers and fallback
lists, the example files, and webhook tools against a real local HTTP server."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from callfleet.agents.chat import ChatContext, ChatMessage, FunctionCall, FunctionCallOutput
from callfleet.agents.config import AgentConfigError, AgentDefinition
from callfleet.agents.fallback import FallbackLLM, FallbackSTT, FallbackTTS
from callfleet.agents.http_tools import HttpToolSpec, http_tool
from callfleet.agents.providers.openai import OpenAILLM, OpenAISTT, OpenAITTS
from callfleet.agents.providers.piper import PiperTTS
from callfleet.agents.providers.scripted import ScriptedLLM
from callfleet.agents.providers.silero import SileroVAD
from callfleet.agents.providers.whisper import WhisperSTT
from callfleet.agents.runner import transcript_line
from callfleet.agents.tools import FunctionTool, RunContext, ToolError
from tests.fakes.webhook_server import Answer, WebhookServer

EXAMPLES = Path(__file__).resolve().parents[3] / "examples" / "agents"

SCRIPT = {
    "fallback": "Sorry?",
    "intents": [
        {
            "name": "confirm",
            "match": ["yes"],
            "reply": "Booking it, {first_name}.",
            "tool": {"name": "book", "arguments": {"slot": "{slot}"}},
            "after_tool": "Done: {result.number}.",
        }
    ],
}
BASE: dict[str, Any] = {
    "name": "test-agent",
    "instructions": "You work for {company}.",
    "first_message": "Hi {first_name}, this is {company}.",
    "variables": {"company": "Acme", "slot": "3 pm"},
    "providers": {"llm": {"type": "scripted", "script": SCRIPT}},
}


def definition(**changes: Any) -> AgentDefinition:
    data = copy.deepcopy(BASE)
    data.update(changes)
    return AgentDefinition.parse(data, source="agent.yaml")


def with_providers(**providers: Any) -> dict[str, Any]:
    return {"llm": BASE["providers"]["llm"], **providers}


def tool_spec(**changes: Any) -> dict[str, Any]:
    return {"name": "book", "description": "Book a slot.", "url": "https://x.test/b", **changes}


# -- validation errors ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        (
            {"providers": {"llm": {"type": "foo"}}},
            "agent.yaml: providers.llm.type: unknown provider 'foo' (known: scripted, openai)",
        ),
        (
            {"providers": {}},
            "agent.yaml: providers.llm: is required: name an LLM, e.g. {type: scripted, "
            "script: dialogue.yaml} (the offline dialogue engine) or {type: openai, "
            "model: gpt-4o-mini}",
        ),
        ({"name": None}, "agent.yaml: name: must be a valid string, got None"),
        (
            {"nme": "x"},
            "agent.yaml: nme: unknown field (known: name, instructions, first_message, "
            "variables, session, providers, tools, transfer)",
        ),
        (
            {"session": {"min_endpointing_delay": "soon"}},
            "agent.yaml: session.min_endpointing_delay: must be a valid number, unable to "
            "parse string as a number, got 'soon'",
        ),
        (
            {"session": {"min_endpointing_delay": 4}},
            "agent.yaml: session: max_endpointing_delay (3.0) is below min_endpointing_delay (4.0)",
        ),
        (
            {"session": {"outbound_greeting": "later"}},
            "agent.yaml: session.outbound_greeting: must be 'immediate' or 'after_callee', "
            "got 'later'",
        ),
        (
            {"session": {"tts_text_transforms": ["shout"]}},
            "agent.yaml: session.tts_text_transforms: unknown tts_text_transform 'shout'; "
            "known: filter_emoji, filter_markdown",
        ),
        (
            {"instructions": "Hi {first name}"},
            "agent.yaml: instructions: '{first name}' is not a placeholder: use {name} with "
            "letters, digits and _, or {{ and }} for literal braces",
        ),
        (
            {"first_message": "Hi {"},
            "agent.yaml: first_message: unmatched '{' at character 4 (write '{{' for a "
            "literal brace)",
        ),
        (
            {"variables": {"first name": "Ann"}},
            "agent.yaml: variables: 'first name' is not a valid name: must match pattern "
            "'^[A-Za-z_][A-Za-z0-9_]*$'",
        ),
        (
            {"variables": {"slots": ["3 pm"]}},
            "agent.yaml: variables.slots: must be a string, number or boolean, got a list",
        ),
        (
            {"providers": with_providers(vad=[{"type": "silero"}])},
            "agent.yaml: providers.vad: must be one provider, not a list (only stt, llm, tts "
            "take a list of fallbacks)",
        ),
        (
            {"providers": with_providers(stt=[{"type": "whisper"}, {"type": "nope"}])},
            "agent.yaml: providers.stt[1].type: unknown provider 'nope' (known: whisper, "
            "openai, deepgram)",
        ),
        (
            {"providers": with_providers(tts=[])},
            "agent.yaml: providers.tts: must list at least one provider",
        ),
        (
            {"providers": with_providers(stt="whisper")},
            "agent.yaml: providers.stt: must be a mapping with a 'type', got 'whisper'",
        ),
        (
            {"providers": with_providers(stt={"beam_size": 2})},
            "agent.yaml: providers.stt.type: is required (known: whisper, openai, deepgram)",
        ),
        (
            {"providers": with_providers(stt={"type": "whisper", "beam_size": "wide"})},
            "agent.yaml: providers.stt.beam_size: must be a valid integer, unable to parse "
            "string as an integer, got 'wide'",
        ),
        (
            {"providers": with_providers(tts={"type": "openai", "api_key": "sk-secret"})},
            "agent.yaml: providers.tts.api_key: unknown field (known: model, voice, base_url, "
            "instructions, speed, timeout_s, extra_headers, api_key_env)",
        ),
        (
            {"providers": with_providers(tts={"type": "openai", "extra_headers": {"X": "{a}"}})},
            "agent.yaml: providers.tts.extra_headers.X: {a} is not allowed here: only "
            "{env:NAME} placeholders",
        ),
        (
            {"providers": with_providers(vox={"type": "silero"})},
            "agent.yaml: providers.vox: unknown field (known: vad, stt, llm, tts)",
        ),
        (
            {"providers": {"llm": {"type": "scripted", "script": {"intents": []}}}},
            "agent.yaml: providers.llm.script: 'fallback' must be a non-empty string",
        ),
        (
            {"tools": [tool_spec(url="ftp://x.test/b")]},
            "agent.yaml: tools[0].url: 'ftp://x.test/b' is not an http or https URL",
        ),
        (
            {"tools": [tool_spec(required=["slot"])]},
            "agent.yaml: tools[0].required: 'slot' is not one of the parameters",
        ),
        (
            {"tools": [tool_spec(parameters={"slot": {"type": "date"}})]},
            "agent.yaml: tools[0].parameters.slot.type: must be 'string', 'integer', "
            "'number', 'boolean', 'array' or 'object', got 'date'",
        ),
        (
            {"tools": [tool_spec(parameters={"call_id": {"type": "string"}})]},
            "agent.yaml: tools[0].parameters: 'call_id' is reserved: the request body "
            "carries it already",
        ),
        (
            {"tools": [tool_spec(), tool_spec()]},
            "agent.yaml: tools[1].name: 'book' is already the name of tools[0]",
        ),
        (
            {"tools": [tool_spec(name="book it")]},
            "agent.yaml: tools[0].name: must match pattern '^[a-zA-Z0-9_-]{1,64}$', got 'book it'",
        ),
        (
            {"tools": [tool_spec(timeout_s=0)]},
            "agent.yaml: tools[0].timeout_s: must be greater than 0, got 0",
        ),
        (
            {"tools": [tool_spec(headers={"Authorization": "Bearer {env:}"})]},
            "agent.yaml: tools[0].headers.Authorization: '{env:}' is not a placeholder: use "
            "{name} or {env:NAME} with letters, digits and _, or {{ and }} for literal "
            "braces",
        ),
        (
            {"tools": [tool_spec(description="")]},
            "agent.yaml: tools[0].description: must have at least 1 character, got ''",
        ),
        ({"tools": {"name": "book"}}, "agent.yaml: tools: must be a valid list, got a mapping"),
    ],
)
def test_validation_errors_name_the_field(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(AgentConfigError) as info:
        definition(**changes)
    assert str(info.value) == message


def test_the_file_must_be_a_mapping() -> None:
    with pytest.raises(AgentConfigError, match=r"^agent: must be a mapping of fields, got a list$"):
        AgentDefinition.parse(["name"])


def test_load_reports_unreadable_and_invalid_yaml(tmp_path: Path) -> None:
    missing = tmp_path / "none.yaml"
    with pytest.raises(AgentConfigError) as info:
        AgentDefinition.load(missing)
    assert str(info.value) == f"{missing}: cannot read the file: No such file or directory"
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: a\ninstructions: [unclosed\n")
    with pytest.raises(AgentConfigError) as info:
        AgentDefinition.load(bad)
    assert str(info.value).startswith(f"{bad}: not valid YAML: ")
    assert "(line 3)" in str(info.value)


def test_script_path_is_relative_to_the_agent_file(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "dialogue.yaml").write_text(json.dumps(SCRIPT))
    data = {**BASE, "providers": {"llm": {"type": "scripted", "script": "sub/dialogue.yaml"}}}
    agent_file = tmp_path / "agent.yaml"
    agent_file.write_text(json.dumps(data))
    loaded = AgentDefinition.load(agent_file)
    script = loaded.providers["llm"][0].script
    assert script is not None and script.intents[0].name == "confirm"

    data["providers"]["llm"]["script"] = "nope.yaml"
    agent_file.write_text(json.dumps(data))
    with pytest.raises(AgentConfigError) as info:
        AgentDefinition.load(agent_file)
    assert str(info.value) == (
        f"{agent_file}: providers.llm.script: cannot read {tmp_path / 'nope.yaml'}: "
        "No such file or directory"
    )

    (tmp_path / "broken.yaml").write_text(json.dumps({"fallback": "x", "intents": [{}]}))
    data["providers"]["llm"]["script"] = "broken.yaml"
    agent_file.write_text(json.dumps(data))
    with pytest.raises(AgentConfigError) as info:
        AgentDefinition.load(agent_file)
    assert str(info.value) == (
        f"{agent_file}: providers.llm.script: broken.yaml: intent 1: 'name' must be a "
        "non-empty string"
    )


# -- the example files ----------------------------------------------------------------


def test_example_reminder_loads_and_builds() -> None:
    reminder = AgentDefinition.load(EXAMPLES / "reminder.yaml")
    assert reminder.name == "reminder"
    env = {"BOOKING_TOKEN": "tok-1"}
    session, agent = reminder.build(
        {"first_name": "Sam", "appointment_time": "Tuesday at 3 pm", "appointment_id": "A-7"},
        env=env,
    )
    assert agent.first_message == (
        "Hi Sam, this is Acme Dental calling about your appointment on Tuesday at 3 pm. "
        "Can you still make it?"
    )
    assert "remind Sam of their appointment on Tuesday at 3 pm" in agent.instructions
    assert [t.name for t in agent.tools] == ["confirm_appointment", "reschedule_appointment"]
    assert isinstance(session.vad, SileroVAD) and isinstance(session.stt, WhisperSTT)
    assert isinstance(session.tts, PiperTTS) and isinstance(session.llm, ScriptedLLM)
    assert session.options.outbound_greeting == "after_callee"
    assert session.options.user_away_timeout == 15

    # The dialogue: confirm (with its tool), reschedule to a new slot, wrong person.
    llm = session.llm
    ctx = ChatContext()
    ctx.add_message(role="assistant", content=agent.first_message)
    ctx.add_message(role="user", content="Yes, I can make it.")
    reply = llm.plan_reply(ctx, tools=agent.tools)
    assert reply.intent == "confirm" and reply.tool_call is not None
    assert json.loads(reply.tool_call.arguments) == {"appointment_id": "A-7"}
    ctx.insert(reply.tool_call)
    ctx.insert(
        FunctionCallOutput(reply.tool_call.call_id, "confirm_appointment", '{"confirmation": "X9"}')
    )
    assert llm.plan_reply(ctx, tools=agent.tools).text == (
        "You're all set for Tuesday at 3 pm. Your confirmation number is X9. "
        "Is there anything else?"
    )

    ctx = ChatContext()
    ctx.add_message(role="user", content="No, I need to reschedule.")
    assert llm.plan_reply(ctx, tools=agent.tools).intent == "reschedule"
    ctx.add_message(role="user", content="Friday at 10 am please.")
    reply = llm.plan_reply(ctx, tools=agent.tools)
    assert reply.intent == "new_slot" and reply.tool_call is not None
    assert json.loads(reply.tool_call.arguments)["slot"] == "Friday at 10 am please"

    ctx = ChatContext()
    ctx.add_message(role="user", content="Sorry, wrong number.")
    assert llm.plan_reply(ctx).intent == "wrong_person"


def test_example_needs_its_secret_and_variables() -> None:
    reminder = AgentDefinition.load(EXAMPLES / "reminder.yaml")
    source = str(EXAMPLES / "reminder.yaml")
    with pytest.raises(AgentConfigError) as info:
        reminder.build_agent({"first_name": "Sam"}, env={})
    assert str(info.value) == (
        f"{source}: tools[0].headers.Authorization: environment variable BOOKING_TOKEN is not set"
    )
    with pytest.raises(AgentConfigError) as info:
        reminder.build_agent(env={"BOOKING_TOKEN": "t"})
    assert str(info.value) == (
        f"{source}: instructions: variable 'first_name' is not set (give it for the "
        "call, or a default in 'variables')"
    )
    assert reminder.required_variables == ["first_name"]


# -- templates, variables, options ----------------------------------------------------


def test_call_variables_override_the_defaults_and_reach_the_scripted_llm() -> None:
    agent_def = definition(instructions="{company} {{braces}} {n} {flag}")
    agent = agent_def.build_agent({"first_name": "Ann", "company": "Beta", "n": 3, "flag": True})
    assert agent.instructions == "Beta {braces} 3 true"
    assert agent.first_message == "Hi Ann, this is Beta."
    session = agent_def.build_session({"first_name": "Ann", "slot": "9 am"})
    assert isinstance(session.llm, ScriptedLLM)
    assert session.llm.variables["slot"] == "9 am"
    assert session.llm.variables["company"] == "Acme"
    assert agent_def.variables == {"company": "Acme", "slot": "3 pm"}


def test_first_message_may_be_omitted() -> None:
    data = copy.deepcopy(BASE)
    del data["first_message"]
    agent = AgentDefinition.parse(data).build_agent()
    assert agent.first_message is None


def test_session_options_and_overrides() -> None:
    agent_def = definition(session={"min_endpointing_delay": 0.8, "user_away_timeout": None})
    session = agent_def.build_session({}, max_endpointing_delay=5.0, min_endpointing_delay=1.0)
    assert session.options.min_endpointing_delay == 1.0
    assert session.options.max_endpointing_delay == 5.0
    assert session.options.user_away_timeout is None
    assert session.options.allow_interruptions is True  # the default, untouched


def test_offline_defaults_are_shared_and_the_scripted_llm_is_per_call() -> None:
    agent_def = definition()
    first = agent_def.build_session({"first_name": "A"})
    second = agent_def.build_session({"first_name": "B"})
    assert isinstance(first.vad, SileroVAD) and isinstance(first.stt, WhisperSTT)
    assert isinstance(first.tts, PiperTTS)
    assert (first.vad, first.stt, first.tts) == (second.vad, second.stt, second.tts)
    assert first.llm is not second.llm
    assert isinstance(first.llm, ScriptedLLM) and isinstance(second.llm, ScriptedLLM)
    assert (first.llm.variables["first_name"], second.llm.variables["first_name"]) == ("A", "B")


async def test_fallback_lists_and_hosted_providers_with_key_env() -> None:
    local = "http://127.0.0.1:9/v1"
    agent_def = definition(
        providers={
            "vad": {"type": "silero", "sample_rate": 8000},
            "stt": [
                {"type": "openai", "base_url": local, "api_key_env": "STT_KEY"},
                {"type": "whisper"},
            ],
            "llm": [
                {"type": "openai", "model": "m1", "base_url": local, "temperature": 0.2},
                {"type": "scripted", "script": SCRIPT},
            ],
            "tts": [
                {"type": "openai", "base_url": local, "extra_headers": {"X-Org": "{env:ORG}"}},
                {"type": "piper"},
            ],
        }
    )
    env = {"STT_KEY": "sk-stt", "ORG": "org-1"}
    session = agent_def.build_session({"first_name": "A"}, env=env)
    assert isinstance(session.stt, FallbackSTT) and isinstance(session.tts, FallbackTTS)
    assert isinstance(session.llm, FallbackLLM)
    stt, whisper = session.stt.providers
    assert isinstance(stt, OpenAISTT) and isinstance(whisper, WhisperSTT)
    assert stt._headers["Authorization"] == "Bearer sk-stt"
    openai_llm, scripted = session.llm.providers
    assert isinstance(openai_llm, OpenAILLM) and openai_llm.model == "m1"
    assert isinstance(scripted, ScriptedLLM)
    tts = session.tts.providers[0]
    assert isinstance(tts, OpenAITTS) and tts._headers["X-Org"] == "org-1"
    # Shared between calls, except the chain that holds the per-call scripted LLM.
    again = agent_def.build_session({"first_name": "B"}, env=env)
    assert again.stt is session.stt and again.tts is session.tts
    assert isinstance(again.llm, FallbackLLM) and again.llm is not session.llm
    assert again.llm.providers[0] is openai_llm
    await agent_def.aclose()


def test_missing_secrets_fail_at_build_time() -> None:
    agent_def = definition(
        providers=with_providers(stt={"type": "openai", "api_key_env": "STT_KEY"})
    )
    with pytest.raises(AgentConfigError) as info:
        agent_def.build_session(env={})
    assert str(info.value) == (
        "agent.yaml: providers.stt.api_key_env: environment variable STT_KEY is not set"
    )
    agent_def = definition(
        providers=with_providers(tts={"type": "openai", "extra_headers": {"X-Org": "{env:ORG}"}})
    )
    with pytest.raises(AgentConfigError) as info:
        agent_def.build_session(env={"OPENAI_API_KEY": "k"})
    assert str(info.value) == (
        "agent.yaml: providers.tts.extra_headers.X-Org: environment variable ORG is not set"
    )


def test_provider_errors_at_build_name_the_entry() -> None:
    agent_def = definition(providers=with_providers(vad={"type": "silero", "sample_rate": 44100}))
    with pytest.raises(AgentConfigError) as info:
        agent_def.build_session()
    assert str(info.value) == (
        "agent.yaml: providers.vad: SileroVAD sample_rate must be 8000 or 16000 Hz, got 44100"
    )


# -- webhook tools --------------------------------------------------------------------


def context(call_id: str = "call-1") -> RunContext[Any]:
    call = FunctionCall(call_id="c1", name="book", arguments="{}")
    return RunContext(session=SimpleNamespace(call_id=call_id), function_call=call)  # type: ignore[arg-type]


def webhook_agent_tool(server: WebhookServer, **changes: Any) -> FunctionTool:
    tool = tool_spec(
        url=server.url("/book/{company}"),
        headers={"Authorization": "Bearer {env:BOOK_TOKEN}", "X-Company": "{company}"},
        parameters={
            "slot": {"type": "string", "description": "The slot."},
            "people": {"type": "integer"},
            "kind": {"type": "string", "enum": ["visit", "call"]},
        },
        required=["slot"],
        **changes,
    )
    agent = definition(tools=[tool]).build_agent({"first_name": "Ann"}, env={"BOOK_TOKEN": "s3"})
    return agent.tools[0]


async def test_webhook_tool_posts_arguments_call_id_and_variables() -> None:
    with WebhookServer() as server:
        server.answers["/book/Acme"] = Answer.json({"number": "A1"})
        tool = webhook_agent_tool(server)
        assert tool.schema()["function"]["parameters"] == {
            "type": "object",
            "properties": {
                "slot": {"type": "string", "description": "The slot."},
                "people": {"type": "integer"},
                "kind": {"type": "string", "enum": ["visit", "call"]},
            },
            "required": ["slot"],
        }
        result = await tool.invoke(context(), json.dumps({"slot": "3 pm", "kind": "visit"}))
    assert result == {"number": "A1"}
    [request] = server.requests
    assert (request.method, request.path) == ("POST", "/book/Acme")
    assert request.headers["authorization"] == "Bearer s3"
    assert request.headers["x-company"] == "Acme"
    assert request.json() == {
        "slot": "3 pm",
        "kind": "visit",
        "call_id": "call-1",
        "variables": {"company": "Acme", "slot": "3 pm", "first_name": "Ann"},
    }


async def test_webhook_tool_get_sends_query_parameters_and_returns_text() -> None:
    with WebhookServer() as server:
        server.answers["/book/Acme"] = Answer.text("booked for 3 pm")
        tool = webhook_agent_tool(server, method="get")
        result = await tool.invoke(context(), json.dumps({"slot": "3 pm", "people": 2}))
    assert result == "booked for 3 pm"
    [request] = server.requests
    assert request.method == "GET" and request.body == b""
    assert request.query == {"slot": "3 pm", "people": "2", "call_id": "call-1"}


async def test_webhook_tool_empty_answer_gives_the_status() -> None:
    with WebhookServer() as server:
        server.answers["/book/Acme"] = Answer(status=204)
        result = await webhook_agent_tool(server).invoke(context(), '{"slot": "3 pm"}')
    assert result == {"status": 204}


async def test_webhook_tool_errors_are_tool_errors() -> None:
    with WebhookServer() as server:
        tool = webhook_agent_tool(server)
        server.answers["/book/Acme"] = Answer.text("slot taken " + "x" * 300, status=409)
        with pytest.raises(ToolError) as info:
            await tool.invoke(context(), '{"slot": "3 pm"}')
        assert str(info.value) == ("book failed: HTTP 409 Conflict: slot taken " + "x" * 189 + "…")
        server.answers["/book/Acme"] = Answer(status=500)
        with pytest.raises(ToolError, match=r"^book failed: HTTP 500 Internal Server Error$"):
            await tool.invoke(context(), '{"slot": "3 pm"}')
        with pytest.raises(ToolError) as info:
            await tool.invoke(context(), '{"people": "many"}')
        assert str(info.value) == (
            "bad arguments for book: slot: Field required; people: Input should be a valid "
            "integer, unable to parse string as an integer"
        )
        with pytest.raises(ToolError, match=r"^bad arguments for book: kind: Input should be"):
            await tool.invoke(context(), '{"slot": "3 pm", "kind": "dance"}')
        assert len(server.requests) == 2  # bad arguments never reach the service

        slow = http_tool(
            HttpToolSpec(name="slow", description="d", url=server.url("/slow"), timeout_s=0.2)
        )
        server.answers["/slow"] = Answer.json({}, 200)
        server.answers["/slow"].delay_s = 1.0
        with pytest.raises(ToolError, match=r"^slow failed: no answer within 0.2 s$"):
            await slow.invoke(context(), "{}")

    gone = http_tool(HttpToolSpec(name="gone", description="d", url="http://127.0.0.1:9/x"))
    with pytest.raises(
        ToolError, match=r"^gone failed: cannot reach the service \(ConnectError\)$"
    ):
        await gone.invoke(context(), "{}")


async def test_parameter_names_that_clash_with_pydantic_still_work() -> None:
    with WebhookServer() as server:
        spec = HttpToolSpec(
            name="t",
            description="d",
            url=server.url("/t"),
            parameters={
                "json": {"type": "boolean"},
                "items": {"type": "array", "items": {"type": "number"}},
            },
            required=("json",),
        )
        result = await http_tool(spec).invoke(context(), '{"json": true, "items": [1, 2.5]}')
    assert result == {"ok": True}
    assert server.requests[0].json() == {
        "json": True,
        "items": [1, 2.5],
        "call_id": "call-1",
        "variables": {},
    }


def test_missing_tool_variable_names_the_tool_field() -> None:
    agent_def = definition(tools=[tool_spec(url="{base}/book")])
    assert agent_def.required_variables == ["base", "first_name"]
    with pytest.raises(AgentConfigError) as info:
        agent_def.build_agent({"first_name": "Ann"})
    assert str(info.value) == (
        "agent.yaml: tools[0].url: variable 'base' is not set (give it for the call, or a "
        "default in 'variables')"
    )
    with pytest.raises(AgentConfigError) as info:
        agent_def.build_agent({"first_name": "Ann", "base": "ftp://x.test"})
    assert (
        str(info.value)
        == "agent.yaml: tools[0].url: 'ftp://x.test/book' is not an http or https URL"
    )


def test_transcript_lines() -> None:
    assert transcript_line(ChatMessage(role="assistant", content="Hi.")) == "agent: Hi."
    assert transcript_line(ChatMessage(role="user", content="Yes")) == "user: Yes"
    cut = ChatMessage(role="assistant", content="Let me", interrupted=True)
    assert transcript_line(cut) == "agent: Let me [interrupted]"
    assert transcript_line(ChatMessage(role="system", content="x")) is None
    call = FunctionCall(call_id="c1", name="book", arguments='{"slot": "3 pm"}')
    assert transcript_line(call) == 'tool call: book({"slot": "3 pm"})'
    failed = FunctionCallOutput("c1", "book", "book failed: HTTP 409 Conflict", is_error=True)
    assert transcript_line(failed) == "tool error: book: book failed: HTTP 409 Conflict"


def test_transfer_section_adds_an_allow_listed_transfer_tool() -> None:
    agent = definition(
        transfer={"destinations": {"billing": "sip:billing@pbx.example"}, "default_mode": "blind"}
    ).build_agent({"first_name": "Ann"})
    (tool,) = [t for t in agent.tools if t.name == "transfer_call"]
    props = tool.parameters["properties"]
    assert props["destination"]["enum"] == ["billing"]
    assert props["mode"]["default"] == "blind"
    with pytest.raises(AgentConfigError, match=r"transfer.destinations: .*at least 1 item"):
        definition(transfer={"destinations": {}})
    with pytest.raises(AgentConfigError, match=r"transfer.default_mode: "):
        definition(transfer={"destinations": {"a": "sip:a@b"}, "default_mode": "cold"})
