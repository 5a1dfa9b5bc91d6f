"""Voice pipeline latency and CPU on real SIP calls (run with ``make bench``).

(a) Framework overhead: instant stand-in models (tests/fakes/voice.py) and
``min_endpointing_delay=0``, so ``TurnMetrics.vad_to_audio_ms`` is what callfleet itself
adds between the VAD's end-of-speech decision and the agent's first audio on the wire.
It counts from ``captured_at`` of the frame whose arrival completed the decision
(stamped by PJSIP's clock thread in ``onFrameReceived``) to the clock tick that sent the
first agent frame (``onFrameRequested``). The clock ticks every 20 ms and the reply
is written a millisecond or two after the deciding frame arrived, so it leaves on the
next tick at the earliest: the figure has a floor of about one tick (a little under
20 ms, the gap between that tick's delivery and the next one's request) and moves in
20 ms steps. Timestamps at each hop split it into the pipeline's own work and the wait
for the tick.

(b) The real offline stack (Silero, Whisper base int8, the scripted dialogue engine,
Piper joe) with default endpointing: the same latencies per turn, and the CPU of one
active conversation (this process, and separately the test phone's process).

Figures, not assertions.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import numpy as np
import psutil
import pytest
import pytest_asyncio

from callfleet.agents.agent import Agent
from callfleet.agents.chat import ChatChunk, ChatContext
from callfleet.agents.providers.base import VADEvent
from callfleet.agents.recognition import UserTurn
from callfleet.agents.session import AgentSession
from callfleet.agents.tools import FunctionTool
from callfleet.media.frame import PCM16, AudioFrame
from callfleet.sip.endpoint import SipEndpoint
from tests.conftest import PhoneFactory
from tests.fakes.voice import EnergyVAD, FakeLLM, ToneSTT, ToneTTS, tone_for
from tests.integration.test_voice_e2e import Providers, Reminder, metrics_table, user_wav
from tests.integration.voice_call import VoiceCall, tone_wav

pytestmark = [
    pytest.mark.benchmark,
    pytest.mark.asyncio(loop_scope="session"),
    pytest.mark.timeout(300),
]

OVERHEAD_TURNS = int(os.environ.get("CALLFLEET_BENCH_AGENT_TURNS", "20"))
#: What the phone says in the real-stack conversation (the appointment script of
#: test_voice_e2e: identity, repeat, parking, confirm with a tool call, goodbye).
REAL_TURNS = (
    "Yes, it's me.",
    "Which day was it again?",
    "Is there parking?",
    "Yes, that works for me.",
    "Okay, thank you, goodbye.",
)
#: The agent listens to silence this long at the end of (b), to measure the CPU of a
#: call where nobody speaks (Silero on every frame, RTP both ways).
IDLE_S = 3.0
STAGES = (
    ("capture -> VAD decision on the loop", "captured", "vad_seen"),
    ("VAD decision -> turn committed (STT)", "vad_seen", "committed"),
    ("turn committed -> LLM request", "committed", "llm_request"),
    ("LLM request -> first TTS frame", "llm_request", "tts_frame"),
    ("first TTS frame -> written to playout", "tts_frame", "written"),
    ("written -> sent on the clock tick", "written", "sent"),
)


def spread(values: list[float]) -> str:
    a = np.asarray(values, float)
    return (
        f"median {np.median(a):7.1f}  p90 {np.percentile(a, 90):7.1f}  "
        f"min {a.min():7.1f}  max {a.max():7.1f}"
    )


def load() -> str:
    """The machine's load average (other processes skew these figures)."""
    one, five, _ = os.getloadavg()
    return f"load average {one:.1f} (1 min) {five:.1f} (5 min)"


class Probe:
    """``perf_counter()`` of the first time each stage was reached in the current turn."""

    def __init__(self) -> None:
        self.turns: list[dict[str, float]] = []
        self.current: dict[str, float] = {}

    def next_turn(self) -> None:
        self.current = {}
        self.turns.append(self.current)

    def mark(self, stage: str, at: float | None = None) -> None:
        self.current.setdefault(stage, time.perf_counter() if at is None else at)


