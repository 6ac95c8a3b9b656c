"""Plots of a paired comparison: each design's value of the user-facing latencies side by side,
and the paired differences B − A with their 95% intervals.

The functions take the differences a comparison made (:class:`sim.compare.Difference`: the two
estimates and the paired one) and draw on matplotlib axes; they never import the comparison.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from .sweep_plots import new_axes


def plot_side_by_side(differences: Sequence, names: tuple[str, str] = ("A", "B"), ax=None):
    """Each metric's mean in design A and in B, as paired bars with their 95% intervals."""
    ax = new_axes(ax, f"{names[0]} and {names[1]} side by side")
    shown = [d for d in differences if d.a.mean is not None and d.b.mean is not None]
    for offset, side, label in ((-0.2, "a", names[0]), (0.2, "b", names[1])):
        estimates = [getattr(d, side) for d in shown]
        errors = [[e.mean - e.low if e.low is not None else 0 for e in estimates], [e.high - e.mean if e.high is not None else 0 for e in estimates]]
        ax.barh([i + offset for i in range(len(shown))], [e.mean for e in estimates], height=0.4, xerr=errors, label=label)
    ax.set_yticks(range(len(shown)), [d.metric for d in shown])
    ax.invert_yaxis()
    ax.legend()
    return ax


def plot_differences(differences: Sequence, ax=None):
    """The paired difference B − A of each metric with its 95% interval, and the line of no difference."""
    ax = new_axes(ax, "paired difference B − A (95% interval)")
    shown = [d for d in differences if d.paired.mean is not None]
    means = [d.paired.mean for d in shown]
    errors = [[m - d.paired.low if d.paired.low is not None else 0 for m, d in zip(means, shown)],
              [d.paired.high - m if d.paired.high is not None else 0 for m, d in zip(means, shown)]]
    ax.errorbar(means, range(len(shown)), xerr=errors, fmt="o", capsize=3)
    ax.axvline(0.0, color="grey", linestyle=":")
    ax.set_yticks(range(len(shown)), [d.metric for d in shown])
    ax.invert_yaxis()
    return ax


def latency_differences(differences: Sequence) -> list:
    """The differences of latencies: end-to-end percentiles and every ``…_s.mean`` and ``…_s.p99``."""
    return [d for d in differences if ".latency_s." in d.metric or d.metric.endswith(("_s.mean", "_s.p99"))]


def save_comparison_plots(differences: Sequence, names: tuple[str, str], out_dir: Path) -> list[Path]:
    """``side_by_side.png`` and ``differences.png`` of the latencies both designs report, each on
    its own Figure (no pyplot state, whatever the backend)."""
    from matplotlib.figure import Figure

    shown = latency_differences(differences)
    written = []
    for filename, draw in (("side_by_side.png", lambda ax: plot_side_by_side(shown, names, ax)),
                           ("differences.png", lambda ax: plot_differences(shown, ax))):
        figure = Figure(figsize=(10, 0.35 * len(shown) + 1.5), layout="constrained")
        ax = draw(figure.subplots())
        ax.set_xlabel("seconds")
        path = out_dir / filename
        figure.savefig(path, dpi=100)
        written.append(path)
    return written
