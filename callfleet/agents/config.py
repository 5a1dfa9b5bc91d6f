"""Agents defined in YAML: persona, session options, providers and webhook tools.

``AgentDefinition.load("reminder.yaml")`` reads and validates a file (``parse(dict)``
a mapping); ``definition.build(variables)`` makes the ``(AgentSession, Agent)`` pair of
one call. Every error is an ``AgentConfigError`` (a ``ValueError``) of one line that
names the file and the field: ``agent.yaml: providers.llm.type: unknown provider 'foo'
(known: scripted, openai)``.

Format (only ``name``, ``instructions`` and ``providers.llm`` are required)::

    name: reminder                        # letters, digits, _ . - (up to 64)
    instructions: "You are a friendly assistant from {company}."   # system prompt
    first_message: "Hi {first_name}, this is {company}."  # said on answer; omit: wait
    variables: {company: Acme}            # template defaults (strings, numbers, booleans)
    session:                              # any SessionOptions field (options.py)
      min_endpointing_delay: 0.5
      outbound_greeting: after_callee
      user_away_timeout: 15
    providers:
      vad: {type: silero, sample_rate: 16000}         # default: {type: silero}
      stt: {type: whisper}                            # default: {type: whisper}
      llm: {type: scripted, script: dialogue.yaml}    # required
      tts: [{type: openai, voice: alloy}, {type: piper}]   # a list: tried in order
    tools:                                # LLM tools as HTTP webhooks (http_tools.py)
      - name: book_appointment            # [a-zA-Z0-9_-]{1,64}, unique
        description: Book the slot the caller chose.
        url: https://example.com/book     # {variables} and {env:NAME} are filled in
        method: POST                      # GET, POST (default), PUT, PATCH, DELETE
        headers: {Authorization: "Bearer {env:BOOKING_TOKEN}"}
        timeout_s: 10                     # default 10, at most 300
        parameters:                       # JSON schema of each argument: type (string,
          slot:                           # integer, number, boolean, array, object),
            type: string                  # description, enum, items (of an array)
            description: The slot, e.g. Tuesday 3 pm.
        required: [slot]                  # the arguments the LLM must give
    transfer:                             # a transfer_call tool (transfer.py)
      destinations: {billing: "sip:billing@pbx.example", manager: "+15550100"}
      default_mode: warm                  # or blind; the LLM picks a name, never an address

Providers, by ``type`` (options are the keyword arguments of the provider class, whose
docstring gives units and defaults; ``model_path``/``model_dir`` are relative to the
agent file):

- ``vad``: ``silero`` (``SileroVAD``).
- ``stt``: ``whisper`` (``WhisperSTT``), ``openai`` (``OpenAISTT``), ``deepgram``
  (``DeepgramSTT``).
- ``llm``: ``scripted`` (``ScriptedLLM``: ``script``, a dialogue file relative to the
  agent file or an inline mapping; ``delay_s``), ``openai`` (``OpenAILLM``: ``model``,
  ``base_url``, ``temperature``...).
- ``tts``: ``piper`` (``PiperTTS``), ``openai`` (``OpenAITTS``), ``cartesia``
  (``CartesiaTTS``).

Hosted providers take no ``api_key`` in the file: ``api_key_env`` names the
environment variable that holds it (default: the provider's own, e.g.
``OPENAI_API_KEY``). A list of providers for ``stt``, ``llm`` or ``tts`` becomes a
``FallbackSTT``/``FallbackLLM``/``FallbackTTS`` (fallback.py).

A tool call sends the arguments as a JSON body with ``call_id`` and ``variables`` added
(``GET``/``DELETE``: as query parameters, with ``call_id``); the answer's JSON (or text)
is the tool's output, and a non-2xx status, a timeout or an unreachable service is a
``ToolError`` whose message the LLM sees (http_tools.py).

Templates: ``{name}`` in ``instructions``, ``first_message`` and a tool's ``url`` and
``headers`` is a variable; ``{env:NAME}`` (tool ``url`` and ``headers``, providers'
``extra_headers``) an environment variable; ``{{`` and ``}}`` are literal braces.
Variables are the file's ``variables`` overridden by those of the call (a campaign
contact's fields); the scripted LLM gets the same variables. A variable or environment
variable that is not set is an error when the call's session is built, not a blank
(``required_variables`` lists those a call must give).

Providers are made on the first ``build`` and shared by the sessions the definition
builds afterwards (the offline models load once per process), except the scripted LLM,
which is made per call with the call's variables; ``aclose()`` closes them.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import yaml

from callfleet.agents.agent import Agent
from callfleet.agents.agent_file import (
    ENV_PREFIX,
    AgentConfigError,
    AgentFile,
    MissingTemplateValue,
    describe,
    format_value,
    render_template,
    template_fields,
    validate_section,
    validate_session,
    yaml_problem,
)
from callfleet.agents.fallback import FallbackLLM, FallbackSTT, FallbackTTS
from callfleet.agents.http_tools import http_tool
from callfleet.agents.provider_specs import (
    KINDS,
    ProviderKind,
    ProviderSpec,
    make_provider,
    provider_specs,
)
from callfleet.agents.session import AgentSession
from callfleet.agents.transfer import make_transfer_tool

__all__ = ["AgentConfigError", "AgentDefinition"]

log = logging.getLogger(__name__)

_FALLBACKS: Mapping[str, Callable[[list[Any]], Any]] = {
    "stt": FallbackSTT,
    "llm": FallbackLLM,
    "tts": FallbackTTS,
}


class AgentDefinition:
    """A validated agent file; builds the session and agent of each call."""

    def __init__(
        self,
        file: AgentFile,
        *,
        session_options: Mapping[str, Any],
        providers: Mapping[ProviderKind, tuple[ProviderSpec, ...]],
        source: str,
    ) -> None:
        self.file = file
        self.session_options = dict(session_options)
        self.providers = dict(providers)
        self.source = source
        self._leaves: dict[str, Any] = {}  # shared providers, by their path in the file
        self._chains: dict[str, Any] = {}  # shared session providers (fallbacks), by kind

    @property
    def name(self) -> str:
        return self.file.name

    @property
    def variables(self) -> dict[str, str]:
        """The file's template defaults."""
        return {k: format_value(v) for k, v in self.file.variables.items()}

    @property
    def required_variables(self) -> list[str]:
        """The variables the templates use that have no default: each call must give
        them (e.g. a campaign's contacts)."""
        file = self.file
        texts = [file.instructions, file.first_message or ""]
        for tool in file.tools:
            texts += [tool.url, *tool.headers.values()]
        used = {n for t in texts for n in template_fields(t, allow_env=True)}
        return sorted(n for n in used if not n.startswith(ENV_PREFIX) and n not in file.variables)

    @classmethod
    def load(cls, path: str | Path) -> AgentDefinition:
        """Read and validate an agent file."""
        source = str(path)
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as e:
            raise AgentConfigError(source, "", f"cannot read the file: {e.strerror}") from None
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as e:
            raise AgentConfigError(source, "", f"not valid YAML: {yaml_problem(e)}") from None
        return cls.parse(data, source=source, base_dir=Path(path).parent)

    @classmethod
    def parse(
        cls, data: object, *, source: str = "agent", base_dir: str | Path | None = None
    ) -> AgentDefinition:
        """Validate ``data`` (the file as parsed YAML); relative paths in it are relative
        to ``base_dir`` (default: the working directory)."""
        if not isinstance(data, Mapping):
            raise AgentConfigError(source, "", f"must be a mapping of fields, got {describe(data)}")
        file = validate_section(AgentFile, data, source=source)
        assert isinstance(file, AgentFile)
        file.check_tool_names(source)
        directory = Path(base_dir) if base_dir is not None else Path.cwd()
        session_options = validate_session(file.session, source)
        providers = {
            kind: provider_specs(kind, getattr(file.providers, kind), source, directory)
            for kind in KINDS
        }
        return cls(file, session_options=session_options, providers=providers, source=source)

    # -- building -----------------------------------------------------------------------

    def variables_for(self, variables: Mapping[str, object] | None = None) -> dict[str, str]:
        """The file's variables overridden by ``variables`` (a call's), as text."""
        merged = self.variables
        for name, value in (variables or {}).items():
            merged[str(name)] = format_value(value)
        return merged

    def _fill(
        self, field: str, text: str, variables: Mapping[str, str], env: Mapping[str, str]
    ) -> str:
        try:
            return render_template(text, variables, env, field=field)
        except MissingTemplateValue as e:
            raise self._missing(e) from None

    def _missing(self, e: MissingTemplateValue) -> AgentConfigError:
        if e.name.startswith(ENV_PREFIX):
            name = e.name.removeprefix(ENV_PREFIX)
            return AgentConfigError(self.source, e.field, f"environment variable {name} is not set")
        return AgentConfigError(
            self.source,
            e.field,
            f"variable {e.name!r} is not set (give it for the call, or a default in 'variables')",
        )

    def build_agent(
        self,
        variables: Mapping[str, object] | None = None,
        *,
        env: Mapping[str, str] | None = None,
    ) -> Agent:
        """The agent of one call: templates filled with the call's ``variables``."""
        values = self.variables_for(variables)
        environ = os.environ if env is None else env
        file = self.file
        tools = []
        for index, tool in enumerate(file.tools):
            try:
                spec = tool.spec(values, environ, f"tools[{index}]")
            except MissingTemplateValue as e:
                raise self._missing(e) from None
            except ValueError as e:
                raise AgentConfigError(self.source, f"tools[{index}].url", str(e)) from None
            tools.append(http_tool(spec, variables=values))
        if file.transfer is not None:
            tools.append(
                make_transfer_tool(
                    file.transfer.destinations, default_mode=file.transfer.default_mode
                )
            )
        first = file.first_message
        return Agent(
            instructions=self._fill("instructions", file.instructions, values, environ),
            first_message=self._fill("first_message", first, values, environ) if first else None,
            tools=tools,
        )

    def build_session(
        self,
        variables: Mapping[str, object] | None = None,
        *,
        env: Mapping[str, str] | None = None,
        **overrides: Any,
    ) -> AgentSession[Any]:
        """The session of one call: the file's options and providers; ``overrides``
        (any ``AgentSession`` keyword: options, providers, ``userdata``) win."""
        values = self.variables_for(variables)
        environ = os.environ if env is None else env
        kwargs: dict[str, Any] = {
            kind: self._provider(kind, values, environ) for kind in KINDS if kind not in overrides
        }
        return AgentSession(**{**kwargs, **self.session_options, **overrides})

    def build(
        self,
        variables: Mapping[str, object] | None = None,
        *,
        env: Mapping[str, str] | None = None,
        **overrides: Any,
    ) -> tuple[AgentSession[Any], Agent]:
        """``(build_session(...), build_agent(...))`` for one call."""
        agent = self.build_agent(variables, env=env)
        return self.build_session(variables, env=env, **overrides), agent

    def _provider(
        self, kind: ProviderKind, variables: Mapping[str, str], env: Mapping[str, str]
    ) -> Any:
        """The ``kind`` provider of a session: one provider, or a fallback chain."""
        if kind in self._chains:
            return self._chains[kind]
        specs = self.providers[kind]
        members = [self._leaf(spec, variables, env) for spec in specs]
        chain = members[0] if len(members) == 1 else _FALLBACKS[kind](members)
        if all(spec.script is None for spec in specs):  # else it holds per-call variables
            self._chains[kind] = chain
        return chain

    def _leaf(
        self, spec: ProviderSpec, variables: Mapping[str, str], env: Mapping[str, str]
    ) -> Any:
        if spec.script is not None:  # per call: it holds the call's variables
            return make_provider(spec, variables=variables, env=env, source=self.source)
        if spec.path not in self._leaves:
            self._leaves[spec.path] = make_provider(
                spec, variables=variables, env=env, source=self.source
            )
        return self._leaves[spec.path]

    async def prewarm(self, *, env: Mapping[str, str] | None = None) -> None:
        """Make the shared providers and load the offline models now (``prewarm()``),
        not on the first call."""
        environ = os.environ if env is None else env
        for kind in KINDS:
            for spec in self.providers[kind]:
                if spec.script is None:
                    self._leaf(spec, {}, environ)
        loads = [getattr(p, "prewarm", None) for p in self._leaves.values()]
        await asyncio.gather(*(load() for load in loads if load is not None))

    async def aclose(self) -> None:
        """Close the shared providers (the sessions built from this definition must have
        ended); the next ``build`` makes new ones."""
        leaves, self._leaves, self._chains = self._leaves, {}, {}
        for path, provider in leaves.items():
            aclose = getattr(provider, "aclose", None)
            if aclose is None:
                continue
            try:
                await aclose()
            except Exception:
                log.exception("%s: closing %s failed", self.source, path)
