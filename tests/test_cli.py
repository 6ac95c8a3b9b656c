"""The ``asyncsim`` command line.

The runs and the main error path go through the installed console script in a subprocess (the
real exit code, stdout and stderr). Each such process pays a few seconds of imports (numpy,
scipy, pandas, pydantic), so they are launched at once, concurrently, and the tests read their
results; the other commands call the same entry point, ``sim.cli.main``, in this process.
"""

from __future__ import annotations

import csv
import json
import math
import re
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

import sim.jobs
from sim.executors import ExecutorError, SerialExecutor
from sim.runner import ReplicationFailure

GOOD = """\
name: shop
seed: 3
duration: 10m
warmup: 1m
replications: 4
producers:
  - name: web
    arrivals: {process: poisson, rate: 30/s}
    sends_to: jobs
brokers:
  - name: jobs
    kind: fifo
workers:
  - name: pool
    consumes: jobs
    count: 8
    service_time: {dist: lognormal, mean: 200ms, cv: 0.8}
"""

BAD = GOOD.replace("    count: 8\n", "    count: 0\n    servce_time: 1s\n")

SCHEDULED = GOOD.replace(
    "{process: poisson, rate: 30/s}",
    "{process: schedule, repeat: true, steps: [{duration: 1h, rate: 10/s}, {duration: 1h, rate: 30/s}]}",
)

RUN = ["-r", "2", "--set", "duration=5m", "--set", "warmup=30s"]
LATENCIES = ("mean", "p50", "p95", "p99", "p999")
COUNTS = {"produced", "processed", "rejected", "lost", "duplicates", "dead_lettered", "in_flight"}
PLOTS = ("latency.png", "queue_length.png", "throughput.png", "utilization.png")


def asyncsim_executable() -> str:
    """The console script installed beside this interpreter (``python -m sim.cli`` has no entry point)."""
    beside = Path(sys.executable).with_name("asyncsim")
    found = str(beside) if beside.exists() else shutil.which("asyncsim")
    assert found, "the asyncsim console script is not installed (pip install -e '.[test]')"
    return found


@dataclass
class Outcome:
    args: list
    returncode: int
    stdout: str
    stderr: str


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("cli")
    (folder / "good.yaml").write_text(GOOD)
    (folder / "bad.yaml").write_text(BAD)
    (folder / "scheduled.yaml").write_text(SCHEDULED)
    return folder


@pytest.fixture(scope="module")
def cli(folder) -> dict[str, Outcome]:
    exe = asyncsim_executable()
    good, bad = str(folder / "good.yaml"), str(folder / "bad.yaml")
    commands = {
        "run_json": ["run", good, "--json", *RUN, "--seed", "7"],
        "run_table_out": ["run", good, *RUN, "--seed", "7", "--out", str(folder / "out")],
        "run_other_seed": ["run", good, "--json", *RUN, "--seed", "8"],
        "check_good": ["check", good],
        "check_bad": ["check", bad],
    }

    def invoke(args):
        done = subprocess.run([exe, *args], capture_output=True, text=True, timeout=300, cwd=folder)
        return Outcome(args, done.returncode, done.stdout, done.stderr)

    with ThreadPoolExecutor(max_workers=len(commands)) as pool:
        futures = {name: pool.submit(invoke, args) for name, args in commands.items()}
        return {name: future.result() for name, future in futures.items()}


@pytest.fixture
def call(folder, monkeypatch, call):
    """conftest's in-process ``call``, from the scenarios' folder, as an :class:`Outcome`."""
    monkeypatch.chdir(folder)

    def in_folder(*args: str) -> Outcome:
        return Outcome(list(args), *call(*args))

    return in_folder


def summary_of(outcome: Outcome) -> dict:
    assert outcome.returncode == 0, outcome.stderr
    return json.loads(outcome.stdout)


def error_text(stderr: str) -> str:
    """Click's boxed error message as one line: the box drawn around it and its wrapping removed."""
    return " ".join(re.sub("[│╭╮╰╯─]", " ", stderr).split())


@pytest.fixture
def replications_run(monkeypatch) -> list:
    """The replications the commands run from here on, each failing with 'RuntimeError: boom'."""
    ran = []

    def fails(scenario, replication, seed, progress=None):
        ran.append(replication)
        return ReplicationFailure(replication, "RuntimeError: boom", "")

    monkeypatch.setattr(sim.jobs, "safe_replication", fails)
    return ran


