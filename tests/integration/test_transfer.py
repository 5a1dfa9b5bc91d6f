"""Blind transfer (REFER), attended transfer (REFER with Replaces) and bridging two calls."""

from __future__ import annotations

import asyncio

import pytest

from callfleet.media.wav import read_wav
from callfleet.sip.endpoint import SipEndpoint
from callfleet.sip.errors import TransferError
from callfleet.sip.status import EndReason
from callfleet.sip.testing import PhoneScript, TestPhone
from tests.conftest import PhoneFactory
from tests.integration.audio import assert_tone, tone_of

pytestmark = pytest.mark.asyncio(loop_scope="session")


def last_tone(path: str, seconds: float = 0.8) -> float:
    samples, rate = read_wav(path)
    return tone_of(samples[-int(seconds * rate) :], rate)


async def recording_of(phone: TestPhone, call: str) -> str:
    return str((await phone.wait_for("recorded", call=call, timeout_s=10))["path"])


async def test_blind_transfer_connects_far_end_to_target(
    clean_endpoint: SipEndpoint, phones: PhoneFactory, record_dir: str
) -> None:
    bob = await phones(PhoneScript(tone_hz=600), name="bob")
    carol = await phones(PhoneScript(record_dir=record_dir, tone_hz=800), name="carol")
    call = await clean_endpoint.dial(bob.uri())
    assert await call.wait_answered(10)
    progress: list[int] = []
    call.on("transfer_progress", lambda code, reason, final: progress.append(code))
    result = await call.blind_transfer(carol.uri("carol"))
    assert result.ok and result.status_code == 200
    assert progress[-1] == 200
    assert call.end_reason is EndReason.TRANSFERRED
    refer = await bob.wait_for("transfer_request")
    assert refer["code"] == 202 and "carol" in refer["target"]
    incoming = await carol.wait_for("incoming")
    assert incoming["caller"] == "bob"
    await asyncio.sleep(1.0)  # bob and carol talk
    await bob.send({"cmd": "hangup", "call": refer["new_call"]})
    assert_tone(last_tone(await recording_of(carol, incoming["call"])), 600)
    ended = await bob.wait_for("ended", where=lambda e: e["call"] != refer["new_call"])
    assert ended["reason"] == "completed"  # bob's leg with us was cleared


async def test_refused_refer_raises_and_keeps_the_call(
    clean_endpoint: SipEndpoint, phones: PhoneFactory
) -> None:
    bob = await phones(PhoneScript(silent=True, refer_code=603))
    call = await clean_endpoint.dial(bob.uri())
    assert await call.wait_answered(10)
    with pytest.raises(TransferError, match="603") as err:
        await call.blind_transfer("sip:carol@127.0.0.1:5999")
    assert err.value.status == 603
    assert not call.is_ended
    await call.hangup()


async def test_attended_transfer_joins_both_far_ends(
    clean_endpoint: SipEndpoint, phones: PhoneFactory, record_dir: str
) -> None:
    bob = await phones(PhoneScript(tone_hz=600, record_dir=record_dir), name="bob")
    carol = await phones(PhoneScript(tone_hz=800, record_dir=record_dir), name="carol")
    to_bob = await clean_endpoint.dial(bob.uri())
    to_carol = await clean_endpoint.dial(carol.uri("carol"))
    assert await to_bob.wait_answered(10) and await to_carol.wait_answered(10)
    await to_bob.hold()
    result = await to_bob.attended_transfer(to_carol)
    assert result.ok
    assert await to_bob.wait_ended(5) is EndReason.TRANSFERRED
    await to_carol.wait_ended(5)
    refer = await bob.wait_for("transfer_request")
    replaced = await carol.wait_for("replaced")
    await asyncio.sleep(1.0)
    await bob.send({"cmd": "hangup", "call": refer["new_call"]})
    assert_tone(last_tone(await recording_of(bob, refer["new_call"])), 800)
    assert_tone(last_tone(await recording_of(carol, replaced["new_call"])), 600)


async def test_bridge_carries_audio_between_two_calls(
    clean_endpoint: SipEndpoint, phones: PhoneFactory, record_dir: str
) -> None:
    bob = await phones(PhoneScript(tone_hz=600, record_dir=record_dir), name="bob")
    carol = await phones(PhoneScript(tone_hz=800, record_dir=record_dir), name="carol")
    a = await clean_endpoint.dial(bob.uri())
    b = await clean_endpoint.dial(carol.uri("carol"))
    assert await a.wait_answered(10) and await b.wait_answered(10)
    await clean_endpoint.bridge(a, b)
    await asyncio.sleep(1.2)
    await a.hangup()
    await b.hangup()
    bob_call = (await bob.wait_for("incoming"))["call"]
    carol_call = (await carol.wait_for("incoming"))["call"]
    assert_tone(last_tone(await recording_of(bob, bob_call)), 800)
    assert_tone(last_tone(await recording_of(carol, carol_call)), 600)
