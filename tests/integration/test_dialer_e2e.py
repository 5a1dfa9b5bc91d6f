"""The dialer end to end: a Celery call-host worker process (real Redis broker, real
PostgreSQL), the scheduler tick, and a test phone playing a small phone network in
which each number behaves differently."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import wave
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import select

from callfleet.dialer.db import transaction, utcnow
from callfleet.dialer.models import CallAttempt, Campaign, Contact, Tenant
from callfleet.dialer.scheduler import tick
from callfleet.media.wav import write_wav
from callfleet.sip.testing import PhoneScript
from tests.conftest import PhoneFactory
from tests.integration.dialer_env import (
    CallWorker,
    DialerEnv,
    dial_first_attempt,
    run_ticks,
    setup_campaign,
    sip_port,
    wait_state,
)

pytestmark = pytest.mark.asyncio(loop_scope="session")

NETWORK = PhoneScript(
    silent=True,
    by_callee={
        "+12125550101": {"hangup_after_s": 1.0},  # answers, talks, hangs up
        "+12125550102": {"answer": "reject", "reject_code": 486},  # busy
        "+12125550103": {"answer": "ignore", "ring_s": 0.2},  # rings out
        "+12125550104": {"answer": "reject", "reject_code": 404},  # number does not exist
    },
)
MIXED = "phone\n+12125550101\n+12125550102\n+12125550103\n+12125550104\n"


async def test_mixed_campaign_completes_with_outcomes_and_retries(
    dialer_env: DialerEnv, worker_factory: Callable[[], CallWorker], phones: PhoneFactory
) -> None:
    phone = await phones(NETWORK)
    worker = worker_factory()
    await worker.ready()
    campaign_id = setup_campaign(
        dialer_env,
        phone,
        MIXED,
        retry_policy={"max_attempts": 2, "busy_s": 1, "no_answer_s": 1, "jitter_s": 0},
    )
    await run_ticks(dialer_env, campaign_id, timeout_s=60)
    with dialer_env.sessions() as s:
        contacts = {c.phone_e164: c for c in s.scalars(select(Contact))}
        attempts = s.scalars(select(CallAttempt)).all()
    outcome = {p: (c.status, c.attempts_made, c.last_outcome) for p, c in contacts.items()}
    assert outcome == {
        "+12125550101": ("done", 1, "completed"),
        "+12125550102": ("done", 2, "busy"),
        "+12125550103": ("done", 2, "no_answer"),
        "+12125550104": ("done", 1, "invalid_number"),
    }
    assert len(attempts) == 6
    invites = [e["callee"] for e in phone.find("incoming")]
    assert sorted(invites) == sorted(
        [
            "+12125550101",
            "+12125550102",
            "+12125550102",
            "+12125550103",
            "+12125550103",
            "+12125550104",
        ]
    )


async def test_duplicate_task_delivery_dials_once(
    dialer_env: DialerEnv, worker_factory: Callable[[], CallWorker], phones: PhoneFactory
) -> None:
    phone = await phones(PhoneScript(silent=True, hangup_after_s=1.0))
    worker = worker_factory()
    await worker.ready()
    campaign_id = setup_campaign(dialer_env, phone, "phone\n+12125550101\n")
    with transaction(dialer_env.sessions) as s:
        queued = tick(s, utcnow()).queued
    assert len(queued) == 1
    for _ in range(3):  # the broker delivers the same task three times
        dialer_env.send(queued[0])
    await run_ticks(dialer_env, campaign_id, timeout_s=30)
    await asyncio.sleep(1.0)
    assert len(phone.find("incoming")) == 1
    assert (
        worker.log_text().count("not queued: nothing to do")
        + worker.log_text().count("not dialled: taken")
        == 2
    )


async def test_killed_worker_mid_call_is_resolved_without_redial(
    dialer_env: DialerEnv, worker_factory: Callable[[], CallWorker], phones: PhoneFactory
) -> None:
    phone = await phones(PhoneScript(silent=True))  # answers and stays on the line
    worker = worker_factory()
    await worker.ready()
    setup_campaign(
        dialer_env,
        phone,
        "phone\n+12125550101\n",
        retry_policy={"max_attempts": 2, "failed_s": 3600, "jitter_s": 0},
    )
    with transaction(dialer_env.sessions) as s:
        queued = tick(s, utcnow()).queued
    dialer_env.send(queued[0])
    await phone.wait_for("state", state="answered", timeout_s=20)
    for _ in range(50):  # the worker stores "answered" right after the 200 OK
        with dialer_env.sessions() as s:
            attempt = s.get(CallAttempt, queued[0])
            assert attempt is not None
            if attempt.state == "answered":
                break
        await asyncio.sleep(0.1)
    assert attempt is not None and attempt.state == "answered"
    worker.kill()  # SIGKILL mid-call: no BYE, no outcome written
    await asyncio.sleep(3.5)  # the lease (3 s) runs out
    replacement = worker_factory()  # a new worker must not redial it
    await replacement.ready()
    with transaction(dialer_env.sessions) as s:
        report = tick(s, utcnow())
    assert report.resolved == [queued[0]] and report.queued == []
    with dialer_env.sessions() as s:
        attempt = s.get(CallAttempt, queued[0])
        contact = s.scalars(select(Contact)).one()
    assert attempt is not None and attempt.state == "failed"
    assert attempt.sip_reason is not None and attempt.sip_reason.startswith("worker_lost")
    assert contact.status == "pending" and contact.attempts_made == 1  # retry in an hour
    await asyncio.sleep(1.0)
    assert len(phone.find("incoming")) == 1


async def test_live_call_commands_reach_the_owning_worker(
    dialer_env: DialerEnv, worker_factory: Callable[[], CallWorker], phones: PhoneFactory
) -> None:
    from redis.asyncio import Redis

    from callfleet.dialer.commands import CallCommand, CommandFailed, send_command

    phone = await phones(PhoneScript(silent=True))  # answers and stays on the line
    worker = worker_factory()
    await worker.ready()
    setup_campaign(dialer_env, phone, "phone\n+12125550101\n")
    attempt_id, owner = await dial_first_attempt(dialer_env)
    queued = [attempt_id]
    redis_client = Redis.from_url(dialer_env.redis_url)
    try:
        await send_command(redis_client, owner, CallCommand(queued[0], "dtmf", {"digits": "42"}))
        await phone.wait_for("dtmf", digit="2")
        with pytest.raises(CommandFailed, match="no live call att_nope"):
            await send_command(redis_client, owner, CallCommand("att_nope", "hangup"))
        await send_command(redis_client, owner, CallCommand(queued[0], "hangup"))
        await wait_state(dialer_env, queued[0], "completed")
        with pytest.raises(CommandFailed, match="no call host ghost is listening"):
            await send_command(redis_client, "ghost", CallCommand(queued[0], "hangup"))
    finally:
        await redis_client.aclose()
    assert (await phone.wait_for("ended"))["reason"] == "completed"


async def test_inbound_call_is_routed_by_dialled_number(
    dialer_env: DialerEnv, worker_factory: Callable[[], CallWorker], phones: PhoneFactory
) -> None:
    from callfleet.dialer.models import AgentConfig

    with transaction(dialer_env.sessions) as s:
        tenant = Tenant(name="acme")
        s.add(tenant)
        s.flush()
        s.add(
            AgentConfig(
                tenant_id=tenant.id,
                name="support",
                inbound_numbers=["+18005550100"],
                definition={"max_duration_s": 1.0},
            )
        )
    worker = worker_factory()
    await worker.ready()
    port = sip_port(worker)
    caller = await phones(PhoneScript(silent=True), name="caller")
    await caller.send({"cmd": "dial", "to": f"sip:+18005550100@127.0.0.1:{port}"})
    ended = await caller.wait_for("ended", timeout_s=15)
    assert ended["reason"] == "completed" and 0.8 < ended["duration_s"] < 3
    await caller.send({"cmd": "dial", "to": f"sip:+18005559999@127.0.0.1:{port}"})
    rejected = await caller.wait_for("ended", where=lambda e: e["code"] == 404, timeout_s=15)
    assert rejected["reason"] == "invalid_number"
    await asyncio.sleep(0.5)
    with dialer_env.sessions() as s:
        attempts = s.scalars(select(CallAttempt)).all()
    assert [(a.direction, a.state, a.end_reason) for a in attempts] == [
        ("inbound", "completed", "completed")
    ]


async def test_sigterm_drains_live_calls_before_exit(
    dialer_env: DialerEnv, worker_factory: Callable[[], CallWorker], phones: PhoneFactory
) -> None:
    phone = await phones(PhoneScript(silent=True, hangup_after_s=3.0))
    worker = worker_factory()
    await worker.ready()
    setup_campaign(dialer_env, phone, "phone\n+12125550101\n")
    attempt_id, _ = await dial_first_attempt(dialer_env)
    queued = [attempt_id]
    worker.proc.send_signal(signal.SIGTERM)  # graceful: the call must finish first
    await asyncio.sleep(1.0)
    assert worker.proc.poll() is None, "the worker exited with a call up"
    code = await asyncio.to_thread(worker.proc.wait, 30)
    assert code == 0
    with dialer_env.sessions() as s:
        attempt = s.get(CallAttempt, queued[0])
    assert attempt is not None and attempt.state == "completed"
    assert (await phone.wait_for("ended"))["reason"] == "completed"


async def test_worker_supervisor_runs_and_restarts_call_hosts(dialer_env: DialerEnv) -> None:
    import psutil

    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "callfleet.cli",
        "worker",
        "--calls",
        "6",
        "--sip-port",
        "0",
        env=dialer_env.env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        supervisor = psutil.Process(proc.pid)

        async def hosts(n: int) -> list[psutil.Process]:
            for _ in range(150):
                children = [c for c in supervisor.children() if "celery" in " ".join(c.cmdline())]
                if len(children) == n:
                    return children
                await asyncio.sleep(0.2)
            raise TimeoutError(f"expected {n} call hosts, have {supervisor.children()}")

        first = await hosts(2)  # 6 calls at 4 per process (this PJSIP build)
        first[0].kill()
        await asyncio.sleep(3.0)
        second = await hosts(2)
        assert {p.pid for p in second} != {p.pid for p in first}  # the dead one was replaced
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 60) == 0
        assert not [p for p in second if p.is_running() and p.status() != "zombie"]
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def test_pacing_holds_5_cps_over_a_minute(
    dialer_env: DialerEnv, worker_factory: Callable[[], CallWorker], phones: PhoneFactory
) -> None:
    phone = await phones(PhoneScript(answer="reject", reject_code=486))
    worker = worker_factory()
    await worker.ready()
    numbers = "\n".join(f"+1212555{n:04d}" for n in range(1000, 1310))
    campaign_id = setup_campaign(
        dialer_env, phone, "phone\n" + numbers + "\n", retry_policy={"max_attempts": 1}
    )
    with dialer_env.sessions() as s:
        camp = s.get(Campaign, campaign_id)
        assert camp is not None and camp.max_cps == 5
    await run_ticks(dialer_env, campaign_id, timeout_s=120)
    times = sorted(e["t"] for e in phone.find("incoming"))
    assert len(times) == 310  # each number dialled exactly once
    window = [t for t in times if t - times[0] <= 60.0]
    rate = (len(window) - 1) / (window[-1] - window[0])
    print(f"\n[pacing] 5 CPS target: {rate:.3f} calls/s over {window[-1] - window[0]:.1f} s")
    assert abs(rate - 5.0) <= 0.25, f"{rate:.3f} calls/s is not within 5% of 5"


VOICE_AGENT = {
    "name": "reminder",
    "instructions": "You remind {first_name} of an appointment.",
    "first_message": "Hi {first_name}, this is Acme Dental. Can you make it on Tuesday?",
    "session": {"outbound_greeting": "immediate", "user_away_timeout": 30},
    "providers": {
        "vad": {"type": "silero", "sample_rate": 8000},
        "stt": {"type": "whisper"},
        "llm": {
            "type": "scripted",
            "script": {
                "fallback": "Sorry, could you say that again?",
                "intents": [
                    {
                        "name": "confirm",
                        "match": ["yes", "works", "sure"],
                        "reply": "Great, see you on Tuesday, {first_name}. Goodbye.",
                    }
                ],
            },
        },
        "tts": {"type": "piper"},
    },
}


def use_voice_agent(dialer_env: DialerEnv, campaign_id: str) -> str:
    """Gives the campaign the ``VOICE_AGENT`` config; returns its tenant's id."""
    from callfleet.dialer.models import AgentConfig

    with transaction(dialer_env.sessions) as s:
        campaign = s.get(Campaign, campaign_id)
        assert campaign is not None
        config = AgentConfig(tenant_id=campaign.tenant_id, name="reminder", definition=VOICE_AGENT)
        s.add(config)
        s.flush()
        campaign.agent_config_id = config.id
        return campaign.tenant_id