def assert_estimate(estimate: dict) -> None:
    assert set(estimate) == {"mean", "ci95"}
    low, high = estimate["ci95"]
    assert math.isfinite(estimate["mean"])
    assert low <= estimate["mean"] <= high


# --- check --------------------------------------------------------------------------------------


def test_check_accepts_a_good_file_and_shows_the_offered_load(cli):
    outcome = cli["check_good"]
    assert outcome.returncode == 0, outcome.stderr
    assert "is a valid scenario 'shop'" in outcome.stdout
    # 30/s offered to 8 workers of mean 200 ms: capacity 40/s, load 0.75, unbounded
    assert re.search(r"^jobs\s+30/s\s+40/s\s+8\s+0\.75\s+no\s*$", outcome.stdout, re.M), outcome.stdout
    assert outcome.stderr == ""


def test_text_from_the_user_is_printed_as_written_not_read_as_console_markup(call, tmp_path):
    folder = tmp_path / "[" / "x] plans"  # a path with [/x] in it
    folder.mkdir(parents=True)
    path = folder / "q.yaml"
    path.write_text(GOOD.replace("name: shop", "name: 'a [/b] c [red]'"))
    checked = call("check", str(path))
    assert checked.returncode == 0, checked.stderr
    assert f"{path} is a valid scenario 'a [/b] c [red]'" in checked.stdout
    ran = call("run", str(path), *RUN)
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.startswith("a [/b] c [red]: 2 replication(s)")
    refused = call("check", str(path), "--set", "workers.pool.count=0")
    assert refused.returncode == 2 and f"error in {path}:" in refused.stderr


def test_check_shows_the_long_run_and_peak_rates_of_a_schedule(call):
    outcome = call("check", "scheduled.yaml")
    assert outcome.returncode == 0, outcome.stderr
    assert "producer web: long-run rate 20/s, peak 30/s" in outcome.stdout
    assert re.search(r"^jobs\s+20/s\s+40/s\s+8\s+0\.5\s+no\s*$", outcome.stdout, re.M), outcome.stdout


def test_a_bad_file_exits_2_with_every_problem_located_and_no_traceback(cli, folder):
    assert_bad_file_reported(cli["check_bad"], folder / "bad.yaml")


def test_run_refuses_a_bad_file_the_same_way(call):
    assert_bad_file_reported(call("run", "bad.yaml", "--json"), Path("bad.yaml"))


def assert_bad_file_reported(outcome: Outcome, path: Path) -> None:
    assert outcome.returncode == 2
    assert "Traceback" not in outcome.stderr
    assert outcome.stdout == ""
    lines = outcome.stderr.splitlines()
    assert lines[0] == f"error in {path}:"
    count_line = BAD.splitlines().index("    count: 0") + 1
    typo_line = BAD.splitlines().index("    servce_time: 1s") + 1
    assert f"  {path}:{count_line}: workers.pool.count: must be ≥ 1, got 0" in lines
    assert any(line.startswith(f"  {path}:{typo_line}: workers.pool.servce_time: unknown key 'servce_time'; did you mean 'service_time'?") for line in lines)
    assert len(lines) == 3


def test_a_missing_file_exits_2(call):
    outcome = call("check", "missing.yaml")
    assert outcome.returncode == 2
    assert "missing.yaml: cannot read the file: No such file or directory" in outcome.stderr
    assert "Traceback" not in outcome.stderr


def test_an_unstable_override_exits_2_with_the_figures(call):
    outcome = call("check", "good.yaml", "--set", "workers.pool.count=2")
    assert outcome.returncode == 2
    assert "brokers.jobs: unstable: offered load 30/s ≥ capacity 10/s" in outcome.stderr
    assert "Traceback" not in outcome.stderr


def test_a_wrong_set_path_exits_2_naming_the_items_there_are(call):
    outcome = call("check", "good.yaml", "--set", "workers.nosuch.count=1")
    assert outcome.returncode == 2
    assert "good.yaml (command line: workers.nosuch.count=1): no item named 'nosuch' in workers (have: pool)" in outcome.stderr


def test_an_invalid_value_for_a_key_added_by_set_exits_2(call):
    outcome = call("check", "good.yaml", "--set", "brokers.jobs.capacity=-1")
    assert outcome.returncode == 2, outcome.stderr
    assert "good.yaml (command line: brokers.jobs.capacity): brokers.jobs.capacity: must be ≥ 0" in outcome.stderr


