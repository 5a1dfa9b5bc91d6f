"""Webhook outbox and delivery on SQLite and a private PostgreSQL, sent over real HTTP to
a minimal HTTP/1.1 receiver on loopback that records every request, can answer any
status, hang, or be down (nobody listening on its port). Time is an injected clock."""

from __future__ import annotations

import asyncio
import random
import threading
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
import pytest_asyncio
from sqlalchemy import Engine, event, select
from sqlalchemy.orm import Session, sessionmaker

from callfleet.dialer.models import (
    Campaign,
    DeliveryStatus,
    Tenant,
    WebhookDelivery,
    WebhookSubscription,
)
from callfleet.dialer.webhook_wire import WebhookEvent, verify
from callfleet.dialer.webhooks import DeliveryReport, deliver_due, enqueue, replay
from tests.peers.ports import free_port

pytestmark = pytest.mark.asyncio(loop_scope="session")

T0 = datetime(2024, 5, 1, 12, tzinfo=UTC)
SECRET = "whsec_integration"
REASONS = {200: "OK", 204: "No Content", 302: "Found", 500: "Internal Server Error"}


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    headers: dict[str, str]  # names in lower case
    body: bytes


class Receiver:
    """A minimal HTTP/1.1 server: one request per connection, answered with ``status``
    (and ``Connection: close``), or never answered while ``hang`` is set."""

    def __init__(self) -> None:
        self.port = free_port("tcp")
        self.status = 200
        self.answer = b""
        self.hang = False
        self.requests: list[Request] = []
        self.errors: list[BaseException] = []
        self._server: asyncio.Server | None = None
        self._release = asyncio.Event()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks"

    async def start(self) -> None:
        self._release = asyncio.Event()
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", self.port)

    async def stop(self) -> None:
        """Stop listening: connections to the port are refused from now on."""
        self._release.set()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
            request_line, *lines = head.split("\r\n")
            method, path, _version = request_line.split(" ", 2)
            headers = {}
            for line in lines:
                if line:
                    name, _, value = line.partition(":")
                    headers[name.strip().lower()] = value.strip()
            body = await reader.readexactly(int(headers.get("content-length", "0")))
            self.requests.append(Request(method, path, headers, body))
            if self.hang:
                await self._release.wait()
                return
            writer.write(
                f"HTTP/1.1 {self.status} {REASONS[self.status]}\r\n"
                f"Content-Length: {len(self.answer)}\r\nConnection: close\r\n\r\n".encode()
                + self.answer
            )
            await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError) as e:
            self.errors.append(e)
        finally:
            writer.close()


@pytest_asyncio.fixture(loop_scope="session")
async def receiver() -> AsyncIterator[Receiver]:
    r = Receiver()
    await r.start()
    yield r
    await r.stop()


@pytest_asyncio.fixture(loop_scope="session")
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient() as c:
        yield c


def subscribe(
    sessions: sessionmaker[Session],
    tenant_id: str,
    url: str,
    events: list[str] | None = None,
    *,
    active: bool = True,
) -> str:
    with sessions() as s, s.begin():
        sub = WebhookSubscription(
            tenant_id=tenant_id, url=url, secret=SECRET, events=events or [], active=active
        )
        s.add(sub)
        s.flush()
        return sub.id


def queue(
    sessions: sessionmaker[Session],
    tenant_id: str,
    key: str,
    event_type: str = "call.completed",
    now: datetime = T0,
) -> list[str]:
    with sessions() as s, s.begin():
        return enqueue(s, tenant_id, event_type, key, {"attempt_id": key, "outcome": "ok"}, now)


def deliveries(sessions: sessionmaker[Session]) -> dict[str, WebhookDelivery]:
    with sessions() as s:
        return {d.id: d for d in s.scalars(select(WebhookDelivery))}


def check_request(request: Request, delivery: WebhookDelivery, now: datetime) -> None:
    """The request carries the stored event, signed, with every header."""
    verify(SECRET, request.headers["x-callfleet-signature"], request.body, now)
    assert request.method == "POST" and request.path == "/hooks"
    assert request.headers["content-type"] == "application/json"
    assert request.headers["x-callfleet-event"] == delivery.event_type
    assert request.headers["x-callfleet-delivery"] == delivery.id
    assert request.headers["idempotency-key"] == delivery.idempotency_key
    assert WebhookEvent.parse(request.body).to_dict() == delivery.payload


