"""Scheduling: which contacts to call now, what an ended attempt means for its contact,
and what to do with attempts whose worker died.

All functions take the clock (``now``) as an argument, so tests and the benchmark
control time; they work in the caller's transaction and return ids for the caller to
enqueue after commit (a task must never run before the row it points at exists).
"""

from __future__ import annotations

import logging
import math
import random
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, insert, or_, select, update
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from callfleet.dialer import state
from callfleet.dialer.contacts import dnc_reason, dnc_reasons
from callfleet.dialer.db import new_id
from callfleet.dialer.models import (
    AttemptState,
    CallAttempt,
    CallEvent,
    CallResult,
    Campaign,
    CampaignStatus,
    Contact,
    ContactStatus,
)
from callfleet.dialer.retry import ANSWERED, RetryPolicy, next_attempt
from callfleet.dialer.webhooks import enqueue as enqueue_webhook
from callfleet.dialer.windows import (
    CallingWindow,
    Schedule,
    next_call_time,
    possible_zones_for_number,
)
from callfleet.sip.status import EndReason

log = logging.getLogger(__name__)

#: How far ahead of its pacing a campaign's attempts are queued (s): enough to keep the
#: call hosts busy between ticks, little enough that a pause or a closing calling window
#: takes effect within seconds (each attempt is checked again when it is claimed).
QUEUE_AHEAD_S = 5.0
#: Attempts whose worker stopped renewing the lease are failed with this end reason.
WORKER_LOST = "worker_lost"
#: Outcomes that mean a person (or machine) picked up: the attempt ends COMPLETED.
_ANSWERED_OUTCOMES = frozenset(
    {ANSWERED, "voicemail", EndReason.COMPLETED.value, EndReason.TRANSFERRED.value}
)


def schedule_of(campaign: Campaign) -> Schedule:
    window = (
        CallingWindow.from_dict(campaign.calling_window)
        if campaign.calling_window
        else CallingWindow.daily()
    )
    return Schedule(
        default_tz=campaign.default_tz,
        window=window,
        tz_policy=campaign.tz_policy,  # type: ignore[arg-type]
        starts_at=campaign.starts_at,
        ends_at=campaign.ends_at,
    )


def _contact_zones(contact: Contact) -> str | Sequence[str] | None:
    return contact.timezone or possible_zones_for_number(contact.phone_e164) or None


@dataclass
class ScheduleResult:
    #: New queued attempts, to enqueue after commit.
    attempts: list[str]
    #: Contacts moved to a later time (outside their calling window now).
    deferred: int = 0
    #: Contacts that can never be called (the campaign ends first).
    expired: int = 0
    #: Contacts put on the do-not-call list since their import.
    suppressed: int = 0


