"""models/celery.py and models/celery_worker.py in a bare SimPy environment: prefetch and
head-of-line blocking, early and late acknowledgement when a worker or a pool child dies."""

import math

import pytest
import simpy

from models.celery import Caller, RetryPolicy, Task, TaskLedger, TaskType
from models.celery_chords import UNLOCK_COUNTDOWN_S, ChordJoin, UnlockCheck
from models.celery_hub import EventLoopLimiter
from models.celery_kombu import KombuRedisTransport
from models.celery_queues import QueueCycle
from models.celery_results import ResultBackend, ResultWait
from models.celery_worker import CeleryWorker
from models.crashes import Crashes
from models.fates import Fates
from models.fifo import FifoBroker
from models.rabbitmq import RabbitmqBroker, RabbitmqOptions
from models.redis_list import RedisList
from tests.models.conftest import FakeObserver, Level
from tests.models.drive import constant, draws


class Times:
    """An arrival process at set absolute times."""

    def __init__(self, *times_s):
        self.times = list(times_s)

    def next_arrival(self, now):
        return self.times.pop(0) if self.times else None


def task_type(name, run_s, counts, level, **options):
    return TaskType(name, "q", constant(run_s), level(), level(), level(), level(), level(), counts(), **options)


def worker(env, name, broker, fates, ledger, counts, level, concurrency=1, multiplier=4, **failures):
    return CeleryWorker(env, name, broker, concurrency, multiplier, fates, ledger, level(), counts(), **failures)


def processed_at(observer):
    return dict(observer.fates("processed"))


def test_reserved_short_tasks_wait_behind_a_long_one_unless_acks_late_with_prefetch_one(fates, observer, counts, level):
    """Tasks 0 (10 s), 1, 2, 3 (1 s) wait when two workers of one child each start at 1.
    Multiplier 4: the first worker reserves all four, so the short ones end at 12, 13, 14 while
    the second idles. Early ack with multiplier 1: the long task is acked as it starts, so the
    first worker reserves one short task behind it (ends at 12); the second runs the other two
    (2, 3). acks_late with multiplier 1: the first worker holds only the long task; the second
    runs the short ones (2, 3, 4)."""
    expected = {(4, False): {0: 11.0, 1: 12.0, 2: 13.0, 3: 14.0},
                (1, False): {0: 11.0, 1: 2.0, 2: 12.0, 3: 3.0},
                (1, True): {0: 11.0, 1: 2.0, 2: 3.0, 3: 4.0}}
    for (multiplier, late), ends in expected.items():
        observer.log.clear()
        env = simpy.Environment()
        broker = FifoBroker(env, "q", level(), counts(), fates)
        ledger = TaskLedger()
        long, short = task_type("long", 10.0, counts, level, acks_late=late), task_type("short", 1.0, counts, level, acks_late=late)
        Caller(env, long, Times(0.0), broker, fates, ledger)
        Caller(env, short, Times(0.0, 0.0, 0.0), broker, fates, ledger)
        env.run(until=1)
        first = worker(env, "a", broker, fates, ledger, counts, level, multiplier=multiplier)
        worker(env, "b", broker, fates, ledger, counts, level, multiplier=multiplier)
        env.run(until=1.5)
        assert len(first.consumer.held) == {4: 3, 1: 1}[multiplier]  # reserved (and, late, running)
        env.run(until=20)
        base = min(processed_at(observer))
        assert {i - base: t for i, t in processed_at(observer).items()} == ends, (multiplier, late)
        assert short.reserved.n == short.running.n == short.queued.n == 0


def test_the_prefetch_window_counts_unacked_tasks_only(fates, counts, level):
    """Early ack, -c 2, multiplier 1: 2 running (acked) + 2 reserved = 4 held by the worker."""
    env = simpy.Environment()
    broker = FifoBroker(env, "q", level(), counts(), fates)
    ledger = TaskLedger()
    slow = task_type("slow", 100.0, counts, level)
    w = worker(env, "a", broker, fates, ledger, counts, level, concurrency=2, multiplier=1)
    Caller(env, slow, Times(*[0.0] * 10), broker, fates, ledger)
    env.run(until=1)
    assert len(w.running) == 2 and len(w.reserved) == 2 and broker.waiting == 6
    assert sorted(w.held_ids()) == [0, 1, 2, 3]
    assert slow.queued.n == 6 and slow.reserved.n == 2 and slow.running.n == 2


