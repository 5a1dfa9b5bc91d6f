"""Session options: one dataclass, resolved once per agent ("the agent's value, else the
session's"), so the runtime never asks twice where a setting comes from."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Literal, TypeVar

from callfleet.agents.transforms import DEFAULT_TTS_TEXT_TRANSFORMS, TextTransform


class _NotGiven:
    """Sentinel for "not set" (``None`` means "disabled" where an option allows it)."""

    _instance: _NotGiven | None = None

    def __new__(cls) -> _NotGiven:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "NOT_GIVEN"

    def __bool__(self) -> bool:
        return False


NOT_GIVEN: Final[Any] = _NotGiven()  # Any: a default for options of every type

OptionsT = TypeVar("OptionsT")


def replace_given(options: OptionsT, **changes: Any) -> OptionsT:
    """A copy of the dataclass ``options`` with the changes that are not ``NOT_GIVEN``
    (how every ``update_options()`` leaves unset options alone)."""
    given = {k: v for k, v in changes.items() if v is not NOT_GIVEN}
    return dataclasses.replace(options, **given)  # type: ignore[type-var]


GreetingPolicy = Literal["immediate", "after_callee"]


@dataclass
class SessionOptions:
    #: The user may talk over the agent and stop it.
    allow_interruptions: bool = True
    #: Speech the user must keep up over the agent before it counts as an interruption (s).
    min_interruption_duration: float = 0.5
    #: Words the user must say over the agent before it counts (0: speech is enough).
    min_interruption_words: int = 0
    #: Silence after the user's speech before the turn ends, when the turn looks
    #: complete (s).
    min_endpointing_delay: float = 0.5
    #: ... and when it looks unfinished ("and", "um", a trailing comma) (s).
    max_endpointing_delay: float = 3.0
    #: LLM rounds of tool calls allowed for one user turn.
    max_tool_steps: int = 3
    #: Silence from both sides before the user counts as away (s); ``None``: never.
    user_away_timeout: float | None = 15.0
    #: Unanswered "are you still there?" prompts before the session closes; 0: never.
    max_user_away_prompts: int = 2
    #: After an interruption, time to wait for words before calling it false (s).
    false_interruption_timeout: float | None = 2.0
    #: Resume the interrupted speech after a false interruption.
    resume_false_interruption: bool = True
    #: Start the LLM on the final transcript before the endpointing delay has passed.
    preemptive_generation: bool = False
    #: Text transforms before TTS: names (``filter_markdown``, ``filter_emoji``) or
    #: callables.
    tts_text_transforms: Sequence[str | TextTransform] = field(
        default_factory=lambda: list(DEFAULT_TTS_TEXT_TRANSFORMS)
    )
    #: Outbound calls: ``after_callee`` lets the callee say "hello" first (waiting at
    #: most ``callee_first_timeout``), ``immediate`` greets as soon as the call is
    #: answered. Inbound calls always greet at once.
    outbound_greeting: GreetingPolicy = "after_callee"
    #: Longest wait for the callee's first words on an outbound call (s).
    callee_first_timeout: float = 3.0
    #: Consecutive unrecoverable LLM/TTS errors tolerated; one more closes the session.
    max_unrecoverable_errors: int = 3
    # -- DTMF and IVR (callfleet.agents.dtmf, callfleet.agents.ivr) --
    #: Listen for DTMF tones in the callee's audio, for carriers that send no RFC 4733
    #: or SIP INFO digits (it stops once digits arrive out of band).
    inband_dtmf: bool = False
    #: Give the digits the callee presses to the LLM as a user message (after 2 s
    #: without a key, or at ``#``), which it replies to.
    dtmf_to_llm: bool = False
    #: Recognise a phone menu (IVR) and let an ``IVRNavigator`` work through it towards
    #: ``ivr_goal``; the agent takes the call back when a person answers.
    ivr_detection: bool = False
    #: What the IVR navigator tries to reach, in words for its LLM.
    ivr_goal: str = "reach a human"

    def __post_init__(self) -> None:
        for name in (
            "min_interruption_duration",
            "min_endpointing_delay",
            "max_endpointing_delay",
            "callee_first_timeout",
        ):
            value = getattr(self, name)
            if not isinstance(value, int | float) or value < 0:
                raise ValueError(f"{name} must be a number >= 0 seconds, got {value!r}")
        if self.max_endpointing_delay < self.min_endpointing_delay:
            raise ValueError(
                f"max_endpointing_delay ({self.max_endpointing_delay}) is below "
                f"min_endpointing_delay ({self.min_endpointing_delay})"
            )
        for name in ("min_interruption_words", "max_tool_steps", "max_user_away_prompts"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 0:
                raise ValueError(f"{name} must be an integer >= 0, got {value!r}")
        if not isinstance(self.ivr_goal, str) or not self.ivr_goal.strip():
            raise ValueError(f"ivr_goal must be a non-empty string, got {self.ivr_goal!r}")
        if self.outbound_greeting not in ("immediate", "after_callee"):
            raise ValueError(
                f"outbound_greeting must be 'immediate' or 'after_callee', "
                f"got {self.outbound_greeting!r}"
            )

    def updated(self, **changes: Any) -> SessionOptions:
        """A copy with the given (non-NOT_GIVEN) options changed."""
        unknown = set(changes) - {f.name for f in dataclasses.fields(self)}
        if unknown:
            raise TypeError(f"unknown session options: {sorted(unknown)}")
        return replace_given(self, **changes)
