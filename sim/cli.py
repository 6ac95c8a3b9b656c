"""The ``asyncsim`` command line: run, check, schema, validate, sweep, capacity, report."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import List, Optional

import typer
from rich.console import Console
from rich.table import Table

from .loading import ScenarioError, load_scenario
from .topology import broker_flows
from .units import format_duration

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Simulate asynchronous architectures: producers, brokers, workers. See README.md.",
)
out = Console(soft_wrap=True, width=None if sys.stdout.isatty() else 120)
err = Console(stderr=True, soft_wrap=True, width=None if sys.stderr.isatty() else 120)


class Failed(Exception):
    """A run that finished with an exit code other than 0, having said why."""

    def __init__(self, code: int):
        self.code = code


# --- formatting ---------------------------------------------------------------------------------


def _seconds(estimate: dict) -> tuple[str, str]:
    mean, (low, high) = estimate["mean"], estimate["ci95"]
    if mean is None:
        return "–", ""
    scale, unit = (1e-3, "ms") if abs(mean) < 1 else (1.0, "s") if abs(mean) < 120 else (60.0, "min")
    ci = f"[{low / scale:.4g}, {high / scale:.4g}] {unit}" if low is not None else ""
    return f"{mean / scale:.4g} {unit}", ci


def _number(estimate: dict, unit: str = "", percent: bool = False) -> tuple[str, str]:
    mean, (low, high) = estimate["mean"], estimate["ci95"]
    if mean is None:
        return "–", ""
    if percent:
        return f"{100 * mean:.3g}%", (f"[{100 * low:.3g}, {100 * high:.3g}]%" if low is not None else "")
    return f"{mean:.4g}{unit}", (f"[{low:.4g}, {high:.4g}]{unit}" if low is not None else "")


def _outbox_rows(summary: dict, table: Table) -> None:
    """Outboxes, dual writes and the consistency of the events they carry."""
    for name, box in summary.get("outbox", {}).items():
        relay, database = box["relay"], box["database"]
        table.add_row(f"outbox {name}", "request to commit p50 (user waits)", *_seconds(box["request_latency_s"]["p50"]))
        table.add_row("", "request to commit p99", *_seconds(box["request_latency_s"]["p99"]))
        table.add_row("", "commit to publication mean (relay)", *_seconds(box["publish_delay_s"]["mean"]))
        table.add_row("", "commit to publication p99", *_seconds(box["publish_delay_s"]["p99"]))
        table.add_row("", "pending rows, mean", *_number(box["pending_mean"]))
        table.add_row("", "relay statements (polls + marks)", *_number(relay["statements_per_s"], "/s"))
        table.add_row("", "events published again", *_number(relay["republished"]))
        table.add_row("", "connection pool utilisation", *_number(database["utilization"], percent=True))
        table.add_row("", "relay's share of connection time", *_number(database["relay_connection_share"], percent=True))
        table.add_row("", "connection wait p99", *_seconds(database["connection_wait_s"]["p99"]))
    for name, app in summary.get("dual_write", {}).items():
        table.add_row(f"dual write {name}", "request latency p50 (user waits)", *_seconds(app["request_latency_s"]["p50"]))
        table.add_row("", "request latency p99", *_seconds(app["request_latency_s"]["p99"]))
        table.add_row("", "died between the writes", *_number(app["died_between_writes"]))
        table.add_row("", "publications timed out", *_number(app["publish_timeouts"]))
        table.add_row("", "publications refused", *_number(app["refused_publishes"]))
        table.add_row("", "connection pool utilisation", *_number(app["database"]["utilization"], percent=True))
    for name, pool in summary.get("workers", {}).items():
        if "suppressed" in pool:
            table.add_row(f"workers {name}", "copies suppressed (idempotent)", *_number(pool["suppressed"]))
    consistency = summary.get("consistency")
    if consistency and (summary.get("outbox") or summary.get("dual_write")):
        table.add_row("consistency", "commit to processing mean", *_seconds(consistency["commit_to_processed_s"]["mean"]))
        table.add_row("", "commit to processing p99", *_seconds(consistency["commit_to_processed_s"]["p99"]))
        for key, label in (("committed", "business rows committed"), ("delivered_once", "delivered once"),
                           ("delivered_more_than_once", "delivered more than once"), ("suppressed", "copies suppressed (idempotent)"),
                           ("never_delivered", "never delivered although committed (lost)"),
                           ("phantom", "delivered although not committed (phantom)")):
            table.add_row("", label, *_number(consistency[key]))
        table.add_row("", "lost per committed row", *_number(consistency["never_delivered_rate"], percent=True))
        table.add_row("", "phantoms per request", *_number(consistency["phantom_rate"], percent=True))


def print_summary(summary: dict, console: Console) -> None:
    header = (
        f"[bold]{summary['scenario']}[/bold]: {summary['replications']} replication(s) × "
        f"{format_duration(summary['duration_s'])} (warm-up {format_duration(summary['warmup_s'])} excluded), seed {summary['seed']}"
    )
    console.print(header)
    table = Table(show_header=True, header_style="bold", box=None, pad_edge=False)
    table.add_column("")
    table.add_column("metric")
    table.add_column("mean", justify="right")
    table.add_column("95% CI", justify="right")
    system = summary["system"]
    for key, label in (("mean", "latency mean"), ("p50", "latency p50"), ("p95", "latency p95"), ("p99", "latency p99"), ("p999", "latency p99.9")):
        table.add_row("system", label, *_seconds(system["latency_s"][key]))
    table.add_row("system", "throughput", *_number(system["throughput_per_s"], "/s"))
    table.add_row("system", "mean number inside", *_number(system["in_system_mean"]))
    for outcome in ("rejected", "lost", "dead_lettered"):
        estimate = system[f"{outcome}_rate"]
        if estimate["mean"]:
            table.add_row("system", f"{outcome.replace('_', '-')} rate", *_number(estimate, percent=True))
    if system["duplicates_rate"]["mean"]:
        table.add_row("system", "duplicates per processed", *_number(system["duplicates_rate"], percent=True))
    if summary.get("clients") or summary.get("recovery") or summary.get("admission"):
        table.add_row("system", "goodput (successful requests)", *_number(system["goodput_per_s"], "/s"))
        table.add_row("system", "offered load (attempts)", *_number(system["offered_per_s"], "/s"))
        table.add_row("system", "offered load (unique requests)", *_number(system["offered_unique_per_s"], "/s"))
        table.add_row("system", "retry amplification (attempts/request)", *_number(system["retry_amplification"], "×"))
        for key, label in (("wasted_per_s", "wasted work (after the client gave up)"), ("shed_per_s", "shed (deadline passed)")):
            if key in system and system[key]["mean"]:
                table.add_row("system", label, *_number(system[key], "/s"))
        if "wasted_fraction" in system and system["wasted_fraction"]["mean"]:
            table.add_row("system", "wasted share of the work done", *_number(system["wasted_fraction"], percent=True))
    for name, client in (summary.get("clients") or {}).items():
        table.add_row(f"client {name}", "goodput", *_number(client["goodput_per_s"], "/s"))
        table.add_row("", "latency p50 (client-observed)", *_seconds(client["latency_s"]["p50"]))
        table.add_row("", "latency p99 (client-observed)", *_seconds(client["latency_s"]["p99"]))
        table.add_row("", "retry amplification", *_number(client["retry_amplification"], "×"))
        table.add_row("", "rejected (gave up)", *_number(client["rejected_rate"], percent=True))
        for event in ("timeouts", "retries", "refused", "rejected_budget"):
            if client[event]["mean"]:
                table.add_row("", f"{event.replace('_', ' ')} (per replication)", *_number(client[event]))
    for name, gate in (summary.get("admission") or {}).items():
        table.add_row(f"admission {name}", "refused (busy, throttled)", *_number(gate["refused_rate"], percent=True))
    for name, broker in summary.get("brokers", {}).items():
        table.add_row(f"broker {name}", "wait mean", *_seconds(broker["wait_s"]["mean"]))
        table.add_row("", "wait p99", *_seconds(broker["wait_s"]["p99"]))
        table.add_row("", "mean number waiting", *_number(broker["length_mean"]))
    for name, pool in summary.get("workers", {}).items():
        table.add_row(f"workers {name}", "utilisation", *_number(pool["utilization"], percent=True))
        if "count_mean" in pool:
            table.add_row("", "workers present, mean", *_number(pool["count_mean"]))
        if pool.get("shed", {}).get("mean"):
            table.add_row("", "shed (per replication)", *_number(pool["shed"]))
    _outbox_rows(summary, table)
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
        mark = ("[green]ok[/green]" if c["ok"] else "[red]FAIL[/red]") if c.get("applies", True) else "n/a: nothing left it"
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
        target = format_duration(slo["target"]) if key.startswith("latency") else f"{slo['target']:g}"
        value = f"{slo['mean']:.4g}" if slo["mean"] is not None else "–"
        ci = f" [{slo['ci95'][0]:.4g}, {slo['ci95'][1]:.4g}]" if slo["ci95"][0] is not None else ""
        console.print(f"SLO {key} {target}: {value}{ci} → [{colour}]{slo['status']}[/{colour}]")
    for warning in summary["warnings"]:
        console.print(f"[yellow]warning:[/yellow] {warning}")


# --- commands -----------------------------------------------------------------------------------

SetOption = typer.Option(None, "--set", help="Override a value: PATH=VALUE, list items by name (workers.pool.count=12). Repeatable.")


@app.command()
def run(
    scenario: Path = typer.Argument(..., help="Scenario YAML file."),
    replications: Optional[int] = typer.Option(None, "--replications", "-r", min=1, help="Replications (default: the file's)."),
    seed: Optional[int] = typer.Option(None, "--seed", min=0, help="Root seed (default: the file's)."),
    set_: Optional[List[str]] = SetOption,
    jobs: Optional[int] = typer.Option(None, "--jobs", "-j", min=1, help="Local processes (default: all cores)."),
    out_dir: Optional[Path] = typer.Option(None, "--out", help="Write summary.json, tables (CSV) and plots (PNG) here."),
    as_json: bool = typer.Option(False, "--json", help="Print the JSON summary on stdout instead of the table."),
):
    """Run a scenario's replications and print latency, throughput, queues, counts and checks."""
    from . import run as run_scenario

    spec = load_scenario(scenario, set_ or [])
    n = replications or spec.replications
    progress = None
    on_done = None
    if sys.stderr.isatty() and not as_json:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

        progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), TimeRemainingColumn(), console=err, transient=True)
        task = progress.add_task(f"{spec.name}: replications", total=n)
        progress.start()

        def on_done(_):
            progress.advance(task)

    try:
        result = run_scenario(spec, replications=n, seed=seed, jobs=jobs, on_done=on_done)
    finally:
        if progress is not None:
            progress.stop()
    summary = result.summary()
    if as_json:
        out.file.write(json.dumps(summary, indent=2) + "\n")
    else:
        print_summary(summary, out)
    if out_dir is not None:
        written = result.save(out_dir)
        (err if as_json else out).print(f"wrote {len(written)} files to {out_dir}: " + ", ".join(p.name for p in written))
    if result.failures or result.interrupted or not result.results:
        for failure in result.failures:
            err.print(f"[red]replication {failure.replication} failed:[/red] {failure.error}")
        raise Failed(130 if result.interrupted else 1)


