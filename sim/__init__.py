"""asyncsim: discrete-event simulation of asynchronous architectures on SimPy.

    from sim import load_scenario, run
    result = run(load_scenario("scenarios/quickstart.yaml"))
    result.summary()["system"]["latency_s"]["p99"]
"""

from __future__ import annotations

from .loading import ScenarioError, load_scenario, load_scenario_text, scenario_from_dict
from .result import Result
from .runner import run_replication, run_replications
from .schema import Scenario

__all__ = ["load_scenario", "load_scenario_text", "scenario_from_dict", "run", "Result", "Scenario", "ScenarioError", "run_replication"]


def run(scenario: Scenario, replications: int | None = None, seed: int | None = None, jobs: int | None = None, on_done=None) -> Result:
    """Run ``scenario`` (its own replication count and seed unless given) on ``jobs`` local
    processes (all cores by default; results do not depend on it) and gather the Result."""
    replications = scenario.replications if replications is None else replications
    if replications < 1:
        raise ValueError(f"replications must be at least 1, got {replications}")
    seed = scenario.seed if seed is None else seed
    results, failures, interrupted = run_replications(scenario, replications, seed, jobs=jobs, on_done=on_done)
    return Result(scenario, seed, replications, results, failures, interrupted)
