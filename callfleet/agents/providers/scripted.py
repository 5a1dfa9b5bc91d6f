"""The scripted dialogue engine: an offline, deterministic stand-in for an LLM.

It implements the ``LLM`` protocol (label ``scripted``) from a small YAML script of
intents: the last user message is matched against each intent's phrases, and the
intent's reply is streamed word by word, optionally followed by one tool call; when the
tool's output comes back, the intent's ``after_tool`` reply is spoken. It understands
nothing beyond its phrases, and says so with the script's ``fallback``.

Script format (every field not marked required is optional)::

    variables: {company: Acme}        # template defaults (strings or numbers)
    initial_state: start              # the state before any intent matched (default: start)
    greeting: "Hi, this is {company}." # the reply when nobody has spoken yet (else reprompt)
    fallback: "Sorry, I didn't catch that."   # required: the reply when no intent matches
    reprompt: "Are you still there?"  # the reply with no new user input (default: fallback)
    intents:                          # required, non-empty, tried in order
      - name: confirm                 # required, unique
        match: ["yes", "that works", "regex:^(?P<slot>\\d+ ?[ap]m)$"]   # required
        state: offer                  # only matches in this state (a name or a list)
        reply: "Great, {first_name}, you're booked for {slot}."
        tool: {name: book_appointment, arguments: {slot: "{slot}"}}
        after_tool: "Done. Your confirmation number is {result.number}."
        after_tool_error: "Sorry, the booking failed: {result}"
        set: {confirmed: "true"}      # variables set when the intent matches
        next: closing                 # the state after the intent matched

Matching: a phrase matches when its words appear, consecutive and whole, in the user's
message, ignoring case, punctuation and apostrophes ("That's right!" contains "thats
right"). A ``regex:`` entry is searched, case-insensitively, in the raw message; the
named groups of every regex entry that matches become variables. Intents scoped to the
current state (``state``) are tried first, then the intents without ``state``, each in
file order; the first match wins, so list specific phrases before general ones. An
intent without ``next`` leaves the state as it is; ``next`` must name ``initial_state``
or a state some intent uses.

State is derived from the conversation, not kept between calls: every ``chat`` replays
the user messages of the ``ChatContext`` from the start (matching each, applying
``set``, regex captures and ``next``), so one engine may serve any number of
conversations, and editing the history changes the state accordingly.

Templates: ``{name}`` is replaced by a variable, ``{{`` and ``}}`` are literal braces.
Variables are, lowest precedence first: the script's ``variables``, those given to the
engine (``variables=`` and ``update_variables()``; per call, e.g. the contact's fields),
then those set by intents that matched and regex captures. In ``after_tool`` and
``after_tool_error``, ``{result}`` is the tool's output (a JSON string is unquoted) and
``{result.field}`` (also ``{result.a.b}``, ``{result.items.0}``) reads a field of a JSON
output. A variable that is not set is rendered empty, with a warning that names the
variable and the intent. A tool output that is an error uses ``after_tool_error``, or
the ``fallback`` when the intent has none; with no ``after_tool`` nothing is said.

Tool calls honour ``tool_choice``: with ``none`` no tool is called; a tool that is not
among the ``tools`` passed (or not the one a named ``tool_choice`` forces) is not called
and a warning is logged; in those cases only the intent's ``reply`` is spoken.
``required`` is treated as ``auto``: the engine calls only the tools its script names.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import unicodedata
import uuid
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeGuard

import yaml

from callfleet.agents.chat import (
    ChatChunk,
    ChatContext,
    ChatItem,
    ChatMessage,
    FunctionCall,
    FunctionCallOutput,
)
from callfleet.agents.providers.base import ToolChoice
from callfleet.agents.tools import FunctionTool

log = logging.getLogger(__name__)

LABEL = "scripted"
DEFAULT_INITIAL_STATE = "start"
REGEX_PREFIX = "regex:"
#: Prefix of the ``call_id`` of the tool calls the engine makes.
CALL_ID_PREFIX = "call_scripted_"

_SCRIPT_FIELDS = ("variables", "initial_state", "greeting", "fallback", "reprompt", "intents")
_INTENT_FIELDS = "name match state reply tool after_tool after_tool_error set next".split()
_RESULT_FIELDS = ("after_tool", "after_tool_error")
_IDENT_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_PLACEHOLDER_RE = re.compile(r"\{\{|\}\}|\{([A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z0-9_]+)*)\}")
_WORD_RE = re.compile(r"[^\W_]+")
_CHUNK_RE = re.compile(r"\S+\s*")


class ScriptError(ValueError):
    """The dialogue script is invalid; the message names the field."""


def normalize(text: str) -> str:
    """Lowercase words separated by single spaces: no punctuation, no apostrophes."""
    text = unicodedata.normalize("NFKC", text).casefold()
    text = text.replace("'", "").replace("\u2019", "")
    return " ".join(_WORD_RE.findall(text))


def _format_value(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value
    if isinstance(value, int | float):
        return str(value)
    return json.dumps(value, ensure_ascii=False)


# -- the script ------------------------------------------------------------------------


@dataclass(frozen=True)
class Matcher:
    """One ``match`` entry: a normalized phrase, or a regular expression."""

    source: str
    phrase: str | None = None
    pattern: re.Pattern[str] | None = None

    def match(self, raw: str, normalized: str) -> dict[str, str] | None:
        """The regex captures when the entry matches (empty for phrases), else None."""
        if self.pattern is not None:
            found = self.pattern.search(raw)
            if found is None:
                return None
            return {k: v.strip() for k, v in found.groupdict().items() if v is not None}
        return {} if f" {self.phrase} " in f" {normalized} " else None


@dataclass(frozen=True)
class ToolRequest:
    name: str
    #: Argument values; strings in it are templates.
    arguments: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Intent:
    name: str
    matchers: tuple[Matcher, ...]
    reply: str | None = None
    tool: ToolRequest | None = None
    after_tool: str | None = None
    after_tool_error: str | None = None
    set_variables: Mapping[str, str] = field(default_factory=dict)
    next_state: str | None = None
    #: The states the intent matches in; None: every state.
    states: frozenset[str] | None = None

    def match(self, raw: str, normalized: str) -> dict[str, str] | None:
        """None when no entry matches, else the captures of every regex entry that does."""
        found = [c for c in (m.match(raw, normalized) for m in self.matchers) if c is not None]
        return {k: v for captures in found for k, v in captures.items()} if found else None


def _placeholders(value: object) -> list[str]:
    """The placeholder names in ``value`` (a template, or a structure of them)."""
    if isinstance(value, str):
        return [m.group(1) for m in _PLACEHOLDER_RE.finditer(value) if m.group(1)]
    if isinstance(value, Mapping):
        value = list(value.values())
    if isinstance(value, list):
        return [p for v in value for p in _placeholders(v)]
    return []


def _is_name_list(value: object) -> TypeGuard[list[str]]:
    return isinstance(value, list) and bool(value) and all(isinstance(v, str) for v in value)


def _no_result(where: str, key: str, value: object) -> None:
    if any(p.split(".")[0] == "result" for p in _placeholders(value)):
        raise ScriptError(
            f"{where}'{key}' uses {{result}}, which only 'after_tool' and 'after_tool_error' "
            "can use"
        )


def _text(raw: Mapping[str, Any], key: str, where: str) -> str | None:
    value = raw.get(key)
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        raise ScriptError(f"{where}'{key}' must be a non-empty string")
    if key not in _RESULT_FIELDS:
        _no_result(where, key, value)
    return value


def _variables(raw: object, where: str, key: str) -> dict[str, str]:
    if raw is None:
        return {}
    if not isinstance(raw, Mapping) or not all(
        isinstance(v, str | int | float | bool) for v in raw.values()
    ):
        raise ScriptError(f"{where}'{key}' must be a mapping of names to strings or numbers")
    for name in raw:
        if not isinstance(name, str) or not _IDENT_RE.match(name) or name == "result":
            raise ScriptError(f"{where}'{key}' name {name!r} is not a variable name")
    _no_result(where, key, raw)
    return {k: _format_value(v) for k, v in raw.items()}


def _matchers(entries: object, where: str) -> tuple[Matcher, ...]:
    if not _is_name_list(entries):
        raise ScriptError(f"{where}'match' must be a non-empty list of strings")
    out: list[Matcher] = []
    for number, entry in enumerate(entries, start=1):
        if entry.startswith(REGEX_PREFIX):
            try:
                pattern = re.compile(entry[len(REGEX_PREFIX) :].strip(), re.IGNORECASE)
            except re.error as e:
                raise ScriptError(f"{where}'match' entry {number} is not a valid regex: {e}") from e
            out.append(Matcher(entry, pattern=pattern))
        elif phrase := normalize(entry):
            out.append(Matcher(entry, phrase=phrase))
        else:
            raise ScriptError(f"{where}'match' entry {number} ({entry!r}) has no words")
    return tuple(out)


def _tool(raw: object, where: str) -> ToolRequest | None:
    if raw is None:
        return None
    if not isinstance(raw, Mapping) or set(raw) - {"name", "arguments"}:
        raise ScriptError(f"{where}'tool' must be a mapping with 'name' and 'arguments'")
    name, arguments = raw.get("name"), raw.get("arguments") or {}
    if not isinstance(name, str) or not name.strip():
        raise ScriptError(f"{where}'tool.name' must be a non-empty string")
    if not isinstance(arguments, Mapping) or not all(isinstance(k, str) for k in arguments):
        raise ScriptError(f"{where}'tool.arguments' must be a mapping")
    _no_result(where, "tool.arguments", arguments)
    return ToolRequest(name.strip(), dict(arguments))


def _states(raw: object, where: str) -> frozenset[str] | None:
    if raw is None:
        return None
    items = [raw] if isinstance(raw, str) else raw
    if not _is_name_list(items) or not all(s.strip() for s in items):
        raise ScriptError(f"{where}'state' must be a string or a non-empty list of strings")
    return frozenset(s.strip() for s in items)


def _intent(index: int, raw: object, earlier: Mapping[str, int]) -> Intent:
    if not isinstance(raw, Mapping):
        raise ScriptError(f"intent {index} must be a mapping, got {type(raw).__name__}")
    name = raw.get("name")
    if not isinstance(name, str) or not name.strip():
        raise ScriptError(f"intent {index}: 'name' must be a non-empty string")
    name = name.strip()
    where = f"intent {index} ({name}): "
    if name in earlier:
        raise ScriptError(f"{where}'name' is already used by intent {earlier[name]}")
    unknown = [k for k in raw if k not in _INTENT_FIELDS]
    if unknown:
        raise ScriptError(f"{where}unknown field {unknown[0]!r}")
    next_state = raw.get("next")
    if next_state is not None and (not isinstance(next_state, str) or not next_state.strip()):
        raise ScriptError(f"{where}'next' must be a non-empty string")
    intent = Intent(
        name=name,
        matchers=_matchers(raw.get("match"), where),
        reply=_text(raw, "reply", where),
        tool=_tool(raw.get("tool"), where),
        after_tool=_text(raw, "after_tool", where),
        after_tool_error=_text(raw, "after_tool_error", where),
        set_variables=_variables(raw.get("set"), where, "set"),
        next_state=next_state.strip() if next_state else None,
        states=_states(raw.get("state"), where),
    )
    for key in _RESULT_FIELDS:
        if getattr(intent, key) is not None and intent.tool is None:
            raise ScriptError(f"{where}'{key}' needs a 'tool'")
    if intent.reply is None and intent.tool is None:
        raise ScriptError(f"{where}needs a 'reply' or a 'tool'")
    return intent


@dataclass(frozen=True)
class DialogueScript:
    """A parsed, validated script (see the module docstring for the format)."""

    intents: tuple[Intent, ...]
    fallback: str
    reprompt: str
    greeting: str | None = None
    variables: Mapping[str, str] = field(default_factory=dict)
    initial_state: str = DEFAULT_INITIAL_STATE

    @classmethod
    def parse(cls, data: object) -> DialogueScript:
        """Validate ``data`` (the script as parsed YAML); ``ScriptError`` names the field."""
        if not isinstance(data, Mapping):
            raise ScriptError(f"script must be a mapping, got {type(data).__name__}")
        unknown = [k for k in data if k not in _SCRIPT_FIELDS]
        if unknown:
            raise ScriptError(f"script has unknown field {unknown[0]!r}")
        fallback = _text(data, "fallback", "")
        if fallback is None:
            raise ScriptError("'fallback' must be a non-empty string")
        variables = _variables(data.get("variables"), "", "variables")
        initial_state = data.get("initial_state", DEFAULT_INITIAL_STATE)
        if not isinstance(initial_state, str) or not initial_state.strip():
            raise ScriptError("'initial_state' must be a non-empty string")
        raw_intents = data.get("intents")
        if not isinstance(raw_intents, list) or not raw_intents:
            raise ScriptError("'intents' must be a non-empty list of mappings")
        intents: list[Intent] = []
        for index, raw in enumerate(raw_intents, start=1):
            intents.append(_intent(index, raw, {i.name: n for n, i in enumerate(intents, 1)}))
        known_states = {initial_state.strip()}.union(*(i.states or () for i in intents))
        for index, intent in enumerate(intents, start=1):
            if intent.next_state is not None and intent.next_state not in known_states:
                raise ScriptError(
                    f"intent {index} ({intent.name}): 'next' names unknown state "
                    f"{intent.next_state!r} (no intent has it in 'state')"
                )
        return cls(
            intents=tuple(intents),
            fallback=fallback,
            reprompt=_text(data, "reprompt", "") or fallback,
            greeting=_text(data, "greeting", ""),
            variables=variables,
            initial_state=initial_state.strip(),
        )


# -- templates -------------------------------------------------------------------------


@dataclass(frozen=True)
class _ToolResult:
    text: str
    value: Any  # the output parsed as JSON, or the text when it is not JSON

    @classmethod
    def of(cls, output: str) -> _ToolResult:
        try:
            value = json.loads(output)
        except ValueError:
            return cls(output, output)
        return cls(value if isinstance(value, str) else output, value)

    def lookup(self, path: list[str]) -> tuple[bool, Any]:
        value = self.value
        for key in path:
            if isinstance(value, Mapping) and key in value:
                value = value[key]
            elif isinstance(value, list) and key.isdigit() and int(key) < len(value):
                value = value[int(key)]
            else:
                return False, None
        return True, value


def render(
    template: str,
    variables: Mapping[str, str],
    *,
    intent: str,
    result: _ToolResult | None = None,
    warn: bool = True,
) -> str:
    """``template`` with its ``{placeholders}`` filled; missing ones render empty."""

    def fill(m: re.Match[str]) -> str:
        whole, name = m.group(0), m.group(1)
        if not name:
            return whole[0]  # "{{" or "}}"
        head, *path = name.split(".")
        if head == "result" and result is not None:
            if not path:
                return result.text
            found, value = result.lookup(path)
            if found:
                return _format_value(value)
        elif not path and head in variables:
            return variables[head]
        if warn:
            log.warning(
                "scripted: intent %s: template variable %s is not set; rendering it empty",
                intent,
                name,
            )
        return ""

    return _PLACEHOLDER_RE.sub(fill, template)


def _render_value(value: Any, variables: Mapping[str, str], intent: str) -> Any:
    if isinstance(value, str):
        return render(value, variables, intent=intent)
    if isinstance(value, Mapping):
        return {k: _render_value(v, variables, intent) for k, v in value.items()}
    if isinstance(value, list):
        return [_render_value(v, variables, intent) for v in value]
    return value


def split_reply(text: str) -> list[str]:
    """``text`` in word-sized streaming deltas (each word with the space after it)."""
    return _CHUNK_RE.findall(text.strip())


# -- the engine ------------------------------------------------------------------------


@dataclass
class DialogueState:
    """Where a conversation stands, as replayed from its ``ChatContext``."""

    state: str
    variables: dict[str, str]
    #: The intent that matched the last user message (None: nothing matched, or no user
    #: message yet).
    last_intent: Intent | None = None


@dataclass(frozen=True)
class ScriptedReply:
    """What the engine answers: text to speak and/or one tool call."""

    #: What produced it: "intent", "after_tool", "fallback", "reprompt" or "greeting".
    kind: str
    text: str = ""
    tool_call: FunctionCall | None = None
    intent: str | None = None


class ScriptedLLM:
    """The ``LLM`` protocol over a ``DialogueScript`` (see the module docstring).

    Args:
        script: the parsed script (or use ``from_file``, ``from_yaml``, ``from_dict``).
        variables: template variables for this engine, over the script's (default none).
        delay_s: pause before each streamed chunk, in seconds (default 0: no pause).
    """

    def __init__(
        self,
        script: DialogueScript,
        *,
        variables: Mapping[str, object] | None = None,
        delay_s: float = 0.0,
    ) -> None:
        if delay_s < 0:
            raise ValueError(f"delay_s must be >= 0, got {delay_s}")
        self.label = LABEL
        self.script = script
        self._delay_s = delay_s
        self._variables: dict[str, str] = {}
        self.update_variables(variables or {})

    @classmethod
    def from_dict(
        cls,
        data: Mapping[str, Any],
        *,
        variables: Mapping[str, object] | None = None,
        delay_s: float = 0.0,
    ) -> ScriptedLLM:
        return cls(DialogueScript.parse(data), variables=variables, delay_s=delay_s)

    @classmethod
    def from_yaml(
        cls, text: str, *, variables: Mapping[str, object] | None = None, delay_s: float = 0.0
    ) -> ScriptedLLM:
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as e:
            raise ScriptError(f"script is not valid YAML: {e}") from e
        return cls(DialogueScript.parse(data), variables=variables, delay_s=delay_s)

    @classmethod
    def from_file(
        cls,
        path: str | Path,
        *,
        variables: Mapping[str, object] | None = None,
        delay_s: float = 0.0,
    ) -> ScriptedLLM:
        text = Path(path).read_text(encoding="utf-8")
        try:
            return cls.from_yaml(text, variables=variables, delay_s=delay_s)
        except ScriptError as e:
            raise ScriptError(f"{path}: {e}") from e

    @property
    def variables(self) -> dict[str, str]:
        """The engine's variables over the script's (a copy)."""
        return {**self.script.variables, **self._variables}

    def update_variables(self, variables: Mapping[str, object]) -> None:
        """Set template variables (values become strings; None renders empty)."""
        for name, value in variables.items():
            self._variables[str(name)] = _format_value(value)

    def _match(self, text: str, state: str) -> tuple[Intent, dict[str, str]] | None:
        normalized = normalize(text)
        scoped = [i for i in self.script.intents if i.states is not None and state in i.states]
        unscoped = [i for i in self.script.intents if i.states is None]
        for intent in scoped + unscoped:
            captures = intent.match(text, normalized)
            if captures is not None:
                return intent, captures
        return None

    def replay(self, chat_ctx: ChatContext) -> DialogueState:
        """The state and variables after the user messages of ``chat_ctx``."""
        result = DialogueState(self.script.initial_state, self.variables)
        user_messages = [
            item
            for item in chat_ctx.items
            if isinstance(item, ChatMessage) and item.role == "user" and item.content.strip()
        ]
        for number, message in enumerate(user_messages, start=1):
            found = self._match(message.content, result.state)
            result.last_intent = found[0] if found else None
            if found is None:
                continue
            intent, captures = found
            result.variables.update(captures)
            for name, template in intent.set_variables.items():
                result.variables[name] = render(
                    template,
                    result.variables,
                    intent=intent.name,
                    warn=number == len(user_messages),
                )
            if intent.next_state is not None:
                result.state = intent.next_state
        return result

    def plan_reply(
        self,
        chat_ctx: ChatContext,
        *,
        tools: list[FunctionTool] | None = None,
        tool_choice: ToolChoice = "auto",
    ) -> ScriptedReply:
        """The reply ``chat`` streams, decided at once (for tests and transcripts)."""
        current = self.replay(chat_ctx)
        last = _last_turn_item(chat_ctx)
        if isinstance(last, FunctionCallOutput):
            return self._after_tool(chat_ctx, last, current)
        if not (isinstance(last, ChatMessage) and last.role == "user" and last.content.strip()):
            spoken = any(
                isinstance(i, ChatMessage) and i.role in ("user", "assistant")
                for i in chat_ctx.items
            )
            if self.script.greeting is not None and not spoken:
                text = render(self.script.greeting, current.variables, intent="greeting")
                return ScriptedReply("greeting", text)
            text = render(self.script.reprompt, current.variables, intent="reprompt")
            return ScriptedReply("reprompt", text)
        intent = current.last_intent
        if intent is None:
            text = render(self.script.fallback, current.variables, intent="fallback")
            return ScriptedReply("fallback", text)
        text = render(intent.reply, current.variables, intent=intent.name) if intent.reply else ""
        tool_call = None
        if intent.tool is not None and self._tool_allowed(intent, tools, tool_choice):
            arguments = _render_value(dict(intent.tool.arguments), current.variables, intent.name)
            tool_call = FunctionCall(
                call_id=f"{CALL_ID_PREFIX}{uuid.uuid4().hex[:16]}",
                name=intent.tool.name,
                arguments=json.dumps(arguments, ensure_ascii=False),
            )
        elif intent.tool is None and tool_choice == "required":
            log.warning(
                "scripted: tool_choice is 'required' but intent %s calls no tool; replying "
                "with text only",
                intent.name,
            )
        return ScriptedReply("intent", text, tool_call, intent.name)

    def _tool_allowed(
        self, intent: Intent, tools: list[FunctionTool] | None, tool_choice: ToolChoice
    ) -> bool:
        assert intent.tool is not None
        name = intent.tool.name
        if tool_choice == "none":
            log.debug(
                "scripted: tool_choice is 'none'; intent %s does not call %s", intent.name, name
            )
            return False
        offered = [t.name for t in tools or ()]
        if name not in offered:
            log.warning(
                "scripted: intent %s asks for tool %s, which is not among the tools offered "
                "(%s); replying without it",
                intent.name,
                name,
                ", ".join(offered) or "none",
            )
            return False
        if tool_choice not in ("auto", "required") and tool_choice != name:
            log.warning(
                "scripted: tool_choice forces tool %s, but intent %s asks for %s; replying "
                "without it",
                tool_choice,
                intent.name,
                name,
            )
            return False
        return True

    def _after_tool(
        self, chat_ctx: ChatContext, output: FunctionCallOutput, current: DialogueState
    ) -> ScriptedReply:
        intent = current.last_intent
        ours = any(
            isinstance(i, FunctionCall)
            and i.call_id == output.call_id
            and i.call_id.startswith(CALL_ID_PREFIX)
            for i in chat_ctx.items
        )
        if not ours or intent is None or intent.tool is None or intent.tool.name != output.name:
            log.warning(
                "scripted: output of tool %s (call %s) answers no tool call the script asked "
                "for; replying with the fallback",
                output.name,
                output.call_id,
            )
            text = render(self.script.fallback, current.variables, intent="fallback")
            return ScriptedReply("fallback", text)
        template = intent.after_tool_error if output.is_error else intent.after_tool
        if output.is_error and template is None:
            log.warning(
                "scripted: tool %s failed for intent %s (%s) and the intent has no "
                "after_tool_error; replying with the fallback",
                output.name,
                intent.name,
                output.output,
            )
            text = render(self.script.fallback, current.variables, intent="fallback")
            return ScriptedReply("fallback", text, intent=intent.name)
        result = _ToolResult.of(output.output)
        text = (
            render(template, current.variables, intent=intent.name, result=result)
            if template
            else ""
        )
        return ScriptedReply("after_tool", text, intent=intent.name)

    async def chat(
        self,
        *,
        chat_ctx: ChatContext,
        tools: list[FunctionTool] | None = None,
        tool_choice: ToolChoice = "auto",
    ) -> AsyncIterator[ChatChunk]:
        """Stream the scripted reply: one chunk per word, then the tool call if any."""
        reply = self.plan_reply(chat_ctx, tools=tools, tool_choice=tool_choice)
        log.debug("scripted: %s reply (intent %s): %r", reply.kind, reply.intent, reply.text)
        for piece in split_reply(reply.text):
            if self._delay_s > 0:
                await asyncio.sleep(self._delay_s)
            yield ChatChunk(delta=piece)
        if reply.tool_call is not None:
            if self._delay_s > 0:
                await asyncio.sleep(self._delay_s)
            yield ChatChunk(tool_calls=(reply.tool_call,))

    async def aclose(self) -> None:
        """Nothing to release."""


def _last_turn_item(chat_ctx: ChatContext) -> ChatItem | None:
    """The last item that is not a system or developer message."""
    for item in reversed(chat_ctx.items):
        if isinstance(item, ChatMessage) and item.role in ("system", "developer"):
            continue
        return item
    return None
