"""The analytic validation suite: scenarios whose exact answer is known, simulated and compared.

Each case is a one-stage system (Poisson producer → fifo broker → worker pool) with a queueing
model that gives the exact long-run value of one measure. ``run_case`` simulates it with
replications and says whether the exact value lies inside the 95% confidence interval. The
warm-up is many relaxation times long, so the initial empty state does not bias the estimate.
"""

from __future__ import annotations

from dataclasses import dataclass

from . import analytic
from .executors import Executor, make_executor
from .jobs import run_scenario
from .loading import scenario_from_dict
from .stats import Estimate


@dataclass(frozen=True)
class Case:
    name: str
    measure: str
    metric: str
    theory: float
    arrival_rate_per_s: float
    servers: int
    service_time: dict
    messages: int
    warmup_s: float
    capacity: int | None = None

    def scenario(self, replications: int, seed: int):
        duration = self.warmup_s + self.messages / self.arrival_rate_per_s
        broker = {"name": "queue", "kind": "fifo"}
        if self.capacity is not None:
            broker["capacity"] = self.capacity
        return scenario_from_dict({
            "name": self.name,
            "seed": seed,
            "duration": duration,
            "warmup": self.warmup_s,
            "replications": replications,
            "producers": [{"name": "arrivals", "arrivals": {"process": "poisson", "rate": self.arrival_rate_per_s}, "sends_to": "queue"}],
            "brokers": [broker],
            "workers": [{"name": "servers", "consumes": "queue", "count": self.servers, "service_time": self.service_time}],
        })


@dataclass(frozen=True)
class CaseOutcome:
    """A case simulated: the estimate of its metric, and the errors of replications that failed."""

    case: Case
    estimate: Estimate
    failures: tuple[str, ...] = ()

    @property
    def theory(self) -> float:
        return self.case.theory

    @property
    def inside(self) -> bool:
        """Whether the exact value lies in the 95% CI (never when a replication failed)."""
        return not self.failures and self.estimate.contains(self.case.theory)

    def as_dict(self) -> dict:
        return {
            "case": self.case.name,
            "measure": self.case.measure,
            "metric": self.case.metric,
            "theory": self.case.theory,
            "simulation": self.estimate.as_dict(),
            "inside": self.inside,
            "failures": list(self.failures),
        }


EXP_1S = {"dist": "exponential", "mean": 1.0}

CASES = [
    Case("M/M/1 ρ=0.5", "mean sojourn W (s)", "system.latency_s.mean", analytic.mm1(0.5, 1.0).sojourn_s,
         0.5, 1, EXP_1S, messages=40_000, warmup_s=500),
    Case("M/M/1 ρ=0.9", "mean sojourn W (s)", "system.latency_s.mean", analytic.mm1(0.9, 1.0).sojourn_s,
         0.9, 1, EXP_1S, messages=100_000, warmup_s=5_000),
    Case("M/M/10 ρ=0.9", "mean wait Wq (s)", "brokers.queue.wait_s.mean", analytic.mmc(9.0, 1.0, 10).wait_s,
         9.0, 10, EXP_1S, messages=100_000, warmup_s=1_000),
    Case("M/M/10 ρ=0.9", "sojourn p99 (s)", "system.latency_s.p99", analytic.mmc_sojourn_quantile(0.99, 9.0, 1.0, 10),
         9.0, 10, EXP_1S, messages=100_000, warmup_s=1_000),
    Case("M/M/2/5 ρ=1", "rejection probability", "system.rejected_rate", analytic.mmck(2.0, 1.0, 2, 5).p_reject,
         2.0, 2, EXP_1S, messages=40_000, warmup_s=100, capacity=3),
    Case("M/M/5/5 a=4", "blocking probability (Erlang B)", "system.rejected_rate", analytic.erlang_b(5, 4.0),
         4.0, 5, EXP_1S, messages=40_000, warmup_s=100, capacity=0),
    Case("M/D/1 ρ=0.7", "mean wait Wq (s)", "brokers.queue.wait_s.mean", analytic.mg1(0.7, 1.0, 0.0).wait_s,
         0.7, 1, {"dist": "deterministic", "value": 1.0}, messages=40_000, warmup_s=1_000),
    Case("M/H2/1 ρ=0.5 cv=3", "mean wait Wq (s)", "brokers.queue.wait_s.mean", analytic.mg1(0.5, 1.0, 3.0).wait_s,
         0.5, 1, {"dist": "hyperexponential", "mean": 1.0, "cv": 3.0}, messages=100_000, warmup_s=2_000),
]


def run_case(case: Case, replications: int = 20, seed: int = 1, executor: Executor | None = None) -> CaseOutcome:
    """Simulate ``case`` on ``executor`` (local processes by default) and compare the estimate of
    its metric with the exact value."""
    if executor is None:
        with make_executor(tasks=replications) as local:
            return run_case(case, replications, seed, local)
    result = run_scenario(case.scenario(replications, seed), replications, seed, executor)
    failures = tuple(f"replication {f.replication}: {f.error}" for f in result.failures)
    return CaseOutcome(case, result.estimate(case.metric), failures)
