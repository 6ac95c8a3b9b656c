"""Running one replication of a scenario (many run through :mod:`sim.jobs`).

A replication is a pure function of (scenario, seed, replication index), so replications can run
in any order, on any number of processes, with identical results. What a replication returns is
small (metrics, checks, 200-bin time series, a latency histogram), never per-message arrays.
"""

from __future__ import annotations

import time
import traceback
from dataclasses import dataclass, field

import numpy as np
import simpy

from .backpressure import attempts_unaccounted, back_pressure_metrics
from .checks import Conservation, LittleCheck, littles_law
from .network import build
from .outbox_metrics import outbox_metrics
from .recorder import TIME_BINS, Recorder
from .schema import Scenario
from .streams import Streams

BROKER_EVENTS = ("deliveries", "redeliveries", "refused", "lost", "dead_lettered")
WORKER_EVENTS = ("completed", "errors", "crashes")
PERCENTILES = {"p50": 50.0, "p95": 95.0, "p99": 99.0, "p999": 99.9}
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
    extra: dict = field(default_factory=dict)


def _distribution(prefix: str, values: np.ndarray, metrics: dict) -> None:
    metrics[f"{prefix}.mean"] = float(values.mean()) if values.size else float("nan")
    if values.size:
        for key, q in zip(PERCENTILES, np.percentile(values, list(PERCENTILES.values()))):
            metrics[f"{prefix}.{key}"] = float(q)
    else:
        for key in PERCENTILES:
            metrics[f"{prefix}.{key}"] = float("nan")


def run_replication(scenario: Scenario, replication: int, seed: int | None = None) -> ReplicationResult:
    """Simulate one replication of ``scenario`` with its own random streams."""
    started = time.perf_counter()
    seed = scenario.seed if seed is None else seed
    env = simpy.Environment()
    recorder = Recorder(scenario.warmup, scenario.duration)
    network = build(scenario, env, recorder, Streams(seed, replication))
    if scenario.warmup > 0:
        env.run(until=scenario.warmup)
    recorder.open_window(env.now)
    env.run(until=scenario.duration)
    recorder.close(scenario.duration)
    window = scenario.window_s

    metrics: dict[str, float] = {}
    latencies = np.frombuffer(recorder.latencies_s, dtype=np.float64)
    _distribution("system.latency_s", latencies, metrics)
    system = recorder.system
    counts = recorder.counts()
    metrics["system.throughput_per_s"] = recorder.processed_in_window / window
    metrics["system.in_system_mean"] = system.area / window
    produced = counts["produced"]
    for outcome in ("rejected", "lost", "dead_lettered"):
        metrics[f"system.{outcome}_rate"] = counts[outcome] / produced if produced else float("nan")
    metrics["system.duplicates_rate"] = counts["duplicates"] / counts["processed"] if counts["processed"] else float("nan")
    for name in network.brokers:
        b = recorder.boundaries[name]
        _distribution(f"brokers.{name}.wait_s", np.frombuffer(b.sojourns, dtype=np.float64), metrics)
        metrics[f"brokers.{name}.length_mean"] = b.area / window
        for extra, boundary in recorder.boundaries.items():
            if boundary.kind == "broker" and extra.startswith(f"{name}:"):
                metrics[f"brokers.{name}.{extra.split(':', 1)[1]}_mean"] = boundary.area / window
        counts_of = recorder.counters[name]
        for event in BROKER_EVENTS:
            metrics[f"brokers.{name}.{event}"] = float(counts_of[event])
        for key, value in network.brokers[name].metrics().items():
            metrics[f"brokers.{name}.{key}"] = float(value)
    for name, pool in network.workers.items():
        b = recorder.boundaries[name]
        metrics[f"workers.{name}.utilization"] = b.area / (pool.count * window)
        metrics[f"workers.{name}.busy_mean"] = b.area / window
        metrics[f"workers.{name}.service_s.mean"] = b.sojourn_sum / b.completed if b.completed else float("nan")
        counts_of = recorder.counters[name]
        for event in WORKER_EVENTS:
            metrics[f"workers.{name}.{event}"] = float(counts_of[event])

    bin_width = scenario.duration / TIME_BINS
    series = {"system.in_system": np.asarray(system.bin_area) / bin_width}
    series["system.throughput_per_s"] = np.asarray(recorder.processed_per_bin, dtype=float) / bin_width
    for name in network.brokers:
        series[f"brokers.{name}.length"] = np.asarray(recorder.boundaries[name].bin_area) / bin_width
        for extra, boundary in recorder.boundaries.items():
            if boundary.kind == "broker" and extra.startswith(f"{name}:"):
                series[f"brokers.{name}.{extra.split(':', 1)[1]}"] = np.asarray(boundary.bin_area) / bin_width
    for name, pool in network.workers.items():
        series[f"workers.{name}.utilization"] = np.asarray(recorder.boundaries[name].bin_area) / bin_width / pool.count
    more_metrics, more_series = outbox_metrics(network, recorder, window, counts)
    metrics.update(more_metrics)
    series.update(more_series)

    checks = [littles_law(b, window) for b in recorder.boundaries.values()]
    pressure_metrics, pressure_series = back_pressure_metrics(scenario, network, recorder, window, counts)
    metrics.update(pressure_metrics)
    series.update(pressure_series)
    in_flight = recorder.in_flight_ids()
    unaccounted = np.setdiff1d(in_flight, np.fromiter(network.held_ids(), dtype=np.int64), assume_unique=False)
    conservation = Conservation(counts, int(in_flight.size), int(unaccounted.size), tuple(int(i) for i in unaccounted[:5]),
                                *attempts_unaccounted(network))
    histogram, _ = np.histogram(latencies, bins=LATENCY_BIN_EDGES_S)
    return ReplicationResult(
        replication=replication,
        metrics=metrics,
        counts=counts,
        littles_law=checks,
        conservation=conservation,
        series=series,
        latency_histogram=histogram,
        messages=len(recorder.outcome),
        wall_s=time.perf_counter() - started,
        bin_width_s=bin_width,
    )


@dataclass
class ReplicationFailure:
    """A replication that raised: its index, the error in one line, and the traceback."""

    replication: int
    error: str
    traceback: str


def safe_replication(scenario: Scenario, replication: int, seed: int) -> ReplicationResult | ReplicationFailure:
    """:func:`run_replication`, with an exception returned as a :class:`ReplicationFailure`: a
    failing replication is reported, and the others still count. The task every executor runs."""
    try:
        return run_replication(scenario, replication, seed)
    except Exception as exc:
        return ReplicationFailure(replication, f"{type(exc).__name__}: {exc}", traceback.format_exc())
