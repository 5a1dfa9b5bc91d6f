"""Transfers of a live agent call to a human, over real SIP: blind (REFER), REFER refused
→ dial and bridge, warm (hold, dial, brief, bridge), the human declining, the caller
hanging up mid-transfer, and the LLM's transfer tool with its allow-list.

"The caller" is a test phone we dial (our call to it is the caller's leg); "the human"
is another test phone. Both record what they hear and say (stereo); the stand-in TTS
speaks a 400 Hz tone of 40 ms per character, so the briefing's length is known.
"""

from __future__ import annotations

import asyncio
from typing import Any

import numpy as np
import pytest

from callfleet.agents.agent import Agent
from callfleet.agents.chat import FunctionCallOutput
from callfleet.agents.errors import AgentError
from callfleet.agents.session import AgentSession, CloseEvent
from callfleet.agents.transfer import (
    Transferer,
    TransferOptions,
    TransferOutcome,
    TransferRequest,
    make_transfer_tool,
)
from callfleet.media.analysis import dominant_frequency_hz
from callfleet.media.frame import PCM16
from callfleet.sip.endpoint import SipEndpoint
from callfleet.sip.status import EndReason
from callfleet.sip.testing import PhoneScript, TestPhone
from callfleet.sip.transfer_backend import SipTransferBackend
from tests.conftest import PhoneFactory
from tests.fakes.voice import EnergyVAD, FakeLLM, Reply, ToneSTT, ToneTTS
from tests.integration.audio import assert_tone
from tests.integration.voice_call import read_stereo

pytestmark = pytest.mark.asyncio(loop_scope="session")

CALLER_HZ = 600
HUMAN_HZ = 800
TTS_HZ = 400
TTS_MS_PER_CHAR = 40.0


class Events:
    """The session's transfer events and its close, in order."""

    def __init__(self, session: AgentSession[Any]) -> None:
        self.items: list[tuple[str, Any]] = []
        self._changed = asyncio.Event()
        for name in ("transfer_started", "transfer_completed", "close"):
            session.on(name, lambda arg, _n=name: self._add(_n, arg))

    def _add(self, name: str, arg: Any) -> None:
        self.items.append((name, arg))
        self._changed.set()

    def names(self) -> list[str]:
        return [n for n, _ in self.items]

    async def wait(self, name: str, timeout_s: float = 15.0) -> Any:
        async def poll() -> Any:
            while True:
                for n, arg in self.items:
                    if n == name:
                        return arg
                self._changed.clear()
                await self._changed.wait()

        return await asyncio.wait_for(poll(), timeout_s)


def make_session(llm: FakeLLM | None = None) -> tuple[AgentSession[Any], ToneTTS]:
    tts = ToneTTS(hz=TTS_HZ, ms_per_char=TTS_MS_PER_CHAR)
    stt: Any = ToneSTT()  # (its stream() is typed loosely: it has none)
    session: AgentSession[Any] = AgentSession(
        vad=EnergyVAD(),
        stt=stt,
        llm=llm or FakeLLM(),
        tts=tts,
        outbound_greeting="immediate",
        user_away_timeout=None,
    )
    return session, tts


async def start_call(
    endpoint: SipEndpoint,
    phones: PhoneFactory,
    record_dir: str,
    session: AgentSession[Any],
    agent: Agent | None = None,
    **script: Any,
) -> tuple[TestPhone, Any]:
    """Dial the caller phone and run the agent on that call."""
    caller = await phones(
        PhoneScript(**{"silent": True, "record_dir": record_dir, "record_stereo": True, **script}),
        name="caller",
    )
    call = await endpoint.dial(caller.uri())
    await session.start(agent or Agent(instructions="You help callers."), call)
    assert await call.wait_answered(10)
    return caller, call


async def human_phone(phones: PhoneFactory, record_dir: str, **script: Any) -> TestPhone:
    return await phones(
        PhoneScript(**{"record_dir": record_dir, "record_stereo": True, **script}), name="human"
    )


