"""Transferring a live call to a human: blind (REFER) and warm (hold, dial, brief, bridge).

``Transferer(session, backend).transfer(target, mode=..., summary=...)`` runs one
transfer of the session's call and returns a ``TransferOutcome``;
``make_transfer_tool(targets)`` is the tool the LLM calls, limited to an allow-list of
named destinations.

The agents package talks to calls only through protocols: the caller's leg is the
session's ``AgentCall``, and everything carrier-specific (REFER, dialling a second leg,
joining two legs' audio) goes through a ``TransferBackend``, which
``callfleet.sip.transfer_backend.SipTransferBackend`` implements for SIP.

**Blind**: REFER the caller to the target (RFC 3515) and follow its NOTIFYs; on success
the carrier hangs our leg up (the session then closes with ``call_ended``). When the
trunk refuses REFER (``fallback_codes``: 403, 405, 420, 501, 603) we dial the target
ourselves and bridge the two legs instead (``fell_back``). Other failures (the REFER
was accepted but the target was busy, no final NOTIFY in time) are told to the caller
and the session goes on.

**Warm**: the caller hears ``hold_message`` and then hold music while we dial the human
on a second leg (``ring_timeout_s``); once they answer they hear the briefing (TTS of
``summary``); then the two legs are bridged and the agent session closes
(``user_requested``: it stops listening and talking, without hanging up). If the human
does not answer, is busy or declines, the music stops, the caller hears
``failure_message`` and the session goes on; if the caller hangs up meanwhile, the
second leg is cancelled (CANCEL while ringing, BYE once answered).

Hold is music played into the caller's own audio, not a SIP hold (re-INVITE with
``a=sendonly``): a SIP hold makes us stop sending, so the caller hears silence unless
their phone plays its own music, it costs a re-INVITE round trip each way that some
trunks handle badly, and the bridge needs the caller's media active anyway.

**Bridged legs**: after a fallback or a warm transfer both legs stay on our endpoint
(two call slots) with their audio joined. When either side hangs up, we hang up the
other: nobody else is left to end it.

While a transfer runs the agent stays quiet: any speech the session creates (a reply to
the caller talking during the hold) is dropped before it plays. Everything we say
during a transfer is synthesized with the running agent's ``tts_node`` and written
straight to the leg's audio, not queued behind the speech that called the tool (which
would wait for the tool: a deadlock).

Session events: ``transfer_started`` (``TransferRequest``) and ``transfer_completed``
(``TransferOutcome``); the history gets a system note with the outcome. A blind transfer
that succeeds ends our leg first, so its ``transfer_completed`` comes after the
session's ``close``.
"""

from __future__ import annotations

import asyncio
import logging
import time
import weakref
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Protocol

import numpy as np

from callfleet.agents.aio import cancel_and_wait
from callfleet.agents.call_io import AgentCall, AudioSink
from callfleet.agents.errors import AgentError
from callfleet.agents.tools import FunctionTool, RunContext, ToolError, build_tool
from callfleet.media.frame import PCM16, AudioFrame
from callfleet.media.tones import silence, sine

if TYPE_CHECKING:
    from callfleet.agents.session import AgentSession

log = logging.getLogger(__name__)

TransferMode = Literal["blind", "warm"]
TRANSFER_MODES: tuple[TransferMode, ...] = ("blind", "warm")

#: SIP codes that mean "this trunk does not do REFER here" (forbidden, method not
#: allowed, bad extension, not implemented, decline): dial and bridge instead.
REFER_FALLBACK_CODES = frozenset({403, 405, 420, 501, 603})
#: How long we wait for the agent's own audio to finish before a transfer speaks (s).
DRAIN_S = 10.0
#: Hold music is topped up to this much queued audio (ms), checked every HOLD_TICK_S.
HOLD_QUEUE_MS = 400.0
HOLD_TICK_S = 0.1


# -- what a transfer needs from the carrier ----------------------------------------------


class ReferResult(Protocol):
    """The final answer to a REFER: the status of the last NOTIFY (RFC 3515 sipfrag),
    or the REFER's own error response."""

    @property
    def status_code(self) -> int: ...

    @property
    def reason(self) -> str: ...


