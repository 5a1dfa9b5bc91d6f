"""DTMF and phone menus (IVR) in the agent, over real SIP: digits from the test phone
(RFC 4733, SIP INFO, in-band tones) reach the session, ``collect_digits`` and the LLM;
the ``send_dtmf`` tool is paced, refuses a flood and keeps the agent quiet; the IVR
navigator works through the test phone's menu to a person, and gives up on a loop."""

from __future__ import annotations

import asyncio
import itertools
import time
from pathlib import Path
from typing import Any

import pytest

from callfleet.agents.agent import Agent
from callfleet.agents.chat import ChatMessage, FunctionCallOutput
from callfleet.agents.dtmf import DTMFHandler, DtmfReceived, collect_digits, send_dtmf_tool
from callfleet.agents.ivr import IvrOutcome
from callfleet.agents.session import AgentSession
from callfleet.media.tones import dtmf_sequence
from callfleet.media.wav import write_wav
from callfleet.sip.endpoint import SipEndpoint
from tests.conftest import PhoneFactory
from tests.fakes.voice import EnergyVAD, FakeLLM, Reply, ToneSTT, ToneTTS, tone_for
from tests.integration.voice_call import VoiceCall, loud_spans, tone_wav

pytestmark = pytest.mark.asyncio(loop_scope="session")

MENU = "For billing, press 2. For sales, press 3."
BILLING = "To speak to a person, press 1."
HUMAN = "Hi, this is Alex, how can I help?"
#: Most the phone's jitter buffer may delay the agent's voice against RFC 4733 keys (s).
JITTER_S = 0.15


def make_session(llm: FakeLLM, **options: Any) -> AgentSession[Any]:
    options.setdefault("outbound_greeting", "immediate")
    options.setdefault("user_away_timeout", None)
    stt: Any = ToneSTT()  # whole-utterance: its stream() is never used
    return AgentSession(vad=EnergyVAD(), stt=stt, llm=llm, tts=ToneTTS(), **options)


def phrase(tmp: Path, text: str, ms: float = 1200) -> str:
    return tone_wav(tmp, tone_for(text), ms)


def digits_of(voice: VoiceCall) -> list[DtmfReceived]:
    return [args[0] for args in voice.named("dtmf_received")]


async def start(
    endpoint: SipEndpoint,
    phones: PhoneFactory,
    tmp_path: Path,
    session: AgentSession[Any],
    agent: Agent,
    **script: Any,
) -> VoiceCall:
    voice = await VoiceCall.start(endpoint, phones, str(tmp_path), session, agent, **script)
    for name in ("dtmf_received", "ivr_detected", "ivr_outcome"):
        session.on(name, lambda *args, _n=name: voice._record(_n, args))
    return voice


async def test_rfc4733_and_sip_info_digits_reach_handler_and_collector(
    clean_endpoint: SipEndpoint, phones: PhoneFactory, tmp_path: Path
) -> None:
    pressed: list[str] = []
    session = make_session(FakeLLM(), dtmf_handler=DTMFHandler(pressed.append))
    voice = await start(
        clean_endpoint,
        phones,
        tmp_path,
        session,
        Agent(instructions="x"),
        dtmf="42#",
        dtmf_after_s=1.0,
    )
    # Terminator: "#" ends the entry and is not part of it.
    result = await collect_digits(session, terminator="#", timeout_s=8)
    assert (result.digits, result.reason) == ("42", "terminator")
    # Count: the third key is left over (nobody collects it; it still is an event).
    collecting = asyncio.create_task(collect_digits(session, count=2, timeout_s=8))
    await voice.phone.send({"cmd": "dtmf", "digits": "789", "method": "sip_info"})
    result = await collecting
    assert (result.digits, result.reason) == ("78", "count")
    await voice.wait_event("dtmf_received", 6)
    # Timeout: nothing pressed.
    started = time.monotonic()
    result = await collect_digits(session, timeout_s=0.5)
    assert (result.digits, result.reason) == ("", "timeout")
    assert 0.45 <= time.monotonic() - started < 1.0
    await voice.finish()
    assert pressed == list("42#789")
    events = digits_of(voice)
    assert [e.digit for e in events] == list("42#789")
    assert [e.method for e in events] == ["rfc4733"] * 3 + ["sip_info"] * 3
    assert all(e.duration_ms and e.duration_ms >= 80 for e in events), events


