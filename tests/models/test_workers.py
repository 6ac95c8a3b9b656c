"""models/workers.py: workers that serve, crash and restart, and a pool that grows and shrinks."""

import simpy

from models.crashes import Crashes
from models.fifo import FifoBroker
from models.workers import Done, WorkerOptions, WorkerPool


def constant(value):
    return lambda: value


def draws(*values):
    it = iter(values)
    return lambda: next(it)


def pool_on_a_queue(fates, counts, level, n_messages, count=1, service_s=1.0, options=None):
    env = simpy.Environment()
    broker = FifoBroker(env, "q", level(), counts(), fates)
    for _ in range(n_messages):
        broker.put(fates.new_message(0.0))
    pool = WorkerPool(env, "pool", broker, count, constant(service_s), Done(env, fates), fates, level(), level(count), counts(), options)
    return env, broker, pool


def test_one_worker_serves_the_queue_in_order(fates, observer, counts, level):
    env, broker, pool = pool_on_a_queue(fates, counts, level, 3)
    env.run(until=10)
    assert observer.fates("processed") == [(0, 1.0), (1, 2.0), (2, 3.0)]
    assert pool.counts["completed"] == 3 and pool.worker_seconds(10.0) == (3.0, 10.0)


def test_a_crash_loses_the_message_in_service_and_the_worker_comes_back_after_its_restart(fates, observer, counts, level):
    crashes = Crashes(draws(2.5, 1000.0), constant(1.0))
    env, broker, pool = pool_on_a_queue(fates, counts, level, 5, options=WorkerOptions(crashes=crashes))
    env.run(until=20)
    # serves 0 and 1; crashes at 2.5 with message 2 (a plain queue loses it); down until 3.5
    assert observer.fates("lost") == [(2, 2.5)]
    assert observer.fates("processed") == [(0, 1.0), (1, 2.0), (3, 4.5), (4, 5.5)]
    assert pool.counts["crashes"] == 1 and pool.counts["completed"] == 4
    assert pool.worker_seconds(20.0)[0] == 4.5  # busy 0..2.5, then 3.5..5.5


def test_failed_attempts_are_rejected_to_the_broker(fates, observer, counts, level):
    options = WorkerOptions(error_probability=0.5, error_draw=draws(0.9, 0.1, 0.9))
    env, broker, pool = pool_on_a_queue(fates, counts, level, 3, options=options)
    env.run(until=10)
    assert observer.fates("processed") == [(0, 1.0), (2, 3.0)]
    assert observer.fates("lost") == [(1, 2.0)]  # a plain queue drops a nacked message
    assert pool.counts["errors"] == 1


def test_retired_workers_finish_their_message_and_added_ones_start_at_once(fates, observer, counts, level):
    env, broker, pool = pool_on_a_queue(fates, counts, level, 6, count=2, service_s=2.0)
    env.timeout(1.0).callbacks.append(lambda _: pool.retire_workers(1))
    env.run(until=3.0)
    assert (pool.count, pool.present) == (1, 1)  # the retired worker finished its message at 2.0, then left
    pool.add_workers(2)
    env.run(until=20)
    times = [t for _, t in observer.fates("processed")]
    assert times == [2.0, 2.0, 4.0, 5.0, 5.0, 6.0]
    assert pool.present == 3 and pool.workers.n == 3
