"""Estimates a capacity planner can trust: the quantile sketch's error bound, pooled quantiles,
intervals that stay inside what a metric can be, one replication's batch means, and the
warnings about split outcomes, short windows and short warm-ups."""

from __future__ import annotations

import math

import numpy as np
import pytest

from sim import run, scenario_from_dict
from sim.estimates import (batches_of, bounded, degrees_of_freedom, disagreeing, distribution_estimate, excess_kurtosis, pooled_estimate,
                           proportion_estimate, sectioned)
from sim.sketch import RELATIVE_ACCURACY, Distribution, Sketch
from sim.stats import Estimate, t_quantile
from sim.warmup import mser5_truncation


def queue(rate=0.5, duration=2_000.0, warmup=200.0, workers=1, service=None, seed=1, **extra):
    """M/M/c (exponential service of mean 1 s unless told) behind one FIFO broker."""
    return scenario_from_dict({
        "name": "mmc", "seed": seed, "duration": duration, "warmup": warmup,
        "producers": [{"name": "p", "arrivals": {"process": "poisson", "rate": rate}, "sends_to": "q"}],
        "brokers": [{"name": "q", "kind": "fifo"}],
        "workers": [{"name": "w", "consumes": "q", "count": workers,
                     "service_time": service or {"dist": "exponential", "mean": 1.0}}],
        **extra,
    })


# --- the sketch ---------------------------------------------------------------------------------


def test_every_quantile_of_the_sketch_is_within_its_relative_accuracy_of_the_exact_one():
    rng = np.random.default_rng(3)
    values = np.concatenate([rng.lognormal(-3, 2.5, 200_000), np.zeros(1_000), rng.pareto(1.2, 5_000) * 1e3])
    sketch = Sketch(0.0, 1.0)
    sketch.add_block(values, rng.uniform(0, 1, values.size))
    d = sketch.distribution()
    assert d.count == values.size and d.mean == pytest.approx(values.mean(), rel=1e-12)  # sums are exact
    for q in np.linspace(0, 1, 1001):
        exact = float(np.quantile(values, q))
        assert abs(d.quantile(q) - exact) <= RELATIVE_ACCURACY * exact * (1 + 1e-9)


def test_a_quantile_read_within_buckets_moves_with_q_inside_a_bucket_and_stays_within_its_width():
    rng = np.random.default_rng(3)
    values = np.concatenate([rng.lognormal(-3, 2.5, 200_000), np.zeros(1_000), rng.pareto(1.2, 5_000) * 1e3])
    d = Distribution.of(values)
    for q in np.linspace(0, 1, 1001):
        exact = float(np.quantile(values, q))
        assert abs(d.quantile_within_buckets(q) - exact) <= 2 * RELATIVE_ACCURACY * exact * (1 + 1e-9)
    # 100,000 exponential values: p99 and p99.01 share a bucket (its value), but not a reading within it
    e = Distribution.of(rng.exponential(1.0, 100_000))
    assert e.quantile(0.99) == e.quantile(0.9901)
    assert e.quantile_within_buckets(0.99) < e.quantile_within_buckets(0.9901)


def test_merged_sketches_hold_what_one_sketch_of_all_the_values_holds():
    rng = np.random.default_rng(4)
    parts = [rng.exponential(1.0, n) for n in (10, 1_000, 50_000)]
    merged = Distribution.merged([Distribution.of(p, sections=3) for p in parts])
    whole = Distribution.of(np.concatenate(parts))
    for q in (0.0, 0.5, 0.99, 0.999, 1.0):
        assert merged.quantile(q) == whole.quantile(q)
    assert merged.count == whole.count and merged.mean == pytest.approx(whole.mean, rel=1e-12)


def test_values_are_sectioned_by_the_time_they_were_recorded():
    sketch = Sketch(100.0, 300.0, sections=4)  # 50 s a section
    for now, value in [(90.0, 1.0), (120.0, 2.0), (149.9, 3.0), (150.0, 4.0), (299.0, 5.0), (400.0, 6.0)]:
        sketch.add(value, now)
    d = sketch.distribution()
    assert list(d.counts.sum(axis=1)) == [3, 1, 0, 2]  # before the window: first; after it: last
    assert list(d.sums) == [6.0, 4.0, 0.0, 11.0]


# --- how each kind of metric is estimated -------------------------------------------------------


def ratio_half(parts, wholes):
    parts, wholes = np.asarray(parts, dtype=float), np.asarray(wholes, dtype=float)
    n, ratio = parts.size, parts.sum() / wholes.sum()
    return t_quantile(n - 1) * math.sqrt(((parts - ratio * wholes) ** 2).sum() / (n * (n - 1) * wholes.mean() ** 2))


