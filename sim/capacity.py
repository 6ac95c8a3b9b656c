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
2. **The headroom**: the largest factor by which every producer's rate (or one named rate) can
   grow while the chosen setup still meets the SLO with confidence, by bisection on the factor
   to a stated relative precision.

Every evaluation uses the same seed and replication indices (common random numbers), so
neighbouring values are compared on the same traffic.

The module also holds the analytic model of a single-stage system (:func:`single_stage`,
:func:`theory_of`), which sweeps and reports overlay on their simulations.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from . import analytic
from .distributions import Distribution, Exponential, Gamma
from .executors import Executor, make_executor
from .loading import Problem, ScenarioError, _apply_override, _parse_yaml, load_scenario
from .result import SLO_METRICS, Result
from .schema import Scenario, Slo
from .sweep import Job, _json_safe, run_jobs
from .units import format_duration

QUANTILES = {"p50": 0.50, "p95": 0.95, "p99": 0.99, "p999": 0.999}


class CapacityError(ValueError):
    """A capacity question that cannot be asked as given (no SLO, a bad --slo, a bad path)."""


# --- the analytic model of a single-stage system ------------------------------------------------


@dataclass
class Stage:
    """A system with a queueing model: Poisson (or renewal) producers → one fifo broker → one pool
    of identical workers that finishes messages (no crashes, errors or delivery latency)."""

    producers: tuple[str, ...]
    broker: str
    pool: str
    arrival_rate_per_s: float
    arrival_cv: float
    poisson: bool
    service: Distribution
    servers: int
    capacity: int | None  # places waiting in the broker; None: unbounded

    @property
    def mean_service_s(self) -> float:
        return self.service.mean

    @property
    def service_cv(self) -> float:
        return self.service.cv

    @property
    def exponential(self) -> bool:
        return isinstance(self.service, Exponential) or (isinstance(self.service, Gamma) and abs(self.service.shape - 1.0) < 1e-12)

    @cached_property
    def _samples(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Fixed draws (seed 0) for the approximate latency quantiles: service, uniform, unit exponential."""
        rng = np.random.default_rng(0)
        n = 100_000
        return self.service.draw(rng, n), rng.random(n), rng.exponential(1.0, n)

    def service_quantile(self, q: float) -> float:
        return float(np.quantile(self._samples[0], q))

    def describe(self, servers: int | None = None, rate: float | None = None) -> str:
        c = self.servers if servers is None else servers
        lam = self.arrival_rate_per_s if rate is None else rate
        arrivals = "Poisson" if self.poisson else f"renewal (cv {self.arrival_cv:.3g})"
        queue = "unbounded" if self.capacity is None else f"{self.capacity} places"
        return (f"{arrivals} arrivals at {lam:.4g}/s → fifo '{self.broker}' ({queue}) → {c} worker(s) '{self.pool}', "
                f"service {self.service.name} mean {format_duration(self.mean_service_s)} cv {self.service_cv:.3g}; "
                f"offered load {lam * self.mean_service_s:.4g} erlangs, ρ = {lam * self.mean_service_s / c:.3g}")


def _only(model, allowed: set[str]) -> list[str]:
    """Options of a spec set to something other than their default, beyond ``allowed``."""
    return sorted(set(model.model_dump(exclude_defaults=True)) - allowed)


def single_stage(scenario: Scenario) -> tuple[Stage | None, str]:
    """The scenario as a single queueing stage, or None and the reason it is not one."""
    if len(scenario.brokers) != 1:
        return None, f"the system has {len(scenario.brokers)} brokers; the formulas cover one broker and one worker pool"
    broker = scenario.brokers[0]
    if broker.kind != "fifo":
        return None, f"broker '{broker.name}' is of kind {broker.kind}, whose delivery semantics the M/M/c family does not model"
    extra = _only(broker, {"name", "kind", "capacity"})
    if extra:
        return None, f"broker '{broker.name}' has options ({', '.join(extra)}) the formulas do not model"
    if len(scenario.workers) != 1:
        return None, f"{len(scenario.workers)} worker pools; the formulas cover one pool of identical workers"
    pool = scenario.workers[0]
    extra = _only(pool, {"name", "consumes", "count", "service_time", "sends_to"})
    if extra:
        return None, f"worker pool '{pool.name}' has {', '.join(extra)}, which the formulas do not model"
    if pool.sends_to is not None:
        return None, f"worker pool '{pool.name}' sends to another stage"
    rates, poisson, cv = [], True, 1.0
    for producer in scenario.producers:
        extra = _only(producer, {"name", "arrivals", "sends_to"})
        if extra:
            return None, f"producer '{producer.name}' has {', '.join(extra)}, which the formulas do not model"
        process = producer.arrivals.process
        if process == "poisson":
            rates.append(producer.arrivals.rate)
        elif process in ("deterministic", "renewal") and len(scenario.producers) == 1:
            poisson = False
            rates.append(producer.arrivals.mean_rate())
            cv = 0.0 if process == "deterministic" else producer.arrivals.interarrival.build().cv
        else:
            return None, f"producer '{producer.name}' has {process} arrivals, which have no steady-state formula here"
    if not math.isfinite(cv):
        return None, "the inter-arrival times have an infinite variance"
    service = pool.service_time.build()
    if not math.isfinite(service.scv):
        return None, "the service time has an infinite variance"
    stage = Stage(tuple(p.name for p in scenario.producers), broker.name, pool.name, float(sum(rates)), float(cv), poisson,
                  service, pool.count, getattr(broker, "capacity", None))
    return stage, ""


@dataclass(frozen=True)
class Theory:
    """Long-run values of a single-stage system from queueing theory.

    ``values`` maps a flat metric name (as in ``Result.estimate``) to ``(value, exact)``: exact
    results (M/M/c, M/M/c/K, Erlang B, Pollaczek–Khinchine for M/G/1, utilisation and
    throughput of any stable queue) and approximations (Allen–Cunneen) are told apart."""

    model: str
    description: str
    values: dict[str, tuple[float, bool]]
    note: str = ""

    @property
    def exact(self) -> bool:
        return all(exact for _, exact in self.values.values())


def theory_for(stage: Stage, servers: int | None = None, capacity: int | None | str = "same", rate: float | None = None) -> Theory | None:
    """The model of ``stage`` with another worker count, queue capacity or arrival rate; None when
    no formula applies (an unstable unbounded queue, a bounded queue with non-exponential service)."""
    c = stage.servers if servers is None else int(servers)
    k = stage.capacity if capacity == "same" else capacity
    lam = stage.arrival_rate_per_s if rate is None else float(rate)
    es = stage.mean_service_s
    mu = 1.0 / es
    b, w = f"brokers.{stage.broker}", f"workers.{stage.pool}"
    description = stage.describe(c, lam)
    values: dict[str, tuple[float, bool]] = {f"{w}.service_s.mean": (es, True)}

    def fill(m: analytic.QueueMetrics, exact: bool, exact_flow: bool = True) -> None:
        values.update({
            "system.latency_s.mean": (m.sojourn_s, exact),
            "system.in_system_mean": (m.number_in_system, exact),
            "system.throughput_per_s": (m.throughput_per_s, exact_flow),
            "system.rejected_rate": (m.p_reject, exact_flow),
            f"{b}.wait_s.mean": (m.wait_s, exact),
            f"{b}.length_mean": (m.queue_length, exact),
            f"{w}.utilization": (m.utilization, exact_flow),
            f"{w}.busy_mean": (m.utilization * c, exact_flow),
        })

    if k is None:
        if lam * es >= c:
            return None
        if stage.poisson and stage.exponential:
            fill(analytic.mmc(lam, mu, c), True)
            for key, q in QUANTILES.items():
                values[f"system.latency_s.{key}"] = (analytic.mmc_sojourn_quantile(q, lam, mu, c), True)
                values[f"{b}.wait_s.{key}"] = (analytic.mmc_wait_quantile(q, lam, mu, c), True)
            return Theory("M/M/1" if c == 1 else "M/M/c (Erlang C)", description, values)
        if stage.poisson and c == 1:
            fill(analytic.mg1(lam, es, stage.service_cv), True)
            return Theory("M/G/1 (Pollaczek–Khinchine)", description, values, "means only: the P-K formula gives no percentiles")
        fill(analytic.ggc_allen_cunneen(lam, stage.arrival_cv, es, stage.service_cv, c), False)
        return Theory("G/G/c (Allen–Cunneen)", description, values,
                      "an approximation of the means; utilisation and throughput are exact for any stable queue")
    if not stage.poisson:
        return None
    if stage.exponential:
        fill(analytic.mmck(lam, mu, c, c + k), True)
        return Theory("M/M/c/K", description + f"; K = {c + k} in the system", values)
    if k == 0:
        fill(analytic.mmcc(lam, mu, c), True)
        return Theory("M/G/c/c (Erlang B)", description, values, "Erlang B is insensitive to the service distribution")
    return None


def theory_of(scenario: Scenario) -> Theory | None:
    """The queueing model of ``scenario`` if it is a single stage with a formula, else None."""
    stage, _ = single_stage(scenario)
    return theory_for(stage) if stage is not None else None


def approx_latency_quantile(stage: Stage, q: float, servers: int | None = None, rate: float | None = None) -> float:
    """An approximate q-quantile of end-to-end latency for non-exponential service: the wait is 0
    with the Erlang C probability C of not waiting and otherwise exponential with the mean that
    makes the Allen–Cunneen mean wait, convolved (by sampling) with the service time. Only a
    starting point for the search, never shown as theory."""
    c = stage.servers if servers is None else servers
    lam = stage.arrival_rate_per_s if rate is None else rate
    service, u, e = stage._samples
    a = lam * stage.mean_service_s
    p_wait = analytic.erlang_c(c, a)
    wait = analytic.ggc_allen_cunneen(lam, stage.arrival_cv, stage.mean_service_s, stage.service_cv, c).wait_s
    waits = np.where(u < p_wait, e * (wait / p_wait if p_wait > 0 else 0.0), 0.0)
    return float(np.quantile(waits + service, q))


def _theory_checks(stage: Stage, slo: dict, servers: int, capacity, rate: float) -> tuple[bool | None, dict[str, tuple[float, bool, bool]]]:
    """Whether theory says every objective it can evaluate is met: (all met or None if unstable,
    {objective: (value, exact, met)})."""
    model = theory_for(stage, servers, capacity, rate)
    if model is None:
        return None, {}
    out = {}
    for key, target in slo.items():
        metric, sense = SLO_METRICS[key]
        if metric in model.values:
            value, exact = model.values[metric]
        elif key.startswith("latency_p") and capacity is None and stage.poisson and not stage.exponential:
            value, exact = approx_latency_quantile(stage, QUANTILES[metric.rsplit(".", 1)[1]], servers, rate), False
        elif key == "max_loss_rate":
            value, exact = 0.0, True  # a fifo broker loses nothing
        else:
            continue
        met = value <= target if sense == "max" else value >= target
        out[key] = (value, exact, met)
    return all(m for _, _, m in out.values()), out


@dataclass
class AnalyticEstimate:
    """Where the search starts: the smallest value meeting the objectives theory can evaluate."""

    value: int | float | None
    model: str
    exact: bool
    considered: dict[str, tuple[float, bool, bool]]
    ignored: list[str]
    note: str = ""
    infeasible: str | None = None

    def as_dict(self) -> dict:
        return {
            "value": self.value,
            "model": self.model,
            "exact": self.exact,
            "objectives": {k: {"value": v, "exact": e, "met": m} for k, (v, e, m) in self.considered.items()},
            "not_evaluated": self.ignored,
            "note": self.note,
            "infeasible": self.infeasible,
        }


def analytic_estimate(scenario: Scenario, path: str, slo: dict) -> tuple[AnalyticEstimate | None, str]:
    """The analytic starting point for the smallest ``path`` (a worker count or a queue capacity)."""
    stage, reason = single_stage(scenario)
    if stage is None:
        return None, reason
    if path == f"workers.{stage.pool}.count":
        servers_of = lambda v: v  # noqa: E731
        capacity_of = lambda v: stage.capacity  # noqa: E731
        start = int(math.floor(stage.arrival_rate_per_s * stage.mean_service_s)) + 1 if stage.capacity is None else 1
        # More workers never bring latency below the service time itself.
        for key, target in slo.items():
            if key == "latency_mean" and target < stage.mean_service_s:
                return AnalyticEstimate(None, "service time", True, {}, [], infeasible=(
                    f"latency_mean {format_duration(target)} is below the mean service time {format_duration(stage.mean_service_s)}: no number of workers can meet it")), ""
            if key.startswith("latency_p") and key in QUANTILES_OF_SLO:
                floor = stage.service_quantile(QUANTILES_OF_SLO[key])
                if target < 0.98 * floor:
                    return AnalyticEstimate(None, "service time", False, {}, [], infeasible=(
                        f"{key} {format_duration(target)} is below the same percentile of the service time alone (about "
                        f"{format_duration(floor)}): no number of workers can meet it")), ""
    elif path == f"brokers.{stage.broker}.capacity":
        if not stage.exponential:
            return None, "a bounded queue with non-exponential service has no formula beyond capacity 0 (Erlang B)"
        servers_of = lambda v: stage.servers  # noqa: E731
        capacity_of = lambda v: v  # noqa: E731
        start = 0
    else:
        return None, f"the analytic estimate covers the worker count (workers.{stage.pool}.count) and the queue capacity (brokers.{stage.broker}.capacity)"

    def check(v):
        return _theory_checks(stage, slo, servers_of(v), capacity_of(v), stage.arrival_rate_per_s)

    ok, considered = check(start)
    if not considered and ok is not None:
        return None, "no objective of the SLO has a formula for this system"
    value = None
    if path.endswith(".count"):
        for v in range(start, start + 100_000):
            ok, considered = check(v)
            if ok:
                value = v
                break
            if v > start + 5 and _flat(check(v - 1)[1], considered):
                break
    else:  # the capacity: rejections fall as it grows; bracket then bisect
        lo, hi = -1, 0
        while hi <= 1_000_000:
            ok, considered = check(hi)
            if ok:
                break
            lo, hi = hi, max(1, hi * 2)
        else:
            hi = None
        if hi is not None:
            while hi - lo > 1:
                mid = (lo + hi) // 2
                if check(mid)[0]:
                    hi = mid
                else:
                    lo = mid
            value = hi
            ok, considered = check(hi)
    model = theory_for(stage, servers_of(value if value is not None else start), capacity_of(value if value is not None else start))
    name = model.model if model is not None else "queueing theory"
    exact = all(e for _, e, _ in considered.values())
    ignored = [k for k in slo if k not in considered]
    note = "" if value is not None else "theory finds no value meeting the objectives it can evaluate"
    return AnalyticEstimate(value, name, exact, considered, ignored, note), ""


QUANTILES_OF_SLO = {"latency_p50": 0.5, "latency_p95": 0.95, "latency_p99": 0.99, "latency_p999": 0.999}


def _flat(previous: dict, current: dict) -> bool:
    """Theory values that stopped improving (more workers change nothing)."""
    return bool(current) and all(abs(previous[k][0] - current[k][0]) <= 1e-9 * max(1.0, abs(current[k][0])) for k in current if not current[k][2] and k in previous)


# --- SLO and overrides --------------------------------------------------------------------------


def _raw_data(source: Path, overrides: Sequence[str]):
    text = source.read_text() if source.exists() else ""
    data = _parse_yaml(text, str(source))
    for spec in overrides:
        _apply_override(data, spec, str(source))
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
    _apply_override(data, f"{path}=0", str(source))


TIME_FIELDS = {"mean", "value", "sd", "scale", "low", "high", "unit"}


def _value_at(scenario: Scenario, path: str) -> Any:
    node: Any = scenario.model_dump()
    for part in path.split("."):
        if isinstance(node, list):
            match = [item for item in node if isinstance(item, dict) and str(item.get("name")) == part]
            if match:
                node = match[0]
            elif part.isdigit() and int(part) < len(node):
                node = node[int(part)]
            else:
                raise CapacityError(f"--rate {path}: no item named '{part}'")
        elif isinstance(node, dict) and part in node:
            node = node[part]
        else:
            raise CapacityError(f"--rate {path}: no key '{part}'")
    return node


def load_overrides(scenario: Scenario, factor: float, rate_path: str | None = None) -> list[str]:
    """Overrides multiplying the arrival rate of every producer (or of ``rate_path``) by ``factor``:
    Poisson and deterministic rates, each step of a schedule, the time scale of a trace, and the
    time parameters of a renewal process's inter-arrival distribution."""
    if rate_path is not None:
        value = _value_at(scenario, rate_path)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise CapacityError(f"--rate {rate_path} is not a number (got {value!r}); name a rate such as producers.web.arrivals.rate")
        return [f"{rate_path}={float(value) * factor!r}"]
    out = []
    for p in scenario.producers:
        a = p.arrivals
        base = f"producers.{p.name}.arrivals"
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
            raise CapacityError(f"cannot scale the arrivals of producer {p.name} ({a.process}); name one rate with --rate")
    return out


def producer_rates(scenario: Scenario) -> dict[str, float]:
    return {p.name: float(p.arrivals.mean_rate()) for p in scenario.producers}


# --- evaluating candidates ----------------------------------------------------------------------


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
            return f"{key} ({_show(key, o['mean'])} [{_show(key, o['ci95'][0])}, {_show(key, o['ci95'][1])}] against {_show(key, o['target'])})"

        bad = [k for k in self.failing if self.objectives[k]["status"] == "not met"]
        unsure = [k for k in self.failing if self.objectives[k]["status"] != "not met"]
        if bad:
            return "does not meet " + ", ".join(show(k) for k in bad)
        return (f"is uncertain for {', '.join(show(k) for k in unsure)} even with {self.replications} replications, "
                "so it does not meet the SLO with confidence")

    def as_dict(self) -> dict:
        return {
            "phase": self.phase,
            "value": _json_safe(self.value),
            "label": self.label,
            "verdict": self.verdict,
            "replications": self.replications,
            "replications_tried": self.history,
            "objectives": {k: {"target": v["target"], "mean": _json_safe(v["mean"]), "ci95": [_json_safe(x) for x in v["ci95"]], "status": v["status"]}
                           for k, v in self.objectives.items()},
            "error": self.error,
        }


def _show(key: str, value) -> str:
    if value is None:
        return "–"
    if key.startswith("latency"):
        return format_duration(value)
    if key == "min_throughput":
        return f"{value:.4g}/s"
    return f"{value:.3g}"


def verdict_of(result: Result) -> str:
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
    to uncertain ones (doubling, up to ``max_replications``)."""

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
                if r.verdict == "uncertain" and r.replications < self.max_replications:
                    want[id(r)] = min(2 * r.replications, self.max_replications)
                    still.append(r)
                else:
                    self._done(r)
            pending = still
        return runs

    def _done(self, run: Run) -> None:
        run.order = len(self.runs)
        self.runs.append(run)
        if self.on_run is not None:
            self.on_run(run)


# --- the searches -------------------------------------------------------------------------------


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


@dataclass
class CapacityPlan:
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
    runs: list[Run] = field(default_factory=list)

    @property
    def value(self) -> int | None:
        return self.search.value if self.search else None

    def summary(self) -> dict:
        return {
            "source": str(self.source),
            "parameter": self.parameter,
            "slo": self.slo,
            "seed": self.seed,
            "replications": self.replications,
            "max_replications": self.max_replications,
            "recommendation": None if self.search is None else {"value": self.search.value, "reason": self.search.reason},
            "search": self.search.as_dict() if self.search else None,
            "headroom": self.headroom.as_dict() if self.headroom else None,
            "values_evaluated": len(self.runs),
            "replications_run": self.replications_run,
            "executor": self.executor,
        }

    def plot_search(self, ax=None):
        """Each SLO metric (mean and 95% CI) at the values the search evaluated, with the target."""
        return _plot_runs(self, [r for r in self.runs if r.phase == "search"], self.parameter, ax)

    def plot_headroom(self, ax=None):
        """Each SLO metric at the load factors the headroom search evaluated, with the target."""
        return _plot_runs(self, [r for r in self.runs if r.phase == "headroom"], "load factor (× every producer's rate)"
                          if not (self.headroom and self.headroom.rate_path) else f"factor on {self.headroom.rate_path}", ax)


def _plot_runs(plan: CapacityPlan, runs: list[Run], xlabel: str | None, ax=None):
    """The latency objectives at each evaluated value: mean and 95% CI, markers coloured by verdict."""
    from matplotlib.ticker import MaxNLocator

    from .sweep import _axes, metric_label

    phase = runs[0].phase if runs else "search"
    ax = _axes(ax, f"{plan.source.stem}: {'capacity search' if phase == 'search' else 'headroom'}")
    colours = {"met": "tab:green", "not met": "tab:red", "uncertain": "tab:orange", "failed": "tab:red"}
    shown: set[str] = set()
    palette = iter(["tab:blue", "tab:purple", "tab:brown", "tab:cyan", "tab:olive", "tab:gray"])
    for key in [k for k in plan.slo if k.startswith("latency")]:
        metric = SLO_METRICS[key][0]
        line_colour = next(palette)
        done = sorted((r.value, r.objectives[key], r.verdict) for r in runs if key in r.objectives and r.objectives[key]["mean"] is not None)
        if not done:
            continue
        xs = np.array([d[0] for d in done], dtype=float)
        mean = np.array([d[1]["mean"] for d in done])
        low = np.array([d[1]["ci95"][0] if d[1]["ci95"][0] is not None else d[1]["mean"] for d in done])
        high = np.array([d[1]["ci95"][1] if d[1]["ci95"][1] is not None else d[1]["mean"] for d in done])
        ax.errorbar(xs, mean, yerr=[mean - low, high - mean], fmt="-", capsize=3, color=line_colour, label=metric_label(metric), zorder=1)
        colour = line_colour
        for x, m, (_v, _o, verdict) in zip(xs, mean, done):
            ax.scatter([x], [m], color=colours.get(verdict, "grey"), zorder=2, s=36, edgecolor="black", linewidth=0.5,
                       label=f"verdict: {verdict}" if verdict not in shown else None)
            shown.add(verdict)
        ax.axhline(plan.slo[key], color=colour, linestyle=":", label=f"SLO {key} {format_duration(plan.slo[key])}")
    invalid = [r.value for r in runs if r.verdict == "invalid"]
    if invalid:
        ax.plot(invalid, [0.02] * len(invalid), "x", color="tab:red", transform=ax.get_xaxis_transform(), clip_on=False, label="invalid (e.g. unstable)")
    if phase == "search":
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel(xlabel or "value")
    ax.set_ylabel("end-to-end latency (s)")
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize="small")
    return ax


def _first_valid(evaluator: Evaluator, make: Callable[[int], list[str]], lo: int, hi: int | None) -> int | None:
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
                    estimate: AnalyticEstimate | None, estimate_note: str) -> Search:
    """Bracket then bisect the smallest integer value of ``parameter`` meeting the SLO with confidence."""
    lowest: int | None = None

    def make(v: int) -> list[str]:
        return [*base, f"{parameter}={v}"]

    def run(*values: int) -> list[Run]:
        runs = evaluator.evaluate([("search", v, f"{parameter}={v}", make(v)) for v in values])
        crashed = next((r for r in runs if r.verdict == "failed"), None)
        if crashed is not None:
            raise _Crashed(crashed)
        return runs

    def search(value, reason, warnings=()):
        return Search(parameter, value, reason, [r for r in evaluator.runs if r.phase == "search"], estimate, estimate_note, lowest, list(warnings))

    if estimate is not None and estimate.infeasible:
        return search(None, estimate.infeasible)
    lowest = _first_valid(evaluator, make, lo, hi)
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
        if r.phase == "search" and isinstance(r.value, int) and r.value > good and r.verdict == "not met":
            warnings.append(f"{parameter}={r.value} does not meet the SLO although {good} does: the objectives are not monotone in {parameter}")
    return search(good, f"{parameter}={good} meets every objective with confidence, and {why}", warnings)


def headroom_search(evaluator: Evaluator, base: Sequence[str], scenario: Scenario, precision: float, rate_path: str | None,
                    slo: dict, max_factor: float = 16.0) -> Headroom:
    """The largest factor on the arrival rates meeting the SLO with confidence, to ``precision``."""
    rates = {rate_path: float(_value_at(scenario, rate_path))} if rate_path else producer_rates(scenario)

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
        estimate, model_name = _theory_headroom(stage, slo)
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


def _theory_headroom(stage: Stage, slo: dict) -> tuple[float | None, str | None]:
    """The largest load factor meeting the objectives theory can evaluate (bisection on λ)."""
    def ok(f):
        met, considered = _theory_checks(stage, slo, stage.servers, stage.capacity, stage.arrival_rate_per_s * f)
        return bool(met) and bool(considered)

    model = theory_for(stage)
    if model is None or not ok(1e-6):
        return None, None
    lo = 1e-6
    hi = stage.servers / (stage.arrival_rate_per_s * stage.mean_service_s) if stage.capacity is None else 1e3
    if stage.capacity is not None and ok(hi):
        return None, None
    for _ in range(60):
        mid = math.sqrt(lo * hi)
        if ok(mid):
            lo = mid
        else:
            hi = mid
    return lo, model.model


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
    precision: float = 0.05,
    max_factor: float = 16.0,
    on_run: Callable[[Run], None] | None = None,
    on_estimate: Callable[[AnalyticEstimate | None, str], None] | None = None,
) -> CapacityPlan:
    """Find the smallest integer ``parameter`` (e.g. ``workers.pool.count``) meeting the SLO with
    confidence, then the headroom of that setup. ``parameter`` None: the headroom of the scenario
    as it is. ``slo`` adds or replaces objectives (``latency_p99=2s``); ``replications`` is where
    each value starts (the file's by default, at least 2), ``max_replications`` the cap for
    uncertain ones (4× by default)."""
    source = Path(source)
    if not 0 < precision < 1:
        raise CapacityError(f"--precision is a relative precision between 0 and 1 (e.g. 0.05), got {precision}")
    base, slo_targets = slo_overrides(source, overrides, slo)
    if parameter is not None:
        check_path(source, overrides, parameter)
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
        if parameter is not None:
            estimate, note = None, "--no-estimate" if not use_estimate else ""
            if use_estimate:
                reference = probe
                if reference is None:
                    lowest = _first_valid(evaluator, lambda v: [*base, f"{parameter}={v}"], minimum, maximum)
                    reference = evaluator.load([*base, f"{parameter}={lowest}"])[0] if lowest is not None else None
                if reference is not None:
                    estimate, note = analytic_estimate(reference, parameter, slo_targets)
            if on_estimate is not None:
                on_estimate(estimate, note)
            search = search_smallest(evaluator, parameter, base, minimum, maximum, estimate, note)
            if search.value is not None:
                chosen_overrides.append(f"{parameter}={search.value}")
        room = None
        if headroom and (parameter is None or (search is not None and search.value is not None)):
            chosen = evaluator.load(chosen_overrides)[0]
            if chosen is not None:
                room = headroom_search(evaluator, chosen_overrides, chosen, precision, rate_path, slo_targets, max_factor)
    finally:
        if owned:
            runner.close()
    return CapacityPlan(source, parameter, slo_targets, search, room, n, cap, seed, evaluator.replications_run,
                        description, tuple(overrides), list(evaluator.runs))
