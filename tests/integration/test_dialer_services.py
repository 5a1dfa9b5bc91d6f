"""The dialer's long-running services as an operator runs them: ``callfleet scheduler``
(Celery beat, the tick, webhook delivery) with a call-host worker, and live transfer."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from redis.asyncio import Redis
from sqlalchemy import select

from callfleet.demo import WebhookReceiver
from callfleet.dialer.commands import CallCommand, send_command
from callfleet.dialer.db import transaction
from callfleet.dialer.models import (
    CallAttempt,
    CallEvent,
    Campaign,
    CampaignStatus,
    WebhookDelivery,
    WebhookSubscription,
)
from callfleet.sip.testing import PhoneScript
from tests.conftest import PhoneFactory
from tests.integration.dialer_env import (
    CallWorker,
    DialerEnv,
    dial_first_attempt,
    setup_campaign,
    wait_state,
)

pytestmark = pytest.mark.asyncio(loop_scope="session")


def _subscribe(env: DialerEnv, campaign_id: str, url: str, secret: str) -> None:
    with transaction(env.sessions) as s:
        campaign = s.get(Campaign, campaign_id)
        assert campaign is not None
        s.add(WebhookSubscription(tenant_id=campaign.tenant_id, url=url, secret=secret))


async def test_scheduler_service_runs_a_campaign_and_delivers_webhooks(
    dialer_env: DialerEnv,
    worker_factory: Callable[[], CallWorker],
    phones: PhoneFactory,
    tmp_path: Path,
) -> None:
    phone = await phones(
        PhoneScript(
            silent=True,
            hangup_after_s=1.0,
            by_callee={"+12125550102": {"answer": "reject", "reject_code": 486}},
        )
    )
    receiver = WebhookReceiver(secret="s3cret")
    await receiver.start()
    worker = worker_factory()
    await worker.ready()
    campaign_id = setup_campaign(
        dialer_env, phone, "phone\n+12125550101\n+12125550102\n", retry_policy={"max_attempts": 1}
    )
    _subscribe(dialer_env, campaign_id, f"http://127.0.0.1:{receiver.port}/hook", "s3cret")
    env = {**dialer_env.env, "CALLFLEET_BEAT_SCHEDULE": str(tmp_path / "beat")}
    scheduler = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "callfleet.cli",
        "scheduler",
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            types = sorted(str(e["type"]) for e in receiver.events)
            if types == ["call.completed", "call.completed", "campaign.completed"]:
                break
            await asyncio.sleep(0.3)
        assert types == ["call.completed", "call.completed", "campaign.completed"]
        assert receiver.bad_signatures == 0
        outcomes = sorted(
            str(e["data"]["outcome"])
            for e in receiver.events  # type: ignore[index]
            if e["type"] == "call.completed"
        )
        assert outcomes == ["busy", "completed"]
        with dialer_env.sessions() as s:
            campaign = s.get(Campaign, campaign_id)
            assert campaign is not None and campaign.status == CampaignStatus.COMPLETED
            statuses = {d.status for d in s.scalars(select(WebhookDelivery))}
        assert statuses == {"delivered"}
    finally:
        scheduler.send_signal(signal.SIGTERM)
        await asyncio.wait_for(scheduler.wait(), 30)
        await receiver.stop()


async def test_live_blind_transfer_command(
    dialer_env: DialerEnv, worker_factory: Callable[[], CallWorker], phones: PhoneFactory
) -> None:
    callee = await phones(PhoneScript(silent=True))  # answers, accepts REFER
    desk = await phones(PhoneScript(silent=True, hangup_after_s=0.5), name="desk")
    worker = worker_factory()
    await worker.ready()
    campaign_id = setup_campaign(dialer_env, callee, "phone\n+12125550101\n")
    _subscribe(dialer_env, campaign_id, "http://127.0.0.1:9/unused", "x")
    attempt_id, owner = await dial_first_attempt(dialer_env)
    queued = [attempt_id]
    client = Redis.from_url(dialer_env.redis_url)
    try:
        result = await send_command(
            client,
            owner,
            CallCommand(queued[0], "transfer", {"target": desk.uri("desk")}),
            timeout_s=20,
        )
    finally:
        await client.aclose()
    assert result == {"ok": True, "status_code": 200}
    assert (await desk.wait_for("incoming"))["caller"] == "phone"
    await wait_state(dialer_env, queued[0], "completed")
    with dialer_env.sessions() as s:
        attempt = s.get(CallAttempt, queued[0])
        events = [e.type for e in s.scalars(select(CallEvent))]
        hooks = sorted(d.event_type for d in s.scalars(select(WebhookDelivery)))
    assert attempt is not None and attempt.end_reason == "transferred"
    assert "command.transfer" in events
    assert hooks == ["call.completed", "call.transferred"]


async def test_say_command_speaks_into_the_live_call(
    dialer_env: DialerEnv,
    worker_factory: Callable[[], CallWorker],
    phones: PhoneFactory,
    tmp_path: Path,
) -> None:
    import numpy as np

    from callfleet.media.mix import rms_dbfs
    from callfleet.media.wav import read_wav

    phone = await phones(PhoneScript(silent=True, record_dir=str(tmp_path)))
    worker = worker_factory()
    await worker.ready()
    setup_campaign(dialer_env, phone, "phone\n+12125550101\n")
    attempt_id, owner = await dial_first_attempt(dialer_env)
    queued = [attempt_id]
    client = Redis.from_url(dialer_env.redis_url)
    try:
        said = await send_command(
            client, owner, CallCommand(queued[0], "say", {"text": "Your appointment is at ten."})
        )
        assert said == {"ok": True, "played": True}
        from callfleet.dialer.commands import CommandFailed

        with pytest.raises(CommandFailed, match="say failed: text to say is empty"):
            await send_command(client, owner, CallCommand(queued[0], "say", {"text": "  "}))
        await send_command(client, owner, CallCommand(queued[0], "hangup"))
    finally:
        await client.aclose()
    samples, _rate = read_wav((await phone.wait_for("recorded"))["path"])
    frames = samples[: len(samples) // 160 * 160].reshape(-1, 160)
    loud = [rms_dbfs(np.ascontiguousarray(f)) > -40 for f in frames]
    assert sum(loud) > 30, "the callee heard no speech"  # > 0.6 s of voice


async def test_command_channel_survives_a_dropped_redis_connection(
    dialer_env: DialerEnv, worker_factory: Callable[[], CallWorker]
) -> None:
    from callfleet.dialer.commands import CommandFailed

    worker = worker_factory()
    await worker.ready()
    worker_id = next(
        line.split("call host ", 1)[1].split(" ", 1)[0]
        for line in worker.log_text().splitlines()
        if "up on SIP port" in line
    )
    client = Redis.from_url(dialer_env.redis_url)
    try:
        with pytest.raises(CommandFailed, match="no live call att_x"):
            await send_command(client, worker_id, CallCommand("att_x", "hangup"))
        killed = await client.client_kill_filter(_type="pubsub")
        assert killed >= 1
        deadline = time.monotonic() + 10
        while True:  # the host subscribes again within a couple of seconds
            try:
                await send_command(client, worker_id, CallCommand("att_x", "hangup"), timeout_s=2)
            except CommandFailed as e:
                if "no live call" in str(e):
                    break
                assert time.monotonic() < deadline, str(e)
            await asyncio.sleep(0.5)
    finally:
        await client.aclose()
    assert "call command channel lost" in worker.log_text()