async def test_digits_go_to_the_llm_when_asked(
    clean_endpoint: SipEndpoint, phones: PhoneFactory, tmp_path: Path
) -> None:
    llm = FakeLLM([Reply("Thanks, account 12 found.")])
    session = make_session(llm, dtmf_to_llm=True)
    voice = await start(
        clean_endpoint,
        phones,
        tmp_path,
        session,
        Agent(instructions="x"),
        dtmf="12#",
        dtmf_after_s=0.5,
    )
    await voice._until(lambda: len(llm.requests) >= 1, 10)
    await voice.wait_agent_state("speaking")
    await voice.wait_agent_state("listening")
    await voice.finish()
    last = llm.requests[0][0].items[-1]
    assert isinstance(last, ChatMessage) and last.role == "user"
    assert last.content == "(pressed on the keypad: 12#)"
    assert ("assistant", "Thanks, account 12 found.") in [
        (m.role, m.content) for m in session.history.messages()
    ]


async def test_inband_dtmf_is_detected_in_the_audio(
    clean_endpoint: SipEndpoint, phones: PhoneFactory, tmp_path: Path
) -> None:
    session = make_session(FakeLLM(), inband_dtmf=True)
    voice = await start(clean_endpoint, phones, tmp_path, session, Agent(instructions="x"))
    wav = str(tmp_path / "keys.wav")
    tones = dtmf_sequence("159#*0", 8000, tone_ms=100, gap_ms=100)
    write_wav(wav, tones, 8000)
    await voice.say(wav)
    await voice.wait_event("dtmf_received", 6)
    await asyncio.sleep(0.5)
    await voice.finish()
    events = digits_of(voice)
    assert "".join(e.digit for e in events) == "159#*0"
    assert {e.method for e in events} == {"inband"}
    assert all(70 <= (e.duration_ms or 0) <= 130 for e in events), events


async def test_send_dtmf_tool_paces_refuses_a_flood_and_keeps_quiet(
    clean_endpoint: SipEndpoint, phones: PhoneFactory, tmp_path: Path
) -> None:
    llm = FakeLLM(
        [
            Reply("Pressing the keys now.", tool_calls=[("send_dtmf", '{"digits": "1234"}')]),
            Reply("", tool_calls=[("send_dtmf", '{"digits": "99"}')]),  # at once: refused
            Reply("Done."),
        ]
    )
    session = make_session(llm, max_tool_steps=3)
    agent = Agent(instructions="x", tools=[send_dtmf_tool()])
    voice = await start(clean_endpoint, phones, tmp_path, session, agent)
    await voice.say(phrase(tmp_path, "Yes, this is Sam.", 600))
    await voice.wait_event("function_tools_executed", 2, timeout_s=15)
    await voice.wait_agent_state("listening", timeout_s=10)
    await asyncio.sleep(0.5)
    recording = await voice.phone.wait_for("recording_started")
    heard, _, rate = await voice.finish()
    keys = voice.phone.find("dtmf")
    assert [k["digit"] for k in keys] == list("1234")  # the flood never went out
    gaps = [b["t"] - a["t"] for a, b in itertools.pairwise(keys)]
    assert all(0.33 <= g <= 0.5 for g in gaps), gaps  # 120 ms tone + 280 ms quiet
    outputs = [i for i in llm.requests[2][0].items if isinstance(i, FunctionCallOutput)]
    assert outputs[0].output == "sent 1234" and not outputs[0].is_error
    assert outputs[1].is_error and "cooldown" in outputs[1].output
    # The agent's voice (as the phone heard it) stops before the first key and starts
    # again after the last: the quiet between its two utterances holds the keys. The
    # phone hears the voice through its jitter buffer and the keys without one, so the
    # clocks are compared within JITTER_S.
    window = (keys[0]["t"] - 0.12 - recording["t"], keys[-1]["t"] - recording["t"])
    spans = loud_spans(heard, rate)
    assert len(spans) == 2, spans
    quiet = (spans[0][1], spans[1][0])
    assert quiet[1] - quiet[0] >= window[1] - window[0], (spans, window)
    assert quiet[0] <= window[0] + JITTER_S and quiet[1] >= window[1], (spans, window)
    assert [m.content for m in session.history.messages() if m.role == "assistant"] == [
        "Pressing the keys now.",
        "Done.",
    ]


