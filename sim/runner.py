"""Running one replication of a scenario (many run through :mod:`sim.jobs`).

A replication is a pure function of (scenario, seed, replication index), so replications can run
in any order, on any number of processes, with identical results. What a replication returns is
small (metrics, checks, 200-bin time series, a latency histogram, the sketches of its distributions
and the counts of its proportions), never per-message arrays.
"""

from __future__ import annotations

import time
import traceback
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import simpy

from .backpressure import attempts_unaccounted
from .checks import Conservation, LittleCheck, littles_law
from .network import build
from .measure import measure
from .recorder import Recorder
from .schema import Scenario
from .sketch import Distribution, bucket_value
from .streams import Streams
from .warmup import AUTO, choose_warmup

LATENCY_BIN_EDGES_S = np.logspace(-6, 6, 12 * 20 + 1)


@dataclass
class ReplicationResult:
    """What one replication measured over its window, and its checks."""

    replication: int
    metrics: dict[str, float]
    counts: dict[str, int]
    littles_law: list[LittleCheck]
    conservation: Conservation
    series: dict[str, np.ndarray]
    latency_histogram: np.ndarray
    messages: int
    wall_s: float
    bin_width_s: float = 0.0
    warmup_s: float = 0.0
    steady: bool = True
    distributions: dict[str, Distribution] = field(default_factory=dict)
    proportions: dict[str, tuple[int, int]] = field(default_factory=dict)
    ratios: dict[str, tuple[float, float]] = field(default_factory=dict)


def run_replication(scenario: Scenario, replication: int, seed: int | None = None,
                    progress: Callable[[float], None] | None = None) -> ReplicationResult:
    """Simulate one replication of ``scenario`` with its own random streams; ``progress(share)``
    is told the share of the simulated time done, every 1% (the same results either way). With
    ``warmup: auto`` a pilot pass chooses the replication's warm-up first (:mod:`sim.warmup`)."""
    started = time.perf_counter()
    seed = scenario.seed if seed is None else seed
    steady = True
    if scenario.warmup == AUTO:
        choice = choose_warmup(scenario, replication, seed)
        scenario, steady = scenario.model_copy(update={"warmup": choice.warmup_s}), choice.steady
    env = simpy.Environment()
    recorder = Recorder(scenario.warmup, scenario.duration)
    network, context = build(scenario, env, recorder, Streams(seed, replication))
    if scenario.warmup > 0:
        run_until(env, scenario.warmup, scenario.duration, progress)
    recorder.open_window(env.now)
    run_until(env, scenario.duration, scenario.duration, progress)
    recorder.close(scenario.duration)
    window = scenario.window_s

    counts = recorder.counts()
    measures = measure(scenario, network, context, recorder, counts)
    checks = [littles_law(b, window) for b in recorder.boundaries.values()]
    in_flight = recorder.in_flight_ids()
    held = set(network.held_ids())
    unaccounted = [i for i in in_flight.tolist() if i not in held]
    conservation = Conservation(counts, int(in_flight.size), len(unaccounted), tuple(unaccounted[:5]),
                                *attempts_unaccounted(network))
    latency = measures.distributions["system.latency_s"].whole()
    histogram, _ = np.histogram(bucket_value(latency.offset + np.arange(latency.counts.shape[1])), bins=LATENCY_BIN_EDGES_S,
                                weights=latency.counts[0])
    return ReplicationResult(
        replication=replication,
        metrics=measures.metrics,
        counts=counts,
        littles_law=checks,
        conservation=conservation,
        series=measures.series,
        latency_histogram=histogram,
        messages=recorder.messages,
        wall_s=time.perf_counter() - started,
        bin_width_s=measures.bin_width_s,
        warmup_s=scenario.warmup,
        steady=steady,
        distributions=measures.distributions,
        proportions=measures.proportions,
        ratios=measures.ratios,
    )


def run_until(env: simpy.Environment, until_s: float, duration_s: float, progress: Callable[[float], None] | None) -> None:
    """``env.run(until=until_s)``, in steps of 1% of ``duration_s`` when ``progress`` is given (each
    step stops before the events at its end, which the next step runs in the same order)."""
    if progress is None:
        env.run(until=until_s)
        return
    while env.now < until_s:
        target = min(until_s, env.now + duration_s / 100)
        env.run(until=target if target > env.now else until_s)
        progress(env.now / duration_s)


@dataclass
class ReplicationFailure:
    """A replication that raised: its index, the error in one line, and the traceback."""

    replication: int
    error: str
    traceback: str


def safe_replication(scenario: Scenario, replication: int, seed: int,
                     progress: Callable[[float], None] | None = None) -> ReplicationResult | ReplicationFailure:
    """:func:`run_replication`, with an exception returned as a :class:`ReplicationFailure`: a
    failing replication is reported, and the others still count. The task every executor runs."""
    try:
        return run_replication(scenario, replication, seed, progress)
    except Exception as exc:
        return ReplicationFailure(replication, f"{type(exc).__name__}: {exc}", traceback.format_exc())
