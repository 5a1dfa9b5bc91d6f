"""The real offline voice stack on a real SIP call: Silero VAD, Whisper base (int8),
the scripted dialogue engine and Piper's joe voice on our side; on the far side a test
phone that speaks WAV files made with espeak-ng (another voice, ``en-us+f3``) and
records both directions.

What the agent said is checked twice: in the session's history, and by transcribing,
with Whisper, what the phone actually heard over RTP (the left channel of its stereo
recording). Models are loaded once for the module.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator, Awaitable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import pytest_asyncio

from callfleet.agents.agent import Agent
from callfleet.agents.chat import ChatMessage, FunctionCall, FunctionCallOutput
from callfleet.agents.espeak import synthesize
from callfleet.agents.providers.piper import PiperTTS
from callfleet.agents.providers.scripted import ScriptedLLM, normalize
from callfleet.agents.providers.silero import SileroVAD
from callfleet.agents.providers.whisper import WhisperSTT
from callfleet.agents.session import AgentSession
from callfleet.agents.speech import TurnMetrics
from callfleet.agents.tools import function_tool
from callfleet.media.frame import PCM16
from callfleet.media.wav import write_wav
from callfleet.sip.endpoint import SipEndpoint
from tests.conftest import PhoneFactory
from tests.integration.voice_call import VoiceCall, loud_spans

pytestmark = [pytest.mark.asyncio(loop_scope="session"), pytest.mark.timeout(120)]

#: The phone's voice: espeak-ng's US English with the female variant 3, unlike Piper's
#: male joe voice on the agent's side.
USER_VOICE = "en-us+f3"
#: The agent's greeting (``Agent.first_message``, not the script).
GREETING = "Hi, this is Acme Dental calling about your appointment. Am I speaking with Sam?"
OFFER = "Thanks, Sam. Your cleaning is on Tuesday at 3 pm. Does that still work for you?"
CONFIRMING = "Great, I will confirm it now."
CONFIRMED = "Your confirmation number is A12."
CLOSING = "Thank you for your time. Goodbye!"
HOLD = "Sure, take your time."

#: An appointment reminder for the scripted dialogue engine (format: the module
#: docstring of ``callfleet.agents.providers.scripted``). The bench reuses it, with the
#: ``repeat`` and ``parking`` intents for a longer conversation.
SCRIPT = """
variables: {day: Tuesday, time: "3 pm"}
fallback: "Sorry, I didn't catch that."
intents:
  - name: identity
    state: start
    match: ["its me", "this is sam", "speaking", "yes"]
    reply: "Thanks, Sam. Your cleaning is on {day} at {time}. Does that still work for you?"
    next: offer
  - name: repeat
    state: offer
    match: ["which day", "what day", "again"]
    reply: "It is on {day} at {time}."
  - name: confirm
    state: offer
    match: ["that works", "works for me", "sounds good"]
    reply: "Great, I will confirm it now."
    tool: {name: confirm_appointment, arguments: {day: "{day}", time: "{time}"}}
    after_tool: "Your confirmation number is {result.number}."
    next: closing
  - name: goodbye
    state: [start, offer, closing]
    match: ["goodbye", "good bye", "bye"]
    reply: "Thank you for your time. Goodbye!"
  - name: parking
    match: ["parking", "park"]
    reply: "Yes, there is free parking behind the building."
  - name: hold
    match: ["wait", "stop", "hold on"]
    reply: "Sure, take your time."
