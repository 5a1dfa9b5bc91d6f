"""Webhooks: the outbox of deliveries, and delivery.

The body, its headers and its signature are in ``callfleet.dialer.webhook_wire``.

Delivery
    ``enqueue`` writes one ``WebhookDelivery`` row per matching subscription in the
    caller's transaction (a transactional outbox: an event is sent only if what it
    reports was committed). ``deliver_due`` sends the rows that are due: a 2xx answer
    delivers; anything else is retried after an exponential backoff with full jitter
    (base 10 s, factor 2, cap 1 h; https://aws.amazon.com/blogs/architecture/
    exponential-backoff-and-jitter/) until the delivery is 24 h old or has had 15
    attempts, when it is dead. ``replay`` sends a dead delivery again. Delivery is at
    least once: a deliverer that dies after sending, before recording, sends again.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import httpx
from sqlalchemy import select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session, sessionmaker

from callfleet.dialer.db import new_id
from callfleet.dialer.models import DeliveryStatus, WebhookDelivery, WebhookSubscription
from callfleet.dialer.webhook_wire import (
    DELIVERY_HEADER,
    EVENT_HEADER,
    EVENT_TYPES,
    IDEMPOTENCY_HEADER,
    SIGNATURE_HEADER,
    WebhookEvent,
    sign,
)

logger = logging.getLogger(__name__)

BACKOFF_BASE_S = 10.0
BACKOFF_FACTOR = 2.0
BACKOFF_CAP_S = 3600.0
DEFAULT_MAX_ATTEMPTS = 15
DEFAULT_MAX_AGE_S = 24 * 3600.0
DEFAULT_IN_FLIGHT_S = 60.0

#: ``idempotency_key`` holds 80 characters: the event key, ":" and a subscription id
#: (``whs_`` and 24 hex digits).
MAX_KEY_LENGTH = 80 - len(":whs_") - 24
#: How much of a failed answer's body is kept in ``last_error``.
ERROR_BODY_CHARS = 200


def _insert_ignoring_duplicates(session: Session, values: dict[str, Any]) -> str | None:
    """INSERT … ON CONFLICT (idempotency_key) DO NOTHING; the new id, or None."""
    dialect = session.get_bind().dialect.name
    stmt: postgresql.Insert | sqlite.Insert
    if dialect == "postgresql":
        stmt = postgresql.insert(WebhookDelivery).values(**values)
        stmt = stmt.on_conflict_do_nothing(index_elements=[WebhookDelivery.idempotency_key])
    elif dialect == "sqlite":
        stmt = sqlite.insert(WebhookDelivery).values(**values)
        stmt = stmt.on_conflict_do_nothing(index_elements=[WebhookDelivery.idempotency_key])
    else:
        raise ValueError(f"webhook outbox supports sqlite and postgresql, not {dialect}")
    result = session.execute(stmt.returning(WebhookDelivery.id))
    return result.scalar_one_or_none()


def enqueue(
    session: Session,
    tenant_id: str,
    event_type: str,
    key: str,
    data: Mapping[str, Any],
    now: datetime,
) -> list[str]:
    """Queue ``event_type`` for every active subscription of ``tenant_id`` that wants it
    (its ``events`` is empty or names the type), in the caller's transaction.

    ``key`` identifies the event (e.g. ``f"{attempt_id}:completed"``); it becomes the
    body's ``id``, and ``f"{key}:{subscription_id}"`` the delivery's idempotency key,
    so enqueueing one event again (a redelivered task) adds nothing. Returns the ids of
    the deliveries created.
    """
    if event_type not in EVENT_TYPES:
        raise ValueError(f"webhook event type {event_type!r} is unknown")
    if not key:
        raise ValueError("webhook event key is empty")
    if len(key) > MAX_KEY_LENGTH:
        raise ValueError(f"webhook event key {key!r} is longer than {MAX_KEY_LENGTH} characters")
    event = WebhookEvent(key, event_type, now, tenant_id, data)
    try:
        # What is stored is exactly what will be sent (tuples become lists, and so on).
        payload = json.loads(event.to_json())
    except (TypeError, ValueError) as e:
        raise ValueError(f"webhook event {key} data is not JSON: {e}") from e
    subscriptions = session.scalars(
        select(WebhookSubscription)
        .where(WebhookSubscription.tenant_id == tenant_id, WebhookSubscription.active.is_(True))
        .order_by(WebhookSubscription.created_at, WebhookSubscription.id)
    ).all()
    wanted = {f"{key}:{s.id}": s for s in subscriptions if not s.events or event_type in s.events}
    if not wanted:
        return []
    existing = set(
        session.scalars(
            select(WebhookDelivery.idempotency_key).where(
                WebhookDelivery.idempotency_key.in_(list(wanted))
            )
        )
    )
    created: list[str] = []
    for idempotency_key, subscription in wanted.items():
        if idempotency_key in existing:
            continue
        delivery_id = _insert_ignoring_duplicates(
            session,
            {
                "id": new_id("whd"),
                "subscription_id": subscription.id,
                "event_type": event_type,
                "idempotency_key": idempotency_key,
                "payload": payload,
                "status": DeliveryStatus.PENDING.value,
                "attempts": 0,
                "next_attempt_at": now,
                "created_at": now,
            },
        )
        if delivery_id is None:
            logger.info("webhook delivery %s was enqueued concurrently", idempotency_key)
        else:
            created.append(delivery_id)
    return created


def backoff_ceiling_s(
    attempts: int,
    *,
    base_s: float = BACKOFF_BASE_S,
    factor: float = BACKOFF_FACTOR,
    cap_s: float = BACKOFF_CAP_S,
) -> float:
    """The longest wait after the ``attempts``-th failure (1 = first):
    ``min(cap_s, base_s * factor ** (attempts - 1))``, 10 s, 20 s, … up to 1 h."""
    return min(cap_s, base_s * factor ** min(max(attempts - 1, 0), 64))


def backoff_s(attempts: int, rng: random.Random) -> float:
    """Seconds to wait after the ``attempts``-th failure: full jitter, a uniform draw in
    ``[0, backoff_ceiling_s(attempts)]``."""
    return rng.uniform(0.0, backoff_ceiling_s(attempts))


@dataclass
class DeliveryReport:
    """What one ``deliver_due`` pass did: delivered, failed (to be retried), dead."""

    delivered: int = 0
    failed: int = 0
    dead: int = 0


@dataclass(frozen=True)
class _Due:
    id: str
    attempts: int
    next_attempt_at: datetime
    created_at: datetime
    event_type: str
    idempotency_key: str
    payload: dict[str, Any]
    url: str
    secret: str
    active: bool


@dataclass(frozen=True)
class _Outcome:
    status_code: int | None
    error: str | None  # None: delivered


def _select_due(sessions: sessionmaker[Session], now: datetime, limit: int) -> list[_Due]:
    with sessions() as session:
        rows = session.execute(
            select(
                WebhookDelivery.id,
                WebhookDelivery.attempts,
                WebhookDelivery.next_attempt_at,
                WebhookDelivery.created_at,
                WebhookDelivery.event_type,
                WebhookDelivery.idempotency_key,
                WebhookDelivery.payload,
                WebhookSubscription.url,
                WebhookSubscription.secret,
                WebhookSubscription.active,
            )
            .join(WebhookSubscription, WebhookSubscription.id == WebhookDelivery.subscription_id)
            .where(
                WebhookDelivery.status == DeliveryStatus.PENDING.value,
                WebhookDelivery.next_attempt_at <= now,
            )
            .order_by(WebhookDelivery.next_attempt_at, WebhookDelivery.id)
            .limit(limit)
        ).all()
    return [_Due(*row) for row in rows]


def _compare_and_set(
    sessions: sessionmaker[Session], due: _Due, seen: datetime, values: dict[str, Any]
) -> bool:
    """Set ``values`` only if the row is still pending, with the attempts we read and
    ``next_attempt_at == seen``, in its own transaction. Claiming (``seen`` as read,
    ``values`` the claim) and recording (``seen`` our claim) both go through here, so
    of two deliverers only one may send a row, and a lapsed claim records nothing."""
    with sessions() as session, session.begin():
        result = session.execute(
            update(WebhookDelivery)
            .where(
                WebhookDelivery.id == due.id,
                WebhookDelivery.status == DeliveryStatus.PENDING.value,
                WebhookDelivery.attempts == due.attempts,
                WebhookDelivery.next_attempt_at == seen,
            )
            .values(**values)
            .execution_options(synchronize_session=False)
        )
        return bool(result.rowcount == 1)  # type: ignore[attr-defined]


async def _send(
    client: httpx.AsyncClient, due: _Due, body: bytes, sent_at: datetime, timeout_s: float
) -> _Outcome:
    headers = {
        "Content-Type": "application/json",
        SIGNATURE_HEADER: sign(due.secret, body, int(sent_at.timestamp())),
        EVENT_HEADER: due.event_type,
        DELIVERY_HEADER: due.id,
        IDEMPOTENCY_HEADER: due.idempotency_key,
    }
    try:
        response = await client.post(due.url, content=body, headers=headers, timeout=timeout_s)
    except (httpx.HTTPError, httpx.InvalidURL) as e:
        message = str(e)
        return _Outcome(None, f"{type(e).__name__}: {message}" if message else type(e).__name__)
    if 200 <= response.status_code < 300:
        return _Outcome(response.status_code, None)
    text = response.text[:ERROR_BODY_CHARS].strip()
    error = f"receiver answered {response.status_code} {response.reason_phrase}".rstrip()
    return _Outcome(response.status_code, f"{error}: {text}" if text else error)


def _next_state(
    due: _Due,
    outcome: _Outcome,
    sent: bool,
    now: datetime,
    draw: float,
    max_attempts: int,
    max_age_s: float,
) -> tuple[str, dict[str, Any]]:
    """ "delivered", "failed" or "dead", and the row's new values."""
    attempts = due.attempts + 1
    values: dict[str, Any] = {
        "attempts": attempts,
        "last_status_code": outcome.status_code,
        "last_error": outcome.error,
    }
    if outcome.error is None:
        values.update(status=DeliveryStatus.DELIVERED.value, delivered_at=now, next_attempt_at=None)
        return "delivered", values
    age_s = (now - due.created_at).total_seconds()
    if not sent or attempts >= max_attempts or age_s > max_age_s:
        values.update(status=DeliveryStatus.DEAD.value, next_attempt_at=None)
        return "dead", values
    delay_s = backoff_ceiling_s(attempts) * draw  # full jitter: uniform in [0, ceiling]
    values["next_attempt_at"] = now + timedelta(seconds=delay_s)
    return "failed", values