def test_a_quantile_is_read_from_the_pooled_values_with_woodruffs_interval():
    rng = np.random.default_rng(5)
    values = [rng.exponential(1.0, n) for n in (500, 2_000, 8_000)]
    runs = [Distribution.of(v) for v in values]
    estimate, note = distribution_estimate(runs, "p99")
    pooled = Distribution.merged(runs)
    point = pooled.quantile(0.99)
    assert note is None and estimate.n == 3
    assert estimate.mean == point != np.mean([d.quantile(0.99) for d in runs])
    # the share of each run's values at or below the pooled p99, a ratio over runs, and its interval
    below = [np.sum(v <= point * (1 + RELATIVE_ACCURACY)) for v in values]
    h = ratio_half(below, [v.size for v in values])
    bounds = (pooled.quantile_within_buckets(0.99 - h), pooled.quantile_within_buckets(0.99 + h))
    assert (estimate.low, estimate.high) == pytest.approx(bounds)
    assert estimate.low < point < estimate.high


def test_a_mean_is_the_pooled_ratio_with_the_ratio_estimators_interval():
    rng = np.random.default_rng(8)
    values = [rng.exponential(2.0, n) for n in (300, 3_000, 1_000, 700)]
    estimate, _ = distribution_estimate([Distribution.of(v) for v in values], "mean")
    pooled = np.concatenate(values).mean()
    h = ratio_half([v.sum() for v in values], [v.size for v in values])
    assert (estimate.mean, estimate.low, estimate.high) == pytest.approx((pooled, pooled - h, pooled + h))


def test_no_message_lost_in_any_replication_is_still_an_interval_above_zero():
    # the binomial floor: 0 of 30,000 is [0, z²/(n + z²)] (Wilson), not [0, 0]
    estimate = proportion_estimate([0, 0, 0], [10_000, 10_000, 10_000])
    z = t_quantile(math.inf)
    assert estimate.mean == 0 and estimate.low == 0
    assert estimate.high == pytest.approx(z * z / (30_000 + z * z))


def test_a_proportion_that_varies_between_replications_is_widened_by_the_design_effect_and_stays_in_0_1():
    parts, wholes = [0, 0, 5_000, 0], [10_000, 10_000, 10_000, 10_000]  # one replication lost half
    estimate = proportion_estimate(parts, wholes)
    naive_half = 1.96 * math.sqrt(0.125 * 0.875 / 40_000)
    assert estimate.mean == 0.125 and 0 <= estimate.low < estimate.high <= 1
    assert estimate.high - estimate.low > 20 * naive_half  # the messages were not independent
    # the average of the four ratios with a t interval leaves [0, 1]
    t = mean_t_interval([p / n for p, n in zip(parts, wholes)])
    assert t.low < 0


def mean_t_interval(values) -> Estimate:
    from sim.stats import mean_ci

    return mean_ci(values)


def test_bounds_stay_inside_what_the_metric_can_be():
    wide = Estimate(0.2, -1.17, 4.27, 3)
    assert bounded(wide, "system.latency_s.p99") == Estimate(0.2, 0.0, 4.27, 3)
    assert bounded(wide, "workers.w.utilization") == Estimate(0.2, 0.0, 1.0, 3)
    assert bounded(wide, "system.duplicates_rate") == Estimate(0.2, 0.0, 4.27, 3)  # per processed: can pass 1
    result = run(queue(rate=0.3, duration=300, warmup=30), replications=3, jobs=1)
    for metric in result.metric_names():
        estimate = result.estimate(metric)
        if estimate.low is not None:
            assert estimate.low >= 0, metric


# --- one replication ----------------------------------------------------------------------------


def test_one_long_replication_gets_batch_means_intervals_that_hold_the_exact_values():
    # M/M/1 at ρ = 0.5: mean sojourn 2 s, p99 2·ln 100 = 9.21 s, throughput 0.5/s
    result = run(queue(rate=0.5, duration=40_000, warmup=500), replications=1, jobs=1)
    for metric, exact in [("system.latency_s.mean", 2.0), ("system.latency_s.p99", 2 * math.log(100)),
                          ("system.throughput_per_s", 0.5)]:
        estimate = result.estimate(metric)
        assert estimate.n in (20, 10, 5) and estimate.contains(exact), (metric, estimate)
        assert result.estimate_note(metric) is None
    assert not any("one replication" in w for w in result.warnings())


def test_one_short_replication_says_why_its_p999_has_no_trustworthy_interval():
    result = run(queue(rate=0.5, duration=600, warmup=60, slo={"latency_p999": "30s"}), replications=1, jobs=1)
    assert "fewer than 10,000 values in some batch" in result.estimate_note("system.latency_s.p999")
    assert any(w.startswith("system.latency_s.p999: fewer than") for w in result.warnings())


