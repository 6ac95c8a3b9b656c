"""Back pressure: admission control (token bucket, bounds on the queue and on the expected wait),
deadline shedding, the triggers of metastable failures (spikes, slowdowns, capacity loss), the
stability check's rules, and bad input — exact figures where the system is deterministic, theory
with confidence intervals where it is not.
"""

import numpy as np
import pytest
import simpy

from models.admission import TokenBucket
from sim import ScenarioError, run, scenario_from_dict
from sim.backpressure import time_to_recover
from sim.network import build
from sim.recorder import Recorder
from sim.streams import Streams


def scenario(producers=None, workers=None, **extra):
    spec = {
        "name": "back-pressure",
        "seed": 3,
        "duration": 2_000,
        "warmup": 100,
        "producers": producers if producers is not None else [{"name": "app", "arrivals": {"process": "poisson", "rate": 5.0}, "sends_to": "q"}],
        "brokers": [{"name": "q", "kind": "fifo"}],
        "workers": workers or [{"name": "w", "consumes": "q", "count": 4, "service_time": {"dist": "exponential", "mean": 0.5}}],
    }
    spec.update(extra)
    return scenario_from_dict(spec)


def built(spec, until):
    """Build and run one replication by hand, to look inside its components."""
    env = simpy.Environment()
    recorder = Recorder(spec.warmup, spec.duration)
    network, _ = build(spec, env, recorder, Streams(spec.seed, 0))
    recorder.open_window(spec.warmup)
    env.run(until=until)
    return env, recorder, network


# --- admission control -----------------------------------------------------------------------------


def test_token_bucket_refills_continuously_and_bursts_up_to_its_size():
    bucket = TokenBucket(rate_per_s=2.0, burst=3)
    admitted = 0
    for _ in range(5):  # a burst at t = 0: the 3 tokens go, then none
        if bucket.has_token(0.0):
            bucket.take(0.0)
            admitted += 1
    assert admitted == 3
    assert not bucket.has_token(0.4) and bucket.has_token(0.5)  # one token every 0.5 s
    bucket.take(0.5)
    assert bucket.has_token(100.0) and bucket.tokens == 3.0  # never beyond the burst


def test_a_rate_limiter_admits_at_its_rate_and_throttles_the_rest():
    # 100/s offered to a token bucket of 40/s: 40/s get through, the rest are throttled (429)
    result = run(scenario(
        producers=[{"name": "app", "arrivals": {"process": "poisson", "rate": 100.0}, "sends_to": "q"}],
        workers=[{"name": "w", "consumes": "q", "count": 8, "service_time": {"dist": "exponential", "mean": 0.1}}],
        admission=[{"name": "limiter", "in_front_of": "q", "rate_limit": {"rate": "40/s", "burst": 10}}],
        duration=600,
        warmup=60,
    ), replications=3)
    admitted = result.estimate("admission.limiter.admitted").mean / 540
    assert admitted == pytest.approx(40.0, rel=0.005)
    assert result.estimate("system.throughput_per_s").mean == pytest.approx(40.0, rel=0.01)
    assert result.estimate("system.rejected_rate").mean == pytest.approx(0.6, abs=0.01)
    assert result.estimate("admission.limiter.throttled").mean > 0
    assert result.ok


def test_a_bound_on_the_expected_wait_bounds_every_wait():
    # 4 workers of exactly 100 ms, overloaded (60/s for 40/s): a message is refused when the
    # messages waiting × 100 ms / 4 exceed 0.5 s, so a message is admitted behind at most 20
    # others; the 21st in line starts when 21 services have ended, in the 6th round of 4: it waits
    # at most 0.6 s — the bound plus one service time
    spec = scenario(
        producers=[{"name": "app", "arrivals": {"process": "poisson", "rate": 60.0}, "sends_to": "q"}],
        workers=[{"name": "w", "consumes": "q", "count": 4, "service_time": {"dist": "deterministic", "value": 0.1}}],
        admission=[{"name": "gate", "in_front_of": "w", "max_wait": "500ms"}],
        duration=300,
        warmup=10,
    )
    env, recorder, network = built(spec, 300)
    waiting = recorder.boundaries["q"]
    assert waiting.max_sojourn <= 0.6 + 1e-9
    assert waiting.max_sojourn > 0.5  # and the bound is reached: the queue is full most of the time
    assert recorder.counters["gate"]["busy"] > 1_000
    result = run(spec, replications=2, jobs=1)
    assert result.estimate("system.throughput_per_s").mean == pytest.approx(40.0, rel=0.02)
    assert result.ok


