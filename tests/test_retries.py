"""Client retries: the backoff formulas, the retry budget, timeouts that duplicate work, waves of
synchronized retries, the retry storm, closed-loop clients — each against a figure derived by
hand or from theory, with every run's Little's law and conservation checks.
"""

import math

import numpy as np
import pytest
from scipy import stats

from models.retry import (DecorrelatedJitterBackoff, EqualJitterBackoff, ExponentialBackoff, FixedBackoff, FullJitterBackoff,
                          RetryBudget)
from sim import analytic, load_scenario, run, scenario_from_dict
from sim.distributions import Sampler, Uniform
from sim.sketch import RELATIVE_ACCURACY

DRAWS = 20_000


def uniform_draws(seed=1):
    return Sampler(Uniform(0.0, 1.0), np.random.default_rng(seed))


# --- the backoff formulas (AWS, "Exponential Backoff and Jitter") -------------------------------


def test_exponential_backoff_doubles_up_to_the_cap():
    backoff = ExponentialBackoff(base_s=0.1, cap_s=1.0)
    assert [backoff.delay(n, None) for n in range(6)] == pytest.approx([0.1, 0.2, 0.4, 0.8, 1.0, 1.0])
    assert backoff.delay(5000, None) == 1.0  # no overflow for absurd retry numbers
    assert FixedBackoff(0.3).delay(7, 2.0) == 0.3


@pytest.mark.parametrize("n", [0, 3, 6])
def test_full_jitter_is_uniform_between_zero_and_the_capped_exponential(n):
    backoff = FullJitterBackoff(base_s=0.1, cap_s=5.0, uniform=uniform_draws())
    v = min(5.0, 0.1 * 2**n)
    draws = np.array([backoff.delay(n, None) for _ in range(DRAWS)])
    assert draws.min() >= 0 and draws.max() <= v
    # the mean is half the capped exponential: within 4 standard errors of a uniform's mean
    assert abs(draws.mean() - v / 2) < 4 * v / math.sqrt(12 * DRAWS)
    assert stats.kstest(draws, stats.uniform(0, v).cdf).pvalue > 0.001


@pytest.mark.parametrize("n", [0, 4])
def test_equal_jitter_keeps_half_and_jitters_the_other_half(n):
    backoff = EqualJitterBackoff(base_s=0.2, cap_s=2.0, uniform=uniform_draws(2))
    v = min(2.0, 0.2 * 2**n)
    draws = np.array([backoff.delay(n, None) for _ in range(DRAWS)])
    assert draws.min() >= v / 2 and draws.max() <= v
    assert abs(draws.mean() - 0.75 * v) < 4 * (v / 2) / math.sqrt(12 * DRAWS)
    assert stats.kstest(draws, stats.uniform(v / 2, v / 2).cdf).pvalue > 0.001


def test_decorrelated_jitter_draws_between_base_and_three_times_the_last_delay_capped():
    base, cap = 0.1, 1.0
    backoff = DecorrelatedJitterBackoff(base_s=base, cap_s=cap, uniform=uniform_draws(3))
    first = np.array([backoff.delay(0, None) for _ in range(DRAWS)])  # previous = base: uniform(base, 3 base)
    assert stats.kstest(first, stats.uniform(base, 2 * base).cdf).pvalue > 0.001
    after = np.array([backoff.delay(1, 0.25) for _ in range(DRAWS)])  # uniform(0.1, 0.75), below the cap
    assert after.min() >= base and after.max() <= 0.75
    assert stats.kstest(after, stats.uniform(base, 0.75 - base).cdf).pvalue > 0.001
    capped = np.array([backoff.delay(2, 0.9) for _ in range(DRAWS)])  # uniform(0.1, 2.7) capped at 1
    assert capped.max() == cap
    assert np.mean(capped == cap) == pytest.approx((2.7 - 1.0) / (2.7 - 0.1), abs=0.02)
    # a chain of delays never leaves [base, cap]
    previous = None
    for n in range(200):
        previous = backoff.delay(n, previous)
        assert base <= previous <= cap


