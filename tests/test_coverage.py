"""Coverage: over many independent repetitions, how often the 95% interval that asyncsim reports
holds the exact value of an M/M/c or M/D/1 queue (its mean sojourn and its p99). A procedure whose
intervals are honest holds it 95% of the time; the charter asks for 93–97%.

The repetitions are of two kinds:

- **Exact samples** (:func:`test_the_intervals_on_exact_samples_hold_the_exact_mean_and_p99`):
  1,000 runs of 10 windows of sojourn times drawn exactly (Kiefer–Wolfowitz's recursion,
  Lindley's for one server), sketched as a run sketches its windows and put through the same
  estimator. 1,000 runs measure a coverage to ±1.4%. Measured (mean, p99): M/M/1 at ρ = 0.5,
  windows of 5,000 s: 94.9%, 95.3%; M/D/1 at ρ = 0.6: 94.1%, 95.4%; M/M/3 at ρ = 0.8, windows
  of 2,000 s: 95.1%, 94.3%; M/M/1 at ρ = 0.9 on the window a run asks for there (50 correlation
  times: 20,000 s): 94.2%, 95.2%. On the estimates issue's shorter windows at ρ = 0.9 (6,000 s
  after 600 s, which the run warns about) they held 93.0% and 94.0% (92.6% and 93.4% with another
  seed: the mean is at the edge there). With t(n − 1) instead of degrees of freedom that follow
  the residuals' kurtosis (:func:`sim.estimates.degrees_of_freedom`), the same samples gave 92.5%
  for the M/M/3's p99, and 92.1% and 87.2% at ρ = 0.9 on 6,000 s: a window's share of the tail
  (and near saturation its sum of latencies) arrives in a few congestion episodes.
- **Whole runs**
  (:func:`test_whole_runs_estimate_the_exact_mean_and_p99_without_bias_and_cover_them_as_exact_samples_do`):
  200 runs of ``run`` per case (10 replications with their own seeds, a warm-up from an empty
  system, the pooled estimates and their intervals), as a user makes them. They show that the
  simulator is the queue: the pooled estimates are unbiased (their average over the runs within
  3 standard errors of the exact value) and their intervals cover it as on exact samples. 200
  runs measure a coverage only to ±3%, so the test asks for 95% ± 4.0% (where 99% of what 200
  runs of an exact 95% procedure measure fall). Measured (mean, p99): M/M/1 at ρ = 0.5: 93.0%,
  94.5%; M/D/1 at ρ = 0.6: 97.0%, 93.0%; M/M/3 at ρ = 0.8: 95.0%, 92.5%; M/M/1 at ρ = 0.9 on
  the estimates issue's windows (6,000 s after 600 s; 47.5% for the p99 when it was filed):
  94.0%, 94.5%.
- **Hurried windows.** Near saturation a window of a few correlation times that starts from
  an empty system (M/M/1 at ρ = 0.9, 10 windows of 30 minutes after 10 minutes of warm-up)
  holds the start-up and few congestion episodes: the estimates are biased low (the p99's
  interval held the exact value 74% and the mean's 89% of 200 runs; 72.5% and 88% with
  t(9)). There the run must not present a confident answer, and it does not — every run warns
  that the window is short for the latency's tail, and no latency percentile objective is
  called met on it
  (:func:`test_a_window_too_short_for_the_tail_always_warns_and_meets_no_percentile_objective`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property

import numpy as np
import pytest
from scipy import optimize

from sim import scenario_from_dict
from sim.analytic import mmc, mmc_sojourn_quantile
from sim.executors import make_executor
from sim.jobs import Job, run_jobs
from sim.estimates import pooled_estimate
from sim.result import Result
from sim.schema import Slo
from sim.sketch import Distribution

pytestmark = pytest.mark.slow


def md1_wait_cdf(x: float, rho: float) -> float:
    """P(W ≤ x) for M/D/1 with service time 1 (Erlang 1909; Crommelin 1932):
    (1 − ρ) Σ_{k=0}^{⌊x⌋} (ρ(k − x))^k / k! · e^(−ρ(k − x))."""
    return (1 - rho) * sum((rho * (k - x)) ** k / math.factorial(k) * math.exp(-rho * (k - x)) for k in range(int(x) + 1))


@dataclass(frozen=True)
class Case:
    name: str
    rate: float
    servers: int
    deterministic: bool
    duration: float
    warmup: float
    replications: int

    def scenario(self, seed: int):
        service = {"dist": "deterministic", "value": 1.0} if self.deterministic else {"dist": "exponential", "mean": 1.0}
        return scenario_from_dict({
            "name": self.name, "seed": seed, "duration": self.duration, "warmup": self.warmup,
            "producers": [{"name": "p", "arrivals": {"process": "poisson", "rate": self.rate}, "sends_to": "q"}],
            "brokers": [{"name": "q", "kind": "fifo"}],
            "workers": [{"name": "w", "consumes": "q", "count": self.servers, "service_time": service}],
        })

    @cached_property
    def exact(self) -> dict[str, float]:
        if self.deterministic:
            rho = self.rate
            wait_p99 = optimize.brentq(lambda x: md1_wait_cdf(x, rho) - 0.99, 0.0, 20.0)
            return {"system.latency_s.mean": 1 + rho / (2 * (1 - rho)), "system.latency_s.p99": 1 + wait_p99}
        return {"system.latency_s.mean": mmc(self.rate, 1.0, self.servers).sojourn_s,
                "system.latency_s.p99": mmc_sojourn_quantile(0.99, self.rate, 1.0, self.servers)}


def simulated(case: Case, repetitions: int) -> dict[str, tuple[float, np.ndarray]]:
    """For each metric: the share of ``repetitions`` whole runs of ``case`` whose interval holds
    the exact value, and each run's pooled estimate divided by the exact value."""
    jobs = [Job(case.scenario(seed), seed, range(case.replications)) for seed in range(20_000, 20_000 + repetitions)]
    held = {metric: 0 for metric in case.exact}
    ratios = {metric: [] for metric in case.exact}
    with make_executor(2) as executor:
        for j, results, failures in run_jobs(jobs, executor):
            assert not failures
            result = Result(jobs[j].scenario, jobs[j].seed, case.replications, results)
            for metric, exact in case.exact.items():
                estimate = result.estimate(metric)
                held[metric] += estimate.contains(exact)
                ratios[metric].append(estimate.mean / exact)
    return {metric: (held[metric] / repetitions, np.array(ratios[metric])) for metric in case.exact}