@pytest.mark.parametrize("args", [["run", "good.yaml", "--replications", "0"], ["check", "good.yaml", "--bogus"]], ids=["bad-value", "unknown-option"])
def test_a_usage_error_is_a_usage_message_and_exit_code_2(call, args):
    outcome = call(*args)
    assert outcome.returncode == 2, outcome.stderr
    assert "internal error" not in outcome.stderr
    assert "Usage: " in outcome.stderr and "[OPTIONS]" in outcome.stderr  # click's usage message
    assert "Error" in outcome.stderr
    assert ("--replications" if "--replications" in args else "--bogus") in outcome.stderr


def test_version_prints_the_installed_version(call):
    outcome = call("--version")
    assert outcome.returncode == 0, outcome.stderr
    assert outcome.stdout == "asyncsim 0.1.0\n"


@pytest.mark.parametrize("verb, out", [
    (["run", "good.yaml"], "file.txt/out"),
    (["run", "good.yaml"], "file.txt"),
    (["sweep", "good.yaml", "--vary", "workers.pool.count=8,9"], "file.txt/out"),
    (["report", "good.yaml"], "file.txt/reports"),
    (["report", "good.yaml"], "file.txt"),
], ids=["run-under-a-file", "run-a-file", "sweep-under-a-file", "report-under-a-file", "report-a-file"])
def test_an_out_that_cannot_be_written_is_refused_before_running(call, replications_run, tmp_path, verb, out):
    (tmp_path / "file.txt").write_text("not a folder")
    (tmp_path / "folder").mkdir()
    path = tmp_path / out
    outcome = call(*verb, "--out", str(path), "-r", "2", "-j", "1")
    assert outcome.returncode == 2, outcome.stderr
    assert f"error: --out {path}: cannot write there: " in outcome.stderr
    assert replications_run == [] and "Traceback" not in outcome.stderr
    assert (tmp_path / "file.txt").read_text() == "not a folder"


# --- schema -------------------------------------------------------------------------------------


def test_schema_prints_the_json_schema(call):
    outcome = call("schema")
    assert outcome.returncode == 0, outcome.stderr
    schema = json.loads(outcome.stdout)
    assert schema["type"] == "object"
    assert schema["properties"]["producers"]["type"] == "array"
    assert set(schema["required"]) >= {"name", "duration"} and "producers" not in schema["required"]
    assert "servce_time" not in outcome.stdout
    duration = schema["properties"]["duration"]
    assert {"type": "number"} in duration["anyOf"]
    pattern = next(a["pattern"] for a in duration["anyOf"] if a.get("type") == "string")
    assert re.match(pattern, "80ms") and re.match(pattern, "10min") and not re.match(pattern, "5 parsecs")


# --- run ----------------------------------------------------------------------------------------


def test_run_json_prints_the_summary_contract(cli):
    summary = summary_of(cli["run_json"])
    assert summary["scenario"] == "shop"
    assert summary["seed"] == 7
    assert summary["replications"] == 2
    assert summary["duration_s"] == 300.0 and summary["warmup_s"] == 30.0

    latency = summary["system"]["latency_s"]
    for key in LATENCIES:
        assert_estimate(latency[key])
    means = [latency[k]["mean"] for k in ("p50", "p95", "p99", "p999")]
    assert means == sorted(means)
    # service 200 ms plus a short wait at 75% utilisation of 8 workers
    assert 0.2 < latency["mean"]["mean"] < 0.3

    assert_estimate(summary["system"]["throughput_per_s"])
    counts = summary["counts"]
    assert set(counts) == COUNTS
    assert counts["produced"] == counts["processed"] + counts["rejected"] + counts["lost"] + counts["dead_lettered"] + counts["in_flight"]
    assert counts["rejected"] == counts["lost"] == counts["dead_lettered"] == counts["duplicates"] == 0
    # Poisson arrivals at 30/s over two windows of 270 s: a Poisson count of mean 16,200
    assert abs(counts["produced"] - 16_200) < 4 * math.sqrt(16_200)
    assert summary["system"]["throughput_per_s"]["mean"] == pytest.approx(counts["processed"] / (2 * 270), rel=0.01)

    broker = summary["brokers"]["jobs"]
    assert set(broker["wait_s"]) >= set(LATENCIES)
    for key in LATENCIES:
        assert set(broker["wait_s"][key]) == {"mean", "ci95"}
    assert_estimate(broker["length_mean"])
    utilization = summary["workers"]["pool"]["utilization"]
    assert_estimate(utilization)
    assert abs(utilization["mean"] - 0.75) < 0.05

    checks = summary["littles_law"]
    assert {c["boundary"] for c in checks} == {"system", "jobs", "pool"}
    for c in checks:
        assert set(c) >= {"boundary", "L", "lambda_per_s", "W_s", "rel_error", "ok"}
        assert c["ok"] is True
        # means over replications: L = λW holds in each, so about (not exactly) for the means
        assert c["L"] == pytest.approx(c["lambda_per_s"] * c["W_s"], rel=0.01)
    system = next(c for c in checks if c["boundary"] == "system")
    assert system["lambda_per_s"] == pytest.approx(30, rel=0.05)


