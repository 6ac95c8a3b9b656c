"""Sweeps: the value syntax, common random numbers, executors (serial, local processes, a real Dask
cluster), failing points, resume after an interruption, the output files and the command line."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

import sim.jobs
from sim import ScenarioError
from sim.executors import ProcessExecutor, SerialExecutor
from sim.axes import SweepError, axes_from, parse_axis, parse_values, parse_vary
from sim.runner import ReplicationFailure
from sim.sweep import run_sweep

# M/M/c with λ = 8/s and a mean service of 1 s: 8 workers or fewer is unstable.
MMC = """\
name: mmc-sweep
seed: 5
duration: 260s
warmup: 20s
replications: 3
producers:
  - name: web
    arrivals: {process: poisson, rate: 8/s}
    sends_to: q
brokers:
  - name: q
    kind: fifo
workers:
  - name: pool
    consumes: q
    count: 10
    service_time: {dist: exponential, mean: 1s}
slo: {latency_mean: 1.4s}
"""

VARY = ["workers.pool.count=9..11"]


@pytest.fixture(scope="module")
def scenario(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("sweep") / "mmc.yaml"
    path.write_text(MMC)
    return path


@pytest.fixture(scope="module")
def serial(scenario):
    """The reference: the sweep run point after point in this process."""
    return run_sweep(scenario, VARY, executor=SerialExecutor())


def comparable(table: pd.DataFrame) -> pd.DataFrame:
    """Everything but the wall-clock time."""
    return table.drop(columns=["wall_s"])


# --- values -----------------------------------------------------------------------------------


@pytest.mark.parametrize("text, labels, numbers", [
    ("8..32:4", ["8", "12", "16", "20", "24", "28", "32"], [8, 12, 16, 20, 24, 28, 32]),
    ("8..10", ["8", "9", "10"], [8, 9, 10]),
    ("8..31:4", ["8", "12", "16", "20", "24", "28"], [8, 12, 16, 20, 24, 28]),
    ("100/s,200/s,400/s", ["100/s", "200/s", "400/s"], [100.0, 200.0, 400.0]),
    ("6000/min..12000/min:3000/min", ["6000/min", "9000/min", "12000/min"], [100.0, 150.0, 200.0]),
    ("100/s..1600/s:*2", ["100/s", "200/s", "400/s", "800/s", "1600/s"], [100.0, 200.0, 400.0, 800.0, 1600.0]),
    ("1s..3s:500ms", ["1s", "1.5s", "2s", "2.5s", "3s"], [1.0, 1.5, 2.0, 2.5, 3.0]),
    ("0.1..0.3:0.1", ["0.1", "0.2", "0.3"], [0.1, 0.2, 0.3]),
    ("250ms", ["250ms"], [0.25]),
    ("8, 16 ,32", ["8", "16", "32"], [8, 16, 32]),
    ("4,8..12:4", ["4", "8", "12"], [4, 8, 12]),
    ("fifo,other", ["fifo", "other"], ["fifo", "other"]),
])
def test_values_parse_with_units(text, labels, numbers):
    values = parse_values(text)
    assert [v.text for v in values] == labels
    assert [v.number for v in values] == pytest.approx(numbers)
    assert all(type(v.number) is type(n) for v, n in zip(values, numbers))


def test_values_from_yaml_lists_and_flow_mappings():
    assert [v.text for v in parse_values([8, "10/s", 0.5])] == ["8", "10/s", "0.5"]
    values = parse_values("[{dist: exponential, mean: 1s}, {dist: lognormal, mean: 1s, cv: 2}]")
    assert [json.loads(v.text)["dist"] for v in values] == ["exponential", "lognormal"]


@pytest.mark.parametrize("text, message", [
    ("8..", "bad range '8..'"),
    ("..8", "bad range '..8'"),
    ("8..32:", "nothing after ':'"),
    ("8..32:0", "step must be above 0"),
    ("32..8", "END is below START"),
    ("1..2.5", "needs a step"),
    ("10/s..2s:1", "mixes a rate and a duration"),
    ("a..b", "START 'a' is not a number"),
    ("8,,9", "empty item"),
    ("10x", "unknown time unit 'x'"),
    ("1..100000:0.001", "at most 10,000"),
    ("1..10:*1", "factor must be above 1"),
    ("", "no values"),
])
def test_bad_values_say_what_is_wrong(text, message):
    with pytest.raises(SweepError, match=message.replace("(", r"\(").replace(".", r"\.").replace("*", r"\*")):
        parse_values(text)


def test_vary_needs_path_equals_values_and_no_repeats():
    assert parse_vary("workers.pool.count=1,2").path == "workers.pool.count"
    with pytest.raises(SweepError, match="expected PATH=VALUES"):
        parse_vary("workers.pool.count")
    with pytest.raises(SweepError, match="not a path"):
        parse_vary("workers pool=1,2")
    with pytest.raises(SweepError, match="given twice"):
        parse_axis("workers.pool.count", "8,8")
    with pytest.raises(SweepError, match="varied twice"):
        axes_from(["a.b=1", "a.b=2"])


# --- running ------------------------------------------------------------------------------------


def test_one_row_per_point_with_estimates_counts_and_checks(serial):
    table = serial.table
    assert list(table["workers.pool.count"]) == [9, 10, 11]
    for column in ("setting", "system.latency_s.p99", "system.latency_s.p99.ci95_low", "system.latency_s.p99.ci95_high",
                   "counts.produced", "counts.processed", "littles_law_ok", "conservation_ok", "slo.latency_mean", "slo_met", "ok", "error"):
        assert column in table.columns, column
    assert table["ok"].all() and table["error"].isna().all()
    assert (table["system.latency_s.p99.ci95_low"] < table["system.latency_s.p99"]).all()
    assert (table["replications_done"] == 3).all()
    # More workers, less waiting: the mean wait falls with the count.
    assert table["brokers.q.wait_s.mean"].is_monotonic_decreasing


def test_common_random_numbers_every_point_sees_the_same_arrivals(serial):
    """The arrivals are drawn from the producer's own stream, the same at every point."""
    assert serial.table["counts.produced"].nunique() == 1
    first, last = serial.results[0], serial.results[2]
    assert [r.counts["produced"] for r in first.results] == [r.counts["produced"] for r in last.results]


