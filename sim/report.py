"""The design-review report: one self-contained HTML file (or Markdown with PNGs beside it).

``write_report`` runs the scenario's replications (and, with ``vary``, a capacity search and the
headroom of its answer) and renders, with the jinja2 templates in ``sim/templates``:

- the headline: the SLO verdict per objective (met / not met / uncertain, from the 95% CI), and
  the capacity recommendation when asked;
- the system as a diagram of producers, brokers and worker pools (matplotlib boxes and arrows);
- a summary table with confidence intervals; latency percentiles and their distribution;
  throughput, queue depth and worker utilisation over time;
- the fate of messages (processed, rejected, lost, dead-lettered, in flight; duplicates);
- Little's law on every boundary and the conservation of messages;
- simulation against queueing theory where the system is a single stage with a formula, each
  value marked exact or approximate;
- the assumptions: the measurement window, replications and intervals, random streams, and each
  model's documented simplifications (its class docstring).

Plots are PNG embedded as base64 and the CSS is inline: the file has no reference to anything
outside itself and renders with no network.
"""

from __future__ import annotations

import base64
import inspect
import io
import math
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Sequence


from .capacity import CapacityPlan, _value_at, plan_capacity, single_stage, slo_overrides, theory_for
from .executors import Executor, make_executor
from .loading import load_scenario
from .result import SLO_METRICS, Result
from .schema import Scenario
from .sweep import Job, run_jobs
from .topology import broker_flows, broker_order
from .units import format_duration

FIGURE_DPI = 100


# --- formatting ---------------------------------------------------------------------------------


def _is_time(metric: str) -> bool:
    return any(part in metric for part in ("latency_s", "wait_s", "service_s", "sojourn_s"))


def fmt_value(metric: str, value) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    if _is_time(metric):
        return format_duration(value)
    if metric.endswith("utilization") or metric.endswith("_rate"):
        return f"{100 * value:.3g}%"
    if metric.endswith("per_s"):
        return f"{value:.4g}/s"
    return f"{value:.4g}"


def fmt_ci(metric: str, low, high) -> str:
    if low is None or high is None:
        return "–"
    return f"[{fmt_value(metric, low)}, {fmt_value(metric, high)}]"


def _slo_target(key: str, target: float) -> str:
    if key.startswith("latency"):
        return format_duration(target)
    if key == "min_throughput":
        return f"≥ {target:.4g}/s"
    return f"≤ {100 * target:.3g}%"


SLO_LABELS = {
    "latency_mean": "mean latency", "latency_p50": "p50 latency", "latency_p95": "p95 latency", "latency_p99": "p99 latency",
    "latency_p999": "p99.9 latency", "max_loss_rate": "loss rate", "max_rejection_rate": "rejection rate", "min_throughput": "throughput",
}


# --- figures ------------------------------------------------------------------------------------


@dataclass
class Figure:
    name: str
    title: str
    png: bytes
    caption: str = ""

    @property
    def data_uri(self) -> str:
        return "data:image/png;base64," + base64.b64encode(self.png).decode("ascii")


def _render(draw: Callable, size=(8, 4.5)) -> bytes:
    from matplotlib.figure import Figure as MplFigure

    figure = MplFigure(figsize=size, layout="constrained")
    draw(figure.subplots())
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=FIGURE_DPI, metadata={"Software": None})
    return buffer.getvalue()


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


def _columns(scenario: Scenario) -> dict[str, int]:
    """Column of each component: producers 0, each broker after what feeds it, pools after their broker."""
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
    return col


