"""Outbound calls over real SIP to a test phone in another process."""

from __future__ import annotations

import asyncio
import time

import numpy as np
import pytest

from callfleet.media.tones import sine
from callfleet.sip.endpoint import SipEndpoint
from callfleet.sip.errors import CallStateError, SipError
from callfleet.sip.status import CallState, EndReason
from callfleet.sip.testing import PhoneScript
from tests.conftest import TRANSACTION_TIMEOUT_S, PhoneFactory
from tests.integration.audio import assert_tone, collect, pcm, tone_of, tone_of_wav
from tests.peers.ports import free_port

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def test_answered_call_carries_audio_both_ways(
    clean_endpoint: SipEndpoint, phones: PhoneFactory, record_dir: str
) -> None:
    phone = await phones(PhoneScript(tone_hz=1000, record_dir=record_dir))
    call = await clean_endpoint.dial(phone.uri())
    states: list[CallState] = []
    call.on("state", states.append)
    assert await call.wait_answered(10)
    assert call.audio_out is not None and call.sample_rate == 8000 and call.codec == "PCMU"
    call.audio_out.write(sine(440, 1500, 16000), 16000)  # resampled to the call's rate
    call.audio_out.finish()
    frames = await collect(call, 1.5)
    assert all(len(f.samples) == 160 and f.sample_rate == 8000 for f in frames)
    assert_tone(tone_of(pcm(frames)[1600:], 8000), 1000)
    stats = await call.rtp_stats()
    assert stats.rx_packets > 50 and stats.tx_packets > 50 and stats.rx_lost == 0
    assert await call.hangup() is EndReason.COMPLETED
    assert states[-1] is CallState.ENDED and CallState.ANSWERED in states
    recorded = await phone.wait_for("recorded")
    assert_tone(tone_of_wav(recorded["path"]), 440)
    ended = await phone.wait_for("ended")
    assert ended["reason"] == "completed"


@pytest.mark.parametrize(
    ("code", "reason"),
    [
        (486, EndReason.BUSY),
        (600, EndReason.BUSY),
        (480, EndReason.NO_ANSWER),
        (603, EndReason.DECLINED),
        (404, EndReason.INVALID_NUMBER),
        (484, EndReason.INVALID_NUMBER),
        (503, EndReason.CONGESTION),
        (488, EndReason.FAILED),
    ],
)
async def test_rejections_map_to_end_reasons(
    clean_endpoint: SipEndpoint, phones: PhoneFactory, code: int, reason: EndReason
) -> None:
    phone = await phones(PhoneScript(answer="reject", reject_code=code))
    call = await clean_endpoint.dial(phone.uri())
    assert await call.wait_answered(10) is False
    assert call.end_reason is reason
    assert call.sip_code == code


async def test_ring_timeout_is_no_answer(clean_endpoint: SipEndpoint, phones: PhoneFactory) -> None:
    phone = await phones(PhoneScript(answer="ignore", ring_s=0.1))
    started = time.monotonic()
    call = await clean_endpoint.dial(phone.uri(), ring_timeout_s=1.5)
    await call.wait_ended(10)
    assert call.end_reason is EndReason.NO_ANSWER
    assert 1.4 < time.monotonic() - started < 4
    assert (await phone.wait_for("ended"))["reason"] == "cancelled"  # we sent CANCEL


async def test_early_media_frames_arrive_before_answer(
    clean_endpoint: SipEndpoint, phones: PhoneFactory
) -> None:
    phone = await phones(PhoneScript(early_media_s=1.5, tone_hz=700, hangup_after_s=0.5))
    call = await clean_endpoint.dial(phone.uri())
    await call.wait_media(10)
    assert call.state is CallState.EARLY_MEDIA
    frames = await collect(call, 5)
    early = [f for f in frames if "early" in f.flags]
    late = [f for f in frames if "early" not in f.flags]
    assert len(early) > 40, f"only {len(early)} early frames"
    assert_tone(tone_of(pcm(early)[800:], 8000), 700)
    assert late, "no frames after the answer"
    assert call.end_reason is EndReason.COMPLETED
    assert phone.find("ended")