class TransferLeg(AgentCall, Protocol):
    """A second leg dialled for a transfer: an ``AgentCall`` that tells why it ended."""

    #: The final SIP status of an ended leg (486 busy, 603 declined...), else ``None``.
    sip_code: int | None
    sip_reason: str | None


class TransferBackend(Protocol):
    """The carrier side of transfers (``SipTransferBackend`` for SIP)."""

    async def refer(self, call: AgentCall, target: str, *, timeout_s: float) -> ReferResult:
        """Blind-transfer ``call`` to ``target`` and return the final result; a refusal
        is a result (``status_code`` >= 300), not an exception. On success the backend
        has ended ``call``."""
        ...

    async def dial(self, target: str, *, ring_timeout_s: float) -> TransferLeg:
        """Start a call to ``target``; it rings for at most ``ring_timeout_s``."""
        ...

    async def bridge(self, a: AgentCall, b: AgentCall) -> None:
        """Join the audio of two legs both ways."""
        ...

    async def unbridge(self, a: AgentCall, b: AgentCall) -> None: ...


# -- requests and outcomes ------------------------------------------------------------------


@dataclass(frozen=True)
class TransferOptions:
    """How transfers behave. Times in seconds."""

    #: Said to the caller before a warm transfer (or a blind fallback) dials.
    hold_message: str | None = "Please hold while I connect you."
    #: Said to the caller when the transfer did not happen; the session goes on.
    failure_message: str = "I'm sorry, I couldn't reach them right now. How else can I help?"
    #: Said to the caller before a blind REFER; ``None`` (default): nothing.
    blind_message: str | None = None
    #: What the human hears in a warm transfer; ``{summary}`` is the call summary.
    briefing: str = "You have a transferred call. {summary}"
    #: Played to the caller while they wait, looped; ``None``: silence.
    #: Default: a soft three-note chime (``default_hold_music``).
    hold_music: AudioFrame | None = field(default_factory=lambda: default_hold_music())
    #: How long the human's phone may ring (default 30 s).
    ring_timeout_s: float = 30.0
    #: How long to wait for the final NOTIFY of a REFER (default 30 s).
    refer_timeout_s: float = 30.0
    #: Longest any one message may take to play (default 30 s).
    speak_timeout_s: float = 30.0
    #: REFER refusals that fall back to dial-and-bridge.
    fallback_codes: frozenset[int] = REFER_FALLBACK_CODES

    def __post_init__(self) -> None:
        for name in ("ring_timeout_s", "refer_timeout_s", "speak_timeout_s"):
            value = getattr(self, name)
            if not value > 0:
                raise ValueError(f"{name} must be positive, got {value}")
        if "{summary}" not in self.briefing:
            raise ValueError(f"briefing must contain {{summary}}, got {self.briefing!r}")


@dataclass(frozen=True)
class TransferRequest:
    """Payload of ``transfer_started``."""

    call_id: str
    mode: TransferMode
    target: str
    #: The allow-list name the LLM chose, when the tool asked.
    destination: str | None
    summary: str


@dataclass
class TransferOutcome:
    """Payload of ``transfer_completed`` and the result of ``Transferer.transfer``."""

    call_id: str
    mode: TransferMode
    target: str
    destination: str | None = None
    #: The caller is now connected to the target (REFER succeeded, or legs bridged).
    ok: bool = False
    #: The final SIP status: the REFER's last NOTIFY, or the human leg's final response.
    status_code: int | None = None
    reason: str = ""
    #: The final status of the REFER (blind transfers), e.g. 200, or 603 when refused.
    refer_code: int | None = None
    #: The REFER was refused and we dialled and bridged instead.
    fell_back: bool = False
    human_answered: bool = False
    #: The human heard the briefing (warm transfers).
    briefed: bool = False
    caller_hung_up: bool = False
    #: Our second leg (dialled for a warm transfer or a fallback), if any.
    human_call_id: str | None = None
    #: The REFER's NOTIFY codes in order (blind transfers).
    notify_codes: list[int] = field(default_factory=list)
    started_at: float = field(default_factory=time.time)
    duration_s: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def default_hold_music(sample_rate: int = 8000) -> AudioFrame:
    """C5-E5-G5 at -24 dBFS, 300 ms each with 100 ms gaps, then 800 ms of silence."""
    parts: list[PCM16] = []
    for hz in (523.25, 659.25, 783.99):
        parts += [sine(hz, 300, sample_rate, amplitude_dbfs=-24.0), silence(100, sample_rate)]
    parts.append(silence(800, sample_rate))
    return AudioFrame(np.concatenate(parts), sample_rate)


