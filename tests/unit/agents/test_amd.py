"""Answering-machine detection: the phrase model, the LLM classifier, the streaming detector
on synthesised calls (espeak-ng speech, real Silero VAD and Whisper), and the CLI."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import numpy as np
import pytest

from callfleet.agents import espeak
from callfleet.agents.amd import (
    AMDEvent,
    AnsweringMachineDetector,
    VoiceMailDetector,
    classify_transcript,
    normalize,
)
from callfleet.agents.amd.cli import run_amd_cli
from callfleet.agents.amd.detector import AMDResult
from callfleet.agents.errors import APIError
from callfleet.agents.providers.silero import SileroVAD
from callfleet.agents.providers.whisper import WhisperSTT
from callfleet.media.frame import PCM16, AudioFrame
from callfleet.media.resample import resample
from callfleet.media.tones import beep, ringback, silence, white_noise
from callfleet.media.wav import write_wav
from tests.fakes.voice import FakeLLM, Reply

RATE = 8000


# -- phrase model ----------------------------------------------------------------------


def test_normalize_unifies_case_numbers_contractions_and_punctuation() -> None:
    assert normalize("You've reached 555-0100. I'm NOT available!") == (
        "you have reached 5 5 5 0 1 0 0 i am not available"
    )
    assert normalize("Press ONE for billing, uh, or two") == "press 1 for billing or 2"
    assert normalize("It\u2019s Sam") == "it is sam"


@pytest.mark.parametrize(
    ("text", "label"),
    [
        ("Hi, you've reached Dana. Please leave a message after the tone.", "voicemail"),
        (
            "The person you are calling is not available. At the beep, record your message.",
            "voicemail",
        ),
        ("I can't come to the phone, I'll get back to you.", "voicemail"),
        ("Your call has been forwarded to an automated voice messaging system.", "voicemail"),
        ("Thank you for calling Zenith. For billing, press one. For sales, press 2.", "ivr"),
        ("Your call is important to us. Please stay on the line.", "ivr"),
        ("All of our agents are currently busy; please hold.", "ivr"),
        ("Hello?", "human"),
        ("Good morning, Zenith Dental, this is Priya speaking, how can I help you?", "human"),
        ("Yeah, who is this?", "human"),
        ("Sorry I missed your call, text me.", "voicemail"),
        ("The number you have called is switched off.", "voicemail"),
        ("You are caller number three. Thank you for your patience.", "ivr"),
        ("Briefly tell me why you are calling. You can say billing or support.", "ivr"),
        ("We are experiencing higher than normal call volume.", "ivr"),
        ("Hold on, go ahead.", "human"),
        ("Priya here, are you after someone in particular?", "human"),
        ("", "unknown"),
        ("the weather is nice today", "unknown"),
    ],
)
def test_phrase_model(text: str, label: str) -> None:
    assert classify_transcript(text).label == label


def test_carrier_greeting_with_press_one_is_still_voicemail() -> None:
    text = "555 0100 is not available. At the tone, record your message, or press 1 for options."
    verdict = classify_transcript(text)
    assert verdict.label == "voicemail" and verdict.scores["ivr"] > 0


async def test_voicemail_detector_uses_the_llm_answer_and_calls_back() -> None:
    seen = []

    async def on_voicemail(verdict: object) -> None:
        seen.append(verdict)

    llm = FakeLLM([Reply("voicemail")])
    vmd = VoiceMailDetector(llm, on_voicemail, duration=2.0)
    verdict = await vmd.classify("Hello, this is Sam.")  # the phrase model would say human
    assert (verdict.label, verdict.source) == ("voicemail", "llm")
    assert seen == [verdict]
    ctx = llm.requests[0][0]
    assert "Hello, this is Sam." in ctx.messages()[-1].content


async def test_voicemail_detector_custom_prompt() -> None:
    llm = FakeLLM([Reply("human")])
    vmd = VoiceMailDetector(llm, None, custom_prompt="Say human or voicemail.")
    assert (await vmd.classify("leave a message")).label == "human"
    assert llm.requests[0][0].messages()[0].content == "Say human or voicemail."


@pytest.mark.parametrize(
    "reply",
    [
        Reply(error=APIError("down", provider="fake")),
        Reply("no idea, sorry"),
        Reply("x", delay_s=1),
    ],
)
async def test_voicemail_detector_falls_back_to_phrases(reply: Reply) -> None:
    vmd = VoiceMailDetector(FakeLLM([reply]), None, timeout_s=0.2)
    verdict = await vmd.classify("Please leave a message after the tone.")
    assert (verdict.label, verdict.source) == ("voicemail", "phrases")


# -- the detector on synthesised calls -------------------------------------------------


@pytest.fixture(scope="module")
def vad() -> SileroVAD:
    return SileroVAD(sample_rate=8000)


@pytest.fixture(scope="module")
def stt() -> WhisperSTT:
    return WhisperSTT()


async def say(text: str, voice: str = "en-us", wpm: int = 170) -> PCM16:
    audio, rate = await espeak.synthesize(text, voice=voice, words_per_minute=wpm)
    out = resample(audio, rate, RATE).astype(np.float64)
    voiced = np.flatnonzero(np.abs(out) > 64)  # espeak pads with silence: trim it
    return np.round(out[voiced[0] : voiced[-1] + 1] * 0.5).astype(np.int16)


def call(*parts: PCM16, noise_seed: int = 1) -> PCM16:
    x = np.concatenate(parts)
    noise = white_noise(len(x) * 1000 / RATE, RATE, level_dbfs=-55.0, seed=noise_seed)
    return (x.astype(np.int32) + noise[: len(x)]).clip(-32768, 32767).astype(np.int16)


async def run(
    det: AnsweringMachineDetector, audio: PCM16, *, early: PCM16 | None = None
) -> list[AMDResult]:
    results: list[AMDResult] = []
    step = RATE // 50
    if early is not None:
        for i in range(0, len(early), step):
            frame = AudioFrame(early[i : i + step], RATE, flags=frozenset({"early"}))
            assert await det.push_frame(frame) == []
    for i in range(0, len(audio), step):
        results += await det.push_frame(AudioFrame(audio[i : i + step], RATE))
        results += await det.settle()
    await det.aclose()
    return results


async def test_hello_then_silence_is_human_quickly(vad: SileroVAD) -> None:
    audio = call(silence(400, RATE), await say("Hello?"), silence(4000, RATE))
    results = await run(AnsweringMachineDetector(vad), audio)
    assert results[0].label == "human" and results[0].decision_ms < 2500
    assert [r.label for r in results] == ["human"]


async def test_early_media_does_not_start_the_clock(vad: SileroVAD) -> None:
    audio = call(silence(400, RATE), await say("Hello?"), silence(3000, RATE))
    plain = await run(AnsweringMachineDetector(vad), audio)
    det = AnsweringMachineDetector(vad)
    early = await run(det, audio, early=ringback(4000, RATE))
    assert early[0].label == plain[0].label == "human"
    assert early[0].decision_ms == plain[0].decision_ms < 2500
    assert det.early_ms == pytest.approx(4000) and early[0].beep_ms is None


async def test_hello_then_beep_is_revised_to_voicemail(vad: SileroVAD) -> None:
    hello = await say("Hi, it's Dana.")
    audio = call(
        silence(300, RATE), hello, silence(1500, RATE), beep(1400, 600, RATE, -12),
        silence(2000, RATE),
    )  # fmt: skip
    beep_at = 300 + len(hello) * 1000 / RATE + 1500
    results = await run(AnsweringMachineDetector(vad), audio)
    labels = [(r.label, r.event) for r in results]
    assert labels[0] == ("human", AMDEvent.DECISION)
    assert ("voicemail", AMDEvent.REVISION) in labels
    revision = next(r for r in results if r.event is AMDEvent.REVISION)
    assert revision.revised and revision.reason == "beep"
    assert revision.beep_ms is not None and abs(revision.beep_ms - beep_at) < 100
    assert results[-1].event is AMDEvent.MESSAGE_START
    assert results[-1].message_start_ms is not None
    assert results[-1].message_start_ms >= beep_at + 600


async def test_voicemail_greeting_and_beep(vad: SileroVAD, stt: WhisperSTT) -> None:
    greeting = await say(
        "Hi, you've reached Dana Smith. I can't take your call right now. "
        "Please leave a message after the tone."
    )
    audio = call(silence(500, RATE), greeting, silence(700, RATE), beep(850, 400, RATE, -14),
                 silence(2500, RATE))  # fmt: skip
    beep_at = 500 + len(greeting) * 1000 / RATE + 700
    det = AnsweringMachineDetector(vad, stt)
    results = await run(det, audio)
    final = det.result
    assert final is not None and final.label == "voicemail"
    assert final.beep_ms is not None and abs(final.beep_ms - beep_at) < 100
    assert results[0].label == "voicemail" and results[0].decision_ms < beep_at
    assert det.message_start_ms is not None and det.message_start_ms >= beep_at + 400


async def test_voicemail_without_beep_gives_message_start_after_silence(
    vad: SileroVAD, stt: WhisperSTT
) -> None:
    greeting = await say("You have reached Sam. I am not available. Please leave a message.")
    audio = call(silence(300, RATE), greeting, silence(5000, RATE))
    greeting_end = 300 + len(greeting) * 1000 / RATE
    det = AnsweringMachineDetector(vad, stt, no_beep_silence_ms=2000.0)
    results = await run(det, audio)
    assert det.result is not None and det.result.label == "voicemail"
    assert det.result.beep_ms is None
    start = det.message_start_ms
    assert start is not None and greeting_end + 2000 <= start <= greeting_end + 3000
    assert results[-1].event is AMDEvent.MESSAGE_START
    assert await det.wait_for_message_start(timeout_s=0.1) == start


async def test_receptionist_long_greeting_is_human(vad: SileroVAD, stt: WhisperSTT) -> None:
    greeting = await say(
        "Good afternoon, thank you for calling Riverside Dental, this is Sarah speaking, "
        "how may I help you today?"
    )
    audio = call(silence(300, RATE), greeting, silence(3000, RATE))
    det = AnsweringMachineDetector(vad, stt)
    await run(det, audio)
    assert det.result is not None and det.result.label == "human"
    assert "speaking" in det.result.transcript.lower()


async def test_ivr_menu(vad: SileroVAD, stt: WhisperSTT) -> None:
    menu = await say(
        "Thank you for calling Northwind. For billing, press one. For sales, press two. "
        "To speak with a representative, press zero."
    )
    det = AnsweringMachineDetector(vad, stt)
    await run(det, call(silence(300, RATE), menu, silence(1500, RATE)))
    assert det.result is not None and det.result.label == "ivr"


async def feed_live(
    det: AnsweringMachineDetector, audio: PCM16, transcripts: dict[float, str]
) -> list[AMDResult]:
    """Feeds ``audio`` without settling (as on a live call) and pushes each transcript
    when the audio fed reaches its time (ms)."""
    results: list[AMDResult] = []
    step = RATE // 50
    pending = sorted(transcripts.items())
    for i in range(0, len(audio), step):
        while pending and det.now_ms >= pending[0][0]:
            det.push_transcript(pending.pop(0)[1])
        results += await det.push_frame(AudioFrame(audio[i : i + step], RATE))
        await asyncio.sleep(0)  # lets a classification finish, as a live loop would
    await det.aclose()
    return results


async def test_pushed_transcript_revises_a_human_decided_before_its_words(
    vad: SileroVAD,
) -> None:
    """A short greeting then silence decides human at once, without its transcript; the
    session's transcript ("leave a message") arriving later revises it to voicemail."""
    greeting = await say("Dan. Leave a message.")
    audio = call(silence(300, RATE), greeting, silence(3000, RATE))
    end = 300 + len(greeting) * 1000 / RATE
    det = AnsweringMachineDetector(vad, transcripts="pushed")
    results = await feed_live(det, audio, {end + 1500: "Dan. Leave a message."})
    first, last = results[0], det.result
    assert first.label == "human" and first.decision_ms < end + 1000
    assert "before its words" in first.reason
    assert last is not None and last.label == "voicemail" and last.revised
    assert last.decision_ms >= end + 1500 and "leave a message" in last.transcript.lower()


