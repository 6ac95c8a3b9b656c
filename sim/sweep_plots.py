"""Plots of a sweep: a metric against a varied value, and latency against offered load.

The functions take a finished sweep (a :class:`sim.sweep.SweepResult`: its axes, points, rows,
the offered load of each point and the queueing-theory curve between them) and draw on a
matplotlib axes; :func:`metric_label` and :func:`new_axes` are shared with the capacity plots.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from .plots import FIGURE_SIZE, LABEL_CHARS, TITLE_CHARS, wrapped
from .result import SLO_METRICS
from .stats import is_nan
from .units import format_duration

LATENCY_LABELS = {"mean": "mean", "p50": "p50", "p95": "p95", "p99": "p99", "p999": "p99.9"}


def metric_label(metric: str) -> str:
    """A readable name for a flat metric: ``system.latency_s.p99`` → ``p99 latency (s)``."""
    parts = metric.split(".")
    if parts[0] == "system" and len(parts) == 3 and parts[1] == "latency_s":
        return f"{LATENCY_LABELS.get(parts[2], parts[2])} end-to-end latency (s)"
    if metric == "system.throughput_per_s":
        return "throughput (per second)"
    return metric


def new_axes(ax, title):
    """``ax`` (a new figure's axes when None) with ``title``."""
    if ax is None:
        import matplotlib.pyplot as plt

        _, ax = plt.subplots(figsize=FIGURE_SIZE, layout="constrained")
    ax.set_title(wrapped(title, TITLE_CHARS))
    return ax


def _groups(sweep, x_path: str) -> list[tuple[dict, list]]:
    """Points grouped by the values of the axes other than ``x_path``, in grid order."""
    others = [a for a in sweep.axes if a.path != x_path]
    groups: dict[tuple, tuple[dict, list]] = {}
    for p in sweep.points:
        fixed = {a.path: v for a, v in zip(sweep.axes, p.values) if a.path != x_path}
        key = tuple(fixed[a.path].text for a in others)
        groups.setdefault(key, (fixed, []))[1].append(p)
    return list(groups.values())


def _slo_target(sweep, metric: str) -> tuple[str, float] | None:
    scenario = next((p.scenario for p in sweep.points if p.scenario is not None), None)
    if scenario is None or scenario.slo is None:
        return None
    for key, (slo_metric, _sense) in SLO_METRICS.items():
        target = getattr(scenario.slo, key, None)
        if slo_metric == metric and target is not None:
            return key, float(target)
    return None


def _target_label(key: str, target: float) -> str:
    return f"SLO {key} {format_duration(target) if key.startswith('latency') else f'{target:g}'}"


def _errorbars(ax, xs, rows, metric, label, marker="o", color=None):
    means = np.array([_nan(r.get(metric)) for r in rows])
    lows = np.array([_nan(r.get(f"{metric}.ci95_low")) for r in rows])
    highs = np.array([_nan(r.get(f"{metric}.ci95_high")) for r in rows])
    lows = np.where(np.isnan(lows), means, lows)
    highs = np.where(np.isnan(highs), means, highs)
    order = np.argsort(xs)
    xs, means, lows, highs = np.asarray(xs)[order], means[order], lows[order], highs[order]
    bars = ax.errorbar(xs, means, yerr=[means - lows, highs - means], fmt=f"{marker}-", capsize=3, label=label, color=color)
    return bars.lines[0].get_color(), np.nanmax(highs) if np.isfinite(highs).any() else np.nan


def _nan(x) -> float:
    return float("nan") if x is None else float(x)


def _mark_failed(ax, xs, labels):
    if xs:
        ax.plot(xs, [0.02] * len(xs), "x", color="tab:red", transform=ax.get_xaxis_transform(), clip_on=False,
                label="no result (" + ", ".join(sorted(set(labels))) + ")")


def _failure_kind(row: dict) -> str:
    if row.get("replications_failed"):
        return "failed replications"
    return "unstable" if "unstable" in (row.get("error") or "") else "invalid"


def plot_sweep_metric(sweep, metric: str, x: str | None = None, ax=None, theory: bool = True):
    """``metric`` against the varied path ``x`` with 95% CI error bars; queueing theory (dashed)
    where the system has a model; the SLO's target (red) if the metric has one."""
    numeric = [a for a in sweep.axes if a.numeric]
    axis = next((a for a in sweep.axes if a.path == x), None) if x else (numeric[0] if numeric else None)
    if axis is None or not axis.numeric:
        raise ValueError(f"cannot plot against {x or 'a varied path'}: plots need a numeric axis (have {', '.join(a.path for a in sweep.axes)})")
    ax = new_axes(ax, f"{_scenario_name(sweep)}: {metric_label(metric)}")
    top = 0.0
    failed_x, failed_kind = [], []
    for fixed, points in _groups(sweep, axis.path):
        label = ", ".join(f"{k}={v.text}" for k, v in fixed.items()) or "simulation (95% CI)"
        good = [(p.values[sweep.axes.index(axis)].number, sweep.rows[p.index]) for p in points
                if p.index in sweep.rows and sweep.rows[p.index].get(metric) is not None and not is_nan(sweep.rows[p.index].get(metric))]
        for p in points:
            row = sweep.rows.get(p.index)
            if row is not None and (row.get(metric) is None or is_nan(row.get(metric))):
                failed_x.append(p.values[sweep.axes.index(axis)].number)
                failed_kind.append(_failure_kind(row))
        color = None
        if good:
            color, high = _errorbars(ax, [g[0] for g in good], [g[1] for g in good], metric, label)
            top = max(top, high if np.isfinite(high) else 0.0)
        if theory:
            curve = [(v, model.values[metric]) for v, _load, model in sweep.dense_theory(axis.path, fixed) if metric in model.values]
            if curve:
                models = {model.model for _v, _l, model in sweep.dense_theory(axis.path, fixed) if metric in model.values}
                exact = all(model.values[metric][1] for _v, _l, model in sweep.dense_theory(axis.path, fixed) if metric in model.values)
                kind = "exact" if exact else "approximation"
                ax.plot([c[0] for c in curve], [c[1][0] for c in curve], "--", color=color, alpha=0.8,
                        label=f"{' / '.join(sorted(models))} ({kind})" + (f", {label}" if fixed else ""))
    target = _slo_target(sweep, metric)
    if target is not None:
        ax.axhline(target[1], color="tab:red", linestyle=":", label=_target_label(*target))
        top = max(top, target[1])
    _mark_failed(ax, failed_x, failed_kind)
    if top > 0:
        ax.set_ylim(bottom=0, top=top * 1.25)
    ax.set_xlabel(axis.path + (f" ({axis.unit})" if axis.unit else ""))
    ax.set_ylabel(wrapped(metric_label(metric), LABEL_CHARS))
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize="small")
    return ax


