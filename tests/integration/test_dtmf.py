"""DTMF both ways over RFC 4733 (RTP telephone-event) and SIP INFO."""

from __future__ import annotations

import asyncio
import time

import pytest

from callfleet.sip.dtmf import DtmfEvent, DtmfMethod
from callfleet.sip.endpoint import SipEndpoint
from callfleet.sip.testing import PhoneScript
from tests.conftest import PhoneFactory

pytestmark = pytest.mark.asyncio(loop_scope="session")


@pytest.mark.parametrize("method", [DtmfMethod.RFC4733, DtmfMethod.SIP_INFO])
async def test_send_dtmf(
    clean_endpoint: SipEndpoint, phones: PhoneFactory, method: DtmfMethod
) -> None:
    phone = await phones(PhoneScript(silent=True))
    call = await clean_endpoint.dial(phone.uri())
    assert await call.wait_answered(10)
    started = time.monotonic()
    await call.send_dtmf("12w#*9", method=method, duration_ms=120, gap_ms=80)
    elapsed = time.monotonic() - started
    assert elapsed >= 5 * 0.2 + 0.5  # paced: 5 digits of 200 ms and one 500 ms pause
    for _ in range(50):
        if len(phone.find("dtmf")) >= 5:
            break
        await asyncio.sleep(0.05)
    got = phone.find("dtmf")
    assert [e["digit"] for e in got] == ["1", "2", "#", "*", "9"]
    assert {e["method"] for e in got} == {method.value}
    if method is DtmfMethod.RFC4733:
        assert all(100 <= e["duration_ms"] <= 160 for e in got), got
    else:
        assert all(e["duration_ms"] == 120 for e in got), [e["duration_ms"] for e in got]
    await call.hangup()


@pytest.mark.parametrize("method", ["rfc4733", "sip_info"])
async def test_receive_dtmf(clean_endpoint: SipEndpoint, phones: PhoneFactory, method: str) -> None:
    phone = await phones(PhoneScript(silent=True, dtmf="5A0", dtmf_method=method, dtmf_after_s=0.3))
    call = await clean_endpoint.dial(phone.uri())
    received: list[DtmfEvent] = []
    call.on("dtmf", received.append)
    assert await call.wait_answered(10)
    await phone.wait_for("dtmf_sent")
    for _ in range(40):
        if len(received) >= 3:
            break
        await asyncio.sleep(0.05)
    assert [e.digit for e in received] == ["5", "A", "0"]
    assert {e.method.value for e in received} == {method}
    assert all(e.duration_ms and e.duration_ms >= 80 for e in received), received
    assert call.dtmf_received == received
    await call.hangup()


@pytest.mark.parametrize("digits", ["", "12x", "1 2", "e"])
async def test_invalid_dtmf_rejected(
    clean_endpoint: SipEndpoint, phones: PhoneFactory, digits: str
) -> None:
    phone = await phones(PhoneScript(silent=True))
    call = await clean_endpoint.dial(phone.uri())
    assert await call.wait_answered(10)
    with pytest.raises(ValueError, match="DTMF string"):
        await call.send_dtmf(digits)
    await call.hangup()
    assert phone.find("dtmf") == []
