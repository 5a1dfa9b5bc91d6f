"""``SpeechHandle``: one thing the agent says (a ``say`` or a generated reply, with the
tool rounds it takes), which the caller can await or interrupt."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


class SpeechHandle:
    def __init__(self, *, allow_interruptions: bool, source: str) -> None:
        self.id = "speech_" + uuid.uuid4().hex[:12]
        self.allow_interruptions = allow_interruptions
        #: ``say``, ``generate_reply`` or ``user_turn``.
        self.source = source
        self.interrupted = False
        #: The text that went out (for an interrupted speech: what was played).
        self.text = ""
        self._done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._interrupt_requested: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def __repr__(self) -> str:
        return f"<SpeechHandle {self.id} {self.source} done={self.done()}>"

    def done(self) -> bool:
        return self._done.done()

    def interrupt(self, *, force: bool = False) -> SpeechHandle:
        """Stop this speech (queued or playing). Refused for a non-interruptible speech
        unless ``force``."""
        if not self.allow_interruptions and not force:
            raise RuntimeError(f"{self.id} does not allow interruptions")
        if not self._interrupt_requested.done():
            self._interrupt_requested.set_result(None)
        return self

    @property
    def interrupt_requested(self) -> bool:
        return self._interrupt_requested.done()

    async def wait_interrupt_requested(self) -> None:
        await asyncio.shield(self._interrupt_requested)

    async def wait_for_playout(self) -> None:
        """Until the speech has played out or was interrupted."""
        await asyncio.shield(self._done)

    def __await__(self) -> Any:
        return self.wait_for_playout().__await__()

    def add_done_callback(self, fn: Callable[[SpeechHandle], None]) -> None:
        self._done.add_done_callback(lambda _: fn(self))

    def _mark_done(self, *, interrupted: bool, text: str) -> None:
        self.interrupted = interrupted
        self.text = text
        if not self._done.done():
            self._done.set_result(None)


@dataclass
class TurnMetrics:
    """Latency of one agent turn, in milliseconds; ``None`` where not measured.

    Times count from the end of the user's speech (the last voiced frame, as the VAD
    placed it) unless named otherwise.
    """

    speech_id: str
    #: End of speech → final transcript available.
    stt_delay_ms: float | None = None
    #: End of speech → turn committed (VAD silence + endpointing delay).
    end_of_turn_delay_ms: float | None = None
    #: Request → first token (text or tool call) from the LLM.
    llm_ttft_ms: float | None = None
    #: First text sent to the TTS → first audio from it.
    tts_ttfb_ms: float | None = None
    #: End of speech → first agent audio frame sent on the wire.
    e2e_latency_ms: float | None = None
    #: The VAD's end-of-speech decision (the frame that completed it) → first agent
    #: audio frame on the wire: the pipeline's own overhead plus the providers.
    vad_to_audio_ms: float | None = None
    interrupted: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        out = {
            k: (round(v, 1) if isinstance(v, float) else v)
            for k, v in self.__dict__.items()
            if k != "extra"
        }
        out.update(self.extra)
        return out