# --- deadline shedding ---------------------------------------------------------------------------------


def five_at_once(shed):
    """Five closed-loop clients send together at t = 10 s to one worker of exactly 1 s; each waits
    2.5 s (no retries): the first two are answered at 11 s and 12 s, the third starts at 12 s and
    is done at 13 s, too late."""
    return scenario(
        producers=[],
        clients=[{"name": "five", "count": 5, "think_time": "10s", "sends_to": "q", "timeout": "2500ms"}],
        workers=[{"name": "w", "consumes": "q", "count": 1, "service_time": {"dist": "deterministic", "value": 1.0}, "shed_expired": shed}],
        duration=20,
        warmup=0,
    )


def test_deadline_shedding_skips_work_nobody_waits_for():
    # at 13 s the worker finds the last two expired (deadline 12.5 s) and skips both at once
    shed = run(five_at_once(True), replications=1, jobs=1).summary()
    client = shed["clients"]["five"]
    assert client["succeeded"]["mean"] == 2 and client["timeouts"]["mean"] == 3
    assert client["wasted"]["mean"] == 1 and client["shed"]["mean"] == 2
    assert shed["workers"]["w"]["shed"]["mean"] == 2
    assert shed["workers"]["w"]["completed"]["mean"] == 3
    assert shed["counts"]["processed"] == 2 and shed["counts"]["rejected"] == 3
    assert shed["ok"]
    # without shedding the worker does all five: three of them for nobody
    kept = run(five_at_once(False), replications=1, jobs=1).summary()
    assert kept["clients"]["five"]["wasted"]["mean"] == 3 and kept["workers"]["w"]["completed"]["mean"] == 5
    assert kept["clients"]["five"]["latency_s"]["p99"]["mean"] == pytest.approx(2.0, rel=0.02)
    assert kept["ok"]


def test_shedding_never_skips_messages_without_a_deadline():
    result = run(scenario(workers=[{"name": "w", "consumes": "q", "count": 4, "service_time": {"dist": "exponential", "mean": 0.5},
                                    "shed_expired": True}]), replications=1, jobs=1)
    assert result.estimate("workers.w.shed").mean == 0
    assert result.counts()["processed"] == result.counts()["produced"] - result.counts()["in_flight"]


# --- triggers ----------------------------------------------------------------------------------------------


def test_a_spike_multiplies_the_arrival_rate_for_its_duration_only():
    result = run(scenario(
        producers=[{"name": "app", "arrivals": {"process": "poisson", "rate": 20.0}, "sends_to": "q",
                    "spike": {"at": "100s", "duration": "50s", "rate_multiplier": 4}}],
        workers=[{"name": "w", "consumes": "q", "count": 20, "service_time": {"dist": "exponential", "mean": 0.1}}],
        duration=200, warmup=0,
    ), replications=4)
    table = result.timeseries
    offered = table[table["series"] == "system.offered_unique_per_s"]
    during = offered[(offered["t_s"] > 101) & (offered["t_s"] < 149)]["value"].mean()
    outside = offered[(offered["t_s"] < 99) | (offered["t_s"] > 151)]["value"].mean()
    assert during == pytest.approx(80.0, rel=0.03) and outside == pytest.approx(20.0, rel=0.03)
    # 20/s for 200 s plus 3 × 20/s for 50 s
    assert result.counts()["produced"] / 4 == pytest.approx(20 * 200 + 60 * 50, rel=0.02)
    assert result.ok


