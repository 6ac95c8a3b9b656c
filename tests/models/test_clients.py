"""models/clients.py and models/producer.py: clients that retry refusals and timeouts, closed-loop
clients that think and wait, and an open-loop producer."""

import numpy as np
import simpy

from models.arrivals import TraceArrivals
from models.clients import ClosedLoopClients, Client, OpenLoopClient
from models.fifo import FifoBroker
from models.producer import Producer
from models.retry import ExponentialBackoff, FixedBackoff, RetryBudget
from models.workers import Done, WorkerOptions, WorkerPool
from sim.distributions import Deterministic, Sampler


def fixed(value_s):
    return Sampler(Deterministic(value_s), np.random.default_rng(0))


class Door:
    """A target that answers each put from ``answers`` (True: admitted) and logs
    ``(id, attempt number, time)`` of what it admits in ``admitted``."""

    def __init__(self, env, answers):
        self.env = env
        self.answers = iter(answers)
        self.tried = []
        self.admitted = []

    def put(self, message):
        self.tried.append((message.number, self.env.now))
        if next(self.answers):
            self.admitted.append(message)
            return True
        return False

    def publish_gate(self):
        return None


class Gated:
    """A target that blocks its publishers until ``opened`` fires, and logs what it takes."""

    def __init__(self, env):
        self.env = env
        self.opened = env.event()
        self.took = []

    def publish_gate(self):
        return None if self.opened.triggered else self.opened

    def put(self, message):
        self.took.append((message.id, self.env.now))
        return True


def client_of(env, target, fates, level, **options):
    requests, attempts = level(), level()
    return Client(env, "c", target, fates, requests, attempts, **options), requests, attempts


def served_queue(env, fates, counts, level, workers=1, service_time=None):
    """A plain queue served by a pool that processes what it takes (the client's last stage)."""
    broker = FifoBroker(env, "q", level(), counts(), fates)
    pool = WorkerPool(env, "pool", broker, workers, service_time or fixed(1.0), Done(env, fates), fates, level(), level(workers),
                      counts())
    return broker, pool


def test_a_refused_request_retries_after_each_backoff_and_gives_up_after_its_attempts(fates, observer, level):
    env = simpy.Environment()
    door = Door(env, [False] * 4)
    client, requests, attempts = client_of(env, door, fates, level, backoff=ExponentialBackoff(1.0, 10.0), max_attempts=4)
    client.start(0.0)
    env.run()
    assert door.tried == [(1, 0.0), (2, 1.0), (3, 3.0), (4, 7.0)]  # backoffs 1, 2, 4
    assert observer.fates("retry_sent") == [(None, 1.0), (None, 3.0), (None, 7.0)]
    assert observer.fates("request_rejected") == [(0, 7.0)]
    assert client.tally == {"requests": 1, "attempts": 4, "refused": 4, "retries": 3, "rejected_refused": 1}
    assert requests.n == 0 and requests.area == 7.0  # a request counts from creation to outcome, backoffs included
    assert attempts.area == 0.0 and not client.pending


def test_without_a_backoff_policy_a_refusal_is_final(fates, observer, level):
    env = simpy.Environment()
    door = Door(env, [False, True])
    client, _, _ = client_of(env, door, fates, level, max_attempts=5)
    client.start(0.0)
    env.run()
    assert door.tried == [(1, 0.0)] and observer.fates("request_rejected") == [(0, 0.0)]


def test_a_request_admitted_on_a_retry_succeeds_when_processed_and_refunds_the_budget(fates, observer, level):
    env = simpy.Environment()
    door = Door(env, [False, False, True])
    budget = RetryBudget(tokens=20)
    client, requests, attempts = client_of(env, door, fates, level, backoff=FixedBackoff(0.5), max_attempts=3, budget=budget)
    client.start(0.0)
    env.run()
    (third,) = door.admitted
    assert (third.number, third.sent_s) == (3, 1.0) and budget.tokens == 10
    assert observer.fates("request_admitted") == [(0, 1.0)] and attempts.n == 1
    env.timeout(1.5).callbacks.append(lambda _: fates.processed(third, env.now))
    env.run()
    assert observer.fates("request_processed") == [(0, 2.5)]
    assert list(client.latencies_s) == [2.5] and budget.tokens == 11
    assert attempts.n == 0 and attempts.area == 1.5 and requests.area == 2.5


def test_a_retry_the_budget_cannot_pay_is_refused_and_the_request_rejected(fates, observer, level):
    env = simpy.Environment()
    door = Door(env, [False, False, True])
    budget = RetryBudget(tokens=5)
    client, _, _ = client_of(env, door, fates, level, backoff=FixedBackoff(1.0), max_attempts=3, budget=budget)
    client.start(0.0)
    client.start(0.0)
    env.run()
    # the first request's retry takes the 5 tokens; the second's finds the bucket empty
    assert observer.fates("request_rejected") == [(1, 0.0)]
    assert door.tried == [(1, 0.0), (1, 0.0), (2, 1.0)]
    assert client.tally["rejected_budget"] == 1 and budget.refused == 1