def draw_diagram(scenario: Scenario, result: Result | None = None, ax=None):
    """Producers, brokers and worker pools as boxes, messages as arrows, left to right."""
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
        colour = colours["dlq" if name in dead_letter else kind]
        ax.add_patch(FancyBboxPatch((x - width / 2, y - height / 2), width, height, boxstyle="round,pad=0.04,rounding_size=0.12",
                                    facecolor=colour, edgecolor="#334155", linewidth=1.2))
        ax.text(x, y + height / 2 - 0.14, f"{kinds[kind]}{' (dead letters)' if name in dead_letter else ''}", ha="center", va="top", fontsize=7, color="#475569")
        ax.text(x, y + 0.26, label, ha="center", va="center", fontsize=9.5, fontweight="bold", color="#0f172a")
        ax.text(x, y - 0.02, text, ha="center", va="top", fontsize=7, color="#1e293b", linespacing=1.25)

    def arrow(a, b, label="", style="-"):
        (x1, y1), (x2, y2) = position[a], position[b]
        if x2 > x1:
            start, end = (x1 + width / 2 + 0.05, y1), (x2 - width / 2 - 0.05, y2)
        else:
            start, end = (x1, y1 - height / 2), (x2, y2 + height / 2)
        ax.annotate("", xy=end, xytext=start, arrowprops=dict(arrowstyle="-|>", color="#334155", lw=1.3, linestyle=style, shrinkA=0, shrinkB=0))
        if label:
            ax.text((start[0] + end[0]) / 2, (start[1] + end[1]) / 2 + 0.1, label, ha="center", va="bottom", fontsize=7, color="#334155")

    for p in scenario.producers:
        if p.sends_to in position:
            arrow(p.name, p.sends_to, f"{p.arrivals.mean_rate():.3g}/s")
    for w in scenario.workers:
        if w.consumes in position:
            flow = flows.get(w.consumes)
            arrow(w.consumes, w.name, f"ρ = {flow.offered_load:.2g}" if flow is not None and math.isfinite(flow.offered_load) else "")
        if w.sends_to in position:
            arrow(w.name, w.sends_to)
    for b in scenario.brokers:
        for target in (b.dead_letter_targets() if hasattr(b, "dead_letter_targets") else []):
            if target in position:
                arrow(b.name, target, "dead letters", style="--")
    xs = [p[0] for p in position.values()]
    ys = [p[1] for p in position.values()]
    ax.set_xlim(min(xs) - width / 2 - 0.2, max(xs) + width / 2 + 0.2)
    ax.set_ylim(min(ys) - height / 2 - 0.2, max(ys) + height / 2 + 0.2)
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


# --- the report's content -----------------------------------------------------------------------


def _docstring_models(scenario: Scenario, seed: int) -> list[dict]:
    """Each model class the scenario builds, with its docstring (its documented simplifications)."""
    import simpy

    from .network import arrival_process, build
    from .recorder import Recorder
    from .streams import Streams

    entries: dict[type, dict] = {}

    def add(cls, used_by: str) -> None:
        entry = entries.setdefault(cls, {"name": f"{cls.__module__}.{cls.__qualname__}", "used_by": [], "doc": inspect.getdoc(cls) or "(no docstring)"})
        if used_by not in entry["used_by"]:
            entry["used_by"].append(used_by)

    try:
        network = build(scenario, simpy.Environment(), Recorder(scenario.warmup, scenario.duration), Streams(seed, 0))
        for name, component in network.producers.items():
            add(type(component), f"producer {name}")
        for p in scenario.producers:
            add(type(arrival_process(p.arrivals, Streams(seed, 0), p.name)), f"arrivals of {p.name}")
        for name, component in network.brokers.items():
            add(type(component), f"broker {name}")
        for name, component in network.workers.items():
            add(type(component), f"worker pool {name}")
    except Exception:  # the models' constructors are theirs to change; fall back on the specs
        pass
    for b in scenario.brokers:
        add(type(b), f"broker {b.name} (scenario keys)")
    return list(entries.values())


def _summary_rows(summary: dict) -> list[dict]:
    rows = []

    def add(section, label, metric, est):
        if isinstance(est, dict) and "mean" in est:
            rows.append({"section": section, "label": label, "mean": fmt_value(metric, est["mean"]), "ci": fmt_ci(metric, *est["ci95"])})

    system = summary.get("system", {})
    for key, label in (("mean", "latency mean"), ("p50", "latency p50"), ("p95", "latency p95"), ("p99", "latency p99"), ("p999", "latency p99.9")):
        add("system", label, "system.latency_s", system.get("latency_s", {}).get(key))
    add("system", "throughput", "system.throughput_per_s", system.get("throughput_per_s"))
    add("system", "mean number inside", "system.in_system_mean", system.get("in_system_mean"))
    for outcome in ("rejected", "lost", "dead_lettered"):
        add("system", f"{outcome.replace('_', '-')} rate", f"system.{outcome}_rate", system.get(f"{outcome}_rate"))
    for name, broker in summary.get("brokers", {}).items():
        add(f"broker {name}", "wait mean", "wait_s", broker.get("wait_s", {}).get("mean"))
        add(f"broker {name}", "wait p99", "wait_s", broker.get("wait_s", {}).get("p99"))
        add(f"broker {name}", "mean number waiting", "length_mean", broker.get("length_mean"))
        for key, est in broker.items():
            if key not in ("wait_s", "length_mean") and isinstance(est, dict) and "mean" in est and est["mean"]:
                add(f"broker {name}", key.replace("_", " "), key, est)
    for name, pool in summary.get("workers", {}).items():
        add(f"workers {name}", "utilisation", "utilization", pool.get("utilization"))
        add(f"workers {name}", "service time mean", "service_s", pool.get("service_s", {}).get("mean"))
        for key in ("errors", "crashes"):
            est = pool.get(key)
            if isinstance(est, dict) and est.get("mean"):
                add(f"workers {name}", key, key, est)
    return rows


