"""The ``asyncsim`` command line: run, check, schema, validate, sweep, capacity, report, compare.

One module per group of commands; heavy modules (pandas, matplotlib, dask, the sweep, capacity
and report machinery) are imported inside the commands that use them, so ``asyncsim --help``
starts at once.
"""

from __future__ import annotations

import contextvars
import functools
import os
import signal
import sys

import typer
from rich.markup import escape

from ..problems import ScenarioError
from .common import Failed, app, err, out
from .comparing import compare
from .planning import capacity
from .reporting import report
from .running import check, run, schema, validate
from .sweeping import sweep


def show_version(wanted: bool) -> None:
    """``--version``: the installed asyncsim's version, then exit 0."""
    if wanted:
        from importlib.metadata import version  # 10 ms (it imports email): only for --version

        out.print(f"asyncsim {version('asyncsim')}", highlight=False)
        raise typer.Exit()


@app.callback()
def options(_version: bool = typer.Option(False, "--version", callback=show_version, is_eager=True, help="Print the version and exit.", show_default=False)) -> None:
    pass  # the app's own help describes it; this callback only carries --version


def in_own_context(command):
    """``command`` run in a copy of the current context, so that what it sets for its duration
    (the ``--allow-path`` folders, :func:`sim.datafiles.allow_folders`) ends with it."""

    @functools.wraps(command)
    def scoped(*args, **kwargs):
        return contextvars.copy_context().run(command, *args, **kwargs)

    return scoped


for command in (run, check, schema, validate, sweep, capacity, report, compare):
    app.command()(in_own_context(command))


def interrupt_once(_signum, _frame) -> None:
    """The command line's Ctrl-C: the first stops the work (KeyboardInterrupt: local workers are
    ended, what finished is reported); later ones are ignored, so that the report and the exit
    are not cut short by a second one (with tracebacks from the interpreter's shutdown)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    raise KeyboardInterrupt


def main() -> None:
    """Entry point: usage errors are click's (exit 2); scenario errors name file, line and field.
    Ctrl-C exits 130; after it, further Ctrl-C stay ignored until the process ends."""
    previous = signal.signal(signal.SIGINT, interrupt_once)
    code = 0
    try:
        app()
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except ScenarioError as exc:
        err.print(f"[red]error[/red] in {escape(exc.source)}:", highlight=False)
        for problem in exc.problems:
            err.print("  " + problem.format(exc.source), highlight=False, markup=False)
        code = 2
    except Failed as exc:
        code = exc.code
    except KeyboardInterrupt:
        err.print("interrupted")
        code = 130
    except Exception as exc:  # the last line of defence: one readable line, the traceback on request
        if os.environ.get("ASYNCSIM_DEBUG"):
            raise
        err.print(f"[red]asyncsim: internal error:[/red] {type(exc).__name__}: {escape(str(exc))} (set ASYNCSIM_DEBUG=1 for the traceback)")
        code = 3
    finally:
        if signal.getsignal(signal.SIGINT) is not signal.SIG_IGN:  # no Ctrl-C came: as before
            signal.signal(signal.SIGINT, previous)
    sys.exit(code)
