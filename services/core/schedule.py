"""Weekly schedules in Europe/Amsterdam wall-clock time.

A window names the days it starts on and a start and end time; an end before the start means the
next day (a night window), and an end equal to the start means a whole day. A moment is in the
schedule when its local wall-clock time falls in a window, so DST needs no special case: on the
short night of March a 22:00-07:00 window lasts eight real hours, on the long night of October
ten, and a window that starts at a wall-clock time that is skipped starts at 03:00.
"""

from __future__ import annotations

from datetime import UTC, datetime
from functools import cache
from zoneinfo import ZoneInfo

from geo.edges import also_compiled
from schemas.wire import ScheduleWindow

AMSTERDAM = ZoneInfo("Europe/Amsterdam")
MINUTES_PER_WEEK = 7 * 24 * 60
DAY_INDEX = {"mon": 0, "tue": 1, "wed": 2, "thu": 3, "fri": 4, "sat": 5, "sun": 6}
_EPOCH_WEEKDAY = 3  # 1970-01-01 was a Thursday

# The UTC offset of Amsterdam is constant within every UTC hour (EU transitions happen at 01:00
# UTC), so one lookup per hour serves every fix of that hour. A pure cache: same input, same
# output.
_offset_by_hour: dict[int, int] = {}


def amsterdam_offset_s(t: float) -> int:
    hour = int(t // 3600)
    offset = _offset_by_hour.get(hour)
    if offset is None:
        delta = datetime.fromtimestamp(hour * 3600, tz=UTC).astimezone(AMSTERDAM)
        offset = int(delta.utcoffset().total_seconds())  # type: ignore[union-attr]
        if len(_offset_by_hour) > 100_000:
            _offset_by_hour.clear()
        _offset_by_hour[hour] = offset
    return offset


def local_minute_of_week(t: float) -> int:
    """Minutes since Monday 00:00 local time, for the epoch second `t`."""
    return minute_of_week(t + amsterdam_offset_s(t))


@also_compiled  # and in services/core/bulk.py, with the offset from a table
def minute_of_week(local_s: float) -> int:
    """Minutes since Monday 00:00 for `local_s`, epoch seconds shifted to local time."""
    local_minutes = int(local_s // 60)
    day = local_minutes // 1440
    minute: int = ((day + _EPOCH_WEEKDAY) % 7) * 1440 + local_minutes % 1440
    return minute


def _minutes(hhmm: str) -> int:
    hours, minutes = hhmm.split(":")
    return int(hours) * 60 + int(minutes)


@cache
def week_mask(intervals: tuple[tuple[int, int], ...]) -> bytes:
    """The week as one byte a minute. Shared by every zone with the same windows: 100k orders
    with the same night curfew hold one 10 KB mask, not a gigabyte of copies."""
    mask = bytearray(MINUTES_PER_WEEK)
    for begin, stop in intervals:
        mask[begin:stop] = b"\x01" * (stop - begin)
    return bytes(mask)


class WeeklySchedule:
    """Compiled windows as [start, end) minute-of-week intervals, wrapping at the week's end, and
    a one-byte-a-minute mask of the week for an O(1) answer on the hot path."""

    __slots__ = ("intervals", "mask")

    def __init__(self, windows: list[ScheduleWindow]) -> None:
        intervals: list[tuple[int, int]] = []
        for window in windows:
            start, end = _minutes(window.start), _minutes(window.end)
            length = (end - start) % 1440 or 1440
            for day in window.days:
                begin = DAY_INDEX[day] * 1440 + start
                stop = begin + length
                if stop <= MINUTES_PER_WEEK:
                    intervals.append((begin, stop))
                else:  # Sunday night into Monday morning
                    intervals.append((begin, MINUTES_PER_WEEK))
                    intervals.append((0, stop - MINUTES_PER_WEEK))
        self.intervals = tuple(sorted(intervals))
        self.mask = week_mask(self.intervals)

    def active(self, t: float) -> bool:
        return self.mask[local_minute_of_week(t)] == 1
