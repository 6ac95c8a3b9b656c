"""The two searches of capacity planning: the smallest value meeting the SLO, and the headroom.

:func:`search_smallest` brackets then bisects the smallest integer value of a parameter at which
every objective is met with confidence, starting from the analytic estimate when there is one.
:func:`headroom_search` bisects the largest factor on the arrival rates at which a setup still
meets the SLO, to a relative precision. Both assume the objectives get easier as the value grows
and harder as the load grows; both stop when a candidate's replications fail, since a crash is a
problem with the model or the scenario, not a capacity finding.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

from pydantic import BaseModel

from .components.producers import DeterministicArrivals, PoissonArrivals, RenewalArrivals, ScheduleArrivals, TraceArrivals
from .evaluator import Evaluator, Run
from .overrides import value_at
from .problems import CapacityError, Problem, ScenarioError
from .result import SLO_METRICS
from .schema import Scenario
from .theory import AnalyticEstimate, single_stage, theory_headroom

TIME_FIELDS = {"mean", "value", "sd", "scale", "low", "high", "unit"}
ARRIVAL_KINDS = (PoissonArrivals, DeterministicArrivals, RenewalArrivals, ScheduleArrivals, TraceArrivals)

def rate_at(scenario: Scenario, path: str) -> Any:
    """The value at ``path`` in ``scenario`` (``--rate``); :class:`CapacityError` if there is none."""
    try:
        return value_at(scenario.model_dump(), path)
    except LookupError as exc:
        raise CapacityError(f"--rate {path}: {exc}") from None


def arrival_processes(scenario: Scenario) -> list[tuple[str, str, Any]]:
    """Every arrival process of the scenario, wherever a kind of part has one (a producer's, a web
    tier's, a task queue's callers and readers): ``(name of its part, path, spec)``."""
    found = []

    def walk(node: Any, path: str, name: str) -> None:
        if isinstance(node, ARRIVAL_KINDS):
            found.append((name, path, node))
        elif isinstance(node, BaseModel):
            for key in type(node).model_fields:
                walk(getattr(node, key), f"{path}.{key}" if path else key, name)
        elif isinstance(node, list):
            for item in node:
                if isinstance(getattr(item, "name", None), str):
                    walk(item, f"{path}.{item.name}", item.name)

    walk(scenario, "", "")
    return found


def load_overrides(scenario: Scenario, factor: float, rate_path: str | None = None) -> list[str]:
    """Overrides multiplying every arrival rate of the scenario (:func:`arrival_processes`; or
    ``rate_path`` alone) by ``factor``: Poisson and deterministic rates, each step of a schedule,
    the time scale of a trace, and the time parameters of a renewal process's inter-arrival
    distribution."""
    if rate_path is not None:
        value = rate_at(scenario, rate_path)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise CapacityError(f"--rate {rate_path} is not a number (got {value!r}); name a rate such as producers.web.arrivals.rate")
        return [f"{rate_path}={float(value) * factor!r}"]
    out = []
    for name, base, a in arrival_processes(scenario):
        if a.process in ("poisson", "deterministic"):
            out.append(f"{base}.rate={a.rate * factor!r}")
        elif a.process == "schedule":
            out += [f"{base}.steps.{i}.rate={step.rate * factor!r}" for i, step in enumerate(a.steps) if step.rate > 0]
        elif a.process == "trace":
            out.append(f"{base}.unit={a.unit / factor!r}")
        elif a.process == "renewal":
            spec = a.interarrival
            for name, value in spec.model_dump(exclude_none=True).items():
                if name in TIME_FIELDS:
                    out.append(f"{base}.interarrival.{name}={value / factor!r}")
                elif name == "rate":
                    out.append(f"{base}.interarrival.rate={value * factor!r}")
        else:
            raise CapacityError(f"cannot scale the arrivals of {name} ({a.process}); name one rate with --rate")
    return out


def arrival_rates(scenario: Scenario) -> dict[str, float]:
    """The mean rate of each arrival process, by the name of its part."""
    return {name: float(a.mean_rate()) for name, _, a in arrival_processes(scenario)}


@dataclass
class Search:
    """The smallest value of ``parameter`` meeting the SLO with confidence (None if none found)."""

    parameter: str
    value: int | None
    reason: str
    runs: list[Run]
    estimate: AnalyticEstimate | None
    estimate_note: str
    lowest_valid: int | None
    warnings: list[str] = field(default_factory=list)

    @property
    def chosen(self) -> Run | None:
        return next((r for r in self.runs if r.value == self.value and r.met), None)

    def as_dict(self) -> dict:
        return {
            "parameter": self.parameter,
            "value": self.value,
            "reason": self.reason,
            "analytic_estimate": self.estimate.as_dict() if self.estimate else None,
            "analytic_estimate_note": self.estimate_note,
            "smallest_valid_value": self.lowest_valid,
            "runs": [r.as_dict() for r in self.runs],
            "warnings": self.warnings,
        }


@dataclass
class Headroom:
    """The largest load factor at which the chosen setup meets the SLO with confidence."""

    factor: float | None
    failing_factor: float | None
    precision: float
    reason: str
    runs: list[Run]
    base_rates_per_s: dict[str, float]
    rate_path: str | None = None
    estimate: float | None = None
    estimate_model: str | None = None

    @property
    def rates_per_s(self) -> dict[str, float] | None:
        if self.factor is None:
            return None
        return {k: v * self.factor for k, v in self.base_rates_per_s.items()}

    def as_dict(self) -> dict:
        return {
            "factor": self.factor,
            "not_met_at_factor": self.failing_factor,
            "relative_precision": self.precision,
            "rate_path": self.rate_path,
            "base_rates_per_s": self.base_rates_per_s,
            "rates_per_s": self.rates_per_s,
            "analytic_estimate": self.estimate,
            "analytic_model": self.estimate_model,
            "reason": self.reason,
            "runs": [r.as_dict() for r in self.runs],
        }


def first_valid(evaluator: Evaluator, make: Callable[[int], list[str]], lo: int, hi: int | None) -> int | None:
    """The smallest value ≥ lo whose scenario loads (validity is assumed monotone: stability)."""
    def valid(v):
        return evaluator.load(make(v))[0] is not None

    if valid(lo):
        return lo
    bad, step = lo, 1
    while True:
        v = bad + step
        if hi is not None and v > hi:
            v = hi
        if valid(v):
            good = v
            break
        if hi is not None and v >= hi:
            return None
        bad, step = v, step * 2
        if step > 2**22:
            return None
    while good - bad > 1:
        mid = (good + bad) // 2
        if valid(mid):
            good = mid
        else:
            bad = mid
    return good


def _stopped_improving(previous: Run, current: Run) -> list[str]:
    """Objectives failing at both runs that improved by less than 1% from one to the other."""
    if previous.verdict in ("invalid", "failed") or current.verdict in ("invalid", "failed"):
        return []
    flat = []
    for key in current.failing:
        a, b = previous.objectives.get(key, {}).get("mean"), current.objectives[key]["mean"]
        if a is None or b is None:
            return []
        sense = SLO_METRICS[key][1]
        gain = (a - b) if sense == "max" else (b - a)
        if gain > 0.01 * max(abs(a), 1e-12):
            return []
        flat.append(key)
    return flat


class _Crashed(Exception):
    """Replications failed: a problem with the model or the scenario, which stops a search."""

    def __init__(self, run: Run):
        self.run = run


MAX_VALUE = 1 << 24


def search_smallest(evaluator: Evaluator, parameter: str, base: Sequence[str], lo: int, hi: int | None,
                    estimate: AnalyticEstimate | None, estimate_note: str, tag: str = "") -> Search:
    """Bracket then bisect the smallest integer value of ``parameter`` meeting the SLO with
    confidence; ``tag`` starts each run's label (the variant searched, when several are)."""
    lowest: int | None = None

    def make(v: int) -> list[str]:
        return [*base, f"{parameter}={v}"]

    def ours(r: Run) -> bool:
        return r.phase == "search" and r.overrides[:-1] == tuple(base)

    def run(*values: int) -> list[Run]:
        runs = evaluator.evaluate([("search", v, f"{tag}{parameter}={v}", make(v)) for v in values])
        crashed = next((r for r in runs if r.verdict == "failed"), None)
        if crashed is not None:
            raise _Crashed(crashed)
        return runs

    def search(value, reason, warnings=()):
        return Search(parameter, value, reason, [r for r in evaluator.runs if ours(r)], estimate, estimate_note, lowest, list(warnings))

    if estimate is not None and estimate.infeasible:
        return search(None, estimate.infeasible)
    lowest = first_valid(evaluator, make, lo, hi)
    if lowest is None:
        _, error = evaluator.load(make(lo))
        raise ScenarioError(str(evaluator.source), [Problem(f"no value of {parameter} from {lo} to {hi if hi is not None else 'any size'} gives a valid scenario; at {lo}: {error}")])
    try:
        start = lowest if estimate is None or estimate.value is None else min(max(int(estimate.value), lowest), hi if hi is not None else MAX_VALUE)
        if start - 1 >= lowest and estimate is not None and estimate.value is not None:
            run(start - 1, start)  # the estimate and the value below it, together
        first = run(start)[0]
        if first.met:
            good, bad = start, None
            step = 1
            while bad is None:
                v = good - step
                if v < lowest:
                    if good == lowest:
                        bad = lowest - 1
                        break
                    v = lowest
                r = run(v)[0]
                if r.met:
                    good = v
                    if v == lowest:
                        bad = lowest - 1
                    step *= 2
                else:
                    bad = v
        else:
            bad, good = start, None
            step, previous = 1, first
            while good is None:
                v = bad + step
                if hi is not None and v > hi:
                    if bad >= hi:
                        return search(None, f"even {parameter}={hi} (the --max) does not meet the SLO: it {previous.why()}")
                    v = hi
                if v > MAX_VALUE:
                    return search(None, f"no value of {parameter} up to {MAX_VALUE:,} meets the SLO; stopped looking")
                r = run(v)[0]
                if r.met:
                    good = v
                    break
                flat = _stopped_improving(previous, r) if step >= 2 else []
                if flat:
                    return search(None, f"{', '.join(flat)} stopped improving between {parameter}={previous.value} and {v} "
                                  f"(less than 1%): more of it does not help; the objective looks out of reach this way. {v} {r.why()}")
                bad, previous, step = v, r, step * 2
        while good - bad > 1:
            mid = (good + bad) // 2
            if run(mid)[0].met:
                good = mid
            else:
                bad = mid
    except _Crashed as crash:
        return search(None, f"the search stopped: at {crash.run.label} replications failed ({crash.run.error}); "
                      "a crash is a problem with the model or the scenario, not a capacity finding")
    below = evaluator.cache.get(tuple(make(bad)))
    if bad < lo:
        why = f"{good} is the smallest value searched (--min {lo})"
    elif below is None or below.verdict == "invalid":
        _, error = evaluator.load(make(bad))
        why = f"{bad} is not a valid scenario ({error})"
    else:
        why = f"{bad} {below.why()}"
    warnings = []
    for r in evaluator.runs:
        if ours(r) and isinstance(r.value, int) and r.value > good and r.verdict == "not met":
            warnings.append(f"{parameter}={r.value} does not meet the SLO although {good} does: the objectives are not monotone in {parameter}")
    return search(good, f"{parameter}={good} meets every objective with confidence, and {why}", warnings)