class ProbedSession(AgentSession[Any]):
    def __init__(self, probe: Probe, **options: Any) -> None:
        super().__init__(**options)
        self.probe = probe

    def on_end_of_speech(self, event: VADEvent) -> None:
        self.probe.mark("vad_seen")
        super().on_end_of_speech(event)

    def on_end_of_turn(self, turn: UserTurn) -> None:
        self.probe.mark("committed")
        self.probe.mark("captured", turn.vad_end_at)
        super().on_end_of_turn(turn)


class ProbedLLM(FakeLLM):
    def __init__(self, probe: Probe) -> None:
        super().__init__()
        self.probe = probe

    async def chat(
        self,
        *,
        chat_ctx: ChatContext,
        tools: list[FunctionTool] | None = None,
        tool_choice: str = "auto",
    ) -> AsyncIterator[ChatChunk]:
        self.probe.mark("llm_request")
        async for chunk in super().chat(chat_ctx=chat_ctx, tools=tools, tool_choice=tool_choice):
            yield chunk


class ProbedTTS(ToneTTS):
    def __init__(self, probe: Probe) -> None:
        super().__init__()
        self.probe = probe

    async def synthesize(self, text: str) -> AsyncIterator[AudioFrame]:
        async for frame in super().synthesize(text):
            self.probe.mark("tts_frame")
            yield frame


def probe_writes(voice: VoiceCall, probe: Probe) -> None:
    """Mark the first ``audio_out.write`` of each turn (wraps the call's output)."""
    out = voice.call.audio_out
    assert out is not None
    write = out.write

    def probed(frame: AudioFrame | PCM16, sample_rate: int | None = None) -> None:
        probe.mark("written")
        write(frame, sample_rate)

    setattr(out, "write", probed)  # noqa: B010  (instance patch, this benchmark only)


async def test_framework_overhead_vad_to_first_audio(
    clean_endpoint: SipEndpoint, phones: PhoneFactory, tmp_path: Path
) -> None:
    probe = Probe()
    session = ProbedSession(
        probe,
        vad=EnergyVAD(),
        stt=ToneSTT(),
        llm=ProbedLLM(probe),
        tts=ProbedTTS(probe),
        min_endpointing_delay=0.0,
        outbound_greeting="immediate",
        user_away_timeout=None,
    )
    agent = Agent(instructions="Say okay.")
    voice = await VoiceCall.start(clean_endpoint, phones, str(tmp_path), session, agent)
    probe_writes(voice, probe)
    phrase = tone_wav(tmp_path, tone_for("Yes, this is Sam."), 400)
    await asyncio.sleep(0.5)
    for number in range(1, OVERHEAD_TURNS + 1):
        probe.next_turn()
        await voice.say(phrase)
        await voice.wait_event("metrics_collected", number)
        await voice.wait_agent_state("listening")
        await asyncio.sleep(0.2)
    await voice.finish()

    metrics = session.metrics
    vad_to_audio = [m.vad_to_audio_ms for m in metrics if m.vad_to_audio_ms is not None]
    e2e = [m.e2e_latency_ms for m in metrics if m.e2e_latency_ms is not None]
    for turn, m in zip(probe.turns, metrics, strict=True):
        if m.vad_to_audio_ms is not None and "captured" in turn:
            turn["sent"] = turn["captured"] + m.vad_to_audio_ms / 1000
    complete = [t for t in probe.turns if all(s in t for _, s, _ in STAGES) and "sent" in t]
    lines = [
        f"\n[agent bench] (a) framework overhead, instant stub models, "
        f"min_endpointing_delay=0, {len(vad_to_audio)} turns, {os.cpu_count()} cores, "
        f"{load()}",
        f"  vad_to_audio_ms (VAD decision frame captured -> first agent frame sent): "
        f"{spread(vad_to_audio)}",
        f"  e2e_latency_ms (end of speech -> first agent frame; incl. 300 ms VAD silence): "
        f"{spread(e2e)}",
        "  where the time goes (ms, per turn):",
    ]
    for label, start, end in STAGES:
        lines.append(f"    {label:<40} {spread([1000 * (t[end] - t[start]) for t in complete])}")
    work = [1000 * (t["written"] - t["captured"]) for t in complete]
    lines.append(f"    {'pipeline work (capture -> written)':<40} {spread(work)}")
    print("\n".join(lines))
    assert len(vad_to_audio) == OVERHEAD_TURNS


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def models() -> AsyncIterator[Providers]:
    providers = Providers()
    await providers.prewarm()
    yield providers
    await providers.aclose()


