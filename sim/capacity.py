"""Capacity planning: the smallest setup that meets the SLO with confidence, and its headroom.

``plan_capacity`` answers two questions about a scenario with an ``slo:``:

1. **The smallest value** of an integer parameter (a worker count, a queue capacity) at which
   every objective is *met with confidence*: the unfavourable end of each 95% confidence
   interval is inside the objective (``Result.slo_report`` says "met"). It starts from an
   analytic estimate where the system has a queueing model (Erlang C for exponential service,
   Allen–Cunneen otherwise, M/M/c/K and Erlang B for bounded queues), evaluates that value and
   the one below together, then steps away from the estimate with doubling steps until the
   answer is bracketed, and bisects. A value whose verdict is *uncertain* (a CI straddling an
   objective) gets more replications — doubled, up to a cap — before it is decided; still
   uncertain at the cap, it counts as not meeting the SLO, since it is not met *with
   confidence*. A value whose scenario is invalid or unstable counts as failing and costs
   nothing to evaluate. The search assumes the objectives get easier as the value grows (more
   workers, a longer queue for rejections); it stops when the smallest value meeting the SLO
   is next to one that does not.
   With ``variants`` (each a set of overrides: an instance type's speed and its
   ``price_per_hour``, say), the search runs once per variant, and the plan recommends the
   **cheapest** of the answers: the lowest ``cost.per_hour_usd`` (mean over its replications).
   Within a variant the price per worker is fixed, so its smallest value is its cheapest; across
   variants the smallest count need not be the cheapest setup (fewer, faster, dearer workers).
   With ``objective="cost"`` the search goes on from the smallest value to the **cheapest** one
   meeting the SLO (:func:`~sim.searches.search_cheapest`): the same for a count at a fixed price,
   larger where a larger value saves on what is billed by use.
2. **The headroom**: the largest factor by which every arrival rate (or one named rate) can
   grow while the chosen setup still meets the SLO with confidence, by bisection on the factor
   to a stated relative precision.

Every evaluation uses the same seed and replication indices (common random numbers), so
neighbouring values are compared on the same traffic.

The analytic model is in :mod:`sim.theory`, the evaluation of candidates in :mod:`sim.evaluator`
and the two searches in :mod:`sim.searches`; this module asks the question and gathers the plan.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

from .capacity_plots import plot_runs
from .evaluator import Evaluator, Run
from .executors import Executor, make_executor
from .loading import load_scenario
from .overrides import apply_override, parse_yaml
from .problems import CapacityError, Problem, ScenarioError
from .schema import Slo
from .searches import Headroom, Search, first_valid, headroom_search, search_cheapest, search_smallest
from .theory import AnalyticEstimate, analytic_estimate


def _raw_data(source: Path, overrides: Sequence[str]):
    text = source.read_text() if source.exists() else ""
    data = parse_yaml(text, str(source))
    for spec in overrides:
        apply_override(data, spec, str(source))
    return data


def slo_overrides(source: str | Path, overrides: Sequence[str], slo_args: Sequence[str]) -> tuple[list[str], dict]:
    """``overrides`` plus one that sets the SLO (the file's, with ``--slo KEY=VALUE`` on top), and
    that SLO parsed (seconds, per second). Raises :class:`CapacityError` without any objective."""
    source = Path(source)
    if not source.exists():
        raise ScenarioError(str(source), [Problem("cannot read the file: no such file")])
    data = _raw_data(source, overrides)
    merged = dict(data.get("slo") or {}) if isinstance(data.get("slo") or {}, dict) else {}
    for arg in slo_args:
        key, sep, value = arg.partition("=")
        key = key.strip()
        if not sep or not value.strip():
            raise CapacityError(f"--slo takes KEY=VALUE (e.g. latency_p99=2s), got '{arg}'")
        if key not in Slo.model_fields:
            raise CapacityError(f"--slo: unknown objective '{key}' (objectives: {', '.join(Slo.model_fields)})")
        try:
            Slo.model_validate({key: value.strip()})
        except Exception as exc:  # pydantic's message, first line
            message = str(exc).splitlines()
            raise CapacityError(f"--slo {arg}: {message[2].strip() if len(message) > 2 else message[0]}") from None
        merged[key] = value.strip()
    if not merged:
        raise CapacityError("no service-level objective to meet: add an slo: section to the scenario, or pass --slo (e.g. --slo latency_p99=2s)")
    plain = {k: (float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else str(v)) for k, v in merged.items()}
    slo = Slo.model_validate(plain).model_dump(exclude_none=True)
    return [*overrides, "slo=" + json.dumps(plain)], slo


def check_path(source: str | Path, overrides: Sequence[str], path: str) -> None:
    """Raise :class:`ScenarioError` if ``path`` does not lead anywhere in the file."""
    data = _raw_data(Path(source), overrides)
    apply_override(data, f"{path}=0", str(source))


def parse_variant(source: Path, overrides: Sequence[str], text: str) -> tuple[str, ...]:
    """``--variant 'PATH=VALUE; PATH=VALUE'`` as overrides, each path checked against the file."""
    parts = tuple(p.strip() for p in text.split(";") if p.strip())
    if not parts or any("=" not in p for p in parts):
        raise CapacityError(f"--variant takes PATH=VALUE overrides separated by ';' (e.g. 'workers.pool.service_time.mean=0.5s; "
                            f"workers.pool.price_per_hour=0.2'), got '{text}'")
    for part in parts:
        check_path(source, overrides, part.partition("=")[0].strip())
    return parts


@dataclass
class Variant:
    """One setup compared by a plan with variants: its overrides, and the smallest value of the
    parameter meeting the SLO with them."""

    overrides: tuple[str, ...]
    search: Search

    @property
    def label(self) -> str:
        return "; ".join(self.overrides)

    @property
    def cost(self) -> dict | None:
        """The cost of its answer (per hour, per million messages), None without one or without prices."""
        chosen = self.search.chosen
        return chosen.cost() if chosen is not None else None

    def as_dict(self) -> dict:
        return {"overrides": list(self.overrides), "value": self.search.value, "reason": self.search.reason, "cost": self.cost}


def cheapest(variants: Sequence[Variant]) -> Variant:
    """The variant whose answer costs least an hour (the first on a tie); a variant without an
    answer is out; with no answer at all, the first. :class:`CapacityError` if an answer has no
    cost (its scenario gives no price)."""
    found = [v for v in variants if v.search.value is not None]
    unpriced = [v.label for v in found if v.cost is None]
    if unpriced:
        raise CapacityError(f"--variant: {unpriced[0]} gives no cost to compare: give its workers (or brokers) a price_per_hour")
    if not found:
        return variants[0]
    return min(found, key=lambda v: v.cost["per_hour_usd"]["mean"])


@dataclass
class CapacityPlan:
    """What :func:`plan_capacity` found: the search (None without a parameter), the headroom, and
    every evaluation in the order it finished."""

    source: Path
    parameter: str | None
    slo: dict
    search: Search | None
    headroom: Headroom | None
    replications: int
    max_replications: int
    seed: int | None
    replications_run: int
    executor: str
    overrides: tuple[str, ...]
    objective: str = "size"
    runs: list[Run] = field(default_factory=list)
    variants: list[Variant] = field(default_factory=list)

    @property
    def chosen_variant(self) -> Variant | None:
        """The cheapest variant (None without variants)."""
        return next((v for v in self.variants if v.search is self.search), None)

    @property
    def value(self) -> int | None:
        """The recommended value of the parameter (None: none found, or no parameter)."""
        return self.search.value if self.search else None

    @property
    def failed_runs(self) -> list[Run]:
        """Evaluations whose replications failed (raised): each stops its search."""
        return [r for r in self.runs if r.verdict == "failed"]

    def summary(self) -> dict:
        return {
            "source": str(self.source),
            "parameter": self.parameter,
            "objective": self.objective,
            "slo": self.slo,
            "seed": self.seed,
            "replications": self.replications,
            "max_replications": self.max_replications,
            "recommendation": None if self.search is None else {
                "value": self.search.value, "reason": self.search.reason,
                "variant": None if self.chosen_variant is None else list(self.chosen_variant.overrides),
                "cost": self.search.chosen.cost() if self.search.chosen is not None else None},
            "variants": [v.as_dict() for v in self.variants],
            "search": self.search.as_dict() if self.search else None,
            "headroom": self.headroom.as_dict() if self.headroom else None,
            "values_evaluated": len(self.runs),
            "values_failed": len(self.failed_runs),
            "replications_run": self.replications_run,
            "executor": self.executor,
        }

    def plot_search(self, ax=None):
        """Each SLO metric (mean and 95% CI) at the values the search evaluated, with the target."""
        return plot_runs(self, self.search.runs if self.search else [], self.parameter, ax)

    def plot_headroom(self, ax=None):
        """Each SLO metric at the load factors the headroom search evaluated, with the target."""
        return plot_runs(self, [r for r in self.runs if r.phase == "headroom"], "load factor (× every arrival rate)"
                          if not (self.headroom and self.headroom.rate_path) else f"factor on {self.headroom.rate_path}", ax)


def plan_capacity(
    source: str | Path,
    parameter: str | None,
    slo: Sequence[str] = (),
    overrides: Sequence[str] = (),
    replications: int | None = None,
    max_replications: int | None = None,
    seed: int | None = None,
    jobs: int | None = None,
    cluster: str | None = None,
    executor: Executor | None = None,
    minimum: int = 0,
    maximum: int | None = None,
    use_estimate: bool = True,
    headroom: bool = True,
    rate_path: str | None = None,
    headroom_precision: float = 0.05,
    max_factor: float = 16.0,
    on_run: Callable[[Run], None] | None = None,
    on_estimate: Callable[[AnalyticEstimate | None, str], None] | None = None,
    variants: Sequence[str] = (),
    objective: str = "size",
) -> CapacityPlan:
    """Find the smallest integer ``parameter`` (e.g. ``workers.pool.count``) meeting the SLO with
    confidence, then the headroom of that setup. ``parameter`` None: the headroom of the scenario
    as it is. ``slo`` adds or replaces objectives (``latency_p99=2s``); ``replications`` is where
    each value starts (the file's by default, at least 2), ``max_replications`` the cap for
    uncertain ones (4× by default); a ``precision`` in the scenario (``overrides``
    ``precision=0.05``, or ``--precision``) sizes an uncertain value's extra replications by the
    precision rule instead of doubling them (:meth:`sim.evaluator.Evaluator.more_replications`).
    ``variants`` (``'PATH=VALUE; PATH=VALUE'`` each): search each, and recommend the cheapest
    answer. ``objective`` ``"cost"``: the cheapest value meeting the SLO, not the smallest (in
    each variant)."""
    source = Path(source)
    if objective not in ("size", "cost"):
        raise CapacityError(f"--objective is size (the smallest value) or cost (the cheapest), got '{objective}'")
    if objective == "cost" and parameter is None:
        raise CapacityError("--objective cost looks for the cheapest value of a parameter: give --vary too")
    if variants and parameter is None:
        raise CapacityError("--variant compares the smallest value of a parameter under each variant: give --vary too")
    if not 0 < headroom_precision < 1:
        raise CapacityError(f"--headroom-precision is a relative precision between 0 and 1 (e.g. 0.05), got {headroom_precision}")
    base, slo_targets = slo_overrides(source, overrides, slo)
    if parameter is not None:
        check_path(source, overrides, parameter)
    variant_overrides = [parse_variant(source, overrides, v) for v in variants]
    if maximum is not None and maximum < minimum:
        raise CapacityError(f"--max {maximum} is below --min {minimum}")
    probe = None
    try:
        probe = load_scenario(source, base)
    except ScenarioError:
        if parameter is None:
            raise
    n = replications if replications is not None else (probe.replications if probe is not None else 10)
    if n < 2:
        raise CapacityError("capacity planning needs at least 2 replications per value: a confidence interval needs two")
    cap = max_replications if max_replications is not None else 4 * n
    owned = executor is None
    runner = make_executor(jobs, cluster) if owned else executor
    description = runner.describe()
    evaluator = Evaluator(source, seed, n, cap, runner, on_run)
    try:
        search = None
        chosen_overrides = list(base)
        compared: list[Variant] = []
        if parameter is not None:
            for extra in variant_overrides or [()]:
                searched = [*base, *extra]
                tag = f"({'; '.join(extra)}) " if extra else ""
                search = _smallest(evaluator, parameter, searched, probe if not extra else evaluator.load(searched)[0], slo_targets,
                                   minimum, maximum, use_estimate, on_estimate, tag)
                if objective == "cost":
                    search = search_cheapest(evaluator, search, searched, maximum, tag)
                compared.append(Variant(tuple(extra), search))
            winner = cheapest(compared) if variant_overrides else compared[0]
            search = winner.search
            chosen_overrides = [*base, *winner.overrides]
            if search.value is not None:
                chosen_overrides.append(f"{parameter}={search.value}")
        room = None
        if headroom and (parameter is None or (search is not None and search.value is not None)):
            chosen = evaluator.load(chosen_overrides)[0]
            if chosen is not None:
                room = headroom_search(evaluator, chosen_overrides, chosen, headroom_precision, rate_path, slo_targets, max_factor)
    finally:
        if owned:
            runner.close()
    return CapacityPlan(source, parameter, slo_targets, search, room, n, cap, seed, evaluator.replications_run,
                        description, tuple(overrides), objective, list(evaluator.runs), compared if variants else [])


def _smallest(evaluator: Evaluator, parameter: str, base: list[str], probe, slo_targets: dict, minimum: int, maximum: int | None,
              use_estimate: bool, on_estimate, tag: str) -> Search:
    """The smallest value of ``parameter`` with the overrides ``base``, from the analytic estimate
    of ``probe`` (the scenario with ``base``, None when it does not load) when asked."""
    estimate, note = None, "--no-estimate" if not use_estimate else ""
    if use_estimate:
        reference = probe
        if reference is None:
            lowest = first_valid(evaluator, lambda v: [*base, f"{parameter}={v}"], minimum, maximum)
            reference = evaluator.load([*base, f"{parameter}={lowest}"])[0] if lowest is not None else None
        if reference is not None:
            estimate, note = analytic_estimate(reference, parameter, slo_targets)
    if on_estimate is not None:
        on_estimate(estimate, note)
    return search_smallest(evaluator, parameter, base, minimum, maximum, estimate, note, tag)
