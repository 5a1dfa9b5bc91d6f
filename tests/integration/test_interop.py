"""Interop with independent SIP implementations: Debian's kamailio (registrar and
authenticating proxy) and baresip (a softphone)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from callfleet.media.tones import sine
from callfleet.sip.config import Trunk
from callfleet.sip.endpoint import IncomingCall, SipEndpoint
from callfleet.sip.status import EndReason
from tests.integration.audio import assert_tone, collect, pcm, tone_of, tone_of_wav
from tests.peers.baresip import Baresip, write_tone_wav
from tests.peers.kamailio import Kamailio

pytestmark = pytest.mark.asyncio(loop_scope="session")

USERS = {"1001": "alicepw", "1002": "bobpw"}


@pytest_asyncio.fixture(loop_scope="session")
async def kamailio(tmp_path: Path) -> AsyncIterator[Kamailio]:
    kam = Kamailio(USERS, tmp_path)
    await asyncio.to_thread(kam.start)
    yield kam
    await asyncio.to_thread(kam.stop)


async def start_baresip(tmp_path: Path, **kwargs: object) -> Baresip:
    tone = write_tone_wav(tmp_path / "tone.wav", freq_hz=1000, seconds=20)
    phone = Baresip(tmp_path, audio_file=tone, **kwargs)  # type: ignore[arg-type]
    await asyncio.to_thread(phone.start)
    return phone


def trunk(kam: Kamailio, *, name: str, password: str, register: bool = True) -> Trunk:
    return Trunk(
        name=name, host=kam.hostport, username="1002", password=password, register=register
    )


async def test_digest_register_and_authenticated_invite_through_kamailio(
    clean_endpoint: SipEndpoint, kamailio: Kamailio, tmp_path: Path
) -> None:
    alice = await start_baresip(
        tmp_path, user="1001", registrar=kamailio.hostport, password=USERS["1001"]
    )
    try:
        await asyncio.to_thread(alice.wait_registered)
        await clean_endpoint.add_trunk(trunk(kamailio, name="kam", password="bobpw"))
        reg = await clean_endpoint.wait_registered("kam")
        assert reg.ok and reg.code == 200, reg  # after kamailio's 401 challenge
        call = await clean_endpoint.dial("1001", trunk="kam")  # 407, then routed to alice
        assert await call.wait_answered(10)
        assert call.audio_out is not None
        call.audio_out.write(sine(500, 2000, 8000))
        assert_tone(tone_of(pcm(await collect(call, 1.5))[2400:], 8000), 1000)
        assert await call.hangup() is EndReason.COMPLETED
        await asyncio.to_thread(alice.wait_event, "CALL_CLOSED")
        heard = alice.recordings("dec")
        assert heard, alice.log_tail()
        assert_tone(tone_of_wav(str(heard[-1]), skip_s=0.5), 500)
    finally:
        await asyncio.to_thread(alice.stop)


async def test_wrong_password_is_refused(clean_endpoint: SipEndpoint, kamailio: Kamailio) -> None:
    await clean_endpoint.add_trunk(trunk(kamailio, name="kam-bad", password="wrong"))
    reg = await clean_endpoint.wait_registered("kam-bad")
    assert not reg.ok and reg.code == 403
    call = await clean_endpoint.dial("1001", trunk="kam-bad")
    assert await call.wait_answered(10) is False
    assert call.sip_code == 403 and call.end_reason is EndReason.FAILED


async def test_unregistered_target_is_invalid_number(
    clean_endpoint: SipEndpoint, kamailio: Kamailio
) -> None:
    await clean_endpoint.add_trunk(trunk(kamailio, name="kam-nr", password="bobpw"))
    assert (await clean_endpoint.wait_registered("kam-nr")).ok
    call = await clean_endpoint.dial("1001", trunk="kam-nr")  # 1001 is not registered
    assert await call.wait_answered(10) is False
    assert call.end_reason is EndReason.INVALID_NUMBER and call.sip_code == 404


async def test_call_to_and_from_baresip(clean_endpoint: SipEndpoint, tmp_path: Path) -> None:
    bare = await start_baresip(tmp_path, user="bare")
    try:
        call = await clean_endpoint.dial(bare.uri)
        assert await call.wait_answered(10)
        assert call.audio_out is not None
        call.audio_out.write(sine(700, 1500, 8000))
        assert_tone(tone_of(pcm(await collect(call, 1.5))[2400:], 8000), 1000)
        await call.hangup()
        await asyncio.to_thread(bare.wait_event, "CALL_CLOSED")
        assert_tone(tone_of_wav(str(bare.recordings("dec")[-1]), skip_s=0.5), 700)

        answered: asyncio.Queue[IncomingCall] = asyncio.Queue()

        async def handler(incoming: IncomingCall) -> None:
            await incoming.call.answer()
            await answered.put(incoming)

        clean_endpoint.on_incoming(handler)
        since = len(bare.events)
        await asyncio.to_thread(bare.dial, clean_endpoint.local_uri())
        incoming = await asyncio.wait_for(answered.get(), 10)
        assert incoming.caller == "bare"
        await asyncio.to_thread(bare.wait_event, "CALL_ESTABLISHED", since=since)
        assert_tone(tone_of(pcm(await collect(incoming.call, 1.5))[2400:], 8000), 1000)
        await incoming.call.hangup()
    finally:
        await asyncio.to_thread(bare.stop)
