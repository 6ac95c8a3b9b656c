"""What one replication measured: the system's own measures, then each part's (its kind's
``measure``), as flat metric keys and time series."""

from __future__ import annotations

import numpy as np

from .backpressure import back_pressure_metrics
from .components.context import BuildContext, Network
from .components.measures import Measures
from .components.registry import parts_in
from .fields import HOUR_S
from .recorder import CONSISTENCY_KEYS, TIME_BINS, Recorder


def system_measures(recorder: Recorder, counts: dict, measures: Measures) -> None:
    """End-to-end latency, throughput, the number in the system, and the fate of messages."""
    metrics, window = measures.metrics, measures.window_s
    measures.distribution("system.latency_s", recorder.latency_s)
    metrics["system.throughput_per_s"] = recorder.processed_in_window / window
    metrics["system.in_system_mean"] = recorder.system.area / window
    produced = counts["produced"]
    for outcome in ("rejected", "lost", "dead_lettered"):
        measures.proportion(f"system.{outcome}_rate", counts[outcome], produced)
    metrics["system.duplicates_rate"] = counts["duplicates"] / counts["processed"] if counts["processed"] else float("nan")
    measures.series["system.in_system"] = measures.level(recorder.system)
    measures.series["system.throughput_per_s"] = np.asarray(recorder.processed_per_bin, dtype=float) / measures.bin_width_s


def consistency_measures(recorder: Recorder, counts: dict, measures: Measures) -> None:
    """Per logical event (outboxes, dual writes, idempotent consumers): what became of its
    business row and its event, and the headline rates."""
    metrics = measures.metrics
    for key in CONSISTENCY_KEYS:
        metrics[f"consistency.{key}"] = float(counts[key])
    committed, produced = counts["committed"], counts["produced"]
    measures.proportion("consistency.never_delivered_rate", counts["never_delivered"], committed)
    measures.proportion("consistency.more_than_once_rate", counts["delivered_more_than_once"], committed)
    measures.proportion("consistency.phantom_rate", counts["phantom"], produced)
    measures.distribution("consistency.commit_to_processed_s", recorder.commit_to_processed_s)


def cost_measures(scenario, network: Network, context: BuildContext, recorder: Recorder, measures: Measures) -> None:
    """What the parts with a price cost over the window (each kind's ``cost_usd``: worker-hours,
    broker-hours, billed requests), as ``cost.per_hour_usd`` and ``cost.per_million_messages_usd``
    (per million messages processed in the window; NaN when none was). Nothing without a price."""
    window = measures.window_s
    costs = [kind.cost_usd(spec, network.parts[section][spec.name], context, window)
             for section, kind, spec in parts_in(scenario)]
    priced = [c for c in costs if c is not None]
    if not priced:
        return
    total_usd = sum(priced)
    processed = recorder.processed_in_window
    measures.metrics["cost.per_hour_usd"] = total_usd * HOUR_S / window
    measures.ratio("cost.per_million_messages_usd", total_usd * 1e6, processed)


def measure(scenario, network: Network, context: BuildContext, recorder: Recorder, counts: dict) -> Measures:
    """Every measure of the replication, after its run."""
    measures = Measures(scenario.window_s, scenario.duration / TIME_BINS)
    system_measures(recorder, counts, measures)
    for section, kind, spec in parts_in(scenario):
        kind.measure(spec, network.parts[section][spec.name], context, measures)
    if recorder.tracks_consistency:
        consistency_measures(recorder, counts, measures)
    back_pressure_metrics(scenario, network, recorder, measures, counts)
    cost_measures(scenario, network, context, recorder, measures)
    return measures
