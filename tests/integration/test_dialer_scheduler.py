"""Scheduling with an injected clock on SQLite and PostgreSQL: calling windows across
time zones, outcomes and retries, the reconciler for dead workers, campaign controls."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from callfleet.dialer import state
from callfleet.dialer.campaigns import CampaignStateError, control
from callfleet.dialer.contacts import csv_rows, import_contacts
from callfleet.dialer.models import (
    AttemptState,
    CallAttempt,
    CallResult,
    Campaign,
    CampaignStatus,
    Contact,
    ContactStatus,
)
from callfleet.dialer.scheduler import (
    complete_if_done,
    reconcile,
    record_outcome,
    schedule_campaign,
    tick,
)

# 2026-11-23 is a Monday. 14:00 UTC = 09:00 New York, 14:00 London, 19:30 Kolkata,
# 06:00 Los Angeles (before the 08:00 window opens).
MONDAY_1400 = datetime(2026, 11, 23, 14, 0, tzinfo=UTC)

CONTACTS = """phone,name,timezone
+12125550101,New York,
+442079460958,London,
+919876543210,Kolkata,Asia/Kolkata
+13105550123,Los Angeles,
"""


def _start(sessions: sessionmaker[Session], campaign: Campaign, **settings: object) -> None:
    with sessions() as s, s.begin():
        camp = s.get(Campaign, campaign.id)
        assert camp is not None
        for key, value in settings.items():
            setattr(camp, key, value)
        import_contacts(s, camp, csv_rows(CONTACTS))
        control(s, campaign.id, "start", MONDAY_1400)


def _schedule(sessions: sessionmaker[Session], campaign_id: str, now: datetime) -> list[str]:
    with sessions() as s, s.begin():
        camp = s.get(Campaign, campaign_id)
        assert camp is not None
        return schedule_campaign(s, camp, now).attempts


def _phones(sessions: sessionmaker[Session], attempt_ids: list[str]) -> set[str]:
    with sessions() as s:
        return {
            s.get(Contact, s.get(CallAttempt, a).contact_id).phone_e164  # type: ignore[union-attr,arg-type]
            for a in attempt_ids
        }


def test_windows_in_each_contacts_local_time(
    sessions: sessionmaker[Session], campaign: Campaign
) -> None:
    _start(sessions, campaign)
    first = _schedule(sessions, campaign.id, MONDAY_1400)
    assert _phones(sessions, first) == {"+12125550101", "+442079460958", "+919876543210"}
    with sessions() as s:
        la = s.scalars(select(Contact).where(Contact.phone_e164 == "+13105550123")).one()
        # Waits (not dropped) until 08:00 in Los Angeles = 16:00 UTC.
        assert la.status == ContactStatus.PENDING
        assert la.next_attempt_at == datetime(2026, 11, 23, 16, 0, tzinfo=UTC)
    assert _schedule(sessions, campaign.id, MONDAY_1400 + timedelta(hours=1)) == []
    later = _schedule(sessions, campaign.id, datetime(2026, 11, 23, 16, 0, tzinfo=UTC))
    assert _phones(sessions, later) == {"+13105550123"}


def test_campaign_policy_and_closed_days(
    sessions: sessionmaker[Session], campaign: Campaign
) -> None:
    window = {"mon": [], "tue": [["09:00", "17:00"]]}
    _start(
        sessions, campaign, calling_window=window, tz_policy="campaign", default_tz="Europe/London"
    )
    assert _schedule(sessions, campaign.id, MONDAY_1400) == []
    with sessions() as s:
        due = {c.next_attempt_at for c in s.scalars(select(Contact))}
    assert due == {datetime(2026, 11, 24, 9, 0, tzinfo=UTC)}  # Tuesday 09:00 London


def test_outcomes_retry_then_finish(sessions: sessionmaker[Session], campaign: Campaign) -> None:
    policy = {"max_attempts": 2, "busy_s": 60, "jitter_s": 0}
    _start(sessions, campaign, retry_policy=policy)
    attempts = _schedule(sessions, campaign.id, MONDAY_1400)
    rng = random.Random(1)
    by_phone = {}
    with sessions() as s, s.begin():
        for a in attempts:
            phone = s.get(Contact, s.get(CallAttempt, a).contact_id).phone_e164  # type: ignore[union-attr,arg-type]
            by_phone[phone] = a
            assert state.claim(s, a, "w1", lease_s=60, now=MONDAY_1400)
        end = MONDAY_1400 + timedelta(seconds=30)
        assert record_outcome(s, by_phone["+12125550101"], "busy", end, sip_code=486, rng=rng)
        assert record_outcome(
            s, by_phone["+442079460958"], "completed", end, result={"talk_s": 42.0}
        )
        assert record_outcome(s, by_phone["+919876543210"], "invalid_number", end, sip_code=404)
        # The same outcome reported twice (a redelivered task) is recorded once.
        assert not record_outcome(s, by_phone["+12125550101"], "busy", end)
    with sessions() as s:
        ny = s.scalars(select(Contact).where(Contact.phone_e164 == "+12125550101")).one()
        assert (ny.status, ny.attempts_made, ny.last_outcome) == ("pending", 1, "busy")
        assert ny.next_attempt_at == MONDAY_1400 + timedelta(seconds=90)
        london = s.scalars(select(Contact).where(Contact.phone_e164 == "+442079460958")).one()
        assert london.status == ContactStatus.DONE
        result = s.get(CallResult, by_phone["+442079460958"])
        assert result is not None and result.talk_s == 42.0
        attempt = s.get(CallAttempt, by_phone["+12125550101"])
        assert attempt is not None and attempt.state == AttemptState.FAILED
        assert attempt.sip_code == 486
    retry = _schedule(sessions, campaign.id, MONDAY_1400 + timedelta(seconds=90))
    assert _phones(sessions, retry) == {"+12125550101"}
    with sessions() as s, s.begin():
        assert s.get(CallAttempt, retry[0]).attempt_number == 2  # type: ignore[union-attr]
        state.claim(s, retry[0], "w1", lease_s=60, now=MONDAY_1400)
        record_outcome(s, retry[0], "busy", MONDAY_1400 + timedelta(seconds=120))
        ny = s.scalars(select(Contact).where(Contact.phone_e164 == "+12125550101")).one()
        assert ny.status == ContactStatus.DONE  # max_attempts reached


def test_reconciler_fails_dead_workers_attempts_once(
    sessions: sessionmaker[Session], campaign: Campaign
) -> None:
    _start(sessions, campaign, retry_policy={"failed_s": 300, "jitter_s": 0})
    attempts = _schedule(sessions, campaign.id, MONDAY_1400)
    with sessions() as s, s.begin():
        for a in attempts:
            state.claim(s, a, "dead-worker", lease_s=30, now=MONDAY_1400)
    with sessions() as s, s.begin():
        assert reconcile(s, MONDAY_1400 + timedelta(seconds=20)) == []
        resolved = reconcile(s, MONDAY_1400 + timedelta(seconds=31))
    assert sorted(resolved) == sorted(attempts)
    with sessions() as s, s.begin():
        assert reconcile(s, MONDAY_1400 + timedelta(seconds=60)) == []  # once only
        for a in attempts:
            attempt = s.get(CallAttempt, a)
            assert attempt is not None and attempt.state == AttemptState.FAILED
            assert attempt.sip_reason is not None and attempt.sip_reason.startswith("worker_lost")
        # The contacts are not redialled blindly: the retry policy schedules them.
        due = {c.next_attempt_at for c in s.scalars(select(Contact)) if c.attempts_made}
        assert due == {MONDAY_1400 + timedelta(seconds=331)}


def test_controls_and_completion(sessions: sessionmaker[Session], campaign: Campaign) -> None:
    _start(sessions, campaign)
    with sessions() as s, s.begin():
        assert control(s, campaign.id, "pause", MONDAY_1400) is CampaignStatus.PAUSED
        with pytest.raises(CampaignStateError, match=r"cannot pause campaign \S+: it is paused"):
            control(s, campaign.id, "pause", MONDAY_1400)
        with pytest.raises(ValueError, match="unknown campaign action 'stop'"):
            control(s, campaign.id, "stop", MONDAY_1400)
    assert _schedule(sessions, campaign.id, MONDAY_1400) == []  # paused: no new calls
    with sessions() as s, s.begin():
        control(s, campaign.id, "resume", MONDAY_1400)
    attempts = _schedule(sessions, campaign.id, MONDAY_1400)
    with sessions() as s, s.begin():
        state.claim(s, attempts[0], "w1", lease_s=60, now=MONDAY_1400)  # one call is live
        control(s, campaign.id, "cancel", MONDAY_1400)
        states = {a.id: a.state for a in s.scalars(select(CallAttempt))}
        assert states[attempts[0]] == AttemptState.DIALING  # live calls finish
        assert sorted(v for k, v in states.items() if k != attempts[0]) == ["failed", "failed"]
        statuses = sorted(c.status for c in s.scalars(select(Contact)))
        assert statuses == ["in_progress", "suppressed", "suppressed", "suppressed"]


def test_campaign_completes_when_no_contact_is_left(
    sessions: sessionmaker[Session], campaign: Campaign
) -> None:
    _start(sessions, campaign, retry_policy={"max_attempts": 1})
    attempts = _schedule(sessions, campaign.id, MONDAY_1400)
    attempts += _schedule(sessions, campaign.id, datetime(2026, 11, 23, 16, 0, tzinfo=UTC))
    assert len(attempts) == 4
    with sessions() as s, s.begin():
        camp = s.get(Campaign, campaign.id)
        assert camp is not None
        for a in attempts[:-1]:
            state.claim(s, a, "w1", lease_s=60)
            record_outcome(s, a, "no_answer", MONDAY_1400)
        assert not complete_if_done(s, camp, MONDAY_1400)
        state.claim(s, attempts[-1], "w1", lease_s=60)
        record_outcome(s, attempts[-1], "completed", MONDAY_1400)
        assert complete_if_done(s, camp, MONDAY_1400)
        assert not complete_if_done(s, camp, MONDAY_1400)
        s.refresh(camp)
        assert camp.status == CampaignStatus.COMPLETED


def test_number_put_on_dnc_after_import_is_not_called(
    sessions: sessionmaker[Session], campaign: Campaign
) -> None:
    from callfleet.dialer.models import DncEntry

    _start(sessions, campaign)
    with sessions() as s, s.begin():
        s.add(
            DncEntry(
                tenant_id=campaign.tenant_id, phone_e164="+442079460958", reason="called the office"
            )
        )
    queued = _schedule(sessions, campaign.id, MONDAY_1400)
    assert "+442079460958" not in _phones(sessions, queued)
    with sessions() as s:
        london = s.scalars(select(Contact).where(Contact.phone_e164 == "+442079460958")).one()
    assert london.status == ContactStatus.SUPPRESSED
    assert london.suppressed_reason == "on the do-not-call list (called the office)"


def test_claim_checks_again_at_dial_time(
    sessions: sessionmaker[Session], campaign: Campaign
) -> None:
    from callfleet.dialer.models import DncEntry
    from callfleet.dialer.scheduler import claim_for_dial

    _start(sessions, campaign)
    attempts = _schedule(sessions, campaign.id, MONDAY_1400)
    by_phone = {p: a for a in attempts for p in _phones(sessions, [a])}
    with sessions() as s, s.begin():
        s.add(DncEntry(tenant_id=campaign.tenant_id, phone_e164="+442079460958", reason=""))
    with sessions() as s, s.begin():
        # London went on the do-not-call list after it was queued.
        assert claim_for_dial(s, by_phone["+442079460958"], "w1", 30, MONDAY_1400) == (
            "withdrawn: on the do-not-call list"
        )
        # Kolkata's window (08:00-21:00 IST) closes at 15:30 UTC: the task came late.
        late = MONDAY_1400 + timedelta(hours=2)
        assert claim_for_dial(s, by_phone["+919876543210"], "w1", 30, late) == (
            "withdrawn: outside the contact's calling window"
        )
        control(s, campaign.id, "pause", MONDAY_1400)
        assert claim_for_dial(s, by_phone["+12125550101"], "w1", 30, MONDAY_1400) == (
            "withdrawn: campaign is paused"
        )
        assert claim_for_dial(s, by_phone["+12125550101"], "w1", 30, MONDAY_1400) == "taken"
    with sessions() as s:
        contacts = {c.phone_e164: c for c in s.scalars(select(Contact))}
        attempt = s.get(CallAttempt, by_phone["+12125550101"])
    assert contacts["+442079460958"].status == ContactStatus.SUPPRESSED
    assert (contacts["+919876543210"].status, contacts["+919876543210"].attempts_made) == (
        "pending",
        0,  # not counted: it was never dialled
    )
    assert contacts["+12125550101"].status == ContactStatus.PENDING
    assert attempt is not None and (attempt.state, attempt.end_reason) == ("failed", "withdrawn")


def test_queue_ahead_budget_and_stale_requeue(
    sessions: sessionmaker[Session], campaign: Campaign
) -> None:
    from callfleet.dialer.scheduler import stale_queued

    numbers = "phone\n" + "".join(f"+1212555{n:04d}\n" for n in range(1000, 1020))
    with sessions() as s, s.begin():
        camp = s.get(Campaign, campaign.id)
        assert camp is not None
        camp.max_cps, camp.max_concurrent = 1.0, 1
        import_contacts(s, camp, csv_rows(numbers))
        control(s, campaign.id, "start", MONDAY_1400)
    first = _schedule(sessions, campaign.id, MONDAY_1400)
    assert len(first) == 6  # 5 s of pacing at 1 call/s, plus 1 concurrent call
    assert _schedule(sessions, campaign.id, MONDAY_1400) == []  # nothing until they drain
    with sessions() as s, s.begin():
        later = MONDAY_1400 + timedelta(seconds=301)
        assert sorted(stale_queued(s, later)) == sorted(first)
        assert stale_queued(s, later) == []  # once per period, not on every tick


def test_reconciled_attempts_are_reported_by_webhook(
    sessions: sessionmaker[Session], campaign: Campaign
) -> None:
    from callfleet.dialer.models import WebhookDelivery, WebhookSubscription

    _start(sessions, campaign)
    with sessions() as s, s.begin():
        s.add(WebhookSubscription(tenant_id=campaign.tenant_id, url="http://x", secret="k"))
    attempts = _schedule(sessions, campaign.id, MONDAY_1400)
    with sessions() as s, s.begin():
        state.claim(s, attempts[0], "dead", lease_s=10, now=MONDAY_1400)
        assert reconcile(s, MONDAY_1400 + timedelta(seconds=11)) == [attempts[0]]
    with sessions() as s:
        delivery = s.scalars(select(WebhookDelivery)).one()
    assert delivery.event_type == "call.completed"
    assert delivery.payload["data"]["sip_reason"].startswith("worker_lost")


def test_a_campaign_that_fails_to_schedule_does_not_stop_the_others(
    sessions: sessionmaker[Session], campaign: Campaign
) -> None:
    _start(sessions, campaign)
    with sessions() as s, s.begin():
        broken = Campaign(tenant_id=campaign.tenant_id, name="broken", default_region="US")
        s.add(broken)
        s.flush()
        import_contacts(s, broken, csv_rows(CONTACTS))
        control(s, broken.id, "start", MONDAY_1400)
        broken.calling_window = {"monday": "all day"}  # stored before validation existed
        broken_id = broken.id
    with sessions() as s, s.begin():
        report = tick(s, MONDAY_1400)
    # The good campaign's three contacts in their window are queued; the broken one
    # queued nothing and stays running for the next tick.
    assert _phones(sessions, report.queued) == {"+12125550101", "+442079460958", "+919876543210"}
    with sessions() as s:
        assert s.get(Campaign, broken_id).status == CampaignStatus.RUNNING  # type: ignore[union-attr]
        queued = s.scalars(select(CallAttempt).where(CallAttempt.campaign_id == broken_id)).all()
        assert queued == []