def test_service_slows_down_with_concurrency_and_in_a_slowdown_window():
    # always 4 busy (an overloaded bounded queue): each service is 100 ms + 3 × 20 ms for the
    # other three in service, and twice that from 100 s to 200 s
    result = run(scenario(
        producers=[{"name": "app", "arrivals": {"process": "poisson", "rate": 100.0}, "sends_to": "q"}],
        brokers=[{"name": "q", "kind": "fifo", "capacity": 20}],
        workers=[{"name": "w", "consumes": "q", "count": 4, "service_time": {"dist": "deterministic", "value": 0.1},
                  "slowdown": {"per_concurrent": "20ms"}}],
        duration=100, warmup=10,
    ), replications=1, jobs=1)
    assert result.estimate("workers.w.service_s.mean").mean == pytest.approx(0.16, rel=0.01)
    windowed = run(scenario(
        producers=[{"name": "app", "arrivals": {"process": "deterministic", "rate": 1.0}, "sends_to": "q"}],
        workers=[{"name": "w", "consumes": "q", "count": 1, "service_time": {"dist": "deterministic", "value": 0.25},
                  "slowdown": {"from": "100s", "until": "200s", "factor": 2}}],
        duration=300, warmup=0,
    ), replications=1, jobs=1)
    # 100 of the 299 messages are served in 0.5 s, the others in 0.25 s
    assert windowed.estimate("workers.w.service_s.mean").mean == pytest.approx((100 * 0.5 + 199 * 0.25) / 299, rel=1e-6)
    assert windowed.ok and result.ok


def test_a_capacity_loss_takes_workers_away_for_its_period_and_they_finish_their_work():
    spec = scenario(
        workers=[{"name": "w", "consumes": "q", "count": 4, "service_time": {"dist": "exponential", "mean": 0.5},
                  "capacity_loss": {"from": "600s", "until": "1100s", "workers": 2}}],
    )
    result = run(spec, replications=2, jobs=1)
    # 4 workers for 1,400 s of the 1,900 s window, 2 for 500 s (each finishing its message first)
    assert result.estimate("workers.w.count_mean").mean == pytest.approx((4 * 1400 + 2 * 500) / 1900, rel=0.002)
    counts = result.counts()
    assert counts["lost"] == 0  # a fifo loses what a crashing worker holds: leaving gracefully loses nothing
    series = result.timeseries
    count = series[series["series"] == "workers.w.count"]
    assert count[(count["t_s"] > 650) & (count["t_s"] < 1050)]["value"].max() == pytest.approx(2.0)
    assert result.recovery()["recovered_replications"] == 2
    assert result.ok


def test_time_to_recover_on_made_up_series():
    bins, width = 200, 1.0
    offered = np.full(bins, 100.0)
    depth = np.ones(bins)
    failed = np.zeros(bins)
    failed[50:90] = 100.0  # trigger 50–60 s, the cohorts made from 90 s on are served again
    depth[50:90] = 500.0
    assert time_to_recover(failed, offered, depth, width, 10.0, (50.0, 60.0)) == pytest.approx(30.0)
    depth[150:160] = 500.0  # a relapse: it has recovered only once that is over too
    assert time_to_recover(failed, offered, depth, width, 10.0, (50.0, 60.0)) == pytest.approx(100.0)
    failed[195:] = 100.0  # never normal up to the end: did not recover
    assert np.isnan(time_to_recover(failed, offered, depth, width, 10.0, (50.0, 60.0)))
    assert np.isnan(time_to_recover(failed, offered, depth, width, 49.0, (50.0, 60.0)))  # no pre-trigger baseline
    # 9% of every cohort failing is normal; a system that never left normal recovered at the trigger's end
    assert time_to_recover(np.full(bins, 9.0), offered, np.ones(bins), width, 10.0, (50.0, 60.0)) == 0.0


def clockwork_spike(**producer):
    # deterministic arrivals 10/s, tripled for 10 s at t = 100 s; one worker of 50 ms (20/s): the
    # queue grows by 10 a second to 100 at 110 s, then drains by 10 a second, empty at 120 s
    return scenario(
        duration=200, warmup=20,
        producers=[{"name": "app", "arrivals": {"process": "deterministic", "rate": 10.0}, "sends_to": "q",
                    "spike": {"at": "100s", "duration": "10s", "rate_multiplier": 3}, **producer}],
        workers=[{"name": "w", "consumes": "q", "count": 1, "service_time": {"dist": "deterministic", "value": 0.05}}],
    )