def test_the_same_seed_reproduces_the_numbers_exactly(cli, folder):
    printed = summary_of(cli["run_json"])
    saved = json.loads((folder / "out" / "summary.json").read_text())
    assert saved == printed


def test_another_seed_changes_the_numbers(cli):
    one, other = summary_of(cli["run_json"]), summary_of(cli["run_other_seed"])
    assert other["seed"] == 8
    assert one["counts"]["produced"] != other["counts"]["produced"]
    assert one["system"]["latency_s"]["mean"]["mean"] != other["system"]["latency_s"]["mean"]["mean"]


def test_run_prints_the_table_with_latencies_and_littles_law(cli):
    outcome = cli["run_table_out"]
    assert outcome.returncode == 0, outcome.stderr
    text = outcome.stdout
    assert "shop: 2 replication(s) × 5min (warm-up 30s excluded), seed 7" in text
    for label in ("latency mean", "latency p50", "latency p95", "latency p99", "latency p99.9"):
        assert re.search(rf"^system\s+{re.escape(label)}\s+\d[\d.]* m?s\s+\[", text, re.M), label
    assert re.search(r"^system\s+throughput\s+\d[\d.]*/s", text, re.M)
    assert re.search(r"^broker jobs\s+wait mean", text, re.M)
    assert re.search(r"^workers pool\s+utilisation\s+\d[\d.]*%", text, re.M)
    assert "Little's law" in text
    for boundary in ("system", "broker jobs", "workers pool"):
        assert re.search(rf"^{boundary}\s+\S+\s+\S+\s+\S+\s+\S+\s+\S+\s+ok\s*$", text, re.M), boundary
    assert "conservation: produced = processed + lost + rejected + dead-lettered + in flight" in text
    assert "FAIL" not in text


def test_run_out_writes_the_tables_and_plots(cli, folder):
    assert cli["run_table_out"].returncode == 0
    out = folder / "out"
    assert f"wrote 9 files to {out}" in cli["run_table_out"].stdout

    summary = json.loads((out / "summary.json").read_text())
    assert summary["replications"] == 2

    def rows(name):
        with open(out / name, newline="") as handle:
            return list(csv.DictReader(handle))

    replications = rows("replications.csv")
    assert len(replications) == 2
    assert "system.latency_s.mean" in replications[0]
    # the estimate pools the replications' messages: their means weighted by the messages processed
    processed = [float(r["counts.processed"]) for r in replications]
    mean_latency = sum(float(r["system.latency_s.mean"]) * n for r, n in zip(replications, processed)) / sum(processed)
    assert mean_latency == pytest.approx(summary["system"]["latency_s"]["mean"]["mean"], rel=1e-9)

    littles = rows("littles_law.csv")
    assert len(littles) == 2 * 3
    assert {r["boundary"] for r in littles} == {"system", "jobs", "pool"}
    for r in littles:  # each replication's check: rel_error is |L - λW| / max(L, λW), within tolerance
        L, lam_w = float(r["L"]), float(r["lambda_per_s"]) * float(r["W_s"])
        assert float(r["rel_error"]) == pytest.approx(abs(L - lam_w) / max(L, lam_w), rel=1e-9, abs=1e-15)
        assert r["ok"] == "True" and float(r["rel_error"]) <= float(r["tolerance"])
    assert len(rows("timeseries.csv")) > 10
    assert len(rows("latency_histogram.csv")) > 0

    for name in PLOTS:
        data = (out / name).read_bytes()
        assert data.startswith(b"\x89PNG\r\n\x1a\n"), name
        assert len(data) > 5_000, name


