"""models/autoscaling.py: target tracking on the backlog the pool's broker says is ``waiting``."""

import simpy

from models.autoscaling import Autoscaler
from models.fifo import FifoBroker
from models.workers import Done, WorkerPool


def test_the_autoscaler_scales_out_on_the_brokers_backlog_and_in_when_it_is_gone(fates, counts, level):
    env = simpy.Environment()
    broker = FifoBroker(env, "q", level(), counts(), fates)
    for _ in range(20):
        broker.put(fates.new_message(0.0))
    pool = WorkerPool(env, "pool", broker, 1, lambda: 1.0, Done(env, fates), fates, level(), level(1), counts())
    scaler = Autoscaler(env, pool, 1, 4, evaluation_interval_s=1.0, scale_out_delay_s=0.5, cooldown_s=3.0,
                        target_backlog_per_worker=5)
    env.run(until=1.6)
    # at 1.0, 18 wait (two taken): ceil(18 / 5) = 4 workers, 3 more, present from 1.5
    assert scaler.actions == [(1.0, 3, 4)]
    assert (pool.count, pool.present) == (4, 4)
    env.run(until=30)
    # at 4.0, the cooldown over, 6 or 7 wait (4 workers have taken one a second each since 1.5):
    # ceil(6 / 5) = 2 workers; at 7.0, after the next cooldown, nothing waits: back to 1
    assert scaler.actions[1:] == [(4.0, -2, 2), (7.0, -1, 1)]
    assert (pool.count, broker.waiting) == (1, 0) and pool.counts["scale_outs"] == 1 and pool.counts["scale_ins"] == 2
