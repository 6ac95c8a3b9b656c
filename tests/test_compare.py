"""Paired comparisons on common random numbers (sim/compare.py, ``asyncsim compare``).

A design compared with itself differs by exactly zero in every replication; two designs that
share their parts' streams get a paired interval much narrower than two independent runs would
give; the streams each design draws from say how far the common random numbers reach.
"""

import json
import math
from pathlib import Path

import pytest

from sim.compare import compare, load_pair, stream_keys
from sim.executors import SerialExecutor
from sim.jobs import run_scenario

SCENARIOS = Path(__file__).resolve().parents[1] / "scenarios"
SYNC, ASYNC = str(SCENARIOS / "image-upload-sync.yaml"), str(SCENARIOS / "image-upload-async.yaml")
SHORT = ["duration=4m", "warmup=30s"]


@pytest.fixture(scope="module")
def pair():
    return load_pair(SYNC, ASYNC, SHORT)


def test_a_design_compared_with_itself_differs_by_exactly_zero(pair):
    sync, _ = pair
    comparison = compare(sync, sync, 3, 5, SerialExecutor())
    assert comparison.only_a == comparison.only_b == []
    for d in comparison.differences:
        if d.paired.mean is not None:
            assert d.paired.mean == 0 and d.paired.half_width == 0, d.metric


def test_the_streams_shared_are_those_of_the_parts_both_designs_name(pair):
    sync, asynchronous = pair
    shared = stream_keys(sync) & stream_keys(asynchronous)
    assert {("upload", "arrivals"), ("storage", "delay"), ("thumbnailer", "service_time")} <= shared  # work_stream: thumbnailer
    assert ("upload", "publish_latency") in stream_keys(asynchronous) - stream_keys(sync)


@pytest.mark.slow
def test_the_paired_interval_is_narrower_than_that_of_independent_runs_and_by_how_much(pair):
    """Completion latency of in-line vs queued thumbnailing over 8 replications: the paired
    interval of B − A against the one from two independent runs (B on another seed)."""
    sync, asynchronous = pair
    n, metric = 8, "system.latency_s.mean"
    paired = compare(sync, asynchronous, n, 14, SerialExecutor()).difference(metric)
    a = run_scenario(sync, n, 14, SerialExecutor()).estimate(metric)
    b_independent = run_scenario(asynchronous, n, 15, SerialExecutor()).estimate(metric)
    independent = math.hypot(a.half_width, b_independent.half_width)
    ratio = paired.paired.half_width / independent
    print(f"paired half-width {paired.paired.half_width:.4g}s, independent {independent:.4g}s: ratio {ratio:.2f}, "
          f"variance reduced by {1 - ratio ** 2:.0%}")
    assert ratio < 0.6  # measured: 0.25, a variance 94% smaller
    assert paired.significant and paired.paired.mean < 0  # the queue serves the same work a little sooner



def test_compare_prints_json_with_the_differences_the_streams_and_the_slo_verdicts(call, tmp_path):
    code, stdout, stderr = call("compare", SYNC, ASYNC, "-r", "2", "--seed", "3", "--jobs", "1", *[a for s in SHORT for a in ("--set", s)],
                                "--slo", "latency_p99=2s", "--json", "--out", str(tmp_path))
    assert code == 0, stderr
    summary = json.loads(stdout)
    assert summary["seed"] == 3 and summary["replications"] == 2
    response = next(d for d in summary["differences"] if d["metric"] == "web.upload.response_s.mean")
    assert response["difference"]["mean"] < -0.2 and response["significant"]  # the 202 comes ~300 ms sooner
    assert {row["objective"] for row in summary["slo"]} == {"latency_p99", "max_rejection_rate"}
    assert ["upload", "arrivals"] in summary["common_random_numbers"]["shared"]
    assert (tmp_path / "comparison.csv").exists() and json.loads((tmp_path / "comparison.json").read_text()) == summary
    assert all((tmp_path / name).read_bytes()[:4] == b"\x89PNG" for name in ("side_by_side.png", "differences.png"))


