"""models/celery_beat.py: interval schedules from each beat process's start, crontab times, and
what a second beat process started later does."""

import re

import pytest
import simpy

from models.celery import Caller, TaskLedger
from models.celery_beat import CrontabSchedule, IntervalSchedule, crontab_values
from models.celery_worker import CeleryWorker
from models.fifo import FifoBroker
from tests.models.test_celery import task_type


def sends(schedule, until_s):
    times, now = [], 0.0
    while (now := schedule.next_arrival(now)) < until_s:
        times.append(now)
    return times


def test_an_interval_schedule_sends_one_interval_after_its_process_started_then_every_interval():
    assert sends(IntervalSchedule(100.0), 450.0) == [100.0, 200.0, 300.0, 400.0]
    assert sends(IntervalSchedule(100.0, started_s=37.0), 450.0) == [137.0, 237.0, 337.0, 437.0]


def crontab(minute="*", hour="*", day_of_week="*", started_s=0.0):
    return CrontabSchedule(*(crontab_values(f, v) for f, v in (("minute", minute), ("hour", hour), ("day_of_week", day_of_week))), started_s)


def test_a_crontab_sends_at_its_minute_of_each_hour_or_its_time_of_each_day_after_it_started():
    assert sends(crontab(15), 3 * 3600.0) == [900.0, 4500.0, 8100.0]
    assert sends(crontab(0, hour=2), 3 * 86400.0) == [7200.0, 93600.0, 180000.0]
    assert sends(crontab(0, hour=2, started_s=3 * 3600.0), 3 * 86400.0) == [93600.0, 180000.0]
    assert len(sends(crontab(15), 3 * 86400.0)) == 72


def test_crontab_fields_expand_lists_ranges_steps_and_day_names_as_celerys_parser_does():
    assert crontab_values("minute", "*/15") == {0, 15, 30, 45}
    assert crontab_values("minute", "0,30") == crontab_values("minute", [0, 30]) == {0, 30}
    assert crontab_values("hour", "9-17") == set(range(9, 18))
    assert crontab_values("hour", "8-18/4") == {8, 12, 16}
    assert crontab_values("hour", "22-2") == {22, 23, 0, 1, 2}  # wraps past the maximum
    assert crontab_values("day_of_week", "mon-fri") == {1, 2, 3, 4, 5}
    assert crontab_values("day_of_week", "sat,sunday") == crontab_values("day_of_week", "6,0") == {0, 6}
    assert crontab_values("day_of_week", "fri-mon") == {5, 6, 0, 1}
    assert crontab_values("day_of_week", "*") == set(range(7))


def test_a_bad_crontab_field_says_why():
    for field, spec, reason in (("minute", 60, "minute: 60 is outside 0–59"), ("hour", "9-24", "hour: 24 is outside 0–23"),
                                ("day_of_week", "mon-fry", "day_of_week: 'fry' is not a number or a day name"),
                                ("minute", "*/x", "the step of '*/x' is not a whole number"), ("minute", "1,,2", "empty part"),
                                ("minute", "5/2", "a step needs * or a range before it")):
        with pytest.raises(ValueError, match=re.escape(reason)):
            crontab_values(field, spec)


def test_every_quarter_hour_from_9_to_17_on_weekdays_sends_36_times_a_weekday_and_none_at_the_weekend():
    """minute */15, hour 9-17, mon-fri: 4 × 9 = 36 sends a day, 180 a week; the simulation's day 0
    is a Monday, so days 5 and 6 have none; the first at 09:00, the last at 17:45."""
    schedule = crontab("*/15", "9-17", "mon-fri")
    times = sends(schedule, 7 * 86400.0)
    per_day = [sum(1 for t in times if day * 86400 <= t < (day + 1) * 86400) for day in range(7)]
    assert per_day == [36] * 5 + [0, 0]
    assert (times[0], times[35]) == (9 * 3600.0, 17 * 3600.0 + 45 * 60.0)
    assert schedule.sends_per_s == pytest.approx(180 / (7 * 86400.0))
    assert sends(schedule, 14 * 86400.0)[180] == 7 * 86400.0 + 9 * 3600.0  # the next Monday


def test_a_second_beat_started_d_later_overlaps_the_first_runs_only_if_they_last_longer_than_d(fates, counts, level):
    """Period T = 100 s, the second process started d = 30 s after the first, runs of R s, two
    children: over 1000 s the first sends at 100…900 (9), the second at 130…930 (9, its
    duplicates). A duplicate starts while the run it copies is in progress if R > d: 9 overlaps
    with R = 40, none with R = 20."""
    for run_s, overlaps in ((40.0, 9), (20.0, 0)):
        env = simpy.Environment()
        broker = FifoBroker(env, "q", level(), counts(), fates)
        ledger = TaskLedger()
        report = task_type("report", run_s, counts, level)
        CeleryWorker(env, "a", broker, 2, 4, fates, ledger, level(), counts())
        Caller(env, report, IntervalSchedule(100.0), broker, fates, ledger)
        Caller(env, report, IntervalSchedule(100.0, started_s=30.0), broker, fates, ledger, duplicate=True)
        env.run(until=1000)
        assert report.counts["sent"] == 18 and report.counts["beat_duplicates"] == 9
        assert report.counts["overlaps"] == overlaps, run_s
