"""Candidates of a capacity search: each a set of overrides, simulated and judged against the SLO.

An :class:`Evaluator` loads each candidate, runs its replications on an executor, and gives it a
verdict: *met* (every objective met with confidence), *not met*, *uncertain* (a confidence
interval straddles an objective: the candidate gets more replications up to a cap, doubled, or
with a ``precision`` sized by the precision rule ``run`` follows),
*invalid* (the scenario is refused, e.g. unstable) or *failed* (replications raised). Each
candidate is evaluated once and cached.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from .executors import Executor
from .jobs import Job, replications_for_precision, run_jobs
from .loading import load_scenario
from .problems import ScenarioError
from .result import Result
from .schema import Scenario
from .stats import json_safe
from .units import format_duration

COST_METRICS = ("cost.per_hour_usd", "cost.per_million_messages_usd")


@dataclass
class Run:
    """One candidate evaluated: a value of the parameter (or a load factor) and its verdict."""

    phase: str  # "search" or "headroom"
    value: Any
    label: str
    overrides: tuple[str, ...]
    verdict: str = "pending"  # met / not met / uncertain / invalid / failed
    replications: int = 0
    history: list[int] = field(default_factory=list)
    objectives: dict = field(default_factory=dict)
    error: str | None = None
    result: Result | None = None
    scenario: Scenario | None = None
    order: int = 0

    @property
    def met(self) -> bool:
        return self.verdict == "met"

    @property
    def failing(self) -> list[str]:
        return [k for k, v in self.objectives.items() if v["status"] != "met"]

    def why(self) -> str:
        """What this run shows, as a predicate: 'meets every objective with confidence', 'does not
        meet latency_p99 (1.3s [1.2s, 1.4s] against 1s)', 'is uncertain ...', 'is not a valid scenario ...'."""
        if self.verdict == "met":
            return "meets every objective with confidence"
        if self.verdict == "invalid":
            return f"is not a valid scenario ({self.error})"
        if self.verdict == "failed":
            return f"has failed replications ({self.error})"

        def show(key):
            o = self.objectives[key]
            return f"{key} ({show_objective(key, o['mean'])} [{show_objective(key, o['ci95'][0])}, {show_objective(key, o['ci95'][1])}] against {show_objective(key, o['target'])})"

        bad = [k for k in self.failing if self.objectives[k]["status"] == "not met"]
        unsure = [k for k in self.failing if self.objectives[k]["status"] != "not met"]
        if bad:
            return "does not meet " + ", ".join(show(k) for k in bad)
        return (f"is uncertain for {', '.join(show(k) for k in unsure)} even with {self.replications} replications, "
                "so it does not meet the SLO with confidence")

    def cost(self) -> dict | None:
        """What the setup costs, per hour and per million messages (mean and 95% CI), when its
        scenario gives prices; None otherwise."""
        if self.result is None or not self.result.results or COST_METRICS[0] not in self.result.metric_names():
            return None
        return {metric.split(".", 1)[1]: self.result.estimate(metric).as_dict() for metric in COST_METRICS}

    def as_dict(self) -> dict:
        return {
            "phase": self.phase,
            "value": json_safe(self.value),
            "label": self.label,
            "verdict": self.verdict,
            "replications": self.replications,
            "replications_tried": self.history,
            "objectives": {k: {"target": v["target"], "mean": json_safe(v["mean"]), "ci95": [json_safe(x) for x in v["ci95"]], "status": v["status"]}
                           for k, v in self.objectives.items()},
            "error": self.error,
            "cost": self.cost(),
        }


def show_objective(key: str, value) -> str:
    """An objective's value as its SLO is written: a duration, a rate, or a plain number."""
    if value is None:
        return "–"
    if key.startswith("latency"):
        return format_duration(value)
    if key == "min_throughput":
        return f"{value:.4g}/s"
    return f"{value:.3g}"


def verdict_of(result: Result) -> str:
    """met, not met, uncertain (from the SLO report), or failed when no replication finished."""
    if not result.results:
        return "failed"
    report = result.slo_report() or {}
    statuses = [v["status"] for v in report.values()]
    if "not met" in statuses:
        return "not met"
    if any(s != "met" for s in statuses):
        return "uncertain"
    return "met"


