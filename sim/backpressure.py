"""What a replication measures of back pressure, retries and recovery (README: "Back pressure,
retries and retry storms").

- Offered load and goodput. Every logical request (a producer's message, a client's request) is
  one unique request; each sending of it is an attempt (a plain producer's message is one
  attempt). ``offered_per_s`` counts attempts, ``offered_unique_per_s`` requests,
  ``goodput_per_s`` requests that succeeded (processed; for a client: the response came while it
  waited), ``retry_amplification`` attempts per request. Counts are of the requests created in
  the measurement window, whenever they succeeded; rates are per second of the window. Over time
  (the series), goodput is by *cohort*: the requests created in each time bin that succeeded by
  the end of the run, per second — a request counts where it was made, not where it ended, so a
  backlog served late does not show as goodput after the fact (``system.throughput_per_s`` is
  what was processed when).
- Wasted work: attempts processed after their client had stopped waiting for them; shed:
  attempts a worker skipped because their deadline had passed.
- Recovery after a trigger (a producer's ``spike``, a pool's ``capacity_loss`` or slowdown
  window): :func:`time_to_recover`.
- Attempt accounting: each client's admitted attempts that have not ended must be held by a
  broker or a worker (:func:`attempts_unaccounted`).
"""

from __future__ import annotations

import math
from collections import Counter

import numpy as np

from .recorder import TIME_BINS

RECOVERY_SMOOTHING_S = 10.0  # recovery is judged on moving averages over at least this long
RECOVERY_GOODPUT_FRACTION = 0.9  # at most 10% of a cohort of requests failed
CHUNK = 1 << 20  # message ids unpacked at a time when the failed ones are counted
RECOVERY_DEPTH_SDS = 3.0  # queue depth back within the pre-trigger mean + 3 sd + 1 message


def trigger_window(scenario) -> tuple[float, float] | None:
    """(start of the first trigger, end of the last) in seconds, or None without triggers:
    producers' spikes, pools' capacity losses and slowdown windows."""
    spans = []
    for producer in scenario.producers:
        if producer.spike is not None:
            spans.append((producer.spike.at, producer.spike.at + producer.spike.duration))
    for pool in scenario.workers:
        if pool.capacity_loss is not None:
            spans.append((pool.capacity_loss.from_, pool.capacity_loss.until))
        if pool.slowdown is not None and pool.slowdown.from_ is not None:
            spans.append((pool.slowdown.from_, pool.slowdown.until))
    if not spans:
        return None
    return min(s for s, _ in spans), max(e for _, e in spans)


def time_to_recover(failed: np.ndarray, offered: np.ndarray, depth: np.ndarray, bin_width_s: float,
                    warmup_s: float, trigger: tuple[float, float]) -> float:
    """Seconds from the end of the trigger until the system is back to normal for good, or NaN
    when it never is within the run (or the run has too little of it before the trigger to say
    what normal is).

    It is judged on *cohorts*: the requests created in each time bin (``offered``: unique
    requests per second of each bin; ``failed``: those of them that failed — lost, rejected,
    dead-lettered, given up by their client — per second, whenever they failed) and the queue
    depth they found on arrival (``depth``: messages waiting in all brokers, the bin's time
    average). Each averaged over a moving window of ``k`` bins (at least 10 s), cohorts are
    *normal* in a window when at most 10% of their requests failed (those still in flight at the
    end count as not failed: the depth shows a system still stuck) and the depth is ≤ its
    pre-trigger mean + 3 standard deviations + 1 message (the pre-trigger bins are those between
    the warm-up and the trigger's start: three at least). The system has *recovered* at the start
    of the first bin after the trigger's end from which every window up to the end of the run is
    normal (at least one whole window must fit); a system that never left normal recovered at
    the trigger's end (0 s).

    Because a request is counted in the bin it was created in, a backlog served late, or attempts
    completed after their client gave up, do not make later windows look abnormal (or normal):
    the time is when requests made from then on are served as before the trigger.
    """
    start_s, end_s = trigger
    n = len(failed)
    k = max(1, math.ceil(RECOVERY_SMOOTHING_S / bin_width_s - 1e-9))
    first = math.ceil(warmup_s / bin_width_s - 1e-9)
    last = math.floor(start_s / bin_width_s + 1e-9)
    if last - first < 3 or n - k < 0:
        return math.nan
    base = depth[first:last]
    threshold = base.mean() + RECOVERY_DEPTH_SDS * base.std() + 1.0
    window = np.ones(k) / k
    smooth = lambda x: np.convolve(x, window, mode="valid")  # noqa: E731 — window j covers bins j..j+k−1
    normal = (smooth(failed) <= (1 - RECOVERY_GOODPUT_FRACTION) * smooth(offered)) & (smooth(depth) <= threshold)
    after = math.ceil(end_s / bin_width_s - 1e-9)
    if after > len(normal) - 1:
        return math.nan
    abnormal = np.flatnonzero(~normal[after:])
    if abnormal.size == 0:
        return 0.0
    recovered_bin = after + int(abnormal[-1]) + 1
    if recovered_bin > len(normal) - 1:
        return math.nan
    return max(recovered_bin * bin_width_s - end_s, 0.0)


