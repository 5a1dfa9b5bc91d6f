"""DTMF on calls: methods, received events, and the digit strings callers send."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

#: Characters a DTMF string may hold. ``w`` is a 500 ms pause (as on phone diallers).
DTMF_DIGITS = frozenset("0123456789*#ABCD")
PAUSE = "w"
PAUSE_MS = 500


class DtmfMethod(StrEnum):
    RFC4733 = "rfc4733"  # RTP telephone-event (RFC 4733, formerly RFC 2833)
    SIP_INFO = "sip_info"  # INFO with application/dtmf-relay
    INBAND = "inband"  # tones in the audio (detected by callfleet.media, not by SIP)


@dataclass(frozen=True, slots=True)
class DtmfEvent:
    digit: str
    duration_ms: int | None
    method: DtmfMethod
    #: Seconds since the call started (monotonic clock of the endpoint).
    at_s: float


def parse_dtmf_string(digits: str) -> list[str]:
    """Split ``"12w#"`` into ``["1", "2", "w", "#"]``; raise ``ValueError`` naming a bad
    character. Lowercase a-d are accepted as A-D."""
    if not digits:
        raise ValueError("DTMF string is empty")
    out: list[str] = []
    for i, ch in enumerate(digits):
        if ch == PAUSE:
            out.append(ch)
            continue
        up = ch.upper()
        if up not in DTMF_DIGITS:
            raise ValueError(
                f"DTMF string {digits!r} has invalid character {ch!r} at position {i}; "
                "allowed: 0-9 * # A-D and w (500 ms pause)"
            )
        out.append(up)
    return out
