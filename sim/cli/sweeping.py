"""``asyncsim sweep``: a scenario at every point of a grid of values, and its table."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import List, Optional

import typer
from rich.console import Console
from rich.table import Table

from ..axes import SweepError, axes_from
from ..datafiles import allow_folders
from .common import (AllowPathOption, ClusterOption, Failed, ForceOption, JobsOption, ScenarioArgument, SeedOption, SetOption, SloOption, err,
                     json_option, open_executor, out, precision_option, precision_overrides, progress_bar, refuse_if_too_big,
                     replications_option, running_on, with_slo, writable_folder)
from .summary import number_text, seconds_text


def _estimate_text(row: dict, metric: str) -> tuple[str, str]:
    mean = row.get(metric)
    if mean is None or (isinstance(mean, float) and mean != mean):
        return "–", ""
    estimate = {"mean": mean, "ci95": [row.get(f"{metric}.ci95_low"), row.get(f"{metric}.ci95_high")]}
    if "latency_s" in metric or "wait_s" in metric or "service_s" in metric:
        return seconds_text(estimate)
    if metric.endswith("utilization") or metric.endswith("_rate"):
        return number_text(estimate, percent=True)
    return number_text(estimate, "/s" if metric.endswith("per_s") else "")


def _short_error(row: dict) -> str:
    """A point's error in a few words: 'unstable: 8/s ≥ capacity 7/s', 'invalid: ...', 'failed: ...'."""
    error = str(row.get("error") or "")
    if row.get("replications_failed"):
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


def sweep(
    scenario: Path = ScenarioArgument,
    vary: Optional[List[str]] = typer.Option(None, "--vary", metavar="PATH=VALUES", help="PATH=VALUES to vary: a range START..END[:STEP] (8..32:4, 10/s..50/s:10/s, 100/s..1600/s:*2) or a list (8,12,16). Repeat for a grid. Default: the file's sweep: section."),
    set_: Optional[List[str]] = SetOption,
    slo: Optional[List[str]] = SloOption,
    allow_path: Optional[List[Path]] = AllowPathOption,
    replications: Optional[int] = replications_option("per point"),
    precision: Optional[str] = precision_option("each point"),
    max_replications: Optional[int] = typer.Option(None, "--max-replications", min=1, metavar="N", help="With a precision, stop each point at N replications (default: the file's max_replications, else 10× the start)."),
    seed: Optional[int] = SeedOption,
    jobs: Optional[int] = JobsOption,
    cluster: Optional[str] = ClusterOption,
    out_dir: Optional[Path] = typer.Option(None, "--out", metavar="DIR", help="Write sweep.csv, sweep.parquet, sweep.json and plots in the folder DIR; finished points are kept in points.jsonl, so an interrupted sweep resumes."),
    metric: Optional[str] = typer.Option(None, "--metric", metavar="NAME", help="Metric to show and plot (default: the file's sweep.metric, else system.latency_s.p99)."),
    restart: bool = typer.Option(False, "--restart", help="With --out: run every point again instead of resuming."),
    as_json: bool = json_option("the sweep's summary"),
    force: bool = ForceOption,
):
    """Run a scenario at every point of a grid of values, with common random numbers, and tabulate every metric with its CI."""
    allow_folders(allow_path or [])
    from ..result import UnknownMetricError
    from ..sweep import run_sweep

    try:
        axes = axes_from(vary) if vary else None
    except SweepError as exc:
        raise typer.BadParameter(str(exc), param_hint="'--vary'") from None
    if out_dir is not None:
        writable_folder(out_dir)
    executor = open_executor(jobs, cluster)
    progress = None if as_json else progress_bar("sweep", executor)
    state = {}

    def on_plan(points):
        for p in points:
            if p.scenario is not None:
                refuse_if_too_big(p.scenario, p.replications, jobs, cluster, force)

    def on_start(s, total):
        if progress is not None:
            state["task"] = progress.add_task("sweep", total=total, points=f"{len(s.rows)}/{len(s.points)} points")
            state["points"] = len(s.points)
            progress.start()

    def on_replication(done, total):
        if progress is not None:
            progress.update(state["task"], completed=done, total=total)

    done_points = {"n": 0}

    def on_point(row):
        done_points["n"] += 1
        if progress is not None and "task" in state:
            progress.update(state["task"], points=f"{done_points['n']}/{state['points']} points")

    try:
        with running_on(executor, progress):
            result = run_sweep(scenario, axes, with_slo(scenario, [*(set_ or []), *precision_overrides(precision, max_replications)], slo), replications=replications, seed=seed, executor=executor, out_dir=out_dir,
                               resume=not restart, metric=metric, on_plan=on_plan, on_start=on_start, on_replication=on_replication, on_point=on_point)
    except UnknownMetricError as exc:
        raise typer.BadParameter(str(exc), param_hint="'--metric'") from None
    summary = result.summary()
    if as_json:
        out.file.write(json.dumps(summary, indent=2) + "\n")
    else:
        print_sweep(result, out)
    note = err if as_json else out
    resumed = f", {len(result.resumed)} resumed from {out_dir / 'points.jsonl'}" if result.resumed else ""
    note.print(f"{summary['points_done']} of {summary['points_total']} points done ({summary['points_invalid']} invalid, "
               f"{summary['points_failed']} failed{resumed}); "
               f"{result.replications_run} replications run on {result.executor} in {result.wall_s:.1f}s")
    if result.metric not in result.table.columns and result.rows and any(r.get("replications_done") for r in result.rows.values()):
        names = sorted({k for row in result.rows.values() for k in row if f"{k}.ci95_low" in row})
        note.print(f"[yellow]warning:[/yellow] no metric '{result.metric}' in the results; metrics: {', '.join(names)}")
    if out_dir is not None:
        files = sorted(p.name for p in out_dir.iterdir() if p.is_file())
        note.print(f"wrote {out_dir}: {', '.join(files)}")
    if result.interrupted:
        note.print(f"interrupted: {summary['points_done']} of {summary['points_total']} points finished"
                   + (f"; run the same command again to resume from {out_dir}" if out_dir is not None else ""))
        raise Failed(130)
    if result.failed_points:
        first = result.rows[result.failed_points[0]]
        err.print(f"[red]{len(result.failed_points)} of {summary['points_total']} points failed[/red] (replications raised); "
                  f"the first, {first['setting']}: {first['error']}", highlight=False)
        raise Failed(1)
