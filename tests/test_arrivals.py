"""Arrival processes (models.arrivals), built from their scenario specs as the network builds them.

Counts of a Poisson process over a window of expected size m are Poisson(m): the tests accept
them within 4 standard deviations (4·√m) of m. Seeds are fixed, so the outcome is deterministic.
"""

from __future__ import annotations

import math
import signal
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from pydantic import TypeAdapter

from models.arrivals import DeterministicArrivals, PoissonArrivals, RenewalArrivals, ScheduleArrivals, TraceArrivals
from sim import load_scenario_text, run
from sim.components.producers import arrival_process
from sim.components.producers import ArrivalSpec
from sim.streams import Streams

DATA = Path(__file__).resolve().parent / "data"
SPEC = TypeAdapter(ArrivalSpec)


@contextmanager
def time_limit(seconds: float):
    """Fail (rather than hang the suite) if the block runs longer than ``seconds``."""

    def expire(signum, frame):
        raise TimeoutError(f"still generating arrivals after {seconds}s: the arrival process is stuck")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def model(spec: dict, seed: int = 2024):
    """The arrival model of ``spec``, drawing from the stream a producer 'web' would get."""
    return arrival_process(SPEC.validate_python(spec, context={"base_dir": str(DATA)}), Streams(seed, 0), "web")


def arrivals_until(process, end: float, limit_s: float = 20.0) -> np.ndarray:
    """Every arrival time in [0, end)."""
    times = []
    t = 0.0
    with time_limit(limit_s):
        while True:
            nxt = process.next_arrival(t)
            if nxt is None or nxt >= end:
                break
            assert nxt >= t
            times.append(nxt)
            t = nxt
    return np.array(times)


def assert_poisson_count(count: int, expected: float) -> None:
    assert abs(count - expected) < 4 * math.sqrt(expected), (count, expected)


# --- constant rates -----------------------------------------------------------------------------


def test_poisson_arrivals_count_over_a_long_window():
    process = model({"process": "poisson", "rate": "20/s"})
    assert isinstance(process, PoissonArrivals)
    times = arrivals_until(process, 10_000.0)
    assert_poisson_count(len(times), 20 * 10_000)


def test_poisson_gaps_are_exponential():
    times = arrivals_until(model({"process": "poisson", "rate": "20/s"}, seed=7), 5_000.0)
    gaps = np.diff(np.concatenate([[0.0], times]))
    n = len(gaps)
    # P(gap > mean) = e^-1 for an exponential; the share is binomial
    p = math.exp(-1)
    assert abs(np.mean(gaps > 1 / 20) - p) < 4 * math.sqrt(p * (1 - p) / n)
    # the mean gap, with the exponential's standard deviation (= its mean)
    assert abs(gaps.mean() - 1 / 20) < 4 * (1 / 20) / math.sqrt(n)


def test_the_same_seed_gives_the_same_arrivals_and_another_seed_does_not():
    a = arrivals_until(model({"process": "poisson", "rate": "5/s"}, seed=1), 100.0)
    b = arrivals_until(model({"process": "poisson", "rate": "5/s"}, seed=1), 100.0)
    c = arrivals_until(model({"process": "poisson", "rate": "5/s"}, seed=2), 100.0)
    assert np.array_equal(a, b)
    assert len(a) != len(c) or not np.array_equal(a, c)


def test_deterministic_arrivals_come_exactly_every_one_over_rate():
    process = model({"process": "deterministic", "rate": "240/min"})
    assert isinstance(process, DeterministicArrivals)
    times = arrivals_until(process, 100.0 + 1e-9)
    # 4/s: a gap of 0.25 s, exact in binary, so the times are exact multiples
    assert times.tolist() == [0.25 * k for k in range(1, 401)]


def test_deterministic_gaps_at_a_rate_that_is_not_a_power_of_two():
    times = arrivals_until(model({"process": "deterministic", "rate": "3/s"}), 10.0)
    assert len(times) in (29, 30)  # the 30th lands on 10 s, give or take a rounding
    assert times[0] == pytest.approx(1 / 3, rel=1e-15)
    assert np.allclose(np.diff(times), 1 / 3, rtol=1e-12, atol=0)


def test_renewal_arrivals_draw_their_gaps_from_the_distribution():
    process = model({"process": "renewal", "interarrival": {"dist": "uniform", "low": "1s", "high": "1s"}})
    assert isinstance(process, RenewalArrivals)
    assert arrivals_until(process, 10.5).tolist() == [float(k) for k in range(1, 11)]
    # gamma gaps of mean 0.1 s and cv 0.5: a renewal count over T has variance ≈ T·cv²/mean
    times = arrivals_until(model({"process": "renewal", "interarrival": {"dist": "gamma", "mean": "100ms", "cv": 0.5}}), 10_000.0)
    assert abs(len(times) - 100_000) < 4 * math.sqrt(100_000 * 0.25)


# --- schedules ----------------------------------------------------------------------------------


def step_counts(times: np.ndarray, edges: list[float]) -> list[int]:
    counts, _ = np.histogram(times, bins=edges)
    return counts.tolist()


