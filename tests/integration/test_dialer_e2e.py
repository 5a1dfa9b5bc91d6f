"""The dialer end to end: a Celery call-host worker process (real Redis broker, real
PostgreSQL), the scheduler tick, and a test phone playing a small phone network in
which each number behaves differently."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import pytest_asyncio
import redis
from celery import Celery
from sqlalchemy import select, text
from sqlalchemy.orm import Session, sessionmaker

from callfleet.dialer.campaigns import control
from callfleet.dialer.contacts import csv_rows, import_contacts
from callfleet.dialer.db import make_engine, make_sessionmaker, migrate, transaction, utcnow
from callfleet.dialer.models import (
    CallAttempt,
    Campaign,
    CampaignStatus,
    Contact,
    Tenant,
    TrunkRecord,
)
from callfleet.dialer.scheduler import tick
from callfleet.sip.testing import PhoneScript, TestPhone
from tests.conftest import PhoneFactory
from tests.peers.postgres import PostgresServer
from tests.peers.redis import RedisServer

pytestmark = pytest.mark.asyncio(loop_scope="session")

OPEN_ALL_DAY = {d: [["00:00", "24:00"]] for d in ("mon", "tue", "wed", "thu", "fri", "sat", "sun")}


@dataclass
class DialerEnv:
    db_url: str
    redis_url: str
    env: dict[str, str]
    sessions: sessionmaker[Session]
    sender: Celery

    def send(self, attempt_id: str) -> None:
        self.sender.send_task(
            "callfleet.workers.tasks.place_call", args=[attempt_id], queue="calls"
        )


@pytest.fixture
def dialer_env(
    postgres_server: PostgresServer, redis_server: RedisServer, request: pytest.FixtureRequest
) -> Iterator[DialerEnv]:
    name = f"e2e_{abs(hash(request.node.nodeid)) % 10**10}"
    admin = make_engine(postgres_server.url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f"DROP DATABASE IF EXISTS {name}"))
        conn.execute(text(f"CREATE DATABASE {name}"))
    admin.dispose()
    db_url = postgres_server.url.rsplit("/", 1)[0] + f"/{name}"
    migrate(db_url)
    redis.Redis.from_url(redis_server.url).flushall()
    env = {
        **os.environ,
        "CALLFLEET_DATABASE_URL": db_url,
        "CALLFLEET_REDIS_URL": redis_server.url,
        "CALLFLEET_SIP_BIND": "127.0.0.1",
        "CALLFLEET_SIP_PORT": "0",
        "CALLFLEET_RING_TIMEOUT_S": "3",
        "CALLFLEET_CALL_LEASE_S": "3",
        "CALLFLEET_PACING_WAIT_S": "20",
    }
    engine = make_engine(db_url)
    sender = Celery(broker=redis_server.url)
    yield DialerEnv(db_url, redis_server.url, env, make_sessionmaker(engine), sender)
    engine.dispose()


class CallWorker:
    """A call-host Celery worker process on the calls queue."""

    def __init__(self, env: dict[str, str], log_path: Path) -> None:
        self.log_path = log_path
        self._log = open(log_path, "wb")  # closed in stop()
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "callfleet.workers.celery_app",
                "worker",
                "-Q",
                "calls",
                "-P",
                "threads",
                "-c",
                "4",
                "-n",
                f"callhost-{os.getpid()}@test",
                "--without-gossip",
                "--without-mingle",
                "--without-heartbeat",
                "--loglevel",
                "INFO",
            ],
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")

    async def ready(self, timeout_s: float = 30) -> None:
        deadline = time.monotonic() + timeout_s
        while " ready." not in self.log_text():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"call worker did not start:\n{self.log_text()[-3000:]}")
            await asyncio.sleep(0.2)

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()


@pytest_asyncio.fixture(loop_scope="session")
async def worker_factory(
    dialer_env: DialerEnv, tmp_path: Path
) -> AsyncIterator[Callable[[], CallWorker]]:
    workers: list[CallWorker] = []

    def make() -> CallWorker:
        worker = CallWorker(dialer_env.env, tmp_path / f"worker{len(workers)}.log")
        workers.append(worker)
        return worker

    yield make
    for worker in workers:
        await asyncio.to_thread(worker.stop)


def _setup_campaign(env: DialerEnv, phone: TestPhone, contacts_csv: str, **campaign: object) -> str:
    with transaction(env.sessions) as s:
        tenant = Tenant(name="acme")
        s.add(tenant)
        s.flush()
        trunk = TrunkRecord(
            tenant_id=tenant.id,
            name="sim",
            config={"host": f"127.0.0.1:{phone.ports['udp']}"},
            max_cps=50,
            max_concurrent=8,
        )
        s.add(trunk)
        s.flush()
        camp = Campaign(
            tenant_id=tenant.id,
            name="e2e",
            trunk_id=trunk.id,
            calling_window=OPEN_ALL_DAY,
            max_cps=5,
            max_concurrent=4,
            **campaign,
        )
        s.add(camp)
        s.flush()
        import_contacts(s, camp, csv_rows(contacts_csv))
        control(s, camp.id, "start", utcnow())
        return camp.id


async def _run_ticks(env: DialerEnv, campaign_id: str, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with transaction(env.sessions) as s:
            report = tick(s, utcnow())
        for attempt_id in report.queued + report.requeued:
            env.send(attempt_id)
        with env.sessions() as s:
            camp = s.get(Campaign, campaign_id)
            assert camp is not None
            if camp.status == CampaignStatus.COMPLETED:
                return
        await asyncio.sleep(0.3)
    raise TimeoutError(f"campaign {campaign_id} did not complete in {timeout_s} s")


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
    campaign_id = _setup_campaign(
        dialer_env,
        phone,
        MIXED,
        retry_policy={"max_attempts": 2, "busy_s": 1, "no_answer_s": 1, "jitter_s": 0},
    )
    await _run_ticks(dialer_env, campaign_id, timeout_s=60)
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
    campaign_id = _setup_campaign(dialer_env, phone, "phone\n+12125550101\n")
    with transaction(dialer_env.sessions) as s:
        queued = tick(s, utcnow()).queued
    assert len(queued) == 1
    for _ in range(3):  # the broker delivers the same task three times
        dialer_env.send(queued[0])
    await _run_ticks(dialer_env, campaign_id, timeout_s=30)
    await asyncio.sleep(1.0)
    assert len(phone.find("incoming")) == 1
    assert (
        worker.log_text().count("not queued: nothing to do")
        + worker.log_text().count("claimed by another worker")
        == 2
    )


async def test_killed_worker_mid_call_is_resolved_without_redial(
    dialer_env: DialerEnv, worker_factory: Callable[[], CallWorker], phones: PhoneFactory
) -> None:
    phone = await phones(PhoneScript(silent=True))  # answers and stays on the line
    worker = worker_factory()
    await worker.ready()
    _setup_campaign(
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
    assert attempt.state == "answered"
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


def _sip_port(worker: CallWorker) -> int:
    import re

    match = re.search(r"call host \S+ up on SIP port (\d+)", worker.log_text())
    assert match, worker.log_text()[-2000:]
    return int(match.group(1))


async def _wait_state(env: DialerEnv, attempt_id: str, wanted: str, timeout_s: float = 10) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with env.sessions() as s:
            attempt = s.get(CallAttempt, attempt_id)
            if attempt is not None and attempt.state == wanted:
                return
        await asyncio.sleep(0.1)
    raise TimeoutError(f"attempt {attempt_id} never reached {wanted}")


async def test_live_call_commands_reach_the_owning_worker(
    dialer_env: DialerEnv, worker_factory: Callable[[], CallWorker], phones: PhoneFactory
) -> None:
    from redis.asyncio import Redis

    from callfleet.dialer.commands import CallCommand, CommandFailed, send_command

    phone = await phones(PhoneScript(silent=True))  # answers and stays on the line
    worker = worker_factory()
    await worker.ready()
    _setup_campaign(dialer_env, phone, "phone\n+12125550101\n")
    with transaction(dialer_env.sessions) as s:
        queued = tick(s, utcnow()).queued
    dialer_env.send(queued[0])
    await _wait_state(dialer_env, queued[0], "answered")
    with dialer_env.sessions() as s:
        owner = s.get(CallAttempt, queued[0]).worker_id  # type: ignore[union-attr]
    assert owner is not None
    redis_client = Redis.from_url(dialer_env.redis_url)
    try:
        await send_command(redis_client, owner, CallCommand(queued[0], "dtmf", {"digits": "42"}))
        await phone.wait_for("dtmf", digit="2")
        with pytest.raises(CommandFailed, match="no live call att_nope"):
            await send_command(redis_client, owner, CallCommand("att_nope", "hangup"))
        await send_command(redis_client, owner, CallCommand(queued[0], "hangup"))
        await _wait_state(dialer_env, queued[0], "completed")
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
    port = _sip_port(worker)
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
    _setup_campaign(dialer_env, phone, "phone\n+12125550101\n")
    with transaction(dialer_env.sessions) as s:
        queued = tick(s, utcnow()).queued
    dialer_env.send(queued[0])
    await _wait_state(dialer_env, queued[0], "answered")
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
    campaign_id = _setup_campaign(
        dialer_env, phone, "phone\n" + numbers + "\n", retry_policy={"max_attempts": 1}
    )
    with dialer_env.sessions() as s:
        camp = s.get(Campaign, campaign_id)
        assert camp is not None and camp.max_cps == 5
    await _run_ticks(dialer_env, campaign_id, timeout_s=120)
    times = sorted(e["t"] for e in phone.find("incoming"))
    assert len(times) == 310  # each number dialled exactly once
    window = [t for t in times if t - times[0] <= 60.0]
    rate = (len(window) - 1) / (window[-1] - window[0])
    print(f"\n[pacing] 5 CPS target: {rate:.3f} calls/s over {window[-1] - window[0]:.1f} s")
    assert abs(rate - 5.0) <= 0.25, f"{rate:.3f} calls/s is not within 5% of 5"
