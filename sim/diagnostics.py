"""When a number should not be trusted as it stands: the warnings a run adds about its estimates.

- **Outcomes that split.** Replications of one scenario that land in different regimes (a retry
  storm in one of three, a metastable collapse) make a mean and an interval that describe
  neither; the replications far from the others are named (:func:`sim.estimates.disagreeing`).
- **A window short for the system.** When the window is shorter than 50 times the correlation
  time τ of the number in the system (:func:`sim.estimates.correlation_time_s`; 50τ so that 20
  batch means of it are nearly independent, their lag-1 correlation about τ/(2·batch) ≈ 0.2 at
  most), or when the replications' own p99 of the latency average below the pooled p99's whole
  interval, each window holds too few congestion episodes for the latency's tail: the estimates
  are biased low and their intervals too narrow (M/M/1 at ρ = 0.9, 10 windows of 30 minutes,
  about 5τ: the p99's interval held the exact value 72.5% of the time). The warning says how
  long a window would do, and :meth:`sim.result.Result.slo_report` does not call a latency
  percentile objective *met* on such a window (*uncertain* instead): the bias is towards
  meeting it. The measured τ is itself short on a short window (about 100 s for that M/M/1,
  whose τ is 380 s), so the rule errs on the side of trusting the window.
- **A warm-up shorter than the transient.** MSER-5 (:func:`sim.estimates.mser5_truncation`)
  on the number in the system, averaged over the replications from time 0, finds where the
  initial transient ends; when that is later than the warm-up given, the window still holds
  part of the start-up (an empty system's short queues), and the warning says how long a
  warm-up would do.
- **One replication** whose batches cannot be trusted for a metric that matters (the latency,
  the SLO metrics): why (:func:`sim.estimates.batches_of`).
"""

from __future__ import annotations

import math

import numpy as np

from .backpressure import trigger_window
from .estimates import correlation_time_s, disagreeing
from .units import format_duration
from .warmup import AUTO, mser5_truncation

HEADLINE = ("system.latency_s.mean", "system.latency_s.p99", "system.throughput_per_s", "system.in_system_mean",
            "system.lost_rate", "system.rejected_rate")
WINDOW_MULTIPLE = 50


def split_outcomes(result) -> list[str]:
    """A warning for each headline metric on which some replications disagree with the rest."""
    notes = []
    names = set(result.metric_names())
    for metric in HEADLINE:
        if metric not in names:
            continue
        values = [r.metrics[metric] for r in result.results]
        far = disagreeing(values)
        if far:
            which = ", ".join(str(result.results[i].replication) for i in far)
            shown = ", ".join(f"{values[i]:.4g}" for i in far)
            notes.append(
                f"replication(s) {which} disagree with the rest on {metric} ({shown} against a median of "
                f"{float(np.median(values)):.4g}): the outcomes split (a retry storm or a metastable collapse in some "
                "replications?); look at those replications (result.replications) rather than at the mean"
            )
    return notes


def correlation_time_of(result) -> float:
    """The correlation time (s) of the number in the system, over the replications' windows."""
    width = result.results[0].bin_width_s
    series = [r.series["system.in_system"][int(math.ceil(r.warmup_s / width - 1e-9)) if width else 0:]
              for r in result.results if "system.in_system" in r.series]
    return correlation_time_s(series, width)


def short_window(result) -> list[str]:
    """A warning when the window is short for the latency's tail (see the module's docstring)."""
    metric = "system.latency_s.p99"
    if len(result.results) < 2 or metric not in result.metric_names():
        return []
    pooled = result.estimate(metric)
    own = [r.metrics[metric] for r in result.results if math.isfinite(r.metrics[metric])]
    tau = correlation_time_of(result)
    shorter_than_tau = math.isfinite(tau) and result.window_s < WINDOW_MULTIPLE * tau
    own_below = pooled.low is not None and bool(own) and float(np.mean(own)) < pooled.low
    if not (shorter_than_tau or own_below):
        return []
    why = []
    if math.isfinite(tau):
        why.append(f"the number in the system stays correlated for about {format_duration(tau)}, so a window of "
                   f"{format_duration(WINDOW_MULTIPLE * tau)} or more ({WINDOW_MULTIPLE}×) would do")
    if own_below:
        why.append(f"the replications' own p99 average {float(np.mean(own)):.4g} s, below the pooled {pooled.mean:.4g} s "
                   f"and its whole interval [{pooled.low:.4g}, {pooled.high:.4g}] s")
    return [f"the window ({format_duration(result.window_s)}) is short for the latency's tail: " + "; ".join(why)
            + "; the latency estimates are likely low and their intervals too narrow, so no latency percentile objective is called met"]


