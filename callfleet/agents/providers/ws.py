"""Opening a provider's websocket with its failures as callfleet errors (shared by the
Deepgram and Cartesia providers)."""

from __future__ import annotations

from collections.abc import Callable, Mapping

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import InvalidStatus, WebSocketException

from callfleet.agents.errors import APIConnectionError, APIStatusError, APITimeoutError


async def open_websocket(
    url: str,
    headers: Mapping[str, str],
    *,
    provider: str,
    connect_timeout_s: float,
    close_timeout_s: float,
    shown_url: str | None = None,
    error_detail: Callable[[str], str] = lambda body: body[:200],
) -> ClientConnection:
    """Connect to ``url``: a refused handshake is ``APIStatusError`` (with the status and
    ``error_detail`` of the body), no handshake within ``connect_timeout_s`` is
    ``APITimeoutError``, anything else ``APIConnectionError``. ``shown_url`` is the
    address named in messages (without a query that may carry options)."""
    where = shown_url or url
    try:
        return await connect(
            url,
            additional_headers=dict(headers),
            open_timeout=connect_timeout_s,
            close_timeout=close_timeout_s,
            max_size=None,
        )
    except InvalidStatus as e:
        body = e.response.body.decode(errors="replace") if e.response.body else ""
        raise APIStatusError(
            f"websocket handshake refused: {error_detail(body)}",
            status_code=e.response.status_code,
            provider=provider,
            body=body,
        ) from e
    except TimeoutError as e:
        raise APITimeoutError(
            f"no websocket handshake from {where} within {connect_timeout_s} s",
            provider=provider,
        ) from e
    except (OSError, WebSocketException) as e:
        raise APIConnectionError(f"cannot connect to {where}: {e!r}", provider=provider) from e