def cpu_s(process: psutil.Process) -> float:
    times = process.cpu_times()
    return float(times.user + times.system)


def loop_thread_cpu_s() -> float:
    """CPU time of the asyncio loop's thread (the main thread here)."""
    native_id = threading.main_thread().native_id
    for thread in psutil.Process().threads():
        if thread.id == native_id:
            return float(thread.user_time + thread.system_time)
    return 0.0


async def test_real_offline_stack_latency_and_cpu(
    clean_endpoint: SipEndpoint, phones: PhoneFactory, tmp_path: Path, models: Providers
) -> None:
    wavs = [await user_wav(tmp_path, text) for text in REAL_TURNS]
    session = models.session()
    voice = await VoiceCall.start(clean_endpoint, phones, str(tmp_path), session, Reminder())
    me, phone = psutil.Process(), psutil.Process(voice.phone.pid)
    wall0, cpu0, loop0, phone0 = (
        time.perf_counter(),
        time.process_time(),
        loop_thread_cpu_s(),
        cpu_s(phone),
    )
    await voice.wait_agent_state("speaking", timeout_s=20)
    await voice.wait_agent_state("listening", timeout_s=20)
    for number, wav in enumerate(wavs, start=1):
        await voice.say(wav)
        await voice.wait_event("metrics_collected", number, timeout_s=20)
        await voice.wait_agent_state("listening", timeout_s=20)
    wall1, cpu1, loop1, phone1 = (
        time.perf_counter(),
        time.process_time(),
        loop_thread_cpu_s(),
        cpu_s(phone),
    )
    await asyncio.sleep(IDLE_S)
    wall2, cpu2, phone2 = time.perf_counter(), time.process_time(), cpu_s(phone)
    rss_mb = me.memory_info().rss / 1e6
    await voice.finish()

    metrics = session.metrics
    history = session.history.messages()
    wall = wall1 - wall0

    def column(name: str) -> list[float]:
        return [v for m in metrics if (v := getattr(m, name)) is not None]

    lines = [
        f"\n[agent bench] (b) real offline stack: Silero VAD, Whisper base int8 "
        f"({models.stt._cpu_threads} threads), scripted LLM, Piper joe; default endpointing "
        f"(min {session.options.min_endpointing_delay} s); {len(metrics)} turns, "
        f"{os.cpu_count()} cores, {load()}",
        metrics_table(metrics),
        "  summary (ms):",
    ]
    for name in ("vad_to_audio_ms", "e2e_latency_ms", "stt_delay_ms", "tts_ttfb_ms"):
        values = column(name)
        if values:
            lines.append(f"    {name:<16} {spread(values)}")
    lines += [
        f"  CPU over the conversation ({wall:.1f} s wall, greeting + {len(wavs)} turns):",
        f"    this process (agent + SIP endpoint): {(cpu1 - cpu0) / wall:.3f} core-s/s "
        f"({cpu1 - cpu0:.2f} s CPU); its asyncio loop thread {(loop1 - loop0) / wall:.3f}",
        f"    test phone process (separate, not included above): "
        f"{(phone1 - phone0) / wall:.3f} core-s/s",
        f"    listening to silence for {wall2 - wall1:.1f} s: this process "
        f"{(cpu2 - cpu1) / (wall2 - wall1):.3f} core-s/s, phone "
        f"{(phone2 - phone1) / (wall2 - wall1):.3f}",
        f"    RSS of this process (models loaded): {rss_mb:.0f} MB",
        "  the conversation: "
        + " | ".join(f"{m.role[0]}: {m.content}" for m in history if m.content),
    ]
    print("\n".join(lines))
    assert len(metrics) == len(REAL_TURNS)
