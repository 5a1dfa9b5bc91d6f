"""DTMF in the agent: digits the callee presses, and digits the agent sends.

Receiving: the call reports RFC 4733 (RTP telephone-event) and SIP INFO digits as
``dtmf`` events; carriers that only send tones in the audio are heard by the in-band
detector (``callfleet.media.dtmf_detect``) when ``inband_dtmf`` is on. Each digit
becomes a ``dtmf_received`` session event (``DtmfReceived``), goes to a running
``collect_digits`` if there is one, else (with ``dtmf_to_llm``) into the LLM's
context as a user message once the caller pauses or presses ``#``.
``DTMFHandler(callback)`` calls ``callback(digit)`` for each digit, as in VideoSDK.

Sending: ``send_dtmf_tool()`` gives the LLM a ``send_dtmf(digits)`` tool. Digits go
out one at a time (``tone_ms`` of tone, ``gap_ms`` of quiet), only after the agent's
voice has played out, and the agent's voice is held while they go; a cooldown between
sends and a cap per send and per call refuse a flood with a ``ToolError`` the LLM
reads.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from callfleet.agents.tools import FunctionTool, RunContext, ToolError, build_tool
from callfleet.media.dtmf_detect import DtmfDetector
from callfleet.media.frame import AudioFrame

if TYPE_CHECKING:
    from callfleet.agents.session import AgentSession
    from callfleet.agents.speech import SpeechHandle

log = logging.getLogger(__name__)

#: Keys a DTMF digit may be (ITU-T Q.23).
DTMF_KEYS = frozenset("0123456789*#ABCD")
#: With ``dtmf_to_llm``: quiet after the last digit before the digits go to the LLM (s).
DTMF_TO_LLM_IDLE_S = 2.0
#: ... or this key sends them at once (it is included).
DTMF_TO_LLM_TERMINATOR = "#"

#: Longest a ``collect_digits`` prompt may play before its timeouts start anyway (s).
PROMPT_MAX_S = 60.0

DtmfMethodName = Literal["rfc4733", "sip_info", "inband"]
CollectReason = Literal["count", "terminator", "timeout", "closed"]


@dataclass(frozen=True, slots=True)
class DtmfReceived:
    """One digit the callee pressed (payload of the ``dtmf_received`` session event)."""

    digit: str
    #: ``rfc4733``, ``sip_info`` or ``inband``.
    method: DtmfMethodName
    #: Length of the key press (ms), when the carrier reports it.
    duration_ms: float | None
    #: ``time.perf_counter()`` when the session got it.
    received_at: float


@dataclass(frozen=True, slots=True)
class DigitsResult:
    """What ``collect_digits`` gathered (without the terminator) and why it stopped."""

    digits: str
    reason: CollectReason


class DTMFHandler:
    """``DTMFHandler(callback)``: ``callback(digit)`` (plain or ``async``) for every digit
    the callee presses, as VideoSDK's ``DTMFHandler``. Pass it as
    ``AgentSession(dtmf_handler=...)`` or call ``attach(session)``."""

    def __init__(self, callback: Callable[[str], Any]) -> None:
        if not callable(callback):
            raise TypeError(f"DTMFHandler callback must be callable, got {callback!r}")
        self.callback = callback

    def attach(self, session: AgentSession[Any]) -> None:
        session.on("dtmf_received", self._on_digit)

    def _on_digit(self, event: DtmfReceived) -> Any:
        return self.callback(event.digit)  # an awaitable runs as a task of the emitter


# -- sending ------------------------------------------------------------------------------


class DtmfSender:
    """Sends digits on a session's call, paced and rate-limited (one per session:
    ``session.dtmf.sender``; a tool may bring its own).

    Args:
        tone_ms: length of each digit's tone (ms); default 120.
        gap_ms: quiet after each digit (ms); default 280, so one digit every 400 ms.
        cooldown_s: least time from the end of one send to the next (s); default 1.5.
        max_digits_per_send: most digits in one send; default 12.
        max_digits_per_call: most digits over the whole call; default 40.
        drain_timeout_s: longest wait for the agent's voice to play out first (s);
            default 10.
    """

    def __init__(
        self,
        *,
        tone_ms: int = 120,
        gap_ms: int = 280,
        cooldown_s: float = 1.5,
        max_digits_per_send: int = 12,
        max_digits_per_call: int = 40,
        drain_timeout_s: float = 10.0,
    ) -> None:
        if not 40 <= tone_ms <= 5000:
            raise ValueError(f"tone_ms must be 40-5000 ms, got {tone_ms!r}")
        if gap_ms < 40:
            raise ValueError(f"gap_ms must be at least 40 ms, got {gap_ms!r}")
        if cooldown_s < 0 or drain_timeout_s <= 0:
            raise ValueError(
                f"cooldown_s must be >= 0 and drain_timeout_s > 0 seconds, got "
                f"{cooldown_s!r} and {drain_timeout_s!r}"
            )
        if max_digits_per_send < 1 or max_digits_per_call < 1:
            raise ValueError(
                f"max_digits_per_send and max_digits_per_call must be >= 1, got "
                f"{max_digits_per_send!r} and {max_digits_per_call!r}"
            )
        self.tone_ms = tone_ms
        self.gap_ms = gap_ms
        self.cooldown_s = cooldown_s
        self.max_digits_per_send = max_digits_per_send
        self.max_digits_per_call = max_digits_per_call
        self.drain_timeout_s = drain_timeout_s
        self._call_id: str | None = None
        self._sent = 0
        self._last_end: float | None = None
        self._lock = asyncio.Lock()
        #: (digits, perf_counter at start, at end) of each send, for logs and tests.
        self.sends: list[tuple[str, float, float]] = []

    def check(self, digits: str, *, call_id: str) -> str:
        """The digits, normalised, or ``ToolError`` saying why they may not go now."""
        if call_id != self._call_id:
            self._call_id, self._sent, self._last_end = call_id, 0, None
        cleaned = digits.replace(" ", "").replace(",", "").replace("-", "").upper()
        if not cleaned:
            raise ToolError("send_dtmf needs at least one digit (0-9, *, #, A-D)")
        bad = sorted({c for c in cleaned if c not in DTMF_KEYS})
        if bad:
            raise ToolError(f"send_dtmf: {bad} are not DTMF keys; use 0-9, *, # or A-D")
        if len(cleaned) > self.max_digits_per_send:
            raise ToolError(
                f"send_dtmf refused: {len(cleaned)} digits at once; at most "
                f"{self.max_digits_per_send} per send"
            )
        if self._sent + len(cleaned) > self.max_digits_per_call:
            raise ToolError(
                f"send_dtmf refused: the call's limit of {self.max_digits_per_call} digits "
                f"is reached ({self._sent} sent); stop pressing keys"
            )
        if self._last_end is not None:
            since = time.perf_counter() - self._last_end
            if since < self.cooldown_s:
                raise ToolError(
                    f"send_dtmf refused: digits were sent {since:.1f} s ago (cooldown "
                    f"{self.cooldown_s:g} s); wait for the menu's next prompt before "
                    "pressing again"
                )
        return cleaned

    async def send(self, session: AgentSession[Any], digits: str) -> str:
        """Send ``digits`` on the session's call (see the class); returns them as sent."""
        call = session.call
        if call is None or call.is_ended:
            raise ToolError("send_dtmf: the call is not connected")
        async with self._lock:
            cleaned = self.check(digits, call_id=call.id)
            out = call.audio_out
            if out is not None and out.queued_ms > 0:
                try:  # the agent does not talk over its own key presses
                    await asyncio.wait_for(out.wait_played(), self.drain_timeout_s)
                except TimeoutError:
                    session.log.warning("agent audio still queued after %s s", self.drain_timeout_s)
            paused = out is not None
            if out is not None:
                out.pause()
            started = time.perf_counter()
            self._sent += len(cleaned)  # counted even if the call fails half way
            try:
                session.emit("dtmf_sending", cleaned)
                await call.send_dtmf(cleaned, duration_ms=self.tone_ms, gap_ms=self.gap_ms)
            except ValueError as e:
                raise ToolError(f"send_dtmf failed: {e}") from e
            finally:
                if paused and out is not None:
                    out.resume()
                self._last_end = time.perf_counter()
                self.sends.append((cleaned, started, self._last_end))
            session.log.info("sent DTMF %s", cleaned)
            session.emit("dtmf_sent", cleaned)
            return cleaned