def test_the_exact_m_d_1_p99_is_the_one_a_long_simulation_finds():
    # Lindley's recursion, 2,000,000 customers at ρ = 0.6: the empirical p99 within 1%
    rng = np.random.default_rng(1)
    gaps = rng.exponential(1 / 0.6, 2_000_000)
    steps = 1.0 - gaps[1:]
    walk = np.concatenate([[0.0], np.cumsum(steps)])
    waits = walk - np.minimum.accumulate(walk)
    case = Case("M/D/1", 0.6, 1, True, 1.0, 0.0, 1)
    assert np.quantile(waits[1_000:] + 1, 0.99) == pytest.approx(case.exact["system.latency_s.p99"], rel=0.01)


CASES = [
    # correlation time of the number in the system 2(1 + ρ)/(1 − ρ)² = 12 s: windows of 400 of them
    Case("M/M/1 at ρ = 0.5", 0.5, 1, False, 5_100.0, 100.0, 10),
    Case("M/D/1 at ρ = 0.6", 0.6, 1, True, 5_100.0, 100.0, 10),
    Case("M/M/3 at ρ = 0.8", 2.4, 3, False, 2_100.0, 100.0, 10),
    # the estimates issue's example: 10 replications of 6,000 s after 600 s of warm-up, whose p99
    # interval held the exact p99 47.5% of the time when it was filed; correlation time 380 s,
    # so the window is 16 of them (the run warns that 50 would do)
    Case("M/M/1 at ρ = 0.9", 0.9, 1, False, 6_600.0, 600.0, 10),
]
SIMULATED_RUNS = 200
BAND = 2.58 * math.sqrt(0.95 * 0.05 / SIMULATED_RUNS)  # 99% of the coverages 200 runs measure: ±4.0%


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_whole_runs_estimate_the_exact_mean_and_p99_without_bias_and_cover_them_as_exact_samples_do(case):
    for metric, (held, ratios) in simulated(case, SIMULATED_RUNS).items():
        standard_error = ratios.std(ddof=1) / math.sqrt(ratios.size)
        assert abs(ratios.mean() - 1) < 3 * standard_error, (metric, ratios.mean(), standard_error)
        assert abs(held - 0.95) <= BAND, (metric, held)