def test_a_bad_slo_or_scenario_is_refused_with_exit_code_2(call, tmp_path):
    code, _, stderr = call("compare", SYNC, ASYNC, "--slo", "latency_p98=1s")
    assert code == 2 and "unknown objective 'latency_p98'" in stderr
    broken = tmp_path / "broken.yaml"
    broken.write_text(open(SYNC).read().replace("handlers: 12", "handlers: 2"))
    code, _, stderr = call("compare", SYNC, str(broken))
    assert code == 2 and "web.upload.handlers: unstable" in stderr


@pytest.mark.slow
def test_break_even_in_line_wins_below_the_publication_cost_and_loses_above_it_or_when_it_cannot_keep_up():
    """Response time of the lookup: in-line it is the links plus the work, queued the links plus
    the 3 ms publication; so B − A = 3 ms − work with plenty of handlers, and a tier that cannot
    keep up (400/s × 100 ms on 20 handlers, where the queued design has 60 workers) loses its point."""
    from sim.breakeven import break_even, knob

    lookup = [str(SCENARIOS / "cheap-lookup-sync.yaml"), str(SCENARIOS / "cheap-lookup-async.yaml")]
    study = break_even(*lookup, [knob("work_s", "1ms,100ms", a="web.price.work.mean", b="workers.lookup.service_time.mean"),
                                 knob("rate", "50/s,400/s", "web.price.arrivals.rate"),
                                 knob("handlers", "20", a="web.price.handlers", b=()), knob("workers", "60", b="workers.lookup.count")],
                       "web.price.response_s.mean", 2, 14, SerialExecutor(), overrides=["duration=40s", "warmup=5s"])
    by_point = {(p.values["work_s"].text, p.values["rate"].text): p for p in study.points}
    assert by_point["1ms", "50/s"].verdict() == "a" and by_point["100ms", "50/s"].verdict() == "b"
    assert by_point["1ms", "50/s"].difference.paired.mean == pytest.approx(0.003 - 0.001, abs=3e-4)
    assert by_point["100ms", "50/s"].difference.paired.mean == pytest.approx(0.003 - 0.1, abs=3e-3)
    refused = by_point["100ms", "400/s"]
    assert refused.refused == "a" and refused.verdict() == "b" and "unstable" in refused.error
    assert list(study.table["verdict"]) == ["a", "a", "b", "b"]


def test_vs_compares_a_design_with_a_variant_of_itself_on_the_same_streams(call):
    code, stdout, stderr = call("compare", SYNC, "--vs", "web.upload.handlers=14", "-r", "2", "--seed", "3", "--jobs", "1",
                                *[a for s in SHORT for a in ("--set", s)], "--json")
    assert code == 0, stderr
    summary = json.loads(stdout)
    assert summary["a"] == "image-upload-sync" and summary["b"] == "image-upload-sync with web.upload.handlers=14"
    crn = summary["common_random_numbers"]
    assert crn["only_a"] == crn["only_b"] == [] and ["upload", "arrivals"] in crn["shared"]
    differences = {d["metric"]: d for d in summary["differences"]}
    busy = differences["web.upload.handlers.busy_mean"]  # the same requests doing the same work: the same handler-seconds
    assert busy["difference"]["mean"] == pytest.approx(0, abs=0.01 * busy["a"]["mean"])
    utilization = differences["web.upload.handlers.utilization"]  # spread over 14 handlers instead of 12
    assert utilization["b"]["mean"] == pytest.approx(utilization["a"]["mean"] * 12 / 14, rel=0.01) and utilization["significant"]


def test_vs_and_a_second_file_are_one_or_the_other_and_a_bad_vs_is_named(call):
    code, _, stderr = call("compare", SYNC, ASYNC, "--vs", "web.upload.handlers=14")
    assert code == 2 and "not both" in stderr
    code, _, stderr = call("compare", SYNC)
    assert code == 2 and "--vs" in stderr
    code, _, stderr = call("compare", SYNC, "--vs", "web.upload.handlers=2")
    assert code == 2 and "web.upload.handlers: unstable" in stderr
