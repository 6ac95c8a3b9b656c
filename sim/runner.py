"""Running replications: one in this process, or many on local processes.

A replication is a pure function of (scenario, seed, replication index), so replications can run
in any order, on any number of processes, with identical results. What a replication returns is
small (metrics, checks, 200-bin time series, a latency histogram), never per-message arrays.
"""

from __future__ import annotations

import os
import time
import traceback
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from typing import Callable

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
    replication: int
    error: str
    traceback: str


def _safe_replication(scenario: Scenario, replication: int, seed: int):
    try:
        return run_replication(scenario, replication, seed)
    except Exception as exc:  # a failing replication is reported, the others still count
        return ReplicationFailure(replication, f"{type(exc).__name__}: {exc}", traceback.format_exc())


def run_replications(
    scenario: Scenario,
    replications: int,
    seed: int,
    jobs: int | None = None,
    on_done: Callable[[object], None] | None = None,
) -> tuple[list[ReplicationResult], list[ReplicationFailure], bool]:
    """Run replications 0..n-1 on ``jobs`` local processes (all cores by default).

    Returns (finished results in replication order, failures, interrupted). Ctrl-C stops the
    pending replications and keeps the finished ones.
    """
    jobs = max(1, min(jobs or os.cpu_count() or 1, replications))
    outcomes: list = []
    interrupted = False
    try:
        if jobs == 1:
            for r in range(replications):
                outcome = _safe_replication(scenario, r, seed)
                outcomes.append(outcome)
                if on_done:
                    on_done(outcome)
        else:
            with ProcessPoolExecutor(max_workers=jobs) as pool:
                futures = [pool.submit(_safe_replication, scenario, r, seed) for r in range(replications)]
                try:
                    for future in as_completed(futures):
                        outcome = future.result()
                        outcomes.append(outcome)
                        if on_done:
                            on_done(outcome)
                except KeyboardInterrupt:
                    for future in futures:
                        future.cancel()
                    raise
    except KeyboardInterrupt:
        interrupted = True
    results = sorted((o for o in outcomes if isinstance(o, ReplicationResult)), key=lambda r: r.replication)
    failures = sorted((o for o in outcomes if isinstance(o, ReplicationFailure)), key=lambda f: f.replication)
    return results, failures, interrupted
