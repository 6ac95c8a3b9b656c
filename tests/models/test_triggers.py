"""models/triggers.py: an arrival spike, a capacity loss, and a service time that grows with load."""

import simpy

from models.arrivals import DeterministicArrivals
from models.fifo import FifoBroker
from models.triggers import CapacityLoss, LoadDependentServiceTime, Slowdown, SpikedArrivals
from models.workers import Done, WorkerPool


def arrivals_until(process, end_s):
    times, now = [], 0.0
    while (now := process.next_arrival(now)) is not None and now < end_s:
        times.append(now)
    return times


def test_a_spike_multiplies_the_rate_only_inside_its_window():
    spiked = SpikedArrivals(DeterministicArrivals(1.0), at_s=5.0, duration_s=2.0, multiplier=4.0)
    # one a second, four a second from 5 to 7, one a second again
    assert arrivals_until(spiked, 10.0) == [1.0, 2.0, 3.0, 4.0, 5.0, 5.25, 5.5, 5.75, 6.0, 6.25, 6.5, 6.75, 7.0, 8.0, 9.0]


def test_capacity_loss_retires_workers_at_from_and_returns_them_at_until(fates, observer, counts, level):
    env = simpy.Environment()
    broker = FifoBroker(env, "q", level(), counts(), fates)
    for _ in range(14):
        broker.put(fates.new_message(0.0))
    workers = level(3)
    pool = WorkerPool(env, "pool", broker, 3, lambda: 1.0, Done(env, fates), fates, level(), workers, counts())
    CapacityLoss(env, pool, from_s=2.5, until_s=5.5, workers=2)
    env.run(until=2.75)
    assert (pool.count, pool.present) == (1, 3)  # two busy workers finish their message before leaving
    env.run(until=7.0)
    # three at a time until 3, one until 5.5, then three again (two new workers take the last two)
    assert [t for _, t in observer.fates("processed")] == [1.0, 1.0, 1.0, 2.0, 2.0, 2.0, 3.0, 3.0, 3.0, 4.0, 5.0, 6.0, 6.5, 6.5]
    assert pool.count == pool.present == 3 and workers.integral(7.0) == 3 * 3.0 + 1 * 2.5 + 3 * 1.5


def test_a_slowdown_multiplies_the_service_time_in_its_window_and_adds_per_unit_of_load():
    env = simpy.Environment()

    class Waiting:
        waiting = 4

    in_service = {"a": 0.0, "b": 0.0}
    service = LoadDependentServiceTime(env, lambda: 1.0, Slowdown(per_concurrent_s=0.25, per_waiting_s=0.125, from_s=1.0,
                                                                  until_s=2.0, factor=3.0), in_service, Waiting())
    before = service()
    env.run(until=1.0)
    inside = service()
    env.run(until=2.0)
    after = service()
    assert (before, inside, after) == (1.75, 3.75, 1.75)  # base (×3 in the window) + 0.25·1 other + 0.125·4 waiting