"""

#: What the phone says in the conversation test, and what each transcript must contain
#: (a regular expression over the normalized transcript).
USER_TURNS = (
    ("Yes, it's me.", r"\bits me\b"),
    ("Yes, that works for me.", r"\bworks\b"),
    ("Okay, thank you, goodbye.", r"\b(good ?)?bye\b"),
)
BARGE_IN = "Wait, stop please."
LONG_GREETING = (
    "Hi, this is Acme Dental calling about your cleaning next week. "
    "We have moved a few appointments around this month. "
    "Please listen carefully, because the new times are different. "
    "Our office is now open from nine in the morning until five in the evening. "
    "If none of the new times suit you, we can find another day together."
)
#: Primes the transcription of the recording with the format of confirmation numbers
#: (a letter and digits); without it Whisper writes Piper's "ay twelve" as "812".
TRANSCRIBE_PROMPT = "Confirmation numbers are a letter and digits, like B7 or C40."
#: What the phone must have heard, in order (regular expressions over normalized text).
HEARD_IN_ORDER = (
    r"appointment",
    r"sam",
    r"tuesday",
    r"(3|three) ?p ?m",
    r"confirm",
    r"confirmation number",
    r"\ba ?(12|twelve)\b",
    r"goodbye",
)
#: A turn waits at most this long for the agent's reply (s).
TURN_TIMEOUT_S = 20.0


class Reminder(Agent):
    """Reminds Sam of an appointment; ``confirm_appointment`` books it."""

    def __init__(self, *, first_message: str = GREETING) -> None:
        super().__init__(
            instructions="You remind patients of their appointments.",
            first_message=first_message,
        )
        self.confirmed: list[dict[str, str]] = []

    @function_tool
    async def confirm_appointment(self, day: str, time: str) -> dict[str, str]:
        """Confirm the patient's appointment.

        Args:
            day: the day of the week
            time: the time of day
        """
        self.confirmed.append({"day": day, "time": time})
        return {"number": "A12"}


class Providers:
    """The offline models, loaded once and shared by the module's sessions."""

    def __init__(self) -> None:
        self.vad = SileroVAD()
        self.stt = WhisperSTT()
        self.tts = PiperTTS()
        #: Transcribes the phone's recording (not used by the sessions).
        self.transcriber = WhisperSTT(initial_prompt=TRANSCRIBE_PROMPT)

    async def prewarm(self) -> None:
        await asyncio.gather(self.stt.prewarm(), self.tts.prewarm(), self.transcriber.prewarm())

    def session(self, **options: Any) -> AgentSession[Any]:
        options.setdefault("outbound_greeting", "immediate")
        options.setdefault("user_away_timeout", None)
        return AgentSession(
            vad=self.vad,
            stt=self.stt,
            llm=ScriptedLLM.from_yaml(SCRIPT),
            tts=self.tts,
            **options,
        )

    async def aclose(self) -> None:
        await asyncio.gather(self.stt.aclose(), self.tts.aclose(), self.transcriber.aclose())


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def models() -> AsyncIterator[Providers]:
    providers = Providers()
    await providers.prewarm()
    yield providers
    await providers.aclose()


async def user_wav(directory: Path, text: str) -> str:
    """``text`` spoken by espeak-ng in the phone's voice, as a WAV file."""
    samples, rate = await synthesize(text, voice=USER_VOICE, words_per_minute=150)
    path = directory / (re.sub(r"[^a-z]+", "_", text.lower()).strip("_") + ".wav")
    write_wav(str(path), samples, rate)
    return str(path)


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def user_wavs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    directory = tmp_path_factory.mktemp("user_voice")
    texts = [text for text, _ in USER_TURNS] + [BARGE_IN]
    paths = await asyncio.gather(*(user_wav(directory, t) for t in texts))
    return dict(zip(texts, paths, strict=True))


def messages(session: AgentSession[Any]) -> list[ChatMessage]:
    return session.history.messages()


async def expect(voice: VoiceCall, waiting: Awaitable[None], what: str) -> None:
    """Await ``waiting``; on a timeout, fail with what the session heard and said."""
    try:
        await waiting
    except TimeoutError:
        said = [(m.role, m.content, m.interrupted) for m in messages(voice.session)]
        events = [e for e in voice.events if e[0] != "agent_state_changed"][-8:]
        raise AssertionError(
            f"timed out waiting for {what} (agent {voice.session.agent_state}); "
            f"history {said}; last events {events}"
        ) from None


