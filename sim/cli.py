"""The ``asyncsim`` command line: run, check, schema, validate."""

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
    for name, broker in summary.get("brokers", {}).items():
        table.add_row(f"broker {name}", "wait mean", *_seconds(broker["wait_s"]["mean"]))
        table.add_row("", "wait p99", *_seconds(broker["wait_s"]["p99"]))
        table.add_row("", "mean number waiting", *_number(broker["length_mean"]))
    for name, pool in summary.get("workers", {}).items():
        table.add_row(f"workers {name}", "utilisation", *_number(pool["utilization"], percent=True))
    console.print(table)

    counts = summary["counts"]
    console.print(
        "counts (messages produced in the window, all replications): "
        + ", ".join(f"{k.replace('_', ' ')} {v:,}" for k, v in counts.items())
    )
    checks = Table(show_header=True, header_style="bold", box=None, pad_edge=False, title_justify="left")
    for column in ("Little's law", "L", "λ (/s)", "W", "rel. error", "tolerance", ""):
        checks.add_column(column, justify="left" if column == "Little's law" else "right")
    for c in summary["littles_law"]:
        mark = "[green]ok[/green]" if c["ok"] else "[red]FAIL[/red]"
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