async def recording(phone: TestPhone, call: str) -> tuple[PCM16, PCM16, int]:
    event = await phone.wait_for("recorded", call=call, timeout_s=10)
    return read_stereo(str(event["path"]))


def tail_tone(samples: PCM16, rate: int, seconds: float = 0.6) -> float:
    return dominant_frequency_hz(samples[-int(seconds * rate) :], rate)


async def assert_bridged(
    caller: TestPhone, caller_call: str, human: TestPhone, human_call: str
) -> None:
    """Each side's recording ends with the other side's tone: audio flowed both ways."""
    heard, _, rate = await recording(caller, caller_call)
    assert_tone(tail_tone(heard, rate), HUMAN_HZ)
    heard, _, rate = await recording(human, human_call)
    assert_tone(tail_tone(heard, rate), CALLER_HZ)


def tone_seconds(samples: PCM16, rate: int, hz: float, *, tolerance_hz: float = 15.0) -> float:
    """How long ``samples`` carry a loud tone of ``hz`` (50 ms blocks)."""
    step = rate // 20
    total = 0
    for start in range(0, len(samples) - step + 1, step):
        block = samples[start : start + step]
        rms = float(np.sqrt(np.mean(block.astype(np.float64) ** 2)))
        if rms < 200:
            continue
        if abs(dominant_frequency_hz(block, rate) - hz) <= tolerance_hz:
            total += 1
    return total / 20


async def test_blind_transfer_refers_the_caller_to_the_human(
    clean_endpoint: SipEndpoint, phones: PhoneFactory, record_dir: str
) -> None:
    session, _ = make_session()
    events = Events(session)
    human = await human_phone(phones, record_dir, tone_hz=HUMAN_HZ)
    caller, call = await start_call(
        clean_endpoint, phones, record_dir, session, silent=False, tone_hz=CALLER_HZ
    )
    outcome = await Transferer(session, SipTransferBackend(clean_endpoint)).transfer(
        human.uri("human"), mode="blind"
    )

    assert outcome.ok and outcome.status_code == 200 and outcome.refer_code == 200
    assert not outcome.fell_back and outcome.human_call_id is None
    assert outcome.notify_codes[-1] == 200
    assert call.end_reason is EndReason.TRANSFERRED
    refer = await caller.wait_for("transfer_request")
    assert refer["code"] == 202 and "human" in refer["target"]
    incoming = await human.wait_for("incoming")
    assert incoming["caller"] == "caller"
    closed = await events.wait("close")
    assert isinstance(closed, CloseEvent) and closed.reason == "call_ended"
    assert events.names()[0] == "transfer_started"
    assert (await events.wait("transfer_completed")) is outcome
    notes = [m.content for m in session.history.messages() if m.role == "system"]
    assert notes == ["The call was transferred (blind transfer to " + human.uri("human") + ")."]

    await asyncio.sleep(1.2)  # caller and human talk, without us
    await caller.send({"cmd": "hangup", "call": refer["new_call"]})
    await assert_bridged(caller, refer["new_call"], human, incoming["call"])


async def test_refused_refer_falls_back_to_dial_and_bridge(
    clean_endpoint: SipEndpoint, phones: PhoneFactory, record_dir: str
) -> None:
    session, _ = make_session()
    events = Events(session)
    human = await human_phone(phones, record_dir, tone_hz=HUMAN_HZ)
    caller, call = await start_call(
        clean_endpoint,
        phones,
        record_dir,
        session,
        silent=False,
        tone_hz=CALLER_HZ,
        refer_code=603,
    )
    backend = SipTransferBackend(clean_endpoint)
    options = TransferOptions(hold_message=None)
    outcome = await Transferer(session, backend, options=options).transfer(
        human.uri("human"), mode="blind"
    )

    assert outcome.ok and outcome.fell_back and outcome.refer_code == 603
    assert outcome.human_answered and outcome.human_call_id is not None
    assert outcome.status_code == 200 and outcome.reason == "bridged"
    closed = await events.wait("close")
    assert closed.reason == "user_requested"
    assert not call.is_ended  # the agent left; the caller stays, bridged to the human
    legs = {c.id: c for c in clean_endpoint.calls}
    human_leg = legs[outcome.human_call_id]
    assert not human_leg.is_ended

    await asyncio.sleep(1.2)  # audio flows both ways through the bridge
    caller_side = (await caller.wait_for("call"))["call"]
    human_side = (await human.wait_for("incoming"))["call"]
    await caller.send({"cmd": "hangup", "call": caller_side})
    # The caller hung up: we hang up the human's leg.
    assert await human_leg.wait_ended(5) is EndReason.COMPLETED
    ended = await human.wait_for("ended", call=human_side)
    assert ended["reason"] == "completed"
    await assert_bridged(caller, caller_side, human, human_side)