def search_cheapest(evaluator: Evaluator, found: Search, base: Sequence[str], hi: int | None, tag: str = "") -> Search:
    """From the smallest value meeting the SLO (``found``), the cheapest: step up one value at a
    time while the next also meets the SLO and costs less an hour (mean over its replications),
    up to ``hi``. The cost is assumed to fall, then rise, over the values meeting the SLO, so the
    first rise ends the walk. A count at a fixed price only rises: one more evaluation confirms the
    smallest. It falls where a larger value saves on what is billed by use (an SQS queue's
    ``wait_time``: fewer empty receives). :class:`CapacityError` if the setup has no price."""
    best = found.chosen
    if best is None:
        return found
    if best.cost() is None:
        raise CapacityError("--objective cost compares what the setups cost: give its workers (or brokers) a price")
    parameter = found.parameter

    def per_hour(r: Run) -> float:
        return r.cost()["per_hour_usd"]["mean"]

    v, why = best.value, None
    while why is None:
        v += 1
        if hi is not None and v > hi:
            why = f"it is the largest value searched (--max {hi})"
            break
        r = evaluator.evaluate([("search", v, f"{tag}{parameter}={v}", [*base, f"{parameter}={v}"])])[0]
        if r.verdict == "failed":
            why = f"at {r.label} replications failed ({r.error}); the walk stopped"
        elif not r.met:
            why = f"{parameter}={v} {r.why()}"
        elif per_hour(r) >= per_hour(best):
            why = f"{parameter}={v} costs as much or more (${per_hour(r):.4g}/h)"
        else:
            best = r
    runs = [r for r in evaluator.runs if r.phase == "search" and r.overrides[:-1] == tuple(base)]
    reason = (f"{parameter}={best.value} is the cheapest value meeting every objective with confidence (${per_hour(best):.4g}/h), "
              f"and {why}; the smallest meeting them is {found.value}")
    return Search(parameter, best.value, reason, runs, found.estimate, found.estimate_note, found.lowest_valid, found.warnings)


