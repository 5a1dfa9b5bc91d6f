"""A tiny raw-socket SIP client for tests: hand-built messages over UDP, a parser, and
RFC 2617 digest authentication (MD5, with or without ``qop=auth``).

It is deliberately dumb (no retransmissions, no transaction layer): tests use it to
poke real SIP servers (kamailio, baresip) and check exact responses.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Self

from callfleet.sip.message import COMPACT_HEADERS

from .ports import HOST


@dataclass
class SipMessage:
    """A parsed SIP request or response."""

    start_line: str
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""
    source: tuple[str, int] | None = None

    @property
    def is_response(self) -> bool:
        return self.start_line.startswith("SIP/2.0 ")

    @property
    def status(self) -> int:
        """Status code of a response (raises ValueError for requests)."""
        if not self.is_response:
            raise ValueError(f"not a response: {self.start_line!r}")
        return int(self.start_line.split(" ", 2)[1])

    @property
    def reason(self) -> str:
        parts = self.start_line.split(" ", 2)
        return parts[2] if len(parts) > 2 else ""

    @property
    def method(self) -> str:
        """Request method, or for a response the method of its CSeq."""
        if self.is_response:
            return self.cseq_method
        return self.start_line.split(" ", 1)[0]

    @property
    def request_uri(self) -> str:
        return self.start_line.split(" ", 2)[1]

    def header(self, name: str) -> str | None:
        """First value of header ``name`` (case-insensitive, compact forms understood)."""
        values = self.header_values(name)
        return values[0] if values else None

    def header_values(self, name: str) -> list[str]:
        key = COMPACT_HEADERS.get(name.lower(), name.lower())
        return [v for n, v in self.headers if COMPACT_HEADERS.get(n.lower(), n.lower()) == key]

    @property
    def call_id(self) -> str:
        return self.header("Call-ID") or ""

    @property
    def cseq(self) -> int:
        return int((self.header("CSeq") or "0 X").split()[0])

    @property
    def cseq_method(self) -> str:
        return (self.header("CSeq") or "0 X").split()[1]

    @property
    def to_tag(self) -> str | None:
        return _param(self.header("To") or "", "tag")

    @property
    def from_tag(self) -> str | None:
        return _param(self.header("From") or "", "tag")

    def text(self) -> str:
        return self.to_bytes().decode(errors="replace")

    def to_bytes(self) -> bytes:
        lines = [self.start_line] + [f"{n}: {v}" for n, v in self.headers]
        return ("\r\n".join(lines) + "\r\n\r\n").encode() + self.body

    def __str__(self) -> str:
        return self.start_line


def _param(header_value: str, name: str) -> str | None:
    m = re.search(rf";\s*{re.escape(name)}=([^;>,\s]+)", header_value)
    return m.group(1) if m else None


def parse_message(data: bytes, source: tuple[str, int] | None = None) -> SipMessage:
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode(errors="replace").split("\r\n")
    headers: list[tuple[str, str]] = []
    for line in lines[1:]:
        if line[:1] in (" ", "\t") and headers:  # folded continuation line
            name, value = headers[-1]
            headers[-1] = (name, value + " " + line.strip())
            continue
        name, _, value = line.partition(":")
        headers.append((name.strip(), value.strip()))
    msg = SipMessage(lines[0], headers, body, source)
    length = msg.header("Content-Length")
    if length is not None and length.isdigit():
        msg.body = body[: int(length)]
    return msg


# -- digest -------------------------------------------------------------------------


def parse_digest_challenge(value: str) -> dict[str, str]:
    """Parse a ``WWW-Authenticate``/``Proxy-Authenticate`` value into its parameters."""
    scheme, _, rest = value.strip().partition(" ")
    if scheme.lower() != "digest":
        raise ValueError(f"not a Digest challenge: {value!r}")
    params: dict[str, str] = {}
    for m in re.finditer(r'([A-Za-z0-9_-]+)\s*=\s*("((?:[^"\\]|\\.)*)"|[^,\s]+)', rest):
        params[m.group(1).lower()] = m.group(3) if m.group(3) is not None else m.group(2)
    return params


def _md5(text: str) -> str:
    return hashlib.md5(text.encode()).hexdigest()


def digest_response(
    *,
    username: str,
    password: str,
    realm: str,
    method: str,
    uri: str,
    nonce: str,
    qop: str | None = None,
    nc: str = "00000001",
    cnonce: str = "",
) -> str:
    """The ``response`` value per RFC 2617 (MD5; ``qop`` None or ``"auth"``)."""
    ha1 = _md5(f"{username}:{realm}:{password}")
    ha2 = _md5(f"{method}:{uri}")
    if qop:
        return _md5(f"{ha1}:{nonce}:{nc}:{cnonce}:{qop}:{ha2}")
    return _md5(f"{ha1}:{nonce}:{ha2}")


def authorization_header(
    challenge: str | dict[str, str],
    *,
    username: str,
    password: str,
    method: str,
    uri: str,
    nc: int = 1,
) -> str:
    """Build the value of an ``Authorization``/``Proxy-Authorization`` header answering
    ``challenge`` (the challenge header value, or its parsed parameters)."""
    params = parse_digest_challenge(challenge) if isinstance(challenge, str) else challenge
    algorithm = params.get("algorithm", "MD5")
    if algorithm.upper() != "MD5":
        raise ValueError(f"unsupported digest algorithm {algorithm!r}")
    realm = params["realm"]
    nonce = params["nonce"]
    qops = [q.strip() for q in params.get("qop", "").split(",") if q.strip()]
    qop = "auth" if "auth" in qops else None
    if qops and qop is None:
        raise ValueError(f"unsupported qop {params['qop']!r}")
    nc_text = f"{nc:08x}"
    cnonce = secrets.token_hex(8)
    resp = digest_response(
        username=username,
        password=password,
        realm=realm,
        method=method,
        uri=uri,
        nonce=nonce,
        qop=qop,
        nc=nc_text,
        cnonce=cnonce,
    )
    parts = [
        f'username="{username}"',
        f'realm="{realm}"',
        f'nonce="{nonce}"',
        f'uri="{uri}"',
        f'response="{resp}"',
        "algorithm=MD5",
    ]
    if "opaque" in params:
        parts.append(f'opaque="{params["opaque"]}"')
    if qop:
        parts += [f"qop={qop}", f"nc={nc_text}", f'cnonce="{cnonce}"']
    return "Digest " + ", ".join(parts)


# -- UDP client ---------------------------------------------------------------------


def new_branch() -> str:
    return "z9hG4bK" + secrets.token_hex(8)


def new_tag() -> str:
    return secrets.token_hex(6)


def pcmu_sdp(rtp_port: int, host: str = HOST, session_id: int | None = None) -> bytes:
    """A minimal SDP offer/answer with PCMU (0) and telephone-event (101)."""
    sid = session_id if session_id is not None else int(time.time())
    return (
        "v=0\r\n"
        f"o=- {sid} {sid} IN IP4 {host}\r\n"
        "s=-\r\n"
        f"c=IN IP4 {host}\r\n"
        "t=0 0\r\n"
        f"m=audio {rtp_port} RTP/AVP 0 101\r\n"
        "a=rtpmap:0 PCMU/8000\r\n"
        "a=rtpmap:101 telephone-event/8000\r\n"
        "a=fmtp:101 0-16\r\n"
        "a=ptime:20\r\n"
        "a=sendrecv\r\n"
    ).encode()


class UdpSipClient:
    """A raw SIP endpoint on a UDP socket bound to 127.0.0.1 (random port)."""

    def __init__(self, host: str = HOST, port: int = 0, user: str = "tester") -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((host, port))
        self.host, self.port = self.sock.getsockname()[:2]
        self.user = user
        self.received: list[SipMessage] = []

    @property
    def contact(self) -> str:
        return f"<sip:{self.user}@{self.host}:{self.port}>"

    def via(self, branch: str | None = None) -> str:
        return f"SIP/2.0/UDP {self.host}:{self.port};rport;branch={branch or new_branch()}"

    def send(self, msg: SipMessage | bytes | str, dest: tuple[str, int]) -> None:
        data = msg.to_bytes() if isinstance(msg, SipMessage) else msg
        if isinstance(data, str):
            data = data.encode()
        self.sock.sendto(data, dest)

    def recv(self, timeout_s: float = 2.0) -> SipMessage | None:
        """Next message received within ``timeout_s`` (None on timeout)."""
        self.sock.settimeout(max(timeout_s, 0.001))
        try:
            data, src = self.sock.recvfrom(65535)
        except TimeoutError:
            return None
        msg = parse_message(data, src)
        self.received.append(msg)
        return msg

    def wait_for(
        self,
        predicate: Callable[[SipMessage], bool] | None = None,
        *,
        call_id: str | None = None,
        method: str | None = None,
        final: bool = False,
        requests: bool = False,
        timeout_s: float = 3.0,
    ) -> SipMessage:
        """Wait for a response (or a request if ``requests``) matching the filters.

        ``final``: skip provisional (1xx) responses. ``method``: CSeq method for
        responses, request method for requests. Raises TimeoutError.
        """
        deadline = time.monotonic() + timeout_s
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(
                    f"no matching SIP message in {timeout_s}s (call_id={call_id}, "
                    f"method={method}, final={final}, requests={requests})"
                )
            msg = self.recv(left)
            if msg is None:
                continue
            if msg.is_response == requests:
                continue
            if call_id is not None and msg.call_id != call_id:
                continue
            if method is not None and msg.method != method:
                continue
            if final and msg.is_response and msg.status < 200:
                continue
            if predicate is not None and not predicate(msg):
                continue
            return msg

    def request(
        self,
        method: str,
        uri: str,
        *,
        from_uri: str,
        to_uri: str,
        call_id: str | None = None,
        cseq: int = 1,
        from_tag: str | None = None,
        to_tag: str | None = None,
        branch: str | None = None,
        extra_headers: list[tuple[str, str]] | None = None,
        body: bytes = b"",
        content_type: str | None = None,
        contact: bool = True,
    ) -> SipMessage:
        """Build (not send) a request."""
        to_value = f"<{to_uri}>" + (f";tag={to_tag}" if to_tag else "")
        headers = [
            ("Via", self.via(branch)),
            ("Max-Forwards", "70"),
            ("From", f"<{from_uri}>;tag={from_tag or new_tag()}"),
            ("To", to_value),
            ("Call-ID", call_id or f"{secrets.token_hex(10)}@{self.host}"),
            ("CSeq", f"{cseq} {method}"),
        ]
        if contact:
            headers.append(("Contact", self.contact))
        headers.append(("User-Agent", "callfleet-tests-rawsip"))
        headers += extra_headers or []
        if body:
            headers.append(("Content-Type", content_type or "application/sdp"))
        headers.append(("Content-Length", str(len(body))))
        return SipMessage(f"{method} {uri} SIP/2.0", headers, body)

    def ack_for(
        self, invite: SipMessage, response: SipMessage, uri: str | None = None
    ) -> SipMessage:
        """ACK for a non-2xx final response (same branch, hop-by-hop)."""
        via = invite.header("Via") or self.via()
        headers = [
            ("Via", via),
            ("Max-Forwards", "70"),
            ("From", invite.header("From") or ""),
            ("To", response.header("To") or ""),
            ("Call-ID", invite.call_id),
            ("CSeq", f"{invite.cseq} ACK"),
            ("Content-Length", "0"),
        ]
        return SipMessage(f"ACK {uri or invite.request_uri} SIP/2.0", headers)

    def in_dialog(
        self, method: str, invite: SipMessage, ok: SipMessage, cseq: int, body: bytes = b""
    ) -> SipMessage:
        """A request within the dialog set up by ``invite`` / its 2xx ``ok`` (UAC side).

        Honours the Record-Route set (reversed) and targets the remote Contact.
        """
        contact = ok.header("Contact") or ""
        m = re.search(r"<([^>]+)>", contact)
        target = m.group(1) if m else contact.split(";")[0].strip()
        routes: list[str] = []
        for rr in reversed(ok.header_values("Record-Route")):
            routes += [r.strip() for r in rr.split(",")]
        headers = [
            ("Via", self.via()),
            ("Max-Forwards", "70"),
        ]
        headers += [("Route", r) for r in routes]
        headers += [
            ("From", invite.header("From") or ""),
            ("To", ok.header("To") or ""),
            ("Call-ID", invite.call_id),
            ("CSeq", f"{cseq} {method}"),
            ("Contact", self.contact),
        ]
        if body:
            headers.append(("Content-Type", "application/sdp"))
        headers.append(("Content-Length", str(len(body))))
        return SipMessage(f"{method} {target} SIP/2.0", headers, body)

    def next_hop(self, msg: SipMessage, default: tuple[str, int]) -> tuple[str, int]:
        """Where to send an in-dialog request: the first Route (if any), else ``default``."""
        route = msg.header("Route")
        if route:
            m = re.search(r"sip:(?:[^@>]*@)?([^:;>]+)(?::(\d+))?", route)
            if m:
                return m.group(1), int(m.group(2) or 5060)
        return default

    def reply(
        self,
        req: SipMessage,
        status: int,
        reason: str,
        *,
        to_tag: str | None = None,
        extra_headers: list[tuple[str, str]] | None = None,
        body: bytes = b"",
    ) -> SipMessage:
        """Build a response to ``req`` (copies Via, From, To(+tag), Call-ID, CSeq)."""
        to_value = req.header("To") or ""
        if to_tag and "tag=" not in to_value:
            to_value += f";tag={to_tag}"
        headers = [("Via", v) for v in req.header_values("Via")]
        headers += [("Record-Route", v) for v in req.header_values("Record-Route")]
        headers += [
            ("From", req.header("From") or ""),
            ("To", to_value),
            ("Call-ID", req.call_id),
            ("CSeq", req.header("CSeq") or ""),
        ]
        headers += extra_headers or []
        if body:
            headers.append(("Content-Type", "application/sdp"))
        headers.append(("Content-Length", str(len(body))))
        return SipMessage(f"SIP/2.0 {status} {reason}", headers, body)

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def options_ping(host: str, port: int, timeout_s: float = 1.0) -> SipMessage | None:
    """Send one OPTIONS over UDP to ``host:port``; return the first response or None."""
    with UdpSipClient() as client:
        req = client.request(
            "OPTIONS",
            f"sip:{host}:{port}",
            from_uri="sip:probe@invalid.test",
            to_uri=f"sip:{host}:{port}",
        )
        client.send(req, (host, port))
        try:
            return client.wait_for(call_id=req.call_id, timeout_s=timeout_s)
        except TimeoutError:
            return None