async def test_receiver_down_then_up_delivers_each_event_exactly_once(
    sessions: sessionmaker[Session],
    campaign: Campaign,
    receiver: Receiver,
    client: httpx.AsyncClient,
) -> None:
    sub = subscribe(sessions, campaign.tenant_id, receiver.url)
    ids = [queue(sessions, campaign.tenant_id, f"att_{n}:completed")[0] for n in range(3)]
    await receiver.stop()
    rng = random.Random(1)

    report = await deliver_due(sessions, client, T0, rng=rng)
    assert report == DeliveryReport(failed=3)
    assert receiver.requests == []
    for d in deliveries(sessions).values():
        assert d.status == DeliveryStatus.PENDING and d.attempts == 1
        assert d.last_status_code is None
        assert d.last_error == "ConnectError: All connection attempts failed"
        assert d.next_attempt_at is not None and T0 <= d.next_attempt_at <= T0 + timedelta(
            seconds=10
        )

    await receiver.start()
    clock, sent_at = T0, {}
    for _ in range(6):  # passes after everything is delivered must send nothing
        clock += timedelta(seconds=30)
        before = len(receiver.requests)
        await deliver_due(sessions, client, clock, rng=rng)
        for request in receiver.requests[before:]:
            sent_at[request.headers["x-callfleet-delivery"]] = clock

    rows = deliveries(sessions)
    assert len(receiver.requests) == 3
    assert sorted(r.headers["x-callfleet-delivery"] for r in receiver.requests) == sorted(ids)
    for request in receiver.requests:
        delivery = rows[request.headers["x-callfleet-delivery"]]
        check_request(request, delivery, sent_at[delivery.id])
        assert delivery.idempotency_key.endswith(f":{sub}")
        assert delivery.status == DeliveryStatus.DELIVERED and delivery.attempts == 2
        assert delivery.delivered_at == sent_at[delivery.id] == T0 + timedelta(seconds=30)
        assert delivery.last_status_code == 200 and delivery.last_error is None
        event = WebhookEvent.parse(request.body)
        assert event.id + f":{sub}" == delivery.idempotency_key
        assert event.tenant_id == campaign.tenant_id and event.created_at == T0
    assert receiver.errors == []


async def test_error_answers_are_retried_with_growing_seeded_backoff(
    sessions: sessionmaker[Session],
    campaign: Campaign,
    receiver: Receiver,
    client: httpx.AsyncClient,
) -> None:
    subscribe(sessions, campaign.tenant_id, receiver.url)
    (delivery_id,) = queue(sessions, campaign.tenant_id, "att_1:completed")
    receiver.status, receiver.answer = 500, b"boom\n"
    rng, expected_rng = random.Random(42), random.Random(42)

    clock, delays = T0, []
    for n in range(1, 8):
        report = await deliver_due(sessions, client, clock, rng=rng)
        assert report == DeliveryReport(failed=1)
        d = deliveries(sessions)[delivery_id]
        ceiling = min(3600, 10 * 2 ** (n - 1))
        expected = clock + timedelta(seconds=expected_rng.uniform(0, ceiling))
        assert d.next_attempt_at == expected
        assert d.attempts == n and d.status == DeliveryStatus.PENDING
        assert d.last_status_code == 500
        assert d.last_error == "receiver answered 500 Internal Server Error: boom"
        delays.append((expected - clock).total_seconds())
        assert 0 <= delays[-1] <= ceiling
        # Not due a microsecond before: nothing is sent.
        early = await deliver_due(sessions, client, expected - timedelta(microseconds=1))
        assert early == DeliveryReport() and len(receiver.requests) == n
        clock = expected
    assert delays[-1] > delays[0]  # the seeded draws from ceilings of 10 s … 640 s

    # A redirect is not a success either.
    receiver.status, receiver.answer = 302, b""
    assert await deliver_due(sessions, client, clock, rng=rng) == DeliveryReport(failed=1)
    assert deliveries(sessions)[delivery_id].last_error == "receiver answered 302 Found"

    receiver.status = 204
    retry_at = deliveries(sessions)[delivery_id].next_attempt_at
    assert retry_at is not None
    clock = retry_at
    assert await deliver_due(sessions, client, clock, rng=rng) == DeliveryReport(delivered=1)
    d = deliveries(sessions)[delivery_id]
    assert d.status == DeliveryStatus.DELIVERED and d.attempts == 9 and d.last_status_code == 204
    assert len({r.headers["idempotency-key"] for r in receiver.requests}) == 1
    assert len({r.body for r in receiver.requests}) == 1


