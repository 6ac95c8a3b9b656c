"""models/celery_beat.py: interval schedules from each beat process's start, crontab times, and
what a second beat process started later does."""

import simpy

from models.celery import Caller, TaskLedger
from models.celery_beat import CrontabSchedule, IntervalSchedule
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


def test_a_crontab_sends_at_its_minute_of_each_hour_or_its_time_of_each_day_after_it_started():
    assert sends(CrontabSchedule(15), 3 * 3600.0) == [900.0, 4500.0, 8100.0]
    assert sends(CrontabSchedule(0, hour=2), 3 * 86400.0) == [7200.0, 93600.0, 180000.0]
    assert sends(CrontabSchedule(0, hour=2, started_s=3 * 3600.0), 3 * 86400.0) == [93600.0, 180000.0]
    assert len(sends(CrontabSchedule(15), 3 * 86400.0)) == 72


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
