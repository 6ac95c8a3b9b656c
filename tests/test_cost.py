"""The cost guard (issue 11, #6): ``check`` estimates a replication's events, run time and peak
memory; the commands that run refuse what cannot fit in the machine's memory unless ``--force``;
replications are handed out as capacity frees; progress is reported within a replication."""

from __future__ import annotations

import json
import tracemalloc
from pathlib import Path

import pytest
import simpy
from typer.testing import CliRunner

import sim.cost
from sim import load_scenario, load_scenario_text
from sim.cli import app
from sim.cli.common import Failed
from sim.cost import estimate_cost
from sim.executors import AHEAD_PER_WORKER, ProcessExecutor, SerialExecutor, report_progress
from sim.jobs import Job, run_jobs
from sim.runner import run_replication
from tests.test_cli import GOOD

QUICKSTART = str(Path(__file__).resolve().parents[1] / "scenarios" / "quickstart.yaml")
SHORT = ["--set", "duration=2m", "--set", "warmup=10s"]


def code_of(result) -> int:
    """The exit code ``sim.cli.main`` gives: a command that failed having said why raises Failed."""
    return result.exception.code if isinstance(result.exception, Failed) else result.exit_code


def counted_events(scenario) -> int:
    """SimPy events one replication of ``scenario`` processes, counted."""
    count = [0]
    step = simpy.Environment.step

    def counting(env):
        count[0] += 1
        return step(env)

    simpy.Environment.step = counting
    try:
        run_replication(scenario, 0)
    finally:
        simpy.Environment.step = step
    return count[0]


@pytest.mark.parametrize("name", ["quickstart", "image-pipeline", "redis-worker-crashes", "retry-storm", "tweet-fanout-sync", "cheap-lookup-async"])
def test_the_estimated_events_are_within_a_factor_of_three_of_the_count(name):
    scenario = load_scenario(Path(QUICKSTART).with_name(f"{name}.yaml"), ["duration=3m", "warmup=30s"])
    events = counted_events(scenario)
    assert events / 3 <= estimate_cost(scenario).events <= 3 * events


def test_the_estimated_peak_memory_of_many_workers_is_within_a_factor_of_two():
    scenario = load_scenario(QUICKSTART, ["workers.renderer.count=5000", "duration=1m", "warmup=0s"])
    tracemalloc.start()
    try:
        run_replication(scenario, 0)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak / 2 <= estimate_cost(scenario).peak_bytes <= 2 * peak


def test_ten_million_workers_and_a_century_cost_what_the_issue_says():
    workers = estimate_cost(load_scenario(QUICKSTART, ["workers.renderer.count=10000000"]))
    assert 15e9 <= workers.peak_bytes <= 40e9  # "10,000,000 workers need about 20 GB"
    century = estimate_cost(load_scenario(QUICKSTART, ["duration=36500d"]))
    assert century.run_s > 86400 and century.peak_bytes > 1e12


def test_check_prints_the_cost_of_a_replication_and_the_machines_memory(monkeypatch):
    monkeypatch.setattr(sim.cost, "machine_memory_bytes", lambda: 16e9)
    result = CliRunner().invoke(app, ["check", QUICKSTART])
    assert result.exit_code == 0, result.output
    cost = estimate_cost(load_scenario(QUICKSTART))
    assert (f"each replication (an estimate): about {cost.events:,.0f} events, " in result.output
            and "of memory at its peak; this machine has 16 GB" in result.output)


def test_check_json_gives_the_loads_and_the_cost_and_the_problems():
    runner = CliRunner()
    good = json.loads(runner.invoke(app, ["check", QUICKSTART, "--json"]).stdout)
    assert good["valid"] and good["name"] == "quickstart"
    assert good["brokers"]["thumbnails"]["arrival_rate_per_s"] == 30.0
    assert good["cost_per_replication"] == estimate_cost(load_scenario(QUICKSTART)).as_dict()
    bad = runner.invoke(app, ["check", QUICKSTART, "--json", "--set", "workers.renderer.count=0"])
    assert code_of(bad) == 2
    problem, = json.loads(bad.stdout)["problems"]
    assert problem["set"] == "workers.renderer.count" and problem["field"] == "workers.renderer.count"


