"""The endpoint survives garbage on its SIP ports, and many calls leak neither memory
nor file descriptors."""

from __future__ import annotations

import asyncio
import os
import random
import socket
import ssl

import psutil
import pytest

from callfleet.sip.config import Transport
from callfleet.sip.endpoint import SipEndpoint
from callfleet.sip.testing import PhoneScript
from tests.conftest import PhoneFactory

pytestmark = pytest.mark.asyncio(loop_scope="session")

INVITE = (
    "INVITE sip:callfleet@127.0.0.1:{port} SIP/2.0\r\n"
    "Via: SIP/2.0/UDP 127.0.0.1:5999;branch=z9hG4bK{branch}\r\n"
    "Max-Forwards: 70\r\n"
    "From: <sip:evil@127.0.0.1>;tag=1\r\n"
    "To: <sip:callfleet@127.0.0.1>\r\n"
    "Call-ID: {branch}@test\r\n"
    "CSeq: 1 INVITE\r\n"
    "Contact: <sip:evil@127.0.0.1:5999>\r\n"
    "Content-Type: application/sdp\r\n"
    "Content-Length: {length}\r\n\r\n{body}"
)


def garbage_datagrams(port: int) -> list[bytes]:
    rng = random.Random(7)
    full = INVITE.format(port=port, branch="abc", length=4, body="v=0\r")
    return [
        b"",
        b"\x00" * 100,
        bytes(rng.randrange(256) for _ in range(1400)),
        b"INVITE",
        b"SIP/2.0 200 OK\r\n\r\n",
        full.encode()[: len(full) // 2],  # truncated mid-header
        INVITE.format(port=port, branch="x1", length=500, body="v=0\r\n").encode(),  # short body
        INVITE.format(port=port, branch="x2", length=9, body="garbage!!").encode(),  # bad SDP
        b"INVITE sip:a@b SIP/2.0\r\nVia: nonsense\r\nCSeq: x\r\n\r\n",
        b"REGISTER sip:\xff\xfe SIP/2.0\r\n\r\n",
        b"OPTIONS sip:x@127.0.0.1 SIP/2.0\r\nContent-Length: -5\r\n\r\n",
    ]


async def assert_calls_still_work(endpoint: SipEndpoint, phones: PhoneFactory) -> None:
    phone = await phones(PhoneScript(silent=True))
    call = await endpoint.dial(phone.uri())
    assert await call.wait_answered(10)
    await call.hangup()


async def test_garbage_on_udp_port(clean_endpoint: SipEndpoint, phones: PhoneFactory) -> None:
    port = clean_endpoint.transport_port(Transport.UDP)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        for datagram in garbage_datagrams(port) * 3:
            sock.sendto(datagram, ("127.0.0.1", port))
    await asyncio.sleep(0.5)
    await assert_calls_still_work(clean_endpoint, phones)


async def test_garbage_on_tcp_and_tls_ports(
    clean_endpoint: SipEndpoint, phones: PhoneFactory
) -> None:
    tcp_port = clean_endpoint.transport_port(Transport.TCP)
    tls_port = clean_endpoint.transport_port(Transport.TLS)
    for datagram in garbage_datagrams(tcp_port):
        _, writer = await asyncio.open_connection("127.0.0.1", tcp_port)
        writer.write(datagram)
        await writer.drain()
        writer.close()
    # Plain bytes where a TLS handshake is expected, then a TLS session sending junk.
    _, writer = await asyncio.open_connection("127.0.0.1", tls_port)
    writer.write(b"\x16\x03\x01\x00\xff" + b"\x00" * 50)
    writer.close()
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    _reader, writer = await asyncio.open_connection("127.0.0.1", tls_port, ssl=ctx)
    writer.write(b"INVITE sip:x SIP/2.0\r\nContent-Length: 99999\r\n\r\nabc")
    await writer.drain()
    writer.close()
    await asyncio.sleep(0.5)
    await assert_calls_still_work(clean_endpoint, phones)


async def test_sequential_calls_keep_memory_and_fds_bounded(
    clean_endpoint: SipEndpoint, phones: PhoneFactory
) -> None:
    phone = await phones(PhoneScript(tone_hz=440))
    proc = psutil.Process(os.getpid())

    async def one_call() -> None:
        call = await clean_endpoint.dial(phone.uri())
        assert await call.wait_answered(10)
        frames = 0
        async for _ in call.audio_in:
            frames += 1
            if frames == 10:
                break
        await call.hangup()

    for _ in range(5):  # warm up: allocator pools, codec tables, first-use caches
        await one_call()
    rss_before, fds_before = proc.memory_info().rss, proc.num_fds()
    for _ in range(50):
        await one_call()
    await asyncio.sleep(0.6)  # retired media ports are destroyed after a short delay
    rss_growth_mb = (proc.memory_info().rss - rss_before) / 1e6
    fd_growth = proc.num_fds() - fds_before
    assert fd_growth <= 2, f"{fd_growth} file descriptors leaked over 50 calls"
    assert rss_growth_mb < 15, f"RSS grew {rss_growth_mb:.1f} MB over 50 calls"
    assert len(clean_endpoint.calls) == 0
