"""Answering-machine detection on live calls: a voicemail phone (greeting, beep) gets
its message after the beep, a voicemail with no beep after the greeting and silence,
and a person gets the conversation. Real Silero VAD and Whisper; the agent's voice is
the stand-in tone TTS, so the message is easy to find in the phone's recording."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import pytest_asyncio

from callfleet.agents.agent import Agent
from callfleet.agents.amd.runner import AMDOptions
from callfleet.agents.providers.piper import PiperTTS
from callfleet.agents.providers.silero import SileroVAD
from callfleet.agents.providers.whisper import WhisperSTT
from callfleet.agents.session import AgentSession
from callfleet.media.tones import beep
from callfleet.media.wav import write_wav
from callfleet.sip.endpoint import SipEndpoint
from tests.conftest import PhoneFactory
from tests.fakes.voice import FakeLLM, ToneTTS
from tests.integration.voice_call import VoiceCall, loud_spans

pytestmark = pytest.mark.asyncio(loop_scope="session")

GREETING = "Hi, you have reached Dana. I can't take your call right now. Please leave a message."
MESSAGE = "Hi Dana, this is Acme Dental reminding you of Tuesday at 3 pm."
RATE = 8000


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def models() -> tuple[SileroVAD, WhisperSTT]:
    stt = WhisperSTT()
    await stt.prewarm()  # as a call host does at start: no model loading during a call
    return SileroVAD(sample_rate=8000), stt


async def speech(text: str) -> np.ndarray:
    tts = PiperTTS(noise_scale=0.0, noise_w_scale=0.0)
    from callfleet.media.resample import resample

    samples = np.concatenate([f.samples async for f in tts.synthesize(text)])
    return resample(samples, tts.sample_rate, RATE)


def session_for(models: tuple[SileroVAD, WhisperSTT], **amd: Any) -> AgentSession[Any]:
    vad, stt = models
    return AgentSession(
        vad=vad,
        stt=stt,
        llm=FakeLLM(),
        tts=ToneTTS(hz=400, ms_per_char=30, sample_rate=RATE),
        user_away_timeout=None,
        amd=AMDOptions(**amd),
    )


@pytest.mark.parametrize("with_beep", [True, False])
async def test_voicemail_message_starts_after_the_beep_or_the_greeting(
    clean_endpoint: SipEndpoint,
    phones: PhoneFactory,
    tmp_path: Path,
    models: tuple[SileroVAD, WhisperSTT],
    with_beep: bool,
) -> None:
    greeting = await speech(GREETING)
    gap = np.zeros(int(0.3 * RATE), np.int16)
    tone = beep(1000, 400, RATE, amplitude_dbfs=-12) if with_beep else np.zeros(0, np.int16)
    wav = tmp_path / "voicemail.wav"
    write_wav(wav, np.concatenate([gap, greeting, gap, tone]), RATE)
    session = session_for(models, action="voicemail", message=MESSAGE)
    voice = await VoiceCall.start(
        clean_endpoint,
        phones,
        str(tmp_path),
        session,
        Agent(instructions="x"),
        play=[str(wav)],
        silent=False,
    )
    await voice.call.wait_ended(40)  # we hang up after the message
    heard, said, rate = await voice.finish()

    outcome = session.amd_outcome
    assert outcome is not None and outcome["label"] == "voicemail", outcome
    assert outcome["message_left"], outcome
    phone_spans = loud_spans(said, rate)
    machine_end = phone_spans[-1][1]  # the end of the beep, or of the greeting
    agent_spans = loud_spans(heard, rate)
    assert len(agent_spans) == 1, agent_spans  # only the message, nothing over the greeting
    start, end = agent_spans[0]
    assert start >= machine_end, (agent_spans, phone_spans)
    if with_beep:
        assert start - machine_end < 0.6  # right after the beep
        assert outcome["beep_ms"] is not None
    assert end - start == pytest.approx(len(MESSAGE) * 0.03, abs=0.2)  # all of it
    assert [m.content for m in session.history.messages() if m.role == "assistant"] == [MESSAGE]


async def test_a_person_gets_the_conversation(
    clean_endpoint: SipEndpoint,
    phones: PhoneFactory,
    tmp_path: Path,
    models: tuple[SileroVAD, WhisperSTT],
) -> None:
    hello = await speech("Hello?")
    wav = tmp_path / "hello.wav"
    write_wav(wav, np.concatenate([np.zeros(int(0.4 * RATE), np.int16), hello]), RATE)
    session = session_for(models, action="voicemail", message=MESSAGE)
    agent = Agent(instructions="x", first_message="Hi, this is Acme Dental.")
    voice = await VoiceCall.start(
        clean_endpoint, phones, str(tmp_path), session, agent, play=[str(wav)], silent=False
    )
    await voice.wait_agent_state("speaking", timeout_s=15)
    await voice.wait_agent_state("listening")
    await voice.finish()
    outcome = session.amd_outcome
    assert outcome is not None and outcome["label"] == "human", outcome
    # "Hello?" ends at ~1.0 s; 0.6 s of silence decides without waiting for Whisper's
    # transcript (the session's, shared with AMD): ~1.5 s here, target 2.5 s.
    assert outcome["decision_ms"] < 2500 and not outcome["message_left"]
    said = [(m.role, m.content) for m in session.history.messages()]
    assert ("assistant", "Hi, this is Acme Dental.") in said