def _slo_rows(result: Result) -> list[dict]:
    rows = []
    for key, v in (result.slo_report() or {}).items():
        metric = v["metric"]
        rows.append({
            "objective": key, "label": SLO_LABELS.get(key, key), "target": _slo_target(key, v["target"]),
            "mean": fmt_value(metric, v["mean"]), "ci": fmt_ci(metric, *v["ci95"]), "status": v["status"],
        })
    return rows


def _headline(result: Result, slo_rows: list[dict]) -> tuple[str, str]:
    if not result.results:
        return "bad", "No replication finished; there is nothing to report."
    if not slo_rows:
        return "none", "The scenario has no service-level objective (add slo: to the file, or --slo), so no verdict."
    bad = [r for r in slo_rows if r["status"] == "not met"]
    unsure = [r for r in slo_rows if r["status"] not in ("met", "not met")]
    n = len(result.results)
    if bad:
        text = "; ".join(f"{r['label']} {r['mean']} {r['ci']} against {r['target']}" for r in bad)
        return "bad", f"Does not meet its SLO: {text}."
    if unsure:
        text = "; ".join(f"{r['label']} {r['mean']} {r['ci']} against {r['target']}" for r in unsure)
        return "unsure", (f"Cannot tell with {n} replications whether it meets its SLO: the confidence interval of {text} "
                          f"straddles the target. More (or longer) replications would narrow it.")
    return "good", f"Meets its SLO with 95% confidence: every objective's confidence interval lies inside its target ({n} replications)."


def measure_label(metric: str) -> str:
    """A reader's name for a flat metric: ``brokers.q.wait_s.p99`` → ``wait in q, p99``."""
    parts = metric.split(".")
    stat = {"mean": "mean", "p50": "p50", "p95": "p95", "p99": "p99", "p999": "p99.9"}
    if parts[0] == "system":
        names = {"in_system_mean": "mean number in the system", "throughput_per_s": "throughput", "rejected_rate": "rejection rate",
                 "lost_rate": "loss rate", "dead_lettered_rate": "dead-letter rate"}
        if parts[1] == "latency_s" and len(parts) == 3:
            return f"end-to-end latency, {stat.get(parts[2], parts[2])}"
        return names.get(parts[1], metric)
    if parts[0] == "brokers" and len(parts) >= 3:
        name, rest = parts[1], parts[2:]
        if rest[0] == "wait_s" and len(rest) == 2:
            return f"wait in {name}, {stat.get(rest[1], rest[1])}"
        if rest == ["length_mean"]:
            return f"mean number waiting in {name}"
    if parts[0] == "workers" and len(parts) >= 3:
        name, rest = parts[1], parts[2:]
        names = {"utilization": f"utilisation of {name}", "busy_mean": f"mean busy workers of {name}",
                 "service_s.mean": f"mean service time of {name}"}
        return names.get(".".join(rest), metric)
    return metric


def _theory_section(scenario: Scenario, result: Result) -> dict:
    stage, reason = single_stage(scenario)
    if stage is None:
        return {"applies": False, "reason": reason}
    model = theory_for(stage)
    if model is None:
        why = ("the queue is unstable" if stage.capacity is None else
               "a bounded queue with non-exponential service has no formula beyond capacity 0 (Erlang B)")
        return {"applies": False, "reason": why}
    rows = []
    for metric, (value, exact) in model.values.items():
        est = result.estimate(metric)
        if est.mean is None:
            continue
        inside = est.contains(value) if est.low is not None else None
        rel = (est.mean - value) / value if value else None
        rows.append({
            "metric": metric, "label": measure_label(metric), "theory": fmt_value(metric, value), "exact": exact,
            "mean": fmt_value(metric, est.mean), "ci": fmt_ci(metric, est.low, est.high),
            "inside": inside, "diff": "–" if rel is None else f"{100 * rel:+.2g}%",
        })
    return {"applies": True, "model": model.model, "description": model.description, "note": model.note, "rows": rows, "exact": model.exact}