def default_summary(session: AgentSession[Any], *, max_chars: int = 300) -> str:
    """What the caller said last, when the LLM gave no summary."""
    said = [m.content for m in session.history.messages() if m.role == "user" and m.content]
    if not said:
        return "No details were given."
    text = " ".join(said)[-max_chars:]
    return f"The caller said: {text}"


# -- the transfer ------------------------------------------------------------------------------


class Transferer:
    """Runs transfers of ``session``'s call (one at a time) through ``backend``."""

    def __init__(
        self,
        session: AgentSession[Any],
        backend: TransferBackend,
        *,
        call: AgentCall | None = None,
        options: TransferOptions | None = None,
    ) -> None:
        """``call`` defaults to the session's call; ``options`` to ``TransferOptions()``."""
        self.session = session
        self.backend = backend
        self._call = call
        self.options = options or TransferOptions()
        self.transfer_task: asyncio.Task[TransferOutcome] | None = None
        self.music_task: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[Any]] = set()

    @property
    def call(self) -> AgentCall:
        call = self._call or self.session.call
        if call is None:
            raise AgentError("the session has no call to transfer")
        return call

    @property
    def busy(self) -> bool:
        return self.transfer_task is not None and not self.transfer_task.done()

    async def aclose(self) -> None:
        """Abandon a running transfer (a dialled human leg is hung up) and wait for it,
        at most 5 s. Bridged legs stay bridged. Idempotent."""
        await cancel_and_wait(self.transfer_task, self.music_task)

    async def transfer(
        self,
        target: str,
        *,
        mode: TransferMode = "blind",
        summary: str | None = None,
        destination: str | None = None,
    ) -> TransferOutcome:
        """Transfer the call to ``target`` (a SIP URI or a number the backend can dial).

        ``summary`` is what the human hears in a warm transfer (default: the caller's own
        words from the history). Runs in its own task, so that closing the session (which
        a successful transfer does) cannot cancel it halfway; cancelling the awaiting
        task does not stop it either. Raises ``AgentError`` if a transfer is running.
        """
        if mode not in TRANSFER_MODES:
            raise ValueError(f"transfer mode must be one of {TRANSFER_MODES}, got {mode!r}")
        if not target:
            raise ValueError("transfer target is empty")
        if self.busy:
            raise AgentError(f"call {self.call.id}: a transfer is already in progress")
        request = TransferRequest(
            call_id=self.call.id,
            mode=mode,
            target=target,
            destination=destination,
            summary=summary or default_summary(self.session),
        )
        self.transfer_task = asyncio.create_task(self._run(request))
        return await asyncio.shield(self.transfer_task)

    async def _run(self, request: TransferRequest) -> TransferOutcome:
        call = self.call
        outcome = TransferOutcome(
            call_id=call.id,
            mode=request.mode,
            target=request.target,
            destination=request.destination,
        )
        started = time.monotonic()
        log.info(
            "call %s %s transfer to %s started",
            call.id,
            request.mode,
            request.target,
            extra=_ids(call),
        )
        self.session.emit("transfer_started", request)

        def quiet(handle: Any) -> None:  # the agent does not talk over a transfer
            handle.interrupt(force=True)

        self.session.on("speech_created", quiet)
        try:
            if call.is_ended:
                outcome.caller_hung_up, outcome.reason = True, "the caller had hung up"
            elif request.mode == "blind":
                await self._blind(call, request, outcome)
            else:
                await self._warm(call, request, outcome)
        except Exception as e:
            outcome.ok = False
            if call.is_ended:  # e.g. the REFER on a call the caller just hung up
                log.info("call %s ended during the transfer: %s", call.id, e, extra=_ids(call))
                outcome.caller_hung_up, outcome.reason = True, "the caller hung up"
            else:
                log.exception("call %s transfer failed", call.id, extra=_ids(call))
                self.session.report_error(e, source="transfer")
                outcome.reason = f"transfer failed: {type(e).__name__}: {e}"
        finally:
            self.session.off("speech_created", quiet)
            await self._stop_music(call)
        if not outcome.ok and not outcome.caller_hung_up and call.is_ended:
            outcome.caller_hung_up = True
        if not outcome.ok and not call.is_ended:
            await self._say_to_caller(call, self.options.failure_message)
        outcome.duration_s = time.monotonic() - started
        self._record(outcome)
        if outcome.ok and outcome.human_call_id is not None:
            # Bridged: the agent leaves; the call itself stays up.
            await self.session.aclose(reason="user_requested")
        return outcome

    def _record(self, outcome: TransferOutcome) -> None:
        how = f"{outcome.mode} transfer to {outcome.destination or outcome.target}"
        if outcome.ok:
            note = (
                f"The call was transferred ({how}{', by dialling' if outcome.fell_back else ''})."
            )
        else:
            note = f"The {how} did not happen: {outcome.reason}."
            if not outcome.caller_hung_up:
                note += " The caller has been told."
        log.info(
            "call %s transfer done: ok=%s status=%s reason=%s",
            outcome.call_id,
            outcome.ok,
            outcome.status_code,
            outcome.reason,
            extra={"call_id": outcome.call_id},
        )
        self.session.add_item_message("system", note)
        self.session.emit("transfer_completed", outcome)

    # -- blind ------------------------------------------------------------------------------

    async def _blind(
        self, call: AgentCall, request: TransferRequest, outcome: TransferOutcome
    ) -> None:
        if self.options.blind_message:
            await self._say_to_caller(call, self.options.blind_message)

        def progress(code: int, reason: str, final: bool) -> None:
            outcome.notify_codes.append(code)

        call.on("transfer_progress", progress)
        try:
            result = await self.backend.refer(
                call, request.target, timeout_s=self.options.refer_timeout_s
            )
        finally:
            call.off("transfer_progress", progress)
        outcome.status_code, outcome.reason = result.status_code, result.reason
        outcome.refer_code = result.status_code
        if 200 <= result.status_code < 300:
            outcome.ok = True
            return
        if call.is_ended:
            outcome.caller_hung_up = True
            return
        if result.status_code not in self.options.fallback_codes:
            return
        log.info(
            "call %s REFER refused (%s): dialling %s to bridge",
            call.id,
            result.status_code,
            request.target,
            extra=_ids(call),
        )
        outcome.fell_back = True
        await self._dial_and_bridge(call, request, outcome, brief=False)

    # -- warm -------------------------------------------------------------------------------

    async def _warm(
        self, call: AgentCall, request: TransferRequest, outcome: TransferOutcome
    ) -> None:
        await self._dial_and_bridge(call, request, outcome, brief=True)

    async def _dial_and_bridge(
        self, call: AgentCall, request: TransferRequest, outcome: TransferOutcome, *, brief: bool
    ) -> None:
        """Hold the caller, dial the human, optionally brief them, bridge."""
        caller_gone = _ended_future(call)
        try:
            await self._drain(call)
            if self.options.hold_message:
                await self._say_to_caller(call, self.options.hold_message)
            if call.is_ended:
                outcome.caller_hung_up, outcome.reason = True, "the caller hung up"
                return
            self._start_music(call)
            human = await self.backend.dial(
                request.target, ring_timeout_s=self.options.ring_timeout_s
            )
            outcome.human_call_id = human.id
            human_gone = _ended_future(human)
            try:
                answered: asyncio.Future[bool] = asyncio.ensure_future(
                    human.wait_answered(self.options.ring_timeout_s + 5.0)
                )
                await _first_of(answered, caller_gone)
                if caller_gone.done():
                    answered.cancel()
                    await self._caller_left(human, outcome)
                    return
                if not answered.result():
                    outcome.status_code = human.sip_code
                    outcome.reason = f"the human did not answer ({_why(human)})"
                    return
                outcome.human_answered = True
                if brief:
                    briefing = self.options.briefing.format(summary=request.summary)
                    speak = asyncio.ensure_future(self._speak(human, briefing))
                    await _first_of(speak, caller_gone, human_gone)
                    if caller_gone.done():
                        speak.cancel()
                        await self._caller_left(human, outcome)
                        return
                    if not speak.done():
                        speak.cancel()
                    else:
                        outcome.briefed = speak.result()
                if human.is_ended:
                    outcome.status_code = human.sip_code
                    outcome.reason = f"the human hung up before the bridge ({_why(human)})"
                    return
                await self._stop_music(call)
                await self.backend.bridge(call, human)
                self._link(call, human)
                outcome.ok, outcome.status_code, outcome.reason = True, 200, "bridged"
            finally:
                human_gone.cancel()
                if not outcome.ok and not human.is_ended:
                    await human.hangup()
        finally:
            caller_gone.cancel()

    async def _caller_left(self, human: TransferLeg, outcome: TransferOutcome) -> None:
        outcome.caller_hung_up = True
        outcome.reason = "the caller hung up during the transfer"
        log.info(
            "call %s: caller hung up, cancelling %s",
            outcome.call_id,
            human.id,
            extra={"call_id": outcome.call_id},
        )
        if not human.is_ended:
            await human.hangup()

    def _link(self, a: AgentCall, b: AgentCall) -> None:
        """When either bridged leg ends, hang up the other."""

        def follow(other: AgentCall) -> Callable[..., None]:
            def ended(*_: Any) -> None:
                if not other.is_ended:
                    self._spawn(other.hangup())

            return ended

        a.on("ended", follow(b))
        b.on("ended", follow(a))
        if a.is_ended or b.is_ended:  # one ended before we listened
            follow(b if a.is_ended else a)()

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- audio ------------------------------------------------------------------------------

    async def _drain(self, call: AgentCall) -> None:
        """Let what the agent is saying finish before we speak."""
        out = call.audio_out
        if out is not None and out.queued_ms > 0:
            try:
                await asyncio.wait_for(out.wait_played(), DRAIN_S)
            except TimeoutError:
                out.clear()

    async def _say_to_caller(self, call: AgentCall, text: str) -> None:
        await self._drain(call)
        if await self._speak(call, text):
            self.session.add_item_message("assistant", text)

    async def _speak(self, leg: AgentCall, text: str) -> bool:
        """Synthesize ``text`` with the agent's TTS node into ``leg``'s audio and wait
        until it played (``speak_timeout_s``); ``False`` if it could not be said."""
        out = leg.audio_out
        if out is None or leg.is_ended:
            return False
        try:
            speaking = self.session.speak_direct(text, call=leg)
            return await asyncio.wait_for(speaking, self.options.speak_timeout_s)
        except asyncio.CancelledError:
            out.clear()
            raise
        except Exception as e:
            out.clear()
            log.warning(
                "call %s: could not say %r on %s: %s",
                self.call.id,
                text,
                leg.id,
                e,
                extra={"call_id": self.call.id},
            )
            self.session.report_error(e, source="transfer")
            return False

    def _start_music(self, call: AgentCall) -> None:
        music = self.options.hold_music
        out = call.audio_out
        if music is None or out is None or len(music.samples) == 0:
            return
        self.music_task = asyncio.create_task(_loop_music(out, music, call))

    async def _stop_music(self, call: AgentCall) -> None:
        task, self.music_task = self.music_task, None
        if task is None:
            return
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        out = call.audio_out
        if out is not None:
            out.clear()