def plot_hockey_stick(sweep, metrics: Sequence[str] = ("system.latency_s.mean", "system.latency_s.p99"), ax=None, theory: bool = True):
    """Latency against offered load per worker with 95% CIs, and queueing theory where it applies."""
    ax = new_axes(ax, f"{_scenario_name(sweep)}: latency against load")
    loads = sweep.offered_loads()
    numeric = [a for a in sweep.axes if a.numeric]
    axis = numeric[0] if numeric else None
    top = 0.0
    colours = {}
    for metric in metrics:
        for fixed, points in (_groups(sweep, axis.path) if axis else [({}, sweep.points)]):
            rows = [(loads[p.index], sweep.rows[p.index]) for p in points
                    if p.index in loads and p.index in sweep.rows and sweep.rows[p.index].get(metric) is not None]
            suffix = (" " + ", ".join(f"{k}={v.text}" for k, v in fixed.items())) if fixed else ""
            if not rows:
                continue
            short = metric.rsplit(".", 1)[-1]
            color, high = _errorbars(ax, [r[0] for r in rows], [r[1] for r in rows], metric, f"{LATENCY_LABELS.get(short, short)} simulated{suffix}")
            colours.setdefault(metric, color)
            top = max(top, high if np.isfinite(high) else 0.0)
            if theory and axis is not None:
                curve = sorted((load, model.values[metric][0], model) for _v, load, model in sweep.dense_theory(axis.path, fixed) if metric in model.values)
                if curve:
                    exact = all(m.values[metric][1] for _l, _y, m in curve)
                    names = " / ".join(sorted({m.model for _l, _y, m in curve}))
                    ax.plot([c[0] for c in curve], [c[1] for c in curve], "--", color=color, alpha=0.8,
                            label=f"{LATENCY_LABELS.get(short, short)} {names} ({'exact' if exact else 'approximation'}){suffix}")
    for metric in metrics:
        target = _slo_target(sweep, metric)
        if target is not None:
            ax.axhline(target[1], color=colours.get(metric, "tab:red"), linestyle=":", label=_target_label(*target))
            top = max(top, target[1])
    if top > 0:
        ax.set_ylim(bottom=0, top=top * 1.25)
    ax.set_xlabel("offered load per worker, λ·E[S]/c (busiest stage)")
    ax.set_ylabel("end-to-end latency (s)")
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize="small")
    return ax


def _scenario_name(sweep) -> str:
    return next((p.scenario.name for p in sweep.points if p.scenario is not None), sweep.source.stem)