def exact_sojourns(rng, case: Case, queues: int, n: int, warmup: int) -> np.ndarray:
    """``queues`` × ``n`` sojourn times of ``case``'s queue (service mean 1), each queue started
    empty and its first ``warmup`` customers dropped, by Kiefer–Wolfowitz's recursion (Lindley's
    for one server), all queues a step at a time: the servers' remaining work sorted, W; a
    customer waits W₁ and adds its service S to it, then the next arrives A later: W = max(W − A, 0)."""
    work = np.zeros((queues, case.servers))
    sojourns = np.empty((n, queues))
    for k in range(n + warmup):
        service = np.ones(queues) if case.deterministic else rng.exponential(1.0, queues)
        if k >= warmup:
            sojourns[k - warmup] = work[:, 0] + service
        work[:, 0] += service
        np.maximum(work - rng.exponential(1 / case.rate, queues)[:, None], 0.0, out=work)
        if case.servers > 1:
            work.sort(axis=1)
    return sojourns.T


def exact_coverage(case: Case, repetitions: int, seed: int) -> dict[str, float]:
    """The share of ``repetitions`` runs of ``case``'s windows, drawn exactly and sketched as a run
    sketches a window (20 time sections), whose pooled intervals hold each exact value."""
    rng = np.random.default_rng(seed)
    per_window, warmup = round(case.rate * (case.duration - case.warmup)), round(case.rate * case.warmup)
    held = {metric: 0 for metric in case.exact}
    for start in range(0, repetitions, 100):
        runs = min(100, repetitions - start)
        windows = exact_sojourns(rng, case, runs * case.replications, per_window, warmup)
        for run in windows.reshape(runs, case.replications, per_window):
            sketches = [Distribution.of(window, 20) for window in run]
            for metric, exact in case.exact.items():
                held[metric] += pooled_estimate(sketches, metric.rsplit(".", 1)[1]).contains(exact)
    return {metric: n / repetitions for metric, n in held.items()}


def test_the_exact_samples_are_those_of_the_queue():
    # 1,000 M/M/3 queues at ρ = 0.8 for 2,000 customers each after 1,000: the mean sojourn
    # within 3 standard errors of the exact value, and the p99 within 2%
    case = Case("M/M/3", 2.4, 3, False, 1.0, 0.0, 1)
    sojourns = exact_sojourns(np.random.default_rng(4), case, 1_000, 2_000, 1_000)
    means = sojourns.mean(axis=1)
    assert abs(means.mean() - case.exact["system.latency_s.mean"]) < 3 * means.std() / math.sqrt(means.size)
    assert np.quantile(sojourns, 0.99) == pytest.approx(case.exact["system.latency_s.p99"], rel=0.02)


EXACT_CASES = [
    *CASES[:3],
    # near saturation, the window the run asks for (50 correlation times: 19,000 s)
    Case("M/M/1 at ρ = 0.9", 0.9, 1, False, 22_000.0, 2_000.0, 10),
]


@pytest.mark.parametrize("case", EXACT_CASES, ids=[c.name for c in EXACT_CASES])
def test_the_intervals_on_exact_samples_hold_the_exact_mean_and_p99(case):
    # the same estimator on 1,000 runs of 10 windows of exact sojourns: its coverage to ±1.4%
    held = exact_coverage(case, 1_000, seed=2)
    assert 0.93 <= held["system.latency_s.mean"] <= 0.97, held
    assert 0.93 <= held["system.latency_s.p99"] <= 0.97, held


def test_a_window_too_short_for_the_tail_always_warns_and_meets_no_percentile_objective():
    # M/M/1 at ρ = 0.9 (correlation time 380 s), 10 windows of 30 minutes after 10 minutes of
    # warm-up; the exact p99 (46 s) meets an objective of 60 s, but these windows cannot show it
    case = Case("M/M/1 at ρ = 0.9", 0.9, 1, False, 2_400.0, 600.0, 10)
    jobs = [Job(case.scenario(seed).model_copy(update={"slo": Slo(latency_p99=60.0)}), seed, range(case.replications))
            for seed in range(20_000, 20_050)]
    verdicts = []
    with make_executor(2) as executor:
        for j, results, _ in run_jobs(jobs, executor):
            result = Result(jobs[j].scenario, jobs[j].seed, case.replications, results)
            assert [w for w in result.warnings() if w.startswith("the window")], jobs[j].seed
            verdicts.append(result.slo_report()["latency_p99"]["status"])
    assert "met" not in verdicts and "uncertain" in verdicts