def _menu(tmp_path: Path, options: dict[str, Any]) -> dict[str, Any]:
    return {"prompt": phrase(tmp_path, MENU), "options": options}


async def test_ivr_navigator_reaches_a_person_and_hands_back(
    clean_endpoint: SipEndpoint, phones: PhoneFactory, tmp_path: Path
) -> None:
    human = {"human": phrase(tmp_path, HUMAN, 1500)}
    tree = _menu(tmp_path, {"2": {"prompt": phrase(tmp_path, BILLING), "options": {"1": human}}})
    llm = FakeLLM(
        [
            Reply("", tool_calls=[("send_dtmf", '{"digits": "2"}')]),
            Reply("", tool_calls=[("send_dtmf", '{"digits": "1"}')]),
            Reply("Hi Alex, I am calling about my bill."),
        ]
    )
    session = make_session(llm, ivr_detection=True, ivr_goal="reach billing")
    agent = Agent(instructions="You call about a bill.")
    voice = await start(
        clean_endpoint, phones, tmp_path, session, agent, ivr=tree, ivr_repeat_s=5.0
    )
    await voice.wait_event("ivr_outcome", timeout_s=30)
    await voice.phone.wait_for("ivr_human")
    await voice.wait_agent_state("speaking", timeout_s=10)
    await voice.wait_agent_state("listening", timeout_s=10)
    assert session.current_agent is agent
    await voice.finish()
    digits = voice.phone.find("ivr_digit")
    assert [(d["digit"], d["accepted"]) for d in digits] == [("2", True), ("1", True)]
    (outcome,) = voice.named("ivr_outcome")[0]
    assert isinstance(outcome, IvrOutcome)
    assert outcome.status == "human_reached" and outcome.digits == "21", outcome
    assert [s.prompt for s in outcome.path] == [MENU, BILLING]
    assert voice.named("ivr_detected") == [(MENU,)]
    # The navigator's LLM: the goal, the menu so far, its tools; then the agent again.
    nav_ctx, nav_tools, _ = llm.requests[1]
    system = nav_ctx.items[0]
    assert isinstance(system, ChatMessage) and "Goal: reach billing" in system.content
    assert "pressed 2" in system.content and BILLING in system.content
    assert {t.name for t in nav_tools} == {"send_dtmf", "human_reached", "give_up"}
    agent_ctx = llm.requests[2][0]
    assert agent_ctx.items[0].content == "You call about a bill."  # type: ignore[union-attr]
    history = [(m.role, m.content) for m in session.history.messages()]
    assert history[-2:] == [("user", HUMAN), ("assistant", "Hi Alex, I am calling about my bill.")]
    assert ("assistant", "") not in history  # the navigator never spoke


async def test_ivr_navigator_gives_up_on_a_loop(
    clean_endpoint: SipEndpoint, phones: PhoneFactory, tmp_path: Path
) -> None:
    tree = _menu(tmp_path, {"2": "root"})  # "2" leads back to the same menu
    press_2 = Reply("", tool_calls=[("send_dtmf", '{"digits": "2"}')])
    llm = FakeLLM([press_2, press_2, press_2, press_2])
    session = make_session(llm, ivr_detection=True)
    voice = await start(
        clean_endpoint,
        phones,
        tmp_path,
        session,
        Agent(instructions="x"),
        ivr=tree,
        ivr_repeat_s=5.0,
    )
    await voice.wait_event("ivr_outcome", timeout_s=40)
    close = await session.wait_closed(timeout_s=10)
    assert close.reason == "call_ended"  # the navigator gave up and hung up
    await voice.finish()
    (outcome,) = voice.named("ivr_outcome")[0]
    assert outcome.status == "gave_up" and "loops" in outcome.reason, outcome
    assert outcome.digits == "222"
    assert [d["digit"] for d in voice.phone.find("ivr_digit")] == ["2", "2", "2"]
    # After the first loop the navigator's LLM was told that path goes in circles.
    warned = llm.requests[2][0].items[0]
    assert isinstance(warned, ChatMessage) and "goes in circles" in warned.content
    assert voice.phone.find("ivr_human") == []
