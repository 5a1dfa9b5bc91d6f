"""Call states and end reasons, and the mapping from SIP status codes (RFC 3261 §21)."""

from __future__ import annotations

from enum import StrEnum


class CallState(StrEnum):
    DIALING = "dialing"  # INVITE sent (outbound) / received (inbound), no provisional yet
    RINGING = "ringing"  # 180 without media
    EARLY_MEDIA = "early_media"  # 183 (or 180) with SDP: audio flows before the answer
    ANSWERED = "answered"  # 200 OK / ACK
    ENDED = "ended"


class EndReason(StrEnum):
    COMPLETED = "completed"  # answered, then hung up by either side
    BUSY = "busy"  # 486, 600
    NO_ANSWER = "no_answer"  # 408, 480, or our ring timeout
    DECLINED = "declined"  # 603
    INVALID_NUMBER = "invalid_number"  # 404, 484, 485, 604
    CONGESTION = "congestion"  # 503, 502, 500, SIP transaction timeout to the trunk
    CANCELLED = "cancelled"  # we hung up before the answer
    FAILED = "failed"  # anything else
    TRANSFERRED = "transferred"  # the call left us through a successful transfer
    REPLACED = "replaced"  # an attended transfer replaced this dialog (RFC 3891)


_BY_CODE: dict[int, EndReason] = {
    486: EndReason.BUSY,
    600: EndReason.BUSY,
    408: EndReason.NO_ANSWER,
    480: EndReason.NO_ANSWER,
    603: EndReason.DECLINED,
    404: EndReason.INVALID_NUMBER,
    484: EndReason.INVALID_NUMBER,
    485: EndReason.INVALID_NUMBER,
    604: EndReason.INVALID_NUMBER,
    487: EndReason.CANCELLED,
    500: EndReason.CONGESTION,
    502: EndReason.CONGESTION,
    503: EndReason.CONGESTION,
    504: EndReason.CONGESTION,
}


def end_reason_for(code: int, *, answered: bool) -> EndReason:
    """End reason of a call whose final SIP status was ``code``.

    A 408 that PJSIP generated itself (the far end never answered the INVITE) is
    congestion, not a callee who did not answer: ``Call`` tells the two apart.
    """
    if answered:
        return EndReason.COMPLETED
    if 200 <= code < 300:
        return EndReason.COMPLETED
    return _BY_CODE.get(code, EndReason.FAILED)
