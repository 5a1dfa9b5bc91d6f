"""PJSUA2 ``Call`` and ``Account`` subclasses: the engine-thread half of a call.

Everything here runs on the engine thread (see ``engine``). Callbacks read what they
need from PJSUA2 while it is valid and post plain Python values to the loop-side
``Call`` (``owner``). Deliveries are posted in order, and a call's owner is attached
by the first delivery, so no callback is lost while the loop side is being created.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import pjsua2 as pj

from callfleet.media.frame import PCM16
from callfleet.sip.media_port import AudioOutput, CallMediaPort
from callfleet.sip.sdp import prefer_codecs

if TYPE_CHECKING:
    from callfleet.sip.call import Call
    from callfleet.sip.endpoint import SipEndpoint

log = logging.getLogger(__name__)

#: ``pjmedia_stream_dtmf_event.flags`` bit for the end of a digit (pjmedia/stream.h);
#: the binding does not export it.
DTMF_IS_END = 1 << 1

_CONNECTABLE_MEDIA = (
    pj.PJSUA_CALL_MEDIA_ACTIVE,
    pj.PJSUA_CALL_MEDIA_REMOTE_HOLD,
    pj.PJSUA_CALL_MEDIA_LOCAL_HOLD,
)
_MEDIA_STATUS = {
    pj.PJSUA_CALL_MEDIA_NONE: "none",
    pj.PJSUA_CALL_MEDIA_ACTIVE: "active",
    pj.PJSUA_CALL_MEDIA_LOCAL_HOLD: "local_hold",
    pj.PJSUA_CALL_MEDIA_REMOTE_HOLD: "remote_hold",
    pj.PJSUA_CALL_MEDIA_ERROR: "error",
}


class PjAccount(pj.Account):
    """An identity calls are made from; a trunk's account also REGISTERs."""

    def __init__(self, sip: SipEndpoint, name: str) -> None:
        super().__init__()
        self.sip = sip
        self.name = name

    def onIncomingCall(self, prm: Any) -> None:
        self.sip._pj_incoming(self, prm.callId, prm.rdata.wholeMsg, prm.rdata.srcAddress)

    def onRegState(self, prm: Any) -> None:
        self.sip._pj_reg_state(self.name, int(prm.code), str(prm.reason), int(prm.expiration))


