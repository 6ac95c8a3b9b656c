"""The content of the design-review report: tables, verdicts and notes, as the templates show them.

Each function turns a Result (its summary, SLO report and checks), a scenario or a capacity plan
into rows of formatted text; :mod:`sim.report` puts them together with the figures.
"""

from __future__ import annotations

import inspect
import math
import re

import simpy

from .capacity import CapacityPlan
from .components.registry import SECTIONS, kind_of, parts_in
from .network import build
from .overrides import value_at
from .recorder import Recorder
from .result import SLO_METRICS, Result
from .schema import Scenario
from .streams import Streams
from .theory import theory_with_reason
from .units import format_duration
from .warmup import AUTO, inspectable


def _is_time(metric: str) -> bool:
    """A duration: some part of the name is in seconds (``wait_s``, ``stay_s``), not per second."""
    return any(part.endswith("_s") and not part.endswith("per_s") for part in metric.split("."))


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


SPHINX_ROLE = re.compile(r":(?:class|func|meth|mod|attr|data|obj|exc|ref):`(?:([^`<]+?)\s*<[^`>]+>|~?([^`]+))`")
LITERAL = re.compile(r"``(.+?)``", re.DOTALL)


def _role_text(match: re.Match) -> str:
    """What a reader sees of a Sphinx role: its title, or the last part of the name it refers to."""
    title, target = match.groups()
    return title if title else target.rstrip("()").split(".")[-1]


def prose_blocks(doc: str) -> list[dict]:
    """A model's docstring as prose for a design review: paragraphs (``{"kind": "p", "text"}``)
    and bullet lists (``{"kind": "ul", "items"}``), lines joined, Sphinx roles reduced to the name
    they refer to (:class:`~models.crashes.Crashes` reads "Crashes"), ````code```` as `code`."""
    text = LITERAL.sub(r"`\1`", SPHINX_ROLE.sub(_role_text, doc))
    blocks = []
    for paragraph in re.split(r"\n\s*\n", text.strip()):
        lines = [line.strip() for line in paragraph.splitlines()]
        if lines and lines[0].startswith("- "):
            items: list[str] = []
            for line in lines:
                if line.startswith("- ") or not items:
                    items.append(line[2:] if line.startswith("- ") else line)
                else:
                    items[-1] += " " + line
            blocks.append({"kind": "ul", "items": items})
        else:
            blocks.append({"kind": "p", "text": " ".join(lines)})
    return blocks


def docstring_models(scenario: Scenario, seed: int) -> list[dict]:
    """Each model class the scenario builds: its name, where it is defined, the parts that use it,
    and its docstring (what it imitates, its documented simplifications) as :func:`prose_blocks`."""
    entries: dict[type, dict] = {}

    def add(cls, used_by: str) -> None:
        entry = entries.setdefault(cls, {"name": cls.__qualname__, "module": cls.__module__, "used_by": [],
                                         "blocks": prose_blocks(inspect.getdoc(cls) or "(no description)")})
        if used_by not in entry["used_by"]:
            entry["used_by"].append(used_by)

    scenario = inspectable(scenario)
    network, _ = build(scenario, simpy.Environment(), Recorder(scenario.warmup, scenario.duration), Streams(seed, 0))
    for section, kind, spec in parts_in(scenario):
        for cls, used_by in kind.models(spec, network.section(section)[spec.name]):
            add(cls, used_by)
    return list(entries.values())


def summary_rows(summary: dict) -> list[dict]:
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
    for section in SECTIONS:
        for name, measured in summary.get(section, {}).items():
            for shown in kind_of(section).shown(measured):
                add(f"{section} {name}", shown.label, SHOWN_AS[shown.unit], shown.estimate(measured))
    return rows


SHOWN_AS = {"s": "latency_s", "%": "utilization", "/s": "per_s", "": "number"}
"""How :func:`fmt_value` formats a :class:`~sim.components.base.Shown` line of each unit."""