async def test_campaign_calls_are_answered_by_the_voice_agent(
    dialer_env: DialerEnv,
    worker_factory: Callable[[], CallWorker],
    phones: PhoneFactory,
    tmp_path: Path,
) -> None:
    from callfleet.agents.providers.piper import PiperTTS
    from callfleet.dialer.models import CallResult

    # The callee: silent while the greeting plays, then "Yes, Tuesday works for me."
    tts = PiperTTS()
    words = np.concatenate([f.samples async for f in tts.synthesize("Yes, Tuesday works for me.")])
    pause = np.zeros(int(9.0 * tts.sample_rate), np.int16)
    answer = tmp_path / "answer.wav"
    write_wav(answer, np.concatenate([pause, words]), tts.sample_rate)
    phone = await phones(PhoneScript(play=[str(answer)], hangup_after_s=16.0))
    campaign_id = setup_campaign(dialer_env, phone, "phone,first_name\n+12125550101,Dana\n")
    use_voice_agent(dialer_env, campaign_id)
    worker = worker_factory()
    await worker.ready()
    await run_ticks(dialer_env, campaign_id, timeout_s=60)
    with dialer_env.sessions() as s:
        result = s.scalars(select(CallResult)).one()
    said = [(t["role"], t["content"]) for t in result.transcript if t["type"] == "message"]
    assert said[0] == ("assistant", VOICE_AGENT["first_message"].replace("{first_name}", "Dana"))
    assert said[1][0] == "user" and "works" in said[1][1].lower()
    assert said[2] == ("assistant", "Great, see you on Tuesday, Dana. Goodbye.")
    turns = result.metrics["turns"]
    assert len(turns) == 1 and turns[0]["e2e_latency_ms"] > 0
    assert result.outcome == "completed" and result.metrics["close_reason"] == "call_ended"


