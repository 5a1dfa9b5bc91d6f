"""Inbound calls: a test phone dials the endpoint; the handler answers, rings or rejects."""

from __future__ import annotations

import asyncio

import pytest

from callfleet.media.tones import sine
from callfleet.sip.endpoint import IncomingCall, SipEndpoint
from callfleet.sip.status import CallState, EndReason
from callfleet.sip.testing import PhoneScript
from tests.conftest import PhoneFactory
from tests.integration.audio import assert_tone, collect, pcm, tone_of, tone_of_wav

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def test_inbound_call_answered_with_audio(
    clean_endpoint: SipEndpoint, phones: PhoneFactory, record_dir: str
) -> None:
    phone = await phones(PhoneScript(tone_hz=900, record_dir=record_dir), name="alice")
    seen: asyncio.Queue[IncomingCall] = asyncio.Queue()

    async def handler(incoming: IncomingCall) -> None:
        await seen.put(incoming)
        await incoming.call.ring()
        await asyncio.sleep(0.3)
        await incoming.call.answer()

    clean_endpoint.on_incoming(handler)
    await phone.send(
        {
            "cmd": "dial",
            "to": clean_endpoint.local_uri().replace("callfleet@", "1800555@"),
            "headers": {"X-Tenant": "acme"},
        }
    )
    incoming = await asyncio.wait_for(seen.get(), 10)
    assert incoming.callee == "1800555"
    assert incoming.caller == "alice"
    assert incoming.headers["x-tenant"] == "acme"
    call = incoming.call
    assert call.direction == "inbound"
    assert await call.wait_answered(10)
    assert call.audio_out is not None
    call.audio_out.write(sine(350, 1500, 8000))
    frames = await collect(call, 1.5)
    assert_tone(tone_of(pcm(frames)[1600:], 8000), 900)
    await phone.send({"cmd": "hangup"})
    assert await call.wait_ended(10) is EndReason.COMPLETED
    recorded = await phone.wait_for("recorded")
    assert_tone(tone_of_wav(recorded["path"]), 350)
    assert (await phone.wait_for("state", state="ringing"))["state"] == "ringing"


@pytest.mark.parametrize("code", [486, 603, 404])
async def test_inbound_call_rejected(
    clean_endpoint: SipEndpoint, phones: PhoneFactory, code: int
) -> None:
    phone = await phones()
    calls: list[IncomingCall] = []

    async def handler(incoming: IncomingCall) -> None:
        calls.append(incoming)
        await incoming.call.reject(code)

    clean_endpoint.on_incoming(handler)
    await phone.send({"cmd": "dial", "to": clean_endpoint.local_uri()})
    ended = await phone.wait_for("ended")
    assert ended["code"] == code
    assert calls[0].call.state is CallState.ENDED


async def test_inbound_without_handler_is_rejected_480(
    clean_endpoint: SipEndpoint, phones: PhoneFactory
) -> None:
    phone = await phones()
    await phone.send({"cmd": "dial", "to": clean_endpoint.local_uri()})
    ended = await phone.wait_for("ended")
    assert ended["code"] == 480


async def test_handler_error_rejects_with_500(
    clean_endpoint: SipEndpoint, phones: PhoneFactory
) -> None:
    phone = await phones()

    async def handler(incoming: IncomingCall) -> None:
        raise RuntimeError("routing table is broken")

    clean_endpoint.on_incoming(handler)
    await phone.send({"cmd": "dial", "to": clean_endpoint.local_uri()})
    assert (await phone.wait_for("ended"))["code"] == 500


async def test_inbound_early_media_then_answer(
    clean_endpoint: SipEndpoint, phones: PhoneFactory, record_dir: str
) -> None:
    phone = await phones(PhoneScript(record_dir=record_dir, silent=True))

    async def handler(incoming: IncomingCall) -> None:
        call = incoming.call
        await call.early_media()
        assert call.state is CallState.EARLY_MEDIA and call.audio_out is not None
        await call.play(sine(1500, 1000, 8000))  # an announcement before the answer
        await call.answer()
        await call.play(sine(600, 1000, 8000))
        await call.hangup()

    clean_endpoint.on_incoming(handler)
    await phone.send({"cmd": "dial", "to": clean_endpoint.local_uri()})
    recorded = await phone.wait_for("recorded", timeout_s=15)
    from callfleet.media.wav import read_wav

    samples, rate = read_wav(recorded["path"])
    assert_tone(tone_of(samples[int(0.2 * rate) : int(0.8 * rate)], rate), 1500)
    assert_tone(tone_of(samples[-int(0.8 * rate) : -int(0.2 * rate)], rate), 600)
