"""``asyncsim report``: the design-review report, HTML or Markdown."""

from __future__ import annotations

import json
from pathlib import Path
from typing import List, Optional

import typer
from rich.markup import escape

from ..datafiles import allow_folders
from ..problems import CapacityError
from .common import (AllowPathOption, ClusterOption, Failed, ForceOption, JobsOption, ScenarioArgument, SeedOption, SetOption, SloOption, err,
                     json_option, open_executor, out, progress_bar, refuse_if_too_big, replications_option, running_on, writable_folder)
from .planning import search_range


def report(
    scenario: Path = ScenarioArgument,
    out_dir: Path = typer.Option(Path("."), "--out", metavar="DIR", show_default=False, help="Write report.html (or report.md and its PNGs) in the folder DIR (made if need be; default: the current folder)."),
    fmt: str = typer.Option("html", "--format", metavar="html|md", help="html (one self-contained file) or md (Markdown with PNGs beside it)."),
    replications: Optional[int] = replications_option("to run", minimum=2),
    seed: Optional[int] = SeedOption,
    set_: Optional[List[str]] = SetOption,
    allow_path: Optional[List[Path]] = AllowPathOption,
    jobs: Optional[int] = JobsOption,
    cluster: Optional[str] = ClusterOption,
    vary: Optional[str] = typer.Option(None, "--vary", metavar="PATH[=LOW..HIGH]", help="Also recommend the smallest value of this integer PATH meeting the SLO (a capacity search, between LOW and HIGH when given, as in capacity) and its headroom."),
    slo: Optional[List[str]] = SloOption,
    headroom: bool = typer.Option(True, "--headroom/--no-headroom", help="With --vary: also the headroom of the recommendation."),
    as_json: bool = typer.Option(False, "--json", help="Print what was written, the run's summary and the capacity plan as JSON on stdout instead of the line saying where the report is."),
    force: bool = ForceOption,
):
    """Write a design-review report: diagram, SLO verdicts, tables with CIs, plots, checks, theory, assumptions."""
    allow_folders(allow_path or [])
    from ..loading import load_scenario
    from ..report import build_report, save_report

    vary, low, high = search_range(vary, 0, None)
    fmt = fmt.lower()
    if fmt not in ("html", "md"):
        raise typer.BadParameter(f"'{fmt}' is not a format: html or md", param_hint="'--format'")
    if out_dir.suffix.lower() in (".html", ".htm", ".md", ".markdown") and not out_dir.is_dir():
        raise typer.BadParameter(f"'{out_dir}' looks like a file: --out names a folder, as in run and sweep "
                                 f"(the report is written as DIR/report.{fmt}; --format md for Markdown)", param_hint="'--out'")
    writable_folder(out_dir)
    out_path = out_dir / f"report.{fmt}"
    spec = load_scenario(scenario, set_ or [])
    refuse_if_too_big(spec, replications or spec.replications, jobs, cluster, force)
    executor = open_executor(jobs, cluster)
    progress = None if as_json else progress_bar("report", executor)
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
                                 vary=vary, slo=slo or [], headroom=headroom, on_replication=on_replication,
                                 search_range=(low, high) if high is not None else None)
    except CapacityError as exc:
        raise typer.BadParameter(str(exc), param_hint="'--slo'") from None
    written = save_report(built, out_path, fmt)
    if as_json:
        out.file.write(json.dumps({"report": str(written[0]), "images": [str(p) for p in written[1:]], "summary": built.result.summary(),
                                   "plan": built.plan.summary() if built.plan is not None else None}, indent=2) + "\n")
    else:
        out.print(f"wrote {written[0]}" + (f" and {len(written) - 1} images beside it" if len(written) > 1 else ""), highlight=False, markup=False)
    if built.failures:
        err.print(f"[red]{len(built.failures)} of the runs the report needs failed[/red] (replications raised); "
                  f"the first, {escape(str(built.failures[0]))}", highlight=False)
        raise Failed(1)
