"""Dialer benchmarks: contact import, scheduler decisions, dispatch latency.

Run with ``make bench`` (or ``pytest -s -m benchmark tests/benchmarks/test_dialer_bench.py``).
Each benchmark prints one ``[dialer bench]`` line per backend or scenario with the
median and spread of repeated runs. Figures, not assertions (the few asserts only check
that the benchmark measured what it claims to).

- import: 100 000 valid contacts (8 US area codes, four number formats, a name and two
  variable columns) plus 1 000 bad rows, parsed by ``csv_rows`` and stored by
  ``import_contacts`` in one transaction, into a fresh database each repeat, on SQLite
  (a file) and on the private PostgreSQL. Rows/s, seconds, peak RSS growth (sampled).
- scheduler: ``schedule_campaign(limit=500)`` over a running campaign of 20 000
  contacts (New York, Los Angeles, London, Kolkata) at an instant when half of them
  are inside their calling window, batch after batch (each committed) until nothing is
  due. Contacts examined per second per batch.
- dispatch: due (``CallAttempt.due_at``, set by the scheduler) and task sent → INVITE
  at the test phone, through a real call-host Celery worker, Redis and PostgreSQL.
"""

from __future__ import annotations

import asyncio
import gc
import itertools
import multiprocessing
import random
import statistics
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

import psutil
import pytest
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session, sessionmaker

from callfleet.dialer.campaigns import control
from callfleet.dialer.contacts import csv_rows, import_contacts, parse_row
from callfleet.dialer.db import make_engine, make_sessionmaker, migrate, transaction, utcnow
from callfleet.dialer.models import CallAttempt, Campaign, CampaignStatus, Contact, Tenant
from callfleet.dialer.scheduler import schedule_campaign, tick
from callfleet.sip.testing import PhoneScript
from tests.conftest import PhoneFactory

# dialer_env and worker_factory are fixtures. They are registered for tests/integration
# only (its conftest.py), which does not reach this directory, so this module imports
# them itself: each is still registered once for any one test.
from tests.integration.dialer_env import (  # noqa: F401
    CallWorker,
    DialerEnv,
    dialer_env,
    setup_campaign,
    worker_factory,
)
from tests.peers.postgres import PostgresServer

pytestmark = [pytest.mark.benchmark, pytest.mark.asyncio(loop_scope="session")]

BACKENDS = ["sqlite", "postgresql"]

IMPORT_CONTACTS = 100_000
IMPORT_BAD_EVERY = 100  # one bad row after every 100 good ones: 1 000 bad rows
IMPORT_REPEATS = 3
IMPORT_BUDGET_S = 120.0  # per backend: fewer repeats when three would not fit

SCHEDULE_CONTACTS = 20_000
SCHEDULE_BATCH = 500
# 2026-11-23 is a Monday. 15:45 UTC = 10:45 New York and 15:45 London (inside the
# default 08:00-21:00 window), 07:45 Los Angeles and 21:15 Kolkata (outside it).
SCHEDULE_NOW = datetime(2026, 11, 23, 15, 45, tzinfo=UTC)

DISPATCH_CONTACTS = 60
DISPATCH_RUNS = 3
DISPATCH_CPS = 20.0
DISPATCH_CONCURRENT = 4

US_AREAS = ("212", "617", "305", "312", "713", "310", "415", "206")  # ET, CT, PT
FIRST_NAMES = ("Ada", "Ben", "Chloé", "Dev", "Eve", "Farid", "Grace", "Hiro", "Inés", "Jo")
LAST_NAMES = ("Okafor", "Smith", "García", "Nguyen", "Patel", "Kowalski", "Müller", "Kim")
BAD_PHONES = ("not a number", "12345", "", "+1 099 555 0100", "+1 212 555 01")


def _pct(values: Sequence[float], q: int) -> float:
    """The q-th percentile (inclusive method; fine for small samples)."""
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1]


def _postgres(request: pytest.FixtureRequest, backend: str) -> PostgresServer | None:
    """The session's private PostgreSQL for the "postgresql" backend (started on first
    use), ``None`` for SQLite."""
    if backend == "sqlite":
        return None
    server: PostgresServer = request.getfixturevalue("postgres_server")
    return server


def _fresh_db_url(server: PostgresServer | None, tmp_path: Path, tag: str) -> str:
    """A new, migrated database: a SQLite file in tmp_path (``server`` is None), or a
    new database on the private PostgreSQL (as tests/integration/conftest.py's
    ``db_url`` makes it)."""
    if server is None:
        url = f"sqlite:///{tmp_path / f'{tag}.db'}"
    else:
        url = server.fresh_database(f"bench_{tag}")
    migrate(url)
    return url


