"""The diagram of a system: producers, brokers, worker pools and the parts whose kinds draw
themselves (web tiers, delay stations) as boxes, messages as arrows.

Columns go left to right in the order messages flow (producers, then each broker after what
feeds it, each pool after its broker, dead-letter queues after their broker); each box shows the
component's settings and, given a Result, its measured mean wait or busy fraction.
"""

from __future__ import annotations

import math

from .components.base import Arrow, Box
from .components.registry import parts_in
from .result import Result
from .schema import Scenario
from .topology import broker_flows, broker_order
from .units import format_duration


def _producer_text(p) -> str:
    a = p.arrivals
    if a.process in ("poisson", "deterministic"):
        return f"{a.process}, {a.rate:.4g}/s"
    if a.process == "schedule":
        return f"schedule, mean {a.mean_rate():.3g}/s, peak {a.peak_rate():.3g}/s"
    if a.process == "trace":
        return f"trace, {a.mean_rate():.3g}/s"
    return f"{a.process}, {a.mean_rate():.3g}/s"


def _broker_text(b) -> str:
    dump = b.model_dump(exclude_defaults=True)
    parts = [b.kind]
    capacity = getattr(b, "capacity", None)
    if "capacity" in type(b).model_fields:
        parts.append("unbounded" if capacity is None else f"capacity {capacity}")
    extras = [(k, v) for k, v in dump.items() if k not in ("name", "kind", "capacity") and not isinstance(v, (dict, list))]
    lines = [", ".join(str(p) for p in parts)]
    lines += [f"{k} {format_duration(v) if isinstance(v, float) and ('time' in k or 'timeout' in k or 'interval' in k) else v}" for k, v in extras[:2]]
    return "\n".join(lines)


def drawn_parts(scenario: Scenario, summary: dict) -> dict[str, tuple[Box, list[Arrow]]]:
    """The parts their kinds draw (:meth:`~sim.components.base.Kind.box`: web tiers, delay
    stations), each with its arrows, given the summary of a run (or nothing)."""
    parts = {}
    for section, kind, spec in parts_in(scenario):
        box = kind.box(spec, summary.get(section, {}).get(spec.name, {}))
        if box is not None:
            parts[spec.name] = (box, list(kind.arrows(spec, scenario)))
    return parts


def _columns(scenario: Scenario) -> dict[str, int]:
    """Column of each component: producers 0, each broker after what feeds it, pools after their
    broker; the parts drawn by their kinds: sources 0, the others after what first reaches them."""
    col: dict[str, int] = {}
    for p in scenario.producers:
        col[p.name] = 0
    try:
        order = broker_order(scenario)
    except Exception:
        order = [b.name for b in scenario.brokers]
    depth = {b: 0 for b in order}
    for name in order:
        for pool in scenario.workers:
            if pool.consumes == name and pool.sends_to in depth:
                depth[pool.sends_to] = max(depth[pool.sends_to], depth[name] + 1)
    for name in order:
        col[name] = 1 + 2 * depth[name]
    for pool in scenario.workers:
        col[pool.name] = col.get(pool.consumes, 1) + 1
    for b in scenario.brokers:
        targets = b.dead_letter_targets() if hasattr(b, "dead_letter_targets") else []
        for target in targets:
            col[target] = max(col.get(target, 0), col[b.name] + 1)
    drawn = drawn_parts(scenario, {})
    col.update({name: 0 for name, (box, _) in drawn.items() if box.source})
    edges = [(name, arrow.to) for name, (_, arrows) in drawn.items() for arrow in arrows]
    edges += [(part.name, part.sends_to) for part in (*scenario.producers, *scenario.workers) if part.sends_to is not None]
    for _ in drawn:  # each pass places the parts one step further from what is placed
        for a, b in edges:
            if b in drawn and b not in col and a in col:
                col[b] = col[a] + 1
    col.update({name: 0 for name in drawn if name not in col})
    return col


