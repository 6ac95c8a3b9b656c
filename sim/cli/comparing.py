"""``asyncsim compare``: two scenarios on common random numbers, paired differences, SLO verdicts."""

from __future__ import annotations

import json
from pathlib import Path
from typing import List, Optional

import typer
from rich.markup import escape
from rich.table import Table

from ..problems import CapacityError
from .common import ClusterOption, Failed, JobsOption, SetOption, err, open_executor, out, progress_bar, running_on, writable_folder

SHOWN = ("system.", "web.", "delays.")  # the table's metrics (every shared metric is in --json and --out)


def print_comparison(comparison, console) -> None:
    """The common random numbers, the differences of the user-facing metrics, the SLO verdicts."""
    crn = comparison.summary()["common_random_numbers"]
    console.print(f"A: {escape(comparison.a.scenario.name)}   B: {escape(comparison.b.scenario.name)}   seed {comparison.a.seed}, "
                  f"{len(comparison.a.results)} paired replications", highlight=False)
    console.print(f"common random numbers: {len(crn['shared'])} streams shared ("
                  + ", ".join(f"{p}/{q}" for p, q in crn["shared"]) + f"); {len(crn['only_a'])} only in A, {len(crn['only_b'])} only in B",
                  highlight=False, markup=False)
    table = Table(box=None, header_style="bold", pad_edge=False)
    for column in ("metric", "A", "B", "B − A", "95% CI", "paired / independent"):
        table.add_column(column, justify="left" if column == "metric" else "right")
    for d in comparison.differences:
        if not d.metric.startswith(SHOWN) or d.paired.mean is None:
            continue
        interval = "–" if d.paired.low is None else f"[{d.paired.low:.4g}, {d.paired.high:.4g}]"
        narrowing = "–" if d.narrowing is None else f"{d.narrowing:.2f}"
        mark = "*" if d.significant else ""
        table.add_row(d.metric, f"{d.a.mean:.4g}", f"{d.b.mean:.4g}", f"{d.paired.mean:+.4g}{mark}", interval, narrowing)
    console.print(table)
    console.print("* the paired 95% interval excludes 0", highlight=False)
    for row in comparison.slo:
        console.print(f"SLO {row['objective']} ({row['target']:g}): A {row['a']}, B {row['b']}; better: {row['better']}", highlight=False)


def write_comparison(comparison, summary: dict, out_dir: Path) -> list[str]:
    """comparison.json, comparison.csv, and the plots of the latencies both designs report."""
    from ..compare_plots import save_comparison_plots

    (out_dir / "comparison.json").write_text(json.dumps(summary, indent=2) + "\n")
    comparison.table.to_csv(out_dir / "comparison.csv")
    plots = save_comparison_plots(comparison.differences, (comparison.a.scenario.name, comparison.b.scenario.name), out_dir)
    return ["comparison.json", "comparison.csv", *(p.name for p in plots)]


def compare(
    scenario_a: Path = typer.Argument(..., help="Design A (scenario YAML file)."),
    scenario_b: Optional[Path] = typer.Argument(None, help="Design B (scenario YAML file); leave it out to give B as A with --vs overrides."),
    replications: Optional[int] = typer.Option(None, "--replications", "-r", min=2, help="Paired replications (default: A's)."),
    seed: Optional[int] = typer.Option(None, "--seed", min=0, help="Root seed of both (default: A's)."),
    set_: Optional[List[str]] = SetOption,
    vs: Optional[List[str]] = typer.Option(None, "--vs", metavar="PATH=VALUE", help="Without a B file, B is A with this override on top (as --set, applied to B only): web.api.publishes_to=jobs. Repeatable."),
    slo: Optional[List[str]] = typer.Option(None, "--slo", help="Objective KEY=VALUE on top of A's slo (else B's), applied to both. Repeatable."),
    jobs: Optional[int] = JobsOption,
    cluster: Optional[str] = ClusterOption,
    out_dir: Optional[Path] = typer.Option(None, "--out", help="Write comparison.json, comparison.csv and plots (PNG) here."),
    as_json: bool = typer.Option(False, "--json", help="Print the JSON comparison on stdout instead of the table."),
):
    """Compare two designs on common random numbers: paired differences of every shared metric, and a verdict per SLO.
    B is a second file, or A itself with --vs overrides."""
    from ..compare import compare as run_comparison, load_pair

    if (scenario_b is None) == (not vs):
        raise typer.BadParameter("give design B as a second scenario file, or as A with --vs PATH=VALUE overrides (not both)", param_hint="'SCENARIO_B' / '--vs'")
    try:
        a, b = load_pair(scenario_a, scenario_b, set_ or [], slo or [], vs or [])
    except CapacityError as exc:
        raise typer.BadParameter(str(exc), param_hint="'--slo'") from None
    if out_dir is not None:
        writable_folder(out_dir)
    n = replications or a.replications
    executor = open_executor(jobs, cluster, tasks=2 * n)
    progress = None if as_json else progress_bar("compare:")
    on_done = None
    if progress is not None:
        task = progress.add_task("compare", total=2 * n, points="two scenarios")
        progress.start()

        def on_done(_job, _outcome):
            progress.advance(task)

    with running_on(executor, progress):
        comparison = run_comparison(a, b, n, a.seed if seed is None else seed, executor, on_done)
    summary = comparison.summary()
    if as_json:
        out.file.write(json.dumps(summary, indent=2) + "\n")
    else:
        print_comparison(comparison, out)
    if out_dir is not None:
        written = write_comparison(comparison, summary, out_dir)
        (err if as_json else out).print(f"wrote {len(written)} files to {out_dir}: " + ", ".join(written), markup=False)
    failures = comparison.a.failures + comparison.b.failures
    if failures or not comparison.a.results or not comparison.b.results:
        for failure in failures:
            err.print(f"[red]replication {failure.replication} failed:[/red] {escape(failure.error)}", highlight=False)
        raise Failed(1)