def rabbit(env, fates, counts, level, prefetch):
    return RabbitmqBroker(env, "q", level(), level(), counts(), fates, options=RabbitmqOptions(prefetch_count=prefetch))


def test_a_dead_worker_loses_its_early_acked_running_task_and_its_reserved_ones_are_requeued(fates, observer, counts, level):
    """The worker dies at 5 running task 0 (acked early) with task 1 reserved; RabbitMQ requeues
    task 1 (unacked) and the worker, back at 6, runs it: 6 + 10 = 16."""
    env = simpy.Environment()
    broker = rabbit(env, fates, counts, level, 4)
    ledger = TaskLedger()
    t = task_type("t", 10.0, counts, level)
    w = worker(env, "a", broker, fates, ledger, counts, level, crashes=Crashes(draws(5.0, 1e9), constant(1.0)))
    Caller(env, t, Times(0.0, 0.0), broker, fates, ledger)
    env.run(until=30)
    assert observer.fates("lost") == [(0, 5.0)]
    assert observer.fates("processed") == [(1, 16.0)]
    assert t.counts["lost"] == 1 and t.counts["redelivered"] == 1 and t.counts["reruns"] == 0
    assert w.counts["crashes"] == 1 and t.reserved.n == t.running.n == 0


def test_acks_late_loses_nothing_when_the_worker_dies_and_runs_the_task_again(fates, observer, counts, level):
    env = simpy.Environment()
    broker = rabbit(env, fates, counts, level, 4)
    ledger = TaskLedger()
    t = task_type("t", 10.0, counts, level, acks_late=True)
    worker(env, "a", broker, fates, ledger, counts, level, crashes=Crashes(draws(5.0, 1e9), constant(1.0)))
    Caller(env, t, Times(0.0), broker, fates, ledger)
    env.run(until=30)
    assert observer.fates("lost") == []
    assert observer.fates("processed") == [(0, 16.0)]
    assert t.counts["reruns"] == 1 and t.counts["redelivered"] == 1


def test_a_lost_child_loses_its_late_ack_task_unless_reject_on_worker_lost_requeues_it(counts, level):
    """The child dies at 5 and is replaced at 7: without reject_on_worker_lost the task is acked
    (WorkerLostError) and lost; with it, requeued to the back and run again from 7 (ends at 17)."""
    for reject, lost, processed in ((False, [(0, 5.0)], []), (True, [], [(0, 17.0)])):
        observer = FakeObserver()
        fates = Fates(observer)
        env = simpy.Environment()
        broker = rabbit(env, fates, counts, level, 4)
        ledger = TaskLedger()
        t = task_type("t", 10.0, counts, level, acks_late=True, reject_on_worker_lost=reject)
        w = worker(env, "a", broker, fates, ledger, counts, level, child_crashes=Crashes(draws(5.0, 1e9), constant(2.0)))
        Caller(env, t, Times(0.0), broker, fates, ledger)
        env.run(until=30)
        assert observer.fates("lost") == lost and observer.fates("processed") == processed
        assert w.counts["children_lost"] == 1 and t.counts["requeued"] == int(reject) and t.counts["reruns"] == int(reject)


def test_an_eta_task_raises_its_channels_prefetch_so_the_worker_goes_on_reserving(fates, observer, counts, level):
    """RabbitMQ prefetch 1: task 0 (countdown 100 s) at 0 is held until its ETA; Celery raises
    the channel's prefetch to 2, so task 1 (1 s) sent at 1 is pushed and ends at 2, not after
    the ETA; at the ETA the prefetch is back at 1."""
    env = simpy.Environment()
    broker = rabbit(env, fates, counts, level, 1)
    ledger = TaskLedger()
    remind = task_type("remind", 1.0, counts, level, countdown=constant(100.0))
    short = task_type("short", 1.0, counts, level)
    w = worker(env, "a", broker, fates, ledger, counts, level, multiplier=1)
    Caller(env, remind, Times(0.0), broker, fates, ledger)
    Caller(env, short, Times(1.0), broker, fates, ledger)
    env.run(until=50)
    assert broker.channels[w.consumer].extra_prefetch == 1
    env.run(until=200)
    assert processed_at(observer) == {1: 2.0, 0: 101.0} and broker.channels[w.consumer].extra_prefetch == 0


