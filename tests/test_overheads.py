"""The stability check counts what a broker makes a worker or a prefetch slot wait for per message."""

import pytest

from sim import run, scenario_from_dict
from sim.topology import broker_flows


def rabbit(rate_per_s, **broker):
    # 4 workers, exponential service of mean 0.5 s, prefetch 1 and acks that take 500 ms to reach
    # the queue: each slot is held 0.5 + 0.5 s a message, so the pool finishes at most 4/1.0 = 4/s
    # (without the ack latency, 8/s)
    return {
        "name": "slow-acks", "seed": 3, "duration": 2_000, "warmup": 200,
        "producers": [{"name": "source", "arrivals": {"process": "poisson", "rate": rate_per_s}, "sends_to": "jobs"}],
        "brokers": [{"name": "jobs", "kind": "rabbitmq", "prefetch_count": 1, "ack_latency": "500ms", **broker}],
        "workers": [{"name": "pool", "consumes": "jobs", "count": 4, "service_time": {"dist": "exponential", "mean": 0.5}}],
    }


def test_the_capacity_counts_the_ack_latency_holding_a_prefetch_slot():
    flow = broker_flows(scenario_from_dict(rabbit(3.5)))["jobs"]
    assert flow.service_capacity_per_s == pytest.approx(4 / (0.5 + 0.5))
    assert flow.offered_load == pytest.approx(3.5 / 4)
    assert "ack_latency" in flow.overheads[0]
    # a prefetch of 2 lets the ack of one overlap the work on the next: 2·0.5/1.0 ≥ 1, no loss
    assert broker_flows(scenario_from_dict(rabbit(3.5, prefetch_count=2)))["jobs"].service_capacity_per_s == pytest.approx(8)


def test_a_load_above_that_capacity_is_refused_naming_the_overhead():
    with pytest.raises(Exception) as refused:
        scenario_from_dict(rabbit(4.5))
    message = str(refused.value)
    assert "unstable: offered load 4.5/s ≥ capacity 4/s" in message and "500ms more until its ack reaches the queue (ack_latency)" in message


@pytest.mark.slow
def test_below_that_capacity_the_run_keeps_up_with_the_load():
    result = run(scenario_from_dict(rabbit(3.5)), replications=3, jobs=1)
    throughput = result.estimate("system.throughput_per_s")
    assert throughput.low <= 3.5 <= throughput.high
    assert result.estimate("workers.pool.utilization").mean == pytest.approx(3.5 * 0.5 / 4, rel=0.05)


def test_sqs_receive_and_delete_calls_hold_the_worker():
    # 2 workers, service 80 ms, delete 20 ms, receive 100 ms shared by batches of 5: 0.1 + 0.02 s a
    # message, 2 / 0.12 = 16.7/s
    spec = {
        "name": "sqs-calls", "seed": 1, "duration": 100, "warmup": 10,
        "producers": [{"name": "source", "arrivals": {"process": "poisson", "rate": 10}, "sends_to": "jobs"}],
        "brokers": [{"name": "jobs", "kind": "sqs", "batch_size": 5, "receive_latency": "100ms", "delete_latency": "20ms"}],
        "workers": [{"name": "pool", "consumes": "jobs", "count": 2, "service_time": {"dist": "deterministic", "value": 0.08}}],
    }
    assert broker_flows(scenario_from_dict(spec))["jobs"].service_capacity_per_s == pytest.approx(2 / 0.12)
    spec["producers"][0]["arrivals"]["rate"] = 18  # below 2 / 0.08 = 25/s, above 16.7/s
    with pytest.raises(Exception, match="holds its worker 20ms deleting it and 20ms receiving it"):
        scenario_from_dict(spec)


def test_a_workers_delivery_latency_counts_in_its_time_per_message():
    spec = rabbit(3.5, prefetch_count=0, ack_latency="0s")
    spec["workers"][0]["delivery_latency"] = "250ms"
    assert broker_flows(scenario_from_dict(spec))["jobs"].service_capacity_per_s == pytest.approx(4 / 0.75)
