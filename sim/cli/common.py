"""What every command shares: the Typer app, the consoles, the common options, progress bars,
and the executor that ``--jobs`` and ``--cluster`` choose."""

from __future__ import annotations

import gc
import os
import sys
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.markup import escape

from ..executors import Executor, ExecutorError, make_executor

app = typer.Typer(
    add_completion=False,
    rich_markup_mode=None,  # plain help: no <bool> or <list[str]> placeholders
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Simulate asynchronous architectures: producers, brokers, workers. See README.md.",
)
out = Console(soft_wrap=True, emoji=False, width=None if sys.stdout.isatty() else 120)
err = Console(stderr=True, soft_wrap=True, emoji=False, width=None if sys.stderr.isatty() else 120)


class Failed(Exception):
    """A run that finished with an exit code other than 0, having said why."""

    def __init__(self, code: int):
        self.code = code


ScenarioArgument = typer.Argument(..., metavar="SCENARIO", help="The scenario's YAML file.", show_default=False)
SetOption = typer.Option(None, "--set", metavar="PATH=VALUE", help="Override a value, list items by name (workers.pool.count=12). Repeatable.")
JobsOption = typer.Option(None, "--jobs", "-j", min=1, metavar="N", help="Run on N local processes (default: all cores; 1: in this process).")
SeedOption = typer.Option(None, "--seed", min=0, metavar="S", help="Root seed, the same for every point or value run (default: the file's).")
SloOption = typer.Option(None, "--slo", metavar="KEY=VALUE", help="An objective added to (or replacing one of) the file's slo: latency_mean, latency_p50/p95/p99/p999 (a duration), max_loss_rate, max_rejection_rate (a fraction), min_throughput (a rate). Repeatable.")
AllowPathOption = typer.Option(None, "--allow-path", metavar="DIR", help="Also read data files (a trace's or an empirical distribution's file:) from DIR; by default only from the scenario's folder. Repeatable; or set ASYNCSIM_ALLOW_PATH.")
ClusterOption = typer.Option(None, "--cluster", metavar="ADDRESS", help="Run on a Dask cluster: the scheduler's address (tcp://host:8786), or 'local' to start one here.")


def with_slo(scenario: Path, overrides: list[str], slo: Optional[list[str]]) -> list[str]:
    """``--set`` overrides, plus one setting the SLO when ``--slo`` objectives are given (a bad
    one is a bad ``--slo``, exit 2)."""
    if not slo:
        return overrides
    from ..capacity import slo_overrides
    from ..problems import CapacityError

    try:
        return slo_overrides(scenario, overrides, slo)[0]
    except CapacityError as exc:
        raise typer.BadParameter(str(exc), param_hint="'--slo'") from None


def replications_option(what: str, minimum: int = 1, default: Optional[int] = None):
    """``--replications N`` / ``-r N``: ``what`` is counted (each run, point, value or case)."""
    default_text = f"default: {default}" if default is not None else "default: the file's"
    return typer.Option(default, "--replications", "-r", min=minimum, metavar="N", show_default=False,
                        help=f"Replications {what} ({default_text}; at least {minimum}).")


def precision_option(what: str):
    """``--precision P``, which means the same on every verb: replications are added (to the run,
    to each point of a sweep, to each uncertain value of a capacity search) until the 95%
    interval of every SLO metric (else the latency's mean and p99) is within P of its estimate."""
    return typer.Option(None, "--precision", metavar="P", help="Add replications until every SLO metric's (or the latency mean's and p99's) "
                        f"95% interval is within P of its estimate: 5% or 0.05 ({what}; the file's precision: by default).")


def precision_overrides(precision: Optional[str], max_replications: Optional[int] = None) -> list[str]:
    """The ``--set`` overrides that ``--precision`` (and ``--max-replications`` with it) stand for."""
    extra = [f"precision={precision}"] if precision is not None else []
    return extra + ([f"max_replications={max_replications}"] if max_replications is not None else [])


def json_option(what: str):
    """``--json``: print ``what`` as JSON on stdout instead of the table (messages go to stderr)."""
    return typer.Option(False, "--json", help=f"Print {what} as JSON on stdout instead of the table.")


