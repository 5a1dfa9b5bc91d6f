"""Configuration of the SIP endpoint, its transports, and the trunks it calls through."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from types import MappingProxyType

from callfleet.sip.dtmf import DtmfMethod
from callfleet.sip.message import is_valid_header
from callfleet.sip.uri import SipUri, validate_hostport

#: Codecs callfleet negotiates, by SDP encoding name, and the PJSIP codec id for each.
CODEC_IDS: Mapping[str, str] = MappingProxyType(
    {"PCMU": "PCMU/8000/1", "PCMA": "PCMA/8000/1", "G722": "G722/16000/1"}
)


#: What an endpoint offers when not told otherwise, first preferred.
DEFAULT_CODECS = ("PCMU", "PCMA", "G722")


class Transport(StrEnum):
    UDP = "udp"
    TCP = "tcp"
    TLS = "tls"


_TRUNK_URI_PARAMS = ("transport", "register", "codecs", "caller_id", "dtmf", "proxy")


def _as_uri(value: str) -> str:
    """``host[:port]`` or a SIP URI, as a SIP URI."""
    return value if value.lower().startswith(("sip:", "sips:")) else f"sip:{value}"


@dataclass(frozen=True, slots=True)
class TransportSpec:
    """One listening SIP transport.

    ``port`` 0 picks a free port (read back with ``SipEndpoint.transport_port``);
    ``public_address`` is what goes into Via/Contact/SDP when behind NAT.
    """

    kind: Transport = Transport.UDP
    bind_address: str = "0.0.0.0"
    port: int = 5060
    public_address: str | None = None
    # TLS only: PEM files. Without a certificate a TLS transport can only dial out.
    tls_cert_file: str | None = None
    tls_key_file: str | None = None
    tls_ca_file: str | None = None
    tls_verify_server: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "kind", Transport(self.kind))
        if not 0 <= self.port < 65536:
            raise ValueError(f"transport port must be 0-65535, got {self.port}")
        if self.kind is not Transport.TLS and (self.tls_cert_file or self.tls_key_file):
            raise ValueError(f"TLS certificate given for a {self.kind} transport")


@dataclass(frozen=True, slots=True)
class Trunk:
    """A SIP trunk (carrier or PBX) that outbound calls go through.

    ``host`` is the trunk's SIP domain as ``host[:port]``; numbers are dialled as
    ``sip:NUMBER@host``. With ``register`` the endpoint REGISTERs on start and keeps the
    registration refreshed (every ``register_expires_s``). ``codecs`` is the order of
    preference offered on this trunk (PCMU, PCMA, G722). ``headers`` go on every INVITE.
    """

    name: str
    host: str
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    auth_username: str | None = None
    realm: str = "*"
    transport: Transport = Transport.UDP
    register: bool = False
    registrar: str | None = None
    outbound_proxy: str | None = None
    register_expires_s: int = 300
    caller_id: str | None = None
    caller_name: str | None = None
    codecs: tuple[str, ...] = ("PCMU", "PCMA")
    dtmf_method: DtmfMethod = DtmfMethod.RFC4733
    headers: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # Accept plain strings from config files ("tcp", "sip_info") for the enums.
        object.__setattr__(self, "transport", Transport(self.transport))
        object.__setattr__(self, "dtmf_method", DtmfMethod(self.dtmf_method))
        object.__setattr__(self, "codecs", tuple(self.codecs))
        if not self.name:
            raise ValueError("trunk name must not be empty")
        validate_hostport(self.host, f"trunk {self.name!r} host")
        for codec in self.codecs:
            if codec not in CODEC_IDS:
                raise ValueError(
                    f"trunk {self.name!r} codec {codec!r} is not supported "
                    f"(supported: {', '.join(CODEC_IDS)})"
                )
        if not self.codecs:
            raise ValueError(f"trunk {self.name!r} must offer at least one codec")
        if self.register and not self.username:
            raise ValueError(f"trunk {self.name!r} registers but has no username")
        if self.register_expires_s < 60:
            raise ValueError(
                f"trunk {self.name!r} register_expires_s must be >= 60, "
                f"got {self.register_expires_s}"
            )
        if self.dtmf_method is DtmfMethod.INBAND:
            raise ValueError(f"trunk {self.name!r} dtmf_method inband is receive-only")
        for uri_field in ("registrar", "outbound_proxy"):
            value = getattr(self, uri_field)
            if value is not None:
                SipUri.parse(_as_uri(value))
        for name, value in self.headers.items():
            if not is_valid_header(name, value):
                raise ValueError(f"trunk {self.name!r} header {name!r} is not a valid SIP header")

    @classmethod
    def from_uri(cls, text: str, name: str = "default") -> Trunk:
        """A trunk from one line, for the command line and environment variables:
        ``sip:USER:PASSWORD@HOST[:PORT][;transport=tcp][;register=yes][;codecs=PCMA,PCMU]
        [;caller_id=+15550100][;dtmf=sip_info][;proxy=HOST:PORT]``."""
        body = text.strip()
        if not body.lower().startswith("sip:"):
            raise ValueError(f"trunk must start with sip:, got {text!r}")
        body = body[4:]
        creds, sep, rest = body.rpartition("@")
        if not sep:
            creds, rest = "", body
        username, _, password = creds.partition(":")
        host, *params = rest.split(";")
        options: dict[str, str] = {}
        for param in params:
            key, eq, value = param.partition("=")
            if not eq or key not in _TRUNK_URI_PARAMS:
                raise ValueError(
                    f"trunk parameter {param!r} is not one of {', '.join(_TRUNK_URI_PARAMS)}"
                )
            options[key] = value
        return cls(
            name=name,
            host=host,
            username=username or None,
            password=password or None,
            transport=Transport(options.get("transport", "udp")),
            register=options.get("register", "no").lower() in ("yes", "true", "1"),
            codecs=tuple(options["codecs"].split(",")) if "codecs" in options else ("PCMU", "PCMA"),
            caller_id=options.get("caller_id"),
            dtmf_method=DtmfMethod(options.get("dtmf", "rfc4733")),
            outbound_proxy=options.get("proxy"),
        )

    @property
    def uri_transport(self) -> str:
        return self.transport.value

    def account_uri(self) -> str:
        user = f"{self.username}@" if self.username else ""
        return f"sip:{user}{self.host}"

    def registrar_uri(self) -> str:
        return str(
            SipUri.parse(_as_uri(self.registrar or self.host)).with_transport(self.uri_transport)
        )

    def proxy_uri(self) -> str | None:
        if self.outbound_proxy is None:
            return None
        return f"{SipUri.parse(_as_uri(self.outbound_proxy)).with_transport(self.uri_transport)};lr"


@dataclass(frozen=True, slots=True)
class EndpointConfig:
    """Options of one ``SipEndpoint`` (one per process).

    ``max_calls`` asks for a call limit; the real capacity is the smaller of it and
    what the PJSIP build allows (``SipEndpoint.capacity``). ``rtp_port`` 0 lets the OS
    pick RTP ports, so several call-host processes share a machine without clashes.
    """

    transports: tuple[TransportSpec, ...] = (TransportSpec(),)
    user_agent: str = "callfleet/0.1"
    local_user: str = "callfleet"
    max_calls: int | None = None
    codecs: tuple[str, ...] = DEFAULT_CODECS
    rtp_port: int = 0
    rtp_port_range: int = 0
    #: Conference bridge clock (Hz). ``None``: 16000 when G722 is the first codec, else
    #: 8000, so that G.711 calls are never resampled and G.722 calls stay wideband.
    clock_rate: int | None = None
    #: RFC 3261 Timer B/F: an INVITE with no response at all fails (and frees its call
    #: slot) after this long. 32 s is the RFC default; dialers often lower it.
    transaction_timeout_s: float = 32.0
    #: PJSIP's own log level (0-6), forwarded to the Python logger "callfleet.sip.pjsip".
    pjsip_log_level: int = 1
    trunks: tuple[Trunk, ...] = ()

    @property
    def bridge_clock_rate(self) -> int:
        if self.clock_rate is not None:
            return self.clock_rate
        return 16000 if self.codecs[:1] == ("G722",) else 8000

    def __post_init__(self) -> None:
        if self.clock_rate not in (None, 8000, 16000, 32000, 48000):
            raise ValueError(
                f"clock_rate must be 8000, 16000, 32000 or 48000, got {self.clock_rate}"
            )
        if not self.transports:
            raise ValueError("endpoint needs at least one transport")
        for codec in self.codecs:
            if codec not in CODEC_IDS:
                raise ValueError(f"endpoint codec {codec!r} is not supported")
        if self.max_calls is not None and self.max_calls < 1:
            raise ValueError(f"max_calls must be >= 1, got {self.max_calls}")
        if not 1.0 <= self.transaction_timeout_s <= 64.0:
            raise ValueError(
                f"transaction_timeout_s must be 1-64 s, got {self.transaction_timeout_s}"
            )
        names = [t.name for t in self.trunks]
        if len(names) != len(set(names)):
            raise ValueError(f"trunk names must be unique, got {names}")
