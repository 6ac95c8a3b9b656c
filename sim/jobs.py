"""Jobs: the one way replications are run, on any :mod:`executor <sim.executors>`.

A :class:`Job` is some replications (indices) of one scenario with one seed. :func:`run_jobs`
runs every replication of every job as its own task (``runner.safe_replication``, a pure function
of scenario, replication and seed), and hands back each job's results in replication order, so
what comes out does not depend on the executor, its number of workers, or the order tasks finish
in. A replication that raises is reported as a :class:`~sim.runner.ReplicationFailure` and the
others are kept. :func:`run_scenario` is ``sim.run``'s: one scenario, its Result, and Ctrl-C
keeping the replications that finished.
"""

from __future__ import annotations

import bisect
import functools
import itertools
import math
from dataclasses import dataclass
from typing import Callable, Iterable, Iterator, Sequence

from .executors import Executor, report_progress
from .result import Result
from .runner import ReplicationFailure, ReplicationResult, safe_replication
from .schema import Scenario


@dataclass
class Job:
    """Replications ``replications`` (indices) of ``scenario`` with ``seed``."""

    scenario: Scenario
    seed: int
    replications: range


def in_order(outcomes: Iterable[ReplicationResult | ReplicationFailure]) -> tuple[list[ReplicationResult], list[ReplicationFailure]]:
    """Finished replications and failures, each sorted by replication index."""
    outcomes = list(outcomes)
    results = sorted((o for o in outcomes if isinstance(o, ReplicationResult)), key=lambda r: r.replication)
    failures = sorted((o for o in outcomes if isinstance(o, ReplicationFailure)), key=lambda f: f.replication)
    return results, failures


def run_jobs(
    jobs: Sequence[Job],
    executor: Executor,
    on_replication: Callable[[int, ReplicationResult | ReplicationFailure], None] | None = None,
) -> Iterator[tuple[int, list[ReplicationResult], list[ReplicationFailure]]]:
    """Run every replication of every job on ``executor``, one task per (job, replication); yield
    ``(job index, results in replication order, failures)`` as each job's last replication ends.
    ``on_replication(job index, outcome)`` is called as each replication ends.

    Tasks are made as the executor takes them (a bounded number in flight, however many
    replications there are), job by job, so jobs tend to finish in order (and a sweep can persist
    them)."""
    starts = list(itertools.accumulate((len(job.replications) for job in jobs), initial=0))
    tasks = ((job.scenario, r, job.seed) for job in jobs for r in job.replications)
    remaining = [len(job.replications) for job in jobs]
    collected: list[list | None] = [[] for _ in jobs]
    for j, n in enumerate(remaining):
        if n == 0:
            yield j, [], []
    task = functools.partial(safe_replication, progress=report_progress)
    for index, outcome in executor.map_unordered(task, tasks):
        j = bisect.bisect_right(starts, index) - 1
        collected[j].append(outcome)
        remaining[j] -= 1
        if on_replication is not None:
            on_replication(j, outcome)
        if remaining[j] == 0:
            outcomes, collected[j] = collected[j], None
            yield (j, *in_order(outcomes))


def run_scenario(
    scenario: Scenario,
    replications: int,
    seed: int,
    executor: Executor,
    on_done: Callable[[ReplicationResult | ReplicationFailure], None] | None = None,
    precision: float | None = None,
    max_replications: int | None = None,
) -> Result:
    """Replications 0..n-1 of ``scenario`` on ``executor``, gathered in a Result.

    With a relative ``precision`` (0.05 for 5%), more replications follow until the interval of
    every metric that matters (:func:`precision_metrics`) has a half-width within ``precision``
    of its estimate, or ``max_replications`` (default 10 × n) have run: after each round the
    number needed is estimated as n·(h/precision)², h the widest relative half-width, as the
    half-width shrinks as 1/√n (the sequential procedure of Law & Kelton, *Simulation Modeling
    and Analysis*, §9.4.1). ``Result.precision`` says how it ended.

    ``on_done(outcome)`` is called as each replication ends. Ctrl-C (KeyboardInterrupt) stops the
    pending replications; the Result keeps the finished ones and is marked ``interrupted``."""
    outcomes: list[ReplicationResult | ReplicationFailure] = []

    def finished(_job: int, outcome) -> None:
        outcomes.append(outcome)
        if on_done is not None:
            on_done(outcome)

    cap = max(max_replications or 10 * replications, replications)
    done, interrupted = 0, False
    while True:
        try:
            for _ in run_jobs([Job(scenario, seed, range(done, replications))], executor, finished):
                pass
        except KeyboardInterrupt:
            interrupted = True
        done = replications
        result = Result(scenario, seed, replications, *in_order(outcomes), interrupted)
        if precision is None:
            return result
        more = replications_for_precision(result, precision, cap)
        if more is None or interrupted:
            return result
        replications = more