class PjCall(pj.Call):
    def __init__(self, sip: SipEndpoint, account: PjAccount, call_id: int | None = None) -> None:
        if call_id is None:
            super().__init__(account)
        else:
            super().__init__(account, call_id)
        self.sip = sip
        self.account = account
        self.owner: Call | None = None
        self.port: CallMediaPort | None = None
        self.output: AudioOutput | None = None
        self._audio_media: Any = None
        self._media_index = -1
        self._conf_slot = -1
        self._last_dtmf: tuple[str, int, int] | None = None
        #: Calls whose audio is bridged with this one (``SipEndpoint.bridge``).
        self.bridged: set[PjCall] = set()
        #: SIP code to answer a REFER with (202 accepts; 403/603 refuse).
        self.refer_response = 202
        #: Codec order for SDP offers/answers we create on this call (trunk preference).
        self.codecs: tuple[str, ...] | None = None
        self.ended = False
        #: Set once the C++ object is destroyed: no PJSUA2 method may be called after.
        self.destroyed = False

    # -- delivery to the loop ---------------------------------------------------------

    def _post(self, name: str, *args: Any) -> None:
        self.sip.engine.to_loop(self._deliver, name, args)

    def _deliver(self, name: str, args: tuple[Any, ...]) -> None:
        owner = self.owner
        if owner is not None:
            getattr(owner, name)(*args)

    def _deliver_frame(self, data: bytes, sent: PCM16 | None, captured_at: float) -> None:
        owner = self.owner
        if owner is not None:
            owner._on_frame(data, sent, captured_at)

    # -- signalling -------------------------------------------------------------------

    def onCallState(self, prm: Any) -> None:
        ci = self.getInfo()
        state = int(ci.state)
        self._post(
            "_on_pj_state", state, int(ci.lastStatusCode), str(ci.lastReason), ci.callIdString
        )
        if state == pj.PJSIP_INV_STATE_DISCONNECTED:
            self.ended = True
            # PJSUA has already removed the call's stream from the bridge, and with it
            # every connection to our port: only the port itself is left to retire.
            self.release_media(disconnect=False)
            for peer in self.bridged:
                peer.bridged.discard(self)
            self.bridged.clear()
            self.sip._pj_call_ended(self)

    def onCallSdpCreated(self, prm: Any) -> None:
        if self.codecs:
            prm.sdp.wholeSdp = prefer_codecs(prm.sdp.wholeSdp, self.codecs)

    def onCallMediaState(self, prm: Any) -> None:
        ci = self.getInfo()
        for mi in ci.media:
            if mi.type != pj.PJMEDIA_TYPE_AUDIO:
                continue
            status = _MEDIA_STATUS.get(mi.status, str(mi.status))
            log.debug(
                "call slot %s media %s, bridge slot %s (ours %s)",
                self.getId(),
                status,
                mi.audioConfSlot,
                self._conf_slot,
            )
            if mi.status in _CONNECTABLE_MEDIA and int(mi.audioConfSlot) >= 0:
                # Every media update may have rebuilt the stream (hold, unhold, codec
                # change) and dropped its bridge connections, even when the slot number
                # is reused, so connect again each time (connecting twice is harmless).
                self._connect_media(mi.index, int(mi.audioConfSlot))
            codec, rate = "", 0
            if self.port is not None:
                rate = self.port.sample_rate
                codec = self._codec_name(mi.index)
            early = ci.state == pj.PJSIP_INV_STATE_EARLY
            self._post("_on_pj_media", status, self.output, rate, codec, early)
            break

    def _codec_name(self, index: int) -> str:
        try:
            return str(self.getStreamInfo(index).codecName)
        except pj.Error:
            return ""

    def _connect_media(self, index: int, conf_slot: int) -> None:
        rate = int(self.getStreamInfo(index).codecClockRate)
        if self.port is not None and self.port.sample_rate != rate:
            self.release_media()  # the codec changed rate: a new port, a new output
        if self.port is None:
            self.output = AudioOutput(rate, self.sip.engine.to_loop)
            port = CallMediaPort(
                rate, self.output.buffer, self._deliver_frame, self.sip.engine.to_loop
            )
            port.create(f"call{self.getId()}")
            self.port = port
        media = self.getAudioMedia(index)
        media.startTransmit(self.port)
        self.port.startTransmit(media)
        for peer in self.bridged:  # a rebuilt stream also lost its bridge to other calls
            peer_media = peer.audio_media()
            if peer_media is not None:
                media.startTransmit(peer_media)
                peer_media.startTransmit(media)
        self._audio_media, self._media_index, self._conf_slot = media, index, conf_slot

    def audio_media(self) -> Any:
        return self._audio_media

    def release_media(self, *, disconnect: bool = True) -> None:
        port, media = self.port, self._audio_media
        self.port = None
        self._audio_media = None
        self._conf_slot = -1
        if port is None:
            return
        if disconnect:
            try:
                port.stopTransmit(media)
                media.stopTransmit(port)
            except pj.Error as e:
                log.warning("call slot %s: disconnecting media failed: %s", self.getId(), e.reason)
        self.sip._pj_retire_port(port)

    # -- DTMF -------------------------------------------------------------------------

    def onDtmfEvent(self, prm: Any) -> None:
        # PJSUA reports RFC 4733 and SIP INFO digits here (and the same INFO digit again
        # to onDtmfDigit, without its duration): report each once, at its end.
        if not prm.flags & DTMF_IS_END:
            return
        # RFC 4733 §2.5.1.4 sends the end of an event three times. PJMEDIA reports it
        # once; the guard keyed by the event's RTP timestamp makes sure a repeated end
        # can never become a second digit.
        event = (str(prm.digit), int(prm.method), int(prm.timestamp))
        if prm.method == pj.PJSUA_DTMF_METHOD_RFC2833 and event == self._last_dtmf:
            return
        self._last_dtmf = event
        self._post("_on_pj_dtmf", event[0], int(prm.duration), event[1])

    # -- transfers --------------------------------------------------------------------

    def onCallTransferRequest(self, prm: Any) -> None:
        code = self.refer_response
        prm.statusCode = code
        if 200 <= code < 300:
            new = PjCall(self.sip, self.account)
            new.codecs = self.codecs
            self.sip._pj_adopt(new)
            prm.newCall = new
            self._post("_on_pj_transfer_request", str(prm.dstUri), code, new)
        else:
            self._post("_on_pj_transfer_request", str(prm.dstUri), code, None)

    def onCallTransferStatus(self, prm: Any) -> None:
        final = bool(prm.finalNotify)
        self._post("_on_pj_transfer_status", int(prm.statusCode), str(prm.reason), final)
        if final:
            prm.cont = False

    def onCallReplaced(self, prm: Any) -> None:
        new = PjCall(self.sip, self.account, int(prm.newCallId))
        new.codecs = self.codecs
        self.sip._pj_adopt(new)
        prm.newCall = new
        self._post("_on_pj_replaced", new)
