"""What a replication reports of its outboxes, dual writes, idempotent consumers and the
consistency of the events they carry (metrics and time series, added to the runner's)."""

from __future__ import annotations

import numpy as np

PERCENTILES = {"p50": 50.0, "p95": 95.0, "p99": 99.0, "p999": 99.9}

RELAY_EVENTS = ("published", "republished", "refused_publishes", "failed_polls", "failed_marks", "crashes")
DUAL_WRITE_EVENTS = (
    "committed", "commit_failed", "published", "refused_publishes", "publish_timeouts", "publish_retries",
    "died_between_writes", "crashes", "never_published", "answered_ok", "answered_error", "refused",
)


def distribution(prefix: str, values, metrics: dict) -> None:
    values = np.asarray(values, dtype=np.float64)
    metrics[f"{prefix}.mean"] = float(values.mean()) if values.size else float("nan")
    quantiles = np.percentile(values, list(PERCENTILES.values())) if values.size else [float("nan")] * len(PERCENTILES)
    for key, q in zip(PERCENTILES, quantiles):
        metrics[f"{prefix}.{key}"] = float(q)


def _database(prefix: str, database, recorder, window: float, metrics: dict) -> None:
    for key, value in database.metrics(window).items():
        metrics[f"{prefix}.database.{key}"] = float(value)
    distribution(f"{prefix}.database.connection_wait_s", database.connection_waits_s(), metrics)


def outbox_metrics(network, recorder, window: float, counts: dict) -> tuple[dict[str, float], dict[str, np.ndarray]]:
    """Metrics and series of every outbox (table, relays, database), dual write and idempotent
    pool, and the consistency outcomes when the Recorder tracks them."""
    metrics: dict[str, float] = {}
    series: dict[str, np.ndarray] = {}
    bin_width = recorder.duration_s / len(recorder.system.bin_area)
    for name, box in network.outboxes.items():
        prefix = f"outbox.{name}"
        table = box.table.boundary
        relay = recorder.boundaries[f"{name}:relay"]
        relay_counts = recorder.counters[f"{name}:relay"]
        own = recorder.counters[name]
        distribution(f"{prefix}.request_latency_s", box.request_latencies_s, metrics)
        stats = network.relays[name][0].stats if network.relays[name] else None
        distribution(f"{prefix}.publish_delay_s", stats.publish_delays_s if stats else (), metrics)
        metrics[f"{prefix}.pending_mean"] = table.area / window
        metrics[f"{prefix}.pending_time_s.mean"] = table.sojourn_sum / table.completed if table.completed else float("nan")
        metrics[f"{prefix}.committed_per_s"] = table.entries / window
        metrics[f"{prefix}.rolled_back"] = float(own["rolled_back"])
        metrics[f"{prefix}.refused"] = float(own["refused"])
        metrics[f"{prefix}.died_in_transaction"] = float(own["died_in_transaction"])
        metrics[f"{prefix}.crashes"] = float(own["crashes"])
        metrics[f"{prefix}.relay.in_relay_mean"] = relay.area / window
        for event in ("polls", "empty_polls", "marks"):
            metrics[f"{prefix}.relay.{event}_per_s"] = relay_counts[event] / window
        metrics[f"{prefix}.relay.statements_per_s"] = (relay_counts["polls"] + relay_counts["marks"]) / window
        for event in RELAY_EVENTS:
            metrics[f"{prefix}.relay.{event}"] = float(relay_counts[event])
        _database(prefix, box.database, recorder, window, metrics)
        series[f"{prefix}.pending"] = np.asarray(table.bin_area) / bin_width
        series[f"{prefix}.in_relay"] = np.asarray(relay.bin_area) / bin_width
        series[f"{prefix}.database.utilization"] = np.asarray(box.database.lent.bin_area) / bin_width / box.database.connections
    for name, app in network.dual_writes.items():
        prefix = f"dual_write.{name}"
        own = recorder.counters[name]
        distribution(f"{prefix}.request_latency_s", app.request_latencies_s, metrics)
        metrics[f"{prefix}.in_progress_mean"] = app.boundary.area / window
        for event in DUAL_WRITE_EVENTS:
            metrics[f"{prefix}.{event}"] = float(own[event])
        _database(prefix, app.database, recorder, window, metrics)
        series[f"{prefix}.in_progress"] = np.asarray(app.boundary.bin_area) / bin_width
        series[f"{prefix}.database.utilization"] = np.asarray(app.database.lent.bin_area) / bin_width / app.database.connections
    for name in network.workers:
        idempotency = recorder.counters.get(f"{name}:idempotency")
        if idempotency is not None:
            metrics[f"workers.{name}.suppressed"] = float(idempotency["suppressed"])
    if recorder.tracks_consistency:
        from .recorder import CONSISTENCY_KEYS

        for key in CONSISTENCY_KEYS:
            metrics[f"consistency.{key}"] = float(counts[key])
        committed, produced = counts["committed"], counts["produced"]
        metrics["consistency.never_delivered_rate"] = counts["never_delivered"] / committed if committed else float("nan")
        metrics["consistency.more_than_once_rate"] = counts["delivered_more_than_once"] / committed if committed else float("nan")
        metrics["consistency.phantom_rate"] = counts["phantom"] / produced if produced else float("nan")
        distribution("consistency.commit_to_processed_s", recorder.commit_to_processed_s, metrics)
    return metrics, series
