"""The commands about one scenario: run, check, schema, validate."""

from __future__ import annotations

import json
from pathlib import Path
from typing import List, Optional

import typer
from rich.table import Table
from rich.markup import escape

from ..datafiles import allow_folders
from .common import (AllowPathOption, ClusterOption, Failed, ForceOption, JobsOption, ScenarioArgument, SeedOption, SetOption, SloOption, err,
                     json_option, open_executor, out, precision_option, precision_overrides, progress_bar, refuse_if_too_big,
                     replications_option, running_on, with_slo, writable_folder)
from .summary import print_summary


def run(
    scenario: Path = ScenarioArgument,
    replications: Optional[int] = replications_option("to run"),
    seed: Optional[int] = SeedOption,
    set_: Optional[List[str]] = SetOption,
    slo: Optional[List[str]] = SloOption,
    allow_path: Optional[List[Path]] = AllowPathOption,
    jobs: Optional[int] = JobsOption,
    cluster: Optional[str] = ClusterOption,
    out_dir: Optional[Path] = typer.Option(None, "--out", metavar="DIR", help="Write summary.json, tables (CSV) and plots (PNG) in the folder DIR (made if need be)."),
    as_json: bool = json_option("the summary"),
    force: bool = ForceOption,
    precision: Optional[str] = precision_option("the run"),
    max_replications: Optional[int] = typer.Option(None, "--max-replications", min=1, metavar="N", help="With a precision, stop at N replications (default: the file's max_replications, else 10× the start)."),
):
    """Run a scenario's replications and print latency, throughput, queues, counts and checks."""
    allow_folders(allow_path or [])
    from ..jobs import run_scenario
    from ..loading import load_scenario

    spec = load_scenario(scenario, with_slo(scenario, [*(set_ or []), *precision_overrides(precision, max_replications)], slo))
    if out_dir is not None:
        writable_folder(out_dir)
    n = replications or spec.replications
    refuse_if_too_big(spec, n, jobs, cluster, force)
    executor = open_executor(jobs, cluster, tasks=n)
    progress = None if as_json else progress_bar(f"{escape(spec.name)}:", executor)
    if progress is None:
        on_done = None
    else:
        task = progress.add_task("run", total=n, points="one scenario")
        progress.start()

        def on_done(_outcome):
            progress.advance(task)

    with running_on(executor, progress):
        result = run_scenario(spec, n, spec.seed if seed is None else seed, executor, on_done, spec.precision, spec.max_replications)
    summary = result.summary()
    if as_json:
        out.file.write(json.dumps(summary, indent=2) + "\n")
    else:
        print_summary(summary, out)
    if out_dir is not None:
        written = result.save(out_dir)
        (err if as_json else out).print(f"wrote {len(written)} files to {out_dir}: " + ", ".join(p.name for p in written), markup=False)
    if result.failures or result.interrupted or not result.results:
        for failure in result.failures:
            err.print(f"[red]replication {failure.replication} failed:[/red] {escape(failure.error)}", highlight=False)
        if result.interrupted:
            finished = f"{len(result.results)} of {n} replications finished" if result.results else "no replication finished"
            err.print(f"interrupted: {finished}")
        raise Failed(130 if result.interrupted else 1)


