"""Calling windows: next call time in the contact's local time, DST, several zones, errors."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from callfleet.dialer.windows import (
    CallingWindow,
    Schedule,
    is_callable,
    next_call_time,
    possible_zones_for_number,
    zone_for_number,
)

NEW_YORK = "America/New_York"
LONDON = "Europe/London"
KOLKATA = "Asia/Kolkata"
LORD_HOWE = "Australia/Lord_Howe"
DAY_KEYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")

DAILY = Schedule(default_tz=NEW_YORK)
OFFICE = Schedule(
    default_tz=NEW_YORK,
    window=CallingWindow.from_dict(
        {
            "mon": [["08:00", "12:00"], ["13:00", "21:00"]],
            "tue": [["08:00", "21:00"]],
            "wed": [["08:00", "21:00"]],
            "thu": [["08:00", "21:00"]],
            "fri": [["08:00", "21:00"]],
            "sat": [["10:00", "18:00"]],
            "sun": [],
        }
    ),
)


def utc(
    year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0
) -> datetime:
    return datetime(year, month, day, hour, minute, second, tzinfo=UTC)


def check(
    now: datetime,
    zone: str | Sequence[str] | None,
    expected: datetime | None,
    schedule: Schedule = DAILY,
) -> None:
    assert next_call_time(now, zone, schedule) == expected
    assert is_callable(now, zone, schedule) is (expected == now)


# --- one zone --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("zone", "now", "expected"),
    [
        # 2025-06-10 is a Tuesday; New York is on EDT (UTC-4)
        (NEW_YORK, utc(2025, 6, 10, 15, 0), utc(2025, 6, 10, 15, 0)),  # 11:00: inside
        (NEW_YORK, utc(2025, 6, 10, 10, 0), utc(2025, 6, 10, 12, 0)),  # 06:00: wait for 08:00
        (NEW_YORK, utc(2025, 6, 10, 12, 0), utc(2025, 6, 10, 12, 0)),  # exactly 08:00
        (NEW_YORK, utc(2025, 6, 11, 0, 59, 59), utc(2025, 6, 11, 0, 59, 59)),  # 20:59:59
        (NEW_YORK, utc(2025, 6, 11, 1, 0), utc(2025, 6, 11, 12, 0)),  # ends exactly now
        (NEW_YORK, utc(2025, 6, 11, 1, 30), utc(2025, 6, 11, 12, 0)),  # 21:30: next day
        # London: BST (UTC+1) in June, GMT in January
        (LONDON, utc(2025, 6, 10, 5, 0), utc(2025, 6, 10, 7, 0)),
        (LONDON, utc(2025, 6, 10, 20, 30), utc(2025, 6, 11, 7, 0)),
        (LONDON, utc(2025, 1, 14, 7, 30), utc(2025, 1, 14, 8, 0)),
        # Kolkata (UTC+5:30): the local day starts before the UTC one
        (KOLKATA, utc(2025, 6, 10, 23, 0), utc(2025, 6, 11, 2, 30)),  # 04:30 IST
        (KOLKATA, utc(2025, 6, 10, 15, 45), utc(2025, 6, 11, 2, 30)),  # 21:15 IST
        (KOLKATA, utc(2025, 6, 10, 15, 29), utc(2025, 6, 10, 15, 29)),  # 20:59 IST
        # Lord Howe: UTC+11 in the southern summer, UTC+10:30 in winter
        (LORD_HOWE, utc(2025, 1, 15, 20, 0), utc(2025, 1, 15, 21, 0)),
        (LORD_HOWE, utc(2025, 7, 15, 20, 0), utc(2025, 7, 15, 21, 30)),
        (LORD_HOWE, utc(2025, 7, 15, 10, 30), utc(2025, 7, 15, 21, 30)),  # 21:00 closes
    ],
)
def test_one_zone(zone: str, now: datetime, expected: datetime) -> None:
    check(now, zone, expected)


def test_now_in_another_zone_is_accepted_and_the_result_is_utc() -> None:
    now = datetime(2025, 6, 10, 6, 0, tzinfo=ZoneInfo(NEW_YORK))
    at = next_call_time(now, NEW_YORK, DAILY)
    assert at == utc(2025, 6, 10, 12, 0)
    assert at is not None and at.tzinfo is UTC


def test_asia_calcutta_from_phonenumbers_is_kolkata() -> None:
    assert zone_for_number("+91 98765 43210") == "Asia/Calcutta"
    now = utc(2025, 6, 10, 23, 0)
    assert next_call_time(now, "Asia/Calcutta", DAILY) == next_call_time(now, KOLKATA, DAILY)


@pytest.mark.parametrize(
    ("now", "expected"),
    [
        (utc(2025, 6, 16, 16, 30), utc(2025, 6, 16, 17, 0)),  # Mon 12:30: lunch until 13:00
        (utc(2025, 6, 16, 15, 59), utc(2025, 6, 16, 15, 59)),  # Mon 11:59
        (utc(2025, 6, 14, 13, 0), utc(2025, 6, 14, 14, 0)),  # Sat 09:00: opens at 10:00
        (utc(2025, 6, 14, 22, 0), utc(2025, 6, 16, 12, 0)),  # Sat 18:00: closed until Mon
        (utc(2025, 6, 15, 16, 0), utc(2025, 6, 16, 12, 0)),  # Sunday: closed
        (utc(2025, 6, 14, 2, 0), utc(2025, 6, 14, 14, 0)),  # Fri 22:00 -> Sat 10:00
    ],
)
def test_weekly_window_with_closed_sunday(now: datetime, expected: datetime) -> None:
    check(now, NEW_YORK, expected, OFFICE)


def test_window_running_across_midnight() -> None:
    window = CallingWindow.from_dict({"fri": [["18:00", "24:00"]], "sat": [["00:00", "02:00"]]})
    schedule = Schedule(default_tz=NEW_YORK, window=window)
    assert window.to_dict()["fri"] == [["18:00", "24:00"]]
    for now in (
        utc(2025, 6, 13, 22, 0),  # Fri 18:00
        utc(2025, 6, 14, 3, 59),  # Fri 23:59
        utc(2025, 6, 14, 4, 0),  # Sat 00:00
        utc(2025, 6, 14, 5, 59),  # Sat 01:59
    ):
        check(now, NEW_YORK, now, schedule)
    check(utc(2025, 6, 14, 6, 0), NEW_YORK, utc(2025, 6, 20, 22, 0), schedule)  # Sat 02:00
    check(utc(2025, 6, 13, 12, 0), NEW_YORK, utc(2025, 6, 13, 22, 0), schedule)


def test_touching_intervals_are_one_open_stretch() -> None:
    window = CallingWindow.from_dict({"tue": [["12:00", "21:00"], ["08:00", "12:00"]]})
    assert window.to_dict()["tue"] == [["08:00", "12:00"], ["12:00", "21:00"]]
    schedule = Schedule(default_tz=NEW_YORK, window=window)
    check(utc(2025, 6, 10, 16, 0), NEW_YORK, utc(2025, 6, 10, 16, 0), schedule)


# --- campaign period and time-zone policy ----------------------------------------------


@pytest.mark.parametrize(
    ("starts_at", "ends_at", "now", "expected"),
    [
        (utc(2025, 6, 12, 15, 0), None, utc(2025, 6, 10, 15, 0), utc(2025, 6, 12, 15, 0)),
        # starts at 23:00 local: waits for the window on the next morning
        (utc(2025, 6, 12, 3, 0), None, utc(2025, 6, 10, 15, 0), utc(2025, 6, 12, 12, 0)),
        (None, utc(2025, 6, 10, 14, 0), utc(2025, 6, 10, 15, 0), None),  # ended
        (None, utc(2025, 6, 10, 15, 0), utc(2025, 6, 10, 15, 0), None),  # ends exactly now
        (None, utc(2025, 6, 10, 12, 0), utc(2025, 6, 10, 10, 0), None),  # ends before opening
        (None, utc(2025, 6, 10, 12, 1), utc(2025, 6, 10, 10, 0), utc(2025, 6, 10, 12, 0)),
        (utc(2025, 6, 1), utc(2025, 7, 1), utc(2025, 6, 10, 15, 0), utc(2025, 6, 10, 15, 0)),
    ],
)
def test_campaign_period(
    starts_at: datetime | None,
    ends_at: datetime | None,
    now: datetime,
    expected: datetime | None,
) -> None:
    schedule = Schedule(default_tz=NEW_YORK, starts_at=starts_at, ends_at=ends_at)
    check(now, NEW_YORK, expected, schedule)


def test_tz_policy() -> None:
    now = utc(2025, 6, 10, 10, 0)  # 06:00 in New York, 15:30 in Kolkata
    contact = Schedule(default_tz=NEW_YORK, tz_policy="contact")
    campaign = Schedule(default_tz=NEW_YORK, tz_policy="campaign")
    check(now, KOLKATA, now, contact)
    check(now, KOLKATA, utc(2025, 6, 10, 12, 0), campaign)
    unknowns: tuple[str | list[str] | None, ...] = (None, "", [])
    for unknown in unknowns:
        check(now, unknown, utc(2025, 6, 10, 12, 0), contact)
    assert contact.zones_for([KOLKATA, KOLKATA, LONDON]) == (KOLKATA, LONDON)
    assert campaign.zones_for(KOLKATA) == (NEW_YORK,)


# --- daylight saving time --------------------------------------------------------------


@pytest.mark.parametrize(
    ("now", "expected"),
    [
        # 2025-03-09: New York springs forward at 02:00 EST -> 03:00 EDT
        (utc(2025, 3, 8, 5, 0), utc(2025, 3, 8, 13, 0)),  # 08:00 EST the day before
        (utc(2025, 3, 9, 6, 30), utc(2025, 3, 9, 12, 0)),  # 01:30 EST -> 08:00 EDT
        (utc(2025, 3, 10, 0, 59), utc(2025, 3, 10, 0, 59)),  # 20:59 EDT
        (utc(2025, 3, 10, 1, 0), utc(2025, 3, 10, 12, 0)),  # 21:00 EDT
        # 2025-11-02: New York falls back at 02:00 EDT -> 01:00 EST
        (utc(2025, 11, 1, 10, 0), utc(2025, 11, 1, 12, 0)),  # 08:00 EDT the day before
        (utc(2025, 11, 2, 5, 30), utc(2025, 11, 2, 13, 0)),  # 01:30 EDT -> 08:00 EST
        (utc(2025, 11, 2, 6, 30), utc(2025, 11, 2, 13, 0)),  # 01:30 EST -> 08:00 EST
        (utc(2025, 11, 3, 1, 59), utc(2025, 11, 3, 1, 59)),  # 20:59 EST
        (utc(2025, 11, 3, 2, 0), utc(2025, 11, 3, 13, 0)),  # 21:00 EST
    ],
)
def test_new_york_dst_days_with_the_default_window(now: datetime, expected: datetime) -> None:
    check(now, NEW_YORK, expected)


def test_window_start_in_the_spring_forward_gap_starts_at_the_first_valid_time() -> None:
    schedule = Schedule(default_tz=NEW_YORK, window=CallingWindow.daily("02:30", "05:00"))
    check(utc(2025, 3, 9, 6, 0), NEW_YORK, utc(2025, 3, 9, 7, 0), schedule)  # 03:00 EDT
    check(utc(2025, 3, 9, 6, 59, 59), NEW_YORK, utc(2025, 3, 9, 7, 0), schedule)
    check(utc(2025, 3, 9, 8, 59), NEW_YORK, utc(2025, 3, 9, 8, 59), schedule)  # 04:59 EDT
    check(utc(2025, 3, 9, 9, 0), NEW_YORK, utc(2025, 3, 10, 6, 30), schedule)  # 05:00 EDT


def test_window_entirely_in_the_gap_is_closed_that_day() -> None:
    schedule = Schedule(default_tz=NEW_YORK, window=CallingWindow.daily("02:10", "02:50"))
    check(utc(2025, 3, 9, 5, 0), NEW_YORK, utc(2025, 3, 10, 6, 10), schedule)


def test_repeated_hour_is_not_counted_twice() -> None:
    schedule = Schedule(default_tz=NEW_YORK, window=CallingWindow.daily("00:30", "01:30"))
    check(utc(2025, 11, 2, 5, 10), NEW_YORK, utc(2025, 11, 2, 5, 10), schedule)  # 01:10 EDT
    check(utc(2025, 11, 2, 5, 30), NEW_YORK, utc(2025, 11, 3, 5, 30), schedule)  # 01:30 EDT
    check(utc(2025, 11, 2, 6, 10), NEW_YORK, utc(2025, 11, 3, 5, 30), schedule)  # 01:10 EST


def test_window_over_the_whole_repeated_hour_covers_both_passes() -> None:
    schedule = Schedule(default_tz=NEW_YORK, window=CallingWindow.daily("01:00", "02:00"))
    check(utc(2025, 11, 2, 6, 59), NEW_YORK, utc(2025, 11, 2, 6, 59), schedule)  # 01:59 EST
    check(utc(2025, 11, 2, 7, 0), NEW_YORK, utc(2025, 11, 3, 6, 0), schedule)  # 02:00 EST


def test_lord_howe_half_hour_dst() -> None:
    # 2025-10-05: 02:00 LHST (+10:30) -> 02:30 LHDT (+11); 02:15 does not exist
    gap = Schedule(default_tz=LORD_HOWE, window=CallingWindow.daily("02:15", "05:00"))
    check(utc(2025, 10, 4, 10, 0), LORD_HOWE, utc(2025, 10, 4, 15, 30), gap)  # 02:30 LHDT
    check(utc(2025, 10, 4, 18, 0), LORD_HOWE, utc(2025, 10, 5, 15, 15), gap)  # 05:00 LHDT
    # 2025-04-06: 02:00 LHDT -> 01:30 LHST; 01:30-02:00 happens twice
    repeat = Schedule(default_tz=LORD_HOWE, window=CallingWindow.daily("01:00", "01:45"))
    check(utc(2025, 4, 5, 14, 40), LORD_HOWE, utc(2025, 4, 5, 14, 40), repeat)  # 01:40 LHDT
    check(utc(2025, 4, 5, 15, 5), LORD_HOWE, utc(2025, 4, 6, 14, 30), repeat)  # 01:35 LHST


# --- numbers and several zones ---------------------------------------------------------


def test_zone_for_a_geographic_number() -> None:
    assert zone_for_number("+12125551234") == NEW_YORK
    assert zone_for_number("+1 212 555 1234") == NEW_YORK
    assert possible_zones_for_number("+1 212 555 1234") == [NEW_YORK]
    assert zone_for_number("+44 20 7123 4567") == LONDON


def test_numbers_with_several_zones_have_no_single_zone() -> None:
    toll_free = possible_zones_for_number("+1 800 555 1234")
    assert len(toll_free) > 30
    assert {NEW_YORK, "America/Los_Angeles", "Pacific/Honolulu", "Pacific/Guam"} <= set(toll_free)
    assert toll_free == sorted(toll_free)
    assert zone_for_number("+1 800 555 1234") is None
    uk_mobile = possible_zones_for_number("+44 7911 123456")
    assert LONDON in uk_mobile and len(uk_mobile) > 1
    assert zone_for_number("+44 7911 123456") is None


def test_unplaceable_number_has_no_zone() -> None:
    assert possible_zones_for_number("+1 555 555 0100") == []
    assert zone_for_number("+1 555 555 0100") is None


@pytest.mark.parametrize("number", ["2125551234", "+", "not a number", ""])
def test_number_that_cannot_be_parsed(number: str) -> None:
    with pytest.raises(ValueError) as error:
        zone_for_number(number)
    assert str(error.value) == f"e164 is not an international phone number: {number!r}"


def test_two_zones_call_only_when_both_are_open() -> None:
    zones = [NEW_YORK, "America/Los_Angeles"]
    check(utc(2025, 6, 10, 12, 0), zones, utc(2025, 6, 10, 15, 0))  # 08:00 in Los Angeles
    check(utc(2025, 6, 11, 0, 59), zones, utc(2025, 6, 11, 0, 59))
    check(utc(2025, 6, 11, 1, 0), zones, utc(2025, 6, 11, 15, 0))  # 21:00 in New York


def test_toll_free_number_is_called_only_inside_every_possible_zone() -> None:
    zones = possible_zones_for_number("+1 800 555 1234")
    # 22:00 UTC is 08:00 in Guam (UTC+10), the last of the zones to open
    check(utc(2025, 6, 10, 12, 0), zones, utc(2025, 6, 10, 22, 0))
    # 23:30 UTC is 21:00 in St John's (NDT, UTC-2:30), the first to close
    check(utc(2025, 6, 10, 23, 29), zones, utc(2025, 6, 10, 23, 29))
    check(utc(2025, 6, 10, 23, 30), zones, utc(2025, 6, 11, 22, 0))
    for hour in range(24):
        at = next_call_time(utc(2025, 6, 10, hour, 17), zones, DAILY)
        assert at is not None
        for name in zones:
            local = at.astimezone(ZoneInfo(name))
            assert 8 * 60 <= local.hour * 60 + local.minute < 21 * 60, (name, local)


def test_zones_that_never_share_an_open_instant_give_none() -> None:
    schedule = Schedule(default_tz=NEW_YORK, window=CallingWindow.daily("08:00", "09:00"))
    check(utc(2025, 6, 10, 12, 0), ["Pacific/Guam", "Pacific/Pago_Pago"], None, schedule)


# --- calling window construction and errors --------------------------------------------


def test_default_window_and_round_trip() -> None:
    assert CallingWindow() == CallingWindow.daily() == CallingWindow.daily("08:00", "21:00")
    assert CallingWindow().to_dict() == {day: [["08:00", "21:00"]] for day in DAY_KEYS}
    data = OFFICE.window.to_dict()
    assert data["mon"] == [["08:00", "12:00"], ["13:00", "21:00"]]
    assert data["sun"] == []
    assert CallingWindow.from_dict(data) == OFFICE.window
    assert hash(CallingWindow.from_dict(data)) == hash(OFFICE.window)


def test_missing_days_are_closed() -> None:
    window = CallingWindow.from_dict({"mon": [["09:00", "17:00"]]})
    assert window.to_dict() == {
        day: [["09:00", "17:00"]] if day == "mon" else [] for day in DAY_KEYS
    }
    assert window.days[0] == ((540, 1020),)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"mon": [["8:00", "21:00"]]}, "calling window mon: start '8:00' is not a time HH:MM"),
        ({"mon": [[800, 2100]]}, "calling window mon: start 800 is not a time HH:MM"),
        (
            {"tue": [["08:00", "25:00"]]},
            "calling window tue: end '25:00' is out of range (00:00 to 24:00)",
        ),
        (
            {"wed": [["24:00", "24:00"]]},
            "calling window wed: start '24:00' is out of range (00:00 to 23:59)",
        ),
        (
            {"thu": [["08:60", "21:00"]]},
            "calling window thu: start '08:60' is out of range (00:00 to 23:59)",
        ),
        (
            {"fri": [["21:00", "08:00"]]},
            "calling window fri: start '21:00' is not before end '08:00'",
        ),
        (
            {"fri": [["08:00", "08:00"]]},
            "calling window fri: start '08:00' is not before end '08:00'",
        ),
        (
            {"sat": [["08:00", "13:00"], ["12:00", "21:00"]]},
            "calling window sat: interval 08:00-13:00 overlaps 12:00-21:00",
        ),
        (
            {"sat": [["12:00", "21:00"], ["08:00", "13:00"]]},
            "calling window sat: interval 08:00-13:00 overlaps 12:00-21:00",
        ),
        (
            {"funday": []},
            "calling window: unknown day 'funday' (expected one of mon, tue, wed, thu, fri, "
            "sat, sun)",
        ),
        (
            {"Mon": []},
            "calling window: unknown day 'Mon' (expected one of mon, tue, wed, thu, fri, sat, sun)",
        ),
        (
            {"sun": "08:00-21:00"},
            "calling window sun: intervals must be a list of [start, end] pairs, got '08:00-21:00'",
        ),
        (
            {"mon": [["08:00"]]},
            "calling window mon: interval must be a [start, end] pair, got ['08:00']",
        ),
        ({}, "calling window: closed on every day"),
        ({"sun": []}, "calling window: closed on every day"),
    ],
)
def test_bad_window(data: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError) as error:
        CallingWindow.from_dict(data)
    assert str(error.value) == message


def test_bad_daily_window() -> None:
    with pytest.raises(ValueError) as error:
        CallingWindow.daily("21:00", "08:00")
    assert str(error.value) == "calling window daily: start '21:00' is not before end '08:00'"


def test_bad_window_from_the_constructor() -> None:
    with pytest.raises(ValueError) as error:
        CallingWindow((((480, 1260),),) * 6)
    assert str(error.value) == "calling window: days must have 7 entries, got 6"
    with pytest.raises(ValueError) as error:
        CallingWindow((((480, 1500),),) * 7)
    assert str(error.value) == (
        "calling window mon: interval (480, 1500) is not 0 <= start_min < end_min <= 1440"
    )


# --- schedule and argument errors ------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"default_tz": "Nowhere/Town"}, "default_tz is not a known time zone: 'Nowhere/Town'"),
        ({"default_tz": ""}, "default_tz is not a known time zone: ''"),
        (
            {"default_tz": NEW_YORK, "tz_policy": "callee"},
            "tz_policy must be 'contact' or 'campaign', got 'callee'",
        ),
        (
            {"default_tz": NEW_YORK, "starts_at": datetime(2025, 6, 1)},
            "starts_at must be timezone-aware",
        ),
        (
            {"default_tz": NEW_YORK, "ends_at": datetime(2025, 6, 1)},
            "ends_at must be timezone-aware",
        ),
        (
            {"default_tz": NEW_YORK, "starts_at": utc(2025, 7, 1), "ends_at": utc(2025, 6, 1)},
            "starts_at 2025-07-01T00:00:00+00:00 is not before ends_at 2025-06-01T00:00:00+00:00",
        ),
    ],
)
def test_bad_schedule(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError) as error:
        Schedule(**kwargs)  # type: ignore[arg-type]
    assert str(error.value) == message


def test_schedule_stores_instants_in_utc() -> None:
    start = datetime(2025, 6, 1, 8, 0, tzinfo=ZoneInfo(NEW_YORK))
    schedule = Schedule(default_tz=NEW_YORK, starts_at=start)
    assert schedule.starts_at == utc(2025, 6, 1, 12, 0)
    assert schedule.starts_at is not None and schedule.starts_at.tzinfo is UTC


def test_naive_now_is_refused() -> None:
    for function in (next_call_time, is_callable):
        with pytest.raises(ValueError) as error:
            function(datetime(2025, 6, 10, 12, 0), NEW_YORK, DAILY)
        assert str(error.value) == "now_utc must be timezone-aware"


def test_unknown_contact_zone_is_refused() -> None:
    with pytest.raises(ValueError) as error:
        next_call_time(utc(2025, 6, 10), [NEW_YORK, "Mars/Olympus_Mons"], DAILY)
    assert str(error.value) == "contact_tz is not a known time zone: 'Mars/Olympus_Mons'"
