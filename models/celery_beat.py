"""Celery beat's schedules: when a beat process sends a periodic task."""

from __future__ import annotations

import bisect
import math

HOUR_S = 3600.0
DAY_S = 86400.0


class IntervalSchedule:
    """``schedule(run_every=…)`` (Celery 5.x, ``celery/schedules.py``): a beat process started at
    ``started_s`` sends the task every ``every_s``, the first time one interval after it starts
    (beat keeps no record of a last run in a fresh schedule file). Two processes started at
    different times send out of phase. An arrival process: ``next_arrival(now)``."""

    def __init__(self, every_s: float, started_s: float = 0.0):
        self.every_s = every_s
        self.started_s = started_s

    def next_arrival(self, now: float) -> float:
        return max(now, self.started_s) + self.every_s


WEEK_S = 7 * DAY_S
DAY_NAMES = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")
"""Celery's day-of-week numbers, 0 to 6 from Sunday (``celery/utils/time.py``: ``WEEKDAYS``)."""
FIELDS = {"minute": (60, 0), "hour": (24, 0), "day_of_week": (7, 0)}
"""Each crontab field's ``max_`` and ``min_``, as ``crontab_parser`` takes them."""


def crontab_values(field: str, spec) -> set[int]:
    """The values a crontab field (``minute``, ``hour`` or ``day_of_week``) matches, as Celery 5.x
    parses it (``celery/schedules.py``: ``crontab_parser.parse``, ``crontab._expand_cronspec``):
    an integer, a list of them, or a string of comma-separated parts, each ``*``, ``*/step``, a
    number, a range ``a-b`` (wrapping past the maximum when b < a: ``fri-mon``) or ``a-b/step``;
    days of the week by number (0 = Sunday) or name (``mon``, ``tuesday``: the first three
    letters count). Raises ValueError with Celery's reason."""
    max_, min_ = FIELDS[field]
    if isinstance(spec, int):
        return {_number(field, str(spec))}
    if isinstance(spec, (list, tuple, set)):
        return {_number(field, str(value)) for value in spec}
    values: set[int] = set()
    for part in str(spec).split(","):
        if not part:
            raise ValueError(f"{field} {spec!r}: empty part")
        span, slash, step = part.partition("/")
        if slash and not step.isdigit():
            raise ValueError(f"{field} {spec!r}: the step of {part!r} is not a whole number")
        if span == "*":
            expanded = list(range(min_, max_ + min_))
        elif slash and "-" not in span:
            raise ValueError(f"{field} {spec!r}: a step needs * or a range before it ({part!r})")
        else:
            first, dash, last = span.partition("-")
            low, high = _number(field, first), _number(field, last) if dash else None
            if high is None:
                expanded = [low]
            elif high < low:
                expanded = list(range(low, min_ + max_)) + list(range(min_, high + 1))
            else:
                expanded = list(range(low, high + 1))
        values.update(expanded[:: int(step)] if slash else expanded)
    return values


def _number(field: str, token: str) -> int:
    max_, min_ = FIELDS[field]
    token = token.strip()
    if token.isdigit():
        value = int(token)
    elif field == "day_of_week" and token[:3].lower() in DAY_NAMES:
        value = DAY_NAMES.index(token[:3].lower())
    else:
        raise ValueError(f"{field}: {token!r} is not a number{' or a day name' if field == 'day_of_week' else ''}")
    if not min_ <= value <= max_ + min_ - 1:
        raise ValueError(f"{field}: {value} is outside {min_}–{max_ + min_ - 1}")
    return value


class CrontabSchedule:
    """``crontab(minute=…, hour=…, day_of_week=…)`` (Celery 5.x, ``celery/schedules.py``), the sets
    of values each field matches (:func:`crontab_values`), on the simulation's clock, which starts
    at 00:00 on a Monday (day 0; day d is Celery's weekday (d + 1) mod 7): the task is sent at each
    matching minute strictly after the beat process started (``started_s``). Crontab times are on
    the wall clock, so two beat processes send together whenever they started (beat wakes at the
    due time: its ``beat_max_loop_interval`` only bounds how long it sleeps). Simplification: no
    day of the month, month of the year, time zone or daylight saving."""

    def __init__(self, minutes, hours, days_of_week, started_s: float = 0.0):
        self.times_s = sorted(day * DAY_S + hour * HOUR_S + minute * 60.0
                              for day in range(7) if (day + 1) % 7 in days_of_week for hour in hours for minute in minutes)
        """The matching times of one week, from Monday 00:00."""
        self.started_s = started_s

    @property
    def sends_per_s(self) -> float:
        return len(self.times_s) / WEEK_S

    def next_arrival(self, now: float) -> float:
        after = max(now, self.started_s)
        week = math.floor(after / WEEK_S)
        i = bisect.bisect_right(self.times_s, after - week * WEEK_S)
        if i == len(self.times_s):
            return (week + 1) * WEEK_S + self.times_s[0]
        return week * WEEK_S + self.times_s[i]