def consumer_timeout_closes(sent_s, countdown_s, timeout_s, check_s=60.0):
    """When the broker closes the channel of a worker holding an ETA task: at the first check (every
    ``check_s`` from 0) more than ``timeout_s`` after its latest delivery, as long as that falls
    before its ETA (the task, requeued, is delivered again at once on the worker's new channel)."""
    closes, delivered = [], sent_s
    while True:
        close = (math.floor((delivered + timeout_s) / check_s) + 1) * check_s
        if close >= sent_s + countdown_s:
            return closes
        closes.append(close)
        delivered = close


@pytest.mark.parametrize("ends", ["cancel", "retry"])
def test_an_eta_task_past_the_consumer_timeout_closes_the_channel_again_and_again_and_running_late_acks_run_twice(fates, observer, counts, level, ends):
    """consumer_timeout 120 s: a reminder (countdown 1000 s) sent at 0 keeps its channel's oldest
    delivery old, so the broker ends the consumer at 180, 360, 540, 720, 900 — a 4.3 cancel, or a
    channel close with broker_channel_error_retry — and each time the worker forgets the reminder
    (Celery's on_close), reconnects at once and gets it again; it runs once, at its ETA. A report
    (acks_late, 100 s) sent at 150 is running at 180: its ack falls on the dead channel, the
    requeued copy runs after it (250–350): one duplicate."""
    closes = consumer_timeout_closes(0.0, 1000.0, 120.0)
    assert closes == [180.0, 360.0, 540.0, 720.0, 900.0]
    env = simpy.Environment()
    options = RabbitmqOptions(prefetch_count=4, consumer_timeout_s=120.0, consumer_timeout_cancels=ends == "cancel")
    broker = RabbitmqBroker(env, "q", level(), level(), counts(), fates, options=options)
    ledger = TaskLedger()
    remind = task_type("remind", 1.0, counts, level, countdown=constant(1000.0))
    report = task_type("report", 100.0, counts, level, acks_late=True)
    w = worker(env, "a", broker, fates, ledger, counts, level, channel_error_retry=ends == "retry")
    Caller(env, remind, Times(0.0), broker, fates, ledger)
    Caller(env, report, Times(150.0), broker, fates, ledger)
    env.run(until=3000)
    assert broker.counts["consumer_timeouts"] == len(closes) and w.counts["exits"] == 0
    assert remind.counts["runs"] == 1 and remind.counts["redelivered"] == len(closes) and remind.scheduled.n == 0
    assert observer.fates("processed") == [(1, 250.0), (1, 350.0), (0, 1001.0)]
    assert report.counts["duplicates"] == 1 and report.counts["redelivered"] == 1


def test_a_channel_closed_by_default_ends_the_worker_after_its_running_tasks_and_it_restarts_later(fates, observer, counts, level):
    """The same, the channel closed (≤ 4.2) and Celery's defaults: PreconditionFailed is an
    unrecoverable error, so the worker stops reserving, lets the report it runs finish (250), exits
    and is back 10 s later (260), when it gets both requeued copies: the report runs again
    (260–360), the reminder is held and its channel closed at the first check more than 120 s
    after 260 (420); back at 430, closed at 600, back at 610, closed at 780, back at 790, closed
    at 960, back at 970: five exits, and the reminder runs once, at 1000."""
    env = simpy.Environment()
    broker = RabbitmqBroker(env, "q", level(), level(), counts(), fates, options=RabbitmqOptions(prefetch_count=4, consumer_timeout_s=120.0))
    ledger = TaskLedger()
    remind = task_type("remind", 1.0, counts, level, countdown=constant(1000.0))
    report = task_type("report", 100.0, counts, level, acks_late=True)
    w = worker(env, "a", broker, fates, ledger, counts, level, restart_s=10.0)
    Caller(env, remind, Times(0.0), broker, fates, ledger)
    Caller(env, report, Times(150.0), broker, fates, ledger)
    env.run(until=965)
    assert not w.up and w.counts["exits"] == 5
    env.run(until=3000)
    assert broker.counts["consumer_timeouts"] == w.counts["exits"] == 5 and w.up
    assert remind.counts["runs"] == 1 and remind.counts["redelivered"] == 5
    assert observer.fates("processed") == [(1, 250.0), (1, 360.0), (0, 1001.0)]
    assert report.counts["duplicates"] == 1