class Evaluator:
    """Evaluates candidates (sets of overrides) on an executor, caching each, adding replications
    to uncertain ones (doubling, or by the precision rule, up to ``max_replications``)."""

    def __init__(self, source: Path, seed: int | None, replications: int, max_replications: int, executor: Executor,
                 on_run: Callable[[Run], None] | None = None):
        self.source = source
        self.seed = seed
        self.replications = replications
        self.max_replications = max(max_replications, replications)
        self.executor = executor
        self.on_run = on_run
        self.cache: dict[tuple[str, ...], Run] = {}
        self.loads: dict[tuple[str, ...], tuple[Scenario | None, str | None]] = {}
        self.runs: list[Run] = []
        self.replications_run = 0

    def load(self, overrides: Sequence[str]) -> tuple[Scenario | None, str | None]:
        key = tuple(overrides)
        if key not in self.loads:
            try:
                self.loads[key] = (load_scenario(self.source, key), None)
            except ScenarioError as exc:
                self.loads[key] = (None, "; ".join(p.message if not p.path else f"{p.path}: {p.message}" for p in exc.problems))
        return self.loads[key]

    def evaluate(self, candidates: Sequence[tuple[str, Any, str, Sequence[str]]]) -> list[Run]:
        """Evaluate ``(phase, value, label, overrides)`` candidates together; return their Runs."""
        runs, pending = [], []
        for phase, value, label, overrides in candidates:
            key = tuple(overrides)
            if key in self.cache:
                cached = self.cache[key]
                if cached.phase != phase:  # the same scenario, seen by the other search: reuse its replications
                    cached = Run(phase, value, label, key, cached.verdict, cached.replications, list(cached.history), cached.objectives,
                                 cached.error, cached.result, cached.scenario)
                    self.cache[key] = cached
                    self._done(cached)
                runs.append(cached)
                continue
            run = Run(phase, value, label, key)
            self.cache[key] = run
            runs.append(run)
            scenario, error = self.load(key)
            if scenario is None:
                run.verdict, run.error = "invalid", error
                self._done(run)
                continue
            run.scenario = scenario
            pending.append(run)
        gathered: dict[int, tuple[list, list]] = {id(r): ([], []) for r in pending}
        want = {id(r): self.replications for r in pending}
        while pending:
            jobs = [Job(r.scenario, self.seed if self.seed is not None else r.scenario.seed, range(r.replications, want[id(r)])) for r in pending]
            for j, results, failures in run_jobs(jobs, self.executor):
                r = pending[j]
                gathered[id(r)][0].extend(results)
                gathered[id(r)][1].extend(failures)
                self.replications_run += len(results) + len(failures)
            still = []
            for r in pending:
                results, failures = gathered[id(r)]
                r.replications = want[id(r)]
                r.history.append(r.replications)
                seed = self.seed if self.seed is not None else r.scenario.seed
                r.result = Result(r.scenario, seed, r.replications, sorted(results, key=lambda x: x.replication), sorted(failures, key=lambda f: f.replication))
                if failures:
                    r.verdict, r.error = "failed", "; ".join(f"replication {f.replication}: {f.error}" for f in failures)
                else:
                    r.verdict = verdict_of(r.result)
                r.objectives = r.result.slo_report() or {}
                more = self.more_replications(r)
                if more is not None:
                    want[id(r)] = more
                    still.append(r)
                else:
                    self._done(r)
            pending = still
        return runs

    def more_replications(self, run: Run) -> int | None:
        """How many replications in all an uncertain value gets next (None: it is decided, or at
        the cap): with a ``precision`` in its scenario (``--precision``), by the precision rule
        that ``run`` follows (:func:`sim.jobs.replications_for_precision`), and none once its
        objectives' intervals are within that precision — the value then sits within the
        precision of a target, and stays uncertain; without one, doubled."""
        if run.verdict != "uncertain":
            return None
        if run.scenario.precision is not None:
            return replications_for_precision(run.result, run.scenario.precision, self.max_replications)
        return min(2 * run.replications, self.max_replications) if run.replications < self.max_replications else None

    def _done(self, run: Run) -> None:
        run.order = len(self.runs)
        self.runs.append(run)
        if self.on_run is not None:
            self.on_run(run)
