"""A SIP call as the asyncio side sees it: state, media, DTMF, transfer, hold, recording.

This is callfleet's call interface: the voice pipeline talks to calls only through
``audio_in``, ``audio_out``, ``send_dtmf``, ``hangup``, transfers and the events
below, so that other carriers (Twilio Media Streams, WebRTC) can implement the same.

Events (``call.on(name, handler)``): ``state`` (CallState), ``media`` (status str),
``dtmf`` (DtmfEvent), ``transfer_progress`` (code, reason, final), ``transfer_request``
(target URI, accepted, new Call or None), ``replaced`` (new Call), ``ended`` (EndReason).
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pjsua2 as pj

from callfleet.events import EventEmitter
from callfleet.media.frame import PCM16, AudioFrame, samples_per_frame
from callfleet.sip.dtmf import PAUSE, PAUSE_MS, DtmfEvent, DtmfMethod, parse_dtmf_string
from callfleet.sip.engine import pj_error
from callfleet.sip.errors import CallStateError, SipError, TransferError
from callfleet.sip.media_port import AudioInput, AudioOutput, StereoRecorder
from callfleet.sip.message import SipMessageHead
from callfleet.sip.status import CallState, EndReason, end_reason_for

if TYPE_CHECKING:
    from callfleet.sip.endpoint import SipEndpoint
    from callfleet.sip.pjcall import PjCall

log = logging.getLogger(__name__)

_PJ_DTMF_METHOD = {
    DtmfMethod.RFC4733: pj.PJSUA_DTMF_METHOD_RFC2833,
    DtmfMethod.SIP_INFO: pj.PJSUA_DTMF_METHOD_SIP_INFO,
}
_DTMF_METHOD_FROM_PJ = {v: k for k, v in _PJ_DTMF_METHOD.items()}
#: Frame flags, shared by every frame (built once, not 50 times a second per call).
_EARLY_FLAGS = frozenset({"early"})
_ANSWERED_FLAGS: frozenset[str] = frozenset()
#: Locally generated reasons PJSIP uses when the far end never answered the INVITE.
_LOCAL_FAILURES = ("Request Timeout", "Service Unavailable", "Transport")


@dataclass(frozen=True, slots=True)
class RtpStats:
    """RTP/RTCP statistics of the call's audio stream (from PJMEDIA)."""

    codec: str
    sample_rate: int
    rx_packets: int
    tx_packets: int
    rx_lost: int
    rx_jitter_ms_mean: float
    rx_jitter_ms_max: float
    frames_in: int
    frames_out: int
    playout_underruns: int
    #: "host:port" of our RTP socket and of the far end's, as negotiated.
    local_rtp: str = ""
    remote_rtp: str = ""


@dataclass(frozen=True, slots=True)
class TransferResult:
    status_code: int
    reason: str

    @property
    def ok(self) -> bool:
        return 200 <= self.status_code < 300


def new_call_id() -> str:
    return "call_" + uuid.uuid4().hex[:20]