def test_batches_are_joined_until_their_means_are_not_correlated():
    rng = np.random.default_rng(6)
    times = np.linspace(0, 100, 20_000, endpoint=False)

    def batching(values):
        sketch = Sketch(0.0, 100.0)
        sketch.add_block(values, times)
        return batches_of(sketch.distribution(), "mean")

    noise, note = batching(2 + rng.normal(0, 0.5, times.size))
    assert noise.sections == 20 and note is None
    # a drift across the window: 20 and 10 batch means are correlated at lag 1, 5 pass the test
    drift, note = batching(2 + times / 50 + rng.normal(0, 0.5, times.size))
    assert drift.sections == 5 and note is None


def test_an_slo_on_a_metric_without_an_interval_is_uncertain_not_met():
    result = run(queue(rate=0.2, duration=300, warmup=30, slo={"max_loss_rate": 0.5}), replications=1, jobs=1)
    assert result.estimate("system.lost_rate").low is None  # messages of one run are not independent
    assert result.slo_report()["max_loss_rate"]["status"] == "uncertain"


# --- warnings -----------------------------------------------------------------------------------


def test_replications_far_from_the_rest_are_named():
    assert disagreeing([1.0, 1.1, 0.9, 50.0]) == [3]
    assert disagreeing([1.0, 1.1, 1.2, 0.95]) == []
    assert disagreeing([0.0, 0.0, 0.0]) == []
    assert disagreeing([0.0, 0.0, 0.3, 0.0]) == [2]


def test_a_window_short_against_the_correlation_time_is_reported_and_no_percentile_objective_is_met_on_it():
    # M/M/1 at ρ = 0.9: the number in the system stays correlated for 2(1 + ρ)/(1 − ρ)² = 380 s,
    # and 10 windows of 32.5 min bias the latency's tail low; an objective 10× the exact p99
    # (46 s) is still not called met on such windows
    slo = {"slo": {"latency_p99": 460.0}}
    result = run(queue(rate=0.9, duration=2_000, warmup=50, **slo), replications=10, jobs=1)
    [warning] = [w for w in result.warnings() if w.startswith("the window")]
    assert "is short for the latency's tail" in warning and "would do" in warning
    verdict = result.slo_report()["latency_p99"]
    assert result.estimate("system.latency_s.p99").high < 460.0
    assert verdict["status"] == "uncertain" and "short" in verdict["note"]
    long_enough = run(queue(rate=0.5, duration=3_000, warmup=100, **slo), replications=5, jobs=1)
    assert not [w for w in long_enough.warnings() if w.startswith("the window")]
    assert long_enough.slo_report()["latency_p99"]["status"] == "met"


def test_mser5_finds_the_end_of_a_transient_and_no_steady_state_in_a_trend():
    rng = np.random.default_rng(7)
    start_up = np.concatenate([np.linspace(0, 10, 40), 10 + rng.normal(0, 1, 160)])
    assert 30 <= mser5_truncation(start_up) <= 50
    assert mser5_truncation(np.arange(200.0)) is None


def test_a_warm_up_shorter_than_the_start_up_is_reported():
    # 100 workers of mean 100 s at 0.9/s fill from empty as an M/M/∞ does, 90·(1 − e^(−t/100 s)):
    # the number in the system takes some 5 minutes to settle
    slow = {"dist": "exponential", "mean": 100.0}
    result = run(queue(rate=0.9, duration=3_000, warmup=0, workers=100, service=slow), replications=4, jobs=1)
    [warning] = [w for w in result.warnings() if w.startswith("the start-up transient")]
    assert "longer than the warm-up of 0s" in warning
    settled = run(queue(rate=0.9, duration=3_000, warmup=600, workers=100, service=slow), replications=4, jobs=1)
    assert not [w for w in settled.warnings() if w.startswith("the start-up transient")]


def test_sectioning_with_one_value_gives_no_interval():
    assert sectioned(3.0, [3.0]) == Estimate(3.0, None, None, 1)


# --- warmup: auto -------------------------------------------------------------------------------


def test_warmup_auto_deletes_the_start_up_backlog_and_reports_what_it_chose():
    # one message every 2 s served in 1 s; for the first 100 s three times as many arrive, so a
    # backlog of 50 builds and drains at 0.5/s: latencies are back to 1 s from t = 200 s on
    spec = queue(rate=0.5, duration=2_000, warmup="auto", service={"dist": "deterministic", "value": 1.0})
    data = spec.model_dump(by_alias=True, exclude_none=True)
    data["producers"][0]["arrivals"] = {"process": "deterministic", "rate": 0.5}
    data["producers"][0]["spike"] = {"at": 0.0, "duration": 100.0, "rate_multiplier": 3.0}
    result = run(scenario_from_dict(data), replications=2, jobs=1)
    summary = result.summary()
    assert summary["warmup"]["rule"].startswith("MSER-5")
    for chosen in summary["warmup"]["chosen_s"]:
        assert 195 <= chosen <= 215
    assert summary["warmup_s"] == max(summary["warmup"]["chosen_s"]) and summary["window_s"] == 2_000 - summary["warmup_s"]
    assert result.estimate("system.latency_s.p999").mean == pytest.approx(1.0, rel=RELATIVE_ACCURACY)
    assert summary["ok"]


