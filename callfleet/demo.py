"""``callfleet demo``: the whole system on one machine, on its embedded defaults.

Part 1 calls a simulated phone network directly (SIP and RTP between processes).
Part 2 runs a real campaign: a private Redis, a SQLite database, a call-host Celery
worker, test phones answering as a small phone network (one answers, one is busy, one
never answers, one does not exist), the scheduler with retries, and a local webhook
receiver that checks every signature. Exits non-zero if anything differs from what
the phones were told to do.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from callfleet.sip.testing.demo import run_demo as run_sip_demo
from callfleet.workers.supervisor import call_host_command

Out = Callable[[str], None]
SECRET = "demo-secret"
NETWORK: dict[str, tuple[dict[str, object], str, int]] = {
    # Answers and talks with the voice agent (its words are added in run_campaign_demo).
    "+12125550101": ({"silent": False, "hangup_after_s": 20.0}, "completed", 1),
    "+12125550102": ({"answer": "reject", "reject_code": 486}, "busy", 2),
    "+12125550103": ({"answer": "ignore", "ring_s": 0.1}, "no_answer", 2),
    "+12125550104": ({"answer": "reject", "reject_code": 404}, "invalid_number", 1),
}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


#: The campaign's voice agent: offline models (Silero, Whisper, Piper) and a scripted
#: dialogue, with the contact's name in its greeting.
VOICE_AGENT: dict[str, object] = {
    "name": "reminder",
    "instructions": "You remind {name} of their appointment on Tuesday at 3 pm.",
    "first_message": "Hi {name}, this is Acme Dental about your appointment on Tuesday "
    "at 3 pm. Can you still make it?",
    "session": {"outbound_greeting": "immediate", "user_away_timeout": 30},
    "providers": {
        "vad": {"type": "silero", "sample_rate": 8000},
        "stt": {"type": "whisper"},
        "tts": {"type": "piper"},
        "llm": {
            "type": "scripted",
            "script": {
                "fallback": "Sorry, I didn't catch that. Can you make it on Tuesday?",
                "intents": [
                    {
                        "name": "confirm",
                        "match": ["yes", "i can", "sure", "make it"],
                        "reply": "Great, we will see you on Tuesday at 3 pm. Goodbye!",
                    },
                    {
                        "name": "decline",
                        "match": ["no", "cannot", "can't"],
                        "reply": "No problem, our office will call you to reschedule.",
                    },
                ],
            },
        },
    },
}
#: What the answering contact says, and when (s from the answer): "hello?" (which tells
#: answering-machine detection a person picked up), then the answer to the greeting.
CALLEE_LINES = ((0.5, "Hello?"), (13.0, "Yes, I can make it."))


def _callee_wav(path: Path) -> None:
    """The answering contact's side of the call, as one WAV file."""
    import numpy as np

    from callfleet.agents.providers.piper import PiperTTS
    from callfleet.media.wav import write_wav

    async def speak() -> tuple[list[np.ndarray], int]:
        tts = PiperTTS(length_scale=1.1)
        lines = []
        for _, text in CALLEE_LINES:
            lines.append(np.concatenate([f.samples async for f in tts.synthesize(text)]))
        return lines, tts.sample_rate

    lines, rate = asyncio.run(speak())
    audio = np.zeros(0, np.int16)
    for (at_s, _), words in zip(CALLEE_LINES, lines, strict=True):
        audio = np.concatenate([audio, np.zeros(int(at_s * rate) - len(audio), np.int16), words])
    write_wav(path, audio, rate)