def check(
    scenario: Path = ScenarioArgument,
    set_: Optional[List[str]] = SetOption,
    allow_path: Optional[List[Path]] = AllowPathOption,
    as_json: bool = json_option("the verdict, the offered loads and the cost (or the problems, exit code 2)"),
):
    """Validate a scenario without running it: the offered load on each broker, and what one replication will cost."""
    allow_folders(allow_path or [])
    from ..cost import estimate_cost, format_bytes, machine_memory_bytes
    from ..loading import load_scenario
    from ..problems import ScenarioError
    from ..stats import json_safe
    from ..topology import broker_flows, part_loads
    from ..units import format_duration

    try:
        spec = load_scenario(scenario, set_ or [])
    except ScenarioError as exc:
        if not as_json:
            raise
        problems = [{"file": exc.source, "line": p.line, "field": p.path or None, "set": p.override, "message": p.message} for p in exc.problems]
        out.file.write(json.dumps({"valid": False, "file": str(scenario), "problems": problems}, indent=2) + "\n")
        raise Failed(2) from None
    flows = broker_flows(spec)
    loads = part_loads(spec)
    cost, memory = estimate_cost(spec), machine_memory_bytes()
    if as_json:
        out.file.write(json.dumps({
            "valid": True, "file": str(scenario), "name": spec.name,
            "brokers": {name: {"arrival_rate_per_s": f.arrival_rate_per_s, "service_capacity_per_s": f.service_capacity_per_s,
                               "workers": f.servers, "offered_load": json_safe(f.offered_load), "bounded": f.bounded} for name, f in flows.items()},
            "producers": {p.name: {"mean_rate_per_s": p.arrivals.mean_rate(), "peak_rate_per_s": p.arrivals.peak_rate()} for p in spec.producers},
            "parts": {load.name: {"section": section, "arrival_rate_per_s": load.rate_per_s, "held_mean_s": load.held_s, "servers": load.servers,
                                  "busy_mean": load.busy_mean, "offered_load": load.offered_load} for section, _spec, load in loads},
            "cost_per_replication": cost.as_dict(), "machine_memory_bytes": memory,
        }, indent=2) + "\n")
        return
    out.print(f"[green]ok[/green]: {escape(str(scenario))} is a valid scenario '{escape(spec.name)}'", highlight=False)
    table = Table(box=None, header_style="bold", pad_edge=False)
    for column in ("broker", "arrival rate", "service capacity", "workers", "offered load", "bounded"):
        table.add_column(column, justify="left" if column == "broker" else "right")
    for name, flow in flows.items():
        table.add_row(escape(name), f"{flow.arrival_rate_per_s:.4g}/s", f"{flow.service_capacity_per_s:.4g}/s", f"{flow.servers:,}", f"{flow.offered_load:.3g}", "yes" if flow.bounded else "no")
    if flows:
        out.print(table)
    if loads:
        parts = Table(box=None, header_style="bold", pad_edge=False)
        for column in ("part", "arrival rate", "held mean", "servers", "busy mean", "offered load"):
            parts.add_column(column, justify="left" if column == "part" else "right")
        for section, _spec, load in loads:
            servers = "∞" if load.servers is None else f"{load.servers:,}"
            offered = "–" if load.offered_load is None else f"{load.offered_load:.3g}"
            parts.add_row(f"{section} {escape(load.name)}", f"{load.rate_per_s:.4g}/s", format_duration(load.held_s), servers, f"{load.busy_mean:.4g}", offered)
        out.print(parts)
    for producer in spec.producers:
        mean, peak = producer.arrivals.mean_rate(), producer.arrivals.peak_rate()
        if peak > mean:
            out.print(f"producer {escape(producer.name)}: long-run rate {mean:.4g}/s, peak {peak:.4g}/s", highlight=False)
    machine = f"; this machine has {format_bytes(memory)}" if memory else ""
    out.print(f"each replication (an estimate): about {cost.events:,.0f} events, {format_duration(cost.run_s)} on one core, "
              f"{format_bytes(cost.peak_bytes)} of memory at its peak{machine}", highlight=False)


def schema():
    """Print the JSON Schema of scenario files."""
    from ..schema import Scenario

    out.file.write(json.dumps(Scenario.model_json_schema(), indent=2) + "\n")


def validate(
    replications: int = replications_option("per case", minimum=2, default=20),
    seed: int = typer.Option(1, "--seed", min=0, metavar="S", help="Root seed of every case."),
    jobs: Optional[int] = JobsOption,
    cluster: Optional[str] = ClusterOption,
    as_json: bool = json_option("every case's theory, simulation and CI"),
):
    """Run the analytic validation suite: simulation with 95% CI beside exact queueing results."""
    from ..validation import CASES, run_case

    rows, failed = [], []
    table = Table(box=None, header_style="bold", pad_edge=False)
    for column in ("case", "measure", "theory", "simulation", "95% CI", ""):
        table.add_column(column, justify="left" if column in ("case", "measure") else "right")
    executor = open_executor(jobs, cluster, tasks=replications)
    with running_on(executor):
        for case in CASES:
            outcome = run_case(case, replications, seed, executor)
            rows.append(outcome.as_dict())
            if outcome.failures:
                failed.append(outcome)
            mark = "[green]inside[/green]" if outcome.inside else "[red]outside[/red]"
            table.add_row(case.name, case.measure, f"{outcome.theory:.5g}", f"{outcome.estimate.mean:.5g}", f"[{outcome.estimate.low:.5g}, {outcome.estimate.high:.5g}]", mark)
    if as_json:
        out.file.write(json.dumps(rows, indent=2) + "\n")
    else:
        out.print(table)
        inside = sum(r["inside"] for r in rows)
        out.print(f"{inside} of {len(rows)} exact values inside the simulation's 95% confidence interval")
    if failed:
        err.print(f"[red]{len(failed)} of {len(rows)} cases had failed replications[/red]; the first: {escape(str(failed[0].failures[0]))}", highlight=False)
    if not all(r["inside"] for r in rows):
        raise Failed(1)