class Call(EventEmitter):
    """One call leg. Created by ``SipEndpoint.dial`` or handed to the incoming handler."""

    def __init__(
        self,
        endpoint: SipEndpoint,
        pjcall: PjCall,
        *,
        direction: str,
        remote_uri: str,
        call_id: str | None = None,
        request: SipMessageHead | None = None,
        dtmf_method: DtmfMethod = DtmfMethod.RFC4733,
    ) -> None:
        super().__init__()
        self.id = call_id or new_call_id()
        self.direction = direction
        self.remote_uri = remote_uri
        self.request = request
        self.dtmf_method = dtmf_method
        self.state = CallState.DIALING
        self.end_reason: EndReason | None = None
        self.sip_code: int | None = None
        self.sip_reason: str | None = None
        self.sip_call_id: str | None = None
        self.codec = ""
        self.media_status = "none"
        self.started_at = time.monotonic()
        self.answered_at: float | None = None
        self.ended_at: float | None = None
        self.audio_in = AudioInput(self.id)
        self.audio_out: AudioOutput | None = None
        self.dtmf_received: list[DtmfEvent] = []
        self.log = logging.LoggerAdapter(log, {"call_id": self.id})
        self._endpoint = endpoint
        self._pjcall = pjcall
        pjcall.owner = self
        loop = asyncio.get_running_loop()
        self._answered: asyncio.Future[None] = loop.create_future()
        self._ended: asyncio.Future[EndReason] = loop.create_future()
        self._media_ready: asyncio.Future[None] = loop.create_future()
        self._transfer: asyncio.Future[TransferResult] | None = None
        self._recorder: StereoRecorder | None = None
        self._frames = 0
        self._got_response = False
        self._hangup_reason: EndReason | None = None
        self._timeout_task: asyncio.Task[None] | None = None

    def __repr__(self) -> str:
        return f"<Call {self.id} {self.direction} {self.remote_uri} {self.state}>"

    # -- state ------------------------------------------------------------------------

    @property
    def sample_rate(self) -> int:
        return self.audio_out.sample_rate if self.audio_out else 0

    @property
    def is_ended(self) -> bool:
        return self.state is CallState.ENDED

    @property
    def duration_s(self) -> float:
        """Talk time: from the answer to the end (or now)."""
        if self.answered_at is None:
            return 0.0
        return (self.ended_at or time.monotonic()) - self.answered_at

    async def wait_answered(self, timeout_s: float | None = None) -> bool:
        """``True`` once answered; ``False`` if the call ended unanswered."""
        waiters: list[asyncio.Future[Any]] = [self._answered, self._ended]
        done, _ = await asyncio.wait(
            waiters, timeout=timeout_s, return_when=asyncio.FIRST_COMPLETED
        )
        if not done:
            raise TimeoutError(f"call {self.id} not answered within {timeout_s} s")
        return self._answered.done()

    async def wait_media(self, timeout_s: float = 10.0) -> None:
        """Until audio flows (early media or answer)."""
        await asyncio.wait_for(asyncio.shield(self._media_ready), timeout_s)

    async def wait_ended(self, timeout_s: float | None = None) -> EndReason:
        return await asyncio.wait_for(asyncio.shield(self._ended), timeout_s)

    def _set_state(self, state: CallState) -> None:
        if state is self.state or self.state is CallState.ENDED:
            return
        self.state = state
        self.log.info("call %s %s", self.id, state.value)
        if state is CallState.ANSWERED:
            self.answered_at = time.monotonic()
            _resolve(self._answered, None)
        self.emit("state", state)

    # -- callbacks from the engine thread (posted in order onto the loop) --------------

    def _on_pj_state(self, state: int, code: int, reason: str, sip_call_id: str) -> None:
        self.sip_call_id = sip_call_id or self.sip_call_id
        if code >= 100 and state != pj.PJSIP_INV_STATE_CALLING:
            self._got_response = True
        if state == pj.PJSIP_INV_STATE_EARLY:
            if self.media_status == "active" and self.direction == "outbound":
                self._set_state(CallState.EARLY_MEDIA)
            elif self.direction == "outbound":
                self._set_state(CallState.RINGING)
        elif state == pj.PJSIP_INV_STATE_CONFIRMED:
            # CONFIRMED (ACK sent or received) comes after the SDP answer has set up
            # media, so an answered call always has its audio_out.
            self._set_state(CallState.ANSWERED)
        elif state == pj.PJSIP_INV_STATE_DISCONNECTED:
            self._finish(code, reason)

    def _finish(self, code: int, reason: str) -> None:
        if self.state is CallState.ENDED:
            return
        answered = self.answered_at is not None
        self.sip_code, self.sip_reason = code, reason
        if self._hangup_reason is not None:
            end = self._hangup_reason
        elif not answered and not self._got_response and reason.startswith(_LOCAL_FAILURES):
            end = EndReason.CONGESTION  # the trunk never answered the INVITE at all
        else:
            end = end_reason_for(code, answered=answered)
        if end is EndReason.CONGESTION and not self._got_response:
            self.sip_reason = f"no response from the far end ({reason})"
        self.end_reason = end
        self.ended_at = time.monotonic()
        self.state = CallState.ENDED
        self.audio_in.close()
        if self.audio_out is not None:
            self.audio_out.close()
        if self._recorder is not None:
            self._recorder.close()
            self._recorder = None
        if self._timeout_task is not None:
            self._timeout_task.cancel()
        if self._transfer is not None:
            _resolve(self._transfer, TransferResult(code if code >= 300 else 487, reason))
        self.log.info("call %s ended: %s (%s %s)", self.id, end.value, code, reason)
        _resolve(self._ended, end)
        _fail(self._media_ready, CallStateError(f"call {self.id} ended before media"))
        self.emit("state", CallState.ENDED)
        self.emit("ended", end)
        self._endpoint._forget(self)

    def _on_pj_media(
        self, status: str, output: AudioOutput | None, rate: int, codec: str, early: bool
    ) -> None:
        self.media_status = status
        if output is not None:
            self.audio_out = output
            self.codec = codec or self.codec
            _resolve(self._media_ready, None)
            if early and self.direction == "outbound":
                self._set_state(CallState.EARLY_MEDIA)
        self.emit("media", status)

    def _on_frame(self, data: bytes, sent: PCM16 | None, captured_at: float) -> None:
        rate = self.audio_out.sample_rate if self.audio_out else 8000
        frame_samples = samples_per_frame(rate)
        if len(data) == 2 * frame_samples:
            # Read-only view of the copy the clock thread made: no second copy.
            samples: PCM16 = np.frombuffer(data, np.int16)
        else:  # the tick carried no audio (hold, no RTP yet): keep the timeline whole
            samples = np.zeros(frame_samples, np.int16)
        flags = _ANSWERED_FLAGS if self.answered_at else _EARLY_FLAGS
        frame = AudioFrame(samples, rate, self._frames * len(samples) / rate, flags, captured_at)
        self._frames += 1
        self.audio_in.put(frame)
        if self._recorder is not None:
            self._recorder.write(samples, sent)

    def _on_pj_dtmf(self, digit: str, duration_ms: int, method: int) -> None:
        event = DtmfEvent(
            digit=digit,
            duration_ms=duration_ms if 0 < duration_ms < 0xFFFF else None,
            method=_DTMF_METHOD_FROM_PJ.get(method, DtmfMethod.RFC4733),
            at_s=time.monotonic() - self.started_at,
        )
        self.dtmf_received.append(event)
        self.log.info("call %s dtmf %s via %s", self.id, digit, event.method.value)
        self.emit("dtmf", event)

    def _on_pj_transfer_request(self, target: str, code: int, new: PjCall | None) -> None:
        new_call = None
        if new is not None:
            new_call = self._endpoint._adopt_outbound(new, target)
        self.log.info("call %s REFER to %s answered %s", self.id, target, code)
        self.emit("transfer_request", target, code, new_call)

    def _on_pj_transfer_status(self, code: int, reason: str, final: bool) -> None:
        self.log.info("call %s transfer progress %s %s final=%s", self.id, code, reason, final)
        self.emit("transfer_progress", code, reason, final)
        if final and self._transfer is not None:
            _resolve(self._transfer, TransferResult(code, reason))

    def _on_pj_replaced(self, new: PjCall) -> None:
        new_call = self._endpoint._adopt_replacement(new, self)
        self._hangup_reason = EndReason.REPLACED
        self.emit("replaced", new_call)

    # -- control ----------------------------------------------------------------------

    def _require_live(self, action: str) -> None:
        if self.state is CallState.ENDED:
            raise CallStateError(f"cannot {action}: call {self.id} has ended")

    async def _pj(self, action: str, fn: Any) -> Any:
        pjcall = self._pjcall

        def guarded() -> Any:
            if pjcall.ended or pjcall.destroyed:
                raise CallStateError(f"cannot {action}: call {self.id} has ended")
            return fn()

        try:
            return await self._endpoint.engine.submit(guarded)
        except SipError:
            raise
        except Exception as e:
            raise pj_error(f"call {self.id}: {action} failed", e) from e

    async def answer(self, code: int = 200) -> None:
        """Inbound only: 180 (ring), 183 (early media) or 200 (answer)."""
        self._require_live("answer")
        if self.direction != "inbound":
            raise CallStateError(f"call {self.id} is outbound: only inbound calls are answered")
        if code not in (180, 183, 200):
            raise ValueError(f"answer code must be 180, 183 or 200, got {code}")
        pjcall = self._pjcall

        def do() -> None:
            prm = pj.CallOpParam(True)
            prm.statusCode = code
            pjcall.answer(prm)

        await self._pj(f"answer {code}", do)
        if code == 180:
            self._set_state(CallState.RINGING)
        elif code == 183:
            self._set_state(CallState.EARLY_MEDIA)

    async def ring(self) -> None:
        await self.answer(180)

    async def early_media(self) -> None:
        """183 Session Progress with SDP: ``audio_out`` plays before the answer."""
        await self.answer(183)
        await self.wait_media()

    async def reject(self, code: int = 486) -> None:
        """Inbound, before answering: a final error response (486 busy, 603 decline...)."""
        if not 300 <= code < 700:
            raise ValueError(f"reject code must be 300-699, got {code}")
        if self.answered_at is not None:
            raise CallStateError(f"call {self.id} is answered: hang up instead of rejecting")
        await self.hangup(code)

    async def hangup(self, code: int = 0, *, timeout_s: float = 5.0) -> EndReason | None:
        """End the call: BYE when answered, CANCEL (outbound) or ``code`` (inbound)
        before. Returns the end reason once PJSIP confirms, within ``timeout_s``."""
        if self.state is CallState.ENDED:
            return self.end_reason
        if self._hangup_reason is None and self.answered_at is None:
            if self.direction == "outbound":
                self._hangup_reason = EndReason.CANCELLED
        pjcall = self._pjcall

        def do() -> None:
            prm = pj.CallOpParam(True)
            prm.statusCode = code
            pjcall.hangup(prm)

        try:
            await self._pj("hangup", do)
        except CallStateError:
            pass  # it ended on its own meanwhile; the end is being delivered
        except SipError as e:
            self.log.warning("call %s hangup: %s", self.id, e)
        try:
            return await self.wait_ended(timeout_s)
        except TimeoutError:
            self.log.error("call %s did not end within %s s of hangup", self.id, timeout_s)
            return None

    def _start_ring_timer(self, ring_timeout_s: float) -> None:
        async def timer() -> None:
            await asyncio.sleep(ring_timeout_s)
            if self.answered_at is None and not self.is_ended:
                self._hangup_reason = (
                    EndReason.NO_ANSWER if self._got_response else EndReason.CONGESTION
                )
                self.log.info("call %s ring timeout after %s s", self.id, ring_timeout_s)
                await self.hangup()

        self._timeout_task = asyncio.ensure_future(timer())

    async def send_dtmf(
        self,
        digits: str,
        *,
        method: DtmfMethod | None = None,
        duration_ms: int = 100,
        gap_ms: int = 80,
    ) -> None:
        """Send ``digits`` one at a time, paced (``w`` waits 500 ms). ``method`` defaults
        to the trunk's (RFC 4733 unless configured otherwise)."""
        parsed = parse_dtmf_string(digits)
        if not 40 <= duration_ms <= 5000:
            raise ValueError(f"DTMF duration_ms must be 40-5000, got {duration_ms}")
        chosen = method or self.dtmf_method
        if chosen not in _PJ_DTMF_METHOD:
            raise ValueError(f"cannot send DTMF with method {chosen}")
        self._require_live("send DTMF")
        pjcall = self._pjcall
        for digit in parsed:
            if digit == PAUSE:
                await asyncio.sleep(PAUSE_MS / 1000)
                continue

            def do(d: str = digit) -> None:
                prm = pj.CallSendDtmfParam()
                prm.method = _PJ_DTMF_METHOD[chosen]
                prm.digits = d
                prm.duration = duration_ms
                pjcall.sendDtmf(prm)

            self._require_live("send DTMF")
            await self._pj(f"send DTMF {digit}", do)
            await asyncio.sleep((duration_ms + gap_ms) / 1000)

    async def hold(self) -> None:
        self._require_live("hold")
        pjcall = self._pjcall
        await self._pj("hold", lambda: pjcall.setHold(pj.CallOpParam(True)))

    async def unhold(self) -> None:
        self._require_live("unhold")
        pjcall = self._pjcall

        def do() -> None:
            prm = pj.CallOpParam(True)
            prm.opt.flag = pj.PJSUA_CALL_UNHOLD
            pjcall.reinvite(prm)

        await self._pj("unhold", do)

    async def blind_transfer(self, target: str, *, timeout_s: float = 30.0) -> TransferResult:
        """REFER the far end to ``target`` and follow its NOTIFYs (RFC 3515) to the final
        result. On success this leg is hung up (end reason ``transferred``); a refusal
        (e.g. 403/501/603) raises ``TransferError`` and leaves the call up."""
        uri = str(self._endpoint.resolve_target(target))
        pjcall = self._pjcall
        return await self._transfer_with(
            f"transfer to {uri}", lambda: pjcall.xfer(uri, pj.CallOpParam(True)), timeout_s
        )

    async def attended_transfer(self, other: Call, *, timeout_s: float = 30.0) -> TransferResult:
        """Connect the far end of this call with the far end of ``other`` (REFER with
        Replaces, RFC 3891); both our legs end on success."""
        other._require_live("attended transfer")
        pjcall, other_pj = self._pjcall, other._pjcall
        result = await self._transfer_with(
            f"attended transfer to {other.id}",
            lambda: pjcall.xferReplaces(other_pj, pj.CallOpParam(True)),
            timeout_s,
        )
        if not other.is_ended:
            await other.hangup()
        return result

    async def _transfer_with(self, what: str, fn: Any, timeout_s: float) -> TransferResult:
        self._require_live(what)
        if self._transfer is not None and not self._transfer.done():
            raise CallStateError(f"call {self.id}: a transfer is already in progress")
        self._transfer = asyncio.get_running_loop().create_future()
        await self._pj(what, fn)
        try:
            result = await asyncio.wait_for(asyncio.shield(self._transfer), timeout_s)
        except TimeoutError as e:
            raise TransferError(
                f"call {self.id}: {what} got no final NOTIFY in {timeout_s} s"
            ) from e
        if not result.ok:
            raise TransferError(
                f"call {self.id}: {what} failed: {result.status_code} {result.reason}",
                status=result.status_code,
            )
        if not self.is_ended:
            self._hangup_reason = EndReason.TRANSFERRED
            await self.hangup()
        return result

    def set_refer_response(self, code: int) -> None:
        """How to answer a REFER from the far end: 202 accepts (default), 403/603 refuse."""
        self._pjcall.refer_response = code

    async def rtp_stats(self) -> RtpStats:
        pjcall = self._pjcall
        output = self.audio_out

        def do() -> RtpStats:
            port = pjcall.port
            if port is None or pjcall._media_index < 0:
                raise CallStateError(f"call {self.id} has no audio stream")
            st = pjcall.getStreamStat(pjcall._media_index)
            rx, tx = st.rtcp.rxStat, st.rtcp.txStat
            transport = pjcall.getMedTransportInfo(pjcall._media_index)
            stream = pjcall.getStreamInfo(pjcall._media_index)
            return RtpStats(
                codec=self.codec,
                sample_rate=port.sample_rate,
                rx_packets=int(rx.pkt),
                tx_packets=int(tx.pkt),
                rx_lost=int(rx.loss),
                rx_jitter_ms_mean=float(rx.jitterUsec.mean) / 1000,
                rx_jitter_ms_max=float(rx.jitterUsec.max) / 1000,
                frames_in=port.ticks_in,
                frames_out=port.ticks_out,
                playout_underruns=output.buffer.underruns if output else 0,
                local_rtp=str(transport.localRtpName),
                remote_rtp=str(stream.remoteRtpAddress),
            )

        result: RtpStats = await self._pj("read RTP stats", do)
        return result

    def start_recording(self, path: str) -> None:
        """Record both directions to a stereo WAV (left: far end, right: us)."""
        self._require_live("record")
        if self.audio_out is None:
            raise CallStateError(f"call {self.id} has no media yet to record")
        if self._recorder is not None:
            self._recorder.close()
        self._recorder = StereoRecorder(path, self.audio_out.sample_rate)

    def stop_recording(self) -> None:
        if self._recorder is not None:
            self._recorder.close()
            self._recorder = None

    async def play(self, samples: PCM16 | AudioFrame, sample_rate: int | None = None) -> bool:
        """Queue audio and wait until it has played; ``False`` if interrupted by clear()."""
        if self.audio_out is None:
            await self.wait_media()
        assert self.audio_out is not None
        self.audio_out.write(samples, sample_rate)
        self.audio_out.finish()
        return await self.audio_out.wait_played()


def _resolve(fut: asyncio.Future[Any], value: Any) -> None:
    if not fut.done():
        fut.set_result(value)


def _fail(fut: asyncio.Future[Any], exc: BaseException) -> None:
    if not fut.done():
        fut.set_exception(exc)
        fut.exception()  # nobody may be waiting: mark it retrieved