def test_a_task_the_broker_refuses_is_rejected_and_never_queued(fates, observer, counts, level):
    env = simpy.Environment()
    broker = FifoBroker(env, "q", level(), counts(), fates, capacity=1)
    ledger = TaskLedger()
    t = task_type("t", 1.0, counts, level)
    Caller(env, t, Times(0.0, 0.0), broker, fates, ledger)
    env.run(until=1)
    assert observer.fates("rejected") == [(1, 0.0)]
    assert t.counts["sent"] == 2 and t.counts["refused"] == 1 and t.queued.n == 1
    assert isinstance(broker.ready[0][0], Task)


def redis(env, fates, counts, level):
    broker = RedisList(env, "q", level(), counts(), fates)
    return broker, KombuRedisTransport(env, broker, counts(), visibility_timeout_s=3600.0)


def runs_expected(sent_s, countdown_s, visibility_s, period_s):
    """1 + the scans (at 0, period, 2 period…) before the ETA and at least the visibility timeout
    after the latest delivery of the task (each restored copy is delivered again at once)."""
    eta, delivered, runs, scan = sent_s + countdown_s, sent_s, 1, 0.0
    while scan < eta:
        if scan >= delivered + visibility_s:
            runs, delivered = runs + 1, scan
        scan += period_s
    return runs


def test_a_countdown_past_the_visibility_timeout_runs_once_per_restore_all_copies_at_the_eta(fates, observer, counts, level):
    for countdown, visibility in ((3000.0, 3600.0), (7200.0, 3600.0), (10800.0, 3600.0), (7200.0, 1000.0)):
        observer.log.clear()
        observer.outcome.clear()
        env = simpy.Environment()
        broker, transport = redis(env, fates, counts, level)
        transport.visibility_timeout_s = visibility
        ledger = TaskLedger()
        t = TaskType("remind", "q", constant(1.0), level(), level(), level(), level(), level(), counts(), countdown=constant(countdown))
        worker(env, "a", transport, fates, ledger, counts, level, concurrency=8, scanner=transport.scans)
        Caller(env, t, Times(5.0), transport, fates, ledger)
        env.run(until=20_000)
        runs = runs_expected(5.0, countdown, visibility, 100.0)
        assert t.counts["runs"] == runs and transport.counts["restored"] == runs - 1, (countdown, visibility)
        assert [s for _, s in observer.fates("processed")] == [5.0 + countdown + 1.0] * runs
        assert t.counts["duplicates"] == runs - 1 and not transport.unacked and t.scheduled.n == 0


def test_what_a_killed_worker_held_is_restored_by_a_scan_a_visibility_timeout_after_its_delivery(fates, observer, counts, level):
    """Tasks 0 and 1 (50 s each) at 0; one child; the worker dies at 10 (back at 11, scanning at
    11, 111, 211, 311). Task 0, acked as it started, is lost; task 1 stays in the unacked index
    and the scan at 311 (≥ 0 + 300) restores it: it ends at 361."""
    env = simpy.Environment()
    broker, transport = redis(env, fates, counts, level)
    transport.visibility_timeout_s = 300.0
    ledger = TaskLedger()
    t = task_type("t", 50.0, counts, level)
    worker(env, "a", transport, fates, ledger, counts, level, crashes=Crashes(draws(10.0, 1e9), constant(1.0)), scanner=transport.scans)
    Caller(env, t, Times(0.0, 0.0), transport, fates, ledger)
    env.run(until=250)
    assert list(transport.held_ids()) == [1] and observer.fates("lost") == [(0, 10.0)]
    env.run(until=1000)
    assert observer.fates("processed") == [(1, 361.0)] and transport.counts["restored"] == 1
    assert broker.counts["lost"] == 0


