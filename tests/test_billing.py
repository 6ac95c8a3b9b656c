"""The cost of a run: worker-hours at a price per worker (autoscaled pools by their time-average
count), broker-hours, SQS requests; per hour and per million messages processed."""

from __future__ import annotations

import numpy as np
import pytest

from sim import ScenarioError, run, scenario_from_dict

HOUR_S = 3600.0
LAMBDA = 6.0


def scenario(workers=None, broker=None, duration=1_900, warmup=100, **extra):
    return scenario_from_dict({
        "name": "costs",
        "seed": 3,
        "duration": duration,
        "warmup": warmup,
        "producers": [{"name": "web", "arrivals": {"process": "poisson", "rate": LAMBDA}, "sends_to": "q"}],
        "brokers": [{"name": "q", "kind": "fifo", **(broker or {})}],
        "workers": [{"name": "pool", "consumes": "q", "count": 4, "service_time": {"dist": "exponential", "mean": 0.5},
                     "price_per_hour": 0.2, **(workers or {})}],
        **extra,
    })


def test_a_fixed_pool_costs_count_times_price_and_per_million_messages_what_the_arrivals_pay_for():
    result = run(scenario(), replications=10)
    assert [r.metrics["cost.per_hour_usd"] for r in result.results] == pytest.approx([4 * 0.2] * 10)
    # everything offered is processed (ρ = 0.75): 0.8 $/h over λ·3600 messages an hour
    derived = 4 * 0.2 / (LAMBDA * HOUR_S) * 1e6
    est = result.estimate("cost.per_million_messages_usd")
    assert est.low <= derived <= est.high
    assert result.summary()["cost"]["per_hour_usd"]["mean"] == pytest.approx(0.8)
    # the whole cost over all the messages, not the mean of each replication's ratio
    metric = "cost.per_million_messages_usd"
    assert [r.ratios[metric][0] for r in result.results] == pytest.approx([0.8 * result.window_s / HOUR_S * 1e6] * 10)
    processed = sum(r.ratios[metric][1] for r in result.results)
    assert est.mean == pytest.approx(10 * 0.8 * result.window_s / HOUR_S * 1e6 / processed)
    assert est.mean != pytest.approx(np.mean([r.metrics["cost.per_million_messages_usd"] for r in result.results]), rel=1e-9)


def test_an_autoscaled_pool_pays_for_its_time_average_number_of_workers():
    autoscaling = {"target_backlog_per_worker": 2, "min": 1, "max": 10, "evaluation_interval": 10, "scale_out_delay": 30, "cooldown": 60}
    spec = scenario(workers={"count": 1, "autoscaling": autoscaling},
                    **{"producers": [{"name": "web", "sends_to": "q", "arrivals": {"process": "schedule", "steps": [
                        {"duration": 600, "rate": 1.0}, {"duration": 600, "rate": 12.0}, {"duration": 700, "rate": 1.0}]}}]})
    result = run(spec, replications=2)
    for r in result.results:
        count_mean = r.metrics["workers.pool.count_mean"]
        assert 1 < count_mean < 10  # it did scale
        assert r.metrics["cost.per_hour_usd"] == pytest.approx(0.2 * count_mean)


def test_brokers_add_their_price_per_hour_and_sqs_its_billed_requests():
    rabbit = run(scenario(broker={"kind": "rabbitmq", "price_per_hour": 0.5}), replications=2)
    assert rabbit.results[0].metrics["cost.per_hour_usd"] == pytest.approx(0.8 + 0.5)
    redis = run(scenario(broker={"kind": "redis", "price_per_hour": 0.25}), replications=2)
    assert redis.results[0].metrics["cost.per_hour_usd"] == pytest.approx(0.8 + 0.25)
    fifo = run(scenario(broker={"price_per_hour": 0.1}), replications=2)
    assert [r.metrics["cost.per_hour_usd"] for r in fifo.results] == pytest.approx([0.8 + 0.1] * 2)
    sqs = run(scenario(broker={"kind": "sqs", "wait_time": 20, "price_per_million_requests": 0.4}), replications=2)
    r = sqs.results[0]
    requests_per_hour = r.metrics["brokers.q.billed_requests"] * HOUR_S / 1_800
    assert requests_per_hour > 3 * LAMBDA * HOUR_S * 0.9  # a send, a receive and a delete a message, at least
    assert r.metrics["cost.per_hour_usd"] == pytest.approx(0.8 + requests_per_hour * 0.4 / 1e6)


def test_celery_worker_groups_pay_per_instance():
    spec = scenario_from_dict({
        "name": "celery-cost", "seed": 1, "duration": 700, "warmup": 100, "producers": [],
        "brokers": [{"name": "redis", "kind": "redis"}],
        "task_queues": [{"name": "app", "tasks": [{"name": "t", "queue": "redis", "arrivals": {"process": "poisson", "rate": 2.0},
                                                    "run_time": 0.2}],
                         "workers": [{"name": "w", "consumes": "redis", "count": 3, "concurrency": 2, "price_per_hour": 0.1}]}],
    })
    result = run(spec, replications=2)
    assert result.results[0].metrics["cost.per_hour_usd"] == pytest.approx(3 * 0.1)


def test_without_a_price_there_is_no_cost_section():
    spec = scenario(workers={"price_per_hour": None})
    result = run(spec, replications=2)
    assert "cost" not in result.summary()


def test_a_negative_price_is_refused_naming_the_field():
    with pytest.raises(ScenarioError, match="price_per_hour"):
        scenario(workers={"price_per_hour": -1})


def test_the_run_table_shows_the_cost_with_its_interval():
    from rich.console import Console

    from sim.cli.summary import print_summary

    console = Console(record=True, width=200)
    print_summary(run(scenario(duration=700), replications=2).summary(), console)
    text = console.export_text()
    hourly = next(line for line in text.splitlines() if "per hour (USD)" in line)
    assert hourly.split()[0] == "cost" and hourly.split()[-3:] == ["0.8", "[0.8,", "0.8]"]
    assert any("per million messages processed (USD)" in line for line in text.splitlines())