def test_run_where_every_replication_fails_prints_each_failure_and_exits_1(call, replications_run):
    outcome = call("run", "good.yaml", "-r", "2", "-j", "1")
    assert outcome.returncode == 1, outcome.stderr
    assert "internal error" not in outcome.stderr
    assert outcome.stdout.splitlines()[1:] == ["no replication finished: 2 of 2 failed",
                                               "replication 0 failed: RuntimeError: boom", "replication 1 failed: RuntimeError: boom"]
    assert outcome.stderr.splitlines() == ["replication 0 failed: RuntimeError: boom", "replication 1 failed: RuntimeError: boom"]


def test_run_json_where_every_replication_fails_is_valid_json_with_the_failures(call, replications_run):
    outcome = call("run", "good.yaml", "-r", "2", "-j", "1", "--json")
    assert outcome.returncode == 1, outcome.stderr
    summary = json.loads(outcome.stdout)
    assert summary["ok"] is False and summary["replications"] == 0 and "system" not in summary
    assert summary["failures"] == [{"replication": 0, "error": "RuntimeError: boom"}, {"replication": 1, "error": "RuntimeError: boom"}]
    assert summary["warnings"][0] == "no replication finished: 2 of 2 failed"


def test_ctrl_c_before_the_first_replication_finishes_exits_130(call, monkeypatch):
    def interrupted(scenario, replication, seed, progress=None):
        raise KeyboardInterrupt

    monkeypatch.setattr(sim.jobs, "safe_replication", interrupted)
    outcome = call("run", "good.yaml", "-r", "2", "-j", "1")
    assert outcome.returncode == 130, outcome.stderr
    assert outcome.stderr == "interrupted: no replication finished\n"
    assert outcome.stdout.splitlines()[1:] == ["no replication finished: interrupted"]


def test_sweep_refuses_an_unknown_metric_before_running_with_the_closest_names(call, replications_run):
    outcome = call("sweep", "good.yaml", "--vary", "workers.pool.count=8,9", "--metric", "system.latency_s.p98", "-j", "1")
    assert outcome.returncode == 2, outcome.stderr
    assert ("Invalid value for '--metric': unknown metric 'system.latency_s.p98'; did you mean 'system.latency_s.p99', "
            "'system.latency_s.p95' or 'system.latency_s.p999'?") in error_text(outcome.stderr)
    assert replications_run == []


VERBS_THAT_RUN = [
    ["run", "good.yaml"],
    ["sweep", "good.yaml", "--vary", "workers.pool.count=8,9"],
    ["capacity", "good.yaml", "--slo", "latency_mean=1s"],
    ["report", "good.yaml"],
    ["validate"],
]
"""Every command that runs replications, with what it needs besides the options under test."""


@pytest.mark.parametrize("verb", VERBS_THAT_RUN, ids=lambda verb: verb[0])
def test_every_verb_that_runs_replications_takes_jobs_and_cluster(call, monkeypatch, verb):
    monkeypatch.setattr("sim.executors.CONNECT_TIMEOUT_S", 1.0)
    outcome = call(*verb, "--jobs", "2", "--cluster", "tcp://127.0.0.1:9")
    assert outcome.returncode == 2, outcome.stderr
    assert "Invalid value for '--cluster': cannot connect to the Dask scheduler" in outcome.stderr


@pytest.mark.parametrize("verb", VERBS_THAT_RUN, ids=lambda verb: verb[0])
def test_an_executor_that_fails_midway_is_one_line_and_exit_1_and_is_closed(call, monkeypatch, tmp_path, verb):
    closed = []

    def die(self, fn, tasks):
        raise ExecutorError("worker process 1234 died")
        yield

    monkeypatch.setattr(SerialExecutor, "map_unordered", die)
    monkeypatch.setattr(SerialExecutor, "close", lambda self: closed.append(self))
    extra = ["--out", str(tmp_path)] if verb[0] == "report" else []
    outcome = call(*verb, *extra, "--jobs", "1", "-r", "2")
    assert outcome.returncode == 1, outcome.stderr
    assert "error: worker process 1234 died" in outcome.stderr and "Traceback" not in outcome.stderr
    assert len(closed) == 1


@pytest.mark.slow
def test_run_on_a_local_dask_cluster_prints_the_same_summary(call):
    args = ["run", "good.yaml", "--json", "-r", "2", "--set", "duration=2m", "--set", "warmup=10s"]
    assert summary_of(call(*args, "--cluster", "local:2")) == summary_of(call(*args, "-j", "1"))