def test_a_retry_after_a_timeout_costs_the_budget_its_timeout_price(fates, observer, level):
    env = simpy.Environment()
    door = Door(env, [True] * 3)
    budget = RetryBudget(tokens=15)
    client, _, _ = client_of(env, door, fates, level, backoff=FixedBackoff(0.5), max_attempts=5, timeout_s=1.0, budget=budget)
    client.start(0.0)
    env.run()
    # timeout at 1 pays 10 (5 left), retry at 1.5; timeout at 2.5 cannot pay 10 more
    assert door.tried == [(1, 0.0), (2, 1.5)] and observer.fates("request_rejected") == [(0, 2.5)]
    assert (budget.tokens, budget.refused) == (5, 1) and client.tally["rejected_budget"] == 1


def test_a_timeout_retries_while_the_first_attempt_is_queued_and_its_late_processing_is_wasted(fates, observer, counts, level):
    env = simpy.Environment()
    broker, _ = served_queue(env, fates, counts, level)
    for _ in range(3):  # three plain messages ahead: the worker is busy until 3
        broker.put(fates.new_message(0.0))
    client, requests, attempts = client_of(env, broker, fates, level, backoff=FixedBackoff(0.5), max_attempts=3, timeout_s=2.5)
    client.start(0.0)  # request 3
    env.run(until=2.75)
    assert [message.number for message, _ in broker.ready] == [1]  # timed out at 2.5, still queued
    env.run(until=10)
    # attempt 2 sent at 3.0 behind attempt 1; attempt 1 is processed at 4 (nobody waits for it),
    # attempt 2 at 5, before its deadline 5.5: a success, and the request's second processing
    assert observer.fates("retry_sent") == [(None, 3.0)]
    assert observer.fates("wasted") == [(None, 4.0)]
    assert observer.fates("request_processed") == [(3, 5.0)] and observer.fates("duplicate") == [(3, None)]
    assert client.tally == {"requests": 1, "attempts": 2, "timeouts": 1, "retries": 1, "processings": 2, "wasted": 1,
                            "succeeded": 1}
    assert list(client.latencies_s) == [5.0] and attempts.n == 0 and attempts.area == 6.0  # open 0..4 and 3..5


def test_an_attempt_processed_after_its_retry_succeeded_is_wasted_and_a_duplicate(fates, observer, counts, level):
    env = simpy.Environment()
    broker, _ = served_queue(env, fates, counts, level, workers=2, service_time=iter([5.0, 1.0]).__next__)
    client, _, _ = client_of(env, broker, fates, level, backoff=FixedBackoff(0.5), max_attempts=2, timeout_s=2.0)
    client.start(0.0)
    env.run(until=10)
    # attempt 1 in service 0..5 (slow); timeout at 2, retry at 2.5 served by the other worker until 3.5
    assert observer.fates("request_processed") == [(0, 3.5)]
    assert observer.fates("wasted") == [(None, 5.0)] and observer.fates("duplicate") == [(0, None)]
    assert client.tally["succeeded"] == 1 and client.tally["wasted"] == 1 and client.tally["processings"] == 2


def test_a_request_whose_last_attempt_times_out_is_rejected_as_timed_out(fates, observer, counts, level):
    env = simpy.Environment()
    broker, _ = served_queue(env, fates, counts, level, service_time=fixed(4.0))
    client, _, _ = client_of(env, broker, fates, level, backoff=FixedBackoff(1.0), max_attempts=2, timeout_s=1.5)
    client.start(0.0)
    env.run(until=20)
    # timeouts at 1.5 and 4.0 (attempt 2 sent at 2.5); processings at 4 and 8 are both wasted
    assert observer.fates("request_rejected") == [(0, 4.0)]
    assert observer.fates("wasted") == [(None, 4.0), (None, 8.0)]
    assert client.tally["rejected_timed_out"] == 1 and client.tally["timeouts"] == 2


def test_without_a_timeout_an_attempt_lost_downstream_ends_its_request_with_no_retry(fates, observer, level):
    env = simpy.Environment()
    door = Door(env, [True, True])
    client, _, attempts = client_of(env, door, fates, level, backoff=FixedBackoff(1.0), max_attempts=3)
    client.start(0.0)
    env.timeout(2.0).callbacks.append(lambda _: fates.lost(door.admitted[0], env.now))
    env.run()
    assert observer.fates("request_lost") == [(0, 2.0)] and door.tried == [(1, 0.0)]
    assert client.tally["failed_downstream"] == 1 and attempts.n == 0


def test_with_a_timeout_an_attempt_lost_downstream_is_found_out_by_the_timeout(fates, observer, level):
    env = simpy.Environment()
    door = Door(env, [True, True])
    client, _, _ = client_of(env, door, fates, level, backoff=FixedBackoff(1.0), max_attempts=2, timeout_s=3.0)
    client.start(0.0)
    env.timeout(2.0).callbacks.append(lambda _: fates.lost(door.admitted[0], env.now))
    env.run(until=5.0)
    assert door.tried == [(1, 0.0), (2, 4.0)] and observer.fates("request_lost") == []  # timed out at 3, retried at 4
    assert client.tally["timeouts"] == 1 and list(client.held_ids()) == [0]