def test_a_repeating_schedule_follows_its_rates_step_by_step_for_two_cycles():
    spec = {"process": "schedule", "steps": [{"duration": "1h", "rate": "10/s"}, {"duration": "1h", "rate": "50/s"}], "repeat": True}
    process = model(spec)
    assert isinstance(process, ScheduleArrivals)
    times = arrivals_until(process, 4 * 3600.0)
    counts = step_counts(times, [0, 3600, 7200, 10800, 14400])
    for count, rate in zip(counts, [10, 50, 10, 50]):
        assert_poisson_count(count, rate * 3600)


def test_a_schedule_that_does_not_repeat_keeps_its_last_rate():
    spec = {"process": "schedule", "steps": [{"duration": "10m", "rate": "10/s"}, {"duration": "10m", "rate": "50/s"}]}
    times = arrivals_until(model(spec), 3600.0)
    counts = step_counts(times, [0, 600, 1200, 2400, 3600])
    for count, expected in zip(counts, [10 * 600, 50 * 600, 50 * 1200, 50 * 1200]):
        assert_poisson_count(count, expected)


def test_a_schedule_that_ends_at_rate_zero_stops():
    spec = {"process": "schedule", "steps": [{"duration": "10m", "rate": "30/s"}, {"duration": "10m", "rate": 0}]}
    process = model(spec)
    times = arrivals_until(process, 1e9)
    assert times.max() < 600
    assert_poisson_count(len(times), 30 * 600)
    assert process.next_arrival(600.0) is None
    assert process.next_arrival(5000.0) is None


def test_a_step_with_rate_zero_has_no_arrivals():
    spec = {
        "process": "schedule",
        "steps": [{"duration": "10m", "rate": 0}, {"duration": "5m", "rate": "30/s"}, {"duration": "5m", "rate": 0}],
        "repeat": True,
    }
    times = arrivals_until(model(spec), 3 * 1200.0)
    counts = step_counts(times, [0, 600, 900, 1200, 1800, 2100, 2400, 3000, 3300, 3600])
    assert counts[0::3] == [0, 0, 0]
    assert counts[2::3] == [0, 0, 0]
    for count in counts[1::3]:
        assert_poisson_count(count, 30 * 300)


def test_schedule_mean_and_peak_rates():
    steps = [{"duration": "1h", "rate": "10/s"}, {"duration": "3h", "rate": "50/s"}]
    cycle = SPEC.validate_python({"process": "schedule", "steps": steps, "repeat": True})
    assert cycle.mean_rate() == pytest.approx((10 * 1 + 50 * 3) / 4)
    assert cycle.peak_rate() == 50
    ramp = SPEC.validate_python({"process": "schedule", "steps": list(reversed(steps))})
    assert ramp.mean_rate() == 10  # the long run is the last step's rate
    assert ramp.peak_rate() == 50


def test_a_repeating_schedule_with_short_steps_keeps_going():
    spec = {"process": "schedule", "steps": [{"duration": "100ms", "rate": "20/s"}, {"duration": "200ms", "rate": "5/s"}], "repeat": True}
    times = arrivals_until(model(spec), 300.0, limit_s=2.0)
    phase = np.mod(times, 0.3)
    assert_poisson_count(int(np.sum(phase < 0.1)), 20 * 0.1 * 1000)
    assert_poisson_count(int(np.sum(phase >= 0.1)), 5 * 0.2 * 1000)


# --- traces -------------------------------------------------------------------------------------


def expected_trace_s() -> list[float]:
    table = pd.read_csv(DATA / "arrivals_ms.csv")
    return sorted(table["t_ms"].astype(float) / 1000)


def test_trace_arrivals_reproduce_the_csv_times_and_stop_after_the_last():
    spec = SPEC.validate_python({"process": "trace", "file": "arrivals_ms.csv", "column": "t_ms", "unit": "1ms"}, context={"base_dir": str(DATA)})
    times_s = spec.times_s()
    assert times_s.tolist() == pytest.approx(expected_trace_s(), rel=1e-12)
    process = arrival_process(spec, Streams(1, 0), "web")
    assert isinstance(process, TraceArrivals)
    replayed = arrivals_until(process, math.inf)
    assert replayed.tolist() == times_s.tolist()  # exactly, duplicates included
    assert process.next_arrival(7.0) is None
    assert process.next_arrival(100.0) is None


def test_trace_arrivals_skip_the_times_already_past():
    process = TraceArrivals([1.0, 2.0, 2.0, 3.0])
    assert process.next_arrival(1.5) == 2.0
    assert process.next_arrival(2.0) == 2.0
    assert process.next_arrival(2.5) == 3.0
    assert process.next_arrival(3.0) is None


def test_a_trace_drives_a_whole_run(tmp_path):
    (tmp_path / "trace.csv").write_text("t\n" + "\n".join(str(x) for x in [0.5, 9.0, 1.5, 3.0, 4.25, 12.0]) + "\n")
    text = """\
name: traced
duration: 10s
producers:
  - name: web
    arrivals: {process: trace, file: trace.csv}
    sends_to: jobs
brokers:
  - name: jobs
    kind: fifo
workers:
  - name: pool
    consumes: jobs
    count: 1
    service_time: {dist: deterministic, value: 100ms}
"""
    scenario = load_scenario_text(text, source="traced.yaml", base_dir=tmp_path)
    counts = run(scenario, replications=1, jobs=1).counts()
    # five times fall before the end at 10 s; each is served in 0.1 s with no wait
    assert counts["produced"] == 5
    assert counts["processed"] == 5
    assert counts["in_flight"] == 0