def test_a_restored_task_goes_to_the_head_of_the_list_ahead_of_those_waiting(fates, observer, counts, level):
    """One child, multiplier 1, tasks 0 and 1 (100 s) at 0: the worker dies at 10 (back at 11,
    scanning at 11, 111, 211, 311) running task 0 (lost) with task 1 reserved. Tasks 2…9 arrive
    at 20: the worker runs 2 (20–120), 3, 4 and reserves 5 at 220; 6…9 wait. The scan at 311
    RPUSHes task 1 to the head, so it is reserved when 5 starts (320) and runs 420–520, before
    6…9 (kombu's restore; at the back it would end at 920)."""
    env = simpy.Environment()
    broker, transport = redis(env, fates, counts, level)
    transport.visibility_timeout_s = 300.0
    ledger = TaskLedger()
    t = task_type("t", 100.0, counts, level)
    worker(env, "a", transport, fates, ledger, counts, level, multiplier=1, crashes=Crashes(draws(10.0, 1e9), constant(1.0)),
           scanner=transport.scans)
    Caller(env, t, Times(0.0, 0.0, *[20.0] * 8), transport, fates, ledger)
    env.run(until=2000)
    ends = processed_at(observer)
    assert ends[1] == 520.0 and [ends[i] for i in range(2, 10)] == [120.0, 220.0, 320.0, 420.0, 620.0, 720.0, 820.0, 920.0]
    assert transport.counts["restored"] == 1 and observer.fates("lost") == [(0, 10.0)]


def test_retry_countdowns_are_the_default_delay_or_a_capped_doubling_with_whole_second_jitter():
    assert [RetryPolicy(0.5, constant(0.0)).countdown_s(k) for k in range(3)] == [180.0] * 3
    doubling = RetryPolicy(0.5, constant(0.0), backoff_factor=3, backoff_max_s=600.0, jitter=False)
    assert [doubling.countdown_s(k) for k in range(9)] == [3, 6, 12, 24, 48, 96, 192, 384, 600]
    assert [RetryPolicy(0.5, constant(u), backoff_factor=1).countdown_s(3) for u in (0.0, 0.11, 0.5, 0.999)] == [0, 0, 4, 8]
    assert RetryPolicy(0.5, constant(0.0), max_retries=None).may_retry(10**6)
    assert [RetryPolicy(0.5, constant(0.0), max_retries=2).may_retry(k) for k in range(3)] == [True, True, False]


def test_a_task_that_always_fails_runs_one_plus_max_retries_times_then_fails_for_good(fates, observer, counts, level):
    """Runs of 1 s at 0, 11, 22 (retries due 10 s after each failure); the third failure is the last."""
    env = simpy.Environment()
    broker = FifoBroker(env, "q", level(), counts(), fates)
    ledger = TaskLedger()
    t = task_type("t", 1.0, counts, level, retry=RetryPolicy(0.5, constant(0.0), max_retries=2, default_retry_delay_s=10.0))
    worker(env, "a", broker, fates, ledger, counts, level)
    Caller(env, t, Times(0.0), broker, fates, ledger)
    env.run(until=100)
    assert observer.fates("lost") == [(0, 23.0)] and observer.fates("processed") == []
    assert {k: t.counts[k] for k in ("runs", "failures", "retries", "failed", "reruns", "redelivered")} == {
        "runs": 3, "failures": 3, "retries": 2, "failed": 1, "reruns": 0, "redelivered": 0}
    assert t.queued.n == t.in_system.n == 0 and t.queued.area == 0  # each retry was reserved as soon as it was sent


def test_a_rate_limit_spaces_a_workers_starts_and_holds_its_prefetch_slots(fates, observer, counts, level):
    """rate_limit 1/s, four children, eight tasks of 0.1 s at 0: starts at 0, 1, 2…; the worker
    holds 4 × 4 = 16 slots, so all eight wait in it, none in the broker."""
    env = simpy.Environment()
    broker = FifoBroker(env, "q", level(), counts(), fates)
    ledger = TaskLedger()
    t = task_type("t", 0.1, counts, level, rate_limit_per_s=1.0)
    w = worker(env, "a", broker, fates, ledger, counts, level, concurrency=4)
    Caller(env, t, Times(*[0.0] * 8), broker, fates, ledger)
    env.run(until=0.5)
    assert len(w.limited) == 7 and broker.waiting == 0 and t.reserved.n == 7
    env.run(until=20)
    assert [s for _, s in observer.fates("processed")] == pytest.approx([k + 0.1 for k in range(8)])