def _littles_rows(result: Result) -> list[dict]:
    return [{
        "boundary": c["boundary"], "kind": "" if c["kind"] == c["boundary"] else c["kind"], "L": f"{c['L']:.4g}", "lambda": f"{c['lambda_per_s']:.4g}/s", "W": format_duration(c["W_s"]),
        "rel_error": f"{c['rel_error']:.2e}", "tolerance": f"{c['tolerance']:.2e}", "ok": c["ok"], "applies": c.get("applies", True),
        "failed": c["failed_replications"],
    } for c in result.littles_law_summary()]


def _fates(result: Result, summary: dict) -> list[dict]:
    counts = summary["counts"]
    produced = counts.get("produced", 0)
    rows = []
    for key in ("produced", "processed", "rejected", "lost", "dead_lettered", "in_flight", "duplicates"):
        if key not in counts:
            continue
        n = counts[key]
        share = "" if key == "produced" or not produced else f"{100 * n / produced:.3g}%"
        rate = summary.get("system", {}).get(f"{key}_rate")
        ci = fmt_ci(f"system.{key}_rate", *rate["ci95"]) if isinstance(rate, dict) else ""
        rows.append({"outcome": key.replace("_", " "), "count": f"{n:,}", "share": share, "ci": ci})
    return rows


def _assumptions(scenario: Scenario, result: Result, seed: int) -> list[str]:
    s = scenario
    n = len(result.results)
    items = [
        f"Each replication simulates {format_duration(s.duration)}; the first {format_duration(s.warmup)} are a warm-up excluded from every "
        f"statistic, so the estimates cover a measurement window of {format_duration(s.window_s)} per replication. "
        "Counts are of the messages produced in the window; latencies of those produced in the window and processed by the end; "
        "time averages integrate only what lies inside the window.",
        f"{n} independent replications; each estimate is the mean of the per-replication values with a Student-t 95% confidence "
        "interval. Percentiles are computed within each replication, then averaged.",
        f"Random numbers: one numpy SeedSequence from seed {seed}; each replication and each component draws from its own stream, "
        "keyed by the component's name (common random numbers: variants of the scenario see the same traffic).",
        "An SLO objective is met when the whole confidence interval is on the good side of the target, not met when it is wholly on "
        "the bad side, and uncertain otherwise.",
        "Queueing formulas describe the long-run steady state; the simulation measures a finite window, so near saturation "
        "(ρ close to 1), where the queue relaxes slowly, the two can differ by more than the interval.",
        "Producers are open-loop: they send at their own pace whatever happens downstream, unless a broker blocks publishers.",
    ]
    if n < 5:
        items.append(f"Only {n} replications: the confidence intervals are wide; use 10 or more for a decision.")
    return items