def _backend_name(engine: Engine) -> str:
    with engine.connect():  # server_version_info is known once connected
        version = ".".join(str(v) for v in engine.dialect.server_version_info or ())
    return f"{engine.dialect.name} {version}"


def _new_campaign(sessions: sessionmaker[Session], **settings: object) -> str:
    with transaction(sessions) as s:
        tenant = Tenant(name="bench")
        s.add(tenant)
        s.flush()
        camp = Campaign(tenant_id=tenant.id, name="bench", default_region="US", **settings)
        s.add(camp)
        s.flush()
        return camp.id


class PeakRss:
    """Samples this process's RSS every 5 ms in a thread; ``growth_mb`` is the peak
    above the RSS at entry."""

    def __init__(self, interval_s: float = 0.005) -> None:
        self._proc = psutil.Process()
        self._interval_s = interval_s
        self._stop = threading.Event()
        self.base = self.peak = self._proc.memory_info().rss
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self._interval_s):
            self.peak = max(self.peak, self._proc.memory_info().rss)

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._proc.memory_info().rss)

    @property
    def growth_mb(self) -> float:
        return (self.peak - self.base) / 2**20


# -- contact import -----------------------------------------------------------------------


def import_csv(contacts: int = IMPORT_CONTACTS, seed: int = 7) -> tuple[str, int]:
    """CSV text with ``contacts`` valid, distinct US numbers and one bad row after every
    ``IMPORT_BAD_EVERY`` good ones; returns (text, number of bad rows)."""
    rng = random.Random(seed)
    lines = ["phone,name,account,balance"]
    bad = 0
    for i in range(contacts):
        area = US_AREAS[i % len(US_AREAS)]
        exchange = 230 + (i // len(US_AREAS)) % 20
        line = i // (len(US_AREAS) * 20)
        digits = f"{area}{exchange}{line:04d}"
        phone = (
            f"+1{digits}",
            f"({area}) {exchange}-{line:04d}",
            f"{area}-{exchange}-{line:04d}",
            f"1 {area} {exchange} {line:04d}",
        )[i % 4]
        name = f"{rng.choice(FIRST_NAMES)} {rng.choice(LAST_NAMES)}"
        lines.append(f'"{phone}",{name},AC{i:07d},{rng.randrange(0, 100_000) / 100:.2f}')
        if i % IMPORT_BAD_EVERY == IMPORT_BAD_EVERY - 1:
            kind = (i // IMPORT_BAD_EVERY) % (len(BAD_PHONES) + 1)
            if kind == len(BAD_PHONES):
                lines.append(f"+1{digits},{name},AC{i:07d},1.00,surplus")  # extra field
            else:
                lines.append(f'"{BAD_PHONES[kind]}",{name},AC{i:07d},1.00')
            bad += 1
    return "\n".join(lines) + "\n", bad


@pytest.fixture(scope="module")
def import_text() -> tuple[str, int]:
    return import_csv()


def _import_once(url: str, campaign_id: str, csv_text: str) -> tuple[float, float, int, int, int]:
    """One measured import, in a fresh process: (seconds, peak RSS growth MB, imported,
    rejected, suppressed)."""
    engine = make_engine(url)
    sessions = make_sessionmaker(engine)
    for index, raw in enumerate(itertools.islice(csv_rows(csv_text), 50), start=1):
        parse_row(raw, index, "US")  # load phonenumbers' metadata before measuring
    with engine.connect():  # and open the pooled connection
        pass
    gc.collect()
    with PeakRss() as rss:
        t0 = time.perf_counter()
        with transaction(sessions) as s:
            camp = s.get(Campaign, campaign_id)
            assert camp is not None
            report = import_contacts(s, camp, csv_rows(csv_text))
        elapsed = time.perf_counter() - t0
    engine.dispose()
    return elapsed, rss.growth_mb, report.imported, len(report.rejected), len(report.suppressed)


@pytest.mark.timeout(420)
@pytest.mark.parametrize("backend", BACKENDS)
async def test_contact_import(
    backend: str,
    import_text: tuple[str, int],
    request: pytest.FixtureRequest,
    tmp_path: Path,
) -> None:
    server = _postgres(request, backend)
    csv_text, bad_rows = import_text
    seconds: list[float] = []
    growth_mb: list[float] = []
    name = "?"
    started = time.monotonic()
    loop = asyncio.get_running_loop()
    # Each repeat imports in a fresh (spawned) process: in a process that has imported
    # before, the allocator reuses what it kept and hides the RSS growth.
    spawn = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=1, mp_context=spawn, max_tasks_per_child=1) as pool:
        while len(seconds) < IMPORT_REPEATS:
            if seconds and time.monotonic() - started + max(seconds) > IMPORT_BUDGET_S:
                break
            url = await asyncio.to_thread(_fresh_db_url, server, tmp_path, f"import{len(seconds)}")
            engine = make_engine(url)
            name = _backend_name(engine)
            campaign_id = _new_campaign(make_sessionmaker(engine))
            engine.dispose()
            elapsed, growth, imported, rejected, suppressed = await loop.run_in_executor(
                pool, _import_once, url, campaign_id, csv_text
            )
            assert imported == IMPORT_CONTACTS and rejected == bad_rows and not suppressed
            seconds.append(elapsed)
            growth_mb.append(growth)
    rows = IMPORT_CONTACTS + bad_rows
    rates = [rows / s for s in seconds]
    note = "" if len(seconds) == IMPORT_REPEATS else f" (only {len(seconds)}: ~2 min budget)"
    print(
        f"\n[dialer bench] import {rows} rows ({bad_rows} bad) on {name}: "
        f"median {statistics.median(rates):,.0f} rows/s "
        f"(min {min(rates):,.0f}, max {max(rates):,.0f}); "
        f"median {statistics.median(seconds):.2f} s (min {min(seconds):.2f}, "
        f"max {max(seconds):.2f}) over {len(seconds)} repeats{note}; peak RSS growth "
        f"median {statistics.median(growth_mb):.0f} MB (min {min(growth_mb):.0f}, "
        f"max {max(growth_mb):.0f}), each repeat in a fresh process"
    )


# -- scheduler ----------------------------------------------------------------------------


def schedule_csv(contacts: int = SCHEDULE_CONTACTS) -> str:
    """Contacts spread evenly, interleaved, over New York, Los Angeles, London and
    Kolkata numbers (zones derived from the numbers)."""
    makers: tuple[Callable[[int], str], ...] = (
        lambda n: f"+1212230{n:04d}",  # America/New_York
        lambda n: f"+1310230{n:04d}",  # America/Los_Angeles
        lambda n: f"+442071{n:06d}",  # Europe/London
        lambda n: f"+919800{n:06d}",  # Asia/Kolkata
    )
    rows = [f"{makers[i % 4](i // 4)},Contact {i},AC{i:07d},{i % 997}.00" for i in range(contacts)]
    return "phone,name,account,balance\n" + "\n".join(rows) + "\n"


@pytest.mark.timeout(300)
@pytest.mark.parametrize("backend", BACKENDS)
async def test_scheduler_decisions(
    backend: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    server = _postgres(request, backend)
    print(await asyncio.to_thread(_bench_scheduler, server, tmp_path))


def _bench_scheduler(server: PostgresServer | None, tmp_path: Path) -> str:
    url = _fresh_db_url(server, tmp_path, "schedule")
    engine = make_engine(url)
    sessions = make_sessionmaker(engine)
    # Pacing limits high enough that the queue-ahead budget never stops a batch: this
    # measures the decisions, not the pacing.
    campaign_id = _new_campaign(sessions, max_cps=10_000.0, max_concurrent=100_000)
    with transaction(sessions) as s:
        camp = s.get(Campaign, campaign_id)
        assert camp is not None
        assert import_contacts(s, camp, csv_rows(schedule_csv())).imported == SCHEDULE_CONTACTS
        control(s, campaign_id, "start", SCHEDULE_NOW)
    rates: list[float] = []
    queued = deferred = 0
    total_s = 0.0
    while True:
        t0 = time.perf_counter()
        with transaction(sessions) as s:  # the commit (deferral updates) is part of it
            camp = s.get(Campaign, campaign_id)
            assert camp is not None and camp.status == CampaignStatus.RUNNING
            result = schedule_campaign(s, camp, SCHEDULE_NOW, limit=SCHEDULE_BATCH)
        elapsed = time.perf_counter() - t0
        examined = len(result.attempts) + result.deferred + result.expired + result.suppressed
        if examined == 0:
            break
        total_s += elapsed
        rates.append(examined / elapsed)
        queued += len(result.attempts)
        deferred += result.deferred
    name = _backend_name(engine)
    engine.dispose()
    assert queued + deferred == SCHEDULE_CONTACTS
    return (
        f"\n[dialer bench] scheduler on {name}: {SCHEDULE_CONTACTS} contacts in "
        f"{len(rates)} batches of {SCHEDULE_BATCH} ({queued} queued, {deferred} deferred): "
        f"median {statistics.median(rates):,.0f} decisions/s per batch (min {min(rates):,.0f}, "
        f"max {max(rates):,.0f}); all batches {total_s:.2f} s = "
        f"{SCHEDULE_CONTACTS / total_s:,.0f} decisions/s"
    )


# -- dispatch latency ---------------------------------------------------------------------


@pytest.mark.timeout(240)
async def test_dispatch_latency(
    dialer_env: DialerEnv,  # noqa: F811  (the imported fixture)
    worker_factory: Callable[[], CallWorker],  # noqa: F811
    phones: PhoneFactory,
) -> None:
    # Once the campaign's bucket is busy, pacing dominates: 60 attempts due at the same
    # instant go out at 20 per second, so the n-th INVITE waits about n/20 s for its
    # token, whatever the dispatch path costs. The first 4 attempts get their
    # concurrency slots at once (max_concurrent 4) and are the closest to dispatch cost
    # alone; with burst 1 only the very first has no token wait at all, the next three
    # wait up to 50, 100 and 150 ms for theirs.
    phone = await phones(PhoneScript(answer="reject", reject_code=486))
    worker = worker_factory()
    await worker.ready()
    from_due: list[float] = []
    from_send: list[float] = []
    first4_due: list[float] = []
    first4_send: list[float] = []
    first_send: list[float] = []  # the first INVITE of each campaign: no token wait
    due_to_sent: list[float] = []  # the scheduler's tick (its transaction) until the send
    for run in range(DISPATCH_RUNS):
        numbers = [f"+1212555{1000 + run * 100 + i:04d}" for i in range(DISPATCH_CONTACTS)]
        campaign_id = setup_campaign(
            dialer_env,
            phone,
            "phone\n" + "\n".join(numbers) + "\n",
            trunk_max_cps=1000,
            trunk_max_concurrent=100,
            max_cps=DISPATCH_CPS,
            max_concurrent=DISPATCH_CONCURRENT,
            retry_policy={"max_attempts": 1},
        )
        sent_at: dict[str, float] = {}
        deadline = time.monotonic() + 60
        while True:
            with transaction(dialer_env.sessions) as s:
                report = tick(s, utcnow())
            for attempt_id in report.queued + report.requeued:
                sent_at.setdefault(attempt_id, time.time())
                dialer_env.send(attempt_id)
            with dialer_env.sessions() as s:
                camp = s.get(Campaign, campaign_id)
                assert camp is not None
                if camp.status == CampaignStatus.COMPLETED:
                    break
            if time.monotonic() > deadline:
                raise TimeoutError(f"dispatch run {run} did not complete in 60 s")
            await asyncio.sleep(0.3)
        with dialer_env.sessions() as s:
            rows = s.execute(
                select(Contact.phone_e164, CallAttempt.id, CallAttempt.due_at)
                .join(CallAttempt, CallAttempt.contact_id == Contact.id)
                .where(Contact.campaign_id == campaign_id)
            ).all()
        attempt_of = {phone_e164: (aid, due) for phone_e164, aid, due in rows}
        invites = sorted(
            (e for e in phone.find("incoming") if e["callee"] in attempt_of),
            key=lambda e: float(e["t"]),
        )
        assert len(invites) == DISPATCH_CONTACTS == len(attempt_of)
        for n, event in enumerate(invites):
            attempt_id, due_at = attempt_of[event["callee"]]
            due = float(event["t"]) - due_at.timestamp()
            sent = float(event["t"]) - sent_at[attempt_id]
            from_due.append(due)
            from_send.append(sent)
            due_to_sent.append(due - sent)
            if n < DISPATCH_CONCURRENT:
                first4_due.append(due)
                first4_send.append(sent)
            if n == 0:
                first_send.append(sent)

    def stats(values: list[float]) -> str:
        ms = sorted(v * 1000 for v in values)
        return (
            f"p50 {_pct(ms, 50):.0f} / p90 {_pct(ms, 90):.0f} / p99 {_pct(ms, 99):.0f} / "
            f"max {ms[-1]:.0f} ms"
        )

    print(
        f"\n[dialer bench] dispatch on postgresql + redis, {DISPATCH_RUNS} campaigns x "
        f"{DISPATCH_CONTACTS} attempts at {DISPATCH_CPS:g} CPS, {DISPATCH_CONCURRENT} "
        f"concurrent: due→INVITE {stats(from_due)}; sent→INVITE {stats(from_send)}"
        f"\n[dialer bench] dispatch, first {DISPATCH_CONCURRENT} attempts of each campaign "
        f"({len(first4_due)}): due→INVITE {stats(first4_due)}; "
        f"sent→INVITE {stats(first4_send)}"
        f"\n[dialer bench] dispatch, first attempt of each campaign (no token wait): "
        f"sent→INVITE {', '.join(f'{v * 1000:.0f}' for v in first_send)} ms; "
        f"due→sent (the tick's transaction) {stats(due_to_sent)}"
    )