def test_recovery_is_when_the_queue_the_cohorts_find_is_back_to_normal():
    # 1-second bins judged over 10-second windows, against a pre-trigger depth of 0 (+ 1 message):
    # the bins from 110 + i s hold about 95 − 10i waiting on average, so the window from 118 s
    # averages (15 + 5) / 10 = 2 and the one from 119 s 0.5: recovered 9 s after the spike ended,
    # with nothing lost or late in any replication, and goodput (by cohort) every request made
    result = run(clockwork_spike(), replications=2, jobs=1)
    assert [r.metrics["system.recovery_s"] for r in result.results] == pytest.approx([9.0, 9.0])
    assert result.recovery()["verdict"].startswith("recovered 9 s")
    assert result.estimate("system.goodput_per_s").mean == pytest.approx(result.counts()["processed"] / 2 / 180)  # counts: both replications
    table = result.timeseries
    goodput = table[table["series"] == "system.goodput_per_s"].groupby("t_s")["value"].mean()
    offered = table[table["series"] == "system.offered_unique_per_s"].groupby("t_s")["value"].mean()
    assert (goodput[goodput.index < 199] == offered[offered.index < 199]).all()  # every cohort made it (the last: in flight)


def test_goodput_counts_each_request_in_the_cohort_it_was_made_in():
    # two a second, one worker of 0.75 s, no room to wait: every other request is refused, so
    # each bin's cohort has half its requests succeed, at the time they were made
    spec = scenario(
        duration=100, warmup=10,
        producers=[{"name": "app", "arrivals": {"process": "deterministic", "rate": 2.0}, "sends_to": "q"}],
        brokers=[{"name": "q", "kind": "fifo", "capacity": 0}],
        workers=[{"name": "w", "consumes": "q", "count": 1, "service_time": {"dist": "deterministic", "value": 0.75}}],
    )
    result = run(spec, replications=1, jobs=1)
    table = result.timeseries
    rows = table[table["series"] == "system.goodput_per_s"]
    offered = table[table["series"] == "system.offered_unique_per_s"]
    inside = (rows["t_s"] > 11) & (rows["t_s"] < 99)
    assert rows[inside]["value"].to_numpy() == pytest.approx(offered[inside.to_numpy()]["value"].to_numpy() / 2, abs=1 / 0.5)
    assert result.estimate("system.goodput_per_s").mean == pytest.approx(result.counts()["processed"] / 90)
    assert result.counts()["processed"] == pytest.approx(result.counts()["produced"] / 2, abs=1)


# --- the stability check and bad input ------------------------------------------------------------------------


OVERLOADED = [{"name": "app", "arrivals": {"process": "poisson", "rate": 10.0}, "sends_to": "q"}]


def test_an_unbounded_unstable_queue_is_refused_even_with_retries():
    with pytest.raises(ScenarioError, match="unstable: offered load 10/s ≥ capacity 8/s"):
        scenario(producers=[{**OVERLOADED[0], "timeout": "1s", "retry": {"policy": "full_jitter", "base": "1s"}}])
    with pytest.raises(ScenarioError, match="unstable"):  # shedding does not bound a producer's messages without deadlines
        scenario(producers=OVERLOADED, workers=[{"name": "w", "consumes": "q", "count": 4, "service_time": {"dist": "exponential", "mean": 0.5},
                                                 "shed_expired": True}])


@pytest.mark.parametrize("bound", [
    {"admission": [{"name": "gate", "in_front_of": "q", "max_queue": 100}]},
    {"admission": [{"name": "gate", "in_front_of": "w", "max_wait": "2s"}]},
    {"admission": [{"name": "gate", "in_front_of": "q", "rate_limit": {"rate": "7/s", "burst": 5}}]},
    {"brokers": [{"name": "q", "kind": "fifo", "capacity": 50}]},
    {"producers": [{**OVERLOADED[0], "timeout": "1s"}],
     "workers": [{"name": "w", "consumes": "q", "count": 4, "service_time": {"dist": "exponential", "mean": 0.5}, "shed_expired": True}]},
    {"workers": [{"name": "w", "consumes": "q", "count": 4, "service_time": {"dist": "exponential", "mean": 0.5},
                  "autoscaling": {"target_backlog_per_worker": 5, "min": 2, "max": 8}}]},
], ids=["max_queue", "max_wait", "rate limit below capacity", "broker capacity", "shedding with timeouts", "autoscaling max"])
def test_overload_that_something_bounds_is_accepted(bound):
    scenario(**{"producers": OVERLOADED, **bound})


