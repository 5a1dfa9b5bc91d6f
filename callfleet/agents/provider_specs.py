"""The ``providers`` section of an agent file: the provider types by kind, their
options (the keyword arguments of the provider class, checked with a pydantic model made
from its signature), and ``make_provider``, which builds one from a validated entry.
"""

from __future__ import annotations

import inspect
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import pydantic
import yaml
from pydantic import BaseModel, ConfigDict, Field

from callfleet.agents.agent_file import (
    ENV_PREFIX,
    AgentConfigError,
    MissingTemplateValue,
    Section,
    VariableName,
    describe,
    render_template,
    template_fields,
    validate_section,
    yaml_problem,
)
from callfleet.agents.errors import APIError
from callfleet.agents.providers.cartesia import CartesiaTTS
from callfleet.agents.providers.deepgram import DeepgramSTT
from callfleet.agents.providers.openai import OpenAILLM, OpenAISTT, OpenAITTS
from callfleet.agents.providers.piper import PiperTTS
from callfleet.agents.providers.scripted import DialogueScript, ScriptedLLM, ScriptError
from callfleet.agents.providers.silero import SileroVAD
from callfleet.agents.providers.whisper import WhisperSTT

ProviderKind = Literal["vad", "stt", "llm", "tts"]
KINDS: tuple[ProviderKind, ...] = ("vad", "stt", "llm", "tts")
#: The provider of each kind when the file names none (the LLM has no default).
DEFAULT_PROVIDERS: Mapping[str, str] = {"vad": "silero", "stt": "whisper", "tts": "piper"}
#: Kinds that take a list of providers (a fallback chain).
FALLBACK_KINDS = ("stt", "llm", "tts")
#: Options that name files, resolved relative to the agent file.
PATH_OPTIONS = ("model_path", "model_dir")


class ScriptedOptions(Section):
    #: A dialogue file (relative to the agent file) or the script inline.
    script: str | dict[str, Any]
    delay_s: float = Field(default=0.0, ge=0)


@dataclass(frozen=True)
class ProviderType:
    kind: ProviderKind
    name: str
    #: The provider class (or factory); options are its keyword arguments.
    factory: Callable[..., Any]
    options: type[BaseModel]


#: Keyword arguments an agent file does not set (``api_key``: ``api_key_env`` instead).
_HIDDEN_OPTIONS = ("api_key", "client")


def _options_model(name: str, factory: Callable[..., Any]) -> type[BaseModel]:
    """The options of ``factory`` as a model: its keyword arguments, with their types
    and defaults, ``api_key`` replaced by ``api_key_env``."""
    hints = typing.get_type_hints(factory.__init__)
    params = inspect.signature(factory).parameters
    definitions: dict[str, Any] = {}
    for param in params.values():
        if param.name in _HIDDEN_OPTIONS or param.kind is inspect.Parameter.VAR_KEYWORD:
            continue
        default = ... if param.default is inspect.Parameter.empty else param.default
        definitions[param.name] = (hints.get(param.name, Any), default)
    if "api_key" in params:
        definitions["api_key_env"] = (VariableName | None, None)
    return pydantic.create_model(
        f"{name}_options", __config__=ConfigDict(extra="forbid"), **definitions
    )


def _provider_types() -> dict[str, dict[str, ProviderType]]:
    table: list[tuple[ProviderKind, str, Callable[..., Any]]] = [
        ("vad", "silero", SileroVAD),
        ("stt", "whisper", WhisperSTT),
        ("stt", "openai", OpenAISTT),
        ("stt", "deepgram", DeepgramSTT),
        ("llm", "scripted", ScriptedLLM),
        ("llm", "openai", OpenAILLM),
        ("tts", "piper", PiperTTS),
        ("tts", "openai", OpenAITTS),
        ("tts", "cartesia", CartesiaTTS),
    ]
    out: dict[str, dict[str, ProviderType]] = {kind: {} for kind in KINDS}
    for kind, name, factory in table:
        options = ScriptedOptions if name == "scripted" else _options_model(name, factory)
        out[kind][name] = ProviderType(kind, name, factory, options)
    return out


#: Provider types by kind and name.
PROVIDER_TYPES = _provider_types()


@dataclass(frozen=True)
class ProviderSpec:
    """One validated provider entry."""

    type: ProviderType
    #: Where it is in the file (``providers.tts[1]``), for errors.
    path: str
    options: Mapping[str, Any]
    script: DialogueScript | None = None


