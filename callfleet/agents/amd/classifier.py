"""Who answered, from the words of the greeting: an offline phrase model and an LLM one.

``classify_transcript`` scores a transcript against weighted phrase patterns for the three
kinds of answer (``voicemail``, ``ivr``, ``human``) after normalising it (lower case, digits
and number words unified, punctuation and filler words dropped, contractions expanded), so
"You've reached 555-0100. I'm not available; leave a message after the tone" and "you have
reached five five five ... i am not available leave a message after the tone" score alike.
The phrases are generic (what greetings say, not one greeting's wording); each matching
pattern adds its weight once, and the verdict is the best kind with a confidence that grows
with its lead over the others.

``VoiceMailDetector`` mirrors VideoSDK's class of that name: it asks an LLM whether the
first ``duration`` seconds of transcript are a voicemail greeting, an IVR menu or a person,
and falls back to the phrase model when the LLM fails, times out or answers nonsense.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Literal

from callfleet.agents.chat import ChatContext
from callfleet.agents.providers.base import LLM

logger = logging.getLogger(__name__)

TranscriptLabel = Literal["human", "voicemail", "ivr", "unknown"]

#: Score a kind needs (summed phrase weights) before the model names it.
MIN_SCORE = 1.0
#: Default LLM timeout (s).
LLM_TIMEOUT_S = 3.0

_NUMBER_WORDS = {
    "zero": "0", "one": "1", "two": "2", "three": "3", "four": "4", "five": "5",
    "six": "6", "seven": "7", "eight": "8", "nine": "9", "ten": "10",
}  # fmt: skip
_CONTRACTIONS = {
    "you've": "you have", "i'm": "i am", "can't": "can not", "cannot": "can not",
    "we're": "we are", "you're": "you are", "i'll": "i will", "we'll": "we will",
    "it's": "it is", "that's": "that is", "what's": "what is", "don't": "do not",
    "isn't": "is not", "won't": "will not", "let's": "let us", "there's": "there is",
    "who's": "who is", "i've": "i have", "we've": "we have", "here's": "here is",
}  # fmt: skip
_FILLERS = {"um", "uh", "erm", "ah", "hmm", "mm"}

# (pattern over the normalised text, weight). Patterns use \b word boundaries; digits are
# already digits, so "press 1" and "press one" are one pattern.
_PHRASES: dict[str, list[tuple[str, float]]] = {
    "voicemail": [
        (
            r"\bleave (me |us )?(a |your |the |my )?(brief |short |detailed )?"
            r"(message|voice ?mail|name)",
            2.0,
        ),
        (r"\b(after|at) the (tone|beep|signal)", 2.0),
        (r"\b(not|un) ?available\b", 1.2),
        (r"\bcan not (come|get|take|answer|pick)", 1.2),
        (r"\b(voice ?mail|mail ?box|answering machine|voice messaging)", 1.5),
        (r"\b(you have|you) reached\b", 1.2),
        (r"\b(get|call) (back to you|you back)\b", 1.2),
        (r"\b(return|returned) your call", 1.0),
        (r"\bas soon as (i|we) (can|possibly|are able)", 0.8),
        (r"\b(away from|not at) (the|my|our) (phone|desk|office)", 1.2),
        (r"\brecord your message\b", 2.0),
        (r"\b(is|are|am) not (here|in|home|around|able)\b", 0.8),
        (r"\bthe (person|party|number|subscriber) you (are calling|have dialed|called)", 1.5),
        (r"\bhang up or press\b", 1.5),
        (r"\bwhen you (are )?(have )?finished\b", 1.0),
        (r"\b(your|the) (name and )?(phone )?number\b", 0.6),
        (r"\bplease leave\b", 1.2),
        (r"\bthe tone\b", 0.8),
        (r"\bmessage\b", 0.8),
        (r"\bforwarded to\b", 1.0),
        (r"\bi (will|shall) (get|call|return)\b", 0.8),
        (r"\b(i|we) (missed|miss|have missed) your call\b|\bsorry (i|we) missed\b", 1.5),
        (r"\b(unable|not able) to (take|answer|come|get)\b", 1.2),
        (
            r"\b(switched off|out of (coverage|range|the service area)|not reachable"
            r"|unreachable|can not be reached|not accepting calls|is busy)\b",
            1.5,
        ),
        (r"\b(text|email) me\b", 0.8),
    ],
    "ivr": [
        (r"\bpress (the )?(\d|star|pound|hash)", 2.5),
        (
            r"\bfor (billing|sales|support|service|pharmacy|appointments|english|accounts?"
            r"|customer|technical|spanish|hours|directions|claims|payments?|reservations)",
            1.5,
        ),
        (r"\b(your call is important|our (office )?hours|our menu|menu options)", 1.5),
        (r"\b(listen carefully|options have (recently )?changed)", 2.0),
        (r"\b(say|enter) (your|the)\b", 1.0),
        (
            r"\b(all (of )?our|our) (representatives|agents|operators|associates|staff)"
            r" are (busy|currently|assisting|helping)",
            2.0,
        ),
        (r"\bremain on the line\b|\bstay on the line\b|\bplease hold\b", 1.2),
        (r"\b(next available|in the order (it was|they are) received)\b", 1.5),
        (r"\b(to (speak|talk) (to|with) (a|an|our))\b", 1.2),
        (r"\b(main menu|repeat these options|dial (the|your) (party|extension))", 1.5),
        (r"\bextension\b", 1.0),
        (r"\b(options|menu|representative|operator)\b", 0.8),
        (r"\b(this call may be|calls may be) (recorded|monitored)", 1.2),
        (r"\bthank you for (calling|contacting)\b", 0.5),
        (r"\bwelcome to\b", 0.6),
        (r"\bestimated wait\b|\bwait time\b", 1.5),
        (r"\bcaller number\b|\b(position|place) in (the )?(queue|line)\b|\bin the queue\b", 2.0),
        (r"\b(thank you|thanks) for (waiting|holding|your patience)\b", 1.5),
        (r"\b(continue to hold|hold while we|while we (connect|transfer))\b", 1.5),
        (r"\bhigher than (normal|usual|expected)\b|\bcall volume\b", 1.5),
        (
            r"\b(busy|helping|assisting|serving|with) (other|another) "
            r"(customers?|callers?|clients?|patients?)\b",
            2.0,
        ),
        (
            r"\bin a few words\b|\btell me (briefly )?(why|what|how)\b"
            r"|\b(just|you can|please) say\b|\bsay (yes|no|agent|representative|operator)\b",
            1.5,
        ),
        (r"\bare you calling (about|for|to|regarding)\b", 1.5),
        (r"\b(your call will be|calls are) (answered|transferred|connected)\b", 1.5),
        (r"\b(quality|training) (and training )?purposes\b", 1.2),
        (r"\b(dial|enter|key in) (the |your )?(\d|extension)", 1.5),
        (r"\bgo back\b|\brepeat (this|these|the) (menu|options|message)", 1.2),
    ],
    "human": [
        (r"^(hello|hi|hey|yes|yeah|yep|hallo|good (morning|afternoon|evening))\b", 1.0),
        (r"\b(this is|it is) \w+( \w+)? speaking\b", 2.0),
        (r"\b\w+ speaking\b", 1.0),
        (r"\bhow (can|may|might) (i|we) (help|assist|direct)", 2.0),
        (r"\bwhat can i (do for you|help)", 2.0),
        (r"\bwho is (this|calling|it)\b|\bwho am i speaking\b", 1.5),
        (r"\b(can|may) i help\b", 1.5),
        (r"\b(hello|hi)\b.*\?|\bhello hello\b", 0.5),
        (r"\bsorry\b.*\b(what|say|hear)\b|\bcan you hear me\b", 1.2),
        (r"\bwhat do you want\b|\bhow are you\b", 1.0),
        (r"\bspeaking\s*$", 1.0),
        (r"^(yes|yeah|hello|hi|hey)\s*$", 0.8),
        (r"\bhold on\b|\b(one|just a) (moment|sec|second|minute)\b", 0.8),
        (r"\bgo ahead\b|\bgo for it\b", 1.0),
        (r"\bare you (after|looking for)\b|\bwho (are you|do you want|did you want)\b", 1.2),
        (r"^(\w+ )?\w+ here\b", 1.0),
    ],
}
_COMPILED = {k: [(re.compile(p), w) for p, w in v] for k, v in _PHRASES.items()}


@dataclass(frozen=True)
class TranscriptVerdict:
    """What a transcript says: ``label``, ``confidence`` (0..1), per-kind ``scores``, the
    phrases that matched and which model decided (``"phrases"`` or ``"llm"``)."""

    label: TranscriptLabel
    confidence: float
    scores: dict[str, float] = field(default_factory=dict)
    matched: tuple[str, ...] = ()
    source: str = "phrases"


def normalize(text: str) -> str:
    """Lower case; curly quotes straightened; contractions expanded; number words (zero to
    ten) to digits; digits split apart ("555" → "5 5 5"); punctuation except '?' dropped;
    fillers removed; whitespace collapsed."""
    t = text.lower().replace("\u2019", "'").replace("\u2018", "'")
    for short, long in _CONTRACTIONS.items():
        t = re.sub(rf"\b{re.escape(short)}", long, t)
    t = re.sub(r"(\d)", r" \1 ", t)
    t = re.sub(r"[^a-z0-9?' ]+", " ", t).replace("'", "")
    words = [_NUMBER_WORDS.get(w, w) for w in t.split() if w not in _FILLERS]
    return " ".join(words)


def classify_transcript(text: str) -> TranscriptVerdict:
    """The phrase model's verdict on ``text``: ``unknown`` (confidence 0) when no kind
    reaches ``MIN_SCORE``."""
    norm = normalize(text)
    scores: dict[str, float] = {}
    matched: list[str] = []
    for kind, patterns in _COMPILED.items():
        total = 0.0
        for pattern, weight in patterns:
            m = pattern.search(norm)
            if m:
                total += weight
                matched.append(f"{kind}:{m.group(0).strip()}")
        scores[kind] = round(total, 2)
    best = max(scores, key=lambda k: scores[k])
    if scores[best] < MIN_SCORE:
        return TranscriptVerdict("unknown", 0.0, scores, tuple(matched))
    rest = sorted((v for k, v in scores.items() if k != best), reverse=True)
    lead = scores[best] - rest[0]
    if lead <= 0:
        return TranscriptVerdict("unknown", 0.0, scores, tuple(matched))
    confidence = min(0.98, 0.5 + 0.5 * lead / (lead + 1.5) + 0.1 * min(scores[best], 4) / 4)
    return TranscriptVerdict(best, round(confidence, 3), scores, tuple(matched))  # type: ignore[arg-type]


DEFAULT_PROMPT = (
    "You classify the first seconds of a phone call, heard by the caller right after the "
    "call was answered. Reply with exactly one word: 'voicemail' if it is a voicemail or "
    "answering-machine greeting (personal or carrier), 'ivr' if it is an automated menu, "
    "queue or hold message, 'human' if a live person answered (including a receptionist "
    "greeting), or 'unknown' if you cannot tell."
)

VoiceMailCallback = Callable[[TranscriptVerdict], Awaitable[None] | None]


class VoiceMailDetector:
    """LLM classification of a call's first ``duration`` seconds of transcript (VideoSDK's
    ``VoiceMailDetector(llm, callback, duration=2.0, custom_prompt=None)``).

    - ``llm``: any ``LLM``; ``None`` uses the offline phrase model only.
    - ``callback``: called (awaited if a coroutine function) with the verdict when it is
      ``voicemail``; ``None`` for no callback.
    - ``duration``: seconds of speech after the answer whose transcript is classified
      (the ``AnsweringMachineDetector`` asks once it has that much). Default 2.0.
    - ``custom_prompt``: system prompt replacing ``DEFAULT_PROMPT``; it must make the LLM
      answer with one of the four words.
    - ``timeout_s`` (keyword-only): how long the LLM may take (s). Default 3.0.

    The LLM's word wins when it names a kind; on an error, a timeout or an unusable reply
    the phrase model decides (``source`` says which did).
    """

    def __init__(
        self,
        llm: LLM | None,
        callback: VoiceMailCallback | None = None,
        duration: float = 2.0,
        custom_prompt: str | None = None,
        *,
        timeout_s: float = LLM_TIMEOUT_S,
    ) -> None:
        if duration <= 0:
            raise ValueError(f"VoiceMailDetector duration must be > 0 s, got {duration!r}")
        self.llm = llm
        self.callback = callback
        self.duration = duration
        self.custom_prompt = custom_prompt
        self.timeout_s = timeout_s

    async def classify(self, transcript: str, *, call_id: str | None = None) -> TranscriptVerdict:
        """The verdict on ``transcript``; runs the callback on ``voicemail``."""
        verdict = await self._classify(transcript, call_id)
        if verdict.label == "voicemail" and self.callback is not None:
            result = self.callback(verdict)
            if inspect.isawaitable(result):
                await result
        return verdict

    async def _classify(self, transcript: str, call_id: str | None) -> TranscriptVerdict:
        offline = classify_transcript(transcript)
        if self.llm is None or not transcript.strip():
            return offline
        try:
            reply = await asyncio.wait_for(self._ask(transcript), self.timeout_s)
        except Exception as e:
            logger.warning(
                "voicemail LLM failed, using the phrase model: %s", e, extra={"call_id": call_id}
            )
            return offline
        word = re.findall(r"voicemail|ivr|human|unknown", reply.lower())
        if not word:
            logger.warning(
                "voicemail LLM reply %r names no kind, using the phrase model",
                reply[:80],
                extra={"call_id": call_id},
            )
            return offline
        label: TranscriptLabel = word[0]
        confidence = 0.9 if label != "unknown" else 0.0
        return TranscriptVerdict(label, confidence, offline.scores, offline.matched, "llm")

    async def _ask(self, transcript: str) -> str:
        assert self.llm is not None
        ctx = ChatContext.empty()
        ctx.add_message(role="system", content=self.custom_prompt or DEFAULT_PROMPT)
        ctx.add_message(role="user", content=f"Transcript: {transcript.strip()}")
        parts = [chunk.delta async for chunk in self.llm.chat(chat_ctx=ctx, tool_choice="none")]
        return "".join(parts)
