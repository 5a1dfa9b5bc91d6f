"""Live-call commands over Redis: reach the call-host process that owns a call.

A command is published on the owning worker's channel (``cf:calls:<worker_id>``; the
worker is the one whose claim holds the attempt). The host runs it on the call and
pushes the result to the command's reply list, which the sender waits on. JSON both
ways: ``{"id", "attempt_id", "action", "args", "reply_to"}`` → ``{"ok", "error"?}``.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from typing import Any

from redis.asyncio import Redis

#: What a call host can do to a live call.
ACTIONS = ("hangup", "transfer", "dtmf", "say")
REPLY_TTL_S = 60


def channel_of(worker_id: str) -> str:
    return f"cf:calls:{worker_id}"


@dataclass(frozen=True)
class CallCommand:
    attempt_id: str
    action: str
    args: dict[str, Any] = field(default_factory=dict)
    id: str = field(default_factory=lambda: uuid.uuid4().hex)

    @property
    def reply_to(self) -> str:
        return f"cf:reply:{self.id}"

    def to_json(self) -> str:
        return json.dumps(
            {
                "id": self.id,
                "attempt_id": self.attempt_id,
                "action": self.action,
                "args": self.args,
                "reply_to": self.reply_to,
            }
        )

    @classmethod
    def parse(cls, data: bytes | str) -> CallCommand:
        try:
            obj = json.loads(data)
        except json.JSONDecodeError as e:
            raise ValueError(f"call command is not JSON: {e}") from e
        if not isinstance(obj, dict):
            raise ValueError("call command is not a JSON object")
        for key in ("id", "attempt_id", "action"):
            if not isinstance(obj.get(key), str):
                raise ValueError(f"call command has no {key}")
        if obj["action"] not in ACTIONS:
            raise ValueError(f"call command action {obj['action']!r} is unknown")
        args = obj.get("args", {})
        if not isinstance(args, dict):
            raise ValueError("call command args is not an object")
        return cls(obj["attempt_id"], obj["action"], args, obj["id"])


class CommandFailed(Exception):
    pass


async def send_command(
    redis: Redis, worker_id: str, command: CallCommand, *, timeout_s: float = 10.0
) -> dict[str, Any]:
    """Publish ``command`` to ``worker_id`` and wait for its result. Raises
    ``CommandFailed`` when no host listens or the host reports an error, and
    ``TimeoutError`` when no result comes back in time."""
    receivers = await redis.publish(channel_of(worker_id), command.to_json())
    if receivers == 0:
        raise CommandFailed(f"no call host {worker_id} is listening (has it stopped?)")
    reply = await redis.blpop([command.reply_to], timeout=timeout_s)
    if reply is None:
        raise TimeoutError(f"call host {worker_id} did not answer command {command.id}")
    result: dict[str, Any] = json.loads(reply[1])
    if not result.get("ok"):
        raise CommandFailed(str(result.get("error", "command failed")))
    return result


async def reply(redis: Redis, command: CallCommand, result: dict[str, Any]) -> None:
    await redis.rpush(command.reply_to, json.dumps(result))
    await redis.expire(command.reply_to, REPLY_TTL_S)