GUARDED = [["run", "-r", "2"], ["sweep", "--vary", "duration=10m,20m", "-r", "2"],
           ["capacity", "--vary", "workers.renderer.count", "--slo", "latency_p99=1s", "-r", "2"], ["report", "-r", "2", "--out", "reports"]]


@pytest.mark.parametrize("verb", GUARDED, ids=[v[0] for v in GUARDED])
def test_every_command_that_runs_refuses_what_cannot_fit_in_memory(verb, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sim.cost, "machine_memory_bytes", lambda: 1e9)
    result = CliRunner().invoke(app, [verb[0], QUICKSTART, *verb[1:], "-j", "1", "--set", "workers.renderer.count=1000000"])
    assert code_of(result) == 2, result.output
    message = " ".join(result.output.split())
    assert "would need about" in message and "the machine has 1 GB" in message and "--force" in message
    assert not (tmp_path / "reports" / "report.html").exists()


def test_force_runs_what_the_guard_would_refuse(monkeypatch):
    monkeypatch.setattr(sim.cost, "machine_memory_bytes", lambda: 1e6)
    runner = CliRunner()
    refused = runner.invoke(app, ["run", QUICKSTART, "-r", "2", "-j", "1", "--json", *SHORT])
    assert code_of(refused) == 2
    forced = runner.invoke(app, ["run", QUICKSTART, "-r", "2", "-j", "1", "--json", "--force", *SHORT])
    assert forced.exit_code == 0, forced.output
    assert json.loads(forced.stdout)["replications"] == 2


def test_a_million_replications_are_refused_for_their_results():
    cost = estimate_cost(load_scenario(QUICKSTART))
    assert sim.cost.memory_needed_bytes(cost, 1_000_000, 2) > 40e9


# --- bounded submission, and progress within a replication ---------------------------------------


TINY = GOOD.replace("duration: 10m\nwarmup: 1m", "duration: 20s\nwarmup: 0s").replace("rate: 30/s", "rate: 5/s") \
    .replace("count: 8", "count: 2").replace("{dist: lognormal, mean: 200ms, cv: 0.8}", "{dist: exponential, mean: 100ms}")


def test_replications_are_taken_as_capacity_frees_not_all_at_once():
    scenario = load_scenario_text(TINY)
    taken = []

    def tasks():
        for r in range(1000):
            taken.append(r)
            yield scenario, r, 1

    with ProcessExecutor(2) as executor:
        results = executor.map_unordered(run_replication, tasks())
        next(results)
        assert len(taken) <= AHEAD_PER_WORKER * 2 + 1
        for _ in range(5):
            next(results)
        assert len(taken) <= AHEAD_PER_WORKER * 2 + 6
        results.close()


def test_a_replication_reports_its_simulated_progress_and_its_results_do_not_change():
    scenario = load_scenario_text(TINY.replace("warmup: 0s", "warmup: 5s"))
    shares = []
    with_progress = run_replication(scenario, 3, 1, progress=shares.append)
    without = run_replication(scenario, 3, 1)
    assert shares == sorted(shares) and shares[-1] == 1.0 and len(shares) == 101  # 1% steps of the warm-up, then of the rest
    assert with_progress.metrics == without.metrics and with_progress.counts == without.counts


def test_an_executor_tells_how_far_its_running_replications_have_got():
    executor = SerialExecutor()

    def task(share):
        report_progress(share)
        return executor.in_flight()

    assert [seen for _, seen in executor.map_unordered(task, [(0.25,), (0.5,)])] == [0.25, 0.5]
    assert executor.in_flight() == 0.0  # nothing runs now
    scenario = load_scenario_text(TINY)
    seen = []
    for _ in run_jobs([Job(scenario, 1, range(2))], executor, lambda j, outcome: seen.append(executor.in_flight())):
        pass
    assert seen == [0.0, 0.0]  # a finished replication is no longer in flight
