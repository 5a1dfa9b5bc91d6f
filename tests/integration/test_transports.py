"""Calls over TCP and TLS, and a registered call through a public address setting."""

from __future__ import annotations

import pytest

from callfleet.media.tones import sine
from callfleet.sip.endpoint import SipEndpoint
from callfleet.sip.status import EndReason
from callfleet.sip.testing import PhoneScript
from tests.conftest import PhoneFactory
from tests.integration.audio import assert_tone, collect, pcm, tone_of, tone_of_wav

pytestmark = pytest.mark.asyncio(loop_scope="session")


@pytest.mark.parametrize("transport", ["tcp", "tls"])
async def test_call_over_stream_transport(
    clean_endpoint: SipEndpoint, phones: PhoneFactory, record_dir: str, transport: str
) -> None:
    phone = await phones(
        PhoneScript(tone_hz=1000, record_dir=record_dir),
        tcp=transport == "tcp",
        tls=transport == "tls",
    )
    call = await clean_endpoint.dial(phone.uri(transport=transport))
    assert await call.wait_answered(10)
    incoming = await phone.wait_for("incoming")
    assert incoming["headers"]["via"].startswith(f"SIP/2.0/{transport.upper()} ")
    assert call.audio_out is not None
    call.audio_out.write(sine(450, 1200, 8000))
    assert_tone(tone_of(pcm(await collect(call, 1.2))[1600:], 8000), 1000)
    assert await call.hangup() is EndReason.COMPLETED
    assert_tone(tone_of_wav((await phone.wait_for("recorded"))["path"]), 450)


async def test_inbound_over_tls(clean_endpoint: SipEndpoint, phones: PhoneFactory) -> None:
    from callfleet.sip.endpoint import IncomingCall

    phone = await phones(PhoneScript(silent=True), tls=True)
    got: list[IncomingCall] = []

    async def handler(incoming: IncomingCall) -> None:
        got.append(incoming)
        await incoming.call.answer()
        await incoming.call.hangup()

    clean_endpoint.on_incoming(handler)
    await phone.send({"cmd": "dial", "to": clean_endpoint.local_uri("tls")})
    ended = await phone.wait_for("ended")
    assert ended["reason"] == "completed"
    assert got[0].headers["via"].startswith("SIP/2.0/TLS ")
