"""Function tools: ``@function_tool`` turns a method or function into a tool the LLM
can call. The name is the function's, the description its docstring, and the JSON
schema comes from the type hints (checked with pydantic when the LLM calls it).

A parameter annotated ``RunContext`` is not shown to the LLM: the session passes the
context of the running call (session, userdata, the call id and the function call).
"""

from __future__ import annotations

import inspect
import json
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, TypeVar, get_args, get_origin, get_type_hints

import pydantic

if TYPE_CHECKING:
    from callfleet.agents.chat import FunctionCall
    from callfleet.agents.session import AgentSession

UserdataT = TypeVar("UserdataT")
F = TypeVar("F", bound=Callable[..., Any])

_TOOL_ATTR = "__callfleet_tool__"
_NAME_RE = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")


class ToolError(Exception):
    """Raise inside a tool to tell the LLM what went wrong (the message is its output)."""


@dataclass
class RunContext(Generic[UserdataT]):
    """What a tool knows about the call it runs in."""

    session: AgentSession
    function_call: FunctionCall

    @property
    def userdata(self) -> UserdataT:
        return self.session.userdata  # type: ignore[return-value]

    @property
    def call_id(self) -> str:
        return self.session.call_id


@dataclass
class FunctionTool:
    """A callable tool with its JSON schema. ``fn`` is bound (for methods) when the
    Agent collects its tools."""

    name: str
    description: str
    fn: Callable[..., Awaitable[Any] | Any]
    parameters: dict[str, Any]
    _model: type[pydantic.BaseModel]
    _context_param: str | None

    def schema(self) -> dict[str, Any]:
        """The tool in OpenAI's ``tools`` format."""
        return {
            "type": "function",
            "function": {
                "name": self.name,
                "description": self.description,
                "parameters": self.parameters,
            },
        }

    def parse_arguments(self, arguments: str) -> dict[str, Any]:
        """The LLM's JSON arguments, validated; ``ToolError`` names what was wrong."""
        try:
            raw = json.loads(arguments or "{}")
        except json.JSONDecodeError as e:
            raise ToolError(f"arguments of {self.name} are not valid JSON: {e.msg}") from e
        if not isinstance(raw, dict):
            raise ToolError(f"arguments of {self.name} must be a JSON object")
        try:
            model = self._model.model_validate(raw)
        except pydantic.ValidationError as e:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in err['loc']) or 'arguments'}: {err['msg']}"
                for err in e.errors()
            )
            raise ToolError(f"bad arguments for {self.name}: {problems}") from e
        return {name: getattr(model, name) for name in type(model).model_fields}

    async def invoke(self, context: RunContext[Any], arguments: str) -> Any:
        kwargs = self.parse_arguments(arguments)
        if self._context_param is not None:
            kwargs[self._context_param] = context
        result = self.fn(**kwargs)
        if inspect.isawaitable(result):
            result = await result
        return result

    def bind(self, instance: object) -> FunctionTool:
        return FunctionTool(
            self.name,
            self.description,
            self.fn.__get__(instance),
            self.parameters,
            self._model,
            self._context_param,
        )


def _param_docs(doc: str) -> dict[str, str]:
    """Parameter descriptions from a Google-style ``Args:`` section."""
    out: dict[str, str] = {}
    in_args = False
    for line in doc.splitlines():
        stripped = line.strip()
        if stripped in ("Args:", "Arguments:", "Parameters:"):
            in_args = True
            continue
        if in_args:
            match = re.match(r"^(\w+)\s*(\(.*?\))?:\s*(.+)$", stripped)
            if match:
                out[match.group(1)] = match.group(3)
            elif not stripped:
                in_args = False  # a blank line ends the section
    return out


def _summary(doc: str) -> str:
    lines: list[str] = []
    for line in doc.strip().splitlines():
        if line.strip() in ("Args:", "Arguments:", "Parameters:", "Returns:"):
            break
        lines.append(line.strip())
    return " ".join(x for x in lines if x).strip()


def _is_context(hint: Any) -> bool:
    """``RunContext``, ``RunContext[T]`` or an optional of either."""
    if hint is RunContext or get_origin(hint) is RunContext:
        return True
    return any(_is_context(arg) for arg in get_args(hint)) if get_origin(hint) else False


def build_tool(
    fn: Callable[..., Any], *, name: str | None = None, description: str | None = None
) -> FunctionTool:
    tool_name = name or fn.__name__
    if not _NAME_RE.match(tool_name):
        raise ValueError(f"tool name {tool_name!r} must match {_NAME_RE.pattern}")
    doc = inspect.getdoc(fn) or ""
    hints = get_type_hints(fn)
    docs = _param_docs(doc)
    fields: dict[str, Any] = {}
    context_param: str | None = None
    for param in inspect.signature(fn).parameters.values():
        if param.name == "self":
            continue
        hint = hints.get(param.name, Any)
        if _is_context(hint):
            context_param = param.name
            continue
        default = ... if param.default is inspect.Parameter.empty else param.default
        fields[param.name] = (hint, pydantic.Field(default, description=docs.get(param.name)))
    model = pydantic.create_model(f"{tool_name}_args", **fields)
    schema = model.model_json_schema()
    schema.pop("title", None)
    for prop in schema.get("properties", {}).values():
        prop.pop("title", None)
    schema.setdefault("properties", {})
    return FunctionTool(
        tool_name,
        description if description is not None else _summary(doc),
        fn,
        schema,
        model,
        context_param,
    )


def function_tool(
    fn: F | None = None, *, name: str | None = None, description: str | None = None
) -> Any:
    """Mark ``fn`` as a tool. Usable bare (``@function_tool``) or with arguments."""

    def mark(f: F) -> F:
        setattr(f, _TOOL_ATTR, build_tool(f, name=name, description=description))
        return f

    return mark(fn) if fn is not None else mark


def tools_of(obj: object) -> list[FunctionTool]:
    """The ``@function_tool`` methods of ``obj``, bound to it, in definition order."""
    names: dict[str, None] = {}  # ordered: base classes first, then overrides
    for klass in reversed(type(obj).__mro__):
        for attr, value in vars(klass).items():
            if isinstance(getattr(value, _TOOL_ATTR, None), FunctionTool):
                names[attr] = None
    found: list[FunctionTool] = []
    for attr in names:
        tool = getattr(getattr(type(obj), attr), _TOOL_ATTR, None)
        if isinstance(tool, FunctionTool):  # an override without the decorator hides it
            found.append(tool.bind(obj))
    return found


def as_tool(item: FunctionTool | Callable[..., Any]) -> FunctionTool:
    if isinstance(item, FunctionTool):
        return item
    tool = getattr(item, _TOOL_ATTR, None)
    if isinstance(tool, FunctionTool):
        return tool
    raise TypeError(f"{item!r} is not a function tool: decorate it with @function_tool")
