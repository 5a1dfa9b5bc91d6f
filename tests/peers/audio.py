"""Raw RTP packets for peer tests (no external dependencies).

For the audio in them use ``callfleet.media``: ``g711`` (PCMU/PCMA), ``tones``,
``analysis`` (tone detection), ``mix.rms_dbfs`` and ``wav``.
"""

from __future__ import annotations

import struct


def rtp_packet(
    payload: bytes, seq: int, timestamp: int, ssrc: int, pt: int = 0, marker: bool = False
) -> bytes:
    """A plain RTP packet (version 2, no CSRC/extension)."""
    return (
        struct.pack(
            "!BBHII", 0x80, (0x80 if marker else 0) | pt, seq & 0xFFFF, timestamp & 0xFFFFFFFF, ssrc
        )
        + payload
    )


def rtp_payload(packet: bytes) -> tuple[int, bytes]:
    """(payload type, payload) of an RTP packet (skips CSRCs and a header extension)."""
    if len(packet) < 12:
        raise ValueError("short RTP packet")
    cc = packet[0] & 0x0F
    offset = 12 + 4 * cc
    if packet[0] & 0x10:
        ext_len = struct.unpack("!H", packet[offset + 2 : offset + 4])[0]
        offset += 4 + 4 * ext_len
    return packet[1] & 0x7F, packet[offset:]