# --- the retry budget ---------------------------------------------------------------------------


def test_retry_budget_has_the_aws_sdk_defaults_stops_when_empty_and_refills_on_success():
    budget = RetryBudget()
    assert (budget.tokens, budget.retry_cost, budget.timeout_retry_cost, budget.success_refund) == (500, 5, 10, 1)
    assert sum(budget.acquire(after_timeout=True) for _ in range(60)) == 50  # 500 / 10
    assert budget.tokens == 0 and budget.refused == 10
    for _ in range(4):
        budget.refund()
    assert not budget.acquire(after_timeout=False)  # 4 tokens < 5
    budget.refund()
    assert budget.acquire(after_timeout=False) and budget.tokens == 0
    for _ in range(1000):
        budget.refund()
    assert budget.tokens == 500  # never beyond the initial capacity


def slow_service(**client):
    """Requests every 10 s to one worker that takes 3 s: with a 2 s timeout none ever succeeds."""
    return scenario_from_dict({
        "name": "slow",
        "seed": 1,
        "duration": 2_000,
        "producers": [{"name": "app", "arrivals": {"process": "deterministic", "rate": 0.1}, "sends_to": "q", "timeout": "2s", **client}],
        "brokers": [{"name": "q", "kind": "fifo"}],
        "workers": [{"name": "w", "consumes": "q", "count": 1, "service_time": {"dist": "deterministic", "value": 3.0}}],
    })


def test_an_empty_budget_stops_retries():
    # every attempt times out, so no success ever refunds: 500 tokens pay exactly 50 retries after
    # a timeout (10 each); later requests get one attempt each
    scenario = slow_service(retry={"policy": "fixed", "base": "100ms", "max_attempts": 2}, retry_budget=True)
    result = run(scenario, replications=1, jobs=1)
    client = result.summary()["clients"]["app"]
    counts = result.counts()
    assert client["retries"]["mean"] == 50
    assert client["rejected_timed_out"]["mean"] == 50  # the 50 retried requests timed out twice
    assert client["rejected_budget"]["mean"] == counts["produced"] - 50 - counts["in_flight"]
    assert client["budget_tokens_at_end"]["mean"] == 0
    assert result.ok


# --- timeouts: work done twice, counted -----------------------------------------------------------


def test_a_timeout_shorter_than_the_wait_makes_every_request_processed_twice_for_nothing():
    # a request comes every 10 s; its first attempt is in service 0..3 s, the client gives up at
    # 2 s and retries at 2.1 s; the retry waits for the worker, is served 3..6 s, and its client
    # gives up on it at 4.1 s. Both attempts are processed after their client stopped waiting:
    # per request, 2 processings (1 duplicate), 2 wasted, rejected, and no goodput.
    result = run(slow_service(retry={"policy": "fixed", "base": "100ms", "max_attempts": 2}), replications=1, jobs=1)
    counts = result.counts()
    produced = counts["produced"]
    finished = produced - counts["in_flight"]
    assert produced == 199 and counts["processed"] == 0 and counts["rejected"] == finished
    summary = result.summary()
    client = summary["clients"]["app"]
    assert client["timeouts"]["mean"] == 2 * finished
    assert client["wasted"]["mean"] == 2 * finished
    assert counts["duplicates"] == finished
    assert summary["system"]["goodput_per_s"]["mean"] == 0
    assert summary["system"]["retry_amplification"]["mean"] == pytest.approx(2, abs=0.01)
    assert summary["system"]["wasted_fraction"]["mean"] == 1.0
    assert result.ok


