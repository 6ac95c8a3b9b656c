"""Autoscaling worker pools: workers join after the scale-out delay, actions respect the cooldown,
the pool stays within min and max, scale-in is graceful, and the utilisation target is tracked —
with every run's Little's law and conservation checks."""

import math

import pytest
import simpy

from sim import run, scenario_from_dict
from sim.network import build
from sim.recorder import Recorder
from sim.streams import Streams

DELAY, COOLDOWN, INTERVAL = 30.0, 60.0, 10.0


def backlog_scaled(**autoscaling):
    # 20/s for 2 workers of 200 ms (10/s): overloaded until the pool grows (max 10 workers: 50/s)
    return scenario_from_dict({
        "name": "autoscaled",
        "seed": 8,
        "duration": 600,
        "warmup": 0,
        "producers": [{"name": "app", "arrivals": {"process": "poisson", "rate": 20.0}, "sends_to": "q"}],
        "brokers": [{"name": "q", "kind": "fifo"}],
        "workers": [{"name": "w", "consumes": "q", "count": 2, "service_time": {"dist": "exponential", "mean": 0.2},
                     "autoscaling": {"target_backlog_per_worker": 5, "min": 2, "max": 10, "evaluation_interval": f"{INTERVAL}s",
                                     "scale_out_delay": f"{DELAY}s", "cooldown": f"{COOLDOWN}s", **autoscaling}}],
    })


def probed(scenario, step=0.05):
    """Run one replication by hand, sampling the pool's workers present every ``step`` seconds."""
    env = simpy.Environment()
    recorder = Recorder(scenario.warmup, scenario.duration)
    network, _ = build(scenario, env, recorder, Streams(scenario.seed, 0))
    pool = network.parts["workers"]["w"]
    samples = []

    def probe():
        while True:
            samples.append((env.now, pool.present, pool.count))
            yield env.timeout(step)

    env.process(probe())
    recorder.open_window(0.0)
    env.run(until=scenario.duration)
    return network, samples


def test_workers_join_after_the_scale_out_delay_and_actions_respect_the_cooldown():
    network, samples = probed(backlog_scaled())
    actions = network.attached["w", "autoscaler"].actions
    # at the first evaluation (10 s) ~100 wait: ceil(100 / 5) = 20, capped at max 10: start 8 more
    first_time, first_change, first_desired = actions[0]
    assert first_time == pytest.approx(INTERVAL) and first_change == 8 and first_desired == 10
    joined = next(t for t, present, _ in samples if present > 2)
    assert first_time + DELAY <= joined < first_time + DELAY + 0.05 + 1e-9
    assert all(present == 2 for t, present, _ in samples if t < first_time + DELAY)
    # with 10 workers the backlog drains; the next decision (scale in) waits for the cooldown
    assert len(actions) >= 3
    for (t0, _, _), (t1, _, _) in zip(actions, actions[1:]):
        assert t1 - t0 >= COOLDOWN - 1e-9
        assert (t1 / INTERVAL) == pytest.approx(round(t1 / INTERVAL))  # decisions only at evaluations
    assert any(change < 0 for _, change, _ in actions)
    # never outside min..max
    assert min(present for _, present, _ in samples) >= 2
    assert max(present for _, present, _ in samples) <= 10


def test_scale_in_is_graceful_and_the_checks_hold():
    # a fifo broker loses what a crashing worker holds; a worker removed by scale-in finishes its
    # message first, so nothing is lost, and every message is accounted for
    result = run(backlog_scaled(), replications=3)
    counts = result.counts()
    assert counts["lost"] == 0
    assert result.estimate("workers.w.scale_ins").mean >= 1
    assert result.estimate("workers.w.scale_outs").mean >= 2
    count = result.estimate("workers.w.count_mean").mean
    assert 2 < count < 10
    # utilisation is busy time over the worker time actually present
    busy = result.estimate("workers.w.busy_mean").mean
    assert result.estimate("workers.w.utilization").mean == pytest.approx(busy / count, rel=0.05)
    assert result.ok, result.warnings()


def test_a_utilisation_target_is_tracked():
    # 30/s on 4 workers of 100 ms is 75% busy; aiming at 50% the pool settles near 6 workers
    scenario = scenario_from_dict({
        "name": "hpa",
        "seed": 2,
        "duration": 1_800,
        "warmup": 300,
        "producers": [{"name": "app", "arrivals": {"process": "poisson", "rate": 30.0}, "sends_to": "q"}],
        "brokers": [{"name": "q", "kind": "fifo"}],
        "workers": [{"name": "w", "consumes": "q", "count": 4, "service_time": {"dist": "exponential", "mean": 0.1},
                     "autoscaling": {"target_utilization": 0.5, "min": 1, "max": 20, "evaluation_interval": "15s",
                                     "scale_out_delay": "10s", "cooldown": "60s"}}],
    })
    result = run(scenario, replications=3)
    count = result.estimate("workers.w.count_mean").mean
    assert 5.5 <= count <= 7.5
    assert result.estimate("workers.w.utilization").mean == pytest.approx(3.0 / count, rel=0.05)
    assert 0.4 < result.estimate("workers.w.utilization").mean < 0.56
    assert result.ok


def test_the_worker_count_series_and_its_plot():
    result = run(backlog_scaled(), replications=2)
    table = result.timeseries
    series = table[table["series"] == "workers.w.count"]
    assert series["value"].min() >= 2 - 1e-9 and series["value"].max() <= 10 + 1e-9
    assert math.isclose(series["value"].iloc[0], 2.0)
    ax = result.plot_workers()
    assert ax.get_lines()
