"""``callfleet call --agent``: a YAML agent (Silero, Whisper, the scripted LLM, Piper)
talks with the test phone, which says one phrase and hangs up. The phrase is made with
Piper: Whisper mishears espeak-ng's voice once it is narrowband (8 kHz G.711)."""

from __future__ import annotations

import asyncio
import functools
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from callfleet.agents.providers.piper import PiperTTS
from callfleet.media.wav import write_wav
from callfleet.sip.testing import PhoneScript
from tests.conftest import PhoneFactory
from tests.fakes.webhook_server import Answer, WebhookServer

pytestmark = pytest.mark.asyncio(loop_scope="session")

#: When the phone starts speaking after the answer (s): after the agent's greeting.
PHRASE_AT_S = 3.0


async def run_cli(*args: str, timeout_s: float = 60) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "callfleet.cli",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout_s)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


@functools.cache
def piper() -> PiperTTS:
    return PiperTTS()  # one voice load for the module


async def phrase_wav(directory: Path, text: str, *, at_s: float) -> str:
    """``text`` spoken ``at_s`` seconds into the WAV file."""
    frames = [frame async for frame in piper().synthesize(text)]
    rate = frames[0].sample_rate
    silence = np.zeros(int(at_s * rate), np.int16)
    path = directory / "phrase.wav"
    write_wav(path, np.concatenate([silence, *(f.samples for f in frames)]), rate)
    return str(path)


def agent_file(directory: Path, book_url: str, *, greeting: str = "immediate") -> Path:
    agent: dict[str, Any] = {
        "name": "cli-test",
        "instructions": "You book appointments for {company}.",
        "first_message": "Hi {first_name}, this is {company}.",
        "variables": {"company": "Acme"},
        "session": {"outbound_greeting": greeting, "user_away_timeout": None},
        "providers": {
            "vad": {"type": "silero", "sample_rate": 8000},
            "stt": {"type": "whisper"},
            "llm": {
                "type": "scripted",
                "script": {
                    "fallback": "Sorry, I didn't catch that.",
                    "intents": [
                        {
                            "name": "confirm",
                            "match": ["yes", "works"],
                            "reply": "Great, {first_name}.",
                            "tool": {"name": "book", "arguments": {"slot": "Tuesday"}},
                            "after_tool": "You are booked, number {result.number}.",
                        }
                    ],
                },
            },
            "tts": {"type": "piper"},
        },
        "tools": [
            {
                "name": "book",
                "description": "Book the slot.",
                "url": book_url,
                "parameters": {"slot": {"type": "string"}},
                "required": ["slot"],
            }
        ],
    }
    path = directory / "agent.yaml"
    path.write_text(yaml.safe_dump(agent))
    return path


async def test_call_with_an_agent_prints_the_transcript_and_metrics(
    phones: PhoneFactory, tmp_path: Path
) -> None:
    wav = await phrase_wav(tmp_path, "Yes, that works for me.", at_s=PHRASE_AT_S)
    phone = await phones(PhoneScript(play=[wav], hangup_after_s=10.0))
    with WebhookServer() as server:
        server.answers["/book"] = Answer.json({"number": "A1"})
        agent = agent_file(tmp_path, server.url("/book"))
        code, out, err = await run_cli(
            "call", phone.uri(), "--agent", str(agent), "--var", "first_name=Sam", "--json"
        )
    assert code == 0, err
    report = json.loads(out)
    assert report["answered"] and report["end_reason"] == "completed"
    assert report["agent"] == "cli-test" and report["close_reason"] == "call_ended"
    assert report["errors"] == []
    transcript = report["transcript"]
    said = [(t["role"], t["content"]) for t in transcript if t["type"] == "message"]
    assert said[0] == ("assistant", "Hi Sam, this is Acme.")
    user = [text for role, text in said if role == "user"]
    assert len(user) == 1 and "works" in user[0].lower(), said
    assert ("assistant", "Great, Sam.") in said
    calls = [t for t in transcript if t["type"] == "function_call"]
    assert [(c["name"], json.loads(c["arguments"])) for c in calls] == [
        ("book", {"slot": "Tuesday"})
    ]
    assert [t["output"] for t in transcript if t["type"] == "function_call_output"] == [
        '{"number": "A1"}'
    ]
    assert server.requests[0].json()["call_id"] == report["call_id"]
    assert len(report["metrics"]) == 1 and report["metrics"][0]["e2e_latency_ms"] > 0


async def test_text_mode_prints_transcript_lines(phones: PhoneFactory, tmp_path: Path) -> None:
    # The callee speaks first ("after_callee"): heard, then greeted, not answered.
    wav = await phrase_wav(tmp_path, "Can you call me back tomorrow?", at_s=0.5)
    phone = await phones(PhoneScript(play=[wav], hangup_after_s=6.5))
    agent = agent_file(tmp_path, "http://127.0.0.1:9/book", greeting="after_callee")
    code, out, err = await run_cli(
        "call", phone.uri(), "--agent", str(agent), "--var", "first_name=Sam"
    )
    assert code == 0, err
    lines = out.splitlines()
    assert "agent: Hi Sam, this is Acme." in lines, out
    assert "user: Can you call me back tomorrow?" in lines, out
    assert not any(line.startswith("agent: Sorry") for line in lines), out
    assert lines[-1].endswith("ended completed (200 Normal call clearing)"), out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--var", "first_name"], "callfleet call: --var must be KEY=VALUE, got 'first_name'"),
        ([], "agent.yaml: first_message: variable 'first_name' is not set"),
        (["--var", "first_name=A", "--play", "x.wav"], "--play and --dtmf cannot be used"),
    ],
)
async def test_bad_agent_input_exits_2_before_dialling(
    phones: PhoneFactory, tmp_path: Path, args: list[str], message: str
) -> None:
    phone = await phones()
    agent = agent_file(tmp_path, "http://127.0.0.1:9/book")
    code, _, err = await run_cli("call", phone.uri(), "--agent", str(agent), *args)
    assert code == 2, err
    assert message in err and len(err.strip().splitlines()) == 1, err
    assert phone.find("incoming") == []


async def test_bad_agent_file_exits_2_with_the_validation_message(
    phones: PhoneFactory, tmp_path: Path
) -> None:
    phone = await phones()
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\ninstructions: hi\nproviders:\n  llm: {type: foo}\n")
    code, _, err = await run_cli("call", phone.uri(), "--agent", str(bad))
    assert code == 2
    assert err.strip() == (
        f"callfleet call: {bad}: providers.llm.type: unknown provider 'foo' "
        "(known: scripted, openai)"
    )
    assert phone.find("incoming") == []