def cannot_write(path: Path, exc: OSError) -> Failed:
    """Say that ``--out path`` cannot be written, and why; exit 2 (a bad option)."""
    err.print(f"[red]error:[/red] --out {escape(str(path))}: cannot write there: {escape(str(exc.strerror or exc))}", highlight=False)
    return Failed(2)


def writable_folder(path: Path) -> None:
    """Make the ``--out`` folder ``path`` (and its parents) and write a file in it, before any
    work: a folder that cannot be written is refused at once, not after the simulation."""
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as exc:
        raise cannot_write(path, exc) from None


def progress_bar(label: str, executor: Optional[Executor] = None):
    """A progress bar on stderr when it is a terminal: replications done, points done, rate and ETA.
    The bar also fills with the simulated time of the replications running on ``executor``, so it
    moves within a long replication, not only between them."""
    if not sys.stderr.isatty():
        return None
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, ProgressColumn, TextColumn, TimeElapsedColumn, TimeRemainingColumn
    from rich.text import Text

    class LiveBar(BarColumn):
        def render(self, task):
            bar = super().render(task)
            if executor is not None and bar.total:
                bar.completed = min(bar.total, bar.completed + executor.in_flight())
            return bar

    class Rate(ProgressColumn):
        def render(self, task):
            speed = task.finished_speed or task.speed
            return Text(f"{speed:.3g} repl./s" if speed else "", style="progress.data.speed")

    return Progress(TextColumn(label), LiveBar(), MofNCompleteColumn(), TextColumn("replications, {task.fields[points]}"),
                    Rate(), TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(), console=err, transient=True)


ForceOption = typer.Option(False, "--force", help="Run even when the estimated memory is more than this machine has (asyncsim check shows the estimate).")


def refuse_if_too_big(scenario, replications: int, jobs: Optional[int], cluster: Optional[str], force: bool) -> None:
    """Refuse (exit 2) runs of ``scenario`` that cannot fit in this machine's memory
    (:mod:`sim.cost`), unless ``--force``. On a cluster only one replication runs here at a time
    (its result is kept here); locally ``--jobs`` at once."""
    if force:
        return
    from ..cost import estimate_cost, too_big

    parallel = 1 if cluster else (jobs or os.cpu_count() or 1)
    problem = too_big(estimate_cost(scenario), replications, parallel)
    if problem is not None:
        err.print(f"[red]error:[/red] {escape(scenario.name)}: {escape(problem)}", highlight=False)
        raise Failed(2)


def open_executor(jobs: Optional[int], cluster: Optional[str], tasks: Optional[int] = None) -> Executor:
    """The executor of ``--jobs``/``--cluster`` (no more local processes than ``tasks``); a
    cluster that cannot be reached is a bad ``--cluster`` (exit 2).

    From here on the command simulates: the garbage collector that the ``asyncsim`` entry point
    paused for start-up (:mod:`sim.__main__`) runs again, with what start-up built frozen (it
    lives as long as the process, so its full collections and the one at exit skip it)."""
    if not gc.isenabled():
        gc.freeze()
        gc.enable()
    try:
        return make_executor(jobs, cluster, tasks)
    except ExecutorError as exc:
        raise typer.BadParameter(str(exc), param_hint="'--cluster'") from None


@contextmanager
def running_on(executor: Executor, progress=None):
    """Work on ``executor``: however it ends, the progress bar stops and the executor closes; an
    executor that fails (a worker process died, the cluster went away) is one red line and exit 1;
    Ctrl-C that the work did not handle itself (run and sweep keep what finished; a capacity
    search and a report stop) is one line and exit 130."""
    try:
        yield executor
    except ExecutorError as exc:
        err.print(f"[red]error:[/red] {escape(str(exc))}")
        raise Failed(1) from None
    except KeyboardInterrupt:
        err.print("interrupted: stopped before the end, nothing written")
        raise Failed(130) from None
    finally:
        if progress is not None:
            progress.stop()
        executor.close()
