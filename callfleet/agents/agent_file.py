"""The agent file format (``config.py`` documents it): pydantic models of its sections,
templates, and pydantic's errors turned into one line that names the file and the field.
"""

from __future__ import annotations

import re
import typing
from collections.abc import Mapping, Sequence
from dataclasses import fields
from typing import Annotated, Any, Literal

import pydantic
import yaml
from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, field_validator

from callfleet.agents.http_tools import RESERVED_PARAMETERS, HttpToolSpec
from callfleet.agents.options import SessionOptions
from callfleet.agents.transforms import resolve_transforms

IDENT_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
#: ``{{``, ``}}``, a ``{placeholder}``, or a lone brace (an error).
TEMPLATE_RE = re.compile(r"\{\{|\}\}|\{([^{}]*)\}|[{}]")
ENV_PREFIX = "env:"


class AgentConfigError(ValueError):
    """The agent definition is invalid: ``source: field.path: problem``."""

    def __init__(self, source: str, path: str, problem: str) -> None:
        super().__init__(f"{source}: {path}: {problem}" if path else f"{source}: {problem}")
        self.source = source
        self.path = path
        self.problem = problem


# -- templates ------------------------------------------------------------------------


def template_fields(text: str, *, allow_env: bool) -> list[str]:
    """The placeholders of ``text`` (``name`` or ``env:NAME``); ``ValueError`` names a
    malformed one."""
    found: list[str] = []
    for match in TEMPLATE_RE.finditer(text):
        whole, inner = match.group(0), match.group(1)
        if whole in ("{{", "}}"):
            continue
        if inner is None:
            raise ValueError(
                f"unmatched {whole!r} at character {match.start() + 1} "
                f"(write {whole * 2!r} for a literal brace)"
            )
        name = inner.removeprefix(ENV_PREFIX) if allow_env else inner
        if not IDENT_RE.match(name):
            allowed = "{name} or {env:NAME}" if allow_env else "{name}"
            raise ValueError(
                f"{whole!r} is not a placeholder: use {allowed} with letters, digits and _, "
                "or {{ and }} for literal braces"
            )
        found.append(inner)
    return found


class MissingTemplateValue(Exception):
    """A template names a variable (``name``) or environment variable (``env:NAME``)
    that is not set; ``field`` is where the template is in the file."""

    def __init__(self, field: str, name: str) -> None:
        super().__init__(field, name)
        self.field = field
        self.name = name


def render_template(
    text: str, variables: Mapping[str, str], env: Mapping[str, str], *, field: str = ""
) -> str:
    """``text`` with its placeholders filled from ``variables`` and ``env``."""

    def fill(match: re.Match[str]) -> str:
        whole, inner = match.group(0), match.group(1)
        if inner is None:
            return whole[0]
        if inner.startswith(ENV_PREFIX):
            value = env.get(inner.removeprefix(ENV_PREFIX))
            if not value:  # an empty secret is as good as none
                raise MissingTemplateValue(field, inner)
            return value
        value = variables.get(inner)
        if value is None:
            raise MissingTemplateValue(field, inner)
        return value

    return TEMPLATE_RE.sub(fill, text)


def _check_template(text: str) -> str:
    template_fields(text, allow_env=False)
    return text


def _check_env_template(text: str) -> str:
    template_fields(text, allow_env=True)
    return text


Template = Annotated[str, AfterValidator(_check_template)]
EnvTemplate = Annotated[str, AfterValidator(_check_env_template)]
VariableName = Annotated[str, Field(pattern=IDENT_RE.pattern)]


def _scalar(value: object) -> object:
    if not isinstance(value, str | int | float | bool):
        raise ValueError(f"must be a string, number or boolean, got {describe(value)}")
    return value


Scalar = Annotated[str | int | float | bool, BeforeValidator(_scalar)]


