"""Worker pools that crash, fail and take time to receive, on the plain fifo broker.

A fifo broker has no acknowledgements: a message taken is the worker's, so a crash or a failed
attempt loses it. The numbers below follow from that.
"""

import math

import pytest

from sim import run, scenario_from_dict
from sim.sketch import RELATIVE_ACCURACY


def pool_scenario(seed=1, duration=20_000, arrivals=None, **pool):
    spec = {
        "name": "workers",
        "seed": seed,
        "duration": duration,
        "warmup": 200,
        "producers": [{"name": "source", "arrivals": arrivals or {"process": "poisson", "rate": 2.0}, "sends_to": "queue"}],
        "brokers": [{"name": "queue", "kind": "fifo"}],
        "workers": [{"name": "pool", "consumes": "queue", "count": 4, "service_time": {"dist": "deterministic", "value": 1.0}, **pool}],
    }
    return scenario_from_dict(spec)


def test_a_crash_loses_the_message_in_hand_with_probability_one_minus_exp_of_minus_s_over_m():
    # exponential times to failure (mean M = 20 s) have no memory: a service of S = 1 s that has
    # started is cut short with probability 1 − exp(−S/M), whatever happened before it started
    expected = 1 - math.exp(-1.0 / 20.0)
    result = run(pool_scenario(crashes={"mtbf": "20s", "restart_time": "5s"}), replications=10)
    lost = result.estimate("system.lost_rate")
    assert lost.contains(expected), (expected, lost)
    assert lost.half_width < 0.1 * expected
    crashes = result.estimate("workers.pool.crashes").mean
    # each of the 4 workers fails about once per (M + restart) = 25 s of the 19,800 s window
    assert crashes == pytest.approx(4 * 19_800 / 25, rel=0.05)
    assert result.ok


def test_failed_attempts_are_lost_in_their_probability():
    result = run(pool_scenario(errors={"probability": 0.1}), replications=10)
    lost = result.estimate("system.lost_rate")
    assert lost.contains(0.1), lost
    assert lost.half_width < 0.01
    assert result.estimate("workers.pool.errors").mean == pytest.approx(result.counts()["lost"] / 10, rel=0.01)
    assert result.ok


def test_poison_messages_fail_in_every_pool_they_reach():
    result = run(pool_scenario(errors={"poison_fraction": 0.05}), replications=4)
    lost = result.estimate("system.lost_rate")
    assert lost.contains(0.05) or abs(lost.mean - 0.05) < 0.005, lost


def test_delivery_latency_adds_to_every_message_but_not_to_busy_time():
    # one message every 2 s for 4 workers: nobody waits, every message takes 0.25 s to arrive at a
    # worker and 1 s of work; the workers are busy (in service) 1 s in every 8 worker-seconds
    scenario = pool_scenario(duration=2_000, arrivals={"process": "deterministic", "rate": 0.5}, delivery_latency="250ms")
    result = run(scenario, replications=2)
    for key in ("p50", "p99", "mean"):
        assert result.estimate(f"system.latency_s.{key}").mean == pytest.approx(1.25, rel=RELATIVE_ACCURACY)
    assert result.estimate("workers.pool.utilization").mean == pytest.approx(1 / 8, rel=1e-3)
    assert result.ok


def test_crashes_count_against_capacity_in_the_stability_check():
    # 4 workers × 1/s, but each is down half the time (mtbf 10 s, restart 10 s): 2/s for 3/s offered
    from sim import ScenarioError

    with pytest.raises(ScenarioError) as caught:
        pool_scenario(arrivals={"process": "poisson", "rate": 3.0}, crashes={"mtbf": "10s", "restart_time": "10s"})
    assert "unstable: offered load 3/s ≥ capacity 2/s" in str(caught.value)
    assert "(crashes)" in str(caught.value)
    pool_scenario(arrivals={"process": "poisson", "rate": 3.0})  # without crashes, 3/s < 4/s is fine
