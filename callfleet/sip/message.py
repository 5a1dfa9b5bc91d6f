"""The head of a received SIP message (RFC 3261 §7): start line and header fields.

PJSUA2 hands incoming requests to us as raw text (``SipRxData.wholeMsg``); this reads
the parts callfleet routes on — Request-URI, From, To, custom headers — without
re-implementing a SIP parser for the rest.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from callfleet.sip.uri import SipUri

#: RFC 3261 §7.3.3 compact header names.
COMPACT_HEADERS = {
    "i": "call-id",
    "m": "contact",
    "e": "content-encoding",
    "l": "content-length",
    "c": "content-type",
    "f": "from",
    "s": "subject",
    "k": "supported",
    "t": "to",
    "v": "via",
    "r": "refer-to",
    "b": "referred-by",
}


#: RFC 3261 §25.1 token characters allowed in a header field name.
_TOKEN_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-.!%*_+`'~")


def is_valid_header(name: str, value: str) -> bool:
    """A header we may put on a request: a token name and a value without line breaks
    (which would let a caller inject headers of their own)."""
    return bool(name) and set(name) <= _TOKEN_CHARS and "\r" not in value and "\n" not in value


@dataclass(frozen=True, slots=True)
class SipMessageHead:
    method: str
    request_uri: str
    #: Lower-case full header names; repeated headers keep every value in order.
    headers: dict[str, list[str]] = field(default_factory=dict)

    @classmethod
    def parse(cls, text: str) -> SipMessageHead:
        head = text.replace("\r\n", "\n").split("\n\n", 1)[0]
        lines = head.split("\n")
        start = lines[0].strip()
        parts = start.split(" ")
        if len(parts) != 3 or not parts[2].startswith("SIP/"):
            raise ValueError(f"not a SIP request line: {start[:80]!r}")
        headers: dict[str, list[str]] = {}
        last: str | None = None
        for line in lines[1:]:
            if not line.strip():
                continue
            if line[0] in " \t" and last is not None:  # folded continuation line
                headers[last][-1] += " " + line.strip()
                continue
            name, sep, value = line.partition(":")
            if not sep:
                raise ValueError(f"SIP header line has no colon: {line[:80]!r}")
            key = name.strip().lower()
            key = COMPACT_HEADERS.get(key, key)
            headers.setdefault(key, []).append(value.strip())
            last = key
        return cls(parts[0], parts[1], headers)

    def header(self, name: str) -> str | None:
        values = self.headers.get(name.lower())
        return values[0] if values else None

    def flat_headers(self) -> dict[str, str]:
        return {k: ", ".join(v) for k, v in self.headers.items()}


def uri_user(value: str | None) -> str | None:
    """The user part of a From/To/Request-URI value, or ``None``."""
    if not value:
        return None
    text = value.split(";tag=")[0] if "<" not in value else value[: value.rindex(">") + 1]
    try:
        return SipUri.parse(text).user
    except ValueError:
        return None


def display_name(value: str | None) -> str | None:
    if not value or "<" not in value:
        return None
    name = value[: value.index("<")].strip().strip('"')
    return name or None
