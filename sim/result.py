"""The result of a run: per-replication tables, the summary with confidence intervals, plots.

``Result.summary()`` is the JSON summary that ``asyncsim run --json`` prints: every estimate is
``{"mean": x, "ci95": [lo, hi]}`` — the point estimate and its 95% interval over replications
(:mod:`sim.estimates` says how each kind of metric is estimated) — and every key carries its unit.

The summary needs only numpy; pandas is imported by the methods that return a DataFrame, so a run
that prints its summary does not pay for it.
"""

from __future__ import annotations

import difflib
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Iterable

import numpy as np

from .backpressure import trigger_window
from .checks import LittleCheck
from .components.measures import PERCENTILES
from .components.registry import SECTIONS
from .diagnostics import estimate_warnings, short_window
from .estimates import bounded, distribution_estimate, proportion_estimate, ratio_estimate, series_estimate, series_of
from .recorder import CONSISTENCY_KEYS
from .runner import LATENCY_BIN_EDGES_S, ReplicationFailure, ReplicationResult, safe_replication
from .schema import AUTO, Scenario
from .stats import Estimate, json_safe, mean_ci

if TYPE_CHECKING:
    import pandas as pd

COUNT_KEYS = ("produced", "processed", "rejected", "lost", "duplicates", "dead_lettered", "in_flight")
SLO_METRICS = {
    "latency_mean": ("system.latency_s.mean", "max"),
    "latency_p50": ("system.latency_s.p50", "max"),
    "latency_p95": ("system.latency_s.p95", "max"),
    "latency_p99": ("system.latency_s.p99", "max"),
    "latency_p999": ("system.latency_s.p999", "max"),
    "max_loss_rate": ("system.lost_rate", "max"),
    "max_rejection_rate": ("system.rejected_rate", "max"),
    "min_throughput": ("system.throughput_per_s", "min"),
}


METRIC_SECTIONS = ("system", *SECTIONS, "consistency", "cost")


class UnknownMetricError(ValueError):
    """A metric name that a run of the scenario does not produce."""


def unknown_metric(name: str, known: list[str]) -> UnknownMetricError:
    """The error for ``name``, with the closest of the ``known`` names as suggestions."""
    close = difflib.get_close_matches(name, known, n=3, cutoff=0.6)
    if close:
        quoted = [repr(c) for c in close]
        hint = "did you mean " + (f"{', '.join(quoted[:-1])} or {quoted[-1]}" if len(quoted) > 1 else quoted[0]) + "?"
    else:
        hint = "metrics look like system.latency_s.p99, brokers.NAME.wait_s.mean, workers.NAME.utilization"
    return UnknownMetricError(f"unknown metric '{name}'; {hint}")


def scenario_metric_names(scenario: Scenario) -> list[str] | None:
    """The flat metric names a run of ``scenario`` produces, before running it: they depend on
    the scenario's parts only, not on what happens, so one replication of one second without a
    warm-up finds them. None when that replication raises (the run will report why)."""
    pilot = scenario.model_copy(update={"duration": 1.0, "warmup": 0.0})
    outcome = safe_replication(pilot, 0, scenario.seed)
    return list(outcome.metrics) if isinstance(outcome, ReplicationResult) else None


def check_metric(metric: str, scenarios: Iterable[Scenario] = ()) -> None:
    """Refuse, before anything runs, a ``metric`` that none of ``scenarios`` produces, or, with no
    scenario whose metrics can be known, one outside the sections metrics are in (system,
    brokers, workers...): an :class:`UnknownMetricError` naming the closest metrics."""
    known: set[str] = set()
    for scenario in scenarios:
        known.update(scenario_metric_names(scenario) or ())
    if metric not in known and (known or metric.split(".")[0] not in METRIC_SECTIONS):
        raise unknown_metric(metric, sorted(known))


def nest(flat: dict[str, object]) -> dict:
    tree: dict = {}
    for key, value in flat.items():
        node = tree
        *parents, leaf = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return tree


def _excess(check: LittleCheck) -> float:
    """A Little's law check's relative error over its tolerance (0 without a tolerance)."""
    excess = check.rel_error / check.tolerance if check.tolerance > 0 else 0.0
    return 0.0 if math.isnan(excess) else excess


