"""The table ``asyncsim run`` prints: estimates with their confidence intervals, counts, checks, SLO."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table
from rich.markup import escape

from ..units import format_duration


def seconds_text(estimate: dict) -> tuple[str, str]:
    """An estimate of a duration and its CI, in ms, s or min."""
    mean, (low, high) = estimate["mean"], estimate["ci95"]
    if mean is None:
        return "–", ""
    scale, unit = (1e-3, "ms") if abs(mean) < 1 else (1.0, "s") if abs(mean) < 120 else (60.0, "min")
    ci = f"[{low / scale:.4g}, {high / scale:.4g}] {unit}" if low is not None else ""
    return f"{mean / scale:.4g} {unit}", ci


def number_text(estimate: dict, unit: str = "", percent: bool = False) -> tuple[str, str]:
    """An estimate and its CI, with ``unit`` or as a percentage."""
    mean, (low, high) = estimate["mean"], estimate["ci95"]
    if mean is None:
        return "–", ""
    if percent:
        return f"{100 * mean:.3g}%", (f"[{100 * low:.3g}, {100 * high:.3g}]%" if low is not None else "")
    return f"{mean:.4g}{unit}", (f"[{low:.4g}, {high:.4g}]{unit}" if low is not None else "")


def slo_texts(key: str, slo: dict) -> tuple[str, str, str]:
    """An SLO objective's target, estimate and CI in the table's units: latencies in ms, s or min
    (the target in the estimate's unit), loss and rejection rates in %, throughput per second."""
    if key.startswith("latency"):
        value, ci = seconds_text(slo)
        unit = value.split()[-1] if slo["mean"] is not None else "s"
        scale = {"ms": 1e-3, "s": 1.0, "min": 60.0}[unit]
        return f"{slo['target'] / scale:.4g} {unit}", value, ci
    if key.endswith("_rate"):
        return f"{100 * slo['target']:.3g}%", *number_text(slo, percent=True)
    return f"{slo['target']:.4g}/s", *number_text(slo, "/s")


def _outbox_rows(summary: dict, table: Table) -> None:
    """Outboxes, dual writes and the consistency of the events they carry."""
    for name, box in summary.get("outbox", {}).items():
        relay, database = box["relay"], box["database"]
        table.add_row(f"outbox {name}", "request to commit p50 (user waits)", *seconds_text(box["request_latency_s"]["p50"]))
        table.add_row("", "request to commit p99", *seconds_text(box["request_latency_s"]["p99"]))
        table.add_row("", "commit to publication mean (relay)", *seconds_text(box["publish_delay_s"]["mean"]))
        table.add_row("", "commit to publication p99", *seconds_text(box["publish_delay_s"]["p99"]))
        table.add_row("", "pending rows, mean", *number_text(box["pending_mean"]))
        table.add_row("", "relay statements (polls + marks)", *number_text(relay["statements_per_s"], "/s"))
        table.add_row("", "events published again", *number_text(relay["republished"]))
        table.add_row("", "connection pool utilisation", *number_text(database["utilization"], percent=True))
        table.add_row("", "relay's share of connection time", *number_text(database["relay_connection_share"], percent=True))
        table.add_row("", "connection wait p99", *seconds_text(database["connection_wait_s"]["p99"]))
    for name, app in summary.get("dual_write", {}).items():
        table.add_row(f"dual write {name}", "request latency p50 (user waits)", *seconds_text(app["request_latency_s"]["p50"]))
        table.add_row("", "request latency p99", *seconds_text(app["request_latency_s"]["p99"]))
        table.add_row("", "died between the writes", *number_text(app["died_between_writes"]))
        table.add_row("", "publications timed out", *number_text(app["publish_timeouts"]))
        table.add_row("", "publications refused", *number_text(app["refused_publishes"]))
        table.add_row("", "connection pool utilisation", *number_text(app["database"]["utilization"], percent=True))
    for name, pool in summary.get("workers", {}).items():
        if "suppressed" in pool:
            table.add_row(f"workers {name}", "copies suppressed (idempotent)", *number_text(pool["suppressed"]))
    consistency = summary.get("consistency")
    if consistency and (summary.get("outbox") or summary.get("dual_write")):
        table.add_row("consistency", "commit to processing mean", *seconds_text(consistency["commit_to_processed_s"]["mean"]))
        table.add_row("", "commit to processing p99", *seconds_text(consistency["commit_to_processed_s"]["p99"]))
        for key, label in (("committed", "business rows committed"), ("delivered_once", "delivered once"),
                           ("delivered_more_than_once", "delivered more than once"), ("suppressed", "copies suppressed (idempotent)"),
                           ("never_delivered", "never delivered although committed (lost)"),
                           ("phantom", "delivered although not committed (phantom)")):
            table.add_row("", label, *number_text(consistency[key]))
        table.add_row("", "lost per committed row", *number_text(consistency["never_delivered_rate"], percent=True))
        table.add_row("", "phantoms per request", *number_text(consistency["phantom_rate"], percent=True))


def shown_text(shown, estimate: dict) -> tuple[str, str]:
    """A :class:`~sim.components.base.Shown` line's estimate and CI in its unit."""
    if shown.unit == "s":
        return seconds_text(estimate)
    return number_text(estimate, "" if shown.unit == "%" else shown.unit, percent=shown.unit == "%")


def _shown_rows(summary: dict, table: Table) -> None:
    """The lines each kind of part shows of itself (:meth:`~sim.components.base.Kind.shown`);
    the registry is imported here, not with the command line, which loads nothing of the
    scenario machinery for ``--help`` (``tests/test_startup.py``); only the kinds in the summary
    are imported."""
    from ..components.registry import SECTIONS, kind_of

    for section in SECTIONS:
        for name, measured in summary.get(section, {}).items():
            first = True
            for shown in kind_of(section).shown(measured):
                estimate = shown.estimate(measured)
                if estimate is not None:
                    table.add_row(f"{section} {escape(name)}" if first else "", escape(shown.label), *shown_text(shown, estimate))
                    first = False


def print_summary(summary: dict, console: Console) -> None:
    """The JSON summary of a run as tables on ``console``."""
    header = (
        f"[bold]{escape(summary['scenario'])}[/bold]: {summary['replications']} replication(s) × "
        f"{format_duration(summary['duration_s'])} (warm-up {format_duration(summary['warmup_s'])} excluded), seed {summary['seed']}"
    )
    console.print(header)
    if not summary["replications"]:  # nothing to tabulate: say why (the first warning) and what failed
        for warning in summary["warnings"]:
            console.print(warning, style="red", highlight=False, markup=False)
        return
    table = Table(show_header=True, header_style="bold", box=None, pad_edge=False)
    table.add_column("")
    table.add_column("metric")
    table.add_column("mean", justify="right")
    table.add_column("95% CI", justify="right")
    system = summary["system"]
    for key, label in (("mean", "latency mean"), ("p50", "latency p50"), ("p95", "latency p95"), ("p99", "latency p99"), ("p999", "latency p99.9")):
        table.add_row("system", label, *seconds_text(system["latency_s"][key]))
    table.add_row("system", "throughput", *number_text(system["throughput_per_s"], "/s"))
    table.add_row("system", "mean number inside", *number_text(system["in_system_mean"]))
    for outcome in ("rejected", "lost", "dead_lettered"):
        estimate = system[f"{outcome}_rate"]
        if estimate["mean"]:
            table.add_row("system", f"{outcome.replace('_', '-')} rate", *number_text(estimate, percent=True))
    if system["duplicates_rate"]["mean"]:
        table.add_row("system", "duplicates: extra processings, % of messages processed (may pass 100%)", *number_text(system["duplicates_rate"], percent=True))
    if summary.get("clients") or summary.get("recovery") or summary.get("admission"):
        table.add_row("system", "goodput (successful requests)", *number_text(system["goodput_per_s"], "/s"))
        table.add_row("system", "offered load (attempts)", *number_text(system["offered_per_s"], "/s"))
        table.add_row("system", "offered load (unique requests)", *number_text(system["offered_unique_per_s"], "/s"))
        table.add_row("system", "retry amplification (attempts/request)", *number_text(system["retry_amplification"], "×"))
        for key, label in (("wasted_per_s", "wasted work (after the client gave up)"), ("shed_per_s", "shed (deadline passed)")):
            if key in system and system[key]["mean"]:
                table.add_row("system", label, *number_text(system[key], "/s"))
        if "wasted_fraction" in system and system["wasted_fraction"]["mean"]:
            table.add_row("system", "wasted share of the work done", *number_text(system["wasted_fraction"], percent=True))
    for name, client in (summary.get("clients") or {}).items():
        table.add_row(f"client {name}", "goodput", *number_text(client["goodput_per_s"], "/s"))
        table.add_row("", "latency p50 (client-observed)", *seconds_text(client["latency_s"]["p50"]))
        table.add_row("", "latency p99 (client-observed)", *seconds_text(client["latency_s"]["p99"]))
        table.add_row("", "retry amplification", *number_text(client["retry_amplification"], "×"))
        table.add_row("", "rejected (gave up)", *number_text(client["rejected_rate"], percent=True))
        for event in ("timeouts", "retries", "refused", "rejected_budget"):
            if client[event]["mean"]:
                table.add_row("", f"{event.replace('_', ' ')} (per replication)", *number_text(client[event]))
    for name, gate in (summary.get("admission") or {}).items():
        table.add_row(f"admission {name}", "refused (busy, throttled)", *number_text(gate["refused_rate"], percent=True))
    for name, broker in summary.get("brokers", {}).items():
        table.add_row(f"broker {name}", "wait mean", *seconds_text(broker["wait_s"]["mean"]))
        table.add_row("", "wait p99", *seconds_text(broker["wait_s"]["p99"]))
        table.add_row("", "mean number waiting", *number_text(broker["length_mean"]))
    for name, pool in summary.get("workers", {}).items():
        table.add_row(f"workers {name}", "utilisation", *number_text(pool["utilization"], percent=True))
        if "count_mean" in pool:
            table.add_row("", "workers present, mean", *number_text(pool["count_mean"]))
        if pool.get("shed", {}).get("mean"):
            table.add_row("", "shed (per replication)", *number_text(pool["shed"]))
    _outbox_rows(summary, table)
    _shown_rows(summary, table)
    if "cost" in summary:
        table.add_row("cost", "per hour (USD)", *number_text(summary["cost"]["per_hour_usd"]))
        table.add_row("", "per million messages processed (USD)", *number_text(summary["cost"]["per_million_messages_usd"]))
    console.print(table)

    if summary.get("recovery"):
        recovery = summary["recovery"]
        start, end = recovery["trigger_s"]
        console.print(f"recovery after the trigger ({format_duration(start)}–{format_duration(end)}): {recovery['verdict']}")
    counts = summary["counts"]
    console.print(
        "counts (messages produced in the window, all replications): "
        + ", ".join(f"{k.replace('_', ' ')} {v:,}" for k, v in counts.items())
    )
    checks = Table(show_header=True, header_style="bold", box=None, pad_edge=False, title_justify="left")
    for column in ("Little's law", "L", "λ (/s)", "W", "rel. error", "tolerance", ""):
        checks.add_column(column, justify="left" if column == "Little's law" else "right")
    for c in summary["littles_law"]:
        mark = {"ok": "[green]ok[/green]", "failed": "[red]FAIL[/red]"}.get(c["verdict"], "[yellow]inconclusive[/yellow]") if c["applies"] else "n/a: nothing left it"
        checks.add_row(c["boundary"] if c["kind"] == "system" else f"{c['kind']} {c['boundary']}", f"{c['L']:.4g}", f"{c['lambda_per_s']:.4g}", format_duration(c["W_s"]), f"{c['rel_error']:.2e}", f"{c['tolerance']:.2e}", mark)
    console.print(checks)
    conservation = summary["conservation"]
    mark = "[green]ok[/green]" if conservation["ok"] else "[red]FAIL[/red]"
    console.print(
        f"conservation: produced = processed + lost + rejected + dead-lettered + in flight, and the "
        f"{conservation['in_flight_at_end']:,} in flight at the end are held by components: {mark}"
    )
    for key, slo in (summary.get("slo") or {}).items():
        colour = {"met": "green", "not met": "red"}.get(slo["status"], "yellow")
        target, value, ci = slo_texts(key, slo)
        console.print(f"SLO {key} {target}: {value}{' ' + ci if ci else ''} → [{colour}]{slo['status']}[/{colour}]", highlight=False)
    for warning in summary["warnings"]:
        console.print(f"[yellow]warning:[/yellow] {escape(warning)}", highlight=False)