async def _loop_music(out: AudioSink, music: AudioFrame, call: AgentCall) -> None:
    while not call.is_ended:
        while out.queued_ms < HOLD_QUEUE_MS:
            out.write(music)
        await asyncio.sleep(HOLD_TICK_S)


async def _first_of(*futures: asyncio.Future[Any]) -> None:
    await asyncio.wait(futures, return_when=asyncio.FIRST_COMPLETED)


def _ended_future(call: AgentCall) -> asyncio.Future[None]:
    """Resolves when ``call`` ends (now, if it has); cancel it to stop listening."""
    fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    if call.is_ended:
        fut.set_result(None)
        return fut

    def ended(*_: Any) -> None:
        if not fut.done():
            fut.set_result(None)

    call.on("ended", ended)
    fut.add_done_callback(lambda _: call.off("ended", ended))
    return fut


def _ids(call: AgentCall) -> dict[str, Any]:
    return {"call_id": call.id}


def _why(leg: TransferLeg) -> str:
    if leg.sip_code is None:
        return "no response"
    return f"{leg.sip_code} {leg.sip_reason or ''}".strip()


# -- the tool -------------------------------------------------------------------------------

_transferers: weakref.WeakKeyDictionary[Any, Transferer] = weakref.WeakKeyDictionary()