def test_shedding_does_not_bound_a_queue_that_untimed_messages_reach_through_a_dual_write():
    timed = {**OVERLOADED[0], "name": "timed", "timeout": "1s", "arrivals": {"process": "poisson", "rate": 2.0}}
    untimed = {**OVERLOADED[0], "name": "untimed", "sends_to": "dw"}
    shedding = [{"name": "w", "consumes": "q", "count": 4, "service_time": {"dist": "exponential", "mean": 0.5}, "shed_expired": True}]
    dual_write = [{"name": "dw", "database": {"commit_time": "1ms"}, "publishes_to": "q"}]
    with pytest.raises(ScenarioError, match="unstable: offered load 12/s ≥ capacity 8/s"):
        scenario(producers=[timed, untimed], workers=shedding, dual_write=dual_write)


def test_a_rate_limit_above_capacity_does_not_bound_the_queue():
    with pytest.raises(ScenarioError, match="unstable"):
        scenario(producers=OVERLOADED, admission=[{"name": "gate", "in_front_of": "q", "rate_limit": {"rate": "9/s", "burst": 5}}])


@pytest.mark.parametrize("change, where, message", [
    ({"producers": [{**OVERLOADED[0], "rate": 1}]}, "producers.app.rate", "unknown key 'rate'"),
    ({"producers": [{"name": "app", "arrivals": {"process": "poisson", "rate": 1.0}, "sends_to": "q", "retry": {"policy": "full_jitter"}}]},
     "producers.app.retry.base", "required"),
    ({"producers": [{"name": "app", "arrivals": {"process": "poisson", "rate": 1.0}, "sends_to": "q",
                     "retry": {"policy": "exponential", "base": "2s", "cap": "1s"}}]}, "producers.app.retry", "cap (1s) must not be below base (2s)"),
    ({"producers": [{"name": "app", "arrivals": {"process": "poisson", "rate": 1.0}, "sends_to": "q", "retry_budget": True}]},
     "producers.app", "there is no retry policy"),
    ({"producers": [{"name": "app", "arrivals": {"process": "poisson", "rate": 1.0}, "sends_to": "q",
                     "spike": {"at": "1h", "duration": "5s", "rate_multiplier": 3}}]}, "producers.app.spike.at", "after the run ends"),
    ({"workers": [{"name": "w", "consumes": "q", "count": 4, "service_time": {"dist": "exponential", "mean": 0.5},
                   "capacity_loss": {"from": "10s", "until": "5s", "workers": 1}}]}, "workers.w.capacity_loss", "must come after from"),
    ({"workers": [{"name": "w", "consumes": "q", "count": 4, "service_time": {"dist": "exponential", "mean": 0.5},
                   "capacity_loss": {"form": "10s", "until": "20s", "workers": 1}}]}, "workers.w.capacity_loss.form", "did you mean 'from'?"),
    ({"workers": [{"name": "w", "consumes": "q", "count": 4, "service_time": {"dist": "exponential", "mean": 0.5},
                   "autoscaling": {"target_utilization": 0.7, "min": 5, "max": 8}}]}, "workers.w", "must lie within autoscaling min (5)"),
    ({"clients": [{"name": "users", "count": 3, "think_time": "1s", "sends_to": "qq"}]}, "clients.users.sends_to", "'qq' is not a broker"),
    ({"admission": [{"name": "gate", "in_front_of": "q"}]}, "admission.gate", "give max_queue, max_wait or rate_limit"),
    ({"admission": [{"name": "w", "in_front_of": "q", "max_queue": 3}]}, "admission.w.name", "already used in workers"),
    ({"producers": []}, "", "producers is empty"),
])
def test_bad_input_is_named_by_field(change, where, message):
    with pytest.raises(ScenarioError) as caught:
        scenario(**change)
    problems = caught.value.problems
    assert any(p.path == where and message in p.message for p in problems), [(p.path, p.message) for p in problems]