def format_value(value: object) -> str:
    """A variable's value as text (booleans as ``true``/``false``, None as empty)."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


# -- the file's models ---------------------------------------------------------------


class Section(BaseModel):
    """A mapping of the file: unknown fields are errors."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class ToolParameter(Section):
    type: Literal["string", "integer", "number", "boolean", "array", "object"]
    description: str | None = None
    enum: list[str | int | float] | None = Field(default=None, min_length=1)
    #: The schema of each item of an ``array``.
    items: ToolParameter | None = None


class ToolSection(Section):
    name: str = Field(pattern=r"^[a-zA-Z0-9_-]{1,64}$")
    description: str = Field(min_length=1)
    url: EnvTemplate
    method: Literal["GET", "POST", "PUT", "PATCH", "DELETE"] = "POST"
    headers: dict[str, EnvTemplate] = {}
    timeout_s: float = Field(default=10.0, gt=0, le=300)
    parameters: dict[VariableName, ToolParameter] = {}
    required: list[str] = []

    @field_validator("method", mode="before")
    @classmethod
    def _upper(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not template_fields(value, allow_env=True):
            check_url(value)
        return value

    @field_validator("parameters")
    @classmethod
    def _not_reserved(cls, value: dict[str, ToolParameter]) -> dict[str, ToolParameter]:
        for name in value:
            if name in RESERVED_PARAMETERS:
                raise ValueError(f"{name!r} is reserved: the request body carries it already")
        return value

    @field_validator("required")
    @classmethod
    def _declared(cls, value: list[str], info: pydantic.ValidationInfo) -> list[str]:
        declared = info.data.get("parameters")
        for name in value:
            if declared is not None and name not in declared:
                raise ValueError(f"{name!r} is not one of the parameters")
        return value

    def spec(self, variables: Mapping[str, str], env: Mapping[str, str], path: str) -> HttpToolSpec:
        """The tool of one call (``path``: where the tool is in the file, for errors):
        ``MissingTemplateValue`` names a value not set, ``ValueError`` a bad URL."""
        url = render_template(self.url, variables, env, field=f"{path}.url")
        check_url(url)
        headers = {
            k: render_template(v, variables, env, field=f"{path}.headers.{k}")
            for k, v in self.headers.items()
        }
        return HttpToolSpec(
            name=self.name,
            description=self.description,
            url=url,
            method=self.method,
            headers=headers,
            timeout_s=self.timeout_s,
            parameters={k: p.model_dump(exclude_none=True) for k, p in self.parameters.items()},
            required=tuple(self.required),
        )


class _Providers(Section):
    vad: Any = None
    stt: Any = None
    llm: Any = None
    tts: Any = None


class TransferSection(Section):
    """``transfer``: where the LLM may hand a caller (names it can pick → addresses)."""

    destinations: dict[str, str] = Field(min_length=1)
    default_mode: Literal["blind", "warm"] = "warm"


class AgentFile(Section):
    """The top level of an agent file (see the module docstring)."""

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
    instructions: Template = Field(min_length=1)
    first_message: Template | None = None
    variables: dict[VariableName, Scalar] = {}
    session: dict[str, Any] = {}
    providers: _Providers = _Providers()
    tools: list[ToolSection] = []
    transfer: TransferSection | None = None

    def check_tool_names(self, source: str) -> None:
        """Tool names are unique (checked after validation, to name the tool's path)."""
        seen: dict[str, int] = {}
        for index, tool in enumerate(self.tools):
            if tool.name in seen:
                raise AgentConfigError(
                    source,
                    f"tools[{index}].name",
                    f"{tool.name!r} is already the name of tools[{seen[tool.name]}]",
                )
            seen[tool.name] = index


def check_url(url: str) -> None:
    try:
        parsed = pydantic.HttpUrl(url)
    except pydantic.ValidationError:
        raise ValueError(f"{url!r} is not an http or https URL") from None
    if parsed.scheme not in ("http", "https"):
        raise ValueError(f"{url!r} is not an http or https URL")


# -- pydantic errors as one line ------------------------------------------------------


def _path(loc: Sequence[int | str]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def describe(value: object) -> str:
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _model_at(model: type[BaseModel], loc: Sequence[int | str]) -> type[BaseModel] | None:
    """The model whose field ``loc`` ends in (to list its known fields)."""
    current: Any = model
    for part in loc:
        if isinstance(part, int):
            continue
        if not (isinstance(current, type) and issubclass(current, BaseModel)):
            return None
        info = current.model_fields.get(part)
        if info is None:
            return None
        current = _inner_model(info.annotation)
    return current if isinstance(current, type) and issubclass(current, BaseModel) else None


def _inner_model(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in typing.get_args(annotation):
        found = _inner_model(arg)
        if found is not None:
            return found
    return None


#: Names pydantic adds to an error's location for the member of a union that failed.
_UNION_MEMBER_RE = re.compile(r"^(str|int|float|bool|none|[a-z-]+\[.*\])$")


def _problem(model: type[BaseModel], error: Any) -> tuple[str, str]:
    """(field path, problem) of one pydantic error."""
    loc = tuple(p for p in error["loc"] if not (isinstance(p, str) and _UNION_MEMBER_RE.match(p)))
    kind, message = error["type"], str(error["msg"])
    if loc and loc[-1] == "[key]":  # a mapping's key is wrong, not its value
        loc, key = loc[:-2], loc[-2]
        return _path(loc), f"{key!r} is not a valid name: {_sentence(message)}"
    if kind == "missing":
        return _path(loc), "is required"
    if kind == "extra_forbidden":
        owner = _model_at(model, loc[:-1])
        known = f" (known: {', '.join(owner.model_fields)})" if owner else ""
        return _path(loc), f"unknown field{known}"
    if kind == "value_error":
        return _path(loc), message.removeprefix("Value error, ")
    if kind in ("model_type", "dict_type"):
        return _path(loc), f"must be a mapping, got {describe(error['input'])}"
    return _path(loc), f"{_sentence(message)}, got {describe(error['input'])}"


def _sentence(message: str) -> str:
    """pydantic's message in the words of our errors."""
    for theirs, ours in (("Input should be", "must be"), ("String should", "must")):
        if message.startswith(theirs):
            return ours + message[len(theirs) :]
    return message


def validate_section(
    model: type[BaseModel], data: object, *, source: str, prefix: str = ""
) -> BaseModel:
    try:
        return model.model_validate(data)
    except pydantic.ValidationError as e:
        path, problem = _problem(model, e.errors()[0])
        joined = ".".join(p for p in (prefix, path) if p)
        raise AgentConfigError(source, joined.replace(".[", "["), problem) from None


# -- session options ------------------------------------------------------------------


def _session_model() -> type[BaseModel]:
    hints = typing.get_type_hints(SessionOptions)
    hints["tts_text_transforms"] = list[str]
    definitions: dict[str, Any] = {f.name: (hints[f.name], None) for f in fields(SessionOptions)}
    return pydantic.create_model("session", __config__=ConfigDict(extra="forbid"), **definitions)


_SESSION_MODEL = _session_model()


def validate_session(data: object, source: str) -> dict[str, Any]:
    options = validate_section(_SESSION_MODEL, data, source=source, prefix="session")
    values = options.model_dump(exclude_unset=True)
    try:
        resolve_transforms(values.get("tts_text_transforms", ()))
    except ValueError as e:
        raise AgentConfigError(source, "session.tts_text_transforms", str(e)) from None
    try:
        SessionOptions().updated(**values)
    except (TypeError, ValueError) as e:
        raise AgentConfigError(source, "session", str(e)) from None
    return values


def yaml_problem(error: yaml.YAMLError) -> str:
    mark = getattr(error, "problem_mark", None)
    problem = getattr(error, "problem", None) or str(error)
    return f"{problem} (line {mark.line + 1})" if mark is not None else str(problem)
