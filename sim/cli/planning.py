"""``asyncsim capacity``: the smallest value meeting the SLO with confidence, and the headroom."""

from __future__ import annotations

import json
from pathlib import Path
from typing import List, Optional

import typer
from rich.console import Console
from rich.markup import escape

from ..axes import SweepError, axes_from
from ..problems import CapacityError
from ..units import format_duration
from ..datafiles import allow_folders
from .common import (AllowPathOption, ClusterOption, Failed, ForceOption, JobsOption, ScenarioArgument, SeedOption, SetOption, SloOption, err,
                     json_option, open_executor, out, precision_option, precision_overrides, refuse_if_too_big, replications_option,
                     running_on)


def _print_run(run, console: Console) -> None:
    from ..evaluator import show_objective

    colour = {"met": "green", "not met": "red", "invalid": "red", "failed": "red"}.get(run.verdict, "yellow")
    objectives = []
    for key, o in run.objectives.items():
        ci = f" [{show_objective(key, o['ci95'][0])}, {show_objective(key, o['ci95'][1])}]" if o["ci95"][0] is not None else ""
        objectives.append(f"{key} {show_objective(key, o['mean'])}{ci}")
    reps = "→".join(str(n) for n in run.history) if run.history else "0"
    cost = run.cost()
    if cost is not None:
        objectives.append(f"${cost['per_hour_usd']['mean']:.4g}/h")
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
    for variant in plan.variants:
        cost = f" at ${variant.cost['per_hour_usd']['mean']:.4g}/h" if variant.cost else ""
        found = f"{variant.search.parameter} = {variant.search.value}{cost}" if variant.search.value is not None else "none meets the SLO"
        console.print(f"  variant ({escape(variant.label)}): {found}", highlight=False)
    if search is not None:
        if search.value is not None:
            chosen = plan.chosen_variant
            which = f" with {escape(chosen.label)} (the cheapest)" if chosen is not None else ""
            console.print(f"[bold green]recommendation:[/bold green] {search.parameter} = {search.value}{which}", highlight=False)
        else:
            console.print(f"[bold red]no value of {search.parameter} meets the SLO with confidence[/bold red]", highlight=False)
        console.print(f"  why it stopped: {escape(search.reason)}", highlight=False)
        for warning in search.warnings:
            console.print(f"[yellow]warning:[/yellow] {escape(warning)}", highlight=False)
    room = plan.headroom
    if room is not None:
        if room.factor is not None:
            rates = ", ".join(f"{k} {v:.4g}/s" for k, v in room.rates_per_s.items())
            console.print(f"[bold]headroom:[/bold] the SLO holds up to {room.factor:.3g}× the load ({rates})", highlight=False)
        else:
            console.print("[bold red]headroom:[/bold red] none found", highlight=False)
        if room.estimate is not None:
            console.print(f"  theory ({room.estimate_model}) puts it at {room.estimate:.3g}×", highlight=False)
        console.print(f"  why it stopped: {escape(room.reason)}", highlight=False)
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
    from ..evaluator import show_objective

    parts = ", ".join(f"{k} {show_objective(k, v)}{'' if e else ' (approx.)'}" for k, (v, e, _m) in estimate.considered.items())
    value = estimate.value if estimate.value is not None else "none"
    console.print(f"analytic estimate ({estimate.model}, {'exact' if estimate.exact else 'approximate'}): {value}"
                  + (f" ({parts})" if parts else "") + (f"; not in the formula: {', '.join(estimate.ignored)}" if estimate.ignored else ""), highlight=False)


def search_range(vary: Optional[str], minimum: int, maximum: Optional[int]) -> tuple[Optional[str], int, Optional[int]]:
    """``--vary PATH`` or ``--vary PATH=LOW..HIGH`` (sweep's form of a range, every integer from
    LOW to HIGH): the path, and the range to search (``--min``/``--max`` otherwise)."""
    if vary is None or "=" not in vary:
        return vary, minimum, maximum
    try:
        axis, = axes_from([vary])
    except SweepError as exc:
        raise typer.BadParameter(str(exc), param_hint="'--vary'") from None
    numbers = [v.number for v in axis.values]
    if not all(isinstance(n, int) and not isinstance(n, bool) for n in numbers) or numbers != list(range(numbers[0], numbers[0] + len(numbers))):
        raise typer.BadParameter(f"a capacity search tries integers: give PATH or PATH=LOW..HIGH, not '{vary}'", param_hint="'--vary'")
    return axis.path, numbers[0], numbers[-1]


