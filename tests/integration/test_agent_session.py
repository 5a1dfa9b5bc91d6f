"""AgentSession on real SIP calls with instant stand-in models (tests/fakes/voice.py):
greeting, turns, barge-in, false interruption, tools, handoff, tasks, user away,
provider errors. The test phone talks in tone bursts that ToneSTT hears as phrases."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from callfleet.agents.agent import Agent, AgentTask
from callfleet.agents.chat import ChatMessage, FunctionCallOutput
from callfleet.agents.errors import APIError
from callfleet.agents.fallback import FallbackLLM, FallbackTTS
from callfleet.agents.session import AgentSession
from callfleet.agents.tools import RunContext, function_tool
from callfleet.media.analysis import dominant_frequency_hz
from callfleet.sip.endpoint import SipEndpoint
from tests.conftest import PhoneFactory
from tests.fakes.voice import EnergyVAD, FakeLLM, Reply, ToneSTT, ToneTTS, tone_for
from tests.integration.voice_call import VoiceCall, loud_spans, tone_wav

pytestmark = pytest.mark.asyncio(loop_scope="session")


def make_session(llm: FakeLLM, **options: Any) -> AgentSession[Any]:
    options.setdefault("outbound_greeting", "immediate")
    options.setdefault("user_away_timeout", None)
    return AgentSession(vad=EnergyVAD(), stt=ToneSTT(), llm=llm, tts=ToneTTS(), **options)


def phrase(tmp: Path, text: str, ms: float = 600) -> str:
    return tone_wav(tmp, tone_for(text), ms)


def messages(session: AgentSession[Any]) -> list[tuple[str, str]]:
    return [(m.role, m.content) for m in session.history.messages()]


async def test_greeting_then_turns_with_metrics(
    clean_endpoint: SipEndpoint, phones: PhoneFactory, tmp_path: Path
) -> None:
    llm = FakeLLM([Reply("Great to hear from you Sam."), Reply("You are booked for Tuesday.")])
    session = make_session(llm)
    agent = Agent(instructions="You book appointments.", first_message="Hi, this is Acme.")
    voice = await VoiceCall.start(clean_endpoint, phones, str(tmp_path), session, agent)
    await voice.wait_agent_state("speaking")
    await voice.wait_agent_state("listening")
    await voice.say(phrase(tmp_path, "Yes, this is Sam."))
    await voice.wait_event("metrics_collected", 1)
    await voice.wait_agent_state("listening")
    await voice.say(phrase(tmp_path, "Book me for Tuesday please."))
    await voice.wait_event("metrics_collected", 2)
    await voice.wait_agent_state("listening")
    heard, said, rate = await voice.finish()

    assert messages(session) == [
        ("assistant", "Hi, this is Acme."),
        ("user", "Yes, this is Sam."),
        ("assistant", "Great to hear from you Sam."),
        ("user", "Book me for Tuesday please."),
        ("assistant", "You are booked for Tuesday."),
    ]
    system = llm.requests[0][0].items[0]
    assert isinstance(system, ChatMessage) and system.content == "You book appointments."
    for metrics in session.metrics:
        assert metrics.e2e_latency_ms is not None and metrics.vad_to_audio_ms is not None
        # The 500 ms endpointing delay counts from the end of speech (it includes the
        # VAD's 300 ms of silence); instant models add little on top.
        assert 480 <= metrics.e2e_latency_ms <= 800, metrics
        assert metrics.llm_ttft_ms is not None and metrics.tts_ttfb_ms is not None
    # The phone heard three agent utterances, each after the user's turn ended.
    agent_spans = loud_spans(heard, rate)
    user_spans = loud_spans(said, rate)
    assert len(agent_spans) == 3 and len(user_spans) == 2, (agent_spans, user_spans)
    assert agent_spans[1][0] > user_spans[0][1] + 0.4
    assert agent_spans[2][0] > user_spans[1][1] + 0.4


async def test_callee_speaks_first_and_is_not_answered_twice(
    clean_endpoint: SipEndpoint, phones: PhoneFactory, tmp_path: Path
) -> None:
    llm = FakeLLM()
    session = make_session(llm, outbound_greeting="after_callee", callee_first_timeout=3.0)
    agent = Agent(instructions="x", first_message="Hi, this is Acme.")
    phone_hello = phrase(tmp_path, "Hello?", 500)
    voice_task = asyncio.create_task(
        VoiceCall.start(
            clean_endpoint, phones, str(tmp_path), session, agent, play=[phone_hello], silent=False
        )
    )
    voice = await voice_task
    await voice.wait_agent_state("speaking")
    await voice.wait_agent_state("listening")
    await asyncio.sleep(1.0)
    heard, said, rate = await voice.finish()
    assert llm.requests == []  # "Hello?" was heard but the greeting answered it
    assert messages(session)[0] == ("user", "Hello?")
    assert messages(session)[1] == ("assistant", "Hi, this is Acme.")
    agent_spans, user_spans = loud_spans(heard, rate), loud_spans(said, rate)
    assert agent_spans[0][0] >= user_spans[0][1], (agent_spans, user_spans)


async def test_greeting_waits_for_a_late_answer(
    clean_endpoint: SipEndpoint, phones: PhoneFactory, tmp_path: Path
) -> None:
    session = make_session(FakeLLM())
    greeting = "Hi, this is Acme calling about your appointment."
    agent = Agent(instructions="x", first_message=greeting)
    phone_task = asyncio.create_task(
        VoiceCall.start(clean_endpoint, phones, str(tmp_path), session, agent, ring_s=2.0)
    )
    voice = await phone_task
    await voice.wait_agent_state("speaking")
    await voice.wait_agent_state("listening")
    heard, _, rate = await voice.finish()
    spans = loud_spans(heard, rate)
    assert len(spans) == 1, spans
    expected_s = len(greeting) * ToneTTS().ms_per_char / 1000
    assert spans[0][1] - spans[0][0] == pytest.approx(expected_s, abs=0.1)


async def test_barge_in_stops_the_agent_within_300_ms(
    clean_endpoint: SipEndpoint, phones: PhoneFactory, tmp_path: Path
) -> None:
    llm = FakeLLM([Reply("Okay, stopping.")])
    session = make_session(llm)
    long_text = "Let me tell you about all of our plans. " * 6
    agent = Agent(instructions="x", first_message=long_text)
    voice = await VoiceCall.start(clean_endpoint, phones, str(tmp_path), session, agent)
    await voice.wait_agent_state("speaking")
    await asyncio.sleep(1.0)
    await voice.say(phrase(tmp_path, "Wait, stop.", 900))
    await voice.wait_event("metrics_collected", 1)
    await voice.wait_agent_state("listening")
    heard, said, rate = await voice.finish()

    user_start = loud_spans(said, rate)[0][0]
    agent_spans = loud_spans(heard, rate)
    stopped_at = next(end for start, end in agent_spans if start < user_start < end)
    assert stopped_at - user_start <= 0.3, (user_start, agent_spans)
    first = session.history.messages()[0]
    assert first.interrupted and 0 < len(first.content) < len(long_text.strip())
    assert messages(session)[1:] == [("user", "Wait, stop."), ("assistant", "Okay, stopping.")]


async def test_false_interruption_resumes_the_speech(
    clean_endpoint: SipEndpoint, phones: PhoneFactory, tmp_path: Path
) -> None:
    llm = FakeLLM()
    session = make_session(llm, false_interruption_timeout=1.0)
    text = "Let me tell you about all of our plans today. " * 3
    agent = Agent(instructions="x", first_message=text)
    voice = await VoiceCall.start(clean_endpoint, phones, str(tmp_path), session, agent)
    await voice.wait_agent_state("speaking")
    await asyncio.sleep(0.8)
    await voice.say(tone_wav(tmp_path, 1700, 800))  # a noise ToneSTT hears no words in
    await voice.wait_event("agent_false_interruption")
    await voice.wait_agent_state("listening", timeout_s=15)
    heard, _, rate = await voice.finish()
    assert llm.requests == []
    first = session.history.messages()[0]
    assert not first.interrupted and first.content == text.strip()
    spans = loud_spans(heard, rate)
    total = sum(end - start for start, end in spans)
    expected_s = len(text.strip()) * ToneTTS().ms_per_char / 1000
    assert len(spans) == 2 and total == pytest.approx(expected_s, abs=0.15), spans


class Booker(Agent):
    def __init__(self) -> None:
        super().__init__(instructions="You book appointments.")
        self.booked: list[str] = []

    @function_tool
    async def book(self, day: str, context: RunContext[Any]) -> dict[str, str]:
        """Book an appointment.

        Args:
            day: the day of the week
        """
        self.booked.append(day)
        assert context.call_id == context.session.call_id
        return {"confirmation": "A12"}


async def test_tool_call_result_is_spoken(
    clean_endpoint: SipEndpoint, phones: PhoneFactory, tmp_path: Path
) -> None:
    llm = FakeLLM(
        [
            Reply("One moment.", tool_calls=[("book", '{"day": "Tuesday"}')]),
            Reply("Booked, your confirmation is A12."),
        ]
    )
    session = make_session(llm)
    agent = Booker()
    voice = await VoiceCall.start(clean_endpoint, phones, str(tmp_path), session, agent)
    await voice.say(phrase(tmp_path, "Book me for Tuesday please."))
    await voice.wait_event("function_tools_executed")
    await voice.wait_event("conversation_item_added", 5)
    await voice.wait_agent_state("listening")
    await voice.finish()
    assert agent.booked == ["Tuesday"]
    tools = llm.requests[0][1]
    assert [t.name for t in tools] == ["book"]
    second_ctx = llm.requests[1][0]
    outputs = [i for i in second_ctx.items if isinstance(i, FunctionCallOutput)]
    assert [o.output for o in outputs] == ['{"confirmation": "A12"}']
    assert messages(session)[-1] == ("assistant", "Booked, your confirmation is A12.")


class Billing(Agent):
    def __init__(self) -> None:
        super().__init__(instructions="You are billing.", first_message="Billing here.")


class Receptionist(Agent):
    def __init__(self) -> None:
        super().__init__(instructions="You route calls.")

    @function_tool
    async def transfer_to_billing(self) -> tuple[Agent, str]:
        """Hand the caller to billing."""
        return Billing(), "transferring"


async def test_tool_hands_the_call_to_another_agent(
    clean_endpoint: SipEndpoint, phones: PhoneFactory, tmp_path: Path
) -> None:
    llm = FakeLLM([Reply("", tool_calls=[("transfer_to_billing", "{}")])])
    session = make_session(llm)
    voice = await VoiceCall.start(clean_endpoint, phones, str(tmp_path), session, Receptionist())
    await voice.say(phrase(tmp_path, "Transfer me to billing."))
    await voice.wait_event("function_tools_executed")
    await voice.wait_agent_state("speaking")
    await voice.wait_agent_state("listening")
    assert isinstance(session.current_agent, Billing)
    await voice.say(phrase(tmp_path, "Yes, this is Sam."))
    await voice.wait_event("conversation_item_added", 6)
    await voice.finish()
    assert messages(session)[-3:-1] == [
        ("assistant", "Billing here."),
        ("user", "Yes, this is Sam."),
    ]
    # Billing's LLM request: its own instructions, and the conversation so far.
    ctx = llm.requests[-1][0]
    assert ctx.items[0].content == "You are billing."  # type: ignore[union-attr]
    assert any(
        isinstance(i, ChatMessage) and i.content == "Transfer me to billing." for i in ctx.items
    )


class AskDay(AgentTask[str]):
    def __init__(self) -> None:
        super().__init__(instructions="Ask for a day.", first_message="Which day?")

    @function_tool
    async def record_day(self, day: str) -> None:
        """Record the day the caller chose."""
        self.complete(day)


class Scheduler(Agent):
    def __init__(self) -> None:
        super().__init__(instructions="You schedule.")
        self.results: list[str] = []

    @function_tool
    async def schedule(self) -> str:
        """Schedule a visit."""
        day = await AskDay()
        self.results.append(day)
        return f"scheduled for {day}"


async def test_agent_task_returns_a_typed_result(
    clean_endpoint: SipEndpoint, phones: PhoneFactory, tmp_path: Path
) -> None:
    llm = FakeLLM(
        [
            Reply("", tool_calls=[("schedule", "{}")]),
            Reply("", tool_calls=[("record_day", '{"day": "Tuesday"}')]),
            Reply("Scheduled for Tuesday."),
        ]
    )
    session = make_session(llm)
    agent = Scheduler()
    voice = await VoiceCall.start(clean_endpoint, phones, str(tmp_path), session, agent)
    await voice.say(phrase(tmp_path, "Book me for Tuesday please."))
    await voice.wait_agent_state("speaking")  # the task's "Which day?"
    await voice.wait_agent_state("listening")
    assert isinstance(session.current_agent, AskDay)
    await voice.say(phrase(tmp_path, "Book me for Tuesday please."))
    # record_day ran in the task, then schedule (waiting on the task) returned.
    await voice.wait_event("function_tools_executed", 2, timeout_s=15)
    await voice.wait_agent_state("listening")
    await voice.wait_event("conversation_item_added", 8)
    assert session.current_agent is agent
    await voice.finish()
    assert agent.results == ["Tuesday"]
    assert ("assistant", "Which day?") in messages(session)
    assert messages(session)[-1] == ("assistant", "Scheduled for Tuesday.")
    task_request = llm.requests[1]
    assert [t.name for t in task_request[1]] == ["record_day"]


async def test_user_away_prompts_then_hangs_up(
    clean_endpoint: SipEndpoint, phones: PhoneFactory, tmp_path: Path
) -> None:
    llm = FakeLLM(default="Are you still there?")
    session = make_session(llm, user_away_timeout=1.0, max_user_away_prompts=2)
    agent = Agent(instructions="x", first_message="Hello.")
    voice = await VoiceCall.start(clean_endpoint, phones, str(tmp_path), session, agent)
    close = await session.wait_closed(timeout_s=15)
    assert close.reason == "user_away"
    await voice.call.wait_ended(5)
    assert len(llm.requests) == 2
    assert all("still there" in r[0].items[-1].content for r in llm.requests)  # type: ignore[union-attr]
    assert [s for _, s in voice.named("user_state_changed")].count("away") >= 1
    await voice.finish()


async def test_repeated_provider_errors_close_the_session(
    clean_endpoint: SipEndpoint, phones: PhoneFactory, tmp_path: Path
) -> None:
    failure = APIError("upstream down", provider="fake-llm")
    llm = FakeLLM([Reply(error=failure) for _ in range(4)])
    session = make_session(llm)
    voice = await VoiceCall.start(
        clean_endpoint, phones, str(tmp_path), session, Agent(instructions="x")
    )
    for _ in range(4):
        await voice.say(phrase(tmp_path, "Yes, this is Sam.", 300))
        await asyncio.sleep(1.2)
    close = await session.wait_closed(timeout_s=10)
    assert close.reason == "error" and close.error is failure
    assert len(voice.named("error")) == 4
    await voice.call.wait_ended(5)
    await voice.finish()


async def test_failing_providers_fall_back_on_a_live_call(
    clean_endpoint: SipEndpoint, phones: PhoneFactory, tmp_path: Path
) -> None:
    broken_llm = FakeLLM([Reply(error=APIError("503 from upstream", provider="primary"))])
    backup_llm = FakeLLM([Reply("Backup brain here.")])
    broken_tts, backup_tts = ToneTTS(hz=600), ToneTTS(hz=400)
    broken_tts.fail_next = 100
    changes: list[tuple[str, bool]] = []
    session: AgentSession[Any] = AgentSession(
        vad=EnergyVAD(),
        stt=ToneSTT(),
        llm=FallbackLLM([broken_llm, backup_llm], on_availability_changed=_note(changes)),
        tts=FallbackTTS([broken_tts, backup_tts], on_availability_changed=_note(changes)),
        outbound_greeting="immediate",
        user_away_timeout=None,
    )
    agent = Agent(instructions="x", first_message="Hello there.")
    voice = await VoiceCall.start(clean_endpoint, phones, str(tmp_path), session, agent)
    await voice.wait_agent_state("speaking")
    await voice.wait_agent_state("listening")
    await voice.say(phrase(tmp_path, "Yes, this is Sam."))
    await voice.wait_event("metrics_collected")
    await voice.wait_agent_state("listening")
    heard, _, rate = await voice.finish()
    assert messages(session) == [
        ("assistant", "Hello there."),
        ("user", "Yes, this is Sam."),
        ("assistant", "Backup brain here."),
    ]
    assert voice.named("error") == []  # the fallbacks absorbed both failures
    assert ("fallback", False) not in changes and len(broken_llm.requests) == 1
    assert {label for label, _ in changes} == {"fake-llm", "tone-tts"}
    # What the phone heard is the backup voice (400 Hz), in both utterances.
    spans = loud_spans(heard, rate)
    assert len(spans) == 2
    for start, end in spans:
        segment = heard[int(start * rate) : int(end * rate)]
        assert abs(dominant_frequency_hz(segment, rate) - 400) < 10


def _note(changes: list[tuple[str, bool]]) -> Any:
    return lambda label, available: changes.append((label, available))


@pytest.mark.parametrize("preemptive", [False, True])
async def test_preemptive_generation_starts_the_llm_before_the_turn_ends(
    clean_endpoint: SipEndpoint, phones: PhoneFactory, tmp_path: Path, preemptive: bool
) -> None:
    llm = FakeLLM([Reply("Sure thing.", delay_s=0.4)])
    session = make_session(llm, preemptive_generation=preemptive)
    voice = await VoiceCall.start(
        clean_endpoint, phones, str(tmp_path), session, Agent(instructions="x")
    )
    await voice.say(phrase(tmp_path, "Yes, this is Sam."))
    await voice.wait_event("metrics_collected")
    await voice.finish()
    assert len(llm.requests) == 1  # the prefetched request was used, not repeated
    assert messages(session) == [("user", "Yes, this is Sam."), ("assistant", "Sure thing.")]
    e2e = session.metrics[0].e2e_latency_ms
    assert e2e is not None
    # The turn ends 500 ms after the speech; the LLM takes 400 ms. Started at the
    # transcript (~300 ms after the speech) it is nearly done by then.
    if preemptive:
        assert e2e < 820, session.metrics[0]
    else:
        assert e2e > 880, session.metrics[0]


async def test_a_hang_up_mid_speech_keeps_what_was_said(
    clean_endpoint: SipEndpoint, phones: PhoneFactory, tmp_path: Path
) -> None:
    session = make_session(FakeLLM())
    long_text = "Let me tell you about all of our plans. " * 6
    agent = Agent(instructions="x", first_message=long_text)
    voice = await VoiceCall.start(
        clean_endpoint, phones, str(tmp_path), session, agent, hangup_after_s=1.5
    )
    close = await session.wait_closed(timeout_s=10)
    assert close.reason == "call_ended"
    first = session.history.messages()[0]
    assert first.role == "assistant" and first.interrupted
    # About 1.5 s of speech at 40 ms a character went out before the hang-up.
    assert 20 <= len(first.content) <= 50, first.content
    await voice.finish()
