"""``asyncsim report``: the design-review report, HTML or Markdown."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer
from rich.markup import escape

from ..problems import CapacityError
from ..datafiles import allow_folders
from .common import AllowPathOption, ForceOption, refuse_if_too_big, ClusterOption, Failed, JobsOption, SetOption, err, open_executor, out, progress_bar, running_on, writable_file


def report(
    scenario: Path = typer.Argument(..., help="Scenario YAML file."),
    out_path: Optional[Path] = typer.Option(None, "--out", help="The report file (default: report.html, or report.md with --format md)."),
    fmt: Optional[str] = typer.Option(None, "--format", help="html (one self-contained file) or md (Markdown with PNGs beside it). Default: from --out's suffix, else html."),
    replications: Optional[int] = typer.Option(None, "--replications", "-r", min=2, help="Replications (default: the file's)."),
    seed: Optional[int] = typer.Option(None, "--seed", min=0),
    set_: Optional[List[str]] = SetOption,
    allow_path: Optional[List[Path]] = AllowPathOption,
    jobs: Optional[int] = JobsOption,
    cluster: Optional[str] = ClusterOption,
    vary: Optional[str] = typer.Option(None, "--vary", help="Also recommend the smallest value of this integer PATH meeting the SLO (a capacity search) and its headroom."),
    slo: Optional[List[str]] = typer.Option(None, "--slo", help="Objective KEY=VALUE for the report and the search. Repeatable."),
    headroom: bool = typer.Option(True, "--headroom/--no-headroom", help="With --vary: also the headroom of the recommendation."),
    force: bool = ForceOption,
):
    """Write a design-review report: diagram, SLO verdicts, tables with CIs, plots, checks, theory, assumptions."""
    allow_folders(allow_path or [])
    from ..loading import load_scenario
    from ..report import build_report, save_report

    if fmt is None:
        fmt = "md" if out_path is not None and out_path.suffix.lower() in (".md", ".markdown") else "html"
    fmt = fmt.lower()
    if fmt not in ("html", "md"):
        raise typer.BadParameter(f"'{fmt}' is not a format: html or md", param_hint="'--format'")
    if out_path is None:
        out_path = Path("report.md" if fmt == "md" else "report.html")
    writable_file(out_path)
    spec = load_scenario(scenario, set_ or [])
    refuse_if_too_big(spec, replications or spec.replications, jobs, cluster, force)
    executor = open_executor(jobs, cluster)
    progress = progress_bar("report", executor)
    task = None
    if progress is not None:
        task = progress.add_task("report", total=None, points="running")
        progress.start()

    def on_replication(done, total):
        if progress is not None:
            progress.update(task, completed=done, total=total)

    try:
        with running_on(executor, progress):
            built = build_report(scenario, overrides=set_ or [], replications=replications, seed=seed, executor=executor,
                                 vary=vary, slo=slo or [], headroom=headroom, on_replication=on_replication)
    except CapacityError as exc:
        raise typer.BadParameter(str(exc), param_hint="'--slo'") from None
    written = save_report(built, out_path, fmt)
    out.print(f"wrote {written[0]}" + (f" and {len(written) - 1} images beside it" if len(written) > 1 else ""), highlight=False, markup=False)
    if built.failures:
        err.print(f"[red]{len(built.failures)} of the runs the report needs failed[/red] (replications raised); "
                  f"the first, {escape(str(built.failures[0]))}", highlight=False)
        raise Failed(1)
