"""The Celery application: a Redis broker and three queues.

- ``scheduling``: the periodic tick that reconciles, schedules and completes campaigns.
- ``calls``: one task per call attempt, consumed by call-host processes (threads pool,
  concurrency = the SIP endpoint's call capacity).
- ``webhooks``: delivery of signed webhooks.

Call tasks are ``acks_late`` so a call-host that dies loses no task; the attempt's
compare-and-set claim is the idempotency guard that makes a redelivery harmless. The
Redis visibility timeout is set above the longest call so a running call's task is not
redelivered while it is still up.
"""

from __future__ import annotations

from celery import Celery
from kombu import Queue

from callfleet.settings import get_settings

SCHEDULING, CALLS, WEBHOOKS = "scheduling", "calls", "webhooks"


def make_app() -> Celery:
    settings = get_settings()
    app = Celery("callfleet", broker=settings.redis_url, include=["callfleet.workers.tasks"])
    app.conf.update(
        task_queues=[Queue(SCHEDULING), Queue(CALLS), Queue(WEBHOOKS)],
        task_default_queue=SCHEDULING,
        task_routes={
            "callfleet.workers.tasks.place_call": {"queue": CALLS},
            "callfleet.workers.tasks.deliver_webhooks": {"queue": WEBHOOKS},
        },
        task_ignore_result=True,
        task_serializer="json",
        accept_content=["json"],
        worker_prefetch_multiplier=1,
        worker_hijack_root_logger=False,
        broker_connection_retry_on_startup=True,
        broker_transport_options={"visibility_timeout": int(settings.max_call_s + 600)},
        beat_schedule={
            # ``expires``: a tick still waiting after the next one is due is dropped
            # rather than run late, so a slow pass does not pile up a backlog.
            "tick": {
                "task": "callfleet.workers.tasks.tick",
                "schedule": 1.0,
                "options": {"expires": 1.0},
            },
            "webhooks": {
                "task": "callfleet.workers.tasks.deliver_webhooks",
                "schedule": 2.0,
                "options": {"expires": 2.0},
            },
        },
    )
    return app


app = make_app()
