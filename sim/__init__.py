"""asyncsim: discrete-event simulation of asynchronous architectures on SimPy.

    from sim import load_scenario, run
    result = run(load_scenario("scenarios/quickstart.yaml"))
    result.summary()["system"]["latency_s"]["p99"]
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Callable

if TYPE_CHECKING:
    from .result import Result
    from .runner import ReplicationFailure, ReplicationResult
    from .schema import Scenario

_EXPORTS = {
    "load_scenario": "loading", "load_scenario_text": "loading", "scenario_from_dict": "loading", "Result": "result",
    "Scenario": "schema", "ScenarioError": "problems", "run_replication": "runner",
}
__all__ = ["run", *_EXPORTS]


def __getattr__(name: str):
    """The package's names, each imported from its module when first asked for (so that the
    command line, which imports this package first, pays only for what a command uses)."""
    if name not in _EXPORTS:
        raise AttributeError(f"module 'sim' has no attribute {name!r}")
    return getattr(import_module(f".{_EXPORTS[name]}", __name__), name)


def run(
    scenario: Scenario,
    replications: int | None = None,
    seed: int | None = None,
    jobs: int | None = None,
    on_done: Callable[[ReplicationResult | ReplicationFailure], None] | None = None,
    cluster: str | None = None,
) -> Result:
    """Run ``scenario`` (its own replication count and seed unless given) and gather the Result.

    The replications run on ``jobs`` local processes (all cores by default, never more than there
    are replications; in this process when that is 1), or on a Dask cluster: ``cluster`` is the
    scheduler's address (``tcp://host:8786``) or ``"local"`` to start one. Results do not depend on
    where they ran. ``on_done(outcome)`` is called as each replication ends. A failing
    replication is reported in ``Result.failures`` and the others kept; Ctrl-C keeps the finished
    ones (``Result.interrupted``)."""
    from .executors import make_executor
    from .jobs import run_scenario

    replications = scenario.replications if replications is None else replications
    if replications < 1:
        raise ValueError(f"replications must be at least 1, got {replications}")
    seed = scenario.seed if seed is None else seed
    with make_executor(jobs, cluster, tasks=replications) as executor:
        return run_scenario(scenario, replications, seed, executor, on_done)