async def test_timeout_is_a_failure(
    sessions: sessionmaker[Session],
    campaign: Campaign,
    receiver: Receiver,
    client: httpx.AsyncClient,
) -> None:
    subscribe(sessions, campaign.tenant_id, receiver.url)
    (delivery_id,) = queue(sessions, campaign.tenant_id, "att_1:completed")
    receiver.hang = True
    report = await deliver_due(sessions, client, T0, timeout_s=0.3)
    assert report == DeliveryReport(failed=1)
    d = deliveries(sessions)[delivery_id]
    assert d.last_error is not None and d.last_error.startswith("ReadTimeout")
    assert d.last_status_code is None and len(receiver.requests) == 1
    with pytest.raises(ValueError) as info:
        await deliver_due(sessions, client, T0, timeout_s=60)
    assert str(info.value) == "timeout_s (60) must be less than in_flight_s"


async def test_dead_after_max_age_then_replay_delivers_it(
    sessions: sessionmaker[Session],
    campaign: Campaign,
    receiver: Receiver,
    client: httpx.AsyncClient,
) -> None:
    subscribe(sessions, campaign.tenant_id, receiver.url)
    (delivery_id,) = queue(sessions, campaign.tenant_id, "att_1:completed")
    await receiver.stop()
    assert await deliver_due(sessions, client, T0) == DeliveryReport(failed=1)
    at_24h = T0 + timedelta(hours=24)
    assert await deliver_due(sessions, client, at_24h) == DeliveryReport(failed=1)
    late = at_24h + timedelta(minutes=1)  # past the retry (at most 20 s later) and the age
    assert await deliver_due(sessions, client, late) == DeliveryReport(dead=1)
    d = deliveries(sessions)[delivery_id]
    assert d.status == DeliveryStatus.DEAD and d.attempts == 3 and d.next_attempt_at is None
    assert d.last_error == "ConnectError: All connection attempts failed"
    assert await deliver_due(sessions, client, late + timedelta(days=9)) == DeliveryReport()

    await receiver.start()
    later = late + timedelta(days=2)
    with sessions() as s, s.begin():
        replay(s, delivery_id, later)
    d = deliveries(sessions)[delivery_id]
    assert (d.status, d.attempts, d.next_attempt_at) == (DeliveryStatus.PENDING, 0, later)
    assert await deliver_due(sessions, client, later) == DeliveryReport(delivered=1)
    (request,) = receiver.requests
    d = deliveries(sessions)[delivery_id]
    check_request(request, d, later)
    assert d.status == DeliveryStatus.DELIVERED and d.delivered_at == later
    assert WebhookEvent.parse(request.body).created_at == T0  # the event keeps its time

    with sessions() as s, s.begin(), pytest.raises(ValueError) as info:
        replay(s, delivery_id, later)
    assert str(info.value) == (
        f"webhook delivery {delivery_id} is delivered: pass force=True to send it again"
    )
    with sessions() as s, s.begin():
        replay(s, delivery_id, later, force=True)
    with sessions() as s, s.begin(), pytest.raises(ValueError) as info:
        replay(s, delivery_id, later)
    assert str(info.value) == (
        f"webhook delivery {delivery_id} is pending: only dead or delivered deliveries "
        "can be replayed"
    )
    assert await deliver_due(sessions, client, later) == DeliveryReport(delivered=1)
    assert [r.headers["idempotency-key"] for r in receiver.requests] == [d.idempotency_key] * 2
    with sessions() as s, pytest.raises(ValueError) as info:
        replay(s, "whd_nope", later)
    assert str(info.value) == "webhook delivery 'whd_nope' does not exist"