@app.command()
def check(
    scenario: Path = typer.Argument(..., help="Scenario YAML file."),
    set_: Optional[List[str]] = SetOption,
):
    """Validate a scenario without running it, and show the offered load on each broker."""
    spec = load_scenario(scenario, set_ or [])
    out.print(f"[green]ok[/green]: {scenario} is a valid scenario '{spec.name}'")
    table = Table(box=None, header_style="bold", pad_edge=False)
    for column in ("broker", "arrival rate", "service capacity", "workers", "offered load", "bounded"):
        table.add_column(column, justify="left" if column == "broker" else "right")
    for name, flow in broker_flows(spec).items():
        table.add_row(name, f"{flow.arrival_rate_per_s:.4g}/s", f"{flow.service_capacity_per_s:.4g}/s", str(flow.servers), f"{flow.offered_load:.3g}", "yes" if flow.bounded else "no")
    out.print(table)
    for producer in spec.producers:
        mean, peak = producer.arrivals.mean_rate(), producer.arrivals.peak_rate()
        if peak > mean:
            out.print(f"producer {producer.name}: long-run rate {mean:.4g}/s, peak {peak:.4g}/s")


@app.command()
def schema():
    """Print the JSON Schema of scenario files."""
    from .schema import Scenario

    out.file.write(json.dumps(Scenario.model_json_schema(), indent=2) + "\n")


