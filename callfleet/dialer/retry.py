"""Retry policy: whether, and when, to call a contact again after an attempt ends.

Pure logic: no I/O, no database. Outcomes are the ``callfleet.sip.status.EndReason``
values plus "voicemail" (an answering machine picked up) and "answered". The instant
returned is only the earliest retry time; the dialer still moves it into the contact's
calling window with ``callfleet.dialer.windows.next_call_time``.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from datetime import UTC, datetime, timedelta

from callfleet.sip.status import EndReason

VOICEMAIL = "voicemail"
ANSWERED = "answered"

# Outcome -> the RetryPolicy field holding its delay.
RETRYABLE_OUTCOMES: dict[str, str] = {
    EndReason.BUSY.value: "busy_s",
    EndReason.NO_ANSWER.value: "no_answer_s",
    VOICEMAIL: "voicemail_s",
    EndReason.FAILED.value: "failed_s",
    EndReason.CONGESTION.value: "congestion_s",
}
# Outcomes never retried: someone was reached, the number cannot be reached, the callee
# refused, or we ended the call on purpose (cancelled).
FINAL_OUTCOMES: frozenset[str] = frozenset(
    {
        ANSWERED,
        EndReason.COMPLETED.value,
        EndReason.TRANSFERRED.value,
        EndReason.REPLACED.value,
        EndReason.INVALID_NUMBER.value,
        EndReason.DECLINED.value,
        EndReason.CANCELLED.value,
    }
)
OUTCOMES: frozenset[str] = frozenset(RETRYABLE_OUTCOMES) | FINAL_OUTCOMES


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how soon to call a contact again, by outcome.

    ``max_attempts`` counts every attempt, the first included (default 3). Delays are whole
    seconds after the attempt ended: ``busy_s`` 300, ``no_answer_s`` 1800, ``voicemail_s``
    ``None``, ``failed_s`` 600, ``congestion_s`` 120; ``None`` means that outcome is not
    retried. ``jitter_s`` (default 30) adds a uniform random 0..jitter_s seconds to each
    delay so that retries of one campaign do not all fire together.
    """

    max_attempts: int = 3
    busy_s: int | None = 300
    no_answer_s: int | None = 1800
    voicemail_s: int | None = None
    failed_s: int | None = 600
    congestion_s: int | None = 120
    jitter_s: int = 30

    def __post_init__(self) -> None:
        if not _is_int(self.max_attempts):
            raise ValueError(
                f"retry policy: max_attempts must be an integer, got {self.max_attempts!r}"
            )
        if self.max_attempts < 1:
            raise ValueError(f"retry policy: max_attempts must be >= 1, got {self.max_attempts}")
        for name in (*RETRYABLE_OUTCOMES.values(), "jitter_s"):
            value = getattr(self, name)
            if value is None and name != "jitter_s":
                continue
            if not _is_int(value):
                allowed = "an integer number of seconds"
                if name != "jitter_s":
                    allowed += " or null"
                raise ValueError(f"retry policy: {name} must be {allowed}, got {value!r}")
            if value < 0:
                raise ValueError(f"retry policy: {name} must be >= 0, got {value}")

    @classmethod
    def from_dict(cls, data: Mapping[str, object]) -> RetryPolicy:
        """Policy from a mapping of field names to values; missing fields keep defaults.

        Raises ``ValueError`` naming the key for an unknown key, a negative delay, or
        ``max_attempts`` below 1.
        """
        known = [f.name for f in fields(cls)]
        for key in data:
            if key not in known:
                raise ValueError(
                    f"retry policy: unknown key {key!r} (expected one of {', '.join(known)})"
                )
        return cls(**data)  # type: ignore[arg-type]  # values are checked in __post_init__

    def to_dict(self) -> dict[str, int | None]:
        """Every field by name; ``from_dict`` inverts it."""
        return asdict(self)

    def delay_s(self, outcome: str) -> int | None:
        """Base delay before retrying ``outcome``, or ``None`` when it is not retried."""
        _check_outcome(outcome)
        name = RETRYABLE_OUTCOMES.get(outcome)
        return None if name is None else getattr(self, name)


@dataclass(frozen=True)
class RetryDecision:
    """Whether to retry, when (UTC, ``None`` without a retry) and why, in words."""

    retry: bool
    at: datetime | None
    reason: str


def _check_outcome(outcome: str) -> None:
    if outcome not in OUTCOMES:
        raise ValueError(f"outcome is not a known call outcome: {outcome!r}")


def next_attempt(
    policy: RetryPolicy,
    outcome: str,
    attempts_made: int,
    ended_at_utc: datetime,
    rng: random.Random | None = None,
) -> RetryDecision:
    """Decide the retry after an attempt that ended at ``ended_at_utc`` with ``outcome``.

    ``attempts_made`` counts the attempts so far, this one included (>= 1). The retry is
    due at ``ended_at_utc`` + the outcome's delay + uniform 0..``jitter_s`` seconds drawn
    from ``rng`` (deterministic when given; a fresh ``random.Random`` otherwise). Reasons
    read "busy: retry 2 of 3 in 300 s", "no retry: max attempts (3) reached", "no retry:
    outcome completed is final" or "no retry: policy does not retry voicemail".
    """
    _check_outcome(outcome)
    if not _is_int(attempts_made) or attempts_made < 1:
        raise ValueError(f"attempts_made must be an integer >= 1, got {attempts_made!r}")
    if ended_at_utc.tzinfo is None or ended_at_utc.utcoffset() is None:
        raise ValueError("ended_at_utc must be timezone-aware")
    if outcome in FINAL_OUTCOMES:
        return RetryDecision(False, None, f"no retry: outcome {outcome} is final")
    delay_s = policy.delay_s(outcome)
    if delay_s is None:
        return RetryDecision(False, None, f"no retry: policy does not retry {outcome}")
    if attempts_made >= policy.max_attempts:
        return RetryDecision(False, None, f"no retry: max attempts ({policy.max_attempts}) reached")
    jitter_s = (rng if rng is not None else random.Random()).uniform(0, policy.jitter_s)
    at = ended_at_utc.astimezone(UTC) + timedelta(seconds=delay_s + jitter_s)
    reason = f"{outcome}: retry {attempts_made + 1} of {policy.max_attempts} in {delay_s} s"
    return RetryDecision(True, at, reason)
