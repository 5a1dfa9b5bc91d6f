"""The call attempt state machine, moved only by compare-and-set.

Every transition is one ``UPDATE … WHERE id = :id AND state IN (:allowed)``: it either
happens exactly once or not at all, whatever the number of workers, redeliveries or
retries. The claim (queued → dialing) is taken before any INVITE is sent, so a task
delivered twice dials once; an attempt whose worker died keeps its claim until its
lease expires, and is then resolved (failed, with the reason) rather than redialled.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from callfleet.dialer.db import utcnow
from callfleet.dialer.models import AttemptState, CallAttempt

#: Where each state may go next. Terminal states go nowhere.
TRANSITIONS: dict[AttemptState, frozenset[AttemptState]] = {
    AttemptState.QUEUED: frozenset({AttemptState.DIALING, AttemptState.FAILED}),
    AttemptState.DIALING: frozenset(
        {AttemptState.RINGING, AttemptState.ANSWERED, AttemptState.COMPLETED, AttemptState.FAILED}
    ),
    AttemptState.RINGING: frozenset(
        {AttemptState.ANSWERED, AttemptState.COMPLETED, AttemptState.FAILED}
    ),
    AttemptState.ANSWERED: frozenset({AttemptState.COMPLETED, AttemptState.FAILED}),
    AttemptState.COMPLETED: frozenset(),
    AttemptState.FAILED: frozenset(),
}
LIVE_STATES = (AttemptState.DIALING, AttemptState.RINGING, AttemptState.ANSWERED)


def sources_of(target: AttemptState) -> list[str]:
    """States from which ``target`` may be entered."""
    return [s.value for s, nexts in TRANSITIONS.items() if target in nexts]


def transition(session: Session, attempt_id: str, to: AttemptState, **values: Any) -> bool:
    """Move ``attempt_id`` to ``to`` if its current state allows it; ``values`` are set
    in the same statement. ``False`` means another actor got there first (or the move
    is not allowed): the caller must not act as if it happened."""
    result = session.execute(
        update(CallAttempt)
        .where(CallAttempt.id == attempt_id, CallAttempt.state.in_(sources_of(to)))
        .values(state=to.value, **values)
        .execution_options(synchronize_session=False)
    )
    return bool(result.rowcount == 1)  # type: ignore[attr-defined]


def claim(
    session: Session, attempt_id: str, worker_id: str, lease_s: float, now: datetime | None = None
) -> bool:
    """queued → dialing for ``worker_id``, with a lease it must renew while the call
    lives. Only the worker whose claim returned ``True`` may send the INVITE."""
    now = now or utcnow()
    return transition(
        session,
        attempt_id,
        AttemptState.DIALING,
        worker_id=worker_id,
        claimed_at=now,
        lease_expires_at=now + timedelta(seconds=lease_s),
    )


def renew_lease(
    session: Session, attempt_id: str, worker_id: str, lease_s: float, now: datetime | None = None
) -> bool:
    """Extend the lease of a live attempt this worker owns; ``False`` if it lost it."""
    now = now or utcnow()
    result = session.execute(
        update(CallAttempt)
        .where(
            CallAttempt.id == attempt_id,
            CallAttempt.worker_id == worker_id,
            CallAttempt.state.in_([s.value for s in LIVE_STATES]),
        )
        .values(lease_expires_at=now + timedelta(seconds=lease_s))
        .execution_options(synchronize_session=False)
    )
    return bool(result.rowcount == 1)  # type: ignore[attr-defined]


def expired_attempts(session: Session, now: datetime | None = None, limit: int = 500) -> list[str]:
    """Live attempts whose lease ran out: their worker died or hung. The reconciler
    fails each (``transition`` to FAILED, which only one reconciler can win)."""
    now = now or utcnow()
    return list(
        session.scalars(
            select(CallAttempt.id)
            .where(
                CallAttempt.state.in_([s.value for s in LIVE_STATES]),
                CallAttempt.lease_expires_at < now,
            )
            .limit(limit)
        )
    )