def headroom_search(evaluator: Evaluator, base: Sequence[str], scenario: Scenario, precision: float, rate_path: str | None,
                    slo: dict, max_factor: float = 16.0) -> Headroom:
    """The largest factor on the arrival rates meeting the SLO with confidence, to ``precision``."""
    rates = {rate_path: float(rate_at(scenario, rate_path))} if rate_path else arrival_rates(scenario)

    def make(f: float) -> list[str]:
        return list(base) if f == 1.0 else [*base, *load_overrides(scenario, f, rate_path)]

    def run(*factors: float) -> list[Run]:
        runs = evaluator.evaluate([("headroom", f, f"load ×{f:.4g}", make(f)) for f in factors])
        crashed = next((r for r in runs if r.verdict == "failed"), None)
        if crashed is not None:
            raise _Crashed(crashed)
        return runs

    def done(lo, hi, reason):
        return Headroom(lo, hi, precision, reason, [r for r in evaluator.runs if r.phase == "headroom"], rates, rate_path, estimate, model_name)

    estimate, model_name = None, None
    stage, _ = single_stage(scenario)
    if stage is not None and rate_path is None:
        estimate, model_name = theory_headroom(stage, slo)
    try:
        return _headroom(run, done, precision, estimate, max_factor, evaluator, make)
    except _Crashed as crash:
        return done(None, None, f"the search stopped: at {crash.run.label} replications failed ({crash.run.error})")