@dataclass
class Report:
    """Everything the templates show."""

    scenario: Scenario
    result: Result
    source: Path
    overrides: list[str]
    seed: int
    figures: list[Figure] = field(default_factory=list)
    plan: CapacityPlan | None = None
    vary: str | None = None
    executor: str = ""
    wall_s: float = 0.0

    def context(self) -> dict:
        summary = self.result.summary()
        slo_rows = _slo_rows(self.result)
        verdict, headline = _headline(self.result, slo_rows)
        try:
            version = __import__("importlib.metadata").metadata.version("asyncsim")
        except Exception:
            version = "unknown"
        source_text = self.source.read_text() if self.source.exists() else ""
        command = "asyncsim report " + " ".join([str(self.source), *[f"--set {o}" for o in self.overrides]])
        capacity = None
        if self.plan is not None:
            capacity = _capacity_context(self.plan, self.scenario, self.vary)
        warnings = self.result.warnings()
        conservation = summary["conservation"]
        return {
            "title": f"{self.scenario.name}: simulation report",
            "scenario": self.scenario,
            "description": self.scenario.description,
            "source": str(self.source),
            "source_text": source_text,
            "overrides": self.overrides,
            "command": command,
            "generated": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "version": version,
            "seed": self.seed,
            "replications": len(self.result.results),
            "requested": self.result.requested_replications,
            "duration": format_duration(self.scenario.duration),
            "warmup": format_duration(self.scenario.warmup),
            "window": format_duration(self.scenario.window_s),
            "executor": self.executor,
            "wall": f"{self.wall_s:.1f}s",
            "verdict": verdict,
            "headline": headline,
            "slo_rows": slo_rows,
            "capacity": capacity,
            "summary_rows": _summary_rows(summary),
            "percentiles": [r for r in _summary_rows(summary) if r["section"] == "system" and r["label"].startswith("latency")],
            "fates": _fates(self.result, summary),
            "littles": _littles_rows(self.result),
            "littles_ok": all(c["ok"] for c in self.result.littles_law_summary()),
            "conservation_ok": conservation["ok"],
            "in_flight": f"{conservation['in_flight_at_end']:,}",
            "held": conservation.get("held_by_components_at_end"),
            "theory": _theory_section(self.scenario, self.result),
            "assumptions": _assumptions(self.scenario, self.result, self.seed),
            "models": _docstring_models(self.scenario, self.seed),
            "warnings": warnings,
            "failures": [{"replication": f.replication, "error": f.error} for f in self.result.failures],
            "figures": {f.name: f for f in self.figures},
        }


def _capacity_context(plan: CapacityPlan, scenario: Scenario, vary: str | None) -> dict:
    try:
        current = _value_at(scenario, vary) if vary else None
    except Exception:
        current = None
    search = plan.search
    runs = []
    for r in plan.runs:
        objectives = []
        for key, o in r.objectives.items():
            metric = SLO_METRICS[key][0]
            objectives.append(f"{key} {fmt_value(metric, o['mean'])} {fmt_ci(metric, *o['ci95'])}")
        runs.append({"phase": r.phase, "label": r.label, "replications": " → ".join(str(n) for n in r.history) or "0",
                     "objectives": "; ".join(objectives) or (r.error or ""), "verdict": r.verdict})
    room = plan.headroom
    headroom = None
    if room is not None:
        headroom = {
            "factor": None if room.factor is None else f"{room.factor:.3g}",
            "rates": None if room.rates_per_s is None else ", ".join(f"{k} {v:.4g}/s" for k, v in room.rates_per_s.items()),
            "reason": room.reason,
            "estimate": None if room.estimate is None else f"{room.estimate:.3g}× ({room.estimate_model})",
            "precision": f"{room.precision:.0%}",
        }
    estimate = None
    if search is not None and search.estimate is not None:
        e = search.estimate
        estimate = e.infeasible or (f"{e.value} ({e.model}, {'exact' if e.exact else 'approximate'})" if e.value is not None else f"none ({e.note})")
    elif search is not None:
        estimate = f"none: {search.estimate_note}" if search.estimate_note else "none"
    return {
        "parameter": plan.parameter,
        "current": current,
        "value": None if search is None else search.value,
        "reason": None if search is None else search.reason,
        "warnings": [] if search is None else search.warnings,
        "estimate": estimate,
        "headroom": headroom,
        "runs": runs,
        "replications_run": plan.replications_run,
        "evaluations": len(plan.runs),
        "start_replications": plan.replications,
        "max_replications": plan.max_replications,
    }


def build_report(
    source: str | Path,
    overrides: Sequence[str] = (),
    replications: int | None = None,
    seed: int | None = None,
    jobs: int | None = None,
    cluster: str | None = None,
    executor: Executor | None = None,
    vary: str | None = None,
    slo: Sequence[str] = (),
    headroom: bool = True,
    plan: CapacityPlan | None = None,
    on_replication: Callable[[int, int], None] | None = None,
) -> Report:
    """Run the scenario (and the capacity search with ``vary``, unless a ``plan`` from
    :func:`sim.capacity.plan_capacity` is given) and draw the report's figures."""
    import time

    started = time.perf_counter()
    source = Path(source)
    base = list(overrides)
    if slo:
        base, _ = slo_overrides(source, overrides, slo)
    scenario = load_scenario(source, base)
    n = scenario.replications if replications is None else replications
    seed = scenario.seed if seed is None else seed
    owned = executor is None
    runner = make_executor(jobs, cluster) if owned else executor
    description = runner.describe()
    try:
        done = {"n": 0}

        def counted(_j, _o):
            done["n"] += 1
            if on_replication is not None:
                on_replication(done["n"], n)

        results, failures = [], []
        for _j, res, fail in run_jobs([Job(scenario, seed, range(n))], runner, counted):
            results, failures = res, fail
        result = Result(scenario, seed, n, results, failures)
        if plan is not None:
            vary = vary or plan.parameter
        elif vary:
            plan = plan_capacity(source, vary, slo, overrides, replications=max(n, 2), seed=seed, executor=runner, headroom=headroom)
    finally:
        if owned:
            runner.close()
    report = Report(scenario, result, source, list(overrides), seed, plan=plan, vary=vary, executor=description)
    report.figures = _figures(report)
    report.wall_s = time.perf_counter() - started
    return report