def start_up_differs(kept: np.ndarray, steady: np.ndarray) -> bool:
    """Whether the bins the warm-up kept (``kept``) sit below the steady ones: by more than 5%
    of the steady level and more than two standard errors (from batches of 5 bins), so that
    MSER-5 landing past the warm-up in a series that was steady all along is not reported.
    Every run starts empty, so its start-up shows as a level below the steady one; a level
    above it early on is a burst (a crash, a spike) that MSER-5 mistakes for a transient."""
    batches = steady[:steady.size // 5 * 5].reshape(-1, 5).mean(axis=1)
    if batches.size < 2:
        return False
    spread = float(batches.std(ddof=1))
    error = math.hypot(spread / math.sqrt(batches.size), spread / math.sqrt(max(kept.size / 5, 1)))
    gap = float(steady.mean()) - float(kept.mean())
    return gap > 0.05 * float(steady.mean()) and gap > 2 * error


def short_warmup(result) -> list[str]:
    """A warning when MSER-5 on the number in the system finds the transient ends after the
    warm-up (module docstring); with ``warmup: auto``, also the replications whose pilot found
    no steady state."""
    notes = []
    auto = result.scenario.warmup == AUTO
    unsteady = [r.replication for r in result.results if not r.steady]
    if unsteady:
        notes.append(f"warmup auto: MSER-5 found no steady state in the first half of replication(s) {unsteady}, which kept "
                     "half the run as warm-up: the run is too short for its start-up, or the system is not stationary")
    runs = [r.series["system.in_system"] for r in result.results if "system.in_system" in r.series]
    if not runs or not result.results[0].bin_width_s or trigger_window(result.scenario) is not None:
        return notes  # a spike or a capacity loss is meant to move the system away from its steady state
    level = np.mean(runs, axis=0)
    deleted = mser5_truncation(level)
    if deleted is None:
        return notes if auto else notes + [
            "MSER-5 finds no steady state in the number in the system within the run: the run is too short "
            "for its start-up, or the system is not stationary (a spike, a daily cycle, an overload)"]
    bin_width = result.results[0].bin_width_s
    shortest = min(r.warmup_s for r in result.results)
    first = int(math.ceil(shortest / bin_width - 1e-9))
    if deleted <= first or not start_up_differs(level[first:deleted], level[deleted:]):
        return notes
    transient_s = deleted * bin_width
    given = f"{format_duration(shortest)} (the shortest warmup auto chose from the latencies)" if auto else format_duration(shortest)
    return notes + [f"the start-up transient lasts about {format_duration(transient_s)} (MSER-5 on the number in the system), "
                    f"longer than the warm-up of {given}: set warmup to {format_duration(transient_s)} "
                    "or more, or the estimates keep part of the start-up"]


def one_replication(result) -> list[str]:
    """For one replication, why the batch-means interval of a metric that matters is not trusted."""
    if len(result.results) != 1:
        return []
    notes = []
    names = set(result.metric_names())
    slo = result.slo_metrics()
    for metric in dict.fromkeys(("system.latency_s.mean", "system.latency_s.p99", *slo)):
        if metric in names:
            note = result.estimate_note(metric)
            if note:
                notes.append(f"{metric}: {note}")
    return notes


def estimate_warnings(result) -> list[str]:
    if not result.results:
        return []
    return one_replication(result) + short_warmup(result) + short_window(result) + split_outcomes(result)