def _log_outcome(due: _Due, kind: str, values: dict[str, Any], now: datetime) -> None:
    attempts, error = values["attempts"], values["last_error"]
    if kind == "delivered":
        logger.info("webhook delivery %s delivered (attempt %d)", due.id, attempts)
    elif kind == "dead":
        age_s = (now - due.created_at).total_seconds()
        logger.error(
            "webhook delivery %s is dead after %d attempt(s), %.0f s old: %s",
            due.id,
            attempts,
            age_s,
            error,
        )
    else:
        logger.warning(
            "webhook delivery %s failed (attempt %d), retry at %s: %s",
            due.id,
            attempts,
            values["next_attempt_at"].isoformat(),
            error,
        )


async def deliver_due(
    sessions: sessionmaker[Session],
    client: httpx.AsyncClient,
    now: datetime,
    *,
    limit: int = 100,
    timeout_s: float = 10.0,
    max_attempts: int = DEFAULT_MAX_ATTEMPTS,
    max_age_s: float = DEFAULT_MAX_AGE_S,
    in_flight_s: float = DEFAULT_IN_FLIGHT_S,
    concurrency: int = 10,
    rng: random.Random | None = None,
) -> DeliveryReport:
    """Send up to ``limit`` pending deliveries due at ``now`` and record the outcomes.

    Just before it is sent, each row is claimed by compare-and-set: its
    ``next_attempt_at`` moves ``in_flight_s`` (default 60) past ``now`` plus the time
    this pass has run so far, so concurrent deliverers never send one row twice, and a
    deliverer that dies mid-send leaves the row to be retried once the claim lapses.
    ``timeout_s`` (default 10) bounds each request and must be below ``in_flight_s``;
    ``concurrency`` (default 10) bounds the requests in flight. A failure is retried
    after ``backoff_s(attempts, rng)`` unless the delivery has had ``max_attempts`` attempts
    (default 15) or is older than ``max_age_s`` (default 24 h): then it is dead.
    Deliveries of an inactive subscription die unsent. The jitter is drawn from ``rng``
    in selection order, so a seeded ``rng`` gives exact retry times.
    """
    if timeout_s >= in_flight_s:
        raise ValueError(f"timeout_s ({timeout_s:g}) must be less than in_flight_s")
    rng = rng if rng is not None else random.Random()
    loop = asyncio.get_running_loop()
    started = loop.time()
    semaphore = asyncio.Semaphore(concurrency)
    due_rows = await asyncio.to_thread(_select_due, sessions, now, limit)
    # One draw per row, in order, whatever the order in which the sends finish.
    draws = [rng.random() for _ in due_rows]

    async def process(due: _Due, draw: float) -> str | None:
        async with semaphore:
            elapsed_s = loop.time() - started
            claimed_until = now + timedelta(seconds=in_flight_s + elapsed_s)
            claim = {"next_attempt_at": claimed_until}
            if not await asyncio.to_thread(
                _compare_and_set, sessions, due, due.next_attempt_at, claim
            ):
                logger.debug("webhook delivery %s was claimed by another deliverer", due.id)
                return None
            try:
                body = WebhookEvent.from_dict(due.payload).to_json()
            except ValueError as e:
                logger.exception("webhook delivery %s has a bad payload", due.id)
                outcome, sent = _Outcome(None, f"bad payload: {e}"), False
            else:
                if due.active:
                    # Signed with the time of sending: a pass that waited on slow
                    # receivers must not send stale timestamps a receiver would refuse.
                    sent_at = now + timedelta(seconds=loop.time() - started)
                    outcome, sent = await _send(client, due, body, sent_at, timeout_s), True
                else:
                    outcome, sent = _Outcome(None, "subscription is inactive"), False
            kind, values = _next_state(due, outcome, sent, now, draw, max_attempts, max_age_s)
            if not await asyncio.to_thread(_compare_and_set, sessions, due, claimed_until, values):
                logger.warning(
                    "webhook delivery %s changed while in flight; its outcome (%s) is lost",
                    due.id,
                    kind,
                )
                return None
            _log_outcome(due, kind, values, now)
            return kind

    async with asyncio.TaskGroup() as group:
        tasks = [
            group.create_task(process(due, draw)) for due, draw in zip(due_rows, draws, strict=True)
        ]
    kinds = [task.result() for task in tasks]
    return DeliveryReport(
        delivered=kinds.count("delivered"), failed=kinds.count("failed"), dead=kinds.count("dead")
    )