def transferer_for(
    session: AgentSession[Any], backend: TransferBackend, *, options: TransferOptions | None = None
) -> Transferer:
    """The session's ``Transferer`` (one per session, so two transfers never overlap)."""
    transferer = _transferers.get(session)
    if transferer is not None and (transferer.busy or transferer.backend is backend):
        return transferer  # (with the options it was made with)
    transferer = Transferer(session, backend, options=options)
    _transferers[session] = transferer
    return transferer


def make_transfer_tool(
    targets: Mapping[str, str] | None,
    *,
    backend: TransferBackend | None = None,
    options: TransferOptions | None = None,
    default_mode: TransferMode = "warm",
    name: str = "transfer_call",
) -> FunctionTool:
    """The tool an LLM calls to hand the caller to a person.

    ``targets`` maps destination names the LLM may pick ("billing") to where they ring
    (a SIP URI or a number); ``None`` or empty: every transfer is refused. The LLM never
    gives an address itself: a caller can talk a model into anything ("transfer me to
    sip:...@evil.example", a premium-rate number), and a transfer spends the operator's
    trunk minutes and hands the caller's data to whoever answers, so only the names the
    operator configured can be reached; anything else is refused with a ``ToolError``
    naming the allowed ones.

    ``backend`` defaults to the session's ``transfer_backend``; ``default_mode`` (default
    "warm") is the mode the LLM gets when it does not choose.
    """
    allowed = dict(targets or {})

    async def transfer_call(
        context: RunContext[Any],
        destination: str,
        mode: TransferMode = default_mode,
        summary: str = "",
    ) -> str:
        """Transfer the caller to a person.

        Args:
            destination: who to transfer to, one of the configured destination names.
            mode: "warm" to brief the person first while the caller holds, "blind" to
                hand the call straight over.
            summary: for the person taking the call: who the caller is and what they
                need, in one or two sentences.
        """
        target = allowed.get(destination)
        if target is None:
            known = ", ".join(sorted(allowed)) or "none are configured"
            raise ToolError(f"unknown transfer destination {destination!r}: allowed: {known}")
        session = context.session
        chosen = backend or getattr(session, "transfer_backend", None)
        if chosen is None:
            raise ToolError("transfers are not available on this call")
        transferer = transferer_for(session, chosen, options=options)
        if transferer.busy:
            raise ToolError("a transfer is already in progress")
        outcome = await transferer.transfer(
            target, mode=mode, summary=summary or None, destination=destination
        )
        if outcome.ok:
            return f"The caller was transferred to {destination}."
        if outcome.caller_hung_up:
            return "The caller hung up during the transfer."
        return (
            f"The transfer to {destination} failed ({outcome.reason}). The caller has already "
            "been told; do not repeat it. Offer other help or to take a message."
        )

    names = sorted(allowed)
    description = "Transfer the caller to a person. Destinations: " + (
        ", ".join(names) if names else "none configured"
    )
    tool = build_tool(transfer_call, name=name, description=description)
    if names:
        tool.parameters["properties"]["destination"]["enum"] = names
    return tool