async def test_dead_after_max_attempts(
    sessions: sessionmaker[Session],
    campaign: Campaign,
    receiver: Receiver,
    client: httpx.AsyncClient,
) -> None:
    subscribe(sessions, campaign.tenant_id, receiver.url)
    (delivery_id,) = queue(sessions, campaign.tenant_id, "att_1:completed")
    receiver.status = 500
    clock, reports = T0, []
    for _ in range(4):
        reports.append(await deliver_due(sessions, client, clock, max_attempts=3))
        clock += timedelta(hours=1)
    assert reports == [DeliveryReport(failed=1)] * 2 + [DeliveryReport(dead=1), DeliveryReport()]
    d = deliveries(sessions)[delivery_id]
    assert d.status == DeliveryStatus.DEAD and d.attempts == 3 and d.last_status_code == 500
    assert len(receiver.requests) == 3


async def test_enqueue_twice_makes_one_delivery(
    sessions: sessionmaker[Session],
    engine: Engine,
    campaign: Campaign,
    receiver: Receiver,
    client: httpx.AsyncClient,
) -> None:
    sub = subscribe(sessions, campaign.tenant_id, receiver.url)
    first = queue(sessions, campaign.tenant_id, "att_1:completed")
    assert len(first) == 1
    assert queue(sessions, campaign.tenant_id, "att_1:completed", now=T0 + timedelta(1)) == []
    (d,) = deliveries(sessions).values()
    assert d.id == first[0] and d.idempotency_key == f"att_1:completed:{sub}"
    assert d.payload["created_at"] == "2024-05-01T12:00:00Z"

    # Two transactions racing: B looks for the key before A commits, then inserts after.
    # The unique constraint decides, and B adds nothing.
    racer: threading.Thread | None = None
    b_inserting, b_result = threading.Event(), []

    def spy(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if threading.current_thread() is racer and statement.startswith("INSERT"):
            b_inserting.set()

    def enqueue_b() -> None:
        b_result.append(queue(sessions, campaign.tenant_id, "att_2:completed"))

    event.listen(engine, "before_cursor_execute", spy)
    try:
        with sessions() as a, a.begin():
            a_ids = enqueue(a, campaign.tenant_id, "call.completed", "att_2:completed", {}, T0)
            racer = threading.Thread(target=enqueue_b)
            racer.start()
            assert await asyncio.to_thread(b_inserting.wait, 10)
        await asyncio.to_thread(racer.join, 30)
    finally:
        event.remove(engine, "before_cursor_execute", spy)
    assert len(a_ids) == 1 and b_result == [[]]
    assert len(deliveries(sessions)) == 2

    assert await deliver_due(sessions, client, T0) == DeliveryReport(delivered=2)
    assert len(receiver.requests) == 2


async def test_subscriptions_filter_by_event_type_and_tenant(
    sessions: sessionmaker[Session],
    campaign: Campaign,
    receiver: Receiver,
    client: httpx.AsyncClient,
) -> None:
    tenant = campaign.tenant_id
    everything = subscribe(sessions, tenant, receiver.url)
    calls = subscribe(sessions, tenant, receiver.url, ["call.completed", "call.voicemail"])
    campaigns = subscribe(sessions, tenant, receiver.url, ["campaign.completed"])
    subscribe(sessions, tenant, receiver.url, active=False)
    with sessions() as s, s.begin():
        other = Tenant(name="other")
        s.add(other)
        s.flush()
        other_id = other.id
    subscribe(sessions, other_id, receiver.url)

    call_ids = queue(sessions, tenant, "att_1:completed", "call.completed")
    campaign_ids = queue(sessions, tenant, f"{campaign.id}:completed", "campaign.completed")
    assert queue(sessions, tenant, "att_1:transferred", "call.transferred") != []
    rows = deliveries(sessions)
    assert sorted(rows[i].subscription_id for i in call_ids) == sorted([everything, calls])
    assert sorted(rows[i].subscription_id for i in campaign_ids) == sorted([everything, campaigns])
    assert {d.subscription_id for d in rows.values() if d.event_type == "call.transferred"} == {
        everything
    }

    assert await deliver_due(sessions, client, T0) == DeliveryReport(delivered=5)
    sent = sorted(
        (r.headers["x-callfleet-event"], rows[r.headers["x-callfleet-delivery"]].subscription_id)
        for r in receiver.requests
    )
    assert sent == sorted(
        [
            ("call.completed", everything),
            ("call.completed", calls),
            ("call.transferred", everything),
            ("campaign.completed", everything),
            ("campaign.completed", campaigns),
        ]
    )
    for request in receiver.requests:
        check_request(request, rows[request.headers["x-callfleet-delivery"]], T0)


async def test_inactive_subscription_and_bad_payload_die_unsent(
    sessions: sessionmaker[Session],
    campaign: Campaign,
    receiver: Receiver,
    client: httpx.AsyncClient,
) -> None:
    sub = subscribe(sessions, campaign.tenant_id, receiver.url)
    (paused,) = queue(sessions, campaign.tenant_id, "att_1:completed")
    with sessions() as s, s.begin():
        s.get_one(WebhookSubscription, sub).active = False
        s.add(
            WebhookDelivery(
                id="whd_bad",
                subscription_id=sub,
                event_type="call.completed",
                idempotency_key="bad",
                payload={"type": "call.completed"},
                next_attempt_at=T0,
                created_at=T0,
            )
        )
    assert await deliver_due(sessions, client, T0) == DeliveryReport(dead=2)
    rows = deliveries(sessions)
    assert rows[paused].last_error == "subscription is inactive"
    assert rows["whd_bad"].last_error == "bad payload: webhook event has no id"
    assert receiver.requests == []


async def test_enqueue_rejects_bad_events(
    sessions: sessionmaker[Session], campaign: Campaign
) -> None:
    subscribe(sessions, campaign.tenant_id, "http://127.0.0.1:9/")
    cases: list[tuple[str, str, dict[str, Any], datetime, str]] = [
        ("call.exploded", "k", {}, T0, "webhook event type 'call.exploded' is unknown"),
        ("call.completed", "", {}, T0, "webhook event key is empty"),
        (
            "call.completed",
            "k" * 52,
            {},
            T0,
            f"webhook event key {'k' * 52!r} is longer than 51 characters",
        ),
        (
            "call.completed",
            "k",
            {"at": T0},
            T0,
            "webhook event k data is not JSON: Object of type datetime is not JSON serializable",
        ),
        (
            "call.completed",
            "k",
            {},
            datetime(2024, 5, 1),
            "webhook event created_at 2024-05-01T00:00:00 has no time zone",
        ),
    ]
    for event_type, key, data, now, error in cases:
        with sessions() as s, s.begin(), pytest.raises(ValueError) as info:
            enqueue(s, campaign.tenant_id, event_type, key, data, now)
        assert str(info.value) == error
    with sessions() as s, s.begin():  # 51 characters fit the idempotency key column
        assert len(enqueue(s, campaign.tenant_id, "call.completed", "k" * 51, {}, T0)) == 1
    assert len(deliveries(sessions)) == 1


@pytest.fixture
def due_select_barrier(engine: Engine) -> Iterator[threading.Barrier]:
    """Holds each deliverer after it has read the due rows until the other has too, so
    both try to claim the same rows."""
    barrier = threading.Barrier(2, timeout=10)

    def after(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if statement.startswith("SELECT") and "webhook_deliveries.next_attempt_at <=" in statement:
            barrier.wait()

    event.listen(engine, "after_cursor_execute", after)
    yield barrier
    event.remove(engine, "after_cursor_execute", after)


async def test_concurrent_deliverers_do_not_double_send(
    sessions: sessionmaker[Session],
    campaign: Campaign,
    receiver: Receiver,
    client: httpx.AsyncClient,
    due_select_barrier: threading.Barrier,
) -> None:
    subscribe(sessions, campaign.tenant_id, receiver.url)
    subscribe(sessions, campaign.tenant_id, receiver.url, ["call.completed"])
    ids = [i for n in range(10) for i in queue(sessions, campaign.tenant_id, f"att_{n}:done")]
    assert len(ids) == 20

    async with httpx.AsyncClient() as other_client:
        reports = await asyncio.gather(
            deliver_due(sessions, client, T0, concurrency=4),
            deliver_due(sessions, other_client, T0, concurrency=4),
        )
    assert sum(r.delivered for r in reports) == 20
    assert all(r.failed == r.dead == 0 for r in reports)
    assert sorted(r.headers["x-callfleet-delivery"] for r in receiver.requests) == sorted(ids)
    rows = deliveries(sessions)
    assert all(d.status == DeliveryStatus.DELIVERED and d.attempts == 1 for d in rows.values())
    for request in receiver.requests:
        check_request(request, rows[request.headers["x-callfleet-delivery"]], T0)