@app.command()
def validate(
    replications: int = typer.Option(20, "--replications", "-r", min=2, help="Replications per case."),
    seed: int = typer.Option(1, "--seed", min=0),
    jobs: Optional[int] = typer.Option(None, "--jobs", "-j", min=1),
    as_json: bool = typer.Option(False, "--json"),
):
    """Run the analytic validation suite: simulation with 95% CI beside exact queueing results."""
    from .validation import CASES, run_case

    rows = []
    table = Table(box=None, header_style="bold", pad_edge=False)
    for column in ("case", "measure", "theory", "simulation", "95% CI", ""):
        table.add_column(column, justify="left" if column in ("case", "measure") else "right")
    for case in CASES:
        outcome = run_case(case, replications=replications, seed=seed, jobs=jobs)
        rows.append(outcome.as_dict())
        mark = "[green]inside[/green]" if outcome.inside else "[red]outside[/red]"
        table.add_row(case.name, case.measure, f"{outcome.theory:.5g}", f"{outcome.estimate.mean:.5g}", f"[{outcome.estimate.low:.5g}, {outcome.estimate.high:.5g}]", mark)
    if as_json:
        out.file.write(json.dumps(rows, indent=2) + "\n")
    else:
        out.print(table)
        inside = sum(r["inside"] for r in rows)
        out.print(f"{inside} of {len(rows)} exact values inside the simulation's 95% confidence interval")
    if not all(r["inside"] for r in rows):
        raise Failed(1)