async def test_warm_transfer_briefs_the_human_then_bridges(
    clean_endpoint: SipEndpoint, phones: PhoneFactory, record_dir: str
) -> None:
    session, tts = make_session()
    events = Events(session)
    human = await human_phone(phones, record_dir, tone_hz=HUMAN_HZ, ring_s=0.5)
    caller, call = await start_call(
        clean_endpoint, phones, record_dir, session, silent=False, tone_hz=CALLER_HZ
    )
    summary = "Sam wants to move his Tuesday booking."
    transfer = Transferer(session, SipTransferBackend(clean_endpoint))
    outcome = await transfer.transfer(human.uri("human"), mode="warm", summary=summary)

    options = transfer.options
    briefing = options.briefing.format(summary=summary)
    # The TTS node speaks sentence by sentence.
    assert tts.texts == [options.hold_message, "You have a transferred call.", summary]
    assert outcome.ok and outcome.human_answered and outcome.briefed
    assert not outcome.fell_back and outcome.refer_code is None
    started = await events.wait("transfer_started")
    assert isinstance(started, TransferRequest) and started.summary == summary
    assert events.names() == ["transfer_started", "transfer_completed", "close"]
    assert (await events.wait("close")).reason == "user_requested"
    assert not call.is_ended
    human_leg = next(c for c in clean_endpoint.calls if c.id == outcome.human_call_id)

    await asyncio.sleep(1.2)
    human_side = (await human.wait_for("incoming"))["call"]
    caller_side = (await caller.wait_for("call"))["call"]
    await human.send({"cmd": "hangup", "call": human_side})
    # The human hung up: we hang up the caller.
    assert await call.wait_ended(5) is EndReason.COMPLETED
    assert human_leg.is_ended

    heard, _, rate = await recording(human, human_side)
    briefing_s = len(briefing) * TTS_MS_PER_CHAR / 1000
    assert abs(tone_seconds(heard, rate, TTS_HZ) - briefing_s) <= 0.2
    assert_tone(tail_tone(heard, rate), CALLER_HZ)
    heard, _, rate = await recording(caller, caller_side)
    hold_s = len(options.hold_message or "") * TTS_MS_PER_CHAR / 1000
    assert abs(tone_seconds(heard, rate, TTS_HZ) - hold_s) <= 0.2
    assert tone_seconds(heard, rate, 523.25) > 0.2  # hold music while the human rang
    assert_tone(tail_tone(heard, rate), HUMAN_HZ)
    messages = [(m.role, m.content) for m in session.history.messages()]
    assert messages == [
        ("assistant", options.hold_message),
        ("system", f"The call was transferred (warm transfer to {human.uri('human')})."),
    ]