def slo_table(result: Result) -> list[dict]:
    rows = []
    for key, v in (result.slo_report() or {}).items():
        metric = v["metric"]
        rows.append({
            "objective": key, "label": SLO_LABELS.get(key, key), "target": _slo_target(key, v["target"]),
            "mean": fmt_value(metric, v["mean"]), "ci": fmt_ci(metric, *v["ci95"]), "status": v["status"],
        })
    return rows


def verdict_headline(result: Result, slo_rows: list[dict]) -> tuple[str, str]:
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


def theory_section(scenario: Scenario, result: Result) -> dict:
    model, reason = theory_with_reason(scenario)
    if model is None:
        return {"applies": False, "reason": reason}
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


def littles_rows(result: Result) -> list[dict]:
    return [{
        "boundary": c["boundary"], "kind": "" if c["kind"] == c["boundary"] else c["kind"], "L": f"{c['L']:.4g}", "lambda": f"{c['lambda_per_s']:.4g}/s", "W": format_duration(c["W_s"]),
        "rel_error": f"{c['rel_error']:.2e}", "tolerance": f"{c['tolerance']:.2e}", "ok": c["ok"], "applies": c.get("applies", True),
        "failed": c["failed_replications"], "inconclusive": c["inconclusive_replications"],
    } for c in result.littles_law_summary()]


def fates(result: Result, summary: dict) -> list[dict]:
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
        label = "duplicates (extra processings, not an outcome: may pass 100%)" if key == "duplicates" else key.replace("_", " ")
        rows.append({"outcome": label, "count": f"{n:,}", "share": share, "ci": ci})
    return rows


def warmup_words(scenario: Scenario, result: Result) -> str:
    """What the warm-up was: given, or chosen per replication by MSER-5 (``warmup: auto``)."""
    if scenario.warmup == AUTO:
        return (f"the first {format_duration(result.warmup_s)} at most (chosen per replication by MSER-5 on the number in the "
                "system, from a pilot pass) are a warm-up")
    return f"the first {format_duration(scenario.warmup)} are a warm-up"


def assumptions(scenario: Scenario, result: Result, seed: int) -> list[str]:
    s = scenario
    n = len(result.results)
    items = [
        f"Each replication simulates {format_duration(s.duration)}; {warmup_words(s, result)} excluded from every "
        f"statistic, so the estimates cover a measurement window of {format_duration(result.window_s)} per replication or more. "
        "Counts are of the messages produced in the window; latencies of those produced in the window and processed by the end; "
        "time averages integrate only what lies inside the window.",
        f"{n} independent replications. Latency percentiles and means are read from all replications' values pooled, with "
        "intervals that treat each replication as a cluster (Woodruff's for percentiles); loss and rejection rates get Wilson "
        "intervals widened by the spread between replications; other metrics are means over replications with Student-t 95% "
        "intervals. No interval leaves the range its metric can take.",
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


def capacity_context(plan: CapacityPlan, scenario: Scenario, vary: str | None) -> dict:
    try:
        current = value_at(scenario.model_dump(), vary) if vary else None
    except LookupError:
        current = None
    search = plan.search
    runs = []
    for r in plan.runs:
        objectives = []
        for key, o in r.objectives.items():
            metric = SLO_METRICS[key][0]
            objectives.append(f"{key} {fmt_value(metric, o['mean'])} {fmt_ci(metric, *o['ci95'])}")
        cost = r.cost()
        if cost is not None:
            objectives.append(f"${cost['per_hour_usd']['mean']:.4g}/h")
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
    chosen = search.chosen if search is not None else None
    cost = chosen.cost() if chosen is not None else None
    return {
        "parameter": plan.parameter,
        "current": current,
        "cost": None if cost is None else (f"${cost['per_hour_usd']['mean']:.4g} an hour, "
                                           f"${cost['per_million_messages_usd']['mean']:.4g} per million messages"),
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