def metrics_table(metrics: list[TurnMetrics]) -> str:
    fields = (
        "stt_delay_ms",
        "end_of_turn_delay_ms",
        "llm_ttft_ms",
        "tts_ttfb_ms",
        "e2e_latency_ms",
        "vad_to_audio_ms",
    )
    lines = ["turn " + " ".join(f"{f[:-3]:>17}" for f in fields)]
    for number, m in enumerate(metrics, start=1):
        values = [getattr(m, f) for f in fields]
        lines.append(
            f"{number:>4} "
            + " ".join(f"{v:>17.1f}" if v is not None else f"{'-':>17}" for v in values)
        )
    return "\n".join(lines)


async def transcribe_heard(stt: WhisperSTT, heard: PCM16, rate: int) -> list[str]:
    """The agent's utterances as the phone heard them, transcribed one by one."""
    pad = int(0.25 * rate)
    texts = []
    for start_s, end_s in loud_spans(heard, rate, threshold_dbfs=-40.0, min_gap_s=0.8):
        if end_s - start_s < 0.3:
            continue  # a click, not an utterance
        start, end = max(0, int(start_s * rate) - pad), int(end_s * rate) + pad
        event = await stt.recognize(np.ascontiguousarray(heard[start:end]), rate)
        texts.append(event.text)
    return texts


def assert_in_order(text: str, patterns: tuple[str, ...]) -> None:
    position = 0
    for pattern in patterns:
        found = re.compile(pattern).search(text, position)
        assert found is not None, f"{pattern!r} not heard after {text[:position]!r} in {text!r}"
        position = found.end()


async def test_appointment_reminder_conversation(
    clean_endpoint: SipEndpoint,
    phones: PhoneFactory,
    tmp_path: Path,
    models: Providers,
    user_wavs: dict[str, str],
) -> None:
    session = models.session()
    agent = Reminder()
    voice = await VoiceCall.start(clean_endpoint, phones, str(tmp_path), session, agent)
    await expect(voice, voice.wait_agent_state("speaking", TURN_TIMEOUT_S), "speaking")
    await expect(voice, voice.wait_agent_state("listening", TURN_TIMEOUT_S), "listening")
    for number, (text, _) in enumerate(USER_TURNS, start=1):
        await voice.say(user_wavs[text])
        await expect(
            voice, voice.wait_event("metrics_collected", number, TURN_TIMEOUT_S), f"turn {number}"
        )
        await expect(voice, voice.wait_agent_state("listening", TURN_TIMEOUT_S), "listening")
    await asyncio.sleep(0.5)  # the last words still in flight to the phone
    heard, _, rate = await voice.finish()

    print(f"\n[voice e2e] per-turn metrics (ms):\n{metrics_table(session.metrics)}")
    history = messages(session)
    print("[voice e2e] history:\n" + "\n".join(f"  {m.role}: {m.content}" for m in history))

    # (a) The conversation as the session recorded it.
    users = [m.content for m in history if m.role == "user"]
    assert len(users) == len(USER_TURNS), users
    for heard_text, (said, key) in zip(users, USER_TURNS, strict=True):
        assert re.search(key, normalize(heard_text)), f"Whisper heard {heard_text!r} for {said!r}"
    assistant = [m for m in history if m.role == "assistant"]
    assert [m.content for m in assistant] == [GREETING, OFFER, CONFIRMING, CONFIRMED, CLOSING]
    assert not any(m.interrupted for m in assistant)
    roles = "assistant user assistant user assistant assistant user assistant".split()
    assert [m.role for m in history] == roles
    assert agent.confirmed == [{"day": "Tuesday", "time": "3 pm"}]
    calls = [i for i in session.history.items if isinstance(i, FunctionCall)]
    outputs = [i for i in session.history.items if isinstance(i, FunctionCallOutput)]
    assert [(c.name, json.loads(c.arguments)) for c in calls] == [
        ("confirm_appointment", {"day": "Tuesday", "time": "3 pm"})
    ]
    assert [(o.name, o.output, o.is_error) for o in outputs] == [
        ("confirm_appointment", '{"number": "A12"}', False)
    ]

    # (b) What the phone actually heard over RTP says the same, in order.
    utterances = await transcribe_heard(models.transcriber, heard, rate)
    print("[voice e2e] the phone heard:\n" + "\n".join(f"  {u}" for u in utterances))
    assert_in_order(normalize(" ".join(utterances)), HEARD_IN_ORDER)

    # (c) Every user turn was measured end to end.
    assert len(session.metrics) == len(USER_TURNS)
    for m in session.metrics:
        assert m.e2e_latency_ms is not None and m.e2e_latency_ms > 0, m
        assert m.vad_to_audio_ms is not None and 0 < m.vad_to_audio_ms < m.e2e_latency_ms, m
        assert not m.interrupted, m


