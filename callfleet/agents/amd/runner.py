"""Answering-machine detection on a live agent call, and what the campaign wants done
about a machine.

``AgentSession(amd=AMDOptions(...))`` runs an ``AnsweringMachineDetector`` on the
callee's audio from the answer. The greeting waits for its first decision (at most
``decision_timeout_s``) so the agent never talks over a voicemail greeting:

- ``human`` / ``unknown`` / ``ivr``: the conversation starts as usual.
- ``voicemail`` with ``action="hangup"``: the call is hung up.
- ``voicemail`` with ``action="voicemail"``: the agent stays silent until the moment to
  leave a message (the end of the beep, or the end of the greeting plus silence when no
  beep comes), says ``message`` (not interruptible) and hangs up.
- ``action="continue"``: the agent talks to the machine like to a person.

A later revision to ``voicemail`` (a beep after a "hello") stops the conversation and
applies the action. The outcome is ``session.amd_outcome`` (stored with the call
result); the session emits ``amd_result`` for each decision and ``voicemail_left``.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from callfleet.agents.amd.detector import AMDEvent, AMDResult, AnsweringMachineDetector
from callfleet.agents.chat import ChatMessage
from callfleet.agents.errors import AgentError
from callfleet.agents.providers.base import STT
from callfleet.media.frame import AudioFrame

if TYPE_CHECKING:
    from callfleet.agents.agent import Agent
    from callfleet.agents.session import AgentSession

log = logging.getLogger(__name__)

AMDAction = Literal["hangup", "voicemail", "continue"]


@dataclass(frozen=True)
class AMDOptions:
    #: What to do when a machine answers.
    action: AMDAction = "hangup"
    #: The voicemail message (``action="voicemail"``); spoken with the agent's TTS.
    message: str | None = None
    #: Longest the greeting waits for the first decision (s).
    decision_timeout_s: float = 9.0
    #: Longest wait for the moment to leave the message after a voicemail decision (s).
    message_timeout_s: float = 30.0
    #: Keyword arguments of ``AnsweringMachineDetector`` (thresholds, in ms).
    detector: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.action not in ("hangup", "voicemail", "continue"):
            raise ValueError(
                f"amd action must be hangup, voicemail or continue, got {self.action!r}"
            )
        if self.action == "voicemail" and not (self.message and self.message.strip()):
            raise ValueError("amd action 'voicemail' needs a message to leave")


@dataclass
class AMDOutcome:
    label: str = "unknown"
    confidence: float = 0.0
    decision_ms: float | None = None
    beep_ms: float | None = None
    revised: bool = False
    reason: str = ""
    action: str = ""
    message_left: bool = False
    message_start_ms: float | None = None

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


class AMDRunner:
    """The detector of one session, fed from the session's audio task."""

    def __init__(self, session: AgentSession[Any], agent: Agent, options: AMDOptions) -> None:
        self.session = session
        self.options = options
        self.outcome = AMDOutcome(action=options.action)
        vad = session._resolve(agent, "vad")
        try:
            stt: STT | None = session.resolve_stt(agent)
        except AgentError:
            stt = None  # cadence and beep only
        # The session's STT already transcribes every utterance: the detector takes those
        # transcripts (``push_transcript``) rather than transcribing the greeting again.
        detector_options: dict[str, Any] = {"transcripts": "pushed" if stt else "stt"}
        detector_options.update(options.detector)
        self.detector = AnsweringMachineDetector(
            vad, stt, call_id=session.call_id, **detector_options
        )
        self._decided = asyncio.Event()
        self._agent = agent
        self.voicemail_task: asyncio.Task[None] | None = None

    async def push_frame(self, frame: AudioFrame) -> None:
        for result in await self.detector.push_frame(frame):
            if result.event is AMDEvent.MESSAGE_START:
                continue
            self._note(result)

    def push_transcript(self, text: str) -> None:
        """A final transcript from the session's STT."""
        self.detector.push_transcript(text)

    def _note(self, result: AMDResult) -> None:
        o = self.outcome
        o.label, o.confidence, o.decision_ms = result.label, result.confidence, result.decision_ms
        o.beep_ms, o.revised, o.reason = result.beep_ms, result.revised, result.reason
        self.session.log.info(
            "amd: %s (%.2f) at %.0f ms: %s",
            result.label,
            result.confidence,
            result.decision_ms,
            result.reason,
        )
        self.session.emit("amd_result", result)
        self._decided.set()
        if result.label == "voicemail" and self.options.action != "continue":
            self._start_voicemail_action()

    async def wait_decision(self) -> str:
        """The first label (``unknown`` when none came within ``decision_timeout_s``)."""
        try:
            await asyncio.wait_for(self._decided.wait(), self.options.decision_timeout_s)
        except TimeoutError:
            log.info(
                "call %s: amd undecided after %s s",
                self.session.call_id,
                self.options.decision_timeout_s,
            )
        return self.outcome.label

    @property
    def handling_machine(self) -> bool:
        return self.voicemail_task is not None

    def _start_voicemail_action(self) -> None:
        if self.voicemail_task is None:
            self.voicemail_task = asyncio.create_task(self._machine())

    async def _machine(self) -> None:
        """A machine answered: stop the agent, then hang up or leave the message."""
        session = self.session
        await session.retire_agents()  # nobody to talk with: stop replying
        call = session.call
        if call is None:
            return
        if self.options.action == "voicemail" and self.options.message:
            start = await self.detector.wait_for_message_start(self.options.message_timeout_s)
            self.outcome.message_start_ms = start
            if start is not None and not call.is_ended:
                self.outcome.message_left = await self._speak(self.options.message)
                if self.outcome.message_left:
                    session.emit("voicemail_left", self.outcome)
        if not call.is_ended:
            await call.hangup()

    async def _speak(self, text: str) -> bool:
        """Say ``text`` straight to the call (no turn taking: nobody will answer)."""
        played = await self.session.speak_direct(text, agent=self._agent)
        self.session.add_item(ChatMessage(role="assistant", content=text, interrupted=not played))
        return played

    async def aclose(self) -> None:
        task = self.voicemail_task
        if task is not None and not task.done() and task is not asyncio.current_task():
            task.cancel()
        await self.detector.aclose()
