"""What answers a campaign's calls, per agent config.

An agent config whose definition has ``instructions`` is a voice agent
(``callfleet.agents.config.AgentDefinition``: the full pipeline). One with only a
``greeting_wav`` is a playback agent: it plays a recorded message, listens for DTMF
and hangs up after ``max_duration_s`` (announcements, recorded reminders).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from callfleet.media.wav import read_wav
from callfleet.sip.call import Call


@dataclass(frozen=True)
class PlaybackAgentConfig:
    greeting_wav: str | None = None
    max_duration_s: float = 30.0

    @classmethod
    def from_definition(cls, definition: dict[str, Any]) -> PlaybackAgentConfig:
        unknown = set(definition) - {"greeting_wav", "max_duration_s"}
        if unknown:
            raise ValueError(
                f"playback agent does not know {sorted(unknown)} (a voice agent needs "
                "'instructions')"
            )
        config = cls(**definition)
        if config.max_duration_s <= 0:
            raise ValueError(f"max_duration_s must be positive, got {config.max_duration_s}")
        return config


@dataclass(frozen=True)
class VoiceAgentConfig:
    """A voice agent for one call: the config's definition and the call's variables."""

    config_id: str
    definition: dict[str, Any]
    variables: dict[str, Any] = field(default_factory=dict)


AgentPlan = PlaybackAgentConfig | VoiceAgentConfig


def agent_plan(
    config_id: str, definition: dict[str, Any], variables: dict[str, Any] | None = None
) -> AgentPlan:
    if "instructions" in definition:
        return VoiceAgentConfig(config_id, definition, dict(variables or {}))
    return PlaybackAgentConfig.from_definition(definition)


async def run_playback_agent(call: Call, config: PlaybackAgentConfig) -> None:
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