def send_dtmf_tool(
    sender: DtmfSender | None = None, *, name: str = "send_dtmf", report: bool = True
) -> FunctionTool:
    """A ``send_dtmf(digits)`` tool for an agent.

    Args:
        sender: whose pacing and limits to use; default the session's
            (``session.dtmf.sender``), shared by every agent on the call.
        name: the tool's name; default ``send_dtmf``.
        report: the tool answers "sent 12" so the LLM speaks again after it; ``False``
            returns nothing and the agent waits for the other side (an IVR's next
            prompt).
    """

    async def send_dtmf(digits: str, context: RunContext[Any]) -> str | None:
        """Press keys on the phone keypad (DTMF), e.g. to choose an option of a phone
        menu. The keys go out one at a time; do not talk while they do.

        Args:
            digits: the keys to press, e.g. "2" or "1234#" (0-9, *, #, A-D)
        """
        chosen = sender if sender is not None else context.session.dtmf.sender
        sent = await chosen.send(context.session, digits)
        return f"sent {sent}" if report else None

    return build_tool(send_dtmf, name=name)


# -- receiving ----------------------------------------------------------------------------


class SessionDtmf:
    """DTMF on one session (``session.dtmf``): received digits from the call and the
    audio, ``collect()``, and the session's ``sender``."""

    def __init__(self, session: AgentSession[Any]) -> None:
        self.session = session
        self.sender = DtmfSender()
        self.received: list[DtmfReceived] = []
        self._detector: DtmfDetector | None = None
        self._out_of_band_seen = False
        self._collectors: list[asyncio.Queue[str | None]] = []
        self._pending = ""  # digits waiting to go to the LLM (dtmf_to_llm)
        self.flush_task: asyncio.Task[None] | None = None

    # -- inputs -----------------------------------------------------------------------

    def on_call_dtmf(self, event: Any) -> None:
        """A ``dtmf`` event of the call (``callfleet.sip.dtmf.DtmfEvent`` or alike:
        ``digit``, ``method``, ``duration_ms``)."""
        method = str(getattr(getattr(event, "method", ""), "value", event.method))
        if method != "inband":
            self._out_of_band_seen = True
        self.receive(event.digit, method, getattr(event, "duration_ms", None))

    def push_audio(self, frame: AudioFrame) -> None:
        """The callee's audio, for in-band tones (when ``inband_dtmf`` is on). Stops
        listening once the carrier sends digits out of band, so none counts twice."""
        if not self.session._options_now.inband_dtmf or self._out_of_band_seen:
            return
        if self._detector is None or self._detector.sample_rate != frame.sample_rate:
            if frame.sample_rate < 8000:
                return
            self._detector = DtmfDetector(frame.sample_rate)
        for tone in self._detector.process(frame.samples):
            self.receive(tone.digit, "inband", round(tone.duration_ms))

    def receive(self, digit: str, method: str, duration_ms: float | None) -> None:
        digit = digit.upper()
        if digit not in DTMF_KEYS:
            self.session.log.warning("ignoring DTMF %r (not a key)", digit)
            return
        name: DtmfMethodName = method if method in ("sip_info", "inband") else "rfc4733"  # type: ignore[assignment]
        event = DtmfReceived(digit, name, duration_ms, time.perf_counter())
        self.received.append(event)
        self.session.log.info("DTMF %s received via %s", digit, name)
        self.session.emit("dtmf_received", event)
        if self._collectors:
            self._collectors[-1].put_nowait(digit)  # the newest collector owns the keys
        elif self.session._options_now.dtmf_to_llm:
            self._to_llm(digit)

    # -- to the LLM -------------------------------------------------------------------

    def _to_llm(self, digit: str) -> None:
        self._pending += digit
        if self.flush_task is not None:
            self.flush_task.cancel()
            self.flush_task = None
        if digit == DTMF_TO_LLM_TERMINATOR:
            self._flush()
        else:
            self.flush_task = asyncio.create_task(self._flush_after(DTMF_TO_LLM_IDLE_S))

    async def _flush_after(self, delay_s: float) -> None:
        await asyncio.sleep(delay_s)
        self.flush_task = None
        self._flush()

    def _flush(self) -> None:
        digits, self._pending = self._pending, ""
        session = self.session
        if not digits or session._closing or not session._stack:
            return
        session.generate_reply(user_input=f"(pressed on the keypad: {digits})")

    # -- collecting -------------------------------------------------------------------

    async def collect(
        self,
        *,
        count: int | None = None,
        terminator: str | None = "#",
        timeout_s: float = 10.0,
        inter_digit_timeout_s: float | None = None,
        after: SpeechHandle | None = None,
    ) -> DigitsResult:
        """See ``collect_digits``; ``after``: the timeouts start once it played."""
        if count is not None and (not isinstance(count, int) or count < 1):
            raise ValueError(f"count must be an integer >= 1 or None, got {count!r}")
        if terminator is not None and terminator not in DTMF_KEYS:
            raise ValueError(f"terminator must be one DTMF key or None, got {terminator!r}")
        if timeout_s <= 0 or (inter_digit_timeout_s is not None and inter_digit_timeout_s <= 0):
            raise ValueError(
                f"timeout_s and inter_digit_timeout_s must be > 0 seconds, got "
                f"{timeout_s!r} and {inter_digit_timeout_s!r}"
            )
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[str | None] = asyncio.Queue()
        self._collectors.append(queue)
        digits = ""
        try:
            if after is not None:
                try:
                    await asyncio.wait_for(after.wait_for_playout(), PROMPT_MAX_S)
                except TimeoutError:
                    self.session.log.warning(
                        "collect_digits prompt still playing after %s s", PROMPT_MAX_S
                    )
            deadline = loop.time() + timeout_s
            while True:
                remaining = deadline - loop.time()
                if digits and inter_digit_timeout_s is not None:
                    remaining = min(remaining, inter_digit_timeout_s)
                if remaining <= 0:
                    return DigitsResult(digits, "timeout")
                try:
                    digit = await asyncio.wait_for(queue.get(), remaining)
                except TimeoutError:
                    return DigitsResult(digits, "timeout")
                if digit is None:
                    return DigitsResult(digits, "closed")
                if terminator is not None and digit == terminator:
                    return DigitsResult(digits, "terminator")
                digits += digit
                if count is not None and len(digits) >= count:
                    return DigitsResult(digits, "count")
        finally:
            self._collectors.remove(queue)

    def close(self) -> None:
        """The session ends: running collections return ``closed``."""
        if self.flush_task is not None:
            self.flush_task.cancel()
            self.flush_task = None
        for queue in self._collectors:
            queue.put_nowait(None)


async def collect_digits(
    session: AgentSession[Any],
    *,
    count: int | None = None,
    terminator: str | None = "#",
    timeout_s: float = 10.0,
    inter_digit_timeout_s: float | None = None,
    prompt: str | None = None,
) -> DigitsResult:
    """Gather the digits the callee presses (e.g. an account number).

    Args:
        session: the running session.
        count: stop after this many digits; default ``None`` (no limit).
        terminator: the key that ends the entry (not included); default ``#``;
            ``None``: none.
        timeout_s: longest wait for the whole entry (s); default 10.
        inter_digit_timeout_s: longest wait between two digits once the first came
            (s); default ``None`` (only ``timeout_s`` applies).
        prompt: said first; the timeouts start when it has played, keys pressed
            while it plays count; default nothing.

    While it runs, digits go to it rather than to the LLM (``dtmf_to_llm``).
    """
    handle = session.say(prompt) if prompt else None
    return await session.dtmf.collect(
        count=count,
        terminator=terminator,
        timeout_s=timeout_s,
        inter_digit_timeout_s=inter_digit_timeout_s,
        after=handle,
    )