# --- sweeps, capacity planning and reports ----------------------------------------------------------

ClusterOption = typer.Option(None, "--cluster", help="Run on a Dask cluster: the scheduler's address (tcp://host:8786), or 'local' to start one here.")


def _progress(label: str):
    """A progress bar on stderr when it is a terminal: replications done, points done, rate and ETA."""
    if not sys.stderr.isatty():
        return None
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, ProgressColumn, TextColumn, TimeElapsedColumn, TimeRemainingColumn
    from rich.text import Text

    class Rate(ProgressColumn):
        def render(self, task):
            speed = task.finished_speed or task.speed
            return Text(f"{speed:.3g} repl./s" if speed else "", style="progress.data.speed")

    return Progress(TextColumn(label), BarColumn(), MofNCompleteColumn(), TextColumn("replications, {task.fields[points]}"),
                    Rate(), TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(), console=err, transient=True)


def _executor(jobs: Optional[int], cluster: Optional[str]):
    from .executors import ExecutorError, make_executor

    try:
        return make_executor(jobs, cluster)
    except ExecutorError as exc:
        raise typer.BadParameter(str(exc), param_hint="'--cluster'") from None


def _estimate_text(row: dict, metric: str) -> tuple[str, str]:
    mean = row.get(metric)
    if mean is None or (isinstance(mean, float) and mean != mean):
        return "–", ""
    estimate = {"mean": mean, "ci95": [row.get(f"{metric}.ci95_low"), row.get(f"{metric}.ci95_high")]}
    if "latency_s" in metric or "wait_s" in metric or "service_s" in metric:
        return _seconds(estimate)
    if metric.endswith("utilization") or metric.endswith("_rate"):
        return _number(estimate, percent=True)
    return _number(estimate, "/s" if metric.endswith("per_s") else "")


def _short_error(row: dict) -> str:
    """A point's error in a few words: 'unstable: 8/s ≥ capacity 7/s', 'invalid: ...', 'failed: ...'."""
    import re

    error = str(row.get("error") or "")
    if row.get("replications_done", 0):
        return "[red]failed[/red]: " + (error[:70] + "…" if len(error) > 70 else error)
    match = re.search(r"unstable: offered load ([^ ]+) ≥ capacity ([^ ]+)", error)
    if match:
        return f"[red]unstable[/red]: {match.group(1)} ≥ capacity {match.group(2)}"
    first = error.split("; ")[0]
    first = first.split(": ", 1)[1] if ": " in first else first  # drop the file name
    return "[red]invalid[/red]: " + (first[:80] + "…" if len(first) > 80 else first)


def _short_metric(metric: str) -> str:
    labels = {"system.latency_s.mean": "mean latency", "system.latency_s.p50": "p50 latency", "system.latency_s.p95": "p95 latency",
              "system.latency_s.p99": "p99 latency", "system.latency_s.p999": "p99.9 latency", "system.throughput_per_s": "throughput"}
    if metric in labels:
        return labels[metric]
    if metric.startswith("workers.") and metric.endswith(".utilization"):
        return f"busy {metric.split('.')[1]}"
    return metric


