"""Tools that call HTTP webhooks: the tools of agents defined in YAML (``config.py``).

A tool is declared by its JSON schema rather than by a Python signature: ``http_tool``
turns an ``HttpToolSpec`` into a ``FunctionTool`` whose arguments are checked with a
pydantic model made from the schema's properties.

The request: ``POST`` (also ``PUT``, ``PATCH``) sends the arguments as a JSON object,
with two more keys: ``call_id`` (the call the tool runs in) and ``variables`` (the
call's template variables); ``GET`` and ``DELETE`` send the arguments and ``call_id`` as
query parameters (lists and objects as JSON text). The answer: a 2xx JSON body
(``application/json`` or ``+json``) is the tool's output as parsed JSON, another body
its text, and an empty body ``{"status": <code>}``. Anything else is a ``ToolError``
that the LLM sees: a non-2xx status (with the status and the start of the body), no
answer within ``timeout_s``, or a service that cannot be reached.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import httpx
import pydantic

from callfleet.agents.tools import FunctionTool, RunContext, ToolError

log = logging.getLogger(__name__)

#: Keys of the request body that the tool's own parameters may not use.
RESERVED_PARAMETERS = ("call_id", "variables")
#: How much of an error body goes into the ``ToolError`` message (characters).
BODY_EXCERPT_CHARS = 200
#: JSON schema ``type`` → Python type of the argument.
JSON_TYPES: Mapping[str, Any] = {
    "string": str,
    "integer": int,
    "number": float,
    "boolean": bool,
    "array": list[Any],
    "object": dict[str, Any],
}
HttpMethod = Literal["GET", "POST", "PUT", "PATCH", "DELETE"]
_QUERY_METHODS = ("GET", "DELETE")


@dataclass(frozen=True)
class HttpToolSpec:
    """One webhook tool, with its URL and headers already filled in (no templates)."""

    name: str
    description: str
    url: str
    method: HttpMethod = "POST"
    headers: Mapping[str, str] = field(default_factory=dict)
    #: Longest wait to connect and for the answer (s).
    timeout_s: float = 10.0
    #: JSON schema of each argument (``type``, ``description``, ``enum``, ``items``).
    parameters: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    required: tuple[str, ...] = ()

    def schema(self) -> dict[str, Any]:
        """The JSON schema of the arguments, as the LLM sees it."""
        return {
            "type": "object",
            "properties": {name: dict(prop) for name, prop in self.parameters.items()},
            "required": list(self.required),
        }


def python_type(prop: Mapping[str, Any]) -> Any:
    """The Python type that validates a value of the JSON schema ``prop``."""
    enum = prop.get("enum")
    if enum:
        return Literal.__getitem__(tuple(enum))
    if prop.get("type") == "array" and isinstance(prop.get("items"), Mapping):
        return list[python_type(prop["items"])]  # type: ignore[misc]
    return JSON_TYPES[prop["type"]]


def arguments_model(spec: HttpToolSpec) -> type[pydantic.BaseModel]:
    """A model of the arguments. Its fields are ``a0``, ``a1``... aliased to the
    parameter names, so that no name can clash with ``BaseModel``'s own attributes."""
    fields: dict[str, Any] = {}
    for index, (name, prop) in enumerate(spec.parameters.items()):
        required = name in spec.required
        hint = python_type(prop) if required else python_type(prop) | None
        fields[f"a{index}"] = (hint, pydantic.Field(... if required else None, alias=name))
    return pydantic.create_model(f"{spec.name}_args", **fields)


def _excerpt(text: str) -> str:
    text = " ".join(text.split())
    if len(text) <= BODY_EXCERPT_CHARS:
        return text
    return text[:BODY_EXCERPT_CHARS].rstrip() + "…"


def _query_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list | dict):
        return json.dumps(value, ensure_ascii=False)
    return str(value)


def _where(url: str) -> str:
    """The URL without its query (which may carry a secret), for logs."""
    return str(httpx.URL(url).copy_with(query=None, fragment=None))


def _output(response: httpx.Response) -> Any:
    if not response.content:
        return {"status": response.status_code}
    content_type = response.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type == "application/json" or content_type.endswith("+json"):
        try:
            return response.json()
        except ValueError:
            pass  # labelled JSON but is not: hand the text over as it is
    return response.text


def http_tool(spec: HttpToolSpec, *, variables: Mapping[str, str] | None = None) -> FunctionTool:
    """A ``FunctionTool`` that calls ``spec.url``; ``variables`` go into the body."""
    model = arguments_model(spec)
    aliases = {f"a{i}": name for i, name in enumerate(spec.parameters)}
    call_variables = dict(variables or {})

    async def call_webhook(ctx: RunContext[Any], **values: Any) -> Any:
        arguments = {
            aliases[key]: value
            for key, value in values.items()
            if value is not None or aliases[key] in spec.required
        }
        call_id = ctx.call_id
        if spec.method in _QUERY_METHODS:
            params = {k: _query_value(v) for k, v in arguments.items()}
            request: dict[str, Any] = {"params": {**params, "call_id": call_id}}
        else:
            request = {"json": {**arguments, "call_id": call_id, "variables": call_variables}}
        try:
            async with httpx.AsyncClient(timeout=spec.timeout_s) as client:
                response = await client.request(
                    spec.method, spec.url, headers=dict(spec.headers), **request
                )
        except httpx.TimeoutException as e:
            log.warning(
                "call %s: tool %s: %s %s timed out",
                call_id,
                spec.name,
                spec.method,
                _where(spec.url),
            )
            raise ToolError(f"{spec.name} failed: no answer within {spec.timeout_s:g} s") from e
        except httpx.RequestError as e:
            log.warning(
                "call %s: tool %s: %s %s failed: %s",
                call_id,
                spec.name,
                spec.method,
                _where(spec.url),
                e,
            )
            raise ToolError(
                f"{spec.name} failed: cannot reach the service ({type(e).__name__})"
            ) from e
        if not response.is_success:
            log.warning(
                "call %s: tool %s: %s %s answered %s",
                call_id,
                spec.name,
                spec.method,
                _where(spec.url),
                response.status_code,
            )
            status = f"HTTP {response.status_code} {response.reason_phrase}".rstrip()
            body = _excerpt(response.text)
            raise ToolError(f"{spec.name} failed: {status}" + (f": {body}" if body else ""))
        return _output(response)

    return FunctionTool(spec.name, spec.description, call_webhook, spec.schema(), model, "ctx")