def schedule_campaign(
    session: Session, campaign: Campaign, now: datetime, *, limit: int = 500
) -> ScheduleResult:
    """Queue an attempt for each contact of a running campaign that is due and inside
    its calling window now; a contact outside its window gets its next allowed time (it
    waits, it is not dropped). Concurrent schedulers cannot queue a contact twice: the
    contact moves pending → in_progress by compare-and-set."""
    result = ScheduleResult(attempts=[])
    if campaign.status != CampaignStatus.RUNNING:
        return result
    schedule = schedule_of(campaign)
    in_flight = session.scalar(
        select(func.count())
        .select_from(CallAttempt)
        .where(
            CallAttempt.campaign_id == campaign.id,
            CallAttempt.state.in_([AttemptState.QUEUED, *state.LIVE_STATES]),
        )
    )
    budget = math.ceil(campaign.max_cps * QUEUE_AHEAD_S) + campaign.max_concurrent
    limit = min(limit, budget - int(in_flight or 0))
    if limit <= 0:
        return result
    due = session.scalars(
        select(Contact)
        .where(
            Contact.campaign_id == campaign.id,
            Contact.status == ContactStatus.PENDING,
            or_(Contact.next_attempt_at.is_(None), Contact.next_attempt_at <= now),
        )
        .order_by(Contact.next_attempt_at, Contact.source_row)
        .limit(limit)
    ).all()
    # The do-not-call list is checked again at dial time: a number added after the
    # import must not be called.
    blocked = dnc_reasons(session, campaign.tenant_id, [c.phone_e164 for c in due])
    # Contacts in the same zone(s) share the answer for this ``now``: compute it once.
    next_time: dict[tuple[str, ...], datetime | None] = {}
    callable_now: list[Contact] = []
    for contact in due:
        if contact.phone_e164 in blocked:
            contact.status = ContactStatus.SUPPRESSED
            contact.suppressed_reason = dnc_reason(blocked[contact.phone_e164])
            result.suppressed += 1
            continue
        zones = _contact_zones(contact)
        key = (zones,) if isinstance(zones, str) else tuple(zones or ())
        if key not in next_time:
            next_time[key] = next_call_time(now, zones, schedule)
        at = next_time[key]
        if at is None:
            contact.status = ContactStatus.SUPPRESSED
            contact.suppressed_reason = (
                "no time left to call: the campaign ends first, or the number's possible "
                "time zones share no calling window"
            )
            result.expired += 1
        elif at > now:
            contact.next_attempt_at = at
            result.deferred += 1
        else:
            callable_now.append(contact)
    taken = _take(session, [c.id for c in callable_now])
    rows: list[dict[str, Any]] = [
        {
            "id": new_id("att"),
            "tenant_id": c.tenant_id,
            "campaign_id": campaign.id,
            "contact_id": c.id,
            "attempt_number": c.attempts_made + 1,
            "state": AttemptState.QUEUED,
            "due_at": now,
            "created_at": now,
        }
        for c in callable_now
        if c.id in taken
    ]
    if rows:
        session.execute(insert(CallAttempt), rows)
    result.attempts = [str(row["id"]) for row in rows]
    return result


def _take(session: Session, contact_ids: list[str]) -> set[str]:
    """Contacts moved pending → in_progress by this call (compare-and-set): a contact
    another scheduler took meanwhile is not in the result."""
    if not contact_ids:
        return set()
    res = session.execute(
        update(Contact)
        .where(Contact.id.in_(contact_ids), Contact.status == ContactStatus.PENDING)
        .values(status=ContactStatus.IN_PROGRESS)
        .returning(Contact.id)
        .execution_options(synchronize_session=False)
    )
    return set(res.scalars())


def record_outcome(
    session: Session,
    attempt_id: str,
    outcome: str,
    now: datetime,
    *,
    sip_code: int | None = None,
    sip_reason: str | None = None,
    result: dict[str, Any] | None = None,
    rng: random.Random | None = None,
) -> bool:
    """End ``attempt_id`` with ``outcome`` (an ``EndReason`` value, "voicemail" or
    "answered"), store its result, and apply the campaign's retry policy to its contact.
    ``False`` if the attempt had already ended: the outcome is recorded once."""
    final = AttemptState.COMPLETED if outcome in _ANSWERED_OUTCOMES else AttemptState.FAILED
    if not state.transition(
        session,
        attempt_id,
        final,
        end_reason=outcome,
        sip_code=sip_code,
        sip_reason=sip_reason,
        ended_at=now,
    ):
        return False
    attempt = session.get(CallAttempt, attempt_id)
    assert attempt is not None
    session.add(CallResult(attempt_id=attempt_id, outcome=outcome, **(result or {})))
    decision_reason = "no contact"
    if attempt.contact_id is not None:
        contact = session.get(Contact, attempt.contact_id)
        campaign = session.get(Campaign, attempt.campaign_id) if attempt.campaign_id else None
        if contact is not None and campaign is not None:
            decision_reason = _apply_retry(contact, campaign, outcome, now, rng)
    session.add(
        CallEvent(
            attempt_id=attempt_id,
            at=now,
            type="attempt.ended",
            data={"outcome": outcome, "sip_code": sip_code, "next": decision_reason},
        )
    )
    return True