def test_a_timeout_longer_than_the_response_wastes_nothing():
    result = run(slow_service(timeout="4s", retry={"policy": "fixed", "base": "100ms", "max_attempts": 2}), replications=1, jobs=1)
    counts = result.counts()
    assert counts["processed"] == counts["produced"] - counts["in_flight"] and counts["duplicates"] == 0
    assert result.estimate("clients.app.latency_s.p99").mean == pytest.approx(3.0, rel=RELATIVE_ACCURACY)
    assert result.estimate("clients.app.wasted").mean == 0
    assert result.ok


def test_mm1_clients_time_out_in_the_proportion_theory_gives_and_their_work_is_wasted():
    # M/M/1 FIFO, λ = 0.5, μ = 1: the sojourn is exponential with rate μ − λ, so a client that waits
    # T = 4 s gives up with probability exp(−(μ − λ) T) = e^−2, and the worker still does that work
    expected = math.exp(-2.0)
    scenario = scenario_from_dict({
        "name": "mm1-timeouts",
        "seed": 4,
        "duration": 21_000,
        "warmup": 1_000,
        "producers": [{"name": "app", "arrivals": {"process": "poisson", "rate": 0.5}, "sends_to": "q", "timeout": "4s"}],
        "brokers": [{"name": "q", "kind": "fifo"}],
        "workers": [{"name": "w", "consumes": "q", "count": 1, "service_time": {"dist": "exponential", "mean": 1.0}}],
    })
    result = run(scenario, replications=8)
    rejected = result.estimate("system.rejected_rate")
    assert rejected.contains(expected), (expected, rejected)
    assert rejected.half_width < 0.15 * expected
    wasted = result.estimate("system.wasted_fraction")
    assert wasted.contains(expected), (expected, wasted)
    # the clients' requests and the system's: L = λW on every boundary
    assert {c["boundary"] for c in result.summary()["littles_law"]} >= {"app", "app:attempts", "system"}
    assert result.ok


# --- a bounded queue without retries is M/M/c/K ---------------------------------------------------


@pytest.mark.parametrize("bound", ["broker capacity", "admission max_queue"])
def test_a_bounded_queue_refusing_clients_without_retries_matches_mmck(bound):
    # M/M/2/5 at ρ = 1: clients (retry policy none) refused when 3 wait; the rejection probability
    # is p_K of M/M/c/K, whether the fifo's capacity or an admission gate bounds the queue
    theory = analytic.mmck(2.0, 1.0, 2, 5).p_reject
    broker = {"name": "q", "kind": "fifo"}
    spec = {
        "name": "mm2-5",
        "seed": 9,
        "duration": 15_100,
        "warmup": 100,
        "producers": [{"name": "app", "arrivals": {"process": "poisson", "rate": 2.0}, "sends_to": "q", "retry": {"policy": "none"}}],
        "brokers": [broker],
        "workers": [{"name": "w", "consumes": "q", "count": 2, "service_time": {"dist": "exponential", "mean": 1.0}}],
    }
    if bound == "broker capacity":
        broker["capacity"] = 3
    else:
        spec["admission"] = [{"name": "gate", "in_front_of": "q", "max_queue": 3}]
    result = run(scenario_from_dict(spec), replications=8)
    rejected = result.estimate("system.rejected_rate")
    assert rejected.contains(theory), (theory, rejected)
    assert rejected.half_width < 0.1 * theory
    assert result.estimate("system.retry_amplification").mean == 1.0
    assert result.ok


# --- synchronized retries come in waves; jitter spreads them -------------------------------------


def peak_offered_after(result, t_s: float) -> np.ndarray:
    """Per replication: the highest attempts-per-second of a 0.3 s time bin after ``t_s``."""
    table = result.timeseries
    rows = table[(table["series"] == "system.offered_per_s") & (table["t_s"] > t_s)]
    return rows.groupby("replication")["value"].max().to_numpy()


