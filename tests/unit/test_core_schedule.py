"""Schedules in Europe/Amsterdam wall-clock time, across both DST transitions of 2026."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from schemas.wire import ScheduleWindow
from services.core.schedule import WeeklySchedule, local_minute_of_week


def utc(year: int, month: int, day: int, hour: int, minute: int) -> float:
    return datetime(year, month, day, hour, minute, tzinfo=UTC).timestamp()


NIGHT = WeeklySchedule([ScheduleWindow(days=["sat"], start="22:00", end="07:00")])


def active_minutes(schedule: WeeklySchedule, start: float, hours: int) -> float:
    return sum(schedule.active(start + m * 60) for m in range(hours * 60))


def test_local_minute_of_week() -> None:
    # Monday 23 Nov 2026, 10:00 UTC = 11:00 CET
    assert local_minute_of_week(utc(2026, 11, 23, 10, 0)) == 11 * 60
    # Sunday 29 Mar 2026 01:00 UTC = 03:00 CEST (the clock just jumped)
    assert local_minute_of_week(utc(2026, 3, 29, 1, 0)) == 6 * 1440 + 3 * 60


def test_short_night_of_march() -> None:
    """Sat 28 -> Sun 29 March 2026: 22:00 CET to 07:00 CEST is eight real hours."""
    assert not NIGHT.active(utc(2026, 3, 28, 20, 59))  # 21:59 CET
    assert NIGHT.active(utc(2026, 3, 28, 21, 0))  # 22:00 CET
    assert NIGHT.active(utc(2026, 3, 29, 4, 59))  # 06:59 CEST
    assert not NIGHT.active(utc(2026, 3, 29, 5, 0))  # 07:00 CEST
    assert active_minutes(NIGHT, utc(2026, 3, 28, 12, 0), 24) == 8 * 60


def test_long_night_of_october() -> None:
    """Sat 24 -> Sun 25 October 2026: 22:00 CEST to 07:00 CET is ten real hours."""
    assert NIGHT.active(utc(2026, 10, 24, 20, 0))  # 22:00 CEST
    assert not NIGHT.active(utc(2026, 10, 24, 19, 59))
    assert NIGHT.active(utc(2026, 10, 25, 5, 59))  # 06:59 CET
    assert not NIGHT.active(utc(2026, 10, 25, 6, 0))  # 07:00 CET
    assert active_minutes(NIGHT, utc(2026, 10, 24, 12, 0), 24) == 10 * 60


def test_window_starting_in_the_skipped_hour_starts_at_three() -> None:
    early = WeeklySchedule([ScheduleWindow(days=["sun"], start="02:30", end="04:00")])
    assert not early.active(utc(2026, 3, 29, 0, 59))  # 01:59 CET
    assert early.active(utc(2026, 3, 29, 1, 0))  # 03:00 CEST: already past 02:30
    assert active_minutes(early, utc(2026, 3, 28, 12, 0), 24) == 60


def test_window_in_the_repeated_hour_is_active_twice() -> None:
    repeated = WeeklySchedule([ScheduleWindow(days=["sun"], start="02:00", end="03:00")])
    assert repeated.active(utc(2026, 10, 25, 0, 30))  # 02:30 CEST
    assert repeated.active(utc(2026, 10, 25, 1, 30))  # 02:30 CET
    assert active_minutes(repeated, utc(2026, 10, 24, 12, 0), 24) == 120


@pytest.mark.parametrize(
    ("start", "end", "minutes"), [("09:00", "17:00", 480), ("08:00", "08:00", 1440)]
)
def test_day_windows(start: str, end: str, minutes: int) -> None:
    schedule = WeeklySchedule([ScheduleWindow(days=["wed"], start=start, end=end)])
    assert active_minutes(schedule, utc(2026, 11, 24, 23, 0), 48) == minutes


def test_sunday_night_wraps_into_monday() -> None:
    schedule = WeeklySchedule([ScheduleWindow(days=["sun"], start="23:00", end="01:00")])
    assert schedule.active(utc(2026, 11, 29, 22, 30))  # Sun 23:30 CET
    assert schedule.active(utc(2026, 11, 29, 23, 30))  # Mon 00:30 CET
    assert not schedule.active(utc(2026, 11, 30, 0, 30))  # Mon 01:30 CET
