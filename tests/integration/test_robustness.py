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


def malformed_rtp() -> list[bytes]:
    """RTP (RFC 3550) packets a broken or hostile peer might send."""
    header = bytes([0x80, 0x00, 0x12, 0x34, 0, 0, 0x10, 0, 0xDE, 0xAD, 0xBE, 0xEF])
    return [
        b"",
        b"\x80",  # one byte
        header[:11],  # truncated fixed header
        bytes([0x40]) + header[1:] + b"\xff" * 160,  # version 1
        bytes([0x8F]) + header[1:] + b"\x00" * 8,  # claims 15 CSRCs, carries 2
        bytes([0x90]) + header[1:] + b"\x00\x01\xff\xff",  # extension longer than packet
        bytes([0xA0]) + header[1:] + b"\x00" * 10 + b"\xff",  # padding count past the end
        bytes([0x80, 0x7F]) + header[2:] + b"\x00" * 160,  # unknown payload type 127
        bytes(random.Random(3).randrange(256) for _ in range(1500)),
    ]


async def test_malformed_rtp_leaves_the_call_up(
    clean_endpoint: SipEndpoint, phones: PhoneFactory
) -> None:
    from tests.integration.audio import assert_tone, collect, pcm, tone_of

    phone = await phones(PhoneScript(tone_hz=750))
    call = await clean_endpoint.dial(phone.uri())
    assert await call.wait_answered(10)
    host, port = (await call.rtp_stats()).local_rtp.rsplit(":", 1)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        for _ in range(20):
            for packet in malformed_rtp():
                sock.sendto(packet, (host, int(port)))
            await asyncio.sleep(0.01)
    await asyncio.sleep(0.2)
    assert not call.is_ended
    assert_tone(tone_of(pcm(await collect(call, 1.0))[-4000:], 8000), 750)
    await call.hangup()
