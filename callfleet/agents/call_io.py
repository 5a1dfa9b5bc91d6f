"""The small call interface the voice pipeline talks to.

``callfleet.sip.call.Call`` implements it; a Twilio Media Streams call or a browser
WebRTC call would implement the same, so the pipeline never knows which carrier it
is on.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any, Protocol

from callfleet.media.frame import PCM16, AudioFrame


class AudioSink(Protocol):
    """Where the agent's voice goes: a playout queue paced by the call's media clock."""

    sample_rate: int

    def write(self, frame: AudioFrame | PCM16, sample_rate: int | None = None) -> None: ...

    def finish(self) -> None: ...

    def clear(self) -> int: ...

    def pause(self) -> None: ...

    def resume(self) -> None: ...

    async def wait_played(self) -> bool: ...

    def next_start(self) -> asyncio.Future[float]: ...

    @property
    def queued_ms(self) -> float: ...


class AudioSource(Protocol):
    def __aiter__(self) -> AsyncIterator[AudioFrame]: ...


class AgentCall(Protocol):
    id: str
    direction: str  # "outbound" | "inbound"

    @property
    def audio_in(self) -> AudioSource:
        """The callee's audio; frames flagged "early" arrived before the answer."""
        ...

    @property
    def audio_out(self) -> AudioSink | None:
        """Where the agent's voice goes; ``None`` until media is up."""
        ...

    @property
    def is_ended(self) -> bool: ...

    async def wait_answered(self, timeout_s: float | None = None) -> bool: ...

    async def hangup(self, code: int = 0, *, timeout_s: float = 5.0) -> Any: ...

    async def send_dtmf(self, digits: str, *args: Any, **kwargs: Any) -> Any: ...

    def on(self, event: str, handler: Callable[..., Any] | None = None) -> Any: ...

    def off(self, event: str, handler: Callable[..., Any]) -> None: ...
