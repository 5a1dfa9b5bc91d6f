"""One call with no agent, as an operator checking a trunk would place it.

``place_call`` dials, reports progress, plays a WAV file, sends DTMF, records both
sides, holds the call for a while and hangs up; it returns a ``CallReport``. It backs
``callfleet call`` and the loopback demo.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from callfleet.media.wav import read_wav
from callfleet.sip.call import Call, RtpStats
from callfleet.sip.config import Trunk
from callfleet.sip.endpoint import SipEndpoint
from callfleet.sip.errors import SipError
from callfleet.sip.status import CallState

Reporter = Callable[[str], None]


@dataclass
class CallReport:
    call_id: str
    target: str
    answered: bool = False
    end_reason: str | None = None
    sip_code: int | None = None
    sip_reason: str | None = None
    codec: str = ""
    #: Seconds from INVITE to the first provisional / to the answer.
    ring_s: float | None = None
    answer_s: float | None = None
    talk_s: float = 0.0
    early_media: bool = False
    dtmf_sent: str = ""
    dtmf_received: str = ""
    frames_received: int = 0
    rtp: dict[str, Any] = field(default_factory=dict)
    recording: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


async def place_call(
    endpoint: SipEndpoint,
    target: str,
    *,
    trunk: Trunk | None = None,
    caller_id: str | None = None,
    headers: Mapping[str, str] | None = None,
    play: str | None = None,
    record: str | None = None,
    dtmf: str | None = None,
    duration_s: float = 10.0,
    ring_timeout_s: float = 60.0,
    report: Reporter | None = None,
) -> CallReport:
    """Place one call; ``report`` gets a line per event. ``duration_s`` is how long to
    stay on the line after the answer (at least until ``play`` has finished)."""
    say = report or (lambda line: None)
    samples = None
    if play is not None:
        samples, rate = read_wav(play)  # fail on a bad file before dialling
    started = time.monotonic()
    call = await endpoint.dial(
        target, trunk=trunk, caller_id=caller_id, headers=headers, ring_timeout_s=ring_timeout_s
    )
    result = CallReport(call_id=call.id, target=call.remote_uri)
    say(f"{call.id}: dialling {call.remote_uri}")

    def on_state(state: CallState) -> None:
        elapsed = time.monotonic() - started
        if state in (CallState.RINGING, CallState.EARLY_MEDIA) and result.ring_s is None:
            result.ring_s = round(elapsed, 3)
        if state is CallState.EARLY_MEDIA:
            result.early_media = True
        say(f"{call.id}: {state.value} after {elapsed:.2f} s")

    call.on("state", on_state)
    call.on("dtmf", lambda e: say(f"{call.id}: DTMF {e.digit} ({e.method.value})"))
    counter = asyncio.ensure_future(_count_frames(call, result))
    try:
        if await call.wait_answered():
            result.answered = True
            result.answer_s = round(time.monotonic() - started, 3)
            await _talk(
                call,
                result,
                samples,
                rate if samples is not None else 0,
                record,
                dtmf,
                duration_s,
                say,
            )
        await call.wait_ended(10)
    finally:
        if not call.is_ended:
            await call.hangup()
        counter.cancel()
    result.end_reason = call.end_reason.value if call.end_reason else None
    result.sip_code, result.sip_reason = call.sip_code, call.sip_reason
    result.codec = call.codec
    result.talk_s = round(call.duration_s, 3)
    result.dtmf_received = "".join(e.digit for e in call.dtmf_received)
    say(f"{call.id}: ended {result.end_reason} ({result.sip_code} {result.sip_reason})")
    return result


async def _talk(
    call: Call,
    result: CallReport,
    samples: Any,
    rate: int,
    record: str | None,
    dtmf: str | None,
    duration_s: float,
    say: Reporter,
) -> None:
    deadline = time.monotonic() + duration_s
    if record:
        call.start_recording(record)
        result.recording = record
    if samples is not None and call.audio_out is not None:
        call.audio_out.write(samples, rate)
        call.audio_out.finish()
    if dtmf:
        try:
            await call.send_dtmf(dtmf)
            result.dtmf_sent = dtmf
            say(f"{call.id}: sent DTMF {dtmf}")
        except SipError as e:
            say(f"{call.id}: DTMF failed: {e}")
    if samples is not None and call.audio_out is not None:
        await call.audio_out.wait_played()
    try:
        stats: RtpStats = await call.rtp_stats()
        result.rtp = asdict(stats)
    except SipError:
        pass  # the far end hung up meanwhile: no stream left to read
    remaining = deadline - time.monotonic()
    if remaining > 0 and not call.is_ended:
        try:
            await call.wait_ended(remaining)
        except TimeoutError:
            pass  # our time on the line is up: hang up
    if not call.is_ended:
        await call.hangup()


async def _count_frames(call: Call, result: CallReport) -> None:
    async for _ in call.audio_in:
        result.frames_received += 1