def test_same_results_on_two_local_processes(scenario, serial):
    with ProcessExecutor(2) as executor:
        parallel = run_sweep(scenario, VARY, executor=executor)
    pd.testing.assert_frame_equal(comparable(parallel.table), comparable(serial.table))


@pytest.fixture(scope="module")
def dask_cluster():
    distributed = pytest.importorskip("distributed")
    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None)
    yield cluster
    cluster.close()



def test_same_results_on_a_dask_cluster_through_the_command_line(scenario, serial, dask_cluster, call, tmp_path):
    code, stdout, stderr = call("sweep", scenario, "--vary", VARY[0], "--cluster", dask_cluster.scheduler_address, "--json", "--out", tmp_path)
    assert code == 0, stderr
    summary = json.loads(stdout)
    assert "Dask cluster" in summary["executor"]
    assert summary["replications_run"] == 9 and summary["points_done"] == 3
    expected = serial.summary()["points"]
    for got, want in zip(summary["points"], expected):
        got.pop("wall_s"), want.pop("wall_s")
        assert got == want
    on_disk = pd.read_csv(tmp_path / "sweep.csv").set_index("point")
    pd.testing.assert_series_equal(on_disk["system.latency_s.p99"], serial.table["system.latency_s.p99"], check_exact=False, rtol=1e-12)


def test_an_unstable_point_records_its_error_and_the_sweep_goes_on(scenario):
    result = run_sweep(scenario, ["workers.pool.count=7..10"], executor=SerialExecutor(), replications=2)
    table = result.table
    assert list(table["workers.pool.count"]) == [7, 8, 9, 10]
    unstable = table[table["workers.pool.count"] <= 8]
    assert unstable["error"].str.contains("unstable: offered load 8/s ≥ capacity").all()
    assert (unstable["replications_done"] == 0).all() and unstable["system.latency_s.mean"].isna().all()
    stable = table[table["workers.pool.count"] > 8]
    assert stable["error"].isna().all() and stable["ok"].all()
    assert result.replications_run == 4
    assert result.summary()["points_invalid"] == 2


