"""The minimal agent that answers for campaigns until the voice pipeline lands: it plays
the agent config's greeting (a WAV file), listens for DTMF, and hangs up after
``max_duration_s`` unless the callee hangs up first."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from callfleet.media.wav import read_wav
from callfleet.sip.call import Call


@dataclass(frozen=True)
class MinimalAgentConfig:
    greeting_wav: str | None = None
    max_duration_s: float = 30.0

    @classmethod
    def from_definition(cls, definition: dict[str, Any]) -> MinimalAgentConfig:
        unknown = set(definition) - {"greeting_wav", "max_duration_s"}
        if unknown:
            raise ValueError(f"minimal agent does not know {sorted(unknown)}")
        config = cls(**definition)
        if config.max_duration_s <= 0:
            raise ValueError(f"max_duration_s must be positive, got {config.max_duration_s}")
        return config


async def run_minimal_agent(call: Call, config: MinimalAgentConfig) -> None:
    if config.greeting_wav and call.audio_out is not None:
        samples, rate = read_wav(config.greeting_wav)
        call.audio_out.write(samples, rate)
        call.audio_out.finish()
    try:
        await call.wait_ended(config.max_duration_s)
    except TimeoutError:
        await call.hangup()
    except asyncio.CancelledError:
        await call.hangup()
        raise
