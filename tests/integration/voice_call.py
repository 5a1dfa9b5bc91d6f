"""Helpers for agent tests over real SIP calls: the test phone "speaks" WAV files (tone
bursts or TTS-made speech) on command and records both directions in one stereo WAV
(left: the agent as the phone heard it, right: what the phone said)."""

from __future__ import annotations

import asyncio
import wave
from pathlib import Path
from typing import Any

import numpy as np

from callfleet.agents.agent import Agent
from callfleet.agents.session import AgentSession
from callfleet.media.frame import PCM16
from callfleet.media.tones import sine
from callfleet.media.wav import write_wav
from callfleet.sip.call import Call
from callfleet.sip.endpoint import SipEndpoint
from callfleet.sip.testing import PhoneScript, TestPhone
from tests.conftest import PhoneFactory


def tone_wav(directory: Path, hz: int, ms: float, *, rate: int = 8000) -> str:
    path = directory / f"tone_{hz}_{int(ms)}.wav"
    if not path.exists():
        write_wav(str(path), sine(hz, ms, rate, amplitude_dbfs=-12.0), rate)
    return str(path)


def loud_spans(
    samples: PCM16, rate: int, *, threshold_dbfs: float = -35.0, min_gap_s: float = 0.15
) -> list[tuple[float, float]]:
    """(start_s, end_s) of the stretches louder than ``threshold_dbfs`` in 10 ms steps,
    joining gaps shorter than ``min_gap_s``."""
    step = rate // 100
    n = len(samples) // step
    blocks = samples[: n * step].astype(np.float64).reshape(n, step)
    rms = np.sqrt(np.mean(blocks**2, axis=1))
    loud = 20 * np.log10(np.maximum(rms, 1e-9) / 32768) > threshold_dbfs
    spans: list[tuple[float, float]] = []
    start: int | None = None
    for i, flag in enumerate(loud):
        if flag and start is None:
            start = i
        elif not flag and start is not None:
            spans.append((start / 100, i / 100))
            start = None
    if start is not None:
        spans.append((start / 100, n / 100))
    joined: list[tuple[float, float]] = []
    for span in spans:
        if joined and span[0] - joined[-1][1] < min_gap_s:
            joined[-1] = (joined[-1][0], span[1])
        else:
            joined.append(span)
    return joined


def read_stereo(path: str) -> tuple[PCM16, PCM16, int]:
    """(what the phone heard, what the phone said, rate) from its stereo recording."""
    with wave.open(path, "rb") as w:
        assert w.getnchannels() == 2 and w.getsampwidth() == 2, path
        rate = w.getframerate()
        samples = np.frombuffer(w.readframes(w.getnframes()), "<i2").reshape(-1, 2)
    return samples[:, 0].astype(np.int16), samples[:, 1].astype(np.int16), rate


class VoiceCall:
    """One call from ``endpoint`` to a test phone, with an agent session on our side."""

    def __init__(self, phone: TestPhone, call: Call, session: AgentSession[Any]) -> None:
        self.phone = phone
        self.call = call
        self.session = session
        self.events: list[tuple[str, tuple[Any, ...]]] = []
        self._changed = asyncio.Event()
        for name in (
            "user_state_changed",
            "agent_state_changed",
            "user_input_transcribed",
            "conversation_item_added",
            "function_tools_executed",
            "metrics_collected",
            "agent_false_interruption",
            "close",
            "error",
        ):
            session.on(name, lambda *args, _n=name: self._record(_n, args))

    def _record(self, name: str, args: tuple[Any, ...]) -> None:
        self.events.append((name, args))
        self._changed.set()

    async def _until(self, predicate: Any, timeout_s: float) -> None:
        async def wait() -> None:
            while not predicate():
                self._changed.clear()
                await self._changed.wait()

        await asyncio.wait_for(wait(), timeout_s)

    @classmethod
    async def start(
        cls,
        endpoint: SipEndpoint,
        phones: PhoneFactory,
        record_dir: str,
        session: AgentSession[Any],
        agent: Agent,
        **script: Any,
    ) -> VoiceCall:
        phone = await phones(
            PhoneScript(
                **{"silent": True, "record_dir": record_dir, "record_stereo": True, **script}
            )
        )
        call = await endpoint.dial(phone.uri())
        voice = cls(phone, call, session)
        await session.start(agent, call)
        return voice

    def named(self, name: str) -> list[tuple[Any, ...]]:
        return [args for n, args in self.events if n == name]

    async def say(self, path: str) -> None:
        """The phone says ``path`` (a WAV file) now."""
        await self.phone.send({"cmd": "play", "path": path})
        await self.phone.wait_for("play_started", path=path)

    async def wait_agent_state(self, state: str, timeout_s: float = 10.0) -> None:
        await self._until(lambda: self.session.agent_state == state, timeout_s)

    async def wait_event(self, name: str, count: int = 1, timeout_s: float = 10.0) -> None:
        await self._until(lambda: len(self.named(name)) >= count, timeout_s)

    async def finish(self) -> tuple[PCM16, PCM16, int]:
        """Hang up and return the phone's stereo recording (heard, said, rate)."""
        if not self.call.is_ended:
            await self.call.hangup()
        await self.session.aclose()
        event = await self.phone.wait_for("recorded", timeout_s=10)
        return read_stereo(event["path"])
