"""DTMF receive/collect/send logic and the IVR detector, tracker and test phone script,
without a call: digits are fed to ``session.dtmf`` directly, sends go to a fake call."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest

from callfleet.agents.chat import FunctionCall
from callfleet.agents.dtmf import DTMFHandler, DtmfReceived, DtmfSender, send_dtmf_tool
from callfleet.agents.ivr import IvrDetector, MenuTracker, normalize
from callfleet.agents.session import AgentSession
from callfleet.agents.tools import RunContext, ToolError
from callfleet.media.frame import AudioFrame
from callfleet.media.tones import dtmf_sequence, silence
from callfleet.sip.dtmf import DtmfEvent, DtmfMethod
from callfleet.sip.testing.script import PhoneScript


def received(session: AgentSession[Any]) -> list[DtmfReceived]:
    out: list[DtmfReceived] = []
    session.on("dtmf_received", out.append)
    return out


# -- receiving and collecting ---------------------------------------------------------


async def test_call_events_become_session_events_and_handler_calls() -> None:
    sync_digits: list[str] = []
    async_digits: list[str] = []

    async def on_digit(digit: str) -> None:
        async_digits.append(digit)

    session: AgentSession[Any] = AgentSession(dtmf_handler=DTMFHandler(sync_digits.append))
    DTMFHandler(on_digit).attach(session)
    events = received(session)
    session.dtmf.on_call_dtmf(DtmfEvent("5", 120, DtmfMethod.RFC4733, 1.0))
    session.dtmf.on_call_dtmf(DtmfEvent("a", None, DtmfMethod.SIP_INFO, 1.2))
    session.dtmf.receive("x", "rfc4733", None)  # not a key: ignored
    await asyncio.sleep(0)
    assert [(e.digit, e.method, e.duration_ms) for e in events] == [
        ("5", "rfc4733", 120),
        ("A", "sip_info", None),
    ]
    assert sync_digits == async_digits == ["5", "A"]
    with pytest.raises(TypeError, match="callable"):
        DTMFHandler("nope")  # type: ignore[arg-type]


async def feed(session: AgentSession[Any], digits: str, every_s: float = 0.02) -> None:
    for digit in digits:
        await asyncio.sleep(every_s)
        session.dtmf.receive(digit, "rfc4733", 100)


@pytest.mark.parametrize(
    ("kwargs", "keys", "expected"),
    [
        ({"count": 3}, "12345", ("123", "count")),
        ({"terminator": "#"}, "98#7", ("98", "terminator")),
        ({"terminator": "*", "count": 10}, "4*", ("4", "terminator")),
        ({"terminator": None, "timeout_s": 0.3}, "12", ("12", "timeout")),
        ({"inter_digit_timeout_s": 0.1, "timeout_s": 5}, "1", ("1", "timeout")),
    ],
)
async def test_collect(kwargs: dict[str, Any], keys: str, expected: tuple[str, str]) -> None:
    session: AgentSession[Any] = AgentSession()
    feeding = asyncio.create_task(feed(session, keys))
    started = time.monotonic()
    result = await session.dtmf.collect(**kwargs)
    await feeding
    assert (result.digits, result.reason) == expected
    assert time.monotonic() - started < 1.0


async def test_collect_returns_closed_when_the_session_ends_and_checks_its_arguments() -> None:
    session: AgentSession[Any] = AgentSession()
    collecting = asyncio.create_task(session.dtmf.collect(timeout_s=5))
    await asyncio.sleep(0.01)
    session.dtmf.receive("7", "rfc4733", 100)
    await asyncio.sleep(0.01)
    session.dtmf.close()
    result = await asyncio.wait_for(collecting, 1)
    assert (result.digits, result.reason) == ("7", "closed")
    with pytest.raises(ValueError, match="count must be"):
        await session.dtmf.collect(count=0)
    with pytest.raises(ValueError, match="terminator must be"):
        await session.dtmf.collect(terminator="x")
    with pytest.raises(ValueError, match="timeout_s"):
        await session.dtmf.collect(timeout_s=0)


def frames_of(samples: np.ndarray[Any, Any], rate: int) -> list[AudioFrame]:
    step = rate // 50
    return [AudioFrame(samples[i : i + step], rate) for i in range(0, len(samples), step)]


@pytest.mark.parametrize("rate", [8000, 16000])
async def test_inband_tones_in_20_ms_frames(rate: int) -> None:
    session: AgentSession[Any] = AgentSession(inband_dtmf=True)
    events = received(session)
    audio = np.concatenate([dtmf_sequence("0#9", rate), silence(200, rate)])
    for frame in frames_of(audio, rate):
        session.dtmf.push_audio(frame)
    assert [(e.digit, e.method) for e in events] == [
        ("0", "inband"),
        ("#", "inband"),
        ("9", "inband"),
    ]


async def test_inband_off_by_default_and_after_out_of_band_digits() -> None:
    audio = np.concatenate([dtmf_sequence("12", 8000), silence(200, 8000)])
    off: AgentSession[Any] = AgentSession()
    off_events = received(off)
    for frame in frames_of(audio, 8000):
        off.dtmf.push_audio(frame)
    assert off_events == []
    on: AgentSession[Any] = AgentSession(inband_dtmf=True)
    events = received(on)
    on.dtmf.on_call_dtmf(DtmfEvent("3", 100, DtmfMethod.RFC4733, 0.1))
    for frame in frames_of(audio, 8000):  # the carrier's in-band copy of the same keys
        on.dtmf.push_audio(frame)
    assert [e.digit for e in events] == ["3"]


# -- sending --------------------------------------------------------------------------


class FakeOut:
    def __init__(self, queued_ms: float) -> None:
        self.queued_ms = queued_ms
        self.paused = False
        self.pauses: list[bool] = []

    async def wait_played(self) -> bool:
        await asyncio.sleep(self.queued_ms / 1000)
        self.queued_ms = 0
        return True

    def pause(self) -> None:
        self.paused = True

    def resume(self) -> None:
        self.paused = False


@dataclass
class FakeCall:
    audio_out: FakeOut
    id: str = "call-1"
    is_ended: bool = False

    def __post_init__(self) -> None:
        self.sent: list[tuple[str, int, int, float, bool, float]] = []

    async def send_dtmf(self, digits: str, *, duration_ms: int, gap_ms: int) -> None:
        self.sent.append(
            (
                digits,
                duration_ms,
                gap_ms,
                self.audio_out.queued_ms,
                self.audio_out.paused,
                time.perf_counter(),
            )
        )
        await asyncio.sleep(0.01)


def session_on(call: FakeCall) -> AgentSession[Any]:
    session: AgentSession[Any] = AgentSession()
    session.call = call  # type: ignore[assignment]
    return session


async def test_sender_waits_for_the_voice_holds_it_and_paces() -> None:
    call = FakeCall(FakeOut(queued_ms=80))
    session = session_on(call)
    sender = DtmfSender(tone_ms=100, gap_ms=150, cooldown_s=0.05)
    started = time.perf_counter()
    assert await sender.send(session, "1 2-3") == "123"
    digits, tone_ms, gap_ms, queued_ms, paused, at = call.sent[0]
    assert (digits, tone_ms, gap_ms) == ("123", 100, 150)
    assert queued_ms == 0 and paused and at - started >= 0.075  # waited for the voice
    assert not call.audio_out.paused  # released afterwards


async def test_sender_refuses_floods_with_tool_errors() -> None:
    call = FakeCall(FakeOut(queued_ms=0))
    session = session_on(call)
    sender = DtmfSender(cooldown_s=0.3, max_digits_per_send=4, max_digits_per_call=6)
    await sender.send(session, "12")
    with pytest.raises(ToolError, match=r"cooldown 0.3 s"):
        await sender.send(session, "3")
    await asyncio.sleep(0.3)
    with pytest.raises(ToolError, match="at most 4 per send"):
        await sender.send(session, "12345")
    with pytest.raises(ToolError, match="not DTMF keys"):
        await sender.send(session, "1x")
    await sender.send(session, "3456")
    await asyncio.sleep(0.3)
    with pytest.raises(ToolError, match="limit of 6 digits"):
        await sender.send(session, "7")
    assert [s[0] for s in call.sent] == ["12", "3456"]
    call.id = "call-2"  # a new call starts afresh
    assert await sender.send(session, "7") == "7"
    with pytest.raises(ValueError, match="tone_ms"):
        DtmfSender(tone_ms=10)


async def test_send_dtmf_tool_schema_and_output() -> None:
    call = FakeCall(FakeOut(queued_ms=0))
    session = session_on(call)
    tool = send_dtmf_tool()
    assert tool.name == "send_dtmf"
    assert tool.parameters["required"] == ["digits"]
    ctx: RunContext[Any] = RunContext(session, FunctionCall("c1", "send_dtmf", ""))
    assert await tool.invoke(ctx, '{"digits": "9"}') == "sent 9"
    quiet = send_dtmf_tool(DtmfSender(cooldown_s=0), report=False, name="press")
    assert quiet.name == "press" and await quiet.invoke(ctx, '{"digits": "8"}') is None
    with pytest.raises(ToolError, match="cooldown"):  # the session's sender is shared
        await tool.invoke(ctx, '{"digits": "9"}')


# -- IVR ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "For billing, press 2. For sales, press 3.",
        "Please listen carefully as our menu options have changed.",
        "To return to the main menu, press star.",
        "Para español, oprima nueve. To speak to a representative, press zero.",
        "Say or press the number of your choice.",
    ],
)
def test_menu_phrases(text: str) -> None:
    assert IvrDetector.menu_score(text) >= 1.0
    assert IvrDetector().add_utterance(text)
    assert not IvrDetector.looks_human(text)


@pytest.mark.parametrize(
    "text",
    [
        "Hi, this is Alex, how can I help?",
        "Hello?",
        "Billing, Maria speaking.",
        "Good morning, what can I do for you?",
    ],
)
def test_people_are_not_menus(text: str) -> None:
    assert IvrDetector.looks_human(text)
    assert not IvrDetector().add_utterance(text)


def test_weak_evidence_adds_up_and_repeats_count() -> None:
    detector = IvrDetector()
    assert not detector.add_utterance("Your call is important to us.")
    assert detector.add_utterance("Please stay on the line.")  # 0.5 + 0.5 before
    repeat = IvrDetector()
    assert not repeat.add_utterance("Thank you for waiting.")
    assert repeat.add_utterance("Thank you for waiting.")  # word for word again
    music = IvrDetector(hold_music_s=8)
    music.note_wordless(10.0)
    assert music.add_utterance("All our agents are busy.")
    assert not IvrDetector().add_utterance("")
    assert IvrDetector().add_utterance("We are open nine to five.", duration_s=30) is False
    assert normalize("For Billing,  press 2!") == "for billing press 2"


def test_tracker_path_and_loop() -> None:
    tracker = MenuTracker(max_loops=2)
    menu = "For billing, press 2."
    assert tracker.prompt(menu).kind == "ok"
    tracker.pressed("2")
    first = tracker.prompt(menu)  # pressing 2 brought the menu back
    assert first.kind == "ok" and "same prompt back" in first.note
    tracker.pressed("2")
    second = tracker.prompt(menu)  # ... again: a loop
    assert second.kind == "loop" and "circles" in second.note
    tracker.pressed("2")
    third = tracker.prompt(menu)
    assert third.kind == "stuck" and "loops" in third.note
    assert [s.digits for s in tracker.steps] == ["2", "2", "2", None]


def test_tracker_progress_and_unanswered_repeats() -> None:
    tracker = MenuTracker(max_repeats_unanswered=2)
    assert tracker.prompt("Main menu. For billing press 2.").kind == "ok"
    tracker.pressed("2")
    assert tracker.prompt("Billing. To speak to a person press 1.").kind == "ok"
    assert tracker.prompt("Billing. To speak to a person press 1.").kind == "ok"
    assert tracker.prompt("Billing. To speak to a person press 1.").kind == "stuck"


# -- the test phone's IVR script --------------------------------------------------------


def test_phone_script_ivr_round_trip_and_errors() -> None:
    tree = {"prompt": "m.wav", "options": {"2": {"human": "h.wav"}, "9": "root"}}
    script = PhoneScript(ivr=tree, ivr_repeat_s=2.0)
    assert PhoneScript.from_json(script.to_json()).ivr == tree
    with pytest.raises(ValueError, match="ivr has no 'prompt'"):
        PhoneScript(ivr={"options": {}})
    with pytest.raises(ValueError, match=r"ivr.options key '22' is not one DTMF key"):
        PhoneScript(ivr={"prompt": "m.wav", "options": {"22": "root"}})
    with pytest.raises(ValueError, match=r"ivr.options\[1\] must be exactly"):
        PhoneScript(ivr={"prompt": "m.wav", "options": {"1": {"human": "h.wav", "x": 1}}})