def _headroom(run, done, precision, estimate, max_factor, evaluator, make) -> Headroom:
    lo = 1.0
    if not run(1.0)[0].met:
        hi = 1.0
        lo = None
        while lo is None:
            f = hi / 2
            if f < 1 / 64:
                return done(None, hi, "the SLO is not met with confidence even at 1/64 of the load")
            if run(f)[0].met:
                lo = f
            else:
                hi = f
    else:
        hi = None
        if estimate is not None and estimate > lo * (1 + precision):
            e = estimate
            upper = e * (1 + 2 * precision)
            r_e, r_up = run(e, upper)
            if r_e.met and not r_up.met:
                lo, hi = e, upper
            elif r_e.met:
                lo = upper
            else:
                hi = e
                lower = e / (1 + 2 * precision)
                if lower > lo:
                    if run(lower)[0].met:
                        lo = lower
                    else:
                        hi = lower
        while hi is None:
            f = lo * 2
            if f > max_factor:
                if lo >= max_factor:
                    return done(lo, None, f"the SLO is still met at {lo:.4g}× the load; stopped looking (limit {max_factor:g}×)")
                f = max_factor
            if run(f)[0].met:
                lo = f
            else:
                hi = f
    while hi / lo - 1 > precision:
        mid = math.sqrt(lo * hi)
        if run(mid)[0].met:
            lo = mid
        else:
            hi = mid
    at = evaluator.cache.get(tuple(make(hi)))
    why = at.why() if at is not None else "does not meet the SLO"
    return done(lo, hi, f"the SLO is met with confidence at {lo:.4g}× the load, and {hi:.4g}× {why} "
                f"(bracket {hi / lo - 1:.1%} wide, precision {precision:.0%})")
