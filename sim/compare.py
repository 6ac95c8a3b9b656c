"""Two designs side by side on common random numbers: paired differences with intervals.

``asyncsim compare A.yaml B.yaml`` (or ``asyncsim compare A.yaml --vs PATH=VALUE``: A against
itself with an override) runs both scenarios with the same seed and the same
replication indices, as jobs on one executor (:mod:`sim.jobs`). Random streams are keyed by
(seed, replication, part name, purpose) (:mod:`sim.streams`), so every part the two scenarios
share by name draws the same numbers in replication r of A and of B: the same arrivals, the same
service times. For each metric both report, the difference B − A is computed per replication and
its mean gets a Student-t interval (:func:`~sim.stats.mean_ci`): a paired comparison, whose
interval is narrower than that of two independent runs by as much as the designs' noise is shared.

How far common random numbers hold is measured, not assumed: :func:`stream_keys` builds each
scenario once and lists the streams it draws from; the streams both draw from are shared, the
others are each design's own. Within a shared stream the i-th draw goes to the i-th use, so a
part that uses its draws in another order in B (another queueing discipline, a pool serving
other messages) still shares them, but less usefully.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import simpy

from .executors import Executor
from .jobs import Job, run_jobs
from .loading import load_scenario
from .network import build
from .problems import CapacityError
from .recorder import Recorder
from .result import Result
from .schema import Scenario
from .stats import Estimate, json_safe, mean_ci
from .streams import Streams
from .warmup import inspectable


class RecordingStreams(Streams):
    """Streams that remember which (part, purpose) keys were asked for."""

    def __init__(self, seed: int, replication: int):
        super().__init__(seed, replication)
        self.keys: set[tuple[str, str]] = set()

    def rng(self, component: str, purpose: str):
        self.keys.add((component, purpose))
        return super().rng(component, purpose)


def stream_keys(scenario: Scenario, seed: int = 0) -> set[tuple[str, str]]:
    """The (part, purpose) of every random stream ``scenario`` draws from (built once, not run)."""
    streams = RecordingStreams(seed, 0)
    scenario = inspectable(scenario)
    build(scenario, simpy.Environment(), Recorder(scenario.warmup, scenario.duration), streams)
    return streams.keys


@dataclass(frozen=True)
class Difference:
    """One metric in both designs: each design's estimate, the paired difference B − A (per
    replication, then its mean and interval), and the interval two independent runs of the same
    length would give (``independent_half_width``: √(hA² + hB²), from each design's own interval)."""

    metric: str
    a: Estimate
    b: Estimate
    paired: Estimate
    independent_half_width: float | None

    @property
    def significant(self) -> bool:
        """The paired interval excludes zero."""
        return self.paired.low is not None and (self.paired.low > 0 or self.paired.high < 0)

    @property
    def narrowing(self) -> float | None:
        """Paired half-width over the independent one (below 1: common random numbers helped)."""
        hw = self.paired.half_width
        if hw is None or not self.independent_half_width:
            return None
        return hw / self.independent_half_width

    def as_dict(self) -> dict:
        return {"metric": self.metric, "a": self.a.as_dict(), "b": self.b.as_dict(), "difference": self.paired.as_dict(),
                "independent_half_width": json_safe(self.independent_half_width), "narrowing": json_safe(self.narrowing),
                "significant": self.significant}


def paired_difference(metric: str, a: Result, b: Result) -> Difference:
    """The difference of ``metric`` between the replications of ``b`` and ``a`` with the same index."""
    values_a = {r.replication: r.metrics[metric] for r in a.results}
    values_b = {r.replication: r.metrics[metric] for r in b.results}
    pairs = [(values_a[i], values_b[i]) for i in sorted(values_a.keys() & values_b.keys())]
    pairs = [(x, y) for x, y in pairs if not (math.isnan(x) or math.isnan(y))]
    est_a, est_b = mean_ci([x for x, _ in pairs]), mean_ci([y for _, y in pairs])
    independent = None
    if est_a.half_width is not None and est_b.half_width is not None:
        independent = math.hypot(est_a.half_width, est_b.half_width)
    return Difference(metric, est_a, est_b, mean_ci([y - x for x, y in pairs]), independent)


@dataclass
class Comparison:
    """Designs A and B run on common random numbers: every shared metric's paired difference,
    the SLO verdicts of each (against the same objectives), and which streams they share."""

    a: Result
    b: Result
    differences: list[Difference]
    shared_streams: list[tuple[str, str]]
    only_a: list[tuple[str, str]]
    only_b: list[tuple[str, str]]
    slo: list[dict] = field(default_factory=list)

    def difference(self, metric: str) -> Difference:
        return next(d for d in self.differences if d.metric == metric)

    @property
    def table(self):
        """pandas: one row per shared metric (means, difference and interval, narrowing)."""
        import pandas as pd

        rows = [{"metric": d.metric, "a": d.a.mean, "b": d.b.mean, "difference": d.paired.mean, "ci95_low": d.paired.low,
                 "ci95_high": d.paired.high, "independent_half_width": d.independent_half_width, "narrowing": d.narrowing,
                 "significant": d.significant} for d in self.differences]
        return pd.DataFrame(rows).set_index("metric")

    def summary(self) -> dict:
        return {
            "a": self.a.scenario.name, "b": self.b.scenario.name, "seed": self.a.seed, "replications": len(self.a.results),
            "common_random_numbers": {"shared": [list(k) for k in self.shared_streams], "only_a": [list(k) for k in self.only_a],
                                      "only_b": [list(k) for k in self.only_b]},
            "slo": self.slo,
            "differences": [d.as_dict() for d in self.differences],
            "failures": {"a": [f.error for f in self.a.failures], "b": [f.error for f in self.b.failures]},
        }


def slo_verdicts(a: Result, b: Result, differences: dict[str, Difference]) -> list[dict]:
    """Per objective (both scenarios carry the same SLO): each design's status, and which design
    the paired difference favours (``a``, ``b``, or ``neither`` when its interval holds zero)."""
    report_a, report_b = a.slo_report() or {}, b.slo_report() or {}
    rows = []
    for key, row_a in report_a.items():
        row_b = report_b[key]
        diff = differences.get(row_a["metric"])
        better = "neither"
        if diff is not None and diff.significant:
            b_higher = diff.paired.mean > 0
            better = "a" if b_higher == (key != "min_throughput") else "b"
        rows.append({"objective": key, "target": row_a["target"], "metric": row_a["metric"], "a": row_a["status"], "b": row_b["status"], "better": better})
    return rows


def run_pairs(pairs: Sequence[tuple[Scenario, Scenario]], replications: int, seed: int, executor: Executor,
              on_done=None) -> list[tuple[Result, Result]]:
    """Both designs of every pair, ``replications`` each with one ``seed``, all as jobs on ``executor``."""
    jobs = [Job(scenario, seed, range(replications)) for pair in pairs for scenario in pair]
    results: dict[int, Result] = {}
    for j, done, failures in run_jobs(jobs, executor, on_done):
        results[j] = Result(jobs[j].scenario, seed, replications, done, failures)
    return [(results[2 * i], results[2 * i + 1]) for i in range(len(pairs))]


def compare(a: Scenario, b: Scenario, replications: int, seed: int, executor: Executor, on_done=None) -> Comparison:
    """Run ``a`` and ``b`` (``replications`` each, one ``seed``) on ``executor`` and pair them."""
    ((result_a, result_b),) = run_pairs([(a, b)], replications, seed, executor, on_done)
    names_b = set(result_b.metric_names())
    differences = [paired_difference(m, result_a, result_b) for m in result_a.metric_names() if m in names_b]
    keys_a, keys_b = stream_keys(a, seed), stream_keys(b, seed)
    comparison = Comparison(result_a, result_b, differences, sorted(keys_a & keys_b), sorted(keys_a - keys_b), sorted(keys_b - keys_a))
    comparison.slo = slo_verdicts(result_a, result_b, {d.metric: d for d in differences})
    return comparison


def load_pair(path_a: Path, path_b: Path | None, overrides: Sequence[str] = (), slo_args: Sequence[str] = (),
              vs: Sequence[str] = ()) -> tuple[Scenario, Scenario]:
    """Both scenarios with ``overrides``, judged against one SLO: A's (else B's) with ``slo_args``
    on top. Without ``path_b``, B is A with the ``vs`` overrides on top (``--vs PATH=VALUE``), named
    after them: one design against a variant of itself."""
    from .capacity import slo_overrides

    if path_b is None:
        shared = slo_overrides(path_a, overrides, slo_args)[0] if slo_args else list(overrides)
        a, b = load_scenario(path_a, shared), load_scenario(path_a, [*shared, *vs])
        return a, b.model_copy(update={"name": f"{a.name} with {', '.join(vs)}"})
    shared = list(overrides)
    for source in (path_a, path_b):
        try:
            shared = slo_overrides(source, overrides, slo_args)[0]
            break
        except CapacityError:
            if slo_args:
                raise
    return load_scenario(path_a, shared), load_scenario(path_b, shared)