def print_sweep(sweep, console: Console) -> None:
    """The sweep's table: values, the chosen metric with its CI, latency, throughput, utilisation, SLO, status."""
    points = sweep.points
    name = next((p.scenario.name for p in points if p.scenario is not None), str(sweep.source))
    n = {p.replications for p in points if p.replications}
    console.print(f"[bold]{name}[/bold]: sweep of {len(points)} point(s), {'/'.join(str(x) for x in sorted(n))} replication(s) each, "
                  f"seed {'/'.join(str(x) for x in sorted({p.seed for p in points if p.seed is not None}))}, the same random numbers at every point", highlight=False)
    table = Table(box=None, header_style="bold", pad_edge=False)
    for axis in sweep.axes:
        table.add_column(axis.path, justify="right", no_wrap=True)
    metric = sweep.metric
    extra = [m for m in ("system.latency_s.mean", "system.throughput_per_s") if m != metric]
    pools = sorted({k.split(".")[1] for row in sweep.rows.values() for k in row if k.startswith("workers.") and k.endswith(".utilization")})
    extra += [f"workers.{pool}.utilization" for pool in pools[:3]]
    table.add_column(_short_metric(metric), justify="right", no_wrap=True)
    table.add_column("95% CI", justify="right", no_wrap=True)
    for m in extra:
        table.add_column(_short_metric(m), justify="right", no_wrap=True)
    table.add_column("SLO", no_wrap=True)
    table.add_column("status", overflow="fold", min_width=16)
    for p in points:
        row = sweep.rows.get(p.index)
        cells = [v.text for v in p.values]
        if row is None:
            table.add_row(*cells, *([""] * (len(extra) + 3)), "[dim]not run[/dim]")
            continue
        mean, ci = _estimate_text(row, metric)
        cells += [mean, ci] + [_estimate_text(row, m)[0] for m in extra]
        slo = {k.split(".", 1)[1]: v for k, v in row.items() if k.startswith("slo.") and isinstance(v, str)}
        if not slo:
            cells.append("")
        elif all(v == "met" for v in slo.values()):
            cells.append("[green]met[/green]")
        else:
            bad = [k for k, v in slo.items() if v == "not met"]
            unsure = [k for k, v in slo.items() if v not in ("met", "not met")]
            short = lambda keys: ", ".join(k.replace("latency_", "") for k in keys)  # noqa: E731
            cells.append(("[red]not met[/red]: " + short(bad)) if bad else ("[yellow]uncertain[/yellow]: " + short(unsure)))
        if row.get("error"):
            cells.append(_short_error(row))
        elif row.get("ok"):
            cells.append("[green]ok[/green]" + (" (resumed)" if p.index in sweep.resumed else ""))
        else:
            cells.append("[yellow]check failed[/yellow]: Little's law or conservation")
        table.add_row(*cells)
    if not console.is_terminal:  # a file or a pipe: a wide table beats a wrapped one
        Console(file=console.file, width=220, soft_wrap=True).print(table)
    else:
        console.print(table)
    invalid = [sweep.rows[p.index] for p in points if p.index in sweep.rows and sweep.rows[p.index].get("error")]
    if invalid and len(invalid) <= 3:
        for row in invalid:
            console.print(f"  [dim]{row['setting']}: {row['error']}[/dim]", highlight=False)