async def test_unreachable_trunk_fails_within_timeout(clean_endpoint: SipEndpoint) -> None:
    port = free_port("udp")  # nothing listens there
    started = time.monotonic()
    call = await clean_endpoint.dial(f"sip:nobody@127.0.0.1:{port}", ring_timeout_s=1)
    reason = await call.wait_ended(10)
    assert reason is EndReason.CONGESTION
    assert time.monotonic() - started < 2
    # No provisional response means no CANCEL (RFC 3261 §9.1): the INVITE keeps its
    # slot until Timer B, and the endpoint counts it against its capacity until then.
    assert clean_endpoint.active_calls == 1
    await clean_endpoint.wait_idle(TRANSACTION_TIMEOUT_S + 1.5)


async def test_unreachable_tcp_trunk_fails_fast(clean_endpoint: SipEndpoint) -> None:
    port = free_port("tcp")
    call = await clean_endpoint.dial(f"sip:nobody@127.0.0.1:{port};transport=tcp")
    assert await call.wait_ended(5) is EndReason.CONGESTION
    assert call.sip_code == 503


async def test_long_ringing_outlives_transaction_timeout(
    clean_endpoint: SipEndpoint, phones: PhoneFactory
) -> None:
    phone = await phones(PhoneScript(ring_s=TRANSACTION_TIMEOUT_S + 1.5, silent=True))
    call = await clean_endpoint.dial(phone.uri())
    assert await call.wait_answered(15)
    await call.hangup()


@pytest.mark.parametrize(
    "target",
    ["sip:", "sip:bob@", "not a number", "12ab34", "sip:bob@exa mple.com", "sip:bob@host:99999"],
)
async def test_invalid_target_raises_before_sending(
    clean_endpoint: SipEndpoint, target: str
) -> None:
    with pytest.raises(ValueError, match="invalid"):
        await clean_endpoint.dial(target)
    assert clean_endpoint.active_calls == 0


async def test_number_without_trunk_is_refused(clean_endpoint: SipEndpoint) -> None:
    with pytest.raises(ValueError, match="without a trunk"):
        await clean_endpoint.dial("+15550100")


async def test_bad_header_is_refused(clean_endpoint: SipEndpoint, phones: PhoneFactory) -> None:
    with pytest.raises(ValueError, match="invalid SIP header"):
        await clean_endpoint.dial("sip:a@127.0.0.1:5999", headers={"X-Bad": "a\r\nVia: x"})


async def test_custom_headers_and_caller_id_reach_the_callee(
    clean_endpoint: SipEndpoint, phones: PhoneFactory
) -> None:
    phone = await phones(PhoneScript(answer="reject", reject_code=486))
    call = await clean_endpoint.dial(
        phone.uri(), headers={"X-Campaign": "spring-42"}, caller_id="+15550001111"
    )
    await call.wait_ended(10)
    incoming = await phone.wait_for("incoming")
    assert incoming["headers"]["x-campaign"] == "spring-42"
    assert incoming["caller"] == "+15550001111"


async def test_capacity_is_read_from_binding_and_enforced(
    clean_endpoint: SipEndpoint, phones: PhoneFactory
) -> None:
    assert clean_endpoint.capacity == 4  # the PyPI wheel's PJSUA_MAX_CALLS
    phone = await phones(PhoneScript(silent=True))
    calls = [await clean_endpoint.dial(phone.uri()) for _ in range(clean_endpoint.capacity)]
    await asyncio.gather(*(c.wait_answered(10) for c in calls))
    with pytest.raises(SipError, match="4 of 4 calls"):
        await clean_endpoint.dial(phone.uri())
    await asyncio.gather(*(c.hangup() for c in calls))
    await clean_endpoint.wait_idle(1.0)  # PJSIP frees slots a poll or two after the end
    again = await clean_endpoint.dial(phone.uri())  # capacity is back
    assert await again.wait_answered(10)
    await again.hangup()