def test_a_failing_replication_is_recorded_and_not_kept_for_resume(scenario, monkeypatch, tmp_path):
    real = sim.jobs.safe_replication

    def flaky(spec, replication, seed, progress=None):
        if spec.workers[0].count == 10 and replication == 1:
            return ReplicationFailure(replication, "RuntimeError: boom", "")
        return real(spec, replication, seed, progress)

    monkeypatch.setattr(sim.jobs, "safe_replication", flaky)
    result = run_sweep(scenario, VARY, executor=SerialExecutor(), out_dir=tmp_path)
    row = result.table.loc[1]
    assert row["error"] == "replication 1 failed: RuntimeError: boom" and not row["ok"] and row["replications_done"] == 2
    assert row["replications_failed"] == 1 and result.failed_points == [1] and result.summary()["points_failed"] == 1
    assert result.table.loc[[0, 2], "ok"].all()
    kept = [json.loads(line)["setting"] for line in (tmp_path / "points.jsonl").read_text().splitlines()]
    assert kept == ["workers.pool.count=9", "workers.pool.count=11"]
    monkeypatch.setattr(sim.jobs, "safe_replication", real)
    again = run_sweep(scenario, VARY, executor=SerialExecutor(), out_dir=tmp_path)
    assert again.replications_run == 3 and sorted(again.resumed) == [0, 2] and again.table["ok"].all()


def test_an_interrupted_sweep_resumes_without_rerunning_finished_points(scenario, serial, tmp_path):
    finished = []

    def interrupt_after_two(row):
        finished.append(row["point"])
        if len(finished) == 2:
            raise KeyboardInterrupt

    first = run_sweep(scenario, VARY, executor=SerialExecutor(), out_dir=tmp_path, on_point=interrupt_after_two)
    assert first.interrupted and not first.complete
    assert len((tmp_path / "points.jsonl").read_text().splitlines()) == 2
    assert (tmp_path / "sweep.csv").exists()  # what finished is written

    counted = []
    second = run_sweep(scenario, VARY, executor=SerialExecutor(), out_dir=tmp_path, on_replication=lambda done, total: counted.append(done))
    assert second.complete and sorted(second.resumed) == [0, 1]
    assert second.replications_run == 3 and len(counted) == 3  # only the last point ran
    pd.testing.assert_frame_equal(comparable(second.table), comparable(serial.table))

    third = run_sweep(scenario, VARY, executor=SerialExecutor(), out_dir=tmp_path)
    assert third.replications_run == 0 and len(third.resumed) == 3
    other_seed = run_sweep(scenario, VARY[:1], executor=SerialExecutor(), out_dir=tmp_path, seed=6, replications=2)
    assert other_seed.resumed == [] and other_seed.replications_run == 6  # a different seed is a different point
    fresh = run_sweep(scenario, VARY, executor=SerialExecutor(), out_dir=tmp_path, resume=False, replications=2)
    assert fresh.resumed == [] and fresh.replications_run == 6


def test_the_output_folder_has_tables_and_plots(scenario, serial, tmp_path):
    written = serial.save(tmp_path)
    names = {p.name for p in written}
    assert {"sweep.csv", "sweep.parquet", "sweep.json", "system.latency_s.p99.png", "hockey_stick.png"} <= names
    parquet = pd.read_parquet(tmp_path / "sweep.parquet").set_index("point")
    pd.testing.assert_series_equal(parquet["system.latency_s.mean"], serial.table["system.latency_s.mean"])
    summary = json.loads((tmp_path / "sweep.json").read_text())
    point = summary["points"][1]
    assert point["values"] == {"workers.pool.count": 10}
    assert set(point["system"]["latency_s"]["p99"]) == {"mean", "ci95"}
    assert point["slo"] == {"latency_mean": serial.table.loc[1, "slo.latency_mean"]}
    for name in ("system.latency_s.p99.png", "hockey_stick.png"):
        assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_theory_overlay_is_exact_erlang_c_for_this_system(serial):
    curve = serial.dense_theory("workers.pool.count", {})
    assert [value for value, _load, _model in curve] == [9, 10, 11]
    assert {model.model for _v, _l, model in curve} == {"M/M/c (Erlang C)"}
    from sim.analytic import mmc

    assert curve[1][2].values["system.latency_s.mean"] == (pytest.approx(mmc(8, 1, 10).sojourn_s), True)


