"""Reusable real-process test peers, all on 127.0.0.1 with random free ports.

* ``ports``: ``free_port``, ``free_port_pair``, ``free_ports``, ``port_in_use``,
  ``wait_for_port``.
* ``kamailio``: ``Kamailio(users, tmp_path, tls=False)`` -- private registrar + proxy with
  digest auth (Debian's kamailio).
* ``baresip``: ``Baresip(tmp_path, user=..., registrar=..., password=...)`` -- Debian's
  baresip as an auto-answering SIP phone driven over ctrl_tcp.
* ``process``: ``PeerProcess``, the process handling kamailio and baresip share.
* ``sip``: ``UdpSipClient`` and helpers for hand-built SIP over UDP, RFC 2617 digest.
* ``tls``: ``make_self_signed_cert`` (openssl CLI).
* ``audio``: raw RTP packet helpers (audio itself: ``callfleet.media``).

Modules import each other relatively, so the package works imported as ``peers`` (with
``tests/`` on sys.path) or as ``tests.peers`` (with the project root on sys.path).
"""

from .baresip import Baresip, BaresipError, BaresipEvent, write_tone_wav
from .kamailio import Kamailio, KamailioError
from .ports import free_port, free_port_pair, free_ports, port_in_use, wait_for_port
from .sip import SipMessage, UdpSipClient, authorization_header, parse_message, pcmu_sdp

__all__ = [
    "Baresip",
    "BaresipError",
    "BaresipEvent",
    "Kamailio",
    "KamailioError",
    "SipMessage",
    "UdpSipClient",
    "authorization_header",
    "free_port",
    "free_port_pair",
    "free_ports",
    "parse_message",
    "pcmu_sdp",
    "port_in_use",
    "wait_for_port",
    "write_tone_wav",
]