async def test_hold_and_unhold(clean_endpoint: SipEndpoint, phones: PhoneFactory) -> None:
    phone = await phones(PhoneScript(tone_hz=500))
    call = await clean_endpoint.dial(phone.uri())
    assert await call.wait_answered(10)
    media: list[str] = []
    call.on("media", media.append)
    await call.hold()
    await asyncio.sleep(0.5)
    assert "local_hold" in media
    await call.unhold()
    await asyncio.sleep(0.5)
    assert media[-1] == "active"
    frames = await collect(call, 1.0)
    assert_tone(tone_of(pcm(frames), 8000), 500)
    await call.hangup()


async def test_recording_has_both_directions(
    clean_endpoint: SipEndpoint, phones: PhoneFactory, record_dir: str
) -> None:
    import wave

    phone = await phones(PhoneScript(tone_hz=1200))
    call = await clean_endpoint.dial(phone.uri())
    assert await call.wait_answered(10)
    path = f"{record_dir}/both.wav"
    call.start_recording(path)
    assert call.audio_out is not None
    call.audio_out.write(sine(300, 2000, 8000))
    await collect(call, 1.5)
    await call.hangup()
    with wave.open(path, "rb") as w:
        assert w.getnchannels() == 2 and w.getframerate() == 8000
        samples = np.frombuffer(w.readframes(w.getnframes()), np.int16).reshape(-1, 2)
    assert_tone(tone_of(np.ascontiguousarray(samples[2000:, 0]), 8000), 1200)
    assert_tone(tone_of(np.ascontiguousarray(samples[2000:, 1]), 8000), 300)


async def test_operations_on_ended_call_raise(
    clean_endpoint: SipEndpoint, phones: PhoneFactory
) -> None:
    phone = await phones(PhoneScript(answer="reject"))
    call = await clean_endpoint.dial(phone.uri())
    await call.wait_ended(10)
    with pytest.raises(CallStateError, match="has ended"):
        await call.send_dtmf("1")
    assert await call.hangup() is EndReason.BUSY  # idempotent


async def test_clear_stops_playout_within_a_frame(
    clean_endpoint: SipEndpoint, phones: PhoneFactory, record_dir: str
) -> None:
    import wave

    phone = await phones(PhoneScript(silent=True))
    call = await clean_endpoint.dial(phone.uri())
    assert await call.wait_answered(10)
    path = f"{record_dir}/bargein.wav"
    call.start_recording(path)
    received_at_start = call.audio_in.received
    assert call.audio_out is not None
    call.audio_out.write(sine(600, 3000, 8000))
    playing = asyncio.ensure_future(call.audio_out.wait_played())
    await collect(call, 0.6)
    received_at_clear = call.audio_in.received
    dropped_ms = call.audio_out.clear()
    assert dropped_ms > 2000 and call.audio_out.queued_ms == 0
    assert await playing is False  # the waiter learns it was interrupted
    await collect(call, 0.5)
    call.stop_recording()
    await call.hangup()
    with wave.open(path, "rb") as w:
        sent = np.frombuffer(w.readframes(w.getnframes()), np.int16).reshape(-1, 2)[:, 1]
    frame_peak = np.abs(sent[: len(sent) // 160 * 160].reshape(-1, 160)).max(axis=1)
    assert frame_peak[:20].min() > 1000, "the tone was not playing before clear()"
    last_tone = int(np.nonzero(frame_peak > 1000)[0].max())
    # Recorded frame k is the tick of received frame number received_at_start + k + 1.
    # The tick after clear() may already have been pulled when clear() ran; the one
    # after that is silent: at most one frame of tone after the clear.
    assert received_at_start + last_tone + 1 <= received_at_clear + 2, (
        f"tone ran {received_at_start + last_tone + 1 - received_at_clear} frames past clear()"
    )