def _provider_spec(
    kind: ProviderKind, raw: object, path: str, source: str, base_dir: Path
) -> ProviderSpec:
    known = ", ".join(PROVIDER_TYPES[kind])
    if not isinstance(raw, Mapping):
        raise AgentConfigError(
            source, path, f"must be a mapping with a 'type', got {describe(raw)}"
        )
    name = raw.get("type")
    if name is None:
        raise AgentConfigError(source, f"{path}.type", f"is required (known: {known})")
    provider = PROVIDER_TYPES[kind].get(name) if isinstance(name, str) else None
    if provider is None:
        raise AgentConfigError(
            source, f"{path}.type", f"unknown provider {name!r} (known: {known})"
        )
    data = {k: v for k, v in raw.items() if k != "type"}
    options = validate_section(provider.options, data, source=source, prefix=path)
    values = options.model_dump(exclude_unset=True)
    for key in PATH_OPTIONS:
        if values.get(key) is not None:
            values[key] = base_dir / Path(values[key]).expanduser()
    for key, value in (values.get("extra_headers") or {}).items():
        try:
            names = template_fields(value, allow_env=True)
        except ValueError as e:
            raise AgentConfigError(source, f"{path}.extra_headers.{key}", str(e)) from None
        for name in names:
            if not name.startswith(ENV_PREFIX):
                raise AgentConfigError(
                    source,
                    f"{path}.extra_headers.{key}",
                    f"{{{name}}} is not allowed here: only {{env:NAME}} placeholders",
                )
    script = None
    if isinstance(options, ScriptedOptions):
        script = _load_script(options.script, f"{path}.script", source, base_dir)
    return ProviderSpec(provider, path, values, script)


def _load_script(
    raw: str | dict[str, Any], path: str, source: str, base_dir: Path
) -> DialogueScript:
    try:
        if isinstance(raw, dict):
            return DialogueScript.parse(raw)
        file = base_dir / Path(raw).expanduser()
        try:
            text = file.read_text(encoding="utf-8")
        except OSError as e:
            raise AgentConfigError(source, path, f"cannot read {file}: {e.strerror}") from None
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as e:
            raise AgentConfigError(
                source, path, f"{raw}: not valid YAML: {yaml_problem(e)}"
            ) from None
        try:
            return DialogueScript.parse(data)
        except ScriptError as e:
            raise AgentConfigError(source, path, f"{raw}: {e}") from None
    except ScriptError as e:
        raise AgentConfigError(source, path, str(e)) from None


def provider_specs(
    kind: ProviderKind, raw: object, source: str, base_dir: Path
) -> tuple[ProviderSpec, ...]:
    path = f"providers.{kind}"
    if raw is None:
        default = DEFAULT_PROVIDERS.get(kind)
        if default is None:
            raise AgentConfigError(
                source,
                path,
                "is required: name an LLM, e.g. {type: scripted, script: dialogue.yaml} "
                "(the offline dialogue engine) or {type: openai, model: gpt-4o-mini}",
            )
        raw = {"type": default}
    if not isinstance(raw, list):
        return (_provider_spec(kind, raw, path, source, base_dir),)
    if kind not in FALLBACK_KINDS:
        raise AgentConfigError(
            source,
            path,
            f"must be one provider, not a list (only {', '.join(FALLBACK_KINDS)} "
            "take a list of fallbacks)",
        )
    if not raw:
        raise AgentConfigError(source, path, "must list at least one provider")
    return tuple(
        _provider_spec(kind, item, f"{path}[{i}]", source, base_dir) for i, item in enumerate(raw)
    )


def make_provider(
    spec: ProviderSpec,
    *,
    variables: Mapping[str, str],
    env: Mapping[str, str],
    source: str,
) -> Any:
    """The provider of ``spec``: secrets read from ``env``, the scripted LLM given the
    call's ``variables``. ``AgentConfigError`` names the entry."""
    if spec.script is not None:
        delay_s = spec.options.get("delay_s", 0.0)
        return ScriptedLLM(spec.script, variables=variables, delay_s=delay_s)
    options = dict(spec.options)
    env_name = options.pop("api_key_env", None)
    if env_name is not None:
        key = env.get(env_name)
        if not key:
            raise AgentConfigError(
                source, f"{spec.path}.api_key_env", f"environment variable {env_name} is not set"
            )
        options["api_key"] = key
    headers = options.get("extra_headers")
    if headers:
        path = f"{spec.path}.extra_headers"
        try:
            options["extra_headers"] = {
                k: render_template(v, {}, env, field=f"{path}.{k}") for k, v in headers.items()
            }
        except MissingTemplateValue as e:
            name = e.name.removeprefix(ENV_PREFIX)
            raise AgentConfigError(
                source, e.field, f"environment variable {name} is not set"
            ) from None
    try:
        return spec.type.factory(**options)
    except (ValueError, APIError) as e:
        raise AgentConfigError(source, spec.path, str(e)) from e