def test_a_hard_time_limit_kills_the_child_and_costs_a_replacement_a_soft_one_only_fails_the_task(fates, observer, counts, level):
    """A 10 s task then a 1 s one, one child. Hard limit 3 s: the first is killed at 3 (lost), the
    child is replaced by 5, the second ends at 6. Soft limit 2 s (hard 3 s): the first fails at 2,
    the child goes on, the second ends at 3."""
    for limits, lost_at, second_ends in (({"hard_time_limit_s": 3.0}, 3.0, 6.0), ({"soft_time_limit_s": 2.0, "hard_time_limit_s": 3.0}, 2.0, 3.0)):
        observer.log.clear()
        env = simpy.Environment()
        broker = FifoBroker(env, "q", level(), counts(), fates)
        ledger = TaskLedger()
        long, short = task_type("long", 10.0, counts, level, **limits), task_type("short", 1.0, counts, level, **limits)
        w = CeleryWorker(env, "a", broker, 1, 4, fates, ledger, level(), counts(), replacement_s=2.0)
        Caller(env, long, Times(0.0), broker, fates, ledger)
        Caller(env, short, Times(0.0), broker, fates, ledger)
        env.run(until=20)
        first = min(i for i, _ in observer.fates("admitted"))
        assert observer.fates("lost") == [(first, lost_at)] and observer.fates("processed") == [(first + 1, second_ends)]
        kind = "hard_time_limits" if second_ends == 6.0 else "soft_time_limits"
        assert long.counts[kind] == 1 and long.counts["failed"] == 1 and w.counts["completed"] == 2


class Sojourns(Level):
    """A level that also records each stay (leave time minus entry time)."""

    def __init__(self):
        super().__init__()
        self.stays = []

    def leave(self, now, entered_s):
        super().leave(now, entered_s)
        self.stays.append(now - entered_s)


def test_a_caller_sees_the_result_when_written_or_at_its_next_poll_and_the_backend_keeps_it_until_it_expires(fates, counts, level):
    """Runs of 1 s at 0 and 2; results written 0.2 s after; kept 10 s. get(): the callers wait
    1.2 s. Polling every 0.5 s from the call: 1.5 s."""
    for poll, waited in ((None, 1.2), (0.5, 1.5)):
        env = simpy.Environment()
        broker = FifoBroker(env, "q", level(), counts(), fates)
        ledger = TaskLedger()
        stored, awaiting = Sojourns(), Sojourns()
        backend = ResultBackend(env, constant(0.2), 10.0, stored, counts())
        t = task_type("t", 1.0, counts, level, result=ResultWait(env, backend, awaiting, poll))
        worker(env, "a", broker, fates, ledger, counts, level)
        Caller(env, t, Times(0.0, 2.0), broker, fates, ledger)
        env.run(until=12.0)
        assert awaiting.stays == pytest.approx([waited, waited]) and awaiting.n == 0
        assert stored.stays == [10.0] and stored.n == 1 and backend.counts["results_written"] == 2


def test_a_chord_joins_when_its_slowest_header_result_is_written_or_when_a_chord_unlock_task_finds_it(fates, observer, counts, level):
    """Three header tasks of 1, 2 and 3.5 s on three children, each writing its result in 0.3 s
    (written at 1.3, 2.3, 3.8): by counter the callback (1 s) is sent at 3.8 and ends at 4.8. With
    chord_unlock tasks (due 1 s after the call, retried 1 s after each run that finds a result
    missing; the first waits for a free child, 1.3): runs of 0 s at 1.3, 2.3, 3.3 and 4.3, the
    callback sent at 4.3; runs of 0.25 s at 1.3, 2.55 and 3.8, the callback sent at the end of
    the third, 4.05 (a timer every second from the call would send at 4)."""
    for unlock_s, sent_s, unlock_runs in ((None, 3.8, 0), (0.0, 4.3, 4), (0.25, 4.05, 3)):
        observer.log.clear()
        env = simpy.Environment()
        broker = FifoBroker(env, "q", level(), counts(), fates)
        ledger = TaskLedger()
        backend = ResultBackend(env, constant(0.3), 100.0, level(), counts())
        callback = task_type("callback", 1.0, counts, level)
        unlock = None if unlock_s is None else task_type("unlock", unlock_s, counts, level, countdown=constant(UNLOCK_COUNTDOWN_S), retry=UnlockCheck(1.0))
        joined = Sojourns()
        join = ChordJoin(env, callback, broker, fates, ledger, joined, counts(), unlock)
        header = TaskType("header", "q", draws(1.0, 2.0, 3.5), level(), level(), level(), level(), level(), counts(),
                          result=ResultWait(env, backend, level(), None), chord_join=join, chord_size=3)
        worker(env, "a", broker, fates, ledger, counts, level, concurrency=3)
        Caller(env, header, Times(0.0), broker, fates, ledger)
        env.run(until=20)
        assert joined.stays == [pytest.approx(sent_s)] and callback.counts["sent"] == 1
        assert observer.fates("processed")[-1][1] == pytest.approx(sent_s + 1.0) and header.counts["succeeded"] == 3
        if unlock is not None:
            assert (unlock.counts["runs"], unlock.counts["retries"], unlock.counts["succeeded"]) == (unlock_runs, unlock_runs - 1, 1)