async def test_pushed_transcripts_are_awaited_for_a_long_greeting(vad: SileroVAD) -> None:
    """A greeting too long for a person's "Hello?" waits for the pushed transcript (the
    detector transcribes nothing itself at a pause); without one it decides on cadence
    once ``pushed_wait_ms`` has passed."""
    text = "Riverside Dental, Sarah speaking, how can I help?"
    greeting = await say(text)
    audio = call(silence(300, RATE), greeting, silence(4000, RATE))
    end = 300 + len(greeting) * 1000 / RATE
    assert end < 4000  # one utterance, over before total_analysis_ms
    heard = await feed_live(AnsweringMachineDetector(vad, transcripts="pushed"), audio,
                            {end + 900: text})  # fmt: skip
    assert [r.label for r in heard] == ["human"] and heard[0].reason == "transcript"
    assert heard[0].decision_ms >= end + 900
    silent = await feed_live(
        AnsweringMachineDetector(vad, transcripts="pushed", pushed_wait_ms=1000), audio, {}
    )
    assert silent[0].decision_ms >= end + 1000  # waited for words that never came


def test_transcripts_option_is_checked(vad: SileroVAD) -> None:
    with pytest.raises(ValueError, match="transcripts must be 'stt' or 'pushed'"):
        AnsweringMachineDetector(vad, transcripts="whisper")


async def test_wait_for_message_start_times_out(vad: SileroVAD) -> None:
    det = AnsweringMachineDetector(vad)
    assert await det.wait_for_message_start(timeout_s=0.05) is None
    await det.aclose()


def test_cli_continues_after_an_unreadable_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    good = tmp_path / "beep.wav"
    write_wav(good, call(silence(1000, 16000), beep(1000, 500, 16000), silence(1500, 16000)), 16000)
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"not a wav")
    status = run_amd_cli([str(bad), str(good)], as_json=True)
    out, err = capsys.readouterr()
    assert status == 2 and "bad.wav" in err
    lines = [json.loads(line) for line in out.splitlines()]
    assert len(lines) == 1 and lines[0]["file"] == str(good)
    assert lines[0]["label"] == "voicemail" and abs(lines[0]["beep_ms"] - 1000) < 100
    assert set(lines[0]) >= {"file", "label", "decision_ms", "beep_ms"}