def replications_for_precision(result: Result, precision: float, cap: int) -> int | None:
    """The precision rule, as ``run``, ``sweep`` and ``capacity`` apply it to one scenario: sets
    ``result.precision`` (target, reached, cap, met) and returns how many replications in all
    the scenario should have next — n·(h/precision)², h the widest relative half-width of
    :func:`precision_metrics` (doubled when one has no interval), at least one more and at most
    ``cap`` — or None when the target is met, the cap reached, or a replication failed."""
    widest = widest_relative_half_width(result)
    n = len(result.results) + len(result.failures)
    result.precision = {"target": precision, "reached": widest, "max_replications": cap,
                        "met": widest is not None and widest <= precision}
    if result.precision["met"] or result.failures or not result.results or n >= cap:
        return None
    needed = 2 * n if math.isinf(widest) else math.ceil(n * (widest / precision) ** 2)
    return min(cap, max(n + 1, needed))


def precision_metrics(result: Result) -> list[str]:
    """The metrics a precision target applies to: the SLO's, else the latency's mean and p99."""
    return result.slo_metrics() or ["system.latency_s.mean", "system.latency_s.p99"]


def widest_relative_half_width(result: Result) -> float | None:
    """The largest half-width / |estimate| among :func:`precision_metrics` (infinite for one
    without an interval; a metric estimated at 0, such as a loss rate with no loss, has no
    relative precision and is left out; None with no replication finished)."""
    if not result.results:
        return None
    widths = [0.0]
    for metric in precision_metrics(result):
        estimate = result.estimate(metric)
        if estimate.low is None:
            widths.append(math.inf)
        elif estimate.mean:
            widths.append(estimate.half_width / abs(estimate.mean))
    return max(widths)


def results_to_precision(
    jobs: Sequence[Job],
    executor: Executor,
    on_replication: Callable[[int, ReplicationResult | ReplicationFailure], None] | None = None,
) -> Iterator[tuple[int, Result]]:
    """Run ``jobs`` together (as :func:`run_jobs`) and yield ``(job index, Result)`` as each job's
    Result is final: at once for a scenario without a ``precision``; with one, after the further
    replications the precision rule asks for (:func:`replications_for_precision`, up to the
    scenario's ``max_replications``, else 10 × the job's), run a round at a time — the rule
    ``run_scenario`` follows for one scenario, applied per point of a sweep."""
    gathered: list[tuple[list, list]] = [([], []) for _ in jobs]
    caps = [max(job.scenario.max_replications or 10 * len(job.replications), len(job.replications)) for job in jobs]
    rounds = list(enumerate(jobs))
    while rounds:
        again = []
        report = None if on_replication is None else (lambda k, outcome: on_replication(rounds[k][0], outcome))
        for k, results, failures in run_jobs([job for _, job in rounds], executor, report):
            j, job = rounds[k]
            gathered[j][0].extend(results)
            gathered[j][1].extend(failures)
            result = Result(job.scenario, job.seed, job.replications.stop, list(gathered[j][0]), list(gathered[j][1]))
            precision = job.scenario.precision
            more = None if precision is None else replications_for_precision(result, precision, caps[j])
            if more is None:
                yield j, result
            else:
                again.append((j, Job(job.scenario, job.seed, range(job.replications.stop, more))))
        rounds = again
