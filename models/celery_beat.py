"""Celery beat's schedules: when a beat process sends a periodic task."""

from __future__ import annotations

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


class CrontabSchedule:
    """``crontab(minute=M)`` (every hour at :M) or ``crontab(minute=M, hour=H)`` (every day at
    H:M), on the simulation's clock, which starts at 00:00 of day 0: the task is sent at each
    matching time strictly after the beat process started (``started_s``). Crontab times are on
    the wall clock, so two beat processes send together whenever they started (beat wakes at the
    due time: its ``beat_max_loop_interval`` only bounds how long it sleeps). Simplification: one
    minute and at most one hour (no lists, ranges, steps, days of the week or of the month); no
    time zone or daylight saving."""

    def __init__(self, minute: int, hour: int | None = None, started_s: float = 0.0):
        self.period_s = HOUR_S if hour is None else DAY_S
        self.offset_s = minute * 60.0 + (0.0 if hour is None else hour * HOUR_S)
        self.started_s = started_s

    def next_arrival(self, now: float) -> float:
        after = max(now, self.started_s)
        return self.offset_s + self.period_s * (math.floor((after - self.offset_s) / self.period_s) + 1)