def capacity(
    scenario: Path = ScenarioArgument,
    vary: Optional[str] = typer.Option(None, "--vary", metavar="PATH[=LOW..HIGH]", help="The integer PATH to size, e.g. workers.renderer.count or brokers.jobs.capacity, searched between LOW and HIGH when given (as sweep's --vary writes a range; the same as --min and --max). Without it: only the headroom of the scenario as it is."),
    slo: Optional[List[str]] = SloOption,
    set_: Optional[List[str]] = SetOption,
    allow_path: Optional[List[Path]] = AllowPathOption,
    replications: Optional[int] = replications_option("each value starts with", minimum=2),
    max_replications: Optional[int] = typer.Option(None, "--max-replications", min=2, metavar="N", help="Cap when an uncertain value gets more replications (default: 4× the start)."),
    precision: Optional[str] = precision_option("for each uncertain value, instead of doubling; a value within P of a target stays uncertain"),
    seed: Optional[int] = SeedOption,
    jobs: Optional[int] = JobsOption,
    cluster: Optional[str] = ClusterOption,
    minimum: int = typer.Option(0, "--min", metavar="VALUE", help="Smallest value to consider."),
    maximum: Optional[int] = typer.Option(None, "--max", metavar="VALUE", help="Largest value to consider (default: no limit; the search stops when more stops helping)."),
    no_estimate: bool = typer.Option(False, "--no-estimate", help="Do not start from the analytic estimate."),
    headroom: bool = typer.Option(True, "--headroom/--no-headroom", help="Then find the largest load the chosen setup sustains."),
    rate: Optional[str] = typer.Option(None, "--rate", metavar="PATH", help="Headroom on this one rate PATH (default: every arrival rate scaled together — producers', web tiers', task queues' callers and readers)."),
    headroom_precision: float = typer.Option(0.05, "--headroom-precision", metavar="FRACTION", help="Relative precision of the headroom's bisection (0.05: within 5%); not run's --precision, which sizes replications."),
    variant: Optional[List[str]] = typer.Option(None, "--variant", metavar="PATH=VALUE[;PATH=VALUE]", help="'PATH=VALUE; PATH=VALUE' overrides of one setup to compare (an instance type: its speed and price_per_hour). Repeatable: the search runs for each, and the cheapest answer is recommended."),
    objective: str = typer.Option("size", "--objective", metavar="size|cost", help="What the recommendation minimises among the values meeting the SLO: size (the smallest value) or cost (the cheapest, by cost.per_hour_usd: from the smallest, the next values while they cost less; needs prices)."),
    as_json: bool = json_option("the plan (every run, the recommendation, the headroom)"),
    force: bool = ForceOption,
):
    """Find the smallest value of a parameter meeting every SLO objective with confidence, and the headroom it leaves."""
    allow_folders(allow_path or [])
    from ..capacity import plan_capacity, slo_overrides
    from ..loading import load_scenario

    vary, minimum, maximum = search_range(vary, minimum, maximum)
    set_ = [*(set_ or []), *precision_overrides(precision)]
    try:
        with_slo, targets = slo_overrides(scenario, set_ or [], slo or [])
    except CapacityError as exc:
        raise typer.BadParameter(str(exc), param_hint="'--slo'") from None
    base = load_scenario(scenario, with_slo)
    start = replications or base.replications
    refuse_if_too_big(base, max_replications or 4 * start, jobs, cluster, force)
    executor = open_executor(jobs, cluster)
    console = err if as_json else out
    if not as_json:
        head = f"capacity: the {'cheapest' if variant or objective == 'cost' else 'smallest'} {vary} meeting the SLO with confidence" if vary else "capacity: the headroom of the scenario as it is"
        console.print(f"[bold]{head}[/bold] ({escape(str(scenario))})", highlight=False)
        console.print("SLO: " + ", ".join(f"{k} {format_duration(v) if k.startswith('latency') else v:}" for k, v in targets.items())
                      + f"; each run: value, replications ({'by the precision rule' if base.precision else 'doubled'} while uncertain), estimates with 95% CI, verdict", highlight=False)
    try:
        with running_on(executor):
            plan = plan_capacity(scenario, vary, slo or [], set_ or [], replications=replications, max_replications=max_replications,
                                 seed=seed, executor=executor, minimum=minimum, maximum=maximum, use_estimate=not no_estimate,
                                 headroom=headroom, rate_path=rate, headroom_precision=headroom_precision, variants=variant or [], objective=objective,
                                 on_run=None if as_json else (lambda r: _print_run(r, console)),
                                 on_estimate=None if as_json else (lambda e, n: _print_estimate(e, n, console)))
    except CapacityError as exc:
        option = next((o for o in ("--slo", "--rate", "--headroom-precision", "--max", "--variant", "--objective") if o in str(exc)), "--slo")
        raise typer.BadParameter(str(exc), param_hint=f"'{option}'") from None
    if as_json:
        out.file.write(json.dumps(plan.summary(), indent=2) + "\n")
    else:
        print_plan(plan, console)
    failed = plan.failed_runs
    if failed:
        err.print(f"[red]{len(failed)} of {len(plan.runs)} evaluations failed[/red] (replications raised); "
                  f"the first, {escape(failed[0].label)}: {escape(str(failed[0].error))}", highlight=False)
        raise Failed(1)
    if vary and plan.value is None:
        raise Failed(1)
