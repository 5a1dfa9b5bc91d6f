"""Calling windows in the contact's local time, and the next instant a contact may be called.

Pure logic: no I/O, no database. Every instant is an aware ``datetime``; results are in UTC.

Local-time rules (the contact's wall clock decides, as telemarketing rules such as the
TCPA's "8 a.m. to 9 p.m. local time" do):

- A window interval ``[start, end)`` is half-open: a call may start at ``start`` but not
  at ``end``, so a window that ends exactly now is closed now.
- Each boundary is the **first instant at which the local wall clock reaches it**. A
  boundary inside a DST gap (02:30 on a spring-forward night) therefore falls on the first
  valid local time after it (03:00); a boundary inside a repeated hour (01:30 on a
  fall-back night) is its first occurrence, so a window that closes at 01:30 does not
  reopen when the clock shows 01:00 again: the repeated hour is not counted twice.
- ``"24:00"`` is accepted as an end time; an interval ending at 24:00 and one starting at
  00:00 on the next day join into one across midnight.

Several possible zones: a number can map to several zones (a toll-free or a mobile
number). To respect the window in every place the callee might be, the contact is
callable only when the window is open in **all** of them: ``next_call_time`` returns the
earliest instant in the intersection, or ``None`` if the zones never share an open
instant within a year (``SEARCH_HORIZON``).
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, time, timedelta, tzinfo
from functools import reduce
from itertools import pairwise
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import phonenumbers
from phonenumbers import timezone as pn_timezone

DAY_NAMES: tuple[str, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
MINUTES_PER_DAY = 1440
DEFAULT_START = "08:00"
DEFAULT_END = "21:00"
# How far ahead next_call_time looks for an open instant: a year and a week covers every
# DST combination of a weekly window. Nothing open within it means "never".
SEARCH_HORIZON = timedelta(days=371)
# The zone phonenumbers reports for a number it cannot place.
UNKNOWN_ZONE = "Etc/Unknown"

TzPolicy = Literal["contact", "campaign"]
TZ_POLICIES: tuple[str, ...] = ("contact", "campaign")

# (start_min, end_min): minutes after local midnight, 0 <= start < end <= 1440.
Span = tuple[int, int]
_UtcSpan = tuple[datetime, datetime]

_HHMM = re.compile(r"([0-9]{2}):([0-9]{2})")


def _parse_hhmm(label: str, role: str, value: object) -> int:
    """Minutes after midnight of ``value`` ("HH:MM"); "24:00" only as an end."""
    match = _HHMM.fullmatch(value) if isinstance(value, str) else None
    if match is None:
        raise ValueError(f"calling window {label}: {role} {value!r} is not a time HH:MM")
    hours, minutes = int(match.group(1)), int(match.group(2))
    total = hours * 60 + minutes
    latest = MINUTES_PER_DAY if role == "end" else MINUTES_PER_DAY - 1
    if minutes > 59 or total > latest:
        bound = _format_hhmm(latest)
        raise ValueError(
            f"calling window {label}: {role} {value!r} is out of range (00:00 to {bound})"
        )
    return total


def _format_hhmm(minutes: int) -> str:
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


def _format_span(span: Span) -> str:
    return f"{_format_hhmm(span[0])}-{_format_hhmm(span[1])}"


def _parse_spans(label: str, value: object) -> tuple[Span, ...]:
    """Spans of one day from ``[["HH:MM", "HH:MM"], ...]``."""
    if isinstance(value, str | bytes) or not isinstance(value, Sequence):
        raise ValueError(
            f"calling window {label}: intervals must be a list of [start, end] pairs, got {value!r}"
        )
    spans: list[Span] = []
    for pair in value:
        if isinstance(pair, str | bytes) or not isinstance(pair, Sequence) or len(pair) != 2:
            raise ValueError(
                f"calling window {label}: interval must be a [start, end] pair, got {pair!r}"
            )
        start = _parse_hhmm(label, "start", pair[0])
        end = _parse_hhmm(label, "end", pair[1])
        if start >= end:
            raise ValueError(
                f"calling window {label}: start {pair[0]!r} is not before end {pair[1]!r}"
            )
        spans.append((start, end))
    return tuple(spans)


def _check_spans(label: str, spans: Sequence[Span]) -> tuple[Span, ...]:
    """``spans`` sorted, after checking ranges and that no two overlap."""
    ordered = sorted((int(start), int(end)) for start, end in spans)
    for start, end in ordered:
        if not 0 <= start < end <= MINUTES_PER_DAY:
            raise ValueError(
                f"calling window {label}: interval ({start}, {end}) is not "
                f"0 <= start_min < end_min <= {MINUTES_PER_DAY}"
            )
    for before, after in pairwise(ordered):
        if after[0] < before[1]:
            raise ValueError(
                f"calling window {label}: interval {_format_span(before)} overlaps "
                f"{_format_span(after)}"
            )
    return tuple(ordered)


_DEFAULT_SPANS: tuple[Span, ...] = ((8 * 60, 21 * 60),)


@dataclass(frozen=True)
class CallingWindow:
    """When calls may start, per weekday, in the callee's local time.

    ``days`` has seven entries, Monday first; each is a tuple of ``(start_min, end_min)``
    half-open intervals in minutes after local midnight (``end_min`` up to 1440, i.e.
    24:00), non-overlapping; an empty tuple means closed that day. Default: 08:00-21:00
    every day. The constructor sorts each day's intervals and rejects a window that is
    closed on every day.
    """

    days: tuple[tuple[Span, ...], ...] = (_DEFAULT_SPANS,) * 7

    def __post_init__(self) -> None:
        if len(self.days) != len(DAY_NAMES):
            raise ValueError(f"calling window: days must have 7 entries, got {len(self.days)}")
        days = tuple(
            _check_spans(name, spans) for name, spans in zip(DAY_NAMES, self.days, strict=True)
        )
        if not any(days):
            raise ValueError("calling window: closed on every day")
        object.__setattr__(self, "days", days)

    @classmethod
    def daily(cls, start: str = DEFAULT_START, end: str = DEFAULT_END) -> CallingWindow:
        """The same interval every day, ``start`` and ``end`` as "HH:MM" (default 08:00-21:00)."""
        spans = _parse_spans("daily", [[start, end]])
        return cls((spans,) * 7)

    @classmethod
    def from_dict(cls, data: Mapping[str, object]) -> CallingWindow:
        """Window from ``{"mon": [["08:00", "12:00"], ["13:00", "21:00"]], "sun": [], ...}``.

        Keys are ``mon`` ... ``sun``; a day that is missing is closed. Raises ``ValueError``
        naming the day and the value for an unknown day, a time that is not "HH:MM", a start
        not before its end, or overlapping intervals.
        """
        if not isinstance(data, Mapping):
            raise ValueError(f"calling window must be a mapping of day to intervals, got {data!r}")
        for key in data:
            if key not in DAY_NAMES:
                raise ValueError(
                    f"calling window: unknown day {key!r} (expected one of {', '.join(DAY_NAMES)})"
                )
        return cls(tuple(_parse_spans(name, data.get(name, [])) for name in DAY_NAMES))

    def to_dict(self) -> dict[str, list[list[str]]]:
        """All seven days as ``{"mon": [["08:00", "21:00"]], ...}``; ``from_dict`` inverts it."""
        return {
            name: [[_format_hhmm(start), _format_hhmm(end)] for start, end in spans]
            for name, spans in zip(DAY_NAMES, self.days, strict=True)
        }


def _zone(fieldname: str, name: str) -> ZoneInfo:
    if not isinstance(name, str) or not name:
        raise ValueError(f"{fieldname} is not a known time zone: {name!r}")
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"{fieldname} is not a known time zone: {name!r}") from None


def _as_utc(fieldname: str, value: datetime) -> datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{fieldname} must be timezone-aware")
    return value.astimezone(UTC)


@dataclass(frozen=True, kw_only=True)
class Schedule:
    """When a campaign may call: its active period, calling window and time-zone policy.

    ``starts_at`` (inclusive) and ``ends_at`` (exclusive) are aware datetimes, stored in
    UTC; ``None`` means unbounded (default). ``tz_policy`` "contact" (default) uses the
    contact's zone(s) and falls back to ``default_tz`` when they are unknown; "campaign"
    always uses ``default_tz`` (an IANA zone name, required).
    """

    default_tz: str
    window: CallingWindow = field(default_factory=CallingWindow)
    tz_policy: TzPolicy = "contact"
    starts_at: datetime | None = None
    ends_at: datetime | None = None

    def __post_init__(self) -> None:
        _zone("default_tz", self.default_tz)
        if self.tz_policy not in TZ_POLICIES:
            raise ValueError(f"tz_policy must be 'contact' or 'campaign', got {self.tz_policy!r}")
        if self.starts_at is not None:
            object.__setattr__(self, "starts_at", _as_utc("starts_at", self.starts_at))
        if self.ends_at is not None:
            object.__setattr__(self, "ends_at", _as_utc("ends_at", self.ends_at))
        if self.starts_at is not None and self.ends_at is not None:
            if self.starts_at >= self.ends_at:
                raise ValueError(
                    f"starts_at {self.starts_at.isoformat()} is not before "
                    f"ends_at {self.ends_at.isoformat()}"
                )

    def zones_for(self, contact_tz: str | Sequence[str] | None) -> tuple[str, ...]:
        """The zone names whose windows apply to a contact, after the policy and fallback."""
        if self.tz_policy == "campaign" or contact_tz is None:
            return (self.default_tz,)
        names = (contact_tz,) if isinstance(contact_tz, str) else tuple(contact_tz)
        names = tuple(dict.fromkeys(name for name in names if name))
        return names or (self.default_tz,)


def _wall_to_utc(wall: datetime, zone: tzinfo) -> datetime:
    """First instant at which the wall clock of ``zone`` reads ``wall`` (naive) or later."""
    first = wall.replace(tzinfo=zone, fold=0).astimezone(UTC)
    if first.astimezone(zone).replace(tzinfo=None) == wall:
        return first  # exists; fold=0 is the first of two occurrences
    # In a gap: the answer is the transition, between the two fold readings.
    other = wall.replace(tzinfo=zone, fold=1).astimezone(UTC)
    low, high = sorted((int(first.timestamp()), int(other.timestamp())))
    while high - low > 1:
        middle = (low + high) // 2
        if datetime.fromtimestamp(middle, zone).replace(tzinfo=None) >= wall:
            high = middle
        else:
            low = middle
    return datetime.fromtimestamp(high, UTC)


def _open_spans(
    zone: tzinfo, window: CallingWindow, from_utc: datetime, until_utc: datetime
) -> Iterator[_UtcSpan]:
    """The window's open intervals in ``zone`` as sorted, merged UTC ``[start, end)`` pairs
    that end after ``from_utc``, day by day until a local day starts at ``until_utc``."""
    local_day = from_utc.astimezone(zone).date() - timedelta(days=1)
    pending: _UtcSpan | None = None
    while True:
        midnight = datetime.combine(local_day, time())
        if _wall_to_utc(midnight, zone) >= until_utc:
            break
        for start_min, end_min in window.days[local_day.weekday()]:
            start = _wall_to_utc(midnight + timedelta(minutes=start_min), zone)
            end = _wall_to_utc(midnight + timedelta(minutes=end_min), zone)
            if end <= start:
                continue  # the whole interval fell into a gap
            if pending is not None and start <= pending[1]:
                pending = (pending[0], max(pending[1], end))
                continue
            if pending is not None and pending[1] > from_utc:
                yield pending
            pending = (start, end)
        local_day += timedelta(days=1)
    if pending is not None and pending[1] > from_utc:
        yield pending


def _intersect(first: Iterator[_UtcSpan], second: Iterator[_UtcSpan]) -> Iterator[_UtcSpan]:
    """Intersection of two sorted streams of disjoint intervals."""
    a, b = next(first, None), next(second, None)
    while a is not None and b is not None:
        start, end = max(a[0], b[0]), min(a[1], b[1])
        if start < end:
            yield (start, end)
        if a[1] <= b[1]:
            a = next(first, None)
        else:
            b = next(second, None)


def next_call_time(
    now_utc: datetime, contact_tz: str | Sequence[str] | None, schedule: Schedule
) -> datetime | None:
    """Earliest UTC instant >= ``now_utc`` at which the contact may be called.

    ``contact_tz`` is an IANA zone name, several possible names (the window must be open
    in all of them), or ``None`` when unknown (``schedule.default_tz`` applies). Returns
    ``None`` when there is no such instant: the campaign has ended, or ends before the
    window next opens, or the zones share no open instant within ``SEARCH_HORIZON``.
    Raises ``ValueError`` for a naive ``now_utc`` or an unknown zone name.
    """
    now = _as_utc("now_utc", now_utc)
    zones = [_zone("contact_tz", name) for name in schedule.zones_for(contact_tz)]
    start = now if schedule.starts_at is None else max(now, schedule.starts_at)
    until = start + SEARCH_HORIZON
    if schedule.ends_at is not None:
        until = min(until, schedule.ends_at)
    if start >= until:
        return None
    streams = (_open_spans(zone, schedule.window, start, until) for zone in zones)
    for span_start, span_end in reduce(_intersect, streams):
        if span_end > start:
            at = max(span_start, start)
            return at if at < until else None
    return None


def is_callable(
    now_utc: datetime, contact_tz: str | Sequence[str] | None, schedule: Schedule
) -> bool:
    """Whether the contact may be called at ``now_utc`` (see ``next_call_time``)."""
    return next_call_time(now_utc, contact_tz, schedule) == now_utc


def _parse_number(e164: str) -> phonenumbers.PhoneNumber:
    try:
        return phonenumbers.parse(e164, None)
    except phonenumbers.NumberParseException:
        raise ValueError(f"e164 is not an international phone number: {e164!r}") from None


def possible_zones_for_number(e164: str | phonenumbers.PhoneNumber) -> list[str]:
    """Every IANA zone the number may be in, sorted; ``[]`` when it cannot be placed.

    ``e164`` is "+<country code><number>" (spaces and dashes are tolerated), or a number
    already parsed by ``phonenumbers`` (saves parsing it twice on bulk imports). A
    geographic number usually has one zone; a toll-free or mobile number can have many.
    """
    number = e164 if isinstance(e164, phonenumbers.PhoneNumber) else _parse_number(e164)
    zones = pn_timezone.time_zones_for_number(number)
    return sorted({zone for zone in zones if zone != UNKNOWN_ZONE})


def zone_for_number(e164: str | phonenumbers.PhoneNumber) -> str | None:
    """The number's zone when it maps to exactly one, else ``None``.

    ``None`` covers both "unknown" and "several": for compliance there is no single zone to
    pick, so callers pass ``possible_zones_for_number(e164)`` to ``next_call_time``, which
    then only calls when the window is open in all of them.
    """
    zones = possible_zones_for_number(e164)
    return zones[0] if len(zones) == 1 else None
