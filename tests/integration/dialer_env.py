"""Machinery for end-to-end dialer tests: a fresh PostgreSQL database and a flushed
private Redis (``dialer_env``), call-host Celery worker processes (``worker_factory``),
and helpers to set up a campaign and drive the scheduler.

The two fixtures are registered for tests/integration in its conftest.py; a test
module elsewhere imports them itself (never both in one directory tree: pytest would
create duplicates)."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import pytest_asyncio
import redis
from celery import Celery
from sqlalchemy.orm import Session, sessionmaker

from callfleet.dialer.campaigns import control
from callfleet.dialer.contacts import csv_rows, import_contacts
from callfleet.dialer.db import make_engine, make_sessionmaker, migrate, transaction, utcnow
from callfleet.dialer.models import CallAttempt, Campaign, CampaignStatus, Tenant, TrunkRecord
from callfleet.dialer.scheduler import tick
from callfleet.sip.testing import TestPhone
from callfleet.workers.supervisor import call_host_command
from tests.peers.postgres import PostgresServer
from tests.peers.redis import RedisServer

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
    """A freshly migrated database on the private PostgreSQL, a flushed private Redis,
    and the environment a call-host worker needs to use them."""
    db_url = postgres_server.fresh_database(f"e2e_{abs(hash(request.node.nodeid)) % 10**10}")
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
            call_host_command(f"callhost-{os.getpid()}-{log_path.stem}@test", 4),
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
    """``worker_factory()`` starts a call worker (``await worker.ready()`` before use);
    all are stopped after the test."""
    workers: list[CallWorker] = []

    def make() -> CallWorker:
        worker = CallWorker(dialer_env.env, tmp_path / f"worker{len(workers)}.log")
        workers.append(worker)
        return worker

    yield make
    for worker in workers:
        await asyncio.to_thread(worker.stop)


def setup_campaign(
    env: DialerEnv,
    phone: TestPhone,
    contacts_csv: str,
    *,
    trunk_max_cps: float = 50,
    trunk_max_concurrent: int = 8,
    **campaign: object,
) -> str:
    """A tenant, a trunk pointing at ``phone``, and a started campaign (open all day,
    5 CPS, 4 concurrent unless ``campaign`` says otherwise) with ``contacts_csv``
    imported; returns the campaign id."""
    settings: dict[str, object] = {
        "name": "e2e",
        "calling_window": OPEN_ALL_DAY,
        "max_cps": 5,
        "max_concurrent": 4,
        **campaign,
    }
    with transaction(env.sessions) as s:
        tenant = Tenant(name="acme")
        s.add(tenant)
        s.flush()
        trunk = TrunkRecord(
            tenant_id=tenant.id,
            name="sim",
            config={"host": f"127.0.0.1:{phone.ports['udp']}"},
            max_cps=trunk_max_cps,
            max_concurrent=trunk_max_concurrent,
        )
        s.add(trunk)
        s.flush()
        camp = Campaign(tenant_id=tenant.id, trunk_id=trunk.id, **settings)
        s.add(camp)
        s.flush()
        import_contacts(s, camp, csv_rows(contacts_csv))
        control(s, camp.id, "start", utcnow())
        return camp.id


async def run_ticks(env: DialerEnv, campaign_id: str, timeout_s: float) -> None:
    """Run the scheduler tick every 0.3 s, sending what it queues to the call workers,
    until the campaign completes."""
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


def sip_port(worker: CallWorker) -> int:
    """The SIP port a started call worker listens on (from its log)."""
    match = re.search(r"call host \S+ up on SIP port (\d+)", worker.log_text())
    assert match, worker.log_text()[-2000:]
    return int(match.group(1))


async def wait_state(env: DialerEnv, attempt_id: str, wanted: str, timeout_s: float = 10) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with env.sessions() as s:
            attempt = s.get(CallAttempt, attempt_id)
            if attempt is not None and attempt.state == wanted:
                return
        await asyncio.sleep(0.1)
    raise TimeoutError(f"attempt {attempt_id} never reached {wanted}")


async def dial_first_attempt(env: DialerEnv) -> tuple[str, str]:
    """Queue the (single) due attempt of the running campaign, send it to the call host
    and wait until the call is answered: returns the attempt id and its owning worker."""
    with transaction(env.sessions) as s:
        queued = tick(s, utcnow()).queued
    assert len(queued) == 1, queued
    env.send(queued[0])
    await wait_state(env, queued[0], "answered")
    with env.sessions() as s:
        attempt = s.get(CallAttempt, queued[0])
        assert attempt is not None and attempt.worker_id is not None
        return attempt.id, attempt.worker_id
