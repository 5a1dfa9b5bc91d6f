"""Call targets: SIP URIs (RFC 3261 §19.1) and dialable numbers, validated before any packet."""

from __future__ import annotations

import re
from dataclasses import dataclass

_SIP_URI = re.compile(
    r"^(?P<scheme>sips?):"
    r"(?:(?P<user>[A-Za-z0-9\-_.!~*'()&=+$,;?/%]+)(?::[^@\s]*)?@)?"
    r"(?P<host>[A-Za-z0-9](?:[A-Za-z0-9\-.]*[A-Za-z0-9])?|\[[0-9A-Fa-f:.]+\])"
    r"(?::(?P<port>\d{1,5}))?"
    r"(?P<params>(?:;[A-Za-z0-9\-_.!~*'()%]+(?:=[A-Za-z0-9\-_.!~*'()%\[\]/:&+$]+)?)*)"
    r"(?:\?(?P<headers>\S*))?$"
)
_NUMBER = re.compile(r"^\+?[0-9*#]{1,32}$")
_NUMBER_SEPARATORS = str.maketrans("", "", " -().")
_HOSTPORT = re.compile(
    r"^(?:[A-Za-z0-9](?:[A-Za-z0-9\-.]*[A-Za-z0-9])?|\[[0-9A-Fa-f:.]+\])(?::\d{1,5})?$"
)


@dataclass(frozen=True, slots=True)
class SipUri:
    scheme: str
    user: str | None
    host: str
    port: int | None
    params: str = ""  # ";transport=tcp;user=phone" verbatim
    headers: str = ""

    @classmethod
    def parse(cls, text: str) -> SipUri:
        """Parse ``sip:user@host:port;params``; angle brackets and a display name are
        accepted (``"Bob" <sip:bob@example.com>``)."""
        raw = text.strip()
        if "<" in raw and raw.endswith(">"):
            raw = raw[raw.index("<") + 1 : -1]
        m = _SIP_URI.match(raw)
        if not m:
            raise ValueError(f"invalid SIP URI: {text!r}")
        port = int(m["port"]) if m["port"] else None
        if port is not None and not 0 < port < 65536:
            raise ValueError(f"invalid SIP URI: {text!r} (port {port} out of range)")
        return cls(m["scheme"], m["user"], m["host"], port, m["params"] or "", m["headers"] or "")

    def __str__(self) -> str:
        user = f"{self.user}@" if self.user else ""
        port = f":{self.port}" if self.port else ""
        headers = f"?{self.headers}" if self.headers else ""
        return f"{self.scheme}:{user}{self.host}{port}{self.params}{headers}"

    def with_transport(self, transport: str) -> SipUri:
        if transport == "udp" or ";transport=" in self.params.lower():
            return self
        return SipUri(
            self.scheme, self.user, self.host, self.port, f"{self.params};transport={transport}"
        )


def normalise_number(text: str) -> str:
    """``"+1 (555) 010-2000"`` → ``"+15550102000"``; ``ValueError`` names a bad number."""
    compact = text.strip().translate(_NUMBER_SEPARATORS)
    if not _NUMBER.match(compact):
        raise ValueError(f"invalid phone number or SIP URI: {text!r}")
    return compact


def validate_hostport(value: str, field: str) -> str:
    if not _HOSTPORT.match(value):
        raise ValueError(f"{field} must be host[:port], got {value!r}")
    return value


def target_uri(to: str, *, host: str | None, transport: str = "udp") -> SipUri:
    """The Request-URI for dialling ``to``: a SIP URI as given, or a number sent to
    ``host`` (the trunk). A bare number without a trunk host is an error."""
    text = to.strip()
    if text.lower().startswith(("sip:", "sips:")) or "<" in text:
        return SipUri.parse(text)
    number = normalise_number(text)
    if host is None:
        raise ValueError(f"cannot dial number {to!r} without a trunk (give a SIP URI or a trunk)")
    return SipUri.parse(f"sip:{number}@{host}").with_transport(transport)
