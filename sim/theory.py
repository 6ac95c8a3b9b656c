"""The analytic model of a single-stage system, and the analytic starting point of a capacity search.

A scenario is a *single stage* when Poisson (or renewal) producers feed one fifo broker consumed
by one pool of identical workers that finishes messages (no crashes, errors, or delivery
latency). :func:`single_stage` says whether it is one (and why not); :func:`theory_for` gives its
long-run values from queueing theory (Erlang C, Pollaczek–Khinchine, Allen–Cunneen, M/M/c/K,
Erlang B), each marked exact or approximate; sweeps and reports overlay them on simulations.
:func:`analytic_estimate` and :func:`theory_headroom` are where capacity searches start.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from . import analytic
from .components.base import Load
from .components.registry import SECTIONS, kind_of
from .distributions import Distribution
from .result import SLO_METRICS
from .schema import Scenario
from .topology import part_loads
from .units import format_duration

QUANTILES = {"p50": 0.50, "p95": 0.95, "p99": 0.99, "p999": 0.999}

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
        return self.service.exponential

    @cached_property
    def samples(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Fixed draws (seed 0) for the approximate latency quantiles: service, uniform, unit exponential."""
        rng = np.random.default_rng(0)
        n = 100_000
        return self.service.draw(rng, n), rng.random(n), rng.exponential(1.0, n)

    def service_quantile(self, q: float) -> float:
        return float(np.quantile(self.samples[0], q))

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
    for section in SECTIONS:
        if section not in ("producers", "brokers", "workers") and getattr(scenario, section):
            names = ", ".join(spec.name for spec in getattr(scenario, section))
            return None, f"the scenario has {section} ({names}), which the formulas do not model"
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
    extra = _only(pool, {"name", "consumes", "count", "service_time", "sends_to", "price_per_hour"})  # a price changes no dynamics
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


def queue_of(load: Load) -> tuple[analytic.QueueMetrics, bool] | None:
    """The multi-server queue of a part's :class:`~sim.components.base.Load` with Poisson
    arrivals: M/M/c (Erlang C, exact) when the holding time is exponential, else Allen–Cunneen
    (exact for one server: Pollaczek–Khinchine); None when it has no servers, is not Poisson or is unstable."""
    if load.servers is None or not load.poisson or load.busy_mean >= load.servers or load.held_s <= 0:
        return None
    if load.exponential:
        return analytic.mmc(load.rate_per_s, 1.0 / load.held_s, load.servers), True
    if not math.isfinite(load.held_scv):
        return None
    return analytic.ggc_allen_cunneen(load.rate_per_s, 1.0, load.held_s, math.sqrt(load.held_scv), load.servers), load.servers == 1


def parts_theory(scenario: Scenario) -> Theory | None:
    """Each part that serves without a broker in front (a web tier's handlers, a delay station)
    as a queue of its own, from its kind's :meth:`~sim.components.base.Kind.load` and
    :meth:`~sim.components.base.Kind.theory`; None when no part has a formula."""
    values: dict[str, tuple[float, bool]] = {}
    described = []
    for section, spec, load in part_loads(scenario):
        kind = kind_of(section)
        found = kind.theory(spec, load, queue_of)
        if found:
            values.update(found)
            servers = "infinite servers" if load.servers is None else f"{load.servers} servers, ρ = {load.offered_load:.3g}"
            described.append(f"{kind.noun.split(' ', 1)[1]} '{load.name}': {load.rate_per_s:.4g}/s, each held "
                             f"{format_duration(load.held_s)} on average ({servers})")
    if not values:
        return None
    return Theory("each part alone: M/G/c on a handler pool (Erlang C when exponential), M/G/∞ for a delay station",
                  "; ".join(described), values, "approximate where a holding time is not exponential (Allen–Cunneen); "
                  "utilisations, occupancies and mean stays are exact")


def theory_with_reason(scenario: Scenario) -> tuple[Theory | None, str]:
    """The queueing model of ``scenario``, or None and why not: a single stage's formula, else
    its parts' (web tiers, delay stations) each alone."""
    stage, reason = single_stage(scenario)
    if stage is not None:
        model = theory_for(stage)
        if model is None:
            return None, ("the queue is unstable" if stage.capacity is None else
                          "a bounded queue with non-exponential service has no formula beyond capacity 0 (Erlang B)")
        return model, ""
    model = parts_theory(scenario)
    return (model, "") if model is not None else (None, reason)


def theory_of(scenario: Scenario) -> Theory | None:
    """The queueing model of ``scenario`` (:func:`theory_with_reason`), else None."""
    return theory_with_reason(scenario)[0]


def approx_latency_quantile(stage: Stage, q: float, servers: int | None = None, rate: float | None = None) -> float:
    """An approximate q-quantile of end-to-end latency for non-exponential service: the wait is 0
    with the Erlang C probability C of not waiting and otherwise exponential with the mean that
    makes the Allen–Cunneen mean wait, convolved (by sampling) with the service time. Only a
    starting point for the search, never shown as theory."""
    c = stage.servers if servers is None else servers
    lam = stage.arrival_rate_per_s if rate is None else rate
    service, u, e = stage.samples
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


def theory_headroom(stage: Stage, slo: dict) -> tuple[float | None, str | None]:
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