async def test_barge_in_with_real_speech(
    clean_endpoint: SipEndpoint,
    phones: PhoneFactory,
    tmp_path: Path,
    models: Providers,
    user_wavs: dict[str, str],
) -> None:
    session = models.session()
    agent = Reminder(first_message=LONG_GREETING)
    voice = await VoiceCall.start(clean_endpoint, phones, str(tmp_path), session, agent)
    await expect(voice, voice.wait_agent_state("speaking", TURN_TIMEOUT_S), "speaking")
    await asyncio.sleep(1.5)
    await voice.say(user_wavs[BARGE_IN])
    await expect(voice, voice.wait_event("metrics_collected", 1, TURN_TIMEOUT_S), "the reply")
    await expect(voice, voice.wait_agent_state("listening", TURN_TIMEOUT_S), "listening")
    await asyncio.sleep(0.3)
    heard, said, rate = await voice.finish()

    user_spans = loud_spans(said, rate, threshold_dbfs=-40.0)
    assert len(user_spans) >= 1, user_spans
    user_start, user_end = user_spans[0][0], user_spans[-1][1]
    agent_spans = loud_spans(heard, rate, threshold_dbfs=-40.0, min_gap_s=0.05)
    # The agent was talking when the phone started...
    assert any(start < user_start and end > user_start - 0.5 for start, end in agent_spans), (
        user_start,
        agent_spans,
    )
    # ...and its voice stopped within 300 ms (measured at the phone, so this includes
    # RTP both ways and both jitter buffers). Its reply cannot start before the end of
    # the phone's speech.
    stopped_at = max(end for start, end in agent_spans if start < user_end)
    print(
        f"\n[voice e2e] barge-in: phone spoke {user_start:.2f}-{user_end:.2f} s, agent "
        f"stopped at {stopped_at:.2f} s ({1000 * (stopped_at - user_start):.0f} ms after "
        f"the onset); agent spans {agent_spans}"
    )
    assert stopped_at - user_start <= 0.3, (user_start, agent_spans)
    replies = [start for start, _ in agent_spans if start > user_end]
    assert replies, f"the agent never answered: {agent_spans}"

    history = messages(session)
    print("[voice e2e] history:\n" + "\n".join(f"  {m.role}: {m.content}" for m in history))
    # The interrupted greeting comes first, cut short, then the words that cut it, then
    # the answer to them (the LLM sees the turns in the order they happened).
    assert [(m.role, m.interrupted) for m in history] == [
        ("assistant", True),
        ("user", False),
        ("assistant", False),
    ], history
    first = history[0]
    assert 0 < len(first.content) < len(LONG_GREETING), first.content
    assert LONG_GREETING.startswith(first.content), first.content
    words = normalize(history[1].content).split()
    assert "stop" in words or "wait" in words, history[1].content
    assert history[2].content == HOLD