@app.command()
def sweep(
    scenario: Path = typer.Argument(..., help="Scenario YAML file."),
    vary: Optional[List[str]] = typer.Option(None, "--vary", help="PATH=VALUES to vary: a range START..END[:STEP] (8..32:4, 10/s..50/s:10/s, 100/s..1600/s:*2) or a list (8,12,16). Repeat for a grid. Default: the file's sweep: section."),
    set_: Optional[List[str]] = SetOption,
    replications: Optional[int] = typer.Option(None, "--replications", "-r", min=1, help="Replications per point (default: the file's)."),
    seed: Optional[int] = typer.Option(None, "--seed", min=0, help="Root seed, the same for every point (default: the file's)."),
    jobs: Optional[int] = typer.Option(None, "--jobs", "-j", min=1, help="Local processes (default: all cores)."),
    cluster: Optional[str] = ClusterOption,
    out_dir: Optional[Path] = typer.Option(None, "--out", help="Write sweep.csv, sweep.parquet, sweep.json and plots here; finished points are kept in points.jsonl, so an interrupted sweep resumes."),
    metric: Optional[str] = typer.Option(None, "--metric", help="Metric to show and plot (default: the file's sweep.metric, else system.latency_s.p99)."),
    restart: bool = typer.Option(False, "--restart", help="With --out: run every point again instead of resuming."),
    as_json: bool = typer.Option(False, "--json", help="Print the JSON summary on stdout instead of the table."),
):
    """Run a scenario at every point of a grid of values, with common random numbers, and tabulate every metric with its CI."""
    from .executors import ExecutorError
    from .sweep import SweepError, axes_from, run_sweep

    try:
        axes = axes_from(vary) if vary else None
    except SweepError as exc:
        raise typer.BadParameter(str(exc), param_hint="'--vary'") from None
    if metric is not None and not metric.startswith(("system.", "brokers.", "workers.")):
        raise typer.BadParameter(f"'{metric}' is not a metric such as system.latency_s.p99, brokers.NAME.wait_s.mean or workers.NAME.utilization", param_hint="'--metric'")
    executor = _executor(jobs, cluster)
    progress = None if as_json else _progress("sweep")
    state = {}

    def on_start(s, total):
        if progress is not None:
            state["task"] = progress.add_task("sweep", total=total, points=f"{len(s.rows)}/{len(s.points)} points")
            state["points"] = len(s.points)
            progress.start()

    def on_replication(done, total):
        if progress is not None:
            progress.update(state["task"], completed=done)

    done_points = {"n": 0}

    def on_point(row):
        done_points["n"] += 1
        if progress is not None and "task" in state:
            progress.update(state["task"], points=f"{done_points['n']}/{state['points']} points")

    try:
        result = run_sweep(scenario, axes, set_ or [], replications=replications, seed=seed, executor=executor, out_dir=out_dir,
                           resume=not restart, metric=metric, on_start=on_start, on_replication=on_replication, on_point=on_point)
    except ExecutorError as exc:
        err.print(f"[red]error:[/red] {exc}")
        raise Failed(1)
    finally:
        if progress is not None:
            progress.stop()
        executor.close()
    summary = result.summary()
    if as_json:
        out.file.write(json.dumps(summary, indent=2) + "\n")
    else:
        print_sweep(result, out)
    note = err if as_json else out
    resumed = f", {len(result.resumed)} resumed from {out_dir / 'points.jsonl'}" if result.resumed else ""
    note.print(f"{summary['points_done']} of {summary['points_total']} points done ({summary['points_invalid']} invalid{resumed}); "
               f"{result.replications_run} replications run on {result.executor} in {result.wall_s:.1f}s")
    if result.metric not in result.table.columns and result.rows and any(r.get("replications_done") for r in result.rows.values()):
        names = sorted({k for row in result.rows.values() for k in row if f"{k}.ci95_low" in row})
        note.print(f"[yellow]warning:[/yellow] no metric '{result.metric}' in the results; metrics: {', '.join(names)}")
    if out_dir is not None:
        files = sorted(p.name for p in out_dir.iterdir() if p.is_file())
        note.print(f"wrote {out_dir}: {', '.join(files)}")
    crashed = [r for r in result.rows.values() if r.get("error") and r.get("replications_done", 0) > 0]
    if result.interrupted:
        note.print(f"interrupted: {summary['points_done']} of {summary['points_total']} points finished"
                   + (f"; run the same command again to resume from {out_dir}" if out_dir is not None else ""))
        raise Failed(130)
    if crashed:
        for row in crashed:
            err.print(f"[red]point {row['setting']}:[/red] {row['error']}")
        raise Failed(1)


def _print_run(run, console: Console) -> None:
    colour = {"met": "green", "not met": "red", "invalid": "red", "failed": "red"}.get(run.verdict, "yellow")
    objectives = []
    for key, o in run.objectives.items():
        from .capacity import _show

        ci = f" [{_show(key, o['ci95'][0])}, {_show(key, o['ci95'][1])}]" if o["ci95"][0] is not None else ""
        objectives.append(f"{key} {_show(key, o['mean'])}{ci}")
    reps = "→".join(str(n) for n in run.history) if run.history else "0"
    detail = "; ".join(objectives) if objectives else (run.error or "")
    if run.verdict == "invalid" and run.error and len(run.error) > 110:
        detail = run.error[:110] + "…"
    console.print(f"  {run.phase:<8} {run.label:<34} {reps:>9} repl.  {detail}  → [{colour}]{run.verdict}[/{colour}]", highlight=False)


def print_plan(plan, console: Console, runs_printed: bool = True) -> None:
    """The outcome of a capacity plan: the recommendation, why the search stopped, the headroom."""
    if not runs_printed:
        for run in plan.runs:
            _print_run(run, console)
    search = plan.search
    if search is not None:
        if search.value is not None:
            console.print(f"[bold green]recommendation:[/bold green] {search.parameter} = {search.value}", highlight=False)
        else:
            console.print(f"[bold red]no value of {search.parameter} meets the SLO with confidence[/bold red]", highlight=False)
        console.print(f"  why it stopped: {search.reason}", highlight=False)
        for warning in search.warnings:
            console.print(f"[yellow]warning:[/yellow] {warning}")
    room = plan.headroom
    if room is not None:
        if room.factor is not None:
            rates = ", ".join(f"{k} {v:.4g}/s" for k, v in room.rates_per_s.items())
            console.print(f"[bold]headroom:[/bold] the SLO holds up to {room.factor:.3g}× the load ({rates})", highlight=False)
        else:
            console.print("[bold red]headroom:[/bold red] none found", highlight=False)
        if room.estimate is not None:
            console.print(f"  theory ({room.estimate_model}) puts it at {room.estimate:.3g}×", highlight=False)
        console.print(f"  why it stopped: {room.reason}", highlight=False)
    search_runs = [r for r in plan.runs if r.phase == "search" and r.verdict != "invalid"]
    line = f"{len(plan.runs)} evaluations ({len(search_runs)} values of the parameter simulated), {plan.replications_run} replications, on {plan.executor}"
    if search is not None and search.value is not None and search.lowest_valid is not None:
        top = max([search.value] + [r.value for r in search_runs])
        grid = top - search.lowest_valid + 1
        if grid > len(search_runs):
            line += f"; a grid from {search.lowest_valid} to {top} would have simulated {grid} values"
    console.print(line, highlight=False)