def test_without_jitter_clients_refused_together_retry_in_waves_and_jitter_spreads_them(root):
    path = root / "scenarios" / "retry-jitter.yaml"
    waves = run(load_scenario(path), replications=3)
    spread = run(load_scenario(path, ["producers.devices.retry.policy=full_jitter"]), replications=3)
    # 1,500 devices arrive within 0.5 s at t = 10 s; the bins after 11 s hold only retries and the
    # 50/s background. No jitter: refused together, they retry together 1, 3, 7, 15 s later, each
    # wave about as steep as the spike (~2,000 attempts/s and more); full jitter spreads each wave
    # over [0, 2^n] s, so no bin after the spike sees half that
    no_jitter, full_jitter = peak_offered_after(waves, 11.0), peak_offered_after(spread, 11.0)
    assert no_jitter.min() > 2_000
    assert no_jitter.min() > 1.6 * full_jitter.max()
    # the waves come where the formula puts them: a bin near 10.25 + 1 + 2 + 4 = 17.25 s is a peak
    table = waves.timeseries
    offered = table[table["series"] == "system.offered_per_s"].groupby("t_s")["value"].mean()
    assert offered[(offered.index > 16.8) & (offered.index < 17.7)].max() > 10 * offered[(offered.index > 19) & (offered.index < 24)].mean()
    # and jitter does less work for more successes (AWS's finding)
    assert spread.estimate("system.retry_amplification").mean < waves.estimate("system.retry_amplification").mean
    assert spread.estimate("system.rejected_rate").mean < 0.1 * waves.estimate("system.rejected_rate").mean
    assert waves.ok and spread.ok


# --- the retry storm: a metastable failure ------------------------------------------------------------


@pytest.mark.slow
def test_the_retry_storm_collapses_with_retries_and_recovers_without_them_or_with_a_budget(root):
    path = root / "scenarios" / "retry-storm.yaml"
    short = ["duration=150s"]
    storm = run(load_scenario(path, short), replications=2)
    calm = run(load_scenario(path, short + ["producers.api-clients.retry.max_attempts=1"]), replications=2)
    budget = run(load_scenario(path, short + ["producers.api-clients.retry_budget=true"]), replications=2)

    def goodput_after(result, start_s):
        table = result.timeseries
        rows = table[(table["series"] == "system.goodput_per_s") & (table["t_s"] > start_s)]
        return rows.groupby("replication")["value"].mean().to_numpy()

    # with retries: the spike (60–65 s) ends but goodput stays near zero to the end of the run
    assert storm.recovery()["recovered_replications"] == 0
    assert storm.recovery()["verdict"].startswith("did not recover within the run")
    assert goodput_after(storm, 100.0).max() < 0.1 * 80
    assert storm.estimate("system.retry_amplification").mean > 2.5
    # without retries, or with the AWS budget, the queue drains and goodput is back within a minute
    for result in (calm, budget):
        recovery = result.recovery()
        assert recovery["recovered_replications"] == 2, recovery
        assert 10 < recovery["time_to_recover_s"]["mean"] < 60
        assert goodput_after(result, 120.0).min() > 0.9 * 80
        # recovery is not declared while the requests being made still mostly fail
        table = result.timeseries
        for r in result.results:
            rows = table[table["replication"] == r.replication].pivot_table(index="t_s", columns="series", values="value")
            failing = rows[rows["system.goodput_per_s"] < 0.5 * rows["system.offered_unique_per_s"]].index
            assert failing[failing < 149].max() < 65 + r.metrics["system.recovery_s"]
    assert budget.estimate("system.retry_amplification").mean < 1.05
    for result in (storm, calm, budget):
        assert result.ok, result.warnings()


# --- closed-loop clients -------------------------------------------------------------------------