async def test_warm_transfer_declined_tells_the_caller_and_goes_on(
    clean_endpoint: SipEndpoint, phones: PhoneFactory, record_dir: str
) -> None:
    session, tts = make_session()
    events = Events(session)
    human = await human_phone(phones, record_dir, answer="reject", reject_code=486)
    caller, call = await start_call(clean_endpoint, phones, record_dir, session)
    transfer = Transferer(session, SipTransferBackend(clean_endpoint))
    outcome = await transfer.transfer(human.uri("human"), mode="warm", summary="Billing question.")

    assert not outcome.ok and not outcome.human_answered and not outcome.caller_hung_up
    assert outcome.status_code == 486 and "486" in outcome.reason
    assert (await events.wait("transfer_completed")) is outcome
    said = [transfer.options.hold_message or "", transfer.options.failure_message]
    assert " ".join(tts.texts) == " ".join(said)  # (sentence by sentence)
    messages = [(m.role, m.content) for m in session.history.messages()]
    assert messages[-2] == ("assistant", transfer.options.failure_message)
    assert messages[-1][0] == "system" and "did not happen" in messages[-1][1]
    assert "486 Busy Here" in messages[-1][1] and "has been told" in messages[-1][1]
    assert "close" not in events.names() and not call.is_ended
    assert all(c.is_ended for c in clean_endpoint.calls if c is not call)

    # The agent carries on with the caller.
    await asyncio.wait_for(session.say("Anything else?").wait_for_playout(), 10)
    assert tts.texts[-1] == "Anything else?"
    await call.hangup()
    await session.wait_closed(5)
    heard, _, rate = await recording(caller, (await caller.wait_for("call"))["call"])
    spoken = "".join(tts.texts)
    assert abs(tone_seconds(heard, rate, TTS_HZ) - len(spoken) * TTS_MS_PER_CHAR / 1000) <= 0.3


async def test_caller_hanging_up_cancels_the_human_leg(
    clean_endpoint: SipEndpoint, phones: PhoneFactory, record_dir: str
) -> None:
    session, tts = make_session()
    events = Events(session)
    human = await human_phone(phones, record_dir, answer="ignore", ring_s=0.2)
    caller, _ = await start_call(clean_endpoint, phones, record_dir, session)
    transfer = Transferer(session, SipTransferBackend(clean_endpoint))
    task = asyncio.create_task(transfer.transfer(human.uri("human"), mode="warm"))
    incoming = await human.wait_for("incoming", timeout_s=15)
    await caller.send({"cmd": "hangup"})
    outcome: TransferOutcome = await asyncio.wait_for(task, 10)

    assert not outcome.ok and outcome.caller_hung_up and not outcome.human_answered
    assert "caller hung up" in outcome.reason
    ended = await human.wait_for("ended", call=incoming["call"])
    assert ended["code"] == 487  # our INVITE was CANCELled
    assert all(c.is_ended for c in clean_endpoint.calls)
    assert tts.texts == [transfer.options.hold_message]  # nobody left to tell
    assert (await events.wait("close")).reason == "call_ended"
    assert (await events.wait("transfer_completed")) is outcome


async def test_llm_transfer_tool_refuses_unknown_destinations(
    clean_endpoint: SipEndpoint, phones: PhoneFactory, record_dir: str
) -> None:
    human = await human_phone(phones, record_dir, silent=True)
    tool = make_transfer_tool(
        {"sales": human.uri("human")}, backend=SipTransferBackend(clean_endpoint)
    )
    assert tool.parameters["properties"]["destination"]["enum"] == ["sales"]
    assert tool.parameters["properties"]["mode"]["enum"] == ["blind", "warm"]
    assert tool.parameters["required"] == ["destination"]
    llm = FakeLLM(
        [
            Reply("", tool_calls=[("transfer_call", '{"destination": "sip:boss@evil.example"}')]),
            Reply(
                "Connecting you to sales.",
                tool_calls=[("transfer_call", '{"destination": "sales", "mode": "blind"}')],
            ),
        ]
    )
    session, _ = make_session(llm)
    events = Events(session)
    outputs: list[FunctionCallOutput] = []
    session.on("function_tools_executed", lambda calls, outs: outputs.extend(outs))
    caller, call = await start_call(
        clean_endpoint, phones, record_dir, session, Agent(instructions="x", tools=[tool])
    )
    session.generate_reply()

    outcome = await events.wait("transfer_completed")
    assert outcome.ok and outcome.destination == "sales" and outcome.mode == "blind"
    assert outputs[0].is_error
    assert outputs[0].output == (
        "unknown transfer destination 'sip:boss@evil.example': allowed: sales"
    )
    assert call.end_reason is EndReason.TRANSFERRED
    refer = await caller.wait_for("transfer_request")
    assert refer["code"] == 202 and "human" in refer["target"]
    await human.wait_for("incoming")
    await caller.send({"cmd": "hangup", "call": refer["new_call"]})