def draw_diagram(scenario: Scenario, result: Result | None = None, ax=None):
    """Producers, brokers, worker pools and the parts their kinds draw as boxes, messages as arrows, left to right."""
    from matplotlib.patches import FancyBboxPatch

    if ax is None:
        import matplotlib.pyplot as plt

        _, ax = plt.subplots(figsize=diagram_size(scenario), layout="constrained")
    flows = {}
    try:
        flows = broker_flows(scenario)
    except Exception:
        pass
    summary = result.summary() if result is not None and result.results else {}
    col = _columns(scenario)
    nodes: dict[str, tuple[str, str, str]] = {}
    drawn = drawn_parts(scenario, summary)
    for name, (box, _) in drawn.items():
        nodes[name] = (box.role, name, box.text)
    for p in scenario.producers:
        nodes[p.name] = ("producer", p.name, _producer_text(p))
    for b in scenario.brokers:
        text = _broker_text(b)
        wait = summary.get("brokers", {}).get(b.name, {}).get("wait_s", {}).get("mean", {}).get("mean")
        if wait is not None:
            text += f"\nwait mean {format_duration(wait)}"
        nodes[b.name] = ("broker", b.name, text)
    for w in scenario.workers:
        dist = w.service_time.build()
        text = f"{w.count} workers, {dist.name}\nmean {format_duration(dist.mean)}, cv {dist.cv:.2g}"
        util = summary.get("workers", {}).get(w.name, {}).get("utilization", {}).get("mean")
        if util is not None:
            text += f"\nbusy {100 * util:.3g}%"
        nodes[w.name] = ("workers", w.name, text)
    columns: dict[int, list[str]] = {}
    for name in nodes:
        columns.setdefault(col.get(name, 0), []).append(name)
    lines = max(text.count("\n") + 1 for _kind, _label, text in nodes.values())
    width, dx = 2.7, 3.5
    height = max(1.5, 0.75 + 0.24 * lines)
    dy = height + 0.4
    rows = max(len(v) for v in columns.values())
    position = {}
    for c, names in columns.items():
        offset = (rows - len(names)) * dy / 2
        for i, name in enumerate(names):
            position[name] = (c * dx, -(offset + i * dy))
    colours = {"producer": "#dbeafe", "broker": "#fef3c7", "workers": "#dcfce7", "dlq": "#fee2e2"}
    kinds = {"producer": "producer", "broker": "broker", "workers": "worker pool"}
    dead_letter = {t for b in scenario.brokers for t in (b.dead_letter_targets() if hasattr(b, "dead_letter_targets") else [])}
    for name, (kind, label, text) in nodes.items():
        x, y = position[name]
        colour = colours["dlq" if name in dead_letter else kind] if kind in colours else "#ede9fe"
        ax.add_patch(FancyBboxPatch((x - width / 2, y - height / 2), width, height, boxstyle="round,pad=0.04,rounding_size=0.12",
                                    facecolor=colour, edgecolor="#334155", linewidth=1.2))
        ax.text(x, y + height / 2 - 0.14, f"{kinds.get(kind, kind)}{' (dead letters)' if name in dead_letter else ''}", ha="center", va="top", fontsize=7, color="#475569")
        ax.text(x, y + 0.26, label, ha="center", va="center", fontsize=9.5, fontweight="bold", color="#0f172a")
        ax.text(x, y - 0.02, text, ha="center", va="top", fontsize=7, color="#1e293b", linespacing=1.25)

    lowest = [min(p[1] for p in position.values()) - height / 2]

    def arrow(a, b, label="", style="-"):
        (x1, y1), (x2, y2) = position[a], position[b]
        bend = 0.0
        if x2 > x1:
            start, end = (x1 + width / 2 + 0.05, y1), (x2 - width / 2 - 0.05, y2)
        elif x2 < x1:  # back to an earlier column (a completion signal): a curve under the boxes
            start, end = (x1, y1 - height / 2 - 0.05), (x2, y2 - height / 2 - 0.05)
            bend = -0.25  # the curve's middle is 0.125 × the distance below the line
        else:
            start, end = (x1, y1 - height / 2), (x2, y2 + height / 2)
        ax.annotate("", xy=end, xytext=start, arrowprops=dict(arrowstyle="-|>", color="#334155", lw=1.3, linestyle=style, shrinkA=0, shrinkB=0,
                                                              connectionstyle=f"arc3,rad={bend}"))
        if bend:
            bottom = min(start[1], end[1]) - 0.125 * abs(x1 - x2)
            lowest[0] = min(lowest[0], bottom - 0.3)
            if label:
                ax.text((start[0] + end[0]) / 2, bottom - 0.05, label, ha="center", va="top", fontsize=7, color="#334155")
        elif label:
            ax.text((start[0] + end[0]) / 2, (start[1] + end[1]) / 2 + 0.1, label, ha="center", va="bottom", fontsize=7, color="#334155")

    for p in scenario.producers:
        if p.sends_to in position:
            arrow(p.name, p.sends_to, f"{p.arrivals.mean_rate():.3g}/s")
    for w in scenario.workers:
        if w.consumes in position:
            flow = flows.get(w.consumes)
            arrow(w.consumes, w.name, f"ρ = {flow.offered_load:.2g}" if flow is not None and math.isfinite(flow.offered_load) else "")
        if w.sends_to in position:
            back = position[w.sends_to][0] <= position[w.name][0]  # to what comes before it: a completion signal
            arrow(w.name, w.sends_to, "completion" if back else "", style="--" if back else "-")
    for b in scenario.brokers:
        for target in (b.dead_letter_targets() if hasattr(b, "dead_letter_targets") else []):
            if target in position:
                arrow(b.name, target, "dead letters", style="--")
    for name, (_, arrows) in drawn.items():
        for part_arrow in arrows:
            if part_arrow.to in position:
                arrow(name, part_arrow.to, part_arrow.label, style="--" if part_arrow.dashed else "-")
    xs = [p[0] for p in position.values()]
    ys = [p[1] for p in position.values()]
    ax.set_xlim(min(xs) - width / 2 - 0.2, max(xs) + width / 2 + 0.2)
    ax.set_ylim(min(min(ys) - height / 2, lowest[0]) - 0.2, max(ys) + height / 2 + 0.2)
    ax.set_aspect("equal")
    ax.axis("off")
    return ax


def diagram_size(scenario: Scenario) -> tuple[float, float]:
    col = _columns(scenario)
    ncols = max(col.values()) + 1 if col else 1
    counts: dict[int, int] = {}
    for c in col.values():
        counts[c] = counts.get(c, 0) + 1
    return (max(4.0, 1.9 * ncols + 0.6), max(1.8, 1.3 * max(counts.values()) + 0.4))
