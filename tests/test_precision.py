"""Precision-driven runs: replications are added until every interval that matters is within
the relative precision asked, or the cap is reached, and the run says which."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import yaml

from sim.evaluator import Evaluator
from sim.executors import SerialExecutor
from sim.jobs import precision_metrics, run_scenario
from sim.sweep import run_sweep
from tests.test_estimates import queue


def test_replications_are_added_until_the_latency_intervals_are_within_the_precision():
    scenario = queue(rate=0.5, duration=1_500, warmup=100)
    result = run_scenario(scenario, 4, 1, SerialExecutor(), precision=0.06, max_replications=200)
    assert result.precision["met"] and result.precision["reached"] <= 0.06
    assert len(result.results) > 4 and [r.replication for r in result.results] == list(range(len(result.results)))
    for metric in precision_metrics(result):
        estimate = result.estimate(metric)
        assert estimate.half_width <= 0.06 * estimate.mean
    # the same replications as a plain run of that many: adding them changed nothing of the first ones
    plain = run_scenario(scenario, len(result.results), 1, SerialExecutor())
    assert plain.estimate("system.latency_s.p99") == result.estimate("system.latency_s.p99")
    assert not any(w.startswith("precision") for w in result.warnings())


def test_the_cap_ends_the_run_and_the_warning_says_how_far_it_got():
    result = run_scenario(queue(rate=0.5, duration=600, warmup=60), 2, 1, SerialExecutor(), precision=0.01, max_replications=5)
    assert len(result.results) == 5 and not result.precision["met"]
    [warning] = [w for w in result.warnings() if w.startswith("precision")]
    assert "precision 1.0% not reached with 5 replications (the cap is 5)" in warning
    assert result.summary()["precision"]["max_replications"] == 5


def test_precision_targets_the_slo_metrics_when_there_are_some():
    result = run_scenario(queue(rate=0.5, duration=600, warmup=60, slo={"latency_p95": "10s"}), 3, 1, SerialExecutor(),
                          precision=0.5)
    assert precision_metrics(result) == ["system.latency_s.p95"]


@pytest.mark.parametrize("verb, value, message", [
    (["run"], "150%", "precision: must be < 1"), (["run"], "fast", "precision: must be a number"),
    (["sweep", "--vary", "workers.renderer.count=8,9"], "150%", "precision: must be < 1"),  # the same option on every verb
    (["capacity", "--vary", "workers.renderer.count"], "150%", "precision: must be < 1"),
])
def test_a_precision_that_is_not_a_fraction_is_refused_with_exit_2(root, verb, value, message):
    done = subprocess.run([sys.executable, "-m", "sim", *verb, str(root / "scenarios/quickstart.yaml"), "--precision", value],
                          capture_output=True, text=True)
    assert done.returncode == 2 and message in done.stderr and "Traceback" not in done.stderr


def test_run_precision_from_the_command_line_reports_how_it_ended(root):
    done = subprocess.run([sys.executable, "-m", "sim", "run", str(root / "scenarios/quickstart.yaml"), "--set", "duration=5m",
                           "--set", "warmup=30s", "-r", "2", "--precision", "3%", "--max-replications", "6", "--json", "-j", "1"],
                          capture_output=True, text=True)
    summary = json.loads(done.stdout)
    assert summary["precision"]["target"] == 0.03 and summary["replications"] <= 6
    assert summary["precision"]["met"] == (summary["precision"]["reached"] <= 0.03)


def scenario_file(tmp_path, **extra):
    path = tmp_path / "mm1.yaml"
    path.write_text(yaml.safe_dump(json.loads(queue(rate=0.5, duration=1_500, warmup=100, **extra).model_dump_json(exclude_none=True))))
    return path


@pytest.mark.slow
def test_each_point_of_a_sweep_follows_the_precision_rule_as_a_run_does(tmp_path):
    progress = []
    sweep = run_sweep(scenario_file(tmp_path), ["producers.p.arrivals.rate=0.4/s,0.5/s"], ["precision=0.15"], replications=3,
                      seed=1, executor=SerialExecutor(), on_replication=lambda done, total: progress.append((done, total)))
    ran = sum(len(sweep.results[point.index].results) for point in sweep.points)
    assert progress[-1] == (ran, ran) and all(done <= total for done, total in progress)  # the bar's total grows with the rounds
    for point in sweep.points:
        result = sweep.results[point.index]
        assert result.precision["met"] and len(result.results) > 3
        alone = run_scenario(point.scenario, 3, 1, SerialExecutor(), precision=0.15)
        assert len(alone.results) == len(result.results)
        assert alone.estimate("system.latency_s.p99") == result.estimate("system.latency_s.p99")


def test_an_uncertain_capacity_value_gets_replications_by_the_precision_rule_and_stops_within_it(tmp_path):
    # M/M/1 at ρ = 0.5: mean sojourn 2 s exactly, the objective 2 s: uncertain however long it runs
    evaluator = Evaluator(scenario_file(tmp_path, slo={"latency_mean": 2.0}), 1, 3, 60, SerialExecutor())
    [run] = evaluator.evaluate([("search", 1, "as it is", ["precision=0.03"])])
    assert run.verdict == "uncertain" and run.history[0] == 3 and run.history[1] != 6  # not doubled
    assert run.result.precision["met"] or run.replications == 60
    [doubled] = Evaluator(scenario_file(tmp_path, slo={"latency_mean": 2.0}), 1, 3, 12, SerialExecutor()).evaluate([("search", 1, "as it is", [])])
    assert doubled.history[:2] == [3, 6]  # without a precision: doubled
