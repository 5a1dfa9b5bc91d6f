"""Phone menus (IVR): recognising one, and working through it.

``IvrDetector`` scores what the callee says: menu phrases ("press 2", "for billing,
press 2", "to speak to a representative", "main menu", "please listen carefully",
"your call is important"), a prompt heard again, long unbroken machine speech and
wordless audio (hold music). ``MenuTracker`` keeps the path through a menu, the
(prompt, keys) steps, and tells a loop (the same prompt after the same keys, again)
from progress. ``IVRNavigator`` is an ``AgentTask[IvrOutcome]`` whose LLM is given the
goal and the prompts heard, and the tools ``send_dtmf``, ``human_reached`` and
``give_up``; it acts only once a prompt has finished, gives up by itself when stuck,
and completes when a person answers.

With ``AgentSession(ivr_detection=True)`` an ``IVRMonitor`` watches the callee's turns;
when one is a menu, the agent stops talking and the navigator takes the call (towards
``ivr_goal``); when it completes, the session emits ``ivr_outcome`` (IvrOutcome) and
the agent takes the call back and replies to the person who answered, or the call is
hung up if the navigator gave up.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections import Counter
from collections.abc import AsyncIterable, AsyncIterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from callfleet.agents.agent import AgentTask, ModelSettings, StopResponse
from callfleet.agents.aio import cancel_and_wait
from callfleet.agents.chat import ChatContext, ChatMessage
from callfleet.agents.dtmf import DtmfSender
from callfleet.agents.options import NOT_GIVEN
from callfleet.agents.tools import RunContext, function_tool
from callfleet.media.frame import AudioFrame

if TYPE_CHECKING:
    from callfleet.agents.session import AgentSession

log = logging.getLogger(__name__)

_NUM = r"(?:\d|zero|one|two|three|four|five|six|seven|eight|nine|star|pound|hash)"
#: (pattern, weight): a transcript scoring ``MENU_THRESHOLD`` or more is a menu prompt.
MENU_PHRASES: tuple[tuple[re.Pattern[str], float], ...] = tuple(
    (re.compile(p, re.I), w)
    for p, w in (
        (rf"\b(?:press|dial|enter)\s+{_NUM}\b", 1.0),
        (r"\bfor\s+[\w\s']{1,40},?\s+press\b", 1.0),
        (r"\b(?:say\s+or\s+press|press\s+or\s+say)\b", 1.0),
        (r"\bmain menu\b", 1.0),
        (r"\bplease listen carefully\b", 1.0),
        (r"\bmenu options have (?:recently )?changed\b", 1.0),
        (r"\bto repeat (?:these|this|the) (?:options|menu|message)\b", 1.0),
        (r"\bto (?:speak|talk) (?:to|with) (?:a|an|the|our)?\s*\w+", 0.6),
        (r"\byour call is (?:very )?important\b", 0.5),
        (r"\bplease (?:stay on the line|hold)\b", 0.5),
        (r"\ball (?:of )?our (?:agents|representatives|operators|staff)\b", 0.5),
        (r"\bthis call (?:may|will) be (?:monitored|recorded)\b", 0.5),
        (r"\b(?:extension|pound key|star key)\b", 0.5),
        (r"\bthank you for calling\b", 0.3),
    )
)
#: What a person (not a menu) sounds like when they pick up.
HUMAN_PHRASES: tuple[re.Pattern[str], ...] = tuple(
    re.compile(p, re.I)
    for p in (
        r"^\s*(?:hi|hello|hey|yes|yeah|good (?:morning|afternoon|evening))\b",
        r"\bthis is \w+",
        r"\b\w+ speaking\b",
        r"\bhow (?:can|may) i (?:help|assist)\b",
        r"\bwhat can i do for you\b",
        r"\?\s*$",
    )
)
MENU_THRESHOLD = 1.0

IvrStatus = Literal["human_reached", "gave_up", "timeout", "ended", "error"]


def normalize(text: str) -> str:
    """Lower case, words only: how two hearings of one prompt are compared."""
    return " ".join(re.findall(r"[a-z0-9']+", text.lower()))


class IvrDetector:
    """Decides from the callee's turns whether a phone menu answered.

    Args:
        threshold: score at which an utterance is a menu; default ``MENU_THRESHOLD``.
        long_speech_s: unbroken speech this long (s) is machine-like evidence (+0.5);
            default 12.
        hold_music_s: wordless audio this long (s), e.g. hold music, is evidence
            (+0.5); default 8.
    """

    def __init__(
        self,
        *,
        threshold: float = MENU_THRESHOLD,
        long_speech_s: float = 12.0,
        hold_music_s: float = 8.0,
    ) -> None:
        self.threshold = threshold
        self.long_speech_s = long_speech_s
        self.hold_music_s = hold_music_s
        self._heard: Counter[str] = Counter()
        self._context = 0.0  # evidence from earlier audio, at most 0.5

    @staticmethod
    def menu_score(text: str) -> float:
        """The menu phrases in ``text`` alone (0: none)."""
        return sum(weight for pattern, weight in MENU_PHRASES if pattern.search(text))

    @staticmethod
    def looks_human(text: str) -> bool:
        """A greeting or a question with no menu phrase: someone picked up."""
        return IvrDetector.menu_score(text) == 0 and any(p.search(text) for p in HUMAN_PHRASES)

    def note_wordless(self, duration_s: float) -> None:
        """Audio with no words in it (music, tones) lasted ``duration_s``."""
        if duration_s >= self.hold_music_s:
            self._context = 0.5

    def add_utterance(self, text: str, *, duration_s: float = 0.0) -> bool:
        """One turn of the callee; ``True`` if it is (part of) a phone menu."""
        key = normalize(text)
        if not key:
            return False
        score = self.menu_score(text)
        if self._heard[key]:
            score += 1.0  # a prompt played again, word for word: people do not do that
        self._heard[key] += 1
        if duration_s >= self.long_speech_s:
            score += 0.5
        is_menu = score + self._context >= self.threshold
        if score > 0:
            self._context = 0.5
        return is_menu


@dataclass
class IvrStep:
    """A prompt the menu played and the keys pressed after it (``None``: none yet)."""

    prompt: str
    digits: str | None = None


@dataclass
class IvrOutcome:
    status: IvrStatus
    reason: str
    path: list[IvrStep] = field(default_factory=list)

    @property
    def digits(self) -> str:
        """Every key pressed, in order."""
        return "".join(step.digits or "" for step in self.path)


@dataclass
class TrackVerdict:
    #: ``ok``, ``loop`` (warn the LLM) or ``stuck`` (give up).
    kind: Literal["ok", "loop", "stuck"]
    note: str = ""


class MenuTracker:
    """The path through a menu, and loop detection.

    Args:
        max_loops: loops (the same prompt reached again by the same keys from the same
            prompt, at least twice) before giving up; default 2.
        max_prompts: prompts heard before giving up; default 20.
        max_repeats_unanswered: the same prompt repeated with no key pressed before
            giving up; default 3.
    """

    def __init__(
        self, *, max_loops: int = 2, max_prompts: int = 20, max_repeats_unanswered: int = 3
    ) -> None:
        self.max_loops = max_loops
        self.max_prompts = max_prompts
        self.max_repeats_unanswered = max_repeats_unanswered
        self.steps: list[IvrStep] = []
        self.loops = 0
        self._transitions: Counter[tuple[str, str, str]] = Counter()
        self._unanswered = 0

    def prompt(self, text: str) -> TrackVerdict:
        key = normalize(text)
        prev = self.steps[-1] if self.steps else None
        verdict = TrackVerdict("ok")
        if prev is not None and prev.digits is not None:
            self._unanswered = 0
            move = (normalize(prev.prompt), prev.digits, key)
            self._transitions[move] += 1
            if self._transitions[move] >= 2:
                self.loops += 1
                verdict = TrackVerdict(
                    "loop",
                    f"Pressing {prev.digits} after the prompt {prev.prompt!r} led back to "
                    f"this same prompt again: that path goes in circles, choose another.",
                )
            elif move[0] == key:
                verdict = TrackVerdict(
                    "ok", f"Pressing {prev.digits} brought the same prompt back (not accepted)."
                )
        elif prev is not None and normalize(prev.prompt) == key:
            self._unanswered += 1
        self.steps.append(IvrStep(text))
        if self.loops >= self.max_loops:
            return TrackVerdict("stuck", f"the menu loops ({self.loops} times) without progress")
        if self._unanswered >= self.max_repeats_unanswered:
            return TrackVerdict("stuck", "the menu keeps repeating and no option fits the goal")
        if len(self.steps) > self.max_prompts:
            return TrackVerdict("stuck", f"more than {self.max_prompts} prompts without a person")
        return verdict

    def pressed(self, digits: str) -> None:
        if not self.steps:
            self.steps.append(IvrStep(""))
        step = self.steps[-1]
        step.digits = (step.digits or "") + digits


NAVIGATOR_INSTRUCTIONS = """\
You are navigating an automated phone menu (IVR) for the caller. Goal: {goal}.
Rules:
- Do not talk; only use the tools.
- When a prompt offers an option that leads towards the goal, call send_dtmf with its
  key (one choice at a time), then wait for the next prompt.
