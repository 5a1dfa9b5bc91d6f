"""Dialer storage on SQLite and a private PostgreSQL: migrations, contact import with
bad rows, do-not-call and duplicates, and the attempt state machine's compare-and-set."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session, sessionmaker

from callfleet.dialer import state
from callfleet.dialer.contacts import csv_rows, import_contacts
from callfleet.dialer.db import Base
from callfleet.dialer.models import (
    AttemptState,
    CallAttempt,
    Campaign,
    Contact,
    ContactStatus,
    DncEntry,
)

CSV = """phone,name,timezone,appointment
+1 212 555 0101,Ada,,Tuesday 10:00
(212) 555-0102,Grace,America/Chicago,Wednesday
+44 20 7946 0958,Alan,,
not a number,Bad,,
+1 212 555 0101,Ada again,,
,Nobody,,
+1 212 555 0199,Mars,Mars/Base,
+1 212 555 0103,Extra,,x,y
+1 212 555 0104,Dnc Person,,
"""


def test_migrations_match_the_models(engine: Engine) -> None:
    with engine.connect() as conn:
        assert compare_metadata(MigrationContext.configure(conn), Base.metadata) == []


def test_import_reports_bad_rows_and_keeps_the_rest(
    sessions: sessionmaker[Session], campaign: Campaign
) -> None:
    with sessions() as s, s.begin():
        s.add(DncEntry(tenant_id=campaign.tenant_id, phone_e164="+12125550104", reason="asked"))
    with sessions() as s, s.begin():
        report = import_contacts(s, campaign, csv_rows(CSV))
    assert report.imported == 3
    assert [(r.row, r.reason) for r in report.rejected] == [
        (
            4,
            "phone 'not a number' is not a phone number: The string supplied did not seem "
            "to be a phone number.",
        ),
        (6, "missing phone number"),
        (7, "timezone 'Mars/Base' is not an IANA time zone"),
        (8, "row has 1 more field(s) than the header"),
    ]
    assert [(r.row, r.reason) for r in report.suppressed] == [
        (5, "duplicate of row 1"),
        (9, "on the do-not-call list (asked)"),
    ]
    with sessions() as s:
        contacts = {c.phone_e164: c for c in s.scalars(select(Contact))}
    assert set(contacts) == {"+12125550101", "+12125550102", "+442079460958", "+12125550104"}
    ada = contacts["+12125550101"]
    assert ada.name == "Ada" and ada.variables == {"appointment": "Tuesday 10:00"}
    assert ada.timezone == "America/New_York" and ada.source_row == 1
    assert contacts["+12125550102"].timezone == "America/Chicago"
    assert contacts["+442079460958"].timezone == "Europe/London"
    dnc = contacts["+12125550104"]
    assert dnc.status == ContactStatus.SUPPRESSED
    assert dnc.suppressed_reason == "on the do-not-call list (asked)"


def test_reimport_skips_numbers_already_in_the_campaign(
    sessions: sessionmaker[Session], campaign: Campaign
) -> None:
    with sessions() as s, s.begin():
        import_contacts(s, campaign, csv_rows("phone\n+12125550101\n"))
    with sessions() as s, s.begin():
        report = import_contacts(s, campaign, csv_rows("phone\n+12125550101\n+12125550102\n"))
    assert report.imported == 1
    assert [r.reason for r in report.suppressed] == ["already in this campaign"]


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ("", "CSV is empty: expected a header line with a phone column"),
        ("name,email\nAda,a@x\n", "CSV header has no phone column"),
        (b"phone\n\xff\xfe+1212\n", "CSV is not UTF-8: invalid byte at offset 6"),
    ],
)
def test_unreadable_csv_is_refused_whole(data: str | bytes, message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        list(csv_rows(data))


def test_failed_import_loses_nothing_stored(
    sessions: sessionmaker[Session], campaign: Campaign
) -> None:
    with sessions() as s, s.begin():
        import_contacts(s, campaign, csv_rows("phone\n+12125550101\n"))

    def broken_rows() -> object:
        yield {"phone": "+12125550102"}
        raise OSError("upload connection dropped")

    with pytest.raises(OSError), sessions() as s, s.begin():
        import_contacts(s, campaign, broken_rows())  # type: ignore[arg-type]
    with sessions() as s:
        assert s.scalar(select(func.count()).select_from(Contact)) == 1


def _attempt(sessions: sessionmaker[Session], campaign: Campaign) -> str:
    with sessions() as s, s.begin():
        import_contacts(s, campaign, csv_rows("phone\n+12125550150\n"))
        contact = s.scalars(select(Contact)).one()
        attempt = CallAttempt(
            tenant_id=campaign.tenant_id, campaign_id=campaign.id, contact_id=contact.id
        )
        s.add(attempt)
        s.flush()
        return attempt.id


def test_claim_is_exactly_once_under_concurrency(
    sessions: sessionmaker[Session], campaign: Campaign
) -> None:
    attempt_id = _attempt(sessions, campaign)
    wins: list[str] = []
    barrier = threading.Barrier(8)

    def worker(n: int) -> None:
        barrier.wait()
        try:
            with sessions() as s, s.begin():
                if state.claim(s, attempt_id, f"worker-{n}", lease_s=60):
                    wins.append(f"worker-{n}")
        except Exception as e:  # SQLite may report "database is locked" to losers
            assert "locked" in str(e)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(wins) == 1
    with sessions() as s:
        attempt = s.get(CallAttempt, attempt_id)
        assert attempt is not None
        assert attempt.state == AttemptState.DIALING and attempt.worker_id == wins[0]
    # A redelivered task finds the attempt claimed and must not dial.
    with sessions() as s, s.begin():
        assert not state.claim(s, attempt_id, "worker-late", lease_s=60)


def test_transitions_only_move_forward(sessions: sessionmaker[Session], campaign: Campaign) -> None:
    attempt_id = _attempt(sessions, campaign)
    with sessions() as s, s.begin():
        assert not state.transition(s, attempt_id, AttemptState.ANSWERED)  # not claimed
        assert state.claim(s, attempt_id, "w1", lease_s=60)
        assert state.transition(s, attempt_id, AttemptState.RINGING)
        assert state.transition(s, attempt_id, AttemptState.ANSWERED)
        assert state.transition(s, attempt_id, AttemptState.COMPLETED, end_reason="completed")
        assert not state.transition(s, attempt_id, AttemptState.FAILED)  # terminal
        assert not state.transition(s, attempt_id, AttemptState.DIALING)


def test_expired_lease_is_found_once(sessions: sessionmaker[Session], campaign: Campaign) -> None:
    attempt_id = _attempt(sessions, campaign)
    t0 = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)
    with sessions() as s, s.begin():
        assert state.claim(s, attempt_id, "w1", lease_s=30, now=t0)
        assert state.expired_attempts(s, now=t0 + timedelta(seconds=10)) == []
        assert state.renew_lease(s, attempt_id, "w1", lease_s=30, now=t0 + timedelta(seconds=20))
        assert not state.renew_lease(s, attempt_id, "w2", lease_s=30, now=t0)
        assert state.expired_attempts(s, now=t0 + timedelta(seconds=45)) == []
        assert state.expired_attempts(s, now=t0 + timedelta(seconds=51)) == [attempt_id]
        assert state.transition(s, attempt_id, AttemptState.FAILED, end_reason="worker_lost")
        assert not state.transition(s, attempt_id, AttemptState.FAILED)  # second reconciler
        assert state.expired_attempts(s, now=t0 + timedelta(seconds=51)) == []