async def test_a_voicemail_gets_the_campaigns_message_and_is_retried(
    dialer_env: DialerEnv,
    worker_factory: Callable[[], CallWorker],
    phones: PhoneFactory,
    tmp_path: Path,
) -> None:
    from callfleet.agents.providers.piper import PiperTTS
    from callfleet.dialer.models import CallResult, WebhookDelivery, WebhookSubscription
    from callfleet.media.tones import beep

    tts = PiperTTS()
    words = "Hi, this is Dana. I can't take your call. Please leave a message after the tone."
    greeting = np.concatenate([f.samples async for f in tts.synthesize(words)])
    pause = np.zeros(int(0.3 * tts.sample_rate), np.int16)
    tone = beep(1000, 400, tts.sample_rate, amplitude_dbfs=-12)
    machine = tmp_path / "voicemail.wav"
    write_wav(machine, np.concatenate([pause, greeting, pause, tone]), tts.sample_rate)
    phone = await phones(PhoneScript(play=[str(machine)], silent=False, hangup_after_s=30))
    campaign_id = setup_campaign(
        dialer_env,
        phone,
        "phone,first_name\n+12125550101,Dana\n",
        amd_action="voicemail",
        voicemail_message="Hi Dana, this is Acme Dental. Please call us back.",
        retry_policy={"max_attempts": 2, "voicemail_s": 1, "jitter_s": 0},
    )
    tenant_id = use_voice_agent(dialer_env, campaign_id)
    with transaction(dialer_env.sessions) as s:
        s.add(WebhookSubscription(tenant_id=tenant_id, url="http://127.0.0.1:9/h", secret="k"))
    dialer_env.env["CALLFLEET_RECORDINGS_DIR"] = str(tmp_path / "recordings")
    worker = worker_factory()
    await worker.ready()
    await run_ticks(dialer_env, campaign_id, timeout_s=90)
    with dialer_env.sessions() as s:
        results = s.scalars(select(CallResult)).all()
        contact = s.scalars(select(Contact)).one()
        deliveries = s.scalars(select(WebhookDelivery)).all()
    # A machine both times: retried once after voicemail_s, then done.
    assert [r.outcome for r in results] == ["voicemail", "voicemail"]
    assert (contact.status, contact.attempts_made, contact.last_outcome) == (
        "done",
        2,
        "voicemail",
    )
    assert [d.event_type for d in deliveries].count("call.voicemail") == 2
    hooks = {d.event_type: d.payload for d in deliveries}
    result = results[0]
    # Both directions were recorded: the greeting and beep, then our message.
    assert result.recording_path == str(tmp_path / "recordings" / f"{result.attempt_id}.wav")
    with wave.open(result.recording_path) as recording:
        assert recording.getnchannels() == 2
        assert recording.getnframes() / recording.getframerate() > 8.0
    assert result.amd["label"] == "voicemail" and result.amd["message_left"], result.amd
    beep_at_ms = 1000 * (2 * len(pause) + len(greeting)) / tts.sample_rate
    assert abs(result.amd["beep_ms"] - beep_at_ms) < 150  # (the phone plays from its answer)
    said = [t["content"] for t in result.transcript if t.get("role") == "assistant"]
    assert said == ["Hi Dana, this is Acme Dental. Please call us back."]
    assert hooks["call.voicemail"]["data"]["message_left"] is True
    assert hooks["call.completed"]["data"]["outcome"] == "voicemail"
