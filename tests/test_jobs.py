"""Running replications (sim/jobs.py, sim.run): the same numbers on every executor, a scenario's
data files travelling with it, failures reported, Ctrl-C keeping what finished."""

from __future__ import annotations

import json
import os
import pickle
import shutil
import subprocess
import sys

import pytest

import sim.jobs
from sim import load_scenario, run
from sim.executors import ProcessExecutor, SerialExecutor
from sim.jobs import run_scenario
from sim.result import UnknownMetricError, scenario_metric_names
from sim.runner import ReplicationFailure


def summary(result) -> dict:
    return json.loads(json.dumps(result.summary()))


@pytest.fixture
def quickstart(root):
    return load_scenario(root / "scenarios" / "quickstart.yaml", ["duration=3m", "warmup=20s"])


@pytest.fixture
def travelling(root, tmp_path):
    """recorded-burst (a trace of arrivals and empirical service times, both CSV files) copied
    into a temporary folder, loaded, then its data folder moved away."""
    shutil.copy(root / "scenarios" / "recorded-burst.yaml", tmp_path / "burst.yaml")
    shutil.copytree(root / "scenarios" / "data", tmp_path / "data")
    scenario = load_scenario(tmp_path / "burst.yaml", ["duration=4m"])
    before = summary(run(scenario, replications=2, jobs=1))
    (tmp_path / "data").rename(tmp_path / "moved")
    assert not (tmp_path / "data").exists()
    return scenario, before


def test_run_gives_the_same_summary_in_this_process_and_on_local_processes(quickstart):
    serial = summary(run(quickstart, replications=3, jobs=1))
    assert serial == summary(run(quickstart, replications=3, jobs=2))
    with ProcessExecutor(2) as executor:
        assert serial == summary(run_scenario(quickstart, 3, quickstart.seed, executor))


@pytest.mark.slow
def test_run_gives_the_same_summary_on_a_dask_cluster(quickstart, travelling):
    assert summary(run(quickstart, replications=3, jobs=1)) == summary(run(quickstart, replications=3, cluster="local:2"))
    scenario, before = travelling
    assert summary(run(scenario, replications=2, cluster="local:2")) == before


def test_a_scenario_carries_its_data_files_values(travelling):
    scenario, before = travelling
    copy = pickle.loads(pickle.dumps(scenario))
    assert copy.workers[0].service_time.values_s().size == scenario.workers[0].service_time.values_s().size > 0
    assert summary(run(copy, replications=2, jobs=1)) == before
    assert summary(run(scenario, replications=2, jobs=2)) == before


def test_a_failing_replication_is_reported_and_the_others_kept(quickstart, monkeypatch):
    real = sim.jobs.safe_replication

    def second_fails(scenario, replication, seed, progress=None):
        if replication == 1:
            return ReplicationFailure(replication, "RuntimeError: boom", "")
        return real(scenario, replication, seed, progress)

    monkeypatch.setattr(sim.jobs, "safe_replication", second_fails)
    done = []
    result = run(quickstart, replications=3, jobs=1, on_done=done.append)
    assert [r.replication for r in result.results] == [0, 2]
    assert [(f.replication, f.error) for f in result.failures] == [(1, "RuntimeError: boom")]
    assert len(done) == 3 and not result.interrupted


def test_replications_that_raise_on_local_processes_are_failures(quickstart):
    broken = quickstart.model_copy(deep=True)
    object.__setattr__(broken.workers[0], "service_time", None)  # no validation would let this through
    with ProcessExecutor(2) as executor:
        result = run_scenario(broken, 2, 1, executor)
    assert not result.results and [f.replication for f in result.failures] == [0, 1]
    assert all(f.error.startswith("AttributeError") for f in result.failures)


def test_ctrl_c_keeps_the_finished_replications(quickstart):
    done = []

    def interrupt_after_two(outcome):
        done.append(outcome)
        if len(done) == 2:
            raise KeyboardInterrupt

    result = run_scenario(quickstart, 4, quickstart.seed, SerialExecutor(), interrupt_after_two)
    assert result.interrupted and [r.replication for r in result.results] == [0, 1]
    assert result.requested_replications == 4


def test_a_result_with_no_finished_replication_summarises_and_says_why(quickstart, monkeypatch):
    monkeypatch.setattr(sim.jobs, "safe_replication", lambda scenario, replication, seed, progress=None: ReplicationFailure(replication, "RuntimeError: boom", ""))
    result = run(quickstart, replications=2, jobs=1)
    s = summary(result)
    assert s["warnings"] == ["no replication finished: 2 of 2 failed", "replication 0 failed: RuntimeError: boom", "replication 1 failed: RuntimeError: boom"]
    assert s["replications"] == 0 and not s["ok"] and "system" not in s
    assert result.estimate("system.latency_s.p99").mean is None


def test_estimate_of_an_unknown_metric_names_the_closest(quickstart):
    result = run(quickstart, replications=1, jobs=1)
    with pytest.raises(UnknownMetricError, match=r"^unknown metric 'system.latency_s.p98'; did you mean 'system.latency_s.p99'"):
        result.estimate("system.latency_s.p98")
    assert result.estimate("system.latency_s.p99").mean > 0


@pytest.mark.parametrize("name", ["quickstart", "retry-storm", "order-payment-outbox", "rabbitmq-memory-alarm"])
def test_the_metric_names_known_before_a_run_are_the_runs(root, name):
    scenario = load_scenario(root / "scenarios" / f"{name}.yaml", ["duration=3m", "warmup=20s"])
    assert scenario_metric_names(scenario) == run(scenario, replications=1, jobs=1).metric_names()


DIES_MID_SEND = '''
import os, signal, struct, sys, time
from sim.executors import ProcessExecutor

def dies_mid_send(_):
    """Writes the start of a result (a length and a few of its bytes) on the pool's result pipe,
    as a worker killed while sending does, then has Ctrl-C pressed in the parent."""
    frame = sys._getframe(1)
    while "result_queue" not in frame.f_locals:
        frame = frame.f_back
    os.write(frame.f_locals["result_queue"]._writer.fileno(), struct.pack("!i", 1 << 20) + b"partial")
    os.kill(os.getppid(), signal.SIGINT)
    time.sleep(60)

try:
    for _ in ProcessExecutor(1).map_unordered(dies_mid_send, [(0,)]):
        pass
except KeyboardInterrupt:
    print("stopped")
'''


def test_ctrl_c_while_a_worker_sends_its_result_lets_the_process_exit(tmp_path, root):
    """The race behind a CI run that hung after Ctrl-C: a worker killed in the middle of sending
    its result (a replication's result is ~400 kB, many pipe buffers) left the pool's manager
    thread waiting for the rest, and the interpreter waits for that thread at exit."""
    (tmp_path / "dies.py").write_text(DIES_MID_SEND)
    finished = subprocess.run([sys.executable, "dies.py"], cwd=tmp_path, capture_output=True, text=True, timeout=30,
                              env={**os.environ, "PYTHONPATH": str(root)})
    assert (finished.returncode, finished.stdout, finished.stderr) == (0, "stopped\n", "")
