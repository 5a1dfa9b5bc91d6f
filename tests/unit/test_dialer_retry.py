"""Retry policy: delays by outcome, attempt cap, jitter, reasons and errors."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta, timezone

import pytest

from callfleet.dialer.retry import OUTCOMES, RetryDecision, RetryPolicy, next_attempt
from callfleet.sip.status import EndReason

ENDED = datetime(2025, 6, 10, 15, 0, tzinfo=UTC)
NO_JITTER = RetryPolicy(jitter_s=0)


def test_defaults_and_round_trip() -> None:
    policy = RetryPolicy()
    assert policy.to_dict() == {
        "max_attempts": 3,
        "busy_s": 300,
        "no_answer_s": 1800,
        "voicemail_s": None,
        "failed_s": 600,
        "congestion_s": 120,
        "jitter_s": 30,
    }
    assert RetryPolicy.from_dict(policy.to_dict()) == policy
    assert RetryPolicy.from_dict({}) == policy
    custom = RetryPolicy.from_dict({"max_attempts": 5, "voicemail_s": 3600, "busy_s": None})
    assert custom == RetryPolicy(max_attempts=5, voicemail_s=3600, busy_s=None)
    assert RetryPolicy.from_dict(custom.to_dict()) == custom


@pytest.mark.parametrize(
    ("outcome", "delay_s"),
    [("busy", 300), ("no_answer", 1800), ("failed", 600), ("congestion", 120)],
)
def test_retried_outcomes(outcome: str, delay_s: int) -> None:
    decision = next_attempt(NO_JITTER, outcome, 1, ENDED)
    assert decision == RetryDecision(
        True, ENDED + timedelta(seconds=delay_s), f"{outcome}: retry 2 of 3 in {delay_s} s"
    )
    assert NO_JITTER.delay_s(outcome) == delay_s


@pytest.mark.parametrize(
    "outcome",
    ["completed", "answered", "transferred", "replaced", "invalid_number", "declined", "cancelled"],
)
def test_final_outcomes_are_never_retried(outcome: str) -> None:
    decision = next_attempt(RetryPolicy(), outcome, 1, ENDED)
    assert decision == RetryDecision(False, None, f"no retry: outcome {outcome} is final")
    assert RetryPolicy().delay_s(outcome) is None


def test_voicemail_is_not_retried_by_default() -> None:
    decision = next_attempt(RetryPolicy(), "voicemail", 1, ENDED)
    assert decision == RetryDecision(False, None, "no retry: policy does not retry voicemail")
    policy = RetryPolicy(voicemail_s=3600, jitter_s=0)
    decision = next_attempt(policy, "voicemail", 2, ENDED)
    assert decision == RetryDecision(
        True, ENDED + timedelta(hours=1), "voicemail: retry 3 of 3 in 3600 s"
    )


def test_an_outcome_disabled_in_the_policy() -> None:
    decision = next_attempt(RetryPolicy(busy_s=None), "busy", 1, ENDED)
    assert decision == RetryDecision(False, None, "no retry: policy does not retry busy")


def test_zero_delay_retries_at_once() -> None:
    decision = next_attempt(RetryPolicy(congestion_s=0, jitter_s=0), "congestion", 1, ENDED)
    assert decision == RetryDecision(True, ENDED, "congestion: retry 2 of 3 in 0 s")


def test_max_attempts() -> None:
    assert next_attempt(NO_JITTER, "busy", 2, ENDED).reason == "busy: retry 3 of 3 in 300 s"
    for attempts_made in (3, 4):
        decision = next_attempt(NO_JITTER, "busy", attempts_made, ENDED)
        assert decision == RetryDecision(False, None, "no retry: max attempts (3) reached")
    single = RetryPolicy(max_attempts=1)
    decision = next_attempt(single, "no_answer", 1, ENDED)
    assert decision == RetryDecision(False, None, "no retry: max attempts (1) reached")


def test_a_final_outcome_is_reported_before_the_attempt_cap() -> None:
    decision = next_attempt(RetryPolicy(), "completed", 3, ENDED)
    assert decision.reason == "no retry: outcome completed is final"


def test_end_reason_members_are_outcomes() -> None:
    assert {reason.value for reason in EndReason} <= OUTCOMES
    decision = next_attempt(NO_JITTER, EndReason.BUSY, 1, ENDED)
    assert decision.reason == "busy: retry 2 of 3 in 300 s"


def test_jitter_is_deterministic_with_a_seeded_rng() -> None:
    policy = RetryPolicy()
    first = next_attempt(policy, "busy", 1, ENDED, random.Random(7))
    again = next_attempt(policy, "busy", 1, ENDED, random.Random(7))
    assert first == again
    expected_jitter_s = random.Random(7).uniform(0, 30)
    assert first.at == ENDED + timedelta(seconds=300 + expected_jitter_s)
    assert first.reason == "busy: retry 2 of 3 in 300 s"
    other = next_attempt(policy, "busy", 1, ENDED, random.Random(8))
    assert other.at != first.at


def test_jitter_stays_within_bounds() -> None:
    rng = random.Random(1)
    for _ in range(200):
        at = next_attempt(RetryPolicy(), "congestion", 1, ENDED, rng).at
        assert at is not None
        assert ENDED + timedelta(seconds=120) <= at <= ENDED + timedelta(seconds=150)
    at = next_attempt(RetryPolicy(), "congestion", 1, ENDED).at  # unseeded
    assert at is not None
    assert ENDED + timedelta(seconds=120) <= at <= ENDED + timedelta(seconds=150)


def test_result_is_utc_whatever_the_input_zone() -> None:
    ended = datetime(2025, 6, 10, 11, 0, tzinfo=timezone(timedelta(hours=-4)))
    decision = next_attempt(NO_JITTER, "busy", 1, ended)
    assert decision.at == ENDED + timedelta(seconds=300)
    assert decision.at is not None and decision.at.tzinfo is UTC


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (
            {"declined_s": 5},
            "retry policy: unknown key 'declined_s' (expected one of max_attempts, busy_s, "
            "no_answer_s, voicemail_s, failed_s, congestion_s, jitter_s)",
        ),
        ({"busy_s": -1}, "retry policy: busy_s must be >= 0, got -1"),
        ({"congestion_s": -120}, "retry policy: congestion_s must be >= 0, got -120"),
        ({"jitter_s": -1}, "retry policy: jitter_s must be >= 0, got -1"),
        ({"max_attempts": 0}, "retry policy: max_attempts must be >= 1, got 0"),
        ({"max_attempts": True}, "retry policy: max_attempts must be an integer, got True"),
        ({"max_attempts": 2.5}, "retry policy: max_attempts must be an integer, got 2.5"),
        (
            {"failed_s": "600"},
            "retry policy: failed_s must be an integer number of seconds or null, got '600'",
        ),
        (
            {"jitter_s": None},
            "retry policy: jitter_s must be an integer number of seconds, got None",
        ),
    ],
)
def test_bad_policy(data: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError) as error:
        RetryPolicy.from_dict(data)
    assert str(error.value) == message


@pytest.mark.parametrize(
    ("outcome", "attempts_made", "ended_at", "message"),
    [
        ("hung_up", 1, ENDED, "outcome is not a known call outcome: 'hung_up'"),
        ("BUSY", 1, ENDED, "outcome is not a known call outcome: 'BUSY'"),
        ("busy", 0, ENDED, "attempts_made must be an integer >= 1, got 0"),
        ("busy", 1, datetime(2025, 6, 10, 15, 0), "ended_at_utc must be timezone-aware"),
    ],
)
def test_bad_arguments(outcome: str, attempts_made: int, ended_at: datetime, message: str) -> None:
    with pytest.raises(ValueError) as error:
        next_attempt(RetryPolicy(), outcome, attempts_made, ended_at)
    assert str(error.value) == message


def test_unknown_outcome_in_delay_s() -> None:
    with pytest.raises(ValueError) as error:
        RetryPolicy().delay_s("ringing")
    assert str(error.value) == "outcome is not a known call outcome: 'ringing'"
