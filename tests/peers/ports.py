"""Free-port helpers for tests that start real servers on loopback."""

from __future__ import annotations

import socket
import time
from typing import Literal

Kind = Literal["udp", "tcp"]

HOST = "127.0.0.1"


def _bind(kind: Kind, port: int = 0, host: str = HOST) -> socket.socket:
    sock_type = socket.SOCK_DGRAM if kind == "udp" else socket.SOCK_STREAM
    sock = socket.socket(socket.AF_INET, sock_type)
    try:
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    return sock


def free_port(kind: Kind = "udp", host: str = HOST) -> int:
    """Return a port number that was free for ``kind`` on ``host`` a moment ago."""
    if kind not in ("udp", "tcp"):
        raise ValueError(f"kind must be 'udp' or 'tcp', not {kind!r}")
    sock = _bind(kind, 0, host)
    try:
        return int(sock.getsockname()[1])
    finally:
        sock.close()


def free_port_pair(host: str = HOST, attempts: int = 50) -> int:
    """Return one port number that is free for both UDP and TCP (as SIP wants).

    Binds UDP port 0, then tries to bind the same number over TCP; repeats until both
    succeed.
    """
    for _ in range(attempts):
        udp = _bind("udp", 0, host)
        try:
            port = int(udp.getsockname()[1])
            try:
                tcp = _bind("tcp", port, host)
            except OSError:
                continue
            tcp.close()
            return port
        finally:
            udp.close()
    raise RuntimeError(f"no port free for both UDP and TCP on {host} after {attempts} tries")


def free_ports(count: int, kind: Kind = "udp", host: str = HOST) -> list[int]:
    """Return ``count`` distinct free ports (all held open until every one is chosen)."""
    socks: list[socket.socket] = []
    try:
        for _ in range(count):
            socks.append(_bind(kind, 0, host))
        return [int(s.getsockname()[1]) for s in socks]
    finally:
        for s in socks:
            s.close()


def port_in_use(port: int, kind: Kind = "udp", host: str = HOST) -> bool:
    """True if ``port`` cannot be bound for ``kind`` on ``host`` (someone listens)."""
    try:
        sock = _bind(kind, port, host)
    except OSError:
        return True
    sock.close()
    return False


def wait_for_port(
    port: int,
    kind: Kind = "tcp",
    host: str = HOST,
    timeout_s: float = 10.0,
    interval_s: float = 0.05,
) -> None:
    """Wait until something listens on ``port``.

    TCP: a connect() succeeds. UDP: the port can no longer be bound (a server holds it;
    UDP has no handshake to probe). Raises TimeoutError.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        if kind == "tcp":
            try:
                with socket.create_connection((host, port), timeout=interval_s * 4):
                    return
            except OSError:
                pass
        elif port_in_use(port, "udp", host):
            return
        if time.monotonic() >= deadline:
            raise TimeoutError(f"nothing listening on {kind} {host}:{port} after {timeout_s}s")
        time.sleep(interval_s)
