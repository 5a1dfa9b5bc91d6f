"""Campaign controls: start, pause, resume, cancel — each a compare-and-set on the
campaign's status, so two operators (or an operator and the scheduler) cannot
interleave into an impossible state."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import update
from sqlalchemy.orm import Session

from callfleet.dialer import state
from callfleet.dialer.models import (
    AttemptState,
    CallAttempt,
    Campaign,
    CampaignStatus,
    Contact,
    ContactStatus,
)

S = CampaignStatus
#: action -> (states it applies to, resulting state)
ACTIONS: dict[str, tuple[frozenset[CampaignStatus], CampaignStatus]] = {
    "start": (frozenset({S.DRAFT}), S.RUNNING),
    "pause": (frozenset({S.RUNNING}), S.PAUSED),
    "resume": (frozenset({S.PAUSED}), S.RUNNING),
    "cancel": (frozenset({S.DRAFT, S.RUNNING, S.PAUSED}), S.CANCELLED),
}


class CampaignStateError(ValueError):
    """The action does not apply to the campaign's current status."""


def control(session: Session, campaign_id: str, action: str, now: datetime) -> CampaignStatus:
    """Apply ``action`` ("start", "pause", "resume", "cancel"); returns the new status.

    Pause stops new calls; live calls finish. Cancel also ends queued attempts (failed,
    "cancelled") and suppresses contacts not called yet; live calls finish."""
    if action not in ACTIONS:
        raise ValueError(f"unknown campaign action {action!r} (one of {', '.join(ACTIONS)})")
    allowed, target = ACTIONS[action]
    res = session.execute(
        update(Campaign)
        .where(Campaign.id == campaign_id, Campaign.status.in_([s.value for s in allowed]))
        .values(status=target.value)
        .execution_options(synchronize_session=False)
    )
    if res.rowcount != 1:  # type: ignore[attr-defined]
        campaign = session.get(Campaign, campaign_id)
        if campaign is None:
            raise ValueError(f"no campaign {campaign_id!r}")
        raise CampaignStateError(f"cannot {action} campaign {campaign_id}: it is {campaign.status}")
    if target is S.CANCELLED:
        _cancel_pending(session, campaign_id, now)
    return target


def _cancel_pending(session: Session, campaign_id: str, now: datetime) -> None:
    queued = session.scalars(
        CallAttempt.__table__.select()
        .with_only_columns(CallAttempt.id)
        .where(CallAttempt.campaign_id == campaign_id, CallAttempt.state == AttemptState.QUEUED)
    ).all()
    for attempt_id in queued:
        if state.transition(
            session, attempt_id, AttemptState.FAILED, end_reason="cancelled", ended_at=now
        ):
            session.execute(
                update(Contact)
                .where(Contact.id == CallAttempt.contact_id, CallAttempt.id == attempt_id)
                .values(status=ContactStatus.SUPPRESSED, suppressed_reason="campaign cancelled")
                .execution_options(synchronize_session=False)
            )
    session.execute(
        update(Contact)
        .where(Contact.campaign_id == campaign_id, Contact.status == ContactStatus.PENDING)
        .values(status=ContactStatus.SUPPRESSED, suppressed_reason="campaign cancelled")
        .execution_options(synchronize_session=False)
    )