def test_warmup_auto_says_when_a_replication_never_settles():
    # a spike that lasts the whole run at 1.5/s on a 1/s server: the backlog grows all run
    data = queue(rate=0.5, duration=1_000, warmup="auto").model_dump(by_alias=True, exclude_none=True)
    data["producers"][0]["arrivals"] = {"process": "deterministic", "rate": 0.5}
    data["workers"][0]["service_time"] = {"dist": "deterministic", "value": 1.0}
    data["producers"][0]["spike"] = {"at": 0.0, "duration": 1_000.0, "rate_multiplier": 3.0}
    result = run(scenario_from_dict(data), replications=1, jobs=1)
    assert result.results[0].warmup_s == 500 and not result.results[0].steady
    assert any(w.startswith("warmup auto: MSER-5 found no steady state") for w in result.warnings())


def test_a_warmup_that_is_neither_a_duration_nor_auto_is_refused_with_its_line():
    from sim import ScenarioError, load_scenario_text

    text = "name: x\nduration: 100s\nwarmup: soon\nproducers: []\nbrokers: []\nworkers: []\n"
    with pytest.raises(ScenarioError, match=r":3: warmup: expected a duration such as"):
        load_scenario_text(text, "x.yaml")


def test_a_rate_objective_of_zero_is_met_by_none_observed_and_not_met_by_one():
    # an unbounded queue rejects nothing: 0 of some 3 × 950 messages, met (the interval's floor
    # would leave it uncertain for ever); a capacity-1 broker in front of one slow worker rejects some
    slo = {"slo": {"max_rejection_rate": 0}}
    none = run(queue(rate=0.5, duration=2_000, warmup=100, **slo), replications=3, jobs=1).slo_report()["max_rejection_rate"]
    assert none["status"] == "met" and none["mean"] == 0 and none["ci95"][1] > 0
    assert none["note"].startswith("a target of 0: none observed in 2,")
    full = queue(rate=0.5, duration=2_000, warmup=100, **slo)
    full.brokers[0] = full.brokers[0].model_copy(update={"capacity": 1})
    some = run(full, replications=3, jobs=1).slo_report()["max_rejection_rate"]
    assert some["status"] == "not met" and some["mean"] > 0 and "some observed" in some["note"]


def test_the_variance_of_a_sample_variance_grows_with_the_kurtosis_as_the_degrees_of_freedom_assume():
    # Var(s²)/σ⁴ = 2/(n − 1) + κ/n: 100,000 samples of 10 exponential values (κ = 6) give 0.822,
    # the variance of a χ² with ν = degrees_of_freedom(10, 6) = 2.43 degrees scaled to mean 1
    samples = np.random.default_rng(5).exponential(1.0, (100_000, 10))
    relative = samples.var(axis=1, ddof=1)
    spread = np.var(relative, ddof=1)
    standard_error = spread * math.sqrt(2 / relative.size) * 3  # a fourth-moment estimate: generous
    assert abs(spread - (2 / 9 + 6 / 10)) < 3 * standard_error
    assert 2 / degrees_of_freedom(10, 6.0) == pytest.approx(2 / 9 + 6 / 10)
    assert degrees_of_freedom(10, 0.0) == 9 and degrees_of_freedom(95, 0.0) == 94 and degrees_of_freedom(3, 100.0) == 1
    assert excess_kurtosis(samples[:, 0] - samples[:, 0].mean()) == pytest.approx(6.0, abs=0.6)
    assert excess_kurtosis(np.random.default_rng(6).normal(0, 1, 100_000)) < 0.05


def test_windows_whose_tail_comes_in_few_episodes_get_fewer_degrees_of_freedom(monkeypatch):
    # ten windows alike below 10 s; two of them hold all 200 values above (two congestion
    # episodes): the residuals' kurtosis is high, so the interval is wider than t(9) would make it
    rng = np.random.default_rng(7)
    windows = [Distribution.of(np.concatenate([rng.uniform(0.1, 10, 1_980), rng.uniform(10, 20, k)]), 20) for k in [100, 100] + [0] * 8]
    episodic = pooled_estimate(windows, "p99")
    monkeypatch.setattr("sim.estimates.degrees_of_freedom", lambda n, kurtosis: n - 1)
    normal = pooled_estimate(windows, "p99")
    assert episodic.mean == normal.mean and episodic.low < normal.low and episodic.high >= normal.high  # (the top: the largest value)