def _print_estimate(estimate, note: str, console: Console) -> None:
    if estimate is None:
        console.print(f"analytic estimate: none ({note or 'not asked'}); the search starts at the smallest valid value", highlight=False)
        return
    if estimate.infeasible:
        console.print(f"analytic estimate: [red]infeasible[/red]: {estimate.infeasible}", highlight=False)
        return
    from .capacity import _show

    parts = ", ".join(f"{k} {_show(k, v)}{'' if e else ' (approx.)'}" for k, (v, e, _m) in estimate.considered.items())
    value = estimate.value if estimate.value is not None else "none"
    console.print(f"analytic estimate ({estimate.model}, {'exact' if estimate.exact else 'approximate'}): {value}"
                  + (f" ({parts})" if parts else "") + (f"; not in the formula: {', '.join(estimate.ignored)}" if estimate.ignored else ""), highlight=False)


@app.command()
def capacity(
    scenario: Path = typer.Argument(..., help="Scenario YAML file (with an slo:, or give --slo)."),
    vary: Optional[str] = typer.Option(None, "--vary", help="The integer PATH to size, e.g. workers.renderer.count or brokers.jobs.capacity. Without it: only the headroom of the scenario as it is."),
    slo: Optional[List[str]] = typer.Option(None, "--slo", help="Objective KEY=VALUE added to (or replacing one of) the file's slo: latency_mean, latency_p50/p95/p99/p999, max_loss_rate, max_rejection_rate, min_throughput. Repeatable."),
    set_: Optional[List[str]] = SetOption,
    replications: Optional[int] = typer.Option(None, "--replications", "-r", min=2, help="Replications each value starts with (default: the file's)."),
    max_replications: Optional[int] = typer.Option(None, "--max-replications", min=2, help="Cap when an uncertain value gets more replications (default: 4× the start)."),
    seed: Optional[int] = typer.Option(None, "--seed", min=0),
    jobs: Optional[int] = typer.Option(None, "--jobs", "-j", min=1, help="Local processes (default: all cores)."),
    cluster: Optional[str] = ClusterOption,
    minimum: int = typer.Option(0, "--min", help="Smallest value to consider."),
    maximum: Optional[int] = typer.Option(None, "--max", help="Largest value to consider (default: no limit; the search stops when more stops helping)."),
    no_estimate: bool = typer.Option(False, "--no-estimate", help="Do not start from the analytic estimate."),
    headroom: bool = typer.Option(True, "--headroom/--no-headroom", help="Then find the largest load the chosen setup sustains."),
    rate: Optional[str] = typer.Option(None, "--rate", help="Headroom on this one rate PATH (default: every producer's rate scaled together)."),
    precision: float = typer.Option(0.05, "--precision", help="Relative precision of the headroom."),
    as_json: bool = typer.Option(False, "--json", help="Print the JSON result on stdout."),
):
    """Find the smallest value of a parameter meeting every SLO objective with confidence, and the headroom it leaves."""
    from .capacity import CapacityError, plan_capacity
    from .executors import ExecutorError

    from .capacity import slo_overrides

    try:
        _, targets = slo_overrides(scenario, set_ or [], slo or [])
    except CapacityError as exc:
        raise typer.BadParameter(str(exc), param_hint="'--slo'") from None
    executor = _executor(jobs, cluster)
    console = err if as_json else out
    if not as_json:
        head = f"capacity: the smallest {vary} meeting the SLO with confidence" if vary else "capacity: the headroom of the scenario as it is"
        console.print(f"[bold]{head}[/bold] ({scenario})", highlight=False)
        console.print("SLO: " + ", ".join(f"{k} {format_duration(v) if k.startswith('latency') else v:}" for k, v in targets.items())
                      + "; each run: value, replications (doubled while uncertain), estimates with 95% CI, verdict", highlight=False)
    try:
        plan = plan_capacity(scenario, vary, slo or [], set_ or [], replications=replications, max_replications=max_replications, seed=seed,
                             executor=executor, minimum=minimum, maximum=maximum, use_estimate=not no_estimate, headroom=headroom,
                             rate_path=rate, precision=precision, on_run=None if as_json else (lambda r: _print_run(r, console)),
                             on_estimate=None if as_json else (lambda e, n: _print_estimate(e, n, console)))
    except CapacityError as exc:
        option = next((o for o in ("--slo", "--rate", "--precision", "--max") if o in str(exc)), "--slo")
        raise typer.BadParameter(str(exc), param_hint=f"'{option}'") from None
    except ExecutorError as exc:
        err.print(f"[red]error:[/red] {exc}")
        raise Failed(1)
    finally:
        executor.close()
    if as_json:
        out.file.write(json.dumps(plan.summary(), indent=2) + "\n")
    else:
        print_plan(plan, console)
    if vary and plan.value is None:
        raise Failed(1)