def _figures(report: Report) -> list[Figure]:
    result, scenario = report.result, report.scenario
    figures = [Figure("diagram", "The system", _render(lambda ax: draw_diagram(scenario, result, ax), diagram_size(scenario)),
                      "Producers (blue) send to brokers (amber), consumed by worker pools (green); arrows carry the long-run rate and the offered load per worker ρ; boxes show the measured mean wait and busy fraction.")]
    if result.results:
        figures += [
            Figure("latency", "Latency distribution", _render(lambda ax: result.plot_latency(ax=ax)),
                   "End-to-end latency of processed messages, all replications pooled (log scale), with the mean per-replication p50, p99 and p99.9."),
            Figure("throughput", "Throughput over time", _render(lambda ax: result.plot_throughput(ax=ax)),
                   "Messages processed per second per time bin: the mean over replications, the band their range; the warm-up is greyed."),
            Figure("queue_length", "Queue depth over time", _render(lambda ax: result.plot_queue_length(ax=ax)),
                   "Messages in each broker per time bin (mean over replications, band: their range)."),
            Figure("utilization", "Worker utilisation over time", _render(lambda ax: result.plot_utilization(ax=ax)),
                   "Busy fraction of each worker pool per time bin (mean over replications, band: their range)."),
        ]
    plan = report.plan
    if plan is not None and any(r.phase == "search" and r.objectives for r in plan.runs):
        if any(k.startswith("latency") for k in plan.slo):
            figures.append(Figure("capacity_search", "Capacity search", _render(lambda ax: plan.plot_search(ax)),
                                  "Each latency objective at the values the search simulated (mean and 95% CI), against its target."))
    if plan is not None and any(r.phase == "headroom" and r.objectives for r in plan.runs) and any(k.startswith("latency") for k in plan.slo):
        figures.append(Figure("headroom", "Headroom", _render(lambda ax: plan.plot_headroom(ax)),
                              "Each latency objective as the load grows (mean and 95% CI), against its target."))
    return figures


def _environment(fmt: str):
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.PackageLoader("sim", "templates"),
        autoescape=fmt == "html",
        trim_blocks=True,
        lstrip_blocks=True,
        undefined=jinja2.StrictUndefined,
    )
    env.filters["md"] = _md_cell
    return env


def _md_cell(value: Any) -> str:
    """Text safe inside a Markdown table cell."""
    return str(value).replace("|", "\\|").replace("\n", " ")


def render(report: Report, fmt: str = "html", image_names: dict[str, str] | None = None) -> str:
    """The report as HTML (images inline) or Markdown (images referenced by ``image_names``)."""
    context = report.context()
    context["images"] = image_names or {}
    template = _environment(fmt).get_template("report.html.j2" if fmt == "html" else "report.md.j2")
    return template.render(**context)


def write_report(
    source: str | Path,
    out_path: str | Path,
    fmt: str = "html",
    **options,
) -> list[Path]:
    """Build the report and write it to ``out_path``; for Markdown, PNGs beside it named
    ``<stem>-<figure>.png``. Returns the paths written (the report first)."""
    out_path = Path(out_path)
    report = build_report(source, **options)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    written = [out_path]
    if fmt == "md":
        names = {}
        for figure in report.figures:
            path = out_path.with_name(f"{out_path.stem}-{figure.name}.png")
            path.write_bytes(figure.png)
            names[figure.name] = path.name
            written.append(path)
        out_path.write_text(render(report, "md", names))
    else:
        out_path.write_text(render(report, "html"))
    return written


__all__ = ["Report", "build_report", "write_report", "render", "draw_diagram"]