def _apply_retry(
    contact: Contact, campaign: Campaign, outcome: str, now: datetime, rng: random.Random | None
) -> str:
    contact.attempts_made += 1
    contact.last_outcome = outcome
    policy = (
        RetryPolicy.from_dict(campaign.retry_policy) if campaign.retry_policy else RetryPolicy()
    )
    decision = next_attempt(policy, outcome, contact.attempts_made, now, rng)
    if decision.retry and campaign.status not in (CampaignStatus.CANCELLED,):
        contact.status = ContactStatus.PENDING
        contact.next_attempt_at = decision.at
    else:
        contact.status = ContactStatus.DONE
        contact.next_attempt_at = None
    return decision.reason


def reconcile(session: Session, now: datetime, rng: random.Random | None = None) -> list[str]:
    """Fail every live attempt whose lease expired (its worker died): recorded once with
    the reason, then the retry policy decides — never a blind redial of the same
    attempt. Returns the attempts it resolved."""
    resolved = []
    reason = f"{WORKER_LOST}: the call's worker stopped renewing its lease"
    for attempt_id in state.expired_attempts(session, now):
        if record_outcome(
            session, attempt_id, EndReason.FAILED.value, now, sip_reason=reason, rng=rng
        ):
            resolved.append(attempt_id)
            attempt = session.get(CallAttempt, attempt_id)
            assert attempt is not None
            data = {
                "attempt_id": attempt_id,
                "campaign_id": attempt.campaign_id,
                "contact_id": attempt.contact_id,
                "outcome": EndReason.FAILED.value,
                "sip_reason": reason,
            }
            enqueue_webhook(
                session,
                attempt.tenant_id,
                "call.completed",
                f"call.completed:{attempt_id}",
                data,
                now,
            )
    return resolved


def complete_if_done(session: Session, campaign: Campaign, now: datetime) -> bool:
    """Mark a running campaign completed when no contact is left to call; ``True`` when
    this call completed it (emit ``campaign.completed`` then)."""
    if campaign.status != CampaignStatus.RUNNING:
        return False
    open_contact = session.scalar(
        select(Contact.id)
        .where(
            Contact.campaign_id == campaign.id,
            Contact.status.in_([ContactStatus.PENDING, ContactStatus.IN_PROGRESS]),
        )
        .limit(1)
    )
    if open_contact is not None:
        return False
    res = session.execute(
        update(Campaign)
        .where(Campaign.id == campaign.id, Campaign.status == CampaignStatus.RUNNING)
        .values(status=CampaignStatus.COMPLETED, completed_at=now)
        .execution_options(synchronize_session=False)
    )
    return bool(res.rowcount == 1)  # type: ignore[attr-defined]


def stale_queued(
    session: Session, now: datetime, older_than_s: float = 300.0, limit: int = 500
) -> list[str]:
    """Attempts queued long ago and never claimed (their task was lost or gave up on
    pacing), to enqueue again. Each is taken by moving its ``due_at`` to now (compare-
    and-set), so it is re-enqueued once per ``older_than_s``, not on every tick. Safe:
    only a claim can lead to a dial."""
    cutoff = now - timedelta(seconds=older_than_s)
    candidates = list(
        session.scalars(
            select(CallAttempt.id)
            .where(CallAttempt.state == AttemptState.QUEUED, CallAttempt.due_at < cutoff)
            .limit(limit)
        )
    )
    if not candidates:
        return []
    res = session.execute(
        update(CallAttempt)
        .where(
            CallAttempt.id.in_(candidates),
            CallAttempt.state == AttemptState.QUEUED,
            CallAttempt.due_at < cutoff,
        )
        .values(due_at=now)
        .returning(CallAttempt.id)
        .execution_options(synchronize_session=False)
    )
    return list(res.scalars())


