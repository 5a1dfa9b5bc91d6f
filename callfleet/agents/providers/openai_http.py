"""Plumbing shared by the OpenAI-compatible providers (``openai_llm``, ``openai_audio``):
the ``httpx`` client, bearer authentication, and the mapping of failures onto callfleet
errors. An HTTP error status becomes an ``APIStatusError`` carrying the body's
``error.message`` (the error object of https://platform.openai.com/docs/guides/error-codes
and https://platform.openai.com/docs/api-reference/introduction); a failed connection an
``APIConnectionError``; a timeout an ``APITimeoutError``.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator

import httpx

from callfleet.agents.errors import (
    APIConnectionError,
    APIError,
    APIStatusError,
    APITimeoutError,
)

OPENAI_BASE_URL = "https://api.openai.com/v1"
#: Default for ``timeout_s``: connect, answer / first chunk, and longest gap in a stream (s).
DEFAULT_TIMEOUT_S = 10.0
#: How much of an unexpected body or chunk goes into an error message (characters).
SNIPPET_CHARS = 200


class OpenAIHTTPBase:
    """What the OpenAI providers share: the HTTP client, headers, URLs and error mapping
    (internal to ``openai_llm`` and ``openai_audio``)."""

    def __init__(
        self,
        model: str,
        *,
        base_url: str,
        api_key: str | None,
        timeout_s: float,
        extra_headers: dict[str, str] | None,
        client: httpx.AsyncClient | None,
    ) -> None:
        if not model:
            raise ValueError("model must not be empty")
        if timeout_s <= 0:
            raise ValueError(f"timeout_s must be positive, got {timeout_s!r}")
        key = api_key if api_key is not None else os.environ.get("OPENAI_API_KEY", "")
        if not key and httpx.URL(base_url).host == "api.openai.com":
            raise ValueError(
                f"api_key is required for {base_url}: pass api_key= or set OPENAI_API_KEY"
            )
        self.model = model
        self.label = f"openai:{model}"
        self._base_url = base_url.rstrip("/")
        self._headers = dict(extra_headers or {})
        if key:
            self._headers["Authorization"] = f"Bearer {key}"
        self._timeout_s = timeout_s
        self._timeout = httpx.Timeout(timeout_s)
        self._owns_client = client is None
        self._client = client if client is not None else httpx.AsyncClient()

    async def aclose(self) -> None:
        """Close the HTTP client if this provider created it; safe to call twice."""
        if self._owns_client and not self._client.is_closed:
            await self._client.aclose()

    def _url(self, path: str) -> str:
        return f"{self._base_url}{path}"

    @contextlib.contextmanager
    def _errors(self, first: str) -> Iterator[None]:
        """Re-raise httpx failures and our own first-answer timeout (``asyncio.timeout``
        around the wait for ``first``) as callfleet errors."""
        t = self._timeout_s
        try:
            yield
        except TimeoutError as e:
            raise APITimeoutError(f"no {first} within {t:g} s", provider=self.label) from e
        except httpx.ConnectTimeout as e:
            raise APITimeoutError(
                f"could not connect to {self._base_url} within {t:g} s", provider=self.label
            ) from e
        except httpx.TimeoutException as e:
            raise APITimeoutError(
                f"{type(e).__name__}: nothing received for {t:g} s", provider=self.label
            ) from e
        except httpx.RequestError as e:
            raise APIConnectionError(
                f"cannot reach {self._base_url}: {type(e).__name__}: {e}", provider=self.label
            ) from e

    async def _raise_for_status(self, response: httpx.Response) -> None:
        if response.status_code < 400:
            return
        body = (await response.aread()).decode("utf-8", "replace")
        raise APIStatusError(
            error_message(body) or response.reason_phrase,
            status_code=response.status_code,
            provider=self.label,
            body=body,
        )

    async def _refuse_json(self, response: httpx.Response, expected: str) -> None:
        """Some compatible servers answer a failed stream with a JSON body and status 200."""
        if response.headers.get("content-type", "").startswith("application/json"):
            body = (await response.aread()).decode("utf-8", "replace")
            raise APIError(
                f"expected {expected}, got JSON: {error_message(body)}", provider=self.label
            )


def error_message(body: str) -> str:
    """The message of an OpenAI error body ``{"error": {"message": ...}}``, or of the
    shapes compatible servers use (``{"message": ...}``, ``{"detail": ...}``)."""
    try:
        data = json.loads(body)
    except ValueError:
        return body.strip()[:SNIPPET_CHARS]
    if isinstance(data, dict):
        error = data.get("error")
        if isinstance(error, dict) and isinstance(error.get("message"), str):
            return str(error["message"])
        for value in (error, data.get("message"), data.get("detail")):
            if isinstance(value, str) and value:
                return value
    return body.strip()[:SNIPPET_CHARS]