def replay(session: Session, delivery_id: str, now: datetime, *, force: bool = False) -> None:
    """Send a dead delivery again (a delivered one too with ``force=True``), in the
    caller's transaction: it becomes pending, due at ``now``, with its attempts reset
    and its age counted from ``now`` (``created_at``; the event keeps its own time in
    the body). The body and idempotency key are unchanged, so a receiver that already
    has it can drop it."""
    delivery = session.get(WebhookDelivery, delivery_id)
    if delivery is None:
        raise ValueError(f"webhook delivery {delivery_id!r} does not exist")
    status = delivery.status
    if status == DeliveryStatus.DELIVERED and not force:
        raise ValueError(
            f"webhook delivery {delivery_id} is delivered: pass force=True to send it again"
        )
    if status not in (DeliveryStatus.DEAD, DeliveryStatus.DELIVERED):
        raise ValueError(
            f"webhook delivery {delivery_id} is {status}: only dead or delivered "
            "deliveries can be replayed"
        )
    result = session.execute(
        update(WebhookDelivery)
        .where(WebhookDelivery.id == delivery_id, WebhookDelivery.status == status)
        .values(
            status=DeliveryStatus.PENDING.value,
            attempts=0,
            next_attempt_at=now,
            created_at=now,
            delivered_at=None,
        )
        .execution_options(synchronize_session="fetch")
    )
    if result.rowcount != 1:  # type: ignore[attr-defined]
        raise ValueError(f"webhook delivery {delivery_id} changed while being replayed")
    logger.info("webhook delivery %s replayed (was %s)", delivery_id, status)
