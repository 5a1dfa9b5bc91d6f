"""Trunk options on real calls: codec preference, outbound proxy with digest auth,
public address (NAT), number dialling through a trunk's host."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from callfleet.media.tones import sine
from callfleet.sip.config import Trunk
from callfleet.sip.endpoint import IncomingCall, SipEndpoint
from callfleet.sip.testing import PhoneScript
from tests.conftest import PhoneFactory
from tests.integration.audio import assert_tone, collect, pcm, tone_of, tone_of_wav
from tests.peers.kamailio import Kamailio

pytestmark = pytest.mark.asyncio(loop_scope="session")


@pytest.mark.parametrize(
    ("codecs", "codec", "rate", "tone_hz"),
    [(("PCMA",), "PCMA", 8000, 1000), (("G722", "PCMU"), "G722", 16000, 1000)],
)
async def test_trunk_codec_preference(
    clean_endpoint: SipEndpoint,
    phones: PhoneFactory,
    record_dir: str,
    codecs: tuple[str, ...],
    codec: str,
    rate: int,
    tone_hz: int,
) -> None:
    phone = await phones(PhoneScript(tone_hz=tone_hz, record_dir=record_dir))
    trunk = Trunk(f"codec-{codec}", host=f"127.0.0.1:{phone.ports['udp']}", codecs=codecs)
    await clean_endpoint.add_trunk(trunk)
    call = await clean_endpoint.dial("+15550100", trunk=trunk)
    assert await call.wait_answered(10)
    assert (call.codec, call.sample_rate) == (codec, rate)
    incoming = await phone.wait_for("incoming")
    assert incoming["callee"] == "+15550100"
    assert call.audio_out is not None
    call.audio_out.write(sine(700, 1500, rate), rate)
    # (This endpoint's bridge runs at 8 kHz, so G.722 audio passes narrowband here;
    # test_cli covers a wideband path end to end.)
    assert_tone(tone_of(pcm(await collect(call, 1.5))[rate // 4 :], rate), tone_hz)
    await call.hangup()
    assert_tone(tone_of_wav((await phone.wait_for("recorded"))["path"]), 700)


async def test_outbound_proxy_with_digest_auth(
    clean_endpoint: SipEndpoint, phones: PhoneFactory, tmp_path: Path
) -> None:
    kam = Kamailio({"1002": "bobpw"}, tmp_path)
    await asyncio.to_thread(kam.start)
    try:
        phone = await phones(PhoneScript(silent=True))
        trunk = Trunk(
            "via-proxy",
            host=f"127.0.0.1:{phone.ports['udp']}",
            username="1002",
            password="bobpw",
            outbound_proxy=kam.hostport,
        )
        await clean_endpoint.add_trunk(trunk)
        call = await clean_endpoint.dial("200", trunk=trunk)
        assert await call.wait_answered(10)
        incoming = await phone.wait_for("incoming")
        # The INVITE went through kamailio (its Via and Record-Route are on it) after
        # the 407 challenge was answered.
        assert f"127.0.0.1:{kam.port}" in incoming["headers"]["via"]
        assert f"127.0.0.1:{kam.port}" in incoming["headers"]["record-route"]
        await call.hangup()
        await phone.wait_for("ended")  # the BYE followed the route set too
    finally:
        await asyncio.to_thread(kam.stop)


async def test_public_address_is_advertised(
    clean_endpoint: SipEndpoint, phones: PhoneFactory
) -> None:
    # The phone listens on every address but tells the world it is 127.0.0.2, as a
    # host behind NAT would: its Contact and SDP must carry that address, and the call
    # (SIP and RTP sent to 127.0.0.2) must still work.
    phone = await phones(PhoneScript(tone_hz=900), bind="0.0.0.0", public_address="127.0.0.2")
    got: asyncio.Queue[IncomingCall] = asyncio.Queue()

    async def handler(incoming: IncomingCall) -> None:
        await incoming.call.answer()
        await got.put(incoming)

    clean_endpoint.on_incoming(handler)
    await phone.send({"cmd": "dial", "to": clean_endpoint.local_uri()})
    incoming = await asyncio.wait_for(got.get(), 10)
    assert "127.0.0.2" in incoming.headers["contact"]
    assert_tone(tone_of(pcm(await collect(incoming.call, 1.2))[1600:], 8000), 900)
    await incoming.call.hangup()