def test_a_broker_that_blocks_its_publishers_answers_a_client_as_a_refusal(fates, observer, level):
    env = simpy.Environment()
    target = Gated(env)
    client, _, _ = client_of(env, target, fates, level, backoff=FixedBackoff(1.0), max_attempts=3)
    env.timeout(1.5).callbacks.append(lambda _: target.opened.succeed())
    client.start(0.0)
    env.run()
    assert target.took == [(0, 2.0)] and client.tally["refused"] == 2  # refused at 0 and 1, admitted at 2


def test_a_worker_that_sheds_expired_attempts_skips_one_whose_client_stopped_waiting(fates, observer, counts, level):
    env = simpy.Environment()
    broker = FifoBroker(env, "q", level(), counts(), fates)
    pool = WorkerPool(env, "pool", broker, 1, fixed(2.0), Done(env, fates), fates, level(), level(1), counts(),
                      WorkerOptions(shed_expired=True))
    broker.put(fates.new_message(0.0))  # keeps the worker busy until 2
    client, _, attempts = client_of(env, broker, fates, level, timeout_s=1.0)
    client.start(0.0)
    env.run(until=10)
    # timed out at 1 (rejected: one attempt only); taken at 2, past its deadline: skipped, not worked on
    assert observer.fates("request_rejected") == [(1, 1.0)] and observer.fates("processed") == [(0, 2.0)]
    assert pool.counts["shed"] == 1 and client.tally["shed"] == 1 and "wasted" not in client.tally
    assert attempts.n == 0 and attempts.area == 2.0


def test_closed_loop_clients_think_send_and_wait(fates, observer, counts, level):
    env = simpy.Environment()
    broker, _ = served_queue(env, fates, counts, level, service_time=fixed(0.5))
    client, requests, _ = client_of(env, broker, fates, level)
    ClosedLoopClients(env, "users", 2, fixed(1.0), client)
    env.run(until=4.9)
    # both think 1 s and send at 1; the worker answers one at 1.5 and the other at 2; each thinks
    # again 1 s after its answer
    assert observer.created_s == [1.0, 1.0, 2.5, 3.0, 4.0, 4.5]
    assert observer.fates("request_processed") == [(0, 1.5), (1, 2.0), (2, 3.0), (3, 3.5), (4, 4.5)]
    assert list(client.latencies_s) == [0.5, 1.0, 0.5, 0.5, 0.5]
    assert requests.n == 1 and list(client.held_ids()) == [5]


def test_an_open_loop_client_starts_a_request_at_each_arrival_whatever_became_of_the_last(fates, observer, level):
    env = simpy.Environment()
    door = Door(env, [True, False, True])
    client, requests, _ = client_of(env, door, fates, level)
    OpenLoopClient(env, "c", TraceArrivals([0.5, 1.0, 1.0]), client)
    env.run()
    assert observer.created_s == [0.5, 1.0, 1.0]
    assert observer.fates("request_admitted") == [(0, 0.5), (2, 1.0)]
    assert observer.fates("request_rejected") == [(1, 1.0)]
    assert sorted(client.held_ids()) == [0, 2] and requests.n == 2


def test_an_open_loop_producer_puts_at_its_arrival_times_and_a_refused_put_is_rejected(fates, observer, counts, level):
    env = simpy.Environment()
    broker = FifoBroker(env, "q", level(), counts(), fates, capacity=2)
    producer = Producer(env, "p", TraceArrivals([0.5, 1.0, 1.0, 2.5]), broker, fates)
    env.run()
    assert observer.created_s == [0.5, 1.0, 1.0, 2.5] and producer.sent == 4
    assert observer.fates("admitted") == [(0, 0.5), (1, 1.0)]
    assert observer.fates("rejected") == [(2, 1.0), (3, 2.5)]
    assert broker.waiting == 2


def test_a_blocked_producer_keeps_its_messages_in_order_and_publishes_them_when_let_through(fates, observer):
    env = simpy.Environment()
    target = Gated(env)
    producer = Producer(env, "p", TraceArrivals([1.0, 2.0, 3.0, 6.0]), target, fates)
    env.timeout(4.0).callbacks.append(lambda _: target.opened.succeed())
    env.run(until=3.5)
    assert list(producer.held_ids()) == [0, 1, 2] and target.took == []
    assert observer.fates("admitted") == [(0, 1.0), (1, 2.0), (2, 3.0)]  # in the system from its creation
    env.run()
    assert target.took == [(0, 4.0), (1, 4.0), (2, 4.0), (3, 6.0)]
    assert observer.fates("admitted")[-1] == (3, 6.0) and list(producer.held_ids()) == []
