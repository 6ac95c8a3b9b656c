"""Plots of a capacity plan: each latency objective at the values a search evaluated."""

from __future__ import annotations

import numpy as np

from .result import SLO_METRICS
from .sweep_plots import metric_label, new_axes
from .units import format_duration


def plot_runs(plan, runs, xlabel: str | None, ax=None):
    """The latency objectives at each evaluated value: mean and 95% CI, markers coloured by verdict."""
    from matplotlib.ticker import MaxNLocator

    phase = runs[0].phase if runs else "search"
    ax = new_axes(ax, f"{plan.source.stem}: {'capacity search' if phase == 'search' else 'headroom'}")
    colours = {"met": "tab:green", "not met": "tab:red", "uncertain": "tab:orange", "failed": "tab:red"}
    shown: set[str] = set()
    palette = iter(["tab:blue", "tab:purple", "tab:brown", "tab:cyan", "tab:olive", "tab:gray"])
    for key in [k for k in plan.slo if k.startswith("latency")]:
        metric = SLO_METRICS[key][0]
        line_colour = next(palette)
        done = sorted((r.value, r.objectives[key], r.verdict) for r in runs if key in r.objectives and r.objectives[key]["mean"] is not None)
        if not done:
            continue
        xs = np.array([d[0] for d in done], dtype=float)
        mean = np.array([d[1]["mean"] for d in done])
        low = np.array([d[1]["ci95"][0] if d[1]["ci95"][0] is not None else d[1]["mean"] for d in done])
        high = np.array([d[1]["ci95"][1] if d[1]["ci95"][1] is not None else d[1]["mean"] for d in done])
        ax.errorbar(xs, mean, yerr=[mean - low, high - mean], fmt="-", capsize=3, color=line_colour, label=metric_label(metric), zorder=1)
        colour = line_colour
        for x, m, (_v, _o, verdict) in zip(xs, mean, done):
            ax.scatter([x], [m], color=colours.get(verdict, "grey"), zorder=2, s=36, edgecolor="black", linewidth=0.5,
                       label=f"verdict: {verdict}" if verdict not in shown else None)
            shown.add(verdict)
        ax.axhline(plan.slo[key], color=colour, linestyle=":", label=f"SLO {key} {format_duration(plan.slo[key])}")
    invalid = [r.value for r in runs if r.verdict == "invalid"]
    if invalid:
        ax.plot(invalid, [0.02] * len(invalid), "x", color="tab:red", transform=ax.get_xaxis_transform(), clip_on=False, label="invalid (e.g. unstable)")
    if phase == "search":
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel(xlabel or "value")
    ax.set_ylabel("end-to-end latency (s)")
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize="small")
    return ax