def test_a_sweep_section_in_the_file(tmp_path):
    path = tmp_path / "with-sweep.yaml"
    path.write_text(MMC + "sweep:\n  vary:\n    workers.pool.count: [9, 11]\n    producers.web.arrivals.rate: 6/s,8/s\n  metric: system.latency_s.mean\n")
    result = run_sweep(path, executor=SerialExecutor(), replications=2, seed=1)
    assert [a.path for a in result.axes] == ["workers.pool.count", "producers.web.arrivals.rate"]
    assert result.table["setting"].tolist() == [
        "workers.pool.count=9, producers.web.arrivals.rate=6/s", "workers.pool.count=9, producers.web.arrivals.rate=8/s",
        "workers.pool.count=11, producers.web.arrivals.rate=6/s", "workers.pool.count=11, producers.web.arrivals.rate=8/s",
    ]
    assert result.metric == "system.latency_s.mean"
    assert result.table["producers.web.arrivals.rate"].tolist() == [6.0, 8.0, 6.0, 8.0]


def test_a_bad_sweep_section_is_reported_with_its_line(tmp_path):
    path = tmp_path / "bad-sweep.yaml"
    path.write_text(MMC + "sweep:\n  vary:\n    workers.pool.count: 8..\n")
    with pytest.raises(ScenarioError) as info:
        run_sweep(path, executor=SerialExecutor())
    assert "bad-sweep.yaml:20: sweep.vary: workers.pool.count: bad range '8..'" in str(info.value)


def test_a_sweep_with_no_valid_point_is_an_input_error(scenario):
    with pytest.raises(ScenarioError, match="no point of the sweep is a valid scenario"):
        run_sweep(scenario, ["workers.pool.cont=9,10"], executor=SerialExecutor())
    with pytest.raises(ScenarioError, match="no item named 'poool'"):
        run_sweep(scenario, ["workers.poool.count=9,10"], executor=SerialExecutor())


# --- the command line ---------------------------------------------------------------------------


def test_cli_sweep_table(scenario, call):
    code, stdout, stderr = call("sweep", scenario, "--vary", "workers.pool.count=8..10", "-r", "2", "-j", "1")
    assert code == 0, stderr
    assert "unstable: 8/s ≥ capacity 8/s" in stdout
    lines = [line for line in stdout.splitlines() if line.strip().startswith(("9 ", "10 "))]
    assert len(lines) == 2 and all("ok" in line for line in lines)
    assert "3 of 3 points done (1 invalid, 0 failed); 4 replications run on this process" in stdout


@pytest.mark.parametrize("args, message", [
    (["--vary", "workers.pool.count=8.."], "bad range '8..'"),
    (["--vary", "workers.pool.count"], "expected PATH=VALUES"),
    (["--vary", "workers.pool.count=1", "--metric", "latency"], "unknown metric 'latency'"),
    ([], "nothing to sweep"),
])
def test_cli_bad_sweep_input_exits_2_naming_the_option(scenario, call, args, message):
    code, stdout, stderr = call("sweep", scenario, *args)
    assert code == 2
    assert message in stderr
    assert "Traceback" not in stderr


def always_failing(scenario, replication, seed, progress=None):
    return ReplicationFailure(replication, "RuntimeError: boom", "")


def test_a_sweep_whose_replications_all_fail_says_so_and_exits_1(scenario, call, monkeypatch):
    monkeypatch.setattr(sim.jobs, "safe_replication", always_failing)
    result = run_sweep(scenario, ["workers.pool.count=9,10"], replications=2, executor=SerialExecutor())
    assert result.failed_points == [0, 1] and result.summary()["points_failed"] == 2
    assert all(row["replications_done"] == 0 and row["replications_failed"] == 2 for row in result.rows.values())
    code, stdout, stderr = call("sweep", scenario, "--vary", "workers.pool.count=9,10", "-r", "2", "-j", "1")
    assert code == 1
    assert "2 of 2 points done (0 invalid, 2 failed)" in stdout
    assert "2 of 2 points failed (replications raised); the first, workers.pool.count=9: replication 0 failed: RuntimeError: boom" in stderr


def test_cli_unreachable_cluster_exits_2(scenario, call, monkeypatch):
    monkeypatch.setattr("sim.executors.CONNECT_TIMEOUT_S", 1.0)
    code, _, stderr = call("sweep", scenario, "--vary", "workers.pool.count=9", "--cluster", "tcp://127.0.0.1:9")
    assert code == 2 and "cannot connect to the Dask scheduler" in stderr and "--cluster" in stderr