@app.command()
def report(
    scenario: Path = typer.Argument(..., help="Scenario YAML file."),
    out_path: Optional[Path] = typer.Option(None, "--out", help="The report file (default: report.html, or report.md with --format md)."),
    fmt: Optional[str] = typer.Option(None, "--format", help="html (one self-contained file) or md (Markdown with PNGs beside it). Default: from --out's suffix, else html."),
    replications: Optional[int] = typer.Option(None, "--replications", "-r", min=2, help="Replications (default: the file's)."),
    seed: Optional[int] = typer.Option(None, "--seed", min=0),
    set_: Optional[List[str]] = SetOption,
    jobs: Optional[int] = typer.Option(None, "--jobs", "-j", min=1),
    cluster: Optional[str] = ClusterOption,
    vary: Optional[str] = typer.Option(None, "--vary", help="Also recommend the smallest value of this integer PATH meeting the SLO (a capacity search) and its headroom."),
    slo: Optional[List[str]] = typer.Option(None, "--slo", help="Objective KEY=VALUE for the report and the search. Repeatable."),
    headroom: bool = typer.Option(True, "--headroom/--no-headroom", help="With --vary: also the headroom of the recommendation."),
):
    """Write a design-review report: diagram, SLO verdicts, tables with CIs, plots, checks, theory, assumptions."""
    from .capacity import CapacityError
    from .executors import ExecutorError
    from .report import write_report

    if fmt is None:
        fmt = "md" if out_path is not None and out_path.suffix.lower() in (".md", ".markdown") else "html"
    fmt = fmt.lower()
    if fmt not in ("html", "md"):
        raise typer.BadParameter(f"'{fmt}' is not a format: html or md", param_hint="'--format'")
    if out_path is None:
        out_path = Path("report.md" if fmt == "md" else "report.html")
    executor = _executor(jobs, cluster)
    progress = _progress("report")
    task = None
    if progress is not None:
        task = progress.add_task("report", total=None, points="running")
        progress.start()

    def on_replication(done, total):
        if progress is not None:
            progress.update(task, completed=done, total=total)

    try:
        written = write_report(scenario, out_path, fmt=fmt, overrides=set_ or [], replications=replications, seed=seed, executor=executor,
                               vary=vary, slo=slo or [], headroom=headroom, on_replication=on_replication)
    except CapacityError as exc:
        raise typer.BadParameter(str(exc), param_hint="'--slo'") from None
    except ExecutorError as exc:
        err.print(f"[red]error:[/red] {exc}")
        raise Failed(1)
    finally:
        if progress is not None:
            progress.stop()
        executor.close()
    out.print(f"wrote {written[0]}" + (f" and {len(written) - 1} images beside it" if len(written) > 1 else ""), highlight=False)


def main() -> None:
    """Entry point: usage errors are click's (exit 2); scenario errors name file, line and field."""
    try:
        app()
    except ScenarioError as exc:
        err.print(f"[red]error[/red] in {exc.source}:", highlight=False)
        for problem in exc.problems:
            err.print("  " + problem.format(exc.source), highlight=False, markup=False)
        sys.exit(2)
    except Failed as exc:
        sys.exit(exc.code)
    except KeyboardInterrupt:
        err.print("interrupted")
        sys.exit(130)
    except Exception as exc:  # the last line of defence: one readable line, the traceback on request
        if os.environ.get("ASYNCSIM_DEBUG"):
            raise
        err.print(f"[red]asyncsim: internal error:[/red] {type(exc).__name__}: {exc} (set ASYNCSIM_DEBUG=1 for the traceback)")
        sys.exit(3)


if __name__ == "__main__":
    main()
