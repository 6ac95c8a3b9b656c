"""models/admission.py: a gate in front of a broker refuses by the broker's ``waiting`` count."""

import math

import pytest
import simpy

from models.admission import AdmissionGate, TokenBucket
from models.fifo import FifoBroker


def gate_on_a_queue(fates, counts, level, capacity_per_s=lambda: 1.0, **limits):
    env = simpy.Environment()
    broker = FifoBroker(env, "q", level(), counts(), fates)
    return env, broker, AdmissionGate(env, "gate", broker, counts(), capacity_per_s, **limits)


def test_a_bound_on_the_queue_refuses_what_finds_it_full(fates, counts, level):
    env, broker, gate = gate_on_a_queue(fates, counts, level, max_queue=3)
    admitted = [gate.put(fates.new_message(0.0)) for _ in range(5)]
    assert admitted == [True, True, True, False, False]
    assert broker.waiting == gate.waiting == 3
    assert (gate.counts["admitted"], gate.counts["busy"]) == (3, 2)


def test_a_bound_on_the_wait_follows_the_consumers_capacity(fates, counts, level):
    capacity = [2.0]
    env, broker, gate = gate_on_a_queue(fates, counts, level, capacity_per_s=lambda: capacity[0], max_wait_s=2.0)
    admitted = [gate.put(fates.new_message(0.0)) for _ in range(6)]
    # a newcomer's estimated wait is those waiting / 2 per s: refused once 5 wait (2.5 s > 2 s)
    assert admitted == [True, True, True, True, True, False]
    assert gate.estimated_wait_s() == pytest.approx(2.5)
    capacity[0] = 0.0
    assert math.isinf(gate.estimated_wait_s())


def test_the_rate_limiter_throttles_beyond_its_burst(fates, counts, level):
    env, broker, gate = gate_on_a_queue(fates, counts, level, rate_limiter=TokenBucket(1.0, 2))
    first = [gate.put(fates.new_message(0.0)) for _ in range(3)]
    env.run(until=1.0)
    later = gate.put(fates.new_message(1.0))
    assert first == [True, True, False] and later is True
    assert (gate.counts["throttled"], gate.counts["admitted"]) == (1, 3)
