"""Errors raised by voice-agent providers, as callfleet errors (the provider's own
exception is chained with ``from``)."""

from __future__ import annotations


class AgentError(Exception):
    """Base class of errors in ``callfleet.agents``."""


class APIError(AgentError):
    """A provider (STT, LLM, TTS) failed. ``retryable`` says whether trying the same
    request again, or another provider, may succeed."""

    def __init__(self, message: str, *, provider: str = "", retryable: bool = True) -> None:
        super().__init__(f"{provider}: {message}" if provider else message)
        self.provider = provider
        self.retryable = retryable


class APIStatusError(APIError):
    """The provider answered with an HTTP (or websocket close) error status."""

    def __init__(self, message: str, *, status_code: int, provider: str = "", body: str = ""):
        # 408 (timeout), 409 (conflict), 429 (rate limit) and 5xx may pass on a retry.
        retryable = status_code in (408, 409, 429) or status_code >= 500
        super().__init__(
            f"{message} (status {status_code})", provider=provider, retryable=retryable
        )
        self.status_code = status_code
        self.body = body


class APIConnectionError(APIError):
    """The provider could not be reached, or the connection dropped."""


class APITimeoutError(APIConnectionError):
    """The provider did not answer within the configured timeout."""
