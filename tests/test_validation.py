"""The simulator against exact queueing theory: the exact value must lie in the 95% CI.

These are the cases `asyncsim validate` runs, with its default 20 replications and seed 1. Each
test also bounds the CI's half-width, so that a CI made wide by too little data cannot pass.
"""

import pytest

from sim import analytic, run, scenario_from_dict
from sim.validation import CASES, run_case


@pytest.mark.slow
@pytest.mark.parametrize("case", CASES, ids=[f"{c.name}: {c.measure}" for c in CASES])
def test_exact_value_inside_the_confidence_interval(case):
    outcome = run_case(case, replications=20, seed=1)
    estimate = outcome.estimate
    assert estimate.n == 20
    assert estimate.contains(case.theory), f"{case.theory} outside [{estimate.low}, {estimate.high}]"
    assert estimate.half_width < 0.05 * case.theory


def test_tandem_queues_add_their_sojourns():
    """Two M/M/1 stages in series (a Jackson network): the departures of the first are Poisson,
    so the end-to-end mean is 1/(μ₁−λ) + 1/(μ₂−λ) = 1/(2−1) + 1/(1.25−1) = 5 s."""
    scenario = scenario_from_dict({
        "name": "tandem",
        "seed": 3,
        "duration": 30_000,
        "warmup": 1_000,
        "producers": [{"name": "source", "arrivals": {"process": "poisson", "rate": 1.0}, "sends_to": "first"}],
        "brokers": [{"name": "first", "kind": "fifo"}, {"name": "second", "kind": "fifo"}],
        "workers": [
            {"name": "stage-1", "consumes": "first", "count": 1, "service_time": {"dist": "exponential", "rate": 2.0}, "sends_to": "second"},
            {"name": "stage-2", "consumes": "second", "count": 1, "service_time": {"dist": "exponential", "rate": 1.25}},
        ],
    })
    result = run(scenario, replications=10)
    expected = analytic.mm1(1.0, 2.0).sojourn_s + analytic.mm1(1.0, 1.25).sojourn_s
    latency = result.estimate("system.latency_s.mean")
    assert latency.contains(expected), (expected, latency)
    assert latency.half_width < 0.1 * expected
    wait_second = result.estimate("brokers.second.wait_s.mean")
    assert wait_second.contains(analytic.mm1(1.0, 1.25).wait_s), wait_second