async def test_llm_warm_transfer_closes_the_agent_and_keeps_the_caller(
    clean_endpoint: SipEndpoint, phones: PhoneFactory, record_dir: str
) -> None:
    human = await human_phone(phones, record_dir, silent=True)
    tool = make_transfer_tool(
        {"billing": human.uri("human")}, backend=SipTransferBackend(clean_endpoint)
    )
    arguments = '{"destination": "billing", "summary": "Sam disputes a charge."}'
    llm = FakeLLM([Reply("Let me get billing.", tool_calls=[("transfer_call", arguments)])])
    session, tts = make_session(llm)
    events = Events(session)
    _, call = await start_call(
        clean_endpoint, phones, record_dir, session, Agent(instructions="x", tools=[tool])
    )
    session.generate_reply()

    outcome = await events.wait("transfer_completed")
    assert outcome.ok and outcome.mode == "warm" and outcome.briefed  # the default mode
    assert (await events.wait("close")).reason == "user_requested"
    assert tts.texts[-1] == "Sam disputes a charge."
    assert not call.is_ended
    human_leg = next(c for c in clean_endpoint.calls if c.id == outcome.human_call_id)
    await call.hangup()
    assert await human_leg.wait_ended(5) is EndReason.COMPLETED


async def test_transfer_tool_without_destinations_refuses(
    clean_endpoint: SipEndpoint, phones: PhoneFactory, record_dir: str
) -> None:
    tool = make_transfer_tool(None, backend=SipTransferBackend(clean_endpoint))
    assert "enum" not in tool.parameters["properties"]["destination"]
    llm = FakeLLM(
        [Reply("", tool_calls=[("transfer_call", '{"destination": "sales"}')]), Reply("Sorry.")]
    )
    session, _ = make_session(llm)
    outputs: list[FunctionCallOutput] = []
    session.on("function_tools_executed", lambda calls, outs: outputs.extend(outs))
    _, call = await start_call(
        clean_endpoint, phones, record_dir, session, Agent(instructions="x", tools=[tool])
    )
    await asyncio.wait_for(session.generate_reply().wait_for_playout(), 10)
    assert outputs[0].is_error
    assert outputs[0].output == "unknown transfer destination 'sales': allowed: none are configured"
    assert not call.is_ended
    await call.hangup()
    await session.wait_closed(5)


async def test_transfer_options_are_checked() -> None:
    with pytest.raises(ValueError, match="ring_timeout_s must be positive, got 0"):
        TransferOptions(ring_timeout_s=0)
    with pytest.raises(ValueError, match="briefing must contain"):
        TransferOptions(briefing="Hello.")


async def test_session_transfer_call_uses_its_backend(
    clean_endpoint: SipEndpoint, phones: PhoneFactory, record_dir: str
) -> None:
    session, _ = make_session()
    with pytest.raises(AgentError, match="no transfer_backend configured"):
        await session.transfer_call("sip:nobody@127.0.0.1")
    session.transfer_backend = SipTransferBackend(clean_endpoint)
    human = await human_phone(phones, record_dir, tone_hz=HUMAN_HZ)
    caller, call = await start_call(clean_endpoint, phones, record_dir, session)
    outcome = await session.transfer_call(human.uri("human"), mode="blind")
    assert outcome.ok and outcome.mode == "blind" and not outcome.fell_back
    assert call.end_reason is EndReason.TRANSFERRED
    refer = await caller.wait_for("transfer_request")
    await human.wait_for("incoming")
    await caller.send({"cmd": "hangup", "call": refer["new_call"]})