def claim_for_dial(
    session: Session, attempt_id: str, worker_id: str, lease_s: float, now: datetime
) -> str:
    """Claim a queued attempt for dialling, after checking again everything that may
    have changed since it was queued. Returns "claimed" (dial it), "taken" (another
    worker has it, or it is no longer queued: do nothing) or "withdrawn: <reason>" (not
    dialled, not counted as an attempt; its contact waits for the scheduler again)."""
    attempt = session.get(CallAttempt, attempt_id)
    if attempt is None or attempt.state != AttemptState.QUEUED:
        return "taken"
    reason = _why_not_now(session, attempt, now)
    if reason is not None:
        withdraw(session, attempt_id, reason, now)
        return f"withdrawn: {reason}"
    return "claimed" if state.claim(session, attempt_id, worker_id, lease_s, now) else "taken"


def _why_not_now(session: Session, attempt: CallAttempt, now: datetime) -> str | None:
    if attempt.contact_id is None or attempt.campaign_id is None:
        return None
    campaign = session.get(Campaign, attempt.campaign_id)
    contact = session.get(Contact, attempt.contact_id)
    if campaign is None or contact is None:
        return "its campaign or contact is gone"
    if campaign.status != CampaignStatus.RUNNING:
        return f"campaign is {campaign.status}"
    if dnc_reasons(session, campaign.tenant_id, [contact.phone_e164]):
        return "on the do-not-call list"
    if next_call_time(now, _contact_zones(contact), schedule_of(campaign)) != now:
        return "outside the contact's calling window"
    return None


def withdraw(session: Session, attempt_id: str, reason: str, now: datetime) -> bool:
    """End an attempt that was never dialled (queued, or claimed but refused before its
    INVITE): failed with end reason "withdrawn", not counted against the contact, whose
    next attempt the scheduler decides again (a do-not-call number is suppressed)."""
    if not state.transition(
        session,
        attempt_id,
        AttemptState.FAILED,
        end_reason="withdrawn",
        sip_reason=reason,
        ended_at=now,
    ):
        return False
    attempt = session.get(CallAttempt, attempt_id)
    contact = session.get(Contact, attempt.contact_id) if attempt and attempt.contact_id else None
    if contact is not None and contact.status == ContactStatus.IN_PROGRESS:
        if reason == "on the do-not-call list":
            contact.status = ContactStatus.SUPPRESSED
            contact.suppressed_reason = reason
        else:
            contact.status = ContactStatus.PENDING
            contact.next_attempt_at = None
    session.add(
        CallEvent(attempt_id=attempt_id, at=now, type="attempt.withdrawn", data={"reason": reason})
    )
    return True


@dataclass
class TickReport:
    queued: list[str]
    requeued: list[str]
    resolved: list[str]
    completed_campaigns: list[str]


def tick(session: Session, now: datetime, *, per_campaign: int = 500) -> TickReport:
    """One scheduler pass over every running campaign: fail attempts of dead workers,
    queue due contacts, re-enqueue stale attempts, complete finished campaigns (with
    their ``campaign.completed`` webhook). The caller enqueues ``queued`` +
    ``requeued`` after committing."""
    report = TickReport(
        queued=[], requeued=[], resolved=reconcile(session, now), completed_campaigns=[]
    )
    running = session.scalars(select(Campaign).where(Campaign.status == CampaignStatus.RUNNING))
    for campaign in running.all():
        # One savepoint per campaign: a campaign whose pass fails (a concurrent tick
        # queued the same contact first, a stored setting that no longer parses) is
        # skipped until the next tick without undoing the others' work.
        try:
            with session.begin_nested():
                queued = schedule_campaign(session, campaign, now, limit=per_campaign).attempts
                done = complete_if_done(session, campaign, now)
                if done:
                    enqueue_webhook(
                        session,
                        campaign.tenant_id,
                        "campaign.completed",
                        f"campaign.completed:{campaign.id}",
                        {"campaign_id": campaign.id, "name": campaign.name},
                        now,
                    )
        except (SQLAlchemyError, ValueError):
            log.exception("campaign %s: scheduling pass failed; retried next tick", campaign.id)
            continue
        report.queued += queued
        if done:
            report.completed_campaigns.append(campaign.id)
    report.requeued = stale_queued(session, now)
    return report
