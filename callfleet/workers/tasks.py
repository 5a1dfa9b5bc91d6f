"""Celery tasks: thin. They take ids, call ``callfleet.dialer`` or the call host, and
enqueue follow-up work only after the transaction that created it has committed."""

from __future__ import annotations

import asyncio
import logging
import os
from functools import lru_cache
from typing import Any

import httpx
from celery.signals import worker_ready, worker_shutdown
from sqlalchemy.orm import Session, sessionmaker

from callfleet.dialer import scheduler
from callfleet.dialer.db import make_engine, make_sessionmaker, transaction, utcnow
from callfleet.dialer.webhooks import deliver_due
from callfleet.settings import get_settings
from callfleet.workers.callhost import PacingTimeout, get_host, stop_host
from callfleet.workers.celery_app import CALLS, app

log = logging.getLogger(__name__)


@lru_cache
def _sessions() -> sessionmaker[Session]:
    return make_sessionmaker(make_engine(get_settings().database_url))


@app.task(
    acks_late=True,
    # Only a pacing timeout is retried: nothing was dialled. Anything else fails loudly.
    autoretry_for=(PacingTimeout,),
    retry_backoff=2,
    retry_backoff_max=60,
    retry_jitter=True,
    max_retries=30,
)
def place_call(attempt_id: str) -> str:
    """Dial one attempt and see it to its end (runs in a call-host process)."""
    return get_host(get_settings()).place(attempt_id)


@app.task
def tick() -> dict[str, Any]:
    now = utcnow()
    with transaction(_sessions()) as session:
        report = scheduler.tick(session, now)
    for attempt_id in report.queued + report.requeued:
        place_call.delay(attempt_id)
    return {
        "queued": len(report.queued),
        "requeued": len(report.requeued),
        "resolved": len(report.resolved),
        "completed": report.completed_campaigns,
    }


@app.task
def deliver_webhooks() -> dict[str, int]:
    async def run() -> dict[str, int]:
        async with httpx.AsyncClient() as client:
            report = await deliver_due(_sessions(), client, utcnow())
        return {"delivered": report.delivered, "failed": report.failed, "dead": report.dead}

    return asyncio.run(run())


@worker_ready.connect
def _start_call_host(sender: Any = None, **_: Any) -> None:
    # A worker on the calls queue is a call host: bring SIP up now, so it also answers
    # inbound calls before its first outbound task arrives.
    consuming = set(app.amqp.queues.consume_from or {})
    if CALLS in consuming:
        try:
            get_host(get_settings())
        except Exception:
            # A call host without SIP or Redis would fail every task it takes: exit, so
            # the supervisor starts a fresh process.
            log.critical("call host could not start; exiting", exc_info=True)
            os._exit(1)


@worker_shutdown.connect
def _drain_call_host(**_: Any) -> None:
    # Celery's warm shutdown (SIGTERM) has let running call tasks finish; now close SIP.
    stop_host()