@dataclass
class Result:
    """Replications of one scenario, finished or failed."""

    scenario: Scenario
    seed: int
    requested_replications: int
    results: list[ReplicationResult]
    failures: list[ReplicationFailure] = field(default_factory=list)
    interrupted: bool = False
    precision: dict | None = None  # how a run to a precision target ended (sim.jobs.run_scenario)

    # --- tables ---------------------------------------------------------------------------------

    @property
    def replications(self) -> pd.DataFrame:
        """One row per finished replication: every metric, the counts and the checks."""
        import pandas as pd

        rows = []
        for r in self.results:
            row = {"replication": r.replication, **r.metrics}
            row.update({f"counts.{k}": r.counts[k] for k in self.count_keys()})
            row["littles_law_ok"] = all(c.ok for c in r.littles_law)
            row["conservation_ok"] = r.conservation.ok
            row["messages"] = r.messages
            row["wall_s"] = r.wall_s
            rows.append(row)
        return pd.DataFrame(rows).set_index("replication") if rows else pd.DataFrame()

    @property
    def littles_law(self) -> pd.DataFrame:
        """Little's law on every boundary of every replication."""
        import pandas as pd

        rows = [{"replication": r.replication, **c.as_dict()} for r in self.results for c in r.littles_law]
        return pd.DataFrame(rows)

    @property
    def timeseries(self) -> pd.DataFrame:
        """Long table: replication, series name, bin start and middle (s), value (a bin's mean)."""
        import pandas as pd

        frames = []
        for r in self.results:
            for name, values in r.series.items():
                start = np.arange(len(values)) * r.bin_width_s
                frames.append(pd.DataFrame({"replication": r.replication, "series": name, "t_s": start + r.bin_width_s / 2, "value": values}))
        return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=["replication", "series", "t_s", "value"])

    @property
    def latency_histogram(self) -> pd.DataFrame:
        """End-to-end latency of processed messages, summed over replications, on log-spaced bins."""
        import pandas as pd

        counts = sum((r.latency_histogram for r in self.results), np.zeros(len(LATENCY_BIN_EDGES_S) - 1, dtype=np.int64))
        return pd.DataFrame({"low_s": LATENCY_BIN_EDGES_S[:-1], "high_s": LATENCY_BIN_EDGES_S[1:], "count": counts})

    # --- estimates ------------------------------------------------------------------------------

    def estimate(self, metric: str) -> Estimate:
        """The estimate and 95% CI of a flat metric such as ``system.latency_s.p99``: pooled
        over the replications for a distribution's quantiles and mean and for proportions, the
        mean over replications otherwise (:mod:`sim.estimates`); with one replication, from
        batches of its window where the metric has them.

        A name the replications do not have is an :class:`UnknownMetricError` naming the closest
        ones; with no replication finished the estimate is empty (no mean, no interval)."""
        return self._estimate(metric)[0]

    def estimate_note(self, metric: str) -> str | None:
        """Why ``metric``'s interval should not be trusted (one replication's batches are
        correlated or too small), or None."""
        return self._estimate(metric)[1]

    def _estimate(self, metric: str) -> tuple[Estimate, str | None]:
        if self.results and metric not in self.results[0].metrics:
            raise unknown_metric(metric, self.metric_names())
        if not self.results:
            return Estimate(None, None, None, 0), None
        first, note = self.results[0], None
        prefix, _, stat = metric.rpartition(".")
        if prefix in first.distributions and (stat == "mean" or stat in PERCENTILES):
            estimate, note = distribution_estimate([r.distributions[prefix] for r in self.results], stat)
        elif metric in first.proportions:
            parts, wholes = zip(*(r.proportions[metric] for r in self.results))
            estimate = proportion_estimate(parts, wholes)
        elif metric in first.ratios:
            numerators, denominators = zip(*(r.ratios[metric] for r in self.results))
            estimate = ratio_estimate(numerators, denominators)
        elif len(self.results) == 1 and series_of(metric, first.series) is not None:
            estimate, note = series_estimate(first.metrics[metric], series_of(metric, first.series), first.bin_width_s,
                                             first.warmup_s)
        else:
            estimate = mean_ci([r.metrics.get(metric, np.nan) for r in self.results])
        return bounded(estimate, metric), note

    @property
    def estimates(self) -> pd.DataFrame:
        """Every metric's mean over replications and 95% CI: metric, mean, ci95_low, ci95_high, n."""
        import pandas as pd

        rows = []
        for metric in self.metric_names():
            est = self.estimate(metric)
            rows.append({"metric": metric, "mean": est.mean, "ci95_low": est.low, "ci95_high": est.high, "n": est.n})
        return pd.DataFrame(rows, columns=["metric", "mean", "ci95_low", "ci95_high", "n"]).set_index("metric")

    @property
    def warmup_s(self) -> float:
        """The warm-up: the scenario's, or with ``warmup: auto`` the longest a replication chose."""
        if self.scenario.warmup != AUTO:
            return self.scenario.warmup
        return max((r.warmup_s for r in self.results), default=0.0)

    @property
    def window_s(self) -> float:
        """The measurement window (with ``warmup: auto``, the shortest of the replications')."""
        return self.scenario.duration - self.warmup_s

    def metric_names(self) -> list[str]:
        return list(self.results[0].metrics) if self.results else []

    def count_keys(self) -> tuple[str, ...]:
        """The outcome counts, and the consistency counts when the scenario has outboxes, dual
        writes or idempotent consumers."""
        extra = tuple(k for k in CONSISTENCY_KEYS if self.results and all(k in r.counts for r in self.results))
        return COUNT_KEYS + extra

    def counts(self) -> dict[str, int]:
        return {k: int(sum(r.counts[k] for r in self.results)) for k in self.count_keys()}

    def littles_law_summary(self) -> list[dict]:
        """Little's law per boundary, in the order the boundaries first appear: L, λ and W are
        means over replications (NaN skipped), the error and tolerance those of the worst
        replication (the largest error / tolerance, the first on ties); the verdict the worst of
        the replications' (failed, then inconclusive, then ok), with the first one's reason."""
        by_boundary: dict[str, list[tuple[int, LittleCheck]]] = {}
        for r in self.results:
            for check in r.littles_law:
                by_boundary.setdefault(check.boundary, []).append((r.replication, check))
        out = []
        for boundary, rows in by_boundary.items():
            checks = [check for _, check in rows]
            worst_replication, worst = max(rows, key=lambda row: _excess(row[1]))
            out.append({
                "boundary": boundary,
                "kind": checks[0].kind,
                "L": float(np.nanmean([c.L for c in checks])),
                "lambda_per_s": float(np.nanmean([c.lambda_per_s for c in checks])),
                "W_s": float(np.nanmean([c.W_s for c in checks])),
                "rel_error": float(worst.rel_error),
                "tolerance": float(worst.tolerance),
                "worst_replication": int(worst_replication),
                "ok": all(c.ok for c in checks),
                "verdict": next((v for v in ("failed", "inconclusive") if any(c.verdict == v for c in checks)), "ok"),
                "applies": any(c.applies for c in checks),
                "failed_replications": [int(replication) for replication, check in rows if not check.ok],
                "inconclusive_replications": [int(replication) for replication, check in rows if check.applies and check.verdict == "inconclusive"],
                "reason": next((c.reason for c in checks if c.verdict != "ok" and c.applies), ""),
            })
        return out

    def slo_metrics(self) -> list[str]:
        """The metrics the scenario's SLO sets targets on."""
        slo = self.scenario.slo
        return [SLO_METRICS[key][0] for key in slo.model_dump(exclude_none=True)] if slo is not None else []

    def slo_report(self) -> dict | None:
        """Each objective: the estimate, the target, and met / not met (the whole interval on one
        side of the target), uncertain (the interval straddles it, or there is no interval: a
        single value proves nothing), or unknown (no value). On a window short for the latency's
        tail (:func:`sim.diagnostics.short_window`) a latency percentile objective is not called
        met: its estimate is biased towards meeting it, so "met" becomes uncertain, with a note.

        A target of 0 on a rate (``max_rejection_rate: 0``) is a count, not an interval: no sample
        can prove a rate is exactly 0 (zero rejections in 30,000 messages still leave [0, 0.0128%]),
        so it is met when none was observed in any replication's window and not met when one was;
        the note says in how many messages, with the interval's upper bound."""
        slo = self.scenario.slo
        if slo is None:
            return None
        short = None
        report = {}
        for key, target in slo.model_dump(exclude_none=True).items():
            metric, sense = SLO_METRICS[key]
            est = self.estimate(metric)
            note = None
            if est.mean is None:
                status = "unknown"
            elif target == 0 and sense == "max" and metric in self.results[0].proportions:
                status = "met" if est.mean == 0 else "not met"
                messages = sum(r.proportions[metric][1] for r in self.results)
                bound = f" (below {est.high:.3%} with 95% confidence)" if est.high is not None else ""
                note = f"a target of 0: {'none' if est.mean == 0 else 'some'} observed in {messages:,} messages{bound}"
            elif est.low is None:
                status = "uncertain"
            else:
                good, bad = (est.high <= target, est.low > target) if sense == "max" else (est.low >= target, est.high < target)
                status = "met" if good else "not met" if bad else "uncertain"
            report[key] = {"target": target, "metric": metric, **est.as_dict(), "status": status}
            if note:
                report[key]["note"] = note
            if status == "met" and key.startswith("latency_p"):
                short = short_window(self) if short is None else short
                if short:
                    report[key].update(status="uncertain", note="the window is short for the latency's tail (see the warnings)")
        return report

    def no_result(self) -> str | None:
        """Why no replication finished ("no replication finished: 3 of 3 failed"), or None."""
        if self.results:
            return None
        why = f"{len(self.failures)} of {self.requested_replications} failed"
        if self.interrupted:
            why = "interrupted" + (f" after {why}" if self.failures else "")
        return f"no replication finished: {why}"

    def warnings(self) -> list[str]:
        notes = [self.no_result()] if not self.results else []
        for check in self.littles_law_summary():
            if not check["ok"]:
                notes.append(
                    f"Little's law does not hold on {check['boundary']} in replication(s) {check['failed_replications']}: "
                    f"relative error {check['rel_error']:.3g} > tolerance {check['tolerance']:.3g} ({check['reason']})"
                )
            elif check["inconclusive_replications"]:
                notes.append(
                    f"Little's law is inconclusive on {check['boundary']} in replication(s) {check['inconclusive_replications']}: "
                    f"{check['reason']}; a longer window decides it"
                )
        for r in self.results:
            problem = r.conservation.problem()
            if problem:
                notes.append(f"conservation fails in replication {r.replication}: {problem}")
        notes += estimate_warnings(self)
        if self.precision is not None and not self.precision["met"] and self.results and not self.interrupted:
            reached = self.precision["reached"]
            notes.append(f"precision {self.precision['target']:.1%} not reached with {len(self.results)} replications "
                         f"(the cap is {self.precision['max_replications']}): the widest interval is ±{reached:.1%} of its estimate")
        if self.results:
            few = min(r.counts["processed"] for r in self.results)
            if 0 < few < 10_000:
                notes.append(f"only {few} messages processed in some replication's window: p99.9 rests on fewer than 10 of them")
        for f in self.failures:
            notes.append(f"replication {f.replication} failed: {f.error}")
        if self.interrupted and self.results:
            notes.append(f"interrupted: {len(self.results)} of {self.requested_replications} replications finished")
        return notes

    @property
    def ok(self) -> bool:
        """Every replication finished, and every check passed."""
        return (
            not self.failures
            and not self.interrupted
            and bool(self.results)
            and all(r.conservation.ok and all(c.ok for c in r.littles_law) for r in self.results)
        )

    def summary(self) -> dict:
        """The JSON summary (the same dict ``asyncsim run --json`` prints)."""
        s = self.scenario
        out: dict = {
            "scenario": s.name,
            "seed": self.seed,
            "replications": len(self.results),
            "requested_replications": self.requested_replications,
            "duration_s": s.duration,
            "warmup_s": self.warmup_s,
            "window_s": self.window_s,
        }
        if s.warmup == AUTO:
            out["warmup"] = {"rule": "MSER-5 on each replication's latencies, from a pilot pass",
                             "chosen_s": [r.warmup_s for r in self.results]}
        out.update(nest({m: self.estimate(m).as_dict() for m in self.metric_names()}))
        out["counts"] = self.counts()
        out["littles_law"] = self.littles_law_summary()
        out["conservation"] = {
            "ok": all(r.conservation.ok for r in self.results),
            "in_flight_at_end": int(sum(r.conservation.in_flight_total for r in self.results)),
            "unaccounted_at_end": int(sum(r.conservation.unaccounted for r in self.results)),
        }
        if any(r.conservation.attempts_open or r.conservation.attempts_unaccounted for r in self.results) or self.scenario.clients or any(
                p.is_client for p in self.scenario.producers):
            out["conservation"]["attempts_open_at_end"] = int(sum(r.conservation.attempts_open for r in self.results))
            out["conservation"]["attempts_unaccounted_at_end"] = int(sum(r.conservation.attempts_unaccounted for r in self.results))
        recovery = self.recovery()
        if recovery is not None:
            out["recovery"] = recovery
        slo = self.slo_report()
        if slo is not None:
            out["slo"] = slo
        if self.precision is not None:
            out["precision"] = {k: json_safe(v) for k, v in self.precision.items()}
        out["warnings"] = self.warnings()
        out["failures"] = [{"replication": f.replication, "error": f.error} for f in self.failures]
        out["ok"] = self.ok
        return out

    # --- output ---------------------------------------------------------------------------------

    def plot_latency(self, ax=None):
        from .plots import plot_latency

        return plot_latency(self, ax)

    def plot_queue_length(self, ax=None):
        from .plots import plot_series

        return plot_series(self, "brokers.", "", "messages in brokers (waiting, and in flight where acknowledged)", ax)

    def plot_throughput(self, ax=None):
        from .plots import plot_series

        return plot_series(self, "system.throughput_per_s", "", "processed per second", ax)

    def plot_outbox_backlog(self, ax=None):
        from .plots import plot_series

        return plot_series(self, "outbox.", ".pending", "pending outbox rows (committed, not yet marked sent)", ax)

    def plot_utilization(self, ax=None):
        from .plots import plot_series

        return plot_series(self, "workers.", ".utilization", "busy fraction of workers", ax)

    # --- back pressure, retries and recovery ----------------------------------------------------

    def recovery(self) -> dict | None:
        """Whether and when the system came back after its trigger (a spike, a capacity loss, a
        slowdown window) ended, or None for a scenario without a trigger. ``time_to_recover_s``
        is estimated over the replications that recovered; ``verdict`` says it in words. The
        definition is :func:`sim.backpressure.time_to_recover`'s."""
        trigger = trigger_window(self.scenario)
        if trigger is None or not self.results:
            return None
        values = [r.metrics.get("system.recovery_s", np.nan) for r in self.results]
        recovered = int(sum(1 for v in values if np.isfinite(v)))
        n = len(values)
        estimate = mean_ci(values)
        if recovered == 0:
            verdict = f"did not recover within the run (0 of {n} replications)"
        else:
            ci = f" [{estimate.low:.3g}, {estimate.high:.3g}]" if estimate.low is not None else ""
            verdict = f"recovered {estimate.mean:.3g} s{ci} after the trigger ended ({recovered} of {n} replications)"
            if recovered < n:
                verdict += f"; {n - recovered} did not recover within the run"
        return {
            "trigger_s": [trigger[0], trigger[1]],
            "replications": n,
            "recovered_replications": recovered,
            "time_to_recover_s": estimate.as_dict(),
            "verdict": verdict,
        }

    def plot_goodput(self, ax=None):
        """Offered load (attempts and unique requests per second) against goodput, with wasted
        work when clients abandon attempts, the trigger shaded and the recovery marked."""
        from .plots import plot_goodput

        return plot_goodput(self, ax)

    def plot_queue_depth(self, ax=None):
        from .plots import plot_series

        return plot_series(self, "system.queue_depth", "", "messages waiting in all brokers", ax)

    def plot_workers(self, ax=None):
        from .plots import plot_series

        return plot_series(self, "workers.", ".count", "workers present", ax)

    def save(self, out_dir: str | Path) -> list[Path]:
        """Write summary.json, the per-replication tables (CSV) and PNG plots into ``out_dir``."""
        from .plots import save_plots

        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        written = [out / "summary.json"]
        written[0].write_text(json.dumps(self.summary(), indent=2) + "\n")
        tables = {
            "replications.csv": self.replications,
            "littles_law.csv": self.littles_law,
            "timeseries.csv": self.timeseries,
            "latency_histogram.csv": self.latency_histogram,
        }
        for filename, table in tables.items():
            path = out / filename
            table.to_csv(path, index=filename == "replications.csv")
            written.append(path)
        if self.results:
            written += save_plots(self, out)
            if self.scenario.outbox:
                from matplotlib.figure import Figure

                from .plots import FIGURE_SIZE

                figure = Figure(figsize=FIGURE_SIZE, layout="constrained")
                self.plot_outbox_backlog(ax=figure.subplots())
                figure.savefig(out / "outbox_backlog.png", dpi=110)
                written.append(out / "outbox_backlog.png")
        return written
