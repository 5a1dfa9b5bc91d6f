"""SDP (RFC 4566) edits: per-trunk codec preference on the audio m-line.

PJSIP's codec priorities are process-wide; a trunk's preference is applied per call by
rewriting the SDP PJSIP created, before it is sent.
"""

from __future__ import annotations

from collections.abc import Sequence

#: Static payload types (RFC 3551) for codecs that need no rtpmap line.
STATIC_PT = {"0": "PCMU", "8": "PCMA", "9": "G722", "3": "GSM", "18": "G729"}
#: Non-audio formats that ride on the audio m-line and are always kept.
KEEP_ALWAYS = {"telephone-event"}


def prefer_codecs(sdp: str, codecs: Sequence[str]) -> str:
    """Keep only ``codecs`` (by encoding name, in that order) plus telephone-event on
    the first audio m-line. An SDP without an audio line or without any of the codecs
    is returned unchanged (the far end answers 488 rather than us sending no codec)."""
    eol = "\r\n" if "\r\n" in sdp else "\n"
    lines = sdp.split(eol)
    m_index = next((i for i, ln in enumerate(lines) if ln.startswith("m=audio ")), None)
    if m_index is None:
        return sdp
    fields = lines[m_index].split(" ")
    if len(fields) < 4:
        raise ValueError(f"malformed SDP m-line: {lines[m_index]!r}")
    payloads = fields[3:]
    names: dict[str, str] = {pt: STATIC_PT.get(pt, "") for pt in payloads}
    section_end = next(
        (i for i in range(m_index + 1, len(lines)) if lines[i].startswith("m=")), len(lines)
    )
    for ln in lines[m_index + 1 : section_end]:
        if ln.startswith("a=rtpmap:"):
            pt, _, rest = ln[len("a=rtpmap:") :].partition(" ")
            if pt in names:
                names[pt] = rest.split("/")[0]
    wanted = [c.upper() for c in codecs]
    chosen = [pt for c in wanted for pt in payloads if names[pt].upper() == c]
    if not chosen:
        return sdp
    kept = chosen + [pt for pt in payloads if names[pt] in KEEP_ALWAYS]
    dropped = set(payloads) - set(kept)
    lines[m_index] = " ".join([*fields[:3], *kept])
    out = []
    for i, ln in enumerate(lines):
        if m_index < i < section_end and ln.startswith(("a=rtpmap:", "a=fmtp:", "a=rtcp-fb:")):
            pt = ln.split(":", 1)[1].split(" ", 1)[0]
            if pt in dropped:
                continue
        out.append(ln)
    return eol.join(out)
