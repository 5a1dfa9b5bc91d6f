"""Run an agent on one call until the call or the session ends.

``run_agent`` is what a call host does with a dialled (or answered) call: start the
session, report the conversation as it happens, wait for the end, and return the
transcript and per-turn metrics. It knows the call only through the ``AgentCall``
interface; ``callfleet call --agent`` wraps it with the dialling and the call report.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from callfleet.agents.agent import Agent
from callfleet.agents.call_io import AgentCall
from callfleet.agents.chat import ChatItem, ChatMessage, FunctionCall, FunctionCallOutput
from callfleet.agents.session import AgentSession, CloseEvent

log = logging.getLogger(__name__)

Reporter = Callable[[str], None]
#: ``close_reason`` when ``max_duration_s`` ran out and the call was hung up.
MAX_DURATION = "max_duration"
#: Longest wait for the session to close after the call ended or was hung up (s).
CLOSE_TIMEOUT_S = 10.0


@dataclass
class AgentRun:
    """What happened on the call, from the agent's side."""

    call_id: str
    #: Why the session closed: ``call_ended``, ``not_answered``, ``user_away``,
    #: ``error``, ``user_requested`` or ``max_duration``.
    close_reason: str = ""
    #: ``session.history.to_dicts()``.
    transcript: list[dict[str, object]] = field(default_factory=list)
    #: ``TurnMetrics.as_dict()`` of each reply to a user turn.
    metrics: list[dict[str, Any]] = field(default_factory=list)
    #: The session's ``error`` events, as ``source: message``.
    errors: list[str] = field(default_factory=list)
    #: Answering-machine detection's outcome (``AMDOutcome.as_dict()``), when it ran.
    amd: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "close_reason": self.close_reason,
            "transcript": self.transcript,
            "metrics": self.metrics,
            "errors": self.errors,
            "amd": self.amd,
        }


def transcript_line(item: ChatItem) -> str | None:
    """``agent: ...`` / ``user: ...`` (and tool lines) for a conversation item; None for
    what is not said on the call (system messages)."""
    if isinstance(item, ChatMessage):
        if item.role not in ("user", "assistant"):
            return None
        who = "agent" if item.role == "assistant" else "user"
        return f"{who}: {item.content}" + (" [interrupted]" if item.interrupted else "")
    if isinstance(item, FunctionCall):
        return f"tool call: {item.name}({item.arguments})"
    if isinstance(item, FunctionCallOutput):
        return f"tool {'error' if item.is_error else 'result'}: {item.name}: {item.output}"
    return None


async def run_agent(
    session: AgentSession[Any],
    agent: Agent,
    call: AgentCall,
    *,
    max_duration_s: float | None = None,
    on_line: Reporter | None = None,
) -> AgentRun:
    """Run ``agent`` in ``session`` on ``call`` (dialled, ringing or answered) until the
    call ends, the session closes (it hangs up when it closes on its own), or
    ``max_duration_s`` after the answer (then the call is hung up; ``None``: no limit).
    ``on_line`` gets each transcript line as it is added."""
    run = AgentRun(call_id=call.id)

    def on_item(item: ChatItem) -> None:
        line = transcript_line(item)
        if line is not None and on_line is not None:
            on_line(line)

    def on_error(error: BaseException, source: str) -> None:
        text = f"{source}: {error}"
        run.errors.append(text)
        if on_line is not None:
            on_line(f"error: {text}")

    session.on("conversation_item_added", on_item)
    session.on("error", on_error)
    try:
        await session.start(agent, call)
        try:
            event: CloseEvent = await session.wait_closed(max_duration_s)
            run.close_reason = event.reason
        except TimeoutError:
            log.info("call %s: max duration of %s s reached: hanging up", call.id, max_duration_s)
            run.close_reason = MAX_DURATION
            if not call.is_ended:
                await call.hangup()
    finally:
        await asyncio.wait_for(session.aclose(reason="user_requested"), CLOSE_TIMEOUT_S)
        session.off("conversation_item_added", on_item)
        session.off("error", on_error)
    run.transcript = session.history.to_dicts()
    run.metrics = [m.as_dict() for m in session.metrics]
    run.amd = session.amd_outcome
    return run
