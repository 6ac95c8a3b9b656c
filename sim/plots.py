"""Plots of a Result (matplotlib): latency distribution and time series across replications."""

from __future__ import annotations

import textwrap
from pathlib import Path

import numpy as np

from .backpressure import trigger_window

FIGURE_SIZE = (8, 4.5)
TITLE_CHARS = 64
"""Characters per line of a title (at the default size, about what 8 inches hold); longer wraps."""
LABEL_CHARS = 40
"""Characters per line of an axis label (the height of the plot); longer wraps."""


def wrapped(text: str, width: int) -> str:
    """``text`` on lines of at most ``width`` characters, so that no title or label is cut off."""
    return "\n".join(textwrap.wrap(text, width, break_long_words=True)) or text


def _axes(ax, title):
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=FIGURE_SIZE, layout="constrained")
    ax.set_title(wrapped(title, TITLE_CHARS))
    return ax


def _time_unit(duration_s: float) -> tuple[float, str]:
    """The unit a time axis of ``duration_s`` reads best in: s, min or h."""
    if duration_s >= 4 * 3600:
        return 3600.0, "h"
    if duration_s >= 4 * 60:
        return 60.0, "min"
    return 1.0, "s"


def plot_latency(result, ax=None):
    """Histogram of end-to-end latency (all replications, log scale) with the pooled p50, p99 and p99.9."""
    ax = _axes(ax, f"{result.scenario.name}: end-to-end latency of processed messages")
    hist = result.latency_histogram
    total = hist["count"].sum()
    if total:
        density = hist["count"] / total
        ax.stairs(density, np.r_[hist["low_s"].to_numpy(), hist["high_s"].iloc[-1]], fill=True, alpha=0.6)
        nonzero = hist.index[hist["count"] > 0]
        ax.set_xlim(hist["low_s"][nonzero[0]], hist["high_s"][nonzero[-1]])
        for key, style in (("p50", "--"), ("p99", ":"), ("p999", "-.")):
            est = result.estimate(f"system.latency_s.{key}")
            if est.mean is not None:
                ax.axvline(est.mean, color="black", linestyle=style, label=f"{key} {est.mean:.4g}s")
        ax.legend()
    ax.set_xscale("log")
    ax.set_xlabel("latency (s)")
    ax.set_ylabel("fraction of messages")
    return ax


def plot_series(result, prefix: str, suffix: str, ylabel: str, ax=None):
    """Every time series whose name starts with ``prefix`` and ends with ``suffix``: the mean over
    replications per time bin, with the range of the replications shaded, and the warm-up greyed."""
    ax = _axes(ax, f"{result.scenario.name}: {ylabel} over time")
    table = result.timeseries
    chosen = table[table["series"].str.startswith(prefix) & table["series"].str.endswith(suffix)]
    scale, unit = _time_unit(result.scenario.duration)
    for name, rows in chosen.groupby("series", sort=False):
        by_bin = rows.groupby("t_s")["value"]
        mean, low, high = by_bin.mean(), by_bin.min(), by_bin.max()
        label = name[len(prefix):len(name) - len(suffix)] or "mean of replications"
        t = mean.index.to_numpy() / scale
        line = ax.plot(t, mean.to_numpy(), label=label)[0]
        ax.fill_between(t, low.to_numpy(), high.to_numpy(), color=line.get_color(), alpha=0.2, linewidth=0)
    if result.warmup_s > 0:
        ax.axvspan(0, result.warmup_s / scale, color="grey", alpha=0.15, label="warm-up")
    ax.set_xlabel(f"time ({unit})")
    ax.set_ylabel(wrapped(ylabel, LABEL_CHARS))
    if len(ax.get_legend_handles_labels()[0]):
        ax.legend(loc="upper right")
    return ax


def _has_back_pressure(scenario) -> bool:
    """Clients, admission gates or triggers: what makes offered load and goodput differ."""

    return bool(scenario.clients or scenario.admission or any(p.is_client for p in scenario.producers) or trigger_window(scenario))


def plot_goodput(result, ax=None):
    """Offered attempts and unique requests per second against goodput (and wasted work) over
    time, means over replications with their range shaded; the trigger window hatched and the
    mean recovery time marked."""
    ax = _axes(ax, f"{result.scenario.name}: offered load and goodput over time")
    table = result.timeseries
    scale, unit = _time_unit(result.scenario.duration)
    styles = {
        "system.offered_per_s": ("offered attempts", "tab:red"),
        "system.offered_unique_per_s": ("offered requests", "tab:orange"),
        "system.goodput_per_s": ("goodput (requests made then that succeeded)", "tab:green"),
        "system.wasted_per_s": ("wasted work", "tab:grey"),
    }
    for name, (label, colour) in styles.items():
        rows = table[table["series"] == name]
        if rows.empty:
            continue
        by_bin = rows.groupby("t_s")["value"]
        mean, low, high = by_bin.mean(), by_bin.min(), by_bin.max()
        t = mean.index.to_numpy() / scale
        ax.plot(t, mean.to_numpy(), label=label, color=colour)
        ax.fill_between(t, low.to_numpy(), high.to_numpy(), color=colour, alpha=0.15, linewidth=0)
    recovery = result.recovery()
    if recovery is not None:
        start, end = recovery["trigger_s"]
        ax.axvspan(start / scale, end / scale, color="tab:purple", alpha=0.15, label="trigger")
        seconds = recovery["time_to_recover_s"]["mean"]
        if seconds is not None:
            ax.axvline((end + seconds) / scale, color="tab:purple", linestyle="--", label=f"recovered (+{seconds:.3g} s)")
    if result.warmup_s > 0:
        ax.axvspan(0, result.warmup_s / scale, color="grey", alpha=0.15, label="warm-up")
    ax.set_xlabel(f"time ({unit})")
    ax.set_ylabel("per second")
    ax.legend(loc="upper right", fontsize="small")
    return ax


def save_plots(result, out_dir: Path) -> list[Path]:
    """Draw each plot on its own Figure (no pyplot state, whatever the backend) and save it as PNG."""
    from matplotlib.figure import Figure

    written = []
    for filename, draw in (
        ("latency.png", result.plot_latency),
        ("queue_length.png", result.plot_queue_length),
        ("throughput.png", result.plot_throughput),
        ("utilization.png", result.plot_utilization),
        *((("goodput.png", result.plot_goodput),) if _has_back_pressure(result.scenario) else ()),
        *((("workers.png", result.plot_workers),) if any(
            p.autoscaling is not None or p.capacity_loss is not None for p in result.scenario.workers) else ()),
    ):
        figure = Figure(figsize=FIGURE_SIZE, layout="constrained")
        draw(ax=figure.subplots())
        path = out_dir / filename
        figure.savefig(path, dpi=110)
        written.append(path)
    return written