def test_a_header_task_that_fails_for_good_is_a_chord_error_and_the_callback_never_runs(fates, observer, counts, level):
    env = simpy.Environment()
    broker = FifoBroker(env, "q", level(), counts(), fates)
    ledger = TaskLedger()
    callback = task_type("callback", 1.0, counts, level)
    join = ChordJoin(env, callback, broker, fates, ledger, level(), counts())
    header = task_type("header", 1.0, counts, level, retry=RetryPolicy(0.5, draws(0.9, 0.9, 0.1), max_retries=0),
                       result=ResultWait(env, ResultBackend(env, constant(0.5), 100.0, level(), counts()), level()), chord_join=join, chord_size=3)
    worker(env, "a", broker, fates, ledger, counts, level, concurrency=3)
    Caller(env, header, Times(0.0), broker, fates, ledger)
    env.run(until=20)
    assert join.counts["chord_errors"] == 1 and callback.counts["sent"] == 0 and header.counts["failed"] == 1


def test_the_event_loop_limiter_keeps_the_rate_while_few_timers_wait_and_starts_one_a_pass_once_ten_do():
    """rate 10/s. Three requests at 0: released at 0, 0.1, 0.2 (each pass sleeps until the next
    timer is due). Thirty: each refusal adds a timer (29, all due at 0.1); the pass at 0.1 fires
    10, of which the first finds the one token; then the loop polls a full second: releases at
    0, 0.1, 1.1, 2.1…"""
    for requests, first_releases in ((3, [0.0, 0.1, 0.2]), (30, [0.0, 0.1, 1.1, 2.1, 3.1])):
        env = simpy.Environment()
        released = []
        limiter = EventLoopLimiter(env, lambda request: released.append(env.now))
        for r in range(requests):
            limiter.limit(r, "t", 10.0)
        env.run(until=4.0)
        assert released[:len(first_releases)] == pytest.approx(first_releases)
        assert len(released) == len(first_releases) if requests == 30 else len(released) == 3


def test_a_worker_on_two_redis_queues_takes_from_each_in_turn_and_blocks_on_both(fates, observer, counts, level):
    """One child, multiplier 1 (one task reserved beyond the one running), runs of 1 s; tasks on
    queue a at 0, 0.1, 0.2 and on queue b at 0.3, 0.4, 0.5 and 10. Blocked on both, the worker
    gets A0 at 0 and A1 at 0.1; then, with both queues holding tasks, it takes from b (a was
    last), then a, then b: B0 runs before A2 (by age, or with a fixed key order, A2 would run
    first). At 10 it is blocked on both again and B3 reaches it at once."""
    env = simpy.Environment()
    (_, a), (_, b) = redis(env, fates, counts, level), redis(env, fates, counts, level)
    ledger = TaskLedger()
    types = {name: TaskType(name, name, constant(1.0), level(), level(), level(), level(), level(), counts()) for name in ("a", "b")}
    cycle = QueueCycle(env, {"a": a, "b": b})
    worker(env, "w", cycle, fates, ledger, counts, level, multiplier=1, scanner=cycle.scans)
    Caller(env, types["a"], Times(0.0, 0.1, 0.2), a, fates, ledger)
    Caller(env, types["b"], Times(0.3, 0.4, 0.5, 10.0), b, fates, ledger)
    env.run(until=20)
    assert observer.fates("processed") == [(0, 1.0), (1, 2.0), (3, 3.0), (2, 4.0), (4, 5.0), (5, 6.0), (6, 11.0)]
    assert not a.unacked and not b.unacked