def test_closed_loop_throughput_follows_the_interactive_response_time_law():
    # N clients thinking Z on average between requests: throughput X = N / (Z + R), R the mean
    # response time; here N = 20, Z = 1 s, and 2 workers of 100 ms make R grow with the load
    scenario = scenario_from_dict({
        "name": "closed",
        "seed": 11,
        "duration": 2_100,
        "warmup": 100,
        "producers": [],
        "clients": [{"name": "users", "count": 20, "think_time": {"dist": "exponential", "mean": 1.0}, "sends_to": "q"}],
        "brokers": [{"name": "q", "kind": "fifo"}],
        "workers": [{"name": "w", "consumes": "q", "count": 2, "service_time": {"dist": "exponential", "mean": 0.1}}],
    })
    result = run(scenario, replications=6)
    table = result.replications
    law = table["clients.users.completed_per_s"] * (1.0 + table["clients.users.response_s.mean"]) / 20
    from sim.stats import mean_ci

    ratio = mean_ci(law)
    assert ratio.contains(1.0), ratio
    assert ratio.half_width < 0.01
    # the loop is closed: at most 20 requests are ever in progress, so no more than 20/(1 + 0.1) per s
    assert result.estimate("clients.users.in_progress_mean").mean < 20
    assert result.estimate("system.throughput_per_s").mean < 20 / 1.1
    assert result.ok


def test_closed_loop_clients_time_out_and_retry_and_the_work_is_still_accounted():
    # 30 clients, 1 worker of 200 ms: the loop saturates the worker, waits exceed the 1 s timeout,
    # clients retry while their first attempt is still queued — attempts pile up beyond 30
    scenario = scenario_from_dict({
        "name": "closed-retries",
        "seed": 5,
        "duration": 600,
        "warmup": 60,
        "producers": [],
        "clients": [{"name": "users", "count": 30, "think_time": "500ms", "sends_to": "q", "timeout": "1s",
                     "retry": {"policy": "full_jitter", "base": "100ms", "cap": "2s", "max_attempts": 3}}],
        "brokers": [{"name": "q", "kind": "fifo"}],
        "workers": [{"name": "w", "consumes": "q", "count": 1, "service_time": {"dist": "exponential", "mean": 0.2}}],
    })
    result = run(scenario, replications=2, jobs=1)
    summary = result.summary()
    assert summary["clients"]["users"]["timeouts"]["mean"] > 100
    assert summary["counts"]["duplicates"] > 0
    assert summary["conservation"]["attempts_open_at_end"] > 0
    assert summary["conservation"]["attempts_unaccounted_at_end"] == 0
    assert result.ok, result.warnings()


def test_an_idempotent_consumer_answers_retries_from_its_table_without_duplicates():
    # a client times out on slow services and retries; the idempotent pool skips a copy of a
    # request already processed and its processed-ids table answers it: no side effect twice,
    # some retries answered that way in time, and every attempt still ends somewhere
    def scenario(idempotent):
        return scenario_from_dict({
            "name": "idempotent-retries",
            "seed": 6,
            "duration": 3_000,
            "warmup": 100,
            "producers": [{"name": "app", "arrivals": {"process": "poisson", "rate": 1.0}, "sends_to": "q", "timeout": "1s",
                           "retry": {"policy": "fixed", "base": "100ms", "max_attempts": 3}}],
            "brokers": [{"name": "q", "kind": "fifo"}],
            "workers": [{"name": "w", "consumes": "q", "count": 4, "service_time": {"dist": "exponential", "mean": 0.5},
                         "idempotent": idempotent}],
        })

    plain = run(scenario(False), replications=1, jobs=1)
    table = run(scenario(True), replications=1, jobs=1)
    assert plain.counts()["duplicates"] > 100  # without the table, retries redo the work
    assert table.counts()["duplicates"] == 0
    client = table.summary()["clients"]["app"]
    assert client["suppressed"]["mean"] > 100
    # the copies skipped are answered: some while their client still waits (successes), the rest wasted
    assert client["succeeded"]["mean"] + client["rejected_timed_out"]["mean"] == table.counts()["produced"] - table.counts()["in_flight"]
    assert client["wasted"]["mean"] < client["processings"]["mean"] + client["suppressed"]["mean"]
    assert plain.ok and table.ok, table.warnings()