class WebhookReceiver:
    """A tiny HTTP server that verifies each webhook's signature and keeps the events."""

    def __init__(self, secret: str = SECRET) -> None:
        self.secret = secret
        self.events: list[dict[str, object]] = []
        self.bad_signatures = 0
        self.port = _free_port()
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", self.port)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        from callfleet.dialer.webhook_wire import SignatureError, WebhookEvent, verify

        head = await reader.readuntil(b"\r\n\r\n")
        headers = {}
        for line in head.decode("latin-1").split("\r\n")[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        body = await reader.readexactly(int(headers.get("content-length", "0")))
        try:
            verify(self.secret, headers.get("x-callfleet-signature"), body, time.time())
            self.events.append(WebhookEvent.parse(body).to_dict())
            status = b"200 OK"
        except SignatureError:
            self.bad_signatures += 1
            status = b"401 Unauthorized"
        writer.write(b"HTTP/1.1 " + status + b"\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
        await writer.drain()
        writer.close()


def _start_processes(
    workdir: Path, redis_server: str, redis_port: int, env: dict[str, str]
) -> tuple[subprocess.Popen[bytes], subprocess.Popen[bytes], Path]:
    """A private redis-server and one call-host Celery worker (logging to a file)."""
    redis_proc = subprocess.Popen(
        [
            redis_server,
            "--port",
            str(redis_port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(workdir),
        ],
        stdout=subprocess.DEVNULL,
    )
    worker_log = workdir / "worker.log"
    with open(worker_log, "wb") as log_file:
        worker = subprocess.Popen(
            call_host_command("demo-callhost@%h", 4),
            env=env,
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
    return redis_proc, worker, worker_log


def _stop_processes(redis_proc: subprocess.Popen[bytes], worker: subprocess.Popen[bytes]) -> None:
    worker.send_signal(signal.SIGTERM)  # drains: live calls finish first
    worker.wait(30)
    redis_proc.terminate()
    redis_proc.wait(10)


async def run_campaign_demo(out: Out) -> bool:
    redis_server = shutil.which("redis-server")
    if redis_server is None:
        out("\n(part 2 skipped: no redis-server on this machine; apt-get install redis-server)")
        return True
    import httpx
    from sqlalchemy import select

    from callfleet.dialer.campaigns import control
    from callfleet.dialer.contacts import csv_rows, import_contacts
    from callfleet.dialer.db import make_engine, make_sessionmaker, migrate, transaction, utcnow
    from callfleet.dialer.models import (
        AgentConfig,
        CallResult,
        Campaign,
        CampaignStatus,
        Contact,
        Tenant,
        TrunkRecord,
        WebhookSubscription,
    )
    from callfleet.dialer.scheduler import tick
    from callfleet.dialer.webhooks import deliver_due
    from callfleet.sip.testing import PhoneScript, TestPhone

    workdir = Path(tempfile.mkdtemp(prefix="callfleet-campaign-"))
    redis_port = _free_port()
    db_url = f"sqlite:///{workdir / 'callfleet.db'}"
    migrate(db_url)
    sessions = make_sessionmaker(make_engine(db_url))
    env = {
        **os.environ,
        "CALLFLEET_DATABASE_URL": db_url,
        "CALLFLEET_REDIS_URL": f"redis://127.0.0.1:{redis_port}/0",
        "CALLFLEET_SIP_BIND": "127.0.0.1",
        "CALLFLEET_SIP_PORT": "0",
        "CALLFLEET_RING_TIMEOUT_S": "3",
    }
    from celery import Celery

    sender = Celery(broker=env["CALLFLEET_REDIS_URL"])
    receiver = WebhookReceiver()
    await receiver.start()
    callee_wav = workdir / "callee.wav"
    await asyncio.to_thread(_callee_wav, callee_wav)
    network: dict[str, dict[str, object]] = {n: dict(o) for n, (o, _, _) in NETWORK.items()}
    network["+12125550101"]["play"] = [str(callee_wav)]
    script = PhoneScript(silent=True, hangup_after_s=1.5, by_callee=network)
    phone = await TestPhone(script, name="network").start()
    redis_proc: subprocess.Popen[bytes] | None = None
    ok = True
    try:
        with transaction(sessions) as s:
            tenant = Tenant(name="demo")
            s.add(tenant)
            s.flush()
            trunk = TrunkRecord(
                tenant_id=tenant.id,
                name="simulated",
                config={"host": f"127.0.0.1:{phone.ports['udp']}"},
            )
            agent = AgentConfig(tenant_id=tenant.id, name="reminder", definition=VOICE_AGENT)
            s.add_all([trunk, agent])
            s.add(
                WebhookSubscription(
                    tenant_id=tenant.id,
                    secret=SECRET,
                    url=f"http://127.0.0.1:{receiver.port}/hooks",
                )
            )
            s.flush()
            campaign = Campaign(
                tenant_id=tenant.id,
                name="demo reminders",
                trunk_id=trunk.id,
                agent_config_id=agent.id,
                max_cps=2,
                max_concurrent=4,
                calling_window={
                    d: [["00:00", "24:00"]]
                    for d in ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
                },
                retry_policy={"max_attempts": 2, "busy_s": 2, "no_answer_s": 2, "jitter_s": 0},
            )
            s.add(campaign)
            s.flush()
            rows = "phone,name\n" + "".join(f"{n},contact {i}\n" for i, n in enumerate(NETWORK))
            report = import_contacts(s, campaign, csv_rows(rows + "not-a-number,broken\n"))
            control(s, campaign.id, "start", utcnow())
            campaign_id = campaign.id
        # The call host starts after the agent config exists, so that it loads the
        # agent's models while it starts up.
        redis_proc, worker, worker_log = _start_processes(workdir, redis_server, redis_port, env)
        for _ in range(150):
            if " ready." in worker_log.read_text(errors="replace"):
                break
            await asyncio.sleep(0.2)
        out(
            f"\n== campaign: {report.imported} contacts imported, "
            f"{len(report.rejected)} rejected ({report.rejected[0].reason})"
        )
        deadline = time.monotonic() + 90
        async with httpx.AsyncClient() as client:
            while time.monotonic() < deadline:
                with transaction(sessions) as s:
                    result = tick(s, utcnow())
                for attempt_id in result.queued + result.requeued:
                    sender.send_task(
                        "callfleet.workers.tasks.place_call", args=[attempt_id], queue="calls"
                    )
                    out(f"   queued attempt {attempt_id}")
                await deliver_due(sessions, client, utcnow())
                with sessions() as s:
                    camp = s.get(Campaign, campaign_id)
                    assert camp is not None
                    done = camp.status == CampaignStatus.COMPLETED
                if done and not result.queued:
                    break
                await asyncio.sleep(0.5)
            await deliver_due(sessions, client, utcnow())
        with sessions() as s:
            contacts = {c.phone_e164: c for c in s.scalars(select(Contact))}
        out("\n   number          attempts  outcome         expected")
        for number, (_, expected, attempts) in NETWORK.items():
            c = contacts[number]
            mark = "" if (c.last_outcome, c.attempts_made) == (expected, attempts) else "  !!"
            ok = ok and not mark
            out(
                f"   {number}  {c.attempts_made:>8}  {c.last_outcome or '-':<15} "
                f"{expected} x{attempts}{mark}"
            )
        types = [str(e["type"]) for e in receiver.events]
        out(
            f"\n   webhooks received and verified: {len(types)} "
            f"({types.count('call.completed')} call.completed, "
            f"{types.count('campaign.completed')} campaign.completed), "
            f"bad signatures: {receiver.bad_signatures}"
        )
        ok = ok and done and types.count("call.completed") == 6 and not receiver.bad_signatures
        with sessions() as s:
            answered = contacts["+12125550101"]
            talk = s.scalars(
                select(CallResult).where(CallResult.outcome == "completed")
            ).one_or_none()
        out(f"\n   the voice agent's call with {answered.phone_e164} ({answered.name}):")
        said = [
            (t["role"], t["content"])
            for t in (talk.transcript if talk is not None else [])
            if t["type"] == "message"
        ]
        for role, text in said:
            out(f"     {'agent' if role == 'assistant' else 'user '}: {text}")
        turns = talk.metrics.get("turns", []) if talk is not None else []
        for turn in turns:
            out(
                f"     (reply latency: {turn['e2e_latency_ms']:.0f} ms from the end of speech, "
                f"transcript {turn['stt_delay_ms']:.0f} ms, first audio "
                f"{turn['tts_ttfb_ms']:.0f} ms after the text)"
            )
        confirmed = [t for r, t in said if r == "assistant" and "see you on Tuesday" in t]
        ok = ok and len(said) >= 3 and bool(confirmed)
    finally:
        await phone.stop()
        await receiver.stop()
        if redis_proc is not None:
            await asyncio.to_thread(_stop_processes, redis_proc, worker)
    return ok


async def run(out: Out) -> bool:
    out("== part 1: calls into a simulated phone network")
    sip_ok = await run_sip_demo(out)
    out("\n== part 2: a campaign through the dialer")
    campaign_ok = await run_campaign_demo(out)
    ok = sip_ok and campaign_ok
    out("\ndemo " + ("passed" if ok else "FAILED"))
    return ok


def main() -> int:
    return 0 if asyncio.run(run(lambda line: print(line, flush=True))) else 1