- If no option fits, choose the one for an operator or a representative (often 0).
- If a person (not a recording) answers, call human_reached.
- If the menu goes in circles, or the goal cannot be reached, call give_up with the reason.
Prompts heard so far, and the keys pressed after each:
{path}{note}"""


class IVRNavigator(AgentTask[IvrOutcome]):
    """Works through a phone menu towards ``goal`` (see the module).

    Args:
        goal: what to reach, in words ("reach billing", "reach a human").
        first_prompt: the prompt that was recognised as a menu (acted on at once).
        tracker: the loop detector; default ``MenuTracker()``.
        sender: DTMF pacing and limits; default the session's.
        settle_s: after a prompt ends, wait this long (s) for it to go on before
            acting; default 0.8.
        max_duration_s: give up after this long in the menu (s); default 300.
        speak: let the LLM's text be spoken (e.g. to say "representative"); default
            ``False``.
        min_endpointing_delay: silence that ends a prompt (s); default 1.0.
        llm: the navigator's LLM; default the session's.
    """

    def __init__(
        self,
        *,
        goal: str,
        first_prompt: str | None = None,
        tracker: MenuTracker | None = None,
        sender: DtmfSender | None = None,
        settle_s: float = 0.8,
        max_duration_s: float = 300.0,
        speak: bool = False,
        min_endpointing_delay: float = 1.0,
        llm: Any = NOT_GIVEN,
    ) -> None:
        self.goal = goal
        self.tracker = tracker or MenuTracker()
        self._first_prompt = first_prompt
        self._sender = sender
        self.settle_s = settle_s
        self.max_duration_s = max_duration_s
        self.speak = speak
        self._note = ""
        self._carry = ""
        self.deadline_task: asyncio.Task[None] | None = None
        super().__init__(
            instructions=self._instructions(),
            llm=llm,
            turn_handling={
                "allow_interruptions": False,
                "user_away_timeout": None,
                "preemptive_generation": False,
                "min_endpointing_delay": min_endpointing_delay,
                "max_endpointing_delay": max(3.0, min_endpointing_delay),
            },
        )

    def _instructions(self) -> str:
        path = "\n".join(
            f"{i}. {step.prompt!r} -> "
            + (f"pressed {step.digits}" if step.digits else "nothing pressed yet")
            for i, step in enumerate(self.tracker.steps, 1)
        )
        note = f"\nNote: {self._note}" if self._note else ""
        return NAVIGATOR_INSTRUCTIONS.format(goal=self.goal, path=path or "(none)", note=note)

    def _finish(self, status: IvrStatus, reason: str) -> None:
        if not self.done:
            self.session.log.info("IVR navigation ends: %s (%s)", status, reason)
            self.complete(IvrOutcome(status, reason, list(self.tracker.steps)))

    def _heard(self, text: str) -> bool:
        """Record a prompt; ``False`` if that made the navigator give up."""
        verdict = self.tracker.prompt(text)
        if verdict.kind == "stuck":
            self._finish("gave_up", verdict.note)
            return False
        self._note = verdict.note
        self.instructions = self._instructions()
        return True

    # -- hooks ------------------------------------------------------------------------

    async def on_enter(self) -> None:
        self.deadline_task = asyncio.create_task(self._deadline())
        if self._first_prompt and self._heard(self._first_prompt):
            self.session.generate_reply()

    async def on_exit(self) -> None:
        await cancel_and_wait(self.deadline_task)

    async def _deadline(self) -> None:
        await asyncio.sleep(self.max_duration_s)
        self._finish("timeout", f"still in the menu after {self.max_duration_s:g} s")

    async def on_user_turn_completed(self, turn_ctx: ChatContext, new_message: ChatMessage) -> None:
        text = new_message.content
        if self._carry:
            text = new_message.content = f"{self._carry} {text}"
            self._carry = ""
        if self.settle_s > 0 and await self._prompt_goes_on(self.settle_s):
            self._carry = text  # act on the whole prompt, once it has finished
            raise StopResponse
        if IvrDetector.looks_human(text):
            self._finish("human_reached", f"a person answered: {text!r}")
            raise StopResponse
        if not self._heard(text):
            raise StopResponse

    async def _prompt_goes_on(self, wait_s: float) -> bool:
        session = self.session
        if session.user_state == "speaking":
            return True
        started = asyncio.Event()

        def on_state(_old: str, new: str) -> None:
            if new == "speaking":
                started.set()

        session.on("user_state_changed", on_state)
        try:
            await asyncio.wait_for(started.wait(), wait_s)
            return True
        except TimeoutError:
            return False
        finally:
            session.off("user_state_changed", on_state)

    # -- nodes: silent unless ``speak`` -----------------------------------------------

    async def transcription_node(
        self, text: AsyncIterable[str], model_settings: ModelSettings
    ) -> AsyncIterator[str]:
        async for delta in text:
            if self.speak:
                yield delta

    async def tts_node(
        self, text: AsyncIterable[str], model_settings: ModelSettings
    ) -> AsyncIterator[AudioFrame]:
        async for frame in super().tts_node(text, model_settings):
            if self.speak:
                yield frame

    # -- tools --------------------------------------------------------------------------

    @function_tool
    async def send_dtmf(self, digits: str, context: RunContext[Any]) -> None:
        """Press keys on the phone keypad to choose a menu option, then wait for the
        next prompt.

        Args:
            digits: the key(s) of the option, e.g. "2" (0-9, *, #)
        """
        sender = self._sender or context.session.dtmf.sender
        sent = await sender.send(context.session, digits)
        self.tracker.pressed(sent)
        self.instructions = self._instructions()

    @function_tool
    async def human_reached(self) -> None:
        """A person (not a recording) has answered."""
        self._finish("human_reached", "the navigator heard a person")

    @function_tool
    async def give_up(self, reason: str) -> None:
        """Stop navigating: the goal cannot be reached through this menu.

        Args:
            reason: why, in a few words
        """
        self._finish("gave_up", reason)


HUMAN_REACHED_INSTRUCTIONS = (
    "A person has answered after the phone menu. Greet them and go on with your task."
)

GiveUpAction = Literal["hangup", "continue"]


class IVRMonitor:
    """Watches a session's turns for a phone menu and runs the navigator (created by
    the session when ``ivr_detection`` is on).

    Args:
        session: the session.
        detector: default ``IvrDetector()``.
        on_give_up: ``hangup`` (default) ends the call when the navigator gives up or
            times out; ``continue`` gives the call back to the agent.
    """

    def __init__(
        self,
        session: AgentSession[Any],
        *,
        detector: IvrDetector | None = None,
        on_give_up: GiveUpAction = "hangup",
    ) -> None:
        self.session = session
        self.detector = detector or IvrDetector()
        self.on_give_up = on_give_up
        self.state: Literal["watching", "navigating", "done"] = "watching"
        self.outcome: IvrOutcome | None = None
        self.navigator: IVRNavigator | None = None
        self.navigate_task: asyncio.Task[None] | None = None
        self._speech_started: float | None = None
        self._words = False
        self._last_speech_s = 0.0
        session.on("user_state_changed", self._on_user_state)
        session.on("user_input_transcribed", self._on_transcript)
        session.on("close", self._on_close)

    def _on_user_state(self, old: str, new: str) -> None:
        loop = asyncio.get_running_loop()
        if new == "speaking":
            self._speech_started, self._words = loop.time(), False
        elif old == "speaking" and self._speech_started is not None:
            self._last_speech_s = loop.time() - self._speech_started
            if not self._words:
                self.detector.note_wordless(self._last_speech_s)
            self._speech_started = None

    def _on_transcript(self, event: Any) -> None:
        if getattr(event, "transcript", ""):
            self._words = True

    def _on_close(self, *_: Any) -> None:
        if self.navigate_task is not None and not self.navigate_task.done():
            self.navigate_task.cancel()
            steps = list(self.navigator.tracker.steps) if self.navigator is not None else []
            self.outcome, self.state = (
                IvrOutcome("ended", "the call ended in the menu", steps),
                "done",
            )
            self.session.emit("ivr_outcome", self.outcome)

    def take_turn(self, text: str) -> bool:
        """A turn of the callee; ``True`` if it was a menu prompt and the navigator
        takes over (the session then does not answer it)."""
        session = self.session
        if self.state != "watching" or not session._stack:
            return False
        if not self.detector.add_utterance(text, duration_s=self._last_speech_s):
            return False
        self.state = "navigating"
        session.log.info("phone menu recognised: %r", text)
        session.emit("ivr_detected", text)
        session.interrupt(force=True)  # the agent does not talk into a menu
        session.add_item_message("user", text)
        self.navigator = IVRNavigator(goal=session._options_now.ivr_goal, first_prompt=text)
        self.navigate_task = asyncio.create_task(self._navigate(self.navigator))
        return True

    async def _navigate(self, navigator: IVRNavigator) -> None:
        session = self.session
        try:
            outcome = await navigator
        except asyncio.CancelledError:
            raise
        except Exception as e:
            session.log.exception("IVR navigation failed")
            session.report_error(e, source="ivr")
            outcome = IvrOutcome("error", repr(e), list(navigator.tracker.steps))
        self.outcome, self.state = outcome, "done"
        session.emit("ivr_outcome", outcome)
        call = session.call
        if outcome.status == "human_reached":
            session.generate_reply(instructions=HUMAN_REACHED_INSTRUCTIONS)
        elif self.on_give_up == "hangup" and call is not None and not call.is_ended:
            await call.hangup()