def cohorts(recorder, bin_width_s: float) -> tuple[np.ndarray, np.ndarray]:
    """(failed, in flight): of the requests created in each time bin, how many failed (lost,
    rejected, dead-lettered: a non-zero settled outcome) and how many have no outcome yet. Message
    ids are given in order of creation, so bin b holds the ids counted by ``created_per_bin`` up
    to it; the outcomes are read a chunk of ids at a time."""
    ends = np.cumsum(recorder.created_per_bin[:TIME_BINS])
    failed = np.zeros(TIME_BINS + 1, dtype=np.int64)
    outcomes = recorder.settled_outcomes
    known = min(recorder.messages, len(outcomes.data) * (outcomes.slot_mask + 1))
    for start in range(0, known, CHUNK):
        ids = np.flatnonzero(outcomes.unpack(start, min(start + CHUNK, known))) + start
        failed += np.bincount(np.searchsorted(ends, ids, side="right"), minlength=TIME_BINS + 1)
    created_s = np.fromiter(recorder.in_flight.values(), dtype=float, count=len(recorder.in_flight))
    in_flight = np.bincount(np.minimum(created_s / bin_width_s, TIME_BINS).astype(np.intp), minlength=TIME_BINS + 1)
    return failed[:TIME_BINS], in_flight[:TIME_BINS]


def attempts_unaccounted(network) -> tuple[int, int, tuple]:
    """(open attempts, attempts held by no broker or worker, a few of their ids): an admitted
    attempt that has not ended is somewhere in the servers (a message can be in several places,
    so what is checked is that each id is held at least as many times as it has open attempts)."""
    open_ids = Counter(a.id for client in network.clients.values() for a in client.open_attempts)
    if not open_ids:
        return 0, 0, ()
    held = Counter(network.held_ids(("brokers", "workers")))
    missing = {i: n - held[i] for i, n in open_ids.items() if n > held[i]}
    return sum(open_ids.values()), sum(missing.values()), tuple(sorted(missing)[:5])


def _per_bin(values, bin_width_s: float) -> np.ndarray:
    return np.asarray(values, dtype=float) / bin_width_s


def back_pressure_metrics(scenario, network, recorder, measures, counts: dict) -> None:
    """The system's offered load, goodput, retries, wasted work, shedding and recovery, for one
    replication (each client, gate and pool measures its own)."""
    metrics, series = measures.metrics, measures.series
    window_s, bin_width = measures.window_s, measures.bin_width_s
    clients = network.clients
    produced = counts["produced"]
    tallies = [client.tally for client in clients.values()]
    retries_sent = sum(t["attempts"] - t["requests"] for t in tallies)
    attempts = produced + retries_sent
    metrics["system.goodput_per_s"] = counts["processed"] / window_s
    metrics["system.offered_per_s"] = attempts / window_s
    metrics["system.offered_unique_per_s"] = produced / window_s
    metrics["system.retry_amplification"] = attempts / produced if produced else math.nan

    unique_per_bin = np.asarray(recorder.created_per_bin[:TIME_BINS])
    series["system.offered_per_s"] = (unique_per_bin + np.asarray(recorder.retries_per_bin)) / bin_width
    series["system.offered_unique_per_s"] = unique_per_bin / bin_width
    failed, in_flight = cohorts(recorder, bin_width)
    series["system.goodput_per_s"] = _per_bin(unique_per_bin - failed - in_flight, bin_width)
    depth = np.zeros(TIME_BINS)
    for name in network.section("brokers"):
        depth += series[f"brokers.{name}.length"]  # each broker's measure put it there
    series["system.queue_depth"] = depth

    if clients:
        total = Counter()
        for t in tallies:
            total.update(t)
        metrics["system.wasted_per_s"] = total["wasted"] / window_s
        metrics["system.wasted_fraction"] = total["wasted"] / total["processings"] if total["processings"] else math.nan
        metrics["system.shed_per_s"] = total["shed"] / window_s
        series["system.wasted_per_s"] = _per_bin(recorder.wasted_per_bin, bin_width)

    trigger = trigger_window(scenario)
    if trigger is not None:
        seconds = time_to_recover(_per_bin(failed, bin_width), series["system.offered_unique_per_s"], depth,
                                  bin_width, scenario.warmup, trigger)
        metrics["system.recovery_s"] = seconds
        metrics["system.recovered"] = 0.0 if math.isnan(seconds) else 1.0
